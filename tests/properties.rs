//! Property tests of everything that parses or decodes input the operator does not control (issue 11,
//! "hostile and malformed input"): the attestation timestamp, ARM resource ids, the extension settings, the
//! attestation policy check, JWS/JWT decoding and verification, and the ARM response models. Each property
//! holds for arbitrary input: no panic, a clear error where the input is wrong, exact round trips where it is
//! right, and statuses that fit the CRD schema whatever Azure sends. The same targets run under libFuzzer in
//! fuzz/ (`make fuzz`); docs/reliability-input.md has the list.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_in_result,
    missing_docs
)]

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use guest_attestation_operator::attestation_status::assess::{
    AttestationFacts, Observation, VmFacts,
};
use guest_attestation_operator::attestation_status::render::{Failure, Input, render};
use guest_attestation_operator::attestation_status::timestamp;
use guest_attestation_operator::azure::{
    AttestationProvider, Cluster, ClusterId, Error, HealthStatus, JsonWebKeySet, Machine,
    MachineExtension, MachineExtensionSpec, MachineExtensionSpecProperties, MachineId,
    PolicySigner, PowerState, ProviderId, ProvisioningState, ResourceId, SecurityType, Service,
    Toggle, TrustModel, VmAttestationStatus, VmInstance, check_claims, decode_policy_jws,
    parse_jwt, unsigned_policy_jws, verify_jwt,
};
use guest_attestation_operator::controller::azure_reason;
use guest_attestation_operator::controller::conditions::MAX_MESSAGE;
use guest_attestation_operator::crd::provider::PublicNetworkAccess;
use guest_attestation_operator::crd::{
    AttestationProvider as ProviderKind, AttestationStatus, ExtensionSettings, ManagementPolicy,
};
use guest_attestation_operator::extension::settings::{
    Endpoints, endpoints_from_cluster, render_settings,
};
use guest_attestation_operator::extension::{compare, preflight};
use guest_attestation_operator::provider::policy_check::{PolicyProblem, VERSIONS, check_policy};
use guest_attestation_operator::provider::status as provider_status;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::tz::{Offset, TimeZone};
use k8s_openapi::jiff::{Timestamp, civil};
use kube::CustomResourceExt;
use proptest::prelude::*;
use proptest::sample::Index;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

const SIGNER_KEY: &str = include_str!("../src/azure/testdata/policy-signer.key.pem");
const SIGNER_CERT: &str = include_str!("../src/azure/testdata/policy-signer.cert.pem");

/// Lines of a text as the policy check counts them: `\r\n`, `\n` and a lone `\r` each end one.
fn line_count(text: &str) -> usize {
    let mut chars = text.chars().peekable();
    let mut lines = 1;
    while let Some(c) = chars.next() {
        if c == '\n' || (c == '\r' && chars.peek() != Some(&'\n')) {
            lines += 1;
        }
    }
    lines
}

/// Arbitrary JSON: every type, odd numbers, and object keys that are often the models' own field names, so
/// that wrong types land where the models look.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        "\\PC{0,24}".prop_map(Value::String),
        enum_word().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(json_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "id", "name", "type", "location", "tags", "properties", "status", "provisioningState",
            "securityProfile", "enableTPM", "uefiSettings", "secureBootEnabled", "securityType",
            "healthStatus", "timestamp", "errorMessage", "instanceView", "settings", "keys", "x5c",
            "n", "e", "kid", "alg", "exp", "iss", "trustModel", "attestUri", "powerState",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ]
}

/// Known enum words, re-cased, and strangers.
fn enum_word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "Succeeded",
            "succeeded",
            "FAILED",
            "Cancelled",
            "Running",
            "Healthy",
            "Unhealthy",
            "Valid",
            "Invalid",
            "Enabled",
            "Disabled",
            "AAD",
            "Isolated",
            "TrustedLaunch",
            "ConfidentialVM",
            "Information",
            "Ready",
            "Migrating",
            "",
        ])
        .prop_map(str::to_owned),
        "[A-Za-z]{1,40}",
    ]
}

