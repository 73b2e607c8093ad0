//! Logs: tracing-subscriber, one JSON object per line or human-readable text, filtered by an
//! `EnvFilter` built from `--log-level`. Nothing here logs secrets: the Azure client and the
//! controllers never put tokens or request bodies in fields.
//!
//! The JSON lines are written by the small formatter below (tracing-subscriber's own `json`
//! feature would add tracing-serde and, through it, `valuable`):
//! `{"timestamp":…,"level":"INFO","target":…,"span":"reconcile","namespace":…,"name":…,"message":…,…}`
//! with the fields of the enclosing spans (the reconcile's namespace, name, generation) flattened
//! in, and the event's own fields winning on a clash.

use std::fmt;

use serde_json::{Map, Value};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    EnvFilter,
    field::RecordFields,
    fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, format::Writer},
    registry::LookupSpan,
};

use super::config::LogFormat;

/// The filter directives were not understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid --log-level {directives:?}")]
pub struct InvalidFilter {
    /// What was given.
    pub directives: String,
    /// Why it failed.
    #[source]
    pub source: tracing_subscriber::filter::ParseError,
}

/// The filter for `directives` (a level, or EnvFilter directives).
pub fn filter(directives: &str) -> Result<EnvFilter, InvalidFilter> {
    EnvFilter::builder()
        .parse(directives)
        .map_err(|source| InvalidFilter {
            directives: directives.to_owned(),
            source,
        })
}

/// Installs the global subscriber (once; later calls are no-ops). Logs go to stdout.
pub fn init(format: LogFormat, directives: &str) -> Result<(), InvalidFilter> {
    let filter = filter(directives)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    // A second init (tests) finds a subscriber already set; that is fine.
    let _ = match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields)
            .event_format(JsonFormat)
            .try_init(),
        LogFormat::Text => builder
            .compact()
            // Colours only on a terminal (the ansi feature may be on through the workspace).
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .try_init(),
    };
    Ok(())
}

/// Collects fields into a JSON map.
struct Collect<'a>(&'a mut Map<String, Value>);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }
}

/// Span fields, stored as a JSON object string (so events can merge them).
#[derive(Debug, Default)]
pub struct JsonFields;

impl<'w> FormatFields<'w> for JsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut map = Map::new();
        fields.record(&mut Collect(&mut map));
        write!(writer, "{}", Value::Object(map))
    }

    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut map = match serde_json::from_str(&current.fields) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        fields.record(&mut Collect(&mut map));
        current.fields = Value::Object(map).to_string();
        Ok(())
    }
}

/// One JSON object per event.
#[derive(Debug, Default)]
pub struct JsonFormat;

impl<S> FormatEvent<S, JsonFields> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut map = Map::new();
        map.insert(
            "timestamp".into(),
            Value::String(k8s_openapi::jiff::Timestamp::now().to_string()),
        );
        map.insert("level".into(), Value::String(meta.level().to_string()));
        map.insert("target".into(), Value::String(meta.target().to_owned()));
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                innermost = Some(span.name());
                let ext = span.extensions();
                if let Some(f) = ext.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(&f.fields)
                {
                    map.extend(fields);
                }
            }
            if let Some(name) = innermost {
                map.insert("span".into(), Value::String(name.to_owned()));
            }
        }
        event.record(&mut Collect(&mut map));
        writeln!(writer, "{}", Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rejects_bad_directives() {
        assert!(filter("info,guest_attestation_operator=loud").is_err());
        assert!(filter("info,kube=warn").is_ok());
    }

    #[test]
    fn json_lines_carry_span_and_event_fields() {
        let buf = Buffer::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter("debug").unwrap())
            .fmt_fields(JsonFields)
            .event_format(JsonFormat)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span =
                tracing::info_span!("reconcile", namespace = "ns", name = "vm1", generation = 3);
            let _g = span.enter();
            tracing::info!(
                reason = "Attested",
                healthy = true,
                "attestation health changed"
            );
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["message"], "attestation health changed");
        assert_eq!(line["namespace"], "ns");
        assert_eq!(line["name"], "vm1");
        assert_eq!(line["generation"], 3);
        assert_eq!(line["reason"], "Attested");
        assert_eq!(line["healthy"], true);
        assert_eq!(line["span"], "reconcile");
        assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