/// Schema bounds of the API server: a value that breaks them makes it refuse the whole status write.
/// `maxLength` counts characters, as the API server does.
fn schema_violations(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    let max = |k: &str| schema.get(k).and_then(Value::as_u64);
    match value {
        Value::String(s) => {
            if let Some(m) = max("maxLength")
                && s.chars().count() as u64 > m
            {
                out.push(format!(
                    "{path}: {} characters > maxLength {m}",
                    s.chars().count()
                ));
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time") && !is_k8s_time(s)
            {
                out.push(format!(
                    "{path}: {s:?} is not an RFC 3339 time the API server reads"
                ));
            }
        }
        Value::Array(items) => {
            if let Some(m) = max("maxItems")
                && items.len() as u64 > m
            {
                out.push(format!("{path}: {} items > maxItems {m}", items.len()));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    schema_violations(v, item_schema, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let sub = schema
                    .get("properties")
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties"));
                if let Some(sub) = sub {
                    schema_violations(v, sub, &format!("{path}.{k}"), out);
                }
            }
        }
        _ => {}
    }
}

/// `yyyy-MM-ddTHH:mm:ssZ` with a four-digit year: what `metav1.Time` (Go's RFC 3339) parses.
fn is_k8s_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn status_schema<K: CustomResourceExt>() -> Value {
    let crd = serde_json::to_value(K::crd()).unwrap();
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/status")
        .cloned()
        .unwrap()
}

/// Generated once: building a CRD is slow in a debug build.
static ATTESTATION_STATUS_SCHEMA: LazyLock<Value> =
    LazyLock::new(status_schema::<AttestationStatus>);
static PROVIDER_STATUS_SCHEMA: LazyLock<Value> = LazyLock::new(status_schema::<ProviderKind>);

// ---------------------------------------------------------------------------------------------------------------
// The attestation timestamp

fn civil_datetime() -> impl Strategy<Value = civil::DateTime> {
    (
        1000i16..=9999,
        1i8..=12,
        1i8..=31,
        0i8..24,
        0i8..60,
        0i8..60,
    )
        .prop_map(|(y, mo, d, h, mi, s)| {
            let d = d.min(civil::date(y, mo, 1).days_in_month());
            civil::datetime(y, mo, d, h, mi, s, 0)
        })
}

fn utc(dt: civil::DateTime) -> Timestamp {
    dt.to_zoned(TimeZone::UTC).unwrap().timestamp()
}

proptest! {
    #[test]
    fn timestamp_never_panics_and_errors_carry_the_input(
        s in prop_oneof![
            "\\PC{0,80}",
            "[0-9/: APMZT+.\\-]{0,40}",
            "[+-]?00[0-9]{2,4}-0[1-9]-[012][1-9]T[01][0-9]:[0-5][0-9]:[0-5][0-9](Z|[+-]0[0-9]:00)",
            "[0-9]{1,2}/[0-9]{1,2}/-?[0-9]{1,6} [0-9]{1,2}:[0-9]{2}(:[0-9]{2})?( [AP]M)?",
            "[0-9]{1,4}/[0-9]{1,4}/[0-9]{1,5} [0-9]{1,3}:[0-9]{1,3}(:[0-9]{1,3})?( [AaPp][Mm])?",
        ],
    ) {
        match timestamp::parse(&s) {
            Ok(ts) => {
                // whatever is accepted is a real instant that RFC 3339 carries exactly, and that a
                // Kubernetes status can hold (status.attestedTime)
                prop_assert_eq!(timestamp::parse(&ts.to_string()), Ok(ts));
                let stored = serde_json::to_value(Time(ts)).unwrap();
                prop_assert!(is_k8s_time(stored.as_str().unwrap()), "{} from {:?}", stored, s);
            }
            Err(e) => prop_assert_eq!(e.raw, s),
        }
    }

    #[test]
    fn timestamp_documented_form_round_trips(
        dt in civil_datetime(),
        padded: bool,
        pad in "[ \t]{0,2}",
    ) {
        // `M/d/yyyy h:mm:ss AM|PM` (the product documentation), as UTC
        let (h12, half) = match dt.hour() {
            0 => (12, "AM"),
            h @ 1..=11 => (h, "AM"),
            12 => (12, "PM"),
            h => (h - 12, "PM"),
        };
        let (y, mo, d, mi, s) = (dt.year(), dt.month(), dt.day(), dt.minute(), dt.second());
        let text = if padded {
            format!("{pad}{mo:02}/{d:02}/{y} {h12:02}:{mi:02}:{s:02} {half}{pad}")
        } else {
            format!("{pad}{mo}/{d}/{y} {h12}:{mi:02}:{s:02} {half}{pad}")
        };
        prop_assert_eq!(timestamp::parse(&text), Ok(utc(dt)), "{}", text);
    }

    #[test]
    fn timestamp_spec_form_round_trips(dt in civil_datetime(), with_seconds: bool) {
        // `yyyy/MM/dd H:mm[:ss]` (the REST specs' examples), as UTC
        let (y, mo, d) = (dt.year(), dt.month(), dt.day());
        let (h, mi, s) = (dt.hour(), dt.minute(), dt.second());
        let (text, want) = if with_seconds {
            (format!("{y}/{mo:02}/{d:02} {h}:{mi:02}:{s:02}"), utc(dt))
        } else {
            let whole_minute = dt.with().second(0).build().unwrap();
            (format!("{y}/{mo:02}/{d:02} {h}:{mi:02}"), utc(whole_minute))
        };
        prop_assert_eq!(timestamp::parse(&text), Ok(want), "{}", text);
    }

    #[test]
    fn timestamp_rfc3339_round_trips(
        // years 0001..=9998, so that every offset below keeps the local time in range
        second in -62_135_596_800i64..=253_370_764_800,
        nanos in 0i32..1_000_000_000,
        offset_minutes in -18 * 60i32..=18 * 60,
    ) {
        let ts = Timestamp::new(second, nanos).unwrap();
        let offset = Offset::from_seconds(offset_minutes * 60).unwrap();
        for text in [ts.to_string(), ts.display_with_offset(offset).to_string()] {
            prop_assert_eq!(timestamp::parse(&text), Ok(ts), "{}", text);
        }
    }

    #[test]
    fn timestamp_rejects_garbage(
        s in prop_oneof![
            "[^0-9]{0,40}",
            "[0-9]{65,90}",
            "1[3-9]/[0-9]{1,2}/2024 1:00:00 PM",
            "2024/1[3-9]/01 1:00",
        ],
    ) {
        let e = timestamp::parse(&s).unwrap_err();
        prop_assert_eq!(&e.raw, &s);
        prop_assert!(e.to_string().contains("no known form"));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// ARM resource ids

fn guid() -> impl Strategy<Value = String> {
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
}

/// 1–90 letters, digits, `-_.()`, not ending in a period (Unicode letters included, as ARM allows).
fn resource_group() -> impl Strategy<Value = String> {
    "[-a-zA-Z0-9_.()\\p{L}]{0,40}[-a-zA-Z0-9_()\\p{L}]"
}

fn namespace() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,10}(\\.[A-Za-z0-9]{1,10}){1,2}"
}

fn resource_type() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,16}".prop_filter("the providers keyword", |t| {
        !t.eq_ignore_ascii_case("providers")
    })
}

/// Anything but whitespace, control characters and `/\?#%&"`, and not a dot segment.
fn resource_name() -> impl Strategy<Value = String> {
    "[^\\s\\p{Cc}/\\\\?#%&\"]{1,24}".prop_filter("dot segment", |n| n != "." && n != "..")
}

#[derive(Debug, Clone)]
struct IdParts {
    subscription: String,
    resource_group: Option<String>,
    providers: Vec<(String, Vec<(String, String)>)>,
}

impl IdParts {
    fn text(&self) -> String {
        let mut segments = vec!["subscriptions", &self.subscription];
        if let Some(rg) = &self.resource_group {
            segments.extend(["resourceGroups", rg]);
        }
        for (ns, types) in &self.providers {
            segments.extend(["providers", ns]);
            for (t, n) in types {
                segments.extend([t.as_str(), n]);
            }
        }
        format!("/{}", segments.join("/"))
    }
}

fn id_parts() -> impl Strategy<Value = IdParts> {
    let provider = (
        namespace(),
        prop::collection::vec((resource_type(), resource_name()), 1..=3),
    );
    (
        guid(),
        prop::option::of(resource_group()),
        prop::collection::vec(provider, 1..=3),
    )
        .prop_map(|(subscription, resource_group, providers)| IdParts {
            subscription,
            resource_group,
            providers,
        })
}

fn hash_of(id: &ResourceId) -> u64 {
    let mut h = DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// A valid id with one character inserted, removed or replaced.
fn mutated_id() -> impl Strategy<Value = String> {
    (
        id_parts(),
        any::<Index>(),
        0u8..3,
        prop_oneof![Just('/'), Just('.'), Just(' '), any::<char>()],
    )
        .prop_map(|(parts, at, op, c)| {
            let mut chars: Vec<char> = parts.text().chars().collect();
            let i = at.index(chars.len());
            match op {
                0 => chars.insert(i, c),
                1 => {
                    chars.remove(i);
                }
                _ => chars[i] = c,
            }
            chars.into_iter().collect()
        })
}

proptest! {
    #[test]
    fn resource_id_never_panics(
        s in prop_oneof![
            "\\PC{0,300}",
            "(/(subscriptions|resourceGroups|providers|[A-Za-z0-9.]{1,12})){0,12}/?",
            mutated_id(),
        ],
    ) {
        match ResourceId::parse(&s) {
            // what parses, prints in a form that parses to the same id
            Ok(id) => prop_assert_eq!(ResourceId::parse(&id.to_string()), Ok(id)),
            Err(e) => prop_assert!(e.input.len() <= 300, "the error holds a bounded input"),
        }
        // the typed parsers agree with the generic one on what is not an id
        if ResourceId::parse(&s).is_err() {
            prop_assert!(MachineId::parse(&s).is_err());
            prop_assert!(ClusterId::parse(&s).is_err());
            prop_assert!(ProviderId::parse(&s).is_err());
        }
    }

    #[test]
    fn valid_resource_ids_round_trip(parts in id_parts()) {
        let text = parts.text();
        let parsed = ResourceId::parse(&text);
        if text.len() > 2048 {
            prop_assert!(parsed.is_err(), "longer than ARM's limit");
            return Ok(());
        }
        let id = parsed.unwrap();
        prop_assert_eq!(id.to_string(), text.clone());
        prop_assert_eq!(id.subscription(), parts.subscription.as_str());
        prop_assert_eq!(id.resource_group(), parts.resource_group.as_deref());
        let (ns, types) = parts.providers.last().unwrap();
        prop_assert_eq!(id.provider_namespace(), Some(ns.as_str()));
        prop_assert_eq!(id.name(), Some(types.last().unwrap().1.as_str()));
        let full_type = std::iter::once(ns.clone())
            .chain(types.iter().map(|(t, _)| t.clone()))
            .collect::<Vec<_>>()
            .join("/");
        prop_assert_eq!(id.resource_type(), Some(full_type.clone()));
        prop_assert!(id.is_type(&full_type.to_ascii_uppercase()));
        // a missing leading slash and a trailing slash are tolerated
        prop_assert_eq!(ResourceId::parse(&format!("{}/", &text[1..])), Ok(id.clone()));
        // serde carries the id as its text
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<ResourceId>(&json).unwrap(), id);
    }

    #[test]
    fn resource_ids_compare_ignoring_ascii_case(
        parts in id_parts(),
        flips in prop::collection::vec(any::<bool>(), 64),
    ) {
        let text = parts.text();
        prop_assume!(text.len() <= 2048);
        let recased: String = text
            .chars()
            .enumerate()
            .map(|(i, c)| match (flips[i % flips.len()], c.is_ascii_lowercase()) {
                (false, _) => c,
                (true, true) => c.to_ascii_uppercase(),
                (true, false) => c.to_ascii_lowercase(),
            })
            .collect();
        let a = ResourceId::parse(&text).unwrap();
        let b = ResourceId::parse(&recased).unwrap();
        // equal and hashed alike, while names keep their own spelling for display (the keywords are
        // printed in their canonical spelling)
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(hash_of(&a), hash_of(&b));
        let shown = b.to_string();
        for (have, sent) in shown.split('/').zip(recased.split('/')) {
            let keyword = ["subscriptions", "resourceGroups", "providers"].contains(&have);
            prop_assert!(
                have == sent || (keyword && have.eq_ignore_ascii_case(sent)),
                "{} for {}",
                have,
                sent
            );
        }
    }

    #[test]
    fn typed_ids_round_trip_and_build_their_children(
        sub in guid(),
        rg in resource_group(),
        name in resource_name(),
        child_type in prop_oneof![
            resource_type(),
            Just("providers".to_owned()),
            Just("PROVIDERS".to_owned()),
        ],
        child_name in resource_name(),
    ) {
        let m = MachineId::new(&sub, &rg, &name).unwrap();
        prop_assert_eq!(m.subscription(), sub.as_str());
        prop_assert_eq!(m.resource_group(), rg.as_str());
        prop_assert_eq!(m.name(), name.as_str());
        prop_assert_eq!(MachineId::parse(&m.to_string()), Ok(m.clone()));
        // a machine id is no other kind's id
        let not_a_provider = ProviderId::parse(&m.to_string()).unwrap_err();
        prop_assert_eq!(not_a_provider.what, "attestation provider id");
        prop_assert!(ClusterId::parse(&m.to_string()).is_err());
        for derived in [
            m.extension_id("GuestAttestation").unwrap(),
            m.vm_instance_id(),
            m.attestation_status_id(),
        ] {
            prop_assert_eq!(ResourceId::parse(&derived.to_string()), Ok(derived.clone()));
            // a child is not a machine
            prop_assert!(MachineId::parse(&derived.to_string()).is_err());
        }
        // any child that can be built parses back to itself
        if let Ok(child) = m.as_resource_id().child(&child_type, &child_name) {
            prop_assert_eq!(ResourceId::parse(&child.to_string()), Ok(child));
        }
        let c = ClusterId::new(&sub, &rg, &name).unwrap();
        prop_assert_eq!(ClusterId::parse(&c.to_string()), Ok(c));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The extension settings

/// The documented keys (case-sensitive) and the exact shape: the objects with their keys, the flags.
fn check_settings_shape(
    v: &Value,
    e: &Endpoints,
    s: &ExtensionSettings,
) -> Result<(), TestCaseError> {
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    prop_assert_eq!(keys(v), vec!["AttestationConfig"]);
    let c = &v["AttestationConfig"];
    prop_assert_eq!(
        keys(c),
        vec![
            "AscSettings",
            "AzureStackSettings",
            "MaaSettings",
            "disableAlerts",
            "isAzureStack",
            "useCustomToken"
        ]
    );
    prop_assert_eq!(
        keys(&c["MaaSettings"]),
        vec!["maaEndpoint", "maaTenantName"]
    );
    prop_assert_eq!(
        keys(&c["AscSettings"]),
        vec!["ascReportingEndpoint", "ascReportingFrequency"]
    );
    prop_assert_eq!(
        keys(&c["AzureStackSettings"]),
        vec!["clusterAadTenantId", "clusterId"]
    );
    let flag = |b: bool| json!(if b { "true" } else { "false" });
    prop_assert_eq!(&c["useCustomToken"], &flag(s.use_custom_token));
    prop_assert_eq!(&c["disableAlerts"], &flag(s.disable_alerts));
    prop_assert_eq!(&c["isAzureStack"], &json!("true"));
    prop_assert_eq!(&c["MaaSettings"]["maaEndpoint"], &json!(e.maa_endpoint));
    prop_assert_eq!(
        &c["MaaSettings"]["maaTenantName"],
        &json!(s.maa_tenant_name)
    );
    prop_assert_eq!(
        &c["AscSettings"]["ascReportingEndpoint"],
        &json!(e.relying_party_endpoint)
    );
    prop_assert_eq!(
        &c["AscSettings"]["ascReportingFrequency"],
        &json!(s.asc_reporting_frequency)
    );
    prop_assert_eq!(&c["AzureStackSettings"]["clusterId"], &json!(e.cluster_id));
    prop_assert_eq!(
        &c["AzureStackSettings"]["clusterAadTenantId"],
        &json!(e.cluster_aad_tenant_id)
    );
    Ok(())
}

fn endpoints() -> impl Strategy<Value = Endpoints> {
    (
        any::<String>(),
        any::<String>(),
        any::<String>(),
        any::<String>(),
    )
        .prop_map(|(m, r, c, t)| Endpoints {
            maa_endpoint: m,
            relying_party_endpoint: r,
            cluster_id: c,
            cluster_aad_tenant_id: t,
        })
}

fn extension_settings() -> impl Strategy<Value = ExtensionSettings> {
    (
        any::<String>(),
        any::<String>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(n, f, u, d)| ExtensionSettings {
            maa_tenant_name: n,
            asc_reporting_frequency: f,
            use_custom_token: u,
            disable_alerts: d,
        })
}

fn extension_spec(settings: Value) -> MachineExtensionSpec {
    MachineExtensionSpec {
        location: "eastus".into(),
        tags: std::collections::BTreeMap::new(),
        properties: MachineExtensionSpecProperties {
            publisher: "Microsoft.Azure.Security.WindowsAttestation".into(),
            extension_type: "GuestAttestation".into(),
            enable_automatic_upgrade: Some(true),
            settings: Some(settings),
            ..Default::default()
        },
    }
}

proptest! {
    #[test]
    fn settings_have_exactly_the_documented_shape(e in endpoints(), s in extension_settings()) {
        let v = render_settings(&e, &s);
        check_settings_shape(&v, &e, &s)?;
        // no JSON boolean anywhere: every value is a string
        let text = serde_json::to_string(&v).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(&back, &v);
        // as Azure echoes them back (any Unicode, escaped or not), they compare equal: no drift from encoding
        let desired = extension_spec(v);
        let echoed: MachineExtension = serde_json::from_value(json!({
            "properties": serde_json::to_value(&desired.properties).unwrap(),
        }))
        .unwrap();
        let a = compare::compare(&desired, Some(&echoed));
        prop_assert!(a.in_sync(), "{:?}", a);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The attestation policy check

fn eol() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("\n"), Just("\r\n"), Just("\r")]
}

/// Space between tokens: blanks, line ends and comments (which may hold brackets and quotes).
fn gap() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[ \t]{1,2}",
        eol().prop_map(str::to_owned),
        ("[^\\r\\n]{0,12}", eol()).prop_map(|(c, e)| format!("//{c}{e}")),
        ("[^*]{0,12}", eol()).prop_map(|(c, e)| format!("/*{c}{e}*/")),
    ];
    prop::collection::vec(piece, 0..3).prop_map(|v| v.concat())
}

/// A string literal with escapes, brackets, semicolons and (escaped or bare) line ends inside.
fn string_literal() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[^\"\\\\\\r\\n]{1,6}",
        Just("\\\"".to_owned()),
        Just("\\\\".to_owned()),
        Just("{;}[(".to_owned()),
        eol().prop_map(str::to_owned),
        eol().prop_map(|e| format!("\\{e}")),
    ];
    prop::collection::vec(piece, 0..4).prop_map(|v| format!("\"{}\"", v.concat()))
}

fn rule() -> impl Strategy<Value = String> {
    (string_literal(), string_literal(), gap(), 0u8..4).prop_map(|(a, b, g, kind)| match kind {
        0 => format!("=>{g}permit();"),
        1 => format!("[type=={a}, value==true]{g}=> issue(type={b}, value=true);"),
        2 => format!(
            "c:[type=={a}, issuer==\"AttestationService\"] => \
             add(type={b}, value=JmesPath(c.value, {a}));"
        ),
        _ => format!("![type=={a}]{g}&& [type=={b}] => deny();"),
    })
}

fn section(name: &'static str) -> impl Strategy<Value = String> {
    (
        any::<u64>(),
        prop::collection::vec((gap(), rule()), 0..3),
        gap(),
        gap(),
    )
        .prop_map(move |(case, rules, g1, g2)| {
            // section names are case-insensitive
            let name: String = name
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if (case >> (i % 64)) & 1 == 1 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            let body: String = rules.into_iter().flat_map(|(g, r)| [g, r]).collect();
            format!("{name}{g1}{{{body}{g2}}};")
        })
}

fn valid_policy() -> impl Strategy<Value = String> {
    let sections = (
        section("authorizationrules"),
        section("issuancerules"),
        prop::option::of(section("configurationrules")),
    )
        .prop_flat_map(|(a, i, c)| {
            Just(
                std::iter::once(a)
                    .chain(Some(i))
                    .chain(c)
                    .collect::<Vec<_>>(),
            )
            .prop_shuffle()
        });
    (
        gap(),
        prop::sample::select(VERSIONS),
        gap(),
        sections,
        prop::collection::vec(gap(), 4),
    )
        .prop_map(|(lead, version, g, sections, gaps)| {
            let body: String = gaps
                .iter()
                .cycle()
                .zip(&sections)
                .flat_map(|(g, s)| [g.as_str(), s])
                .collect();
            format!("{lead}version{g}={g}{version}{g};{body}{}", gaps[0])
        })
}

proptest! {
    #[test]
    fn policy_check_never_panics_and_names_a_real_line(
        text in prop_oneof![
            "\\PC{0,200}",
            "[version=1.0;{}\\[\\]()\"\\\\/* \n\r\tabc:=>,!]{0,200}",
            // a valid policy with one bracket, quote, separator, comment mark or line end added
            (valid_policy(), any::<Index>(), "[{}\\[\\]()\";/*\\\\\n\r]").prop_map(|(p, at, c)| {
                let mut chars: Vec<char> = p.chars().collect();
                chars.insert(at.index(chars.len() + 1), c.chars().next().unwrap());
                chars.into_iter().collect()
            }),
        ],
    ) {
        if let Err(problem) = check_policy(&text) {
            if let Some(line) = problem.line() {
                let lines = line_count(&text);
                prop_assert!((1..=lines).contains(&line), "{problem} in {lines} lines");
            } else {
                prop_assert_eq!(&problem, &PolicyProblem::Empty);
            }
            prop_assert!(problem.to_string().len() < 512, "the message stays short");
        }
    }

    #[test]
    fn generated_valid_policies_pass(policy in valid_policy()) {
        prop_assert_eq!(check_policy(&policy), Ok(()), "{:?}", policy);
    }

    #[test]
    fn policy_problems_move_with_their_lines(
        text in "[version=1.0;{}\\[\\]()\"/* \n\rabc=>]{0,120}",
        k in 1usize..5,
    ) {
        // k blank lines before the text move every reported line by k, and change nothing else
        let before = check_policy(&text);
        let after = check_policy(&format!("{}{text}", "\n".repeat(k)));
        let kind = |r: &Result<(), PolicyProblem>| r.as_ref().err().map(std::mem::discriminant);
        prop_assert_eq!(kind(&before), kind(&after));
        prop_assert_eq!(
            before.err().and_then(|p| p.line()).map(|l| l + k),
            after.err().and_then(|p| p.line())
        );
    }

    #[test]
    fn line_numbers_count_every_line_end(policy in valid_policy(), end in eol()) {
        // an unknown section after a valid policy is reported on the line it is on, however many
        // line ends the policy's strings and comments hold
        let text = format!("{policy}{end}bogus{{}};");
        prop_assert_eq!(
            check_policy(&text),
            Err(PolicyProblem::UnknownSection { line: line_count(&text), found: "bogus".into() })
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// JWS / JWT

/// Loaded once: each load signs a probe, which is slow in a debug build.
static SIGNER: LazyLock<PolicySigner> = LazyLock::new(|| {
    PolicySigner::from_pem(SIGNER_KEY.as_bytes(), SIGNER_CERT.as_bytes()).unwrap()
});

fn instance() -> Url {
    Url::parse("https://prov.eus.attest.azure.net").unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A segment: base64url of arbitrary bytes or JSON, or arbitrary text.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| b64(&b)),
        json_value().prop_map(|v| b64(v.to_string().as_bytes())),
        "[A-Za-z0-9_\\-+/=]{0,40}",
        "\\PC{0,20}",
    ]
}

/// Claims with every kind of `exp` and `iss`, including ones at the edges of the integer types.
fn claims() -> impl Strategy<Value = Value> {
    let exp = prop_oneof![
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(u64::MAX - 299)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        json_value(),
    ];
    let iss = prop_oneof![
        Just(json!("https://prov.eus.attest.azure.net/")),
        Just(json!("HTTPS://PROV.EUS.ATTEST.AZURE.NET")),
        json_value(),
    ];
    (prop::option::of(exp), prop::option::of(iss), json_value()).prop_map(|(exp, iss, extra)| {
        let mut m = serde_json::Map::new();
        m.insert("x-ms-policy".into(), extra);
        if let Some(e) = exp {
            m.insert("exp".into(), e);
        }
        if let Some(i) = iss {
            m.insert("iss".into(), i);
        }
        Value::Object(m)
    })
}

proptest! {
    #[test]
    fn jwt_decoding_never_panics(
        token in prop_oneof![
            "\\PC{0,200}",
            (segment(), segment(), segment()).prop_map(|(h, p, s)| format!("{h}.{p}.{s}")),
            (segment(), segment()).prop_map(|(h, p)| format!("{h}.{p}")),
            prop::collection::vec(segment(), 4..6).prop_map(|v| v.join(".")),
        ],
    ) {
        let keys = SIGNER.certificates();
        if let Ok(jwt) = parse_jwt(&token) {
            // nothing forged from random parts verifies against the instance's key
            prop_assert_ne!(verify_jwt(&keys, &jwt), Ok(true));
            let _ = check_claims(&jwt, &instance(), std::time::SystemTime::now());
        }
        let _ = decode_policy_jws(&token);
    }

    #[test]
    fn claims_of_any_shape_are_checked_without_panicking(
        claims in claims(),
        alg in prop_oneof![Just("RS256"), Just("none"), Just("HS256")],
    ) {
        let header = json!({ "alg": alg, "kid": "k1" });
        let token = format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes()),
            b64(b"sig")
        );
        let jwt = parse_jwt(&token).unwrap();
        let checked = check_claims(&jwt, &instance(), std::time::SystemTime::now());
        // a non-numeric exp or a non-string iss is refused, never guessed at
        let odd_exp = claims.get("exp").is_some_and(|e| e.as_u64().is_none());
        let odd_iss = claims.get("iss").is_some_and(|i| !i.is_string());
        if odd_exp || odd_iss {
            prop_assert!(checked.is_err());
        }
        prop_assert_ne!(verify_jwt(&SIGNER.certificates(), &jwt), Ok(true));
    }

    #[test]
    fn policy_jws_round_trips(policy in "\\PC{0,300}") {
        prop_assert_eq!(decode_policy_jws(&unsigned_policy_jws(&policy)), Ok(Some(policy)));
    }
}

proptest! {
    // Signing is RSA-2048 in a debug build: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn signed_tokens_verify_and_tampered_ones_do_not(
        claims in claims(),
        part in 0usize..3,
        at in any::<Index>(),
        to in "[A-Za-z0-9_-]",
        bit in 0u8..8,
    ) {
        let keys = SIGNER.certificates();
        let token = SIGNER.sign(&b64(claims.to_string().as_bytes())).unwrap();
        prop_assert_eq!(verify_jwt(&keys, &parse_jwt(&token).unwrap()), Ok(true));
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        if part < 2 {
            // another character in the header or the claims
            let mut chars: Vec<char> = parts[part].chars().collect();
            let i = at.index(chars.len());
            let c = to.chars().next().unwrap();
            prop_assume!(chars[i] != c);
            chars[i] = c;
            parts[part] = chars.into_iter().collect();
        } else {
            // one bit of the signature
            let mut sig = URL_SAFE_NO_PAD.decode(&parts[2]).unwrap();
            let i = at.index(sig.len());
            sig[i] ^= 1 << bit;
            parts[2] = b64(&sig);
        }
        if let Ok(jwt) = parse_jwt(&parts.join(".")) {
            prop_assert_ne!(verify_jwt(&keys, &jwt), Ok(true));
        }
        // and the alg cannot be downgraded
        let none = format!("{}.{}.{}", b64(br#"{"alg":"none"}"#), parts[1], parts[2]);
        if let Ok(jwt) = parse_jwt(&none) {
            prop_assert!(verify_jwt(&keys, &jwt).is_err());
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// ARM responses

/// One realistic body of each model (the documented examples, trimmed).
fn samples() -> Vec<Value> {
    let cluster = json!({
        "id": "/subscriptions/fd3c3665-1729-4b7b-9a38-238e83b0f98b/resourceGroups/rg/providers/Microsoft.AzureStackHCI/clusters/c1",
        "name": "c1", "type": "Microsoft.AzureStackHCI/clusters", "location": "eastus",
        "properties": {
            "provisioningState": "Succeeded", "aadClientId": "a", "aadTenantId": "t",
            "isolatedVmAttestationConfiguration": {
                "attestationResourceId": "/x",
                "relyingPartyServiceEndpoint": "https://rp",
                "attestationServiceEndpoint": "https://maa",
            },
        },
    });
    let machine = json!({
        "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/vm",
        "name": "vm", "kind": "HCI", "location": "eastus",
        "properties": {
            "provisioningState": "Succeeded", "status": "Connected", "osType": "Windows",
            "vmId": "v", "agentVersion": "1.0", "lastStatusChange": "2024-06-12T20:49:33Z",
        },
    });
    let vm_instance = json!({
        "id": "/x/virtualMachineInstances/default", "name": "default",
        "extendedLocation": {"name": "/cl", "type": "CustomLocation"},
        "properties": {
            "provisioningState": "Succeeded", "vmId": "v",
            "securityProfile": {
                "enableTPM": true,
                "uefiSettings": {"secureBootEnabled": true},
                "securityType": "TrustedLaunch",
            },
            "status": {"powerState": "Running", "provisioningStatus": {"status": "Succeeded"}},
            "instanceView": {"vmAgent": {
                "vmConfigAgentVersion": "1",
                "statuses": [{"code": "c", "level": "Information", "time": "t"}],
            }},
            "networkProfile": {"networkInterfaces": [{"id": "/nic"}]},
        },
    });
    let attestation_status = json!({
        "id": "/x/attestationStatus/default",
        "type": "microsoft.azurestackhci/virtualmachineinstances/attestationstatus",
        "properties": {
            "attestSecureBootEnabled": "Enabled", "attestationCertValidated": "Valid",
            "bootIntegrityValidated": "Valid", "errorMessage": null, "healthStatus": "Healthy",
            "linuxKernelVersion": "0", "provisioningState": "Succeeded",
            "timestamp": "6/12/2024 8:49:33 PM",
        },
        "systemData": {"lastModifiedAt": "2024-06-12T20:49:33Z"},
    });
    let extension = json!({
        "id": "/x/extensions/GuestAttestation", "name": "GuestAttestation", "location": "eastus",
        "tags": {"a": "b"},
        "properties": {
            "publisher": "Microsoft.Azure.Security.WindowsAttestation", "type": "GuestAttestation",
            "typeHandlerVersion": "1.0.0.1", "enableAutomaticUpgrade": true,
            "provisioningState": "Succeeded",
            "settings": {"AttestationConfig": {"useCustomToken": "true"}},
            "instanceView": {
                "name": "GuestAttestation",
                "status": {"code": "0", "level": "Error", "message": "m"},
            },
        },
    });
    let provider = json!({
        "name": "p", "type": "Microsoft.Attestation/attestationProviders", "location": "East US",
        "tags": {"a": "b"},
        "properties": {
            "attestUri": "https://p.eus.attest.azure.net", "publicNetworkAccess": "Enabled",
            "status": "Ready", "tpmAttestationAuthentication": "Enabled", "trustModel": "AAD",
        },
    });
    let keys = json!({"keys": [{
        "kty": "RSA", "use": "sig", "kid": "k1", "alg": "RS256", "x5c": ["MIIB"], "n": "AQAB",
        "e": "AQAB",
    }]});
    vec![
        cluster,
        machine,
        vm_instance,
        attestation_status,
        extension,
        provider,
        keys,
    ]
}

/// JSON pointers of every node under the root.
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(c, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(c, &p, out);
            }
        }
        _ => {}
    }
}

/// A sample with the node at one of its paths replaced.
fn with_replaced(which: Index, at: Index, by: Value) -> Value {
    let all = samples();
    let mut doc = all[which.index(all.len())].clone();
    let mut paths = Vec::new();
    pointers(&doc, "", &mut paths);
    let p = &paths[at.index(paths.len())];
    *doc.pointer_mut(p).unwrap() = by;
    doc
}

/// Decodes a body as a model; a failure becomes the client's error, whose condition reason and message must be
/// the clear, bounded ones.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<Option<T>, TestCaseError> {
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok(Some(v)),
        Err(source) => {
            let e = Error::Decode {
                service: Service::Arm,
                operation: "get",
                status: 200,
                source,
            };
            prop_assert_eq!(azure_reason::reason(&e), "AzureInvalidResponse");
            let message = azure_reason::message(&e);
            prop_assert!(message.len() <= MAX_MESSAGE, "{} bytes", message.len());
            prop_assert!(
                message.starts_with("arm get returned a malformed body (HTTP 200)"),
                "{}",
                message
            );
            Ok(None)
        }
    }
}

/// The AttestationStatus status rendered from what Azure sent fits the CRD schema (or the API server would
/// refuse every status write, and the status would freeze).
fn check_attestation_status(
    vm: &VmInstance,
    att: Option<&VmAttestationStatus>,
) -> Result<(), TestCaseError> {
    let obs = Observation::Vm {
        vm: VmFacts::from_instance(vm),
        attestation: att.map(|a| AttestationFacts::from_properties(&a.properties)),
    };
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let failure = Failure {
        reason: "AzureInvalidResponse",
        message: "x".repeat(MAX_MESSAGE),
        since: now,
    };
    for failure in [None, Some(&failure)] {
        let r = render(&Input {
            old: None,
            observation: Some((&obs, now)),
            failure,
            generation: Some(1),
            machine_name: "vm1",
            now: now.checked_add(Duration::from_secs(3600)).unwrap(),
            stale_after: Duration::from_secs(8 * 3600),
            failure_grace: Duration::from_secs(900),
        });
        let mut v = Vec::new();
        schema_violations(
            &serde_json::to_value(&r.status).unwrap(),
            &ATTESTATION_STATUS_SCHEMA,
            "status",
            &mut v,
        );
        prop_assert!(v.is_empty(), "{:?}", v);
    }
    Ok(())
}

/// Likewise for the AttestationProvider status.
fn check_provider_status(p: &AttestationProvider) -> Result<(), TestCaseError> {
    let endpoint = provider_status::Endpoint::Found {
        id: "/subscriptions/s/p".into(),
        provider: Box::new(p.clone()),
    };
    let s = provider_status::render(&provider_status::Input {
        old: None,
        generation: Some(1),
        spec_access: PublicNetworkAccess::Enabled,
        management: ManagementPolicy::Manage,
        endpoint: &endpoint,
        policy: &provider_status::Policy::NotManaged,
        now: "2026-01-01T00:00:00Z".parse().unwrap(),
    });
    let mut v = Vec::new();
    schema_violations(
        &serde_json::to_value(&s).unwrap(),
        &PROVIDER_STATUS_SCHEMA,
        "status",
        &mut v,
    );
    prop_assert!(v.is_empty(), "{:?}", v);
    Ok(())
}

/// Decodes `body` as every model and runs what decoded through the pure code that consumes it.
fn decode_and_consume(body: &[u8]) -> Result<(), TestCaseError> {
    if let Some(c) = decode::<Cluster>(body)? {
        let cluster_id = c.id.clone().unwrap_or_default();
        if let Ok(e) = endpoints_from_cluster(&cluster_id, &c, None) {
            check_settings_shape(
                &render_settings(&e, &ExtensionSettings::default()),
                &e,
                &ExtensionSettings::default(),
            )?;
        }
    }
    let _ = decode::<Machine>(body)?;
    let vm = decode::<VmInstance>(body)?;
    if let Some(vm) = &vm {
        let _ = preflight::preflight(&preflight::VmFacts::from_instance(vm));
    }
    let att = decode::<VmAttestationStatus>(body)?;
    check_attestation_status(&vm.unwrap_or_default(), att.as_ref())?;
    if let Some(ext) = decode::<MachineExtension>(body)? {
        let _ = compare::compare(&extension_spec(json!({})), Some(&ext));
        let _ = compare::instance_view_detail(&ext);
    }
    if let Some(p) = decode::<AttestationProvider>(body)? {
        check_provider_status(&p)?;
    }
    if let Some(keys) = decode::<JsonWebKeySet>(body)? {
        // a hostile key set verifies nothing and breaks nothing
        let token = format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256"}"#),
            b64(b"{}"),
            b64(&[7; 256])
        );
        prop_assert_ne!(verify_jwt(&keys, &parse_jwt(&token).unwrap()), Ok(true));
    }
    Ok(())
}

proptest! {
    #[test]
    fn arm_bodies_with_wrong_types_decode_or_fail_clearly(
        which: Index,
        at: Index,
        by in json_value(),
    ) {
        let doc = with_replaced(which, at, by);
        decode_and_consume(doc.to_string().as_bytes())?;
    }

    #[test]
    fn arbitrary_bodies_decode_or_fail_clearly(
        body in prop_oneof![
            json_value().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..128),
            "\\PC{0,128}".prop_map(String::into_bytes),
        ],
    ) {
        decode_and_consume(&body)?;
    }

    #[test]
    fn unexpected_enum_values_are_kept_not_refused(which: Index, at: Index, word in enum_word()) {
        // every string field, enums included, takes any string: unknown values become `Other`
        let doc = with_replaced(which, at, json!(word));
        decode_and_consume(doc.to_string().as_bytes())?;
        for v in [
            serde_json::from_value::<ProvisioningState>(json!(word)).unwrap().as_str().to_owned(),
            serde_json::from_value::<HealthStatus>(json!(word)).unwrap().as_str().to_owned(),
            serde_json::from_value::<PowerState>(json!(word)).unwrap().as_str().to_owned(),
            serde_json::from_value::<SecurityType>(json!(word)).unwrap().as_str().to_owned(),
            serde_json::from_value::<TrustModel>(json!(word)).unwrap().as_str().to_owned(),
            serde_json::from_value::<Toggle>(json!(word)).unwrap().as_str().to_owned(),
        ] {
            // the known spelling of a known value, or the value itself
            let alias = word.eq_ignore_ascii_case("Cancelled");
            prop_assert!(v.eq_ignore_ascii_case(&word) || alias, "{} for {}", v, word);
        }
        let p = ProvisioningState::from(word.as_str());
        prop_assert_eq!(ProvisioningState::from(p.as_str()), p.clone());
        let back: ProvisioningState =
            serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn enums_of_the_wrong_json_type_are_refused(
        v in json_value().prop_filter("not a string", |v| !v.is_string()),
    ) {
        prop_assert!(serde_json::from_value::<ProvisioningState>(v.clone()).is_err());
        prop_assert!(serde_json::from_value::<HealthStatus>(v).is_err());
    }
}

/// A text field as Azure might fill it: a known or unknown enum word, odd text, or a long run.
fn azure_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        enum_word(),
        "\\PC{0,40}",
        (1usize..3000, "[a-zé]").prop_map(|(n, c)| c.repeat(n)),
    ])
}

proptest! {
    #[test]
    fn statuses_fit_the_schema_whatever_azure_reports(
        f in prop::collection::vec(azure_text(), 12),
        timestamp in prop_oneof![
            Just(Some("6/12/2024 8:49:33 PM".to_owned())),
            Just(Some("2025-12-31T23:00:00Z".to_owned())),
            Just(Some("0000-01-01T00:00:00Z".to_owned())),
            azure_text(),
        ],
        flags in any::<(Option<bool>, Option<bool>)>(),
    ) {
        // every field the statuses mirror, through the models' own decoding
        let att = json!({"properties": {
            "attestSecureBootEnabled": f[0], "attestationCertValidated": f[1],
            "bootIntegrityValidated": f[2], "healthStatus": f[3], "linuxKernelVersion": f[4],
            "errorMessage": f[5], "timestamp": timestamp,
        }});
        let vm = json!({"properties": {
            "securityProfile": {
                "securityType": f[6],
                "enableTPM": flags.0,
                "uefiSettings": {"secureBootEnabled": flags.1},
            },
            "status": {"powerState": f[7]},
        }});
        let provider = json!({"properties": {
            "trustModel": f[8], "status": f[9], "publicNetworkAccess": f[10], "attestUri": f[11],
        }});
        let att: VmAttestationStatus = serde_json::from_value(att).unwrap();
        let vm: VmInstance = serde_json::from_value(vm).unwrap();
        check_attestation_status(&vm, Some(&att))?;
        check_provider_status(&serde_json::from_value(provider).unwrap())?;
    }
}

proptest! {
    // 1 MiB bodies: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn huge_fields_decode_or_fail_clearly(which: Index, at: Index, c in "[a-zé\"\\\\]") {
        let huge = c.repeat((1 << 20) / c.len());
        let doc = with_replaced(which, at, Value::String(huge));
        decode_and_consume(doc.to_string().as_bytes())?;
    }
}
