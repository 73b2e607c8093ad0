//! `Microsoft.HybridCompute/machines/{vm}/extensions` (api-version 2025-01-13): PUT/PATCH/DELETE
//! as long-running operations, GET and list (CONTRACTS.md §3).

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::{
    invalid_content, json_body, machine_key, method_not_allowed, not_found, parent_not_found,
};
use crate::clock::Clock;
use crate::config::PutStyle;
use crate::emulator::Inner;
use crate::http::{Req, Resp};
use crate::sim::{DEFAULT_HANDLER_VERSION, success_view};
use crate::state::{Extension, ExtensionPatch, ExtensionSpec, InstanceView, Machine, OpKind};

const FULL_TYPE: &str = "Microsoft.HybridCompute/machines/extensions";

/// Resolves a requested handler version like the RP does: a prefix of the current version
/// resolves to it; no version gets the current one.
fn resolve_version(requested: Option<&str>) -> String {
    match requested {
        None | Some("") => DEFAULT_HANDLER_VERSION.to_owned(),
        Some(v) if DEFAULT_HANDLER_VERSION.starts_with(&format!("{v}.")) => {
            DEFAULT_HANDLER_VERSION.to_owned()
        }
        Some(v) => v.to_owned(),
    }
}

/// An extension placed directly through the Rust/control API.
pub(crate) fn from_spec(m: &Machine, spec: ExtensionSpec, now: SystemTime) -> Extension {
    let state = spec
        .provisioning_state
        .unwrap_or_else(|| "Succeeded".into());
    let mut e = Extension {
        name: spec.name,
        location: m.location.clone(),
        tags: None,
        publisher: spec.publisher,
        extension_type: spec.extension_type,
        type_handler_version: resolve_version(spec.type_handler_version.as_deref()),
        enable_automatic_upgrade: spec.enable_automatic_upgrade,
        auto_upgrade_minor_version: false,
        settings: if spec.settings.is_null() {
            json!({})
        } else {
            spec.settings
        },
        force_update_tag: None,
        provisioning_state: state.clone(),
        instance_view: None,
        pending_op: None,
        succeeded_at: None,
    };
    if state.eq_ignore_ascii_case("Succeeded") {
        e.succeeded_at = Some(now);
        e.instance_view = Some(success_view(&e, now));
    }
    e
}

/// Applies drift made outside ARM.
pub(crate) fn apply_patch(e: &mut Extension, p: ExtensionPatch, now: SystemTime) {
    if let Some(s) = p.settings {
        e.settings = s;
    }
    if let Some(v) = p.type_handler_version {
        e.type_handler_version = v;
    }
    if let Some(v) = p.enable_automatic_upgrade {
        e.enable_automatic_upgrade = Some(v);
    }
    if let Some(v) = p.publisher {
        e.publisher = v;
    }
    if let Some(state) = p.provisioning_state {
        if state.eq_ignore_ascii_case("Succeeded") && e.succeeded_at.is_none() {
            e.succeeded_at = Some(now);
        }
        e.provisioning_state = state;
    }
    if let Some(msg) = p.status_message {
        let mut iv = e
            .instance_view
            .clone()
            .unwrap_or_else(|| success_view(e, now));
        iv.message = msg;
        iv.time = now;
        e.instance_view = Some(iv);
    }
}

fn render_view(e: &Extension, iv: &InstanceView, clock: &Clock) -> Value {
    json!({
        "name": e.name,
        "type": e.extension_type,
        "typeHandlerVersion": e.type_handler_version,
        "status": {
            "code": iv.code,
            "level": iv.level,
            "displayStatus": iv.display_status,
            "message": iv.message,
            "time": crate::timefmt::rfc3339(clock.to_real(iv.time)),
        },
    })
}

/// ARM JSON of an extension.
pub(crate) fn render(m: &Machine, e: &Extension, clock: &Clock) -> Value {
    let mut props = Map::new();
    props.insert("publisher".into(), json!(e.publisher));
    props.insert("type".into(), json!(e.extension_type));
    props.insert("typeHandlerVersion".into(), json!(e.type_handler_version));
    props.insert(
        "autoUpgradeMinorVersion".into(),
        json!(e.auto_upgrade_minor_version),
    );
    if let Some(v) = e.enable_automatic_upgrade {
        props.insert("enableAutomaticUpgrade".into(), json!(v));
    }
    if let Some(t) = &e.force_update_tag {
        props.insert("forceUpdateTag".into(), json!(t));
    }
    props.insert("settings".into(), e.settings.clone());
    // Protected settings are write-only: always echoed as `{}` (Extension_Get.json).
    props.insert("protectedSettings".into(), json!({}));
    props.insert("provisioningState".into(), json!(e.provisioning_state));
    if let Some(iv) = &e.instance_view {
        props.insert("instanceView".into(), render_view(e, iv, clock));
    }
    let mut v = json!({
        "id": format!("{}/extensions/{}", m.id, e.name),
        "name": e.name,
        "type": FULL_TYPE,
        "location": e.location,
        "properties": props,
    });
    if let (Some(tags), Some(obj)) = (&e.tags, v.as_object_mut()) {
        obj.insert("tags".into(), tags.clone());
    }
    v
}

/// GET list of a machine's extensions.
pub(crate) fn list(inner: &Inner, req: &Req, sub: &str, rg: &str, machine: &str) -> Resp {
    if req.method != http::Method::GET {
        return method_not_allowed(req);
    }
    let key = machine_key(sub, rg, machine);
    let cfg = inner.cfg();
    let now = inner.clock.now();
    let mut w = inner.world();
    crate::sim::sync_machine(&mut w, &cfg, &key, now);
    let Some(m) = w.machines.get(&key) else {
        return parent_not_found(machine);
    };
    let value: Vec<Value> = m
        .extensions
        .values()
        .map(|e| render(m, e, &inner.clock))
        .collect();
    Resp::json(200, &json!({ "value": value }))
}

/// Validated PUT/PATCH body.
#[derive(Debug, Default)]
struct Body {
    location: Option<String>,
    tags: Option<Value>,
    publisher: Option<String>,
    extension_type: Option<String>,
    type_handler_version: Option<String>,
    enable_automatic_upgrade: Option<bool>,
    auto_upgrade_minor_version: Option<bool>,
    settings: Option<Value>,
    force_update_tag: Option<String>,
}

fn parse_body(obj: &Map<String, Value>) -> Result<Body, Resp> {
    let mut b = Body::default();
    match obj.get("location") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => b.location = Some(s.clone()),
        Some(_) => {
            return Err(invalid_content(
                "Error converting value to type 'String'. Path 'location'",
            ));
        }
    }
    match obj.get("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(t)) if t.values().all(Value::is_string) => {
            b.tags = Some(Value::Object(t.clone()));
        }
        Some(_) => {
            return Err(invalid_content(
                "Tags must be an object of string values. Path 'tags'",
            ));
        }
    }
    let props = match obj.get("properties") {
        None | Some(Value::Null) => return Ok(b),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Err(invalid_content(
                "Unexpected JSON token for 'properties': expected an object. Path 'properties'",
            ));
        }
    };
    let string = |name: &str| -> Result<Option<String>, Resp> {
        match props.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid_content(&format!(
                "Error converting value to type 'String'. Path 'properties.{name}'"
            ))),
        }
    };
    let boolean = |name: &str| -> Result<Option<bool>, Resp> {
        match props.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(v)) => Ok(Some(*v)),
            Some(_) => Err(invalid_content(&format!(
                "Error converting value to type 'Boolean'. Path 'properties.{name}'"
            ))),
        }
    };
    let object = |name: &str| -> Result<Option<Value>, Resp> {
        match props.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
            Some(_) => Err(invalid_content(&format!(
                "Unexpected JSON token for '{name}': expected an object. Path 'properties.{name}'"
            ))),
        }
    };
    b.publisher = string("publisher")?;
    b.extension_type = string("type")?;
    b.type_handler_version = string("typeHandlerVersion")?;
    b.force_update_tag = string("forceUpdateTag")?;
    b.enable_automatic_upgrade = boolean("enableAutomaticUpgrade")?;
    b.auto_upgrade_minor_version = boolean("autoUpgradeMinorVersion")?;
    b.settings = object("settings")?;
    object("protectedSettings")?;
    Ok(b)
}

fn required(field: &str) -> Resp {
    Resp::json(
        400,
        &json!({"error": {
            "code": "InvalidParameter",
            "message": format!("The value of parameter '{field}' is null or empty."),
            "target": field,
        }}),
    )
    .header("x-ms-error-code", "InvalidParameter")
}

fn in_progress(name: &str) -> Resp {
    Resp::cloud_error(
        409,
        "OperationNotAllowed",
        &format!(
            "An operation is already in progress on extension '{name}'. Retry after it completes."
        ),
    )
}

/// GET/PUT/PATCH/DELETE of one extension.
pub(crate) fn handle(
    inner: &Inner,
    req: &Req,
    sub: &str,
    rg: &str,
    machine: &str,
    name: &str,
) -> Resp {
    let key = machine_key(sub, rg, machine);
    let ext_key = name.to_ascii_lowercase();
    let cfg = inner.cfg();
    let now = inner.clock.now();
    match req.method {
        http::Method::GET => {
            let mut w = inner.world();
            crate::sim::sync_machine(&mut w, &cfg, &key, now);
            let pending = w
                .machines
                .get(&key)
                .and_then(|m| m.extensions.get(&ext_key))
                .and_then(|e| e.pending_op.clone());
            if let Some(op) = pending {
                crate::sim::progress_op(&mut w, &cfg, &op, now, true);
            }
            let Some(m) = w.machines.get(&key) else {
                return parent_not_found(machine);
            };
            m.extensions.get(&ext_key).map_or_else(
                || not_found(FULL_TYPE, &format!("{machine}/{name}"), rg),
                |e| Resp::json(200, &render(m, e, &inner.clock)),
            )
        }
        http::Method::PUT | http::Method::PATCH => {
            let obj = match json_body(req) {
                Ok(o) => o,
                Err(r) => return r,
            };
            let body = match parse_body(&obj) {
                Ok(b) => b,
                Err(r) => return r,
            };
            write(inner, req, &cfg, &key, &ext_key, machine, name, &body, now)
        }
        http::Method::DELETE => {
            let mut w = inner.world();
            crate::sim::sync_machine(&mut w, &cfg, &key, now);
            let Some(m) = w.machines.get_mut(&key) else {
                return parent_not_found(machine);
            };
            let Some(e) = m.extensions.get_mut(&ext_key) else {
                return Resp::empty(204);
            };
            if e.pending_op.is_some() {
                return in_progress(name);
            }
            let location = m.location.clone();
            let api = req.api_version().unwrap_or("2025-01-13").to_owned();
            let Some(op_id) = crate::arm::lro::start(
                inner,
                &mut w,
                OpKind::Delete,
                &key,
                &ext_key,
                &location,
                &api,
                now,
            ) else {
                return parent_not_found(machine);
            };
            if let Some(e) = w
                .machines
                .get_mut(&key)
                .and_then(|m| m.extensions.get_mut(&ext_key))
            {
                e.provisioning_state = "Deleting".into();
                e.pending_op = Some(op_id.clone());
            }
            let Some(op) = w.operations.get(&op_id) else {
                return Resp::empty(202);
            };
            crate::arm::lro::with_headers(inner, Resp::empty(202), op, cfg.lro.retry_after_secs)
        }
        _ => method_not_allowed(req),
    }
}

#[allow(clippy::too_many_arguments, clippy::too_many_lines)] // PUT and PATCH share one path
fn write(
    inner: &Inner,
    req: &Req,
    cfg: &crate::config::EmulatorConfig,
    key: &str,
    ext_key: &str,
    machine: &str,
    name: &str,
    body: &Body,
    now: SystemTime,
) -> Resp {
    let is_put = req.method == http::Method::PUT;
    let mut w = inner.world();
    crate::sim::sync_machine(&mut w, cfg, key, now);
    let Some(m) = w.machines.get_mut(key) else {
        return parent_not_found(machine);
    };
    let existing = m.extensions.get(ext_key).cloned();
    if existing.as_ref().is_some_and(|e| e.pending_op.is_some()) {
        return in_progress(name);
    }
    let creating = existing.is_none();
    let mut e = if is_put {
        let Some(location) = body.location.clone().filter(|l| !l.trim().is_empty()) else {
            return Resp::cloud_error(
                400,
                "LocationRequired",
                "The location property is required for this definition.",
            );
        };
        let Some(publisher) = body.publisher.clone().filter(|p| !p.is_empty()) else {
            return required("publisher");
        };
        let Some(extension_type) = body.extension_type.clone().filter(|t| !t.is_empty()) else {
            return required("type");
        };
        Extension {
            name: existing
                .as_ref()
                .map_or_else(|| name.to_owned(), |e| e.name.clone()),
            location,
            tags: body.tags.clone(),
            publisher,
            extension_type,
            type_handler_version: resolve_version(body.type_handler_version.as_deref()),
            enable_automatic_upgrade: body.enable_automatic_upgrade,
            auto_upgrade_minor_version: body.auto_upgrade_minor_version.unwrap_or(false),
            settings: body.settings.clone().unwrap_or_else(|| json!({})),
            force_update_tag: body.force_update_tag.clone(),
            provisioning_state: String::new(),
            instance_view: existing.as_ref().and_then(|e| e.instance_view.clone()),
            pending_op: None,
            succeeded_at: existing.as_ref().and_then(|e| e.succeeded_at),
        }
    } else {
        let Some(mut e) = existing.clone() else {
            drop(w);
            return not_found(FULL_TYPE, &format!("{machine}/{name}"), "");
        };
        if body.tags.is_some() {
            e.tags.clone_from(&body.tags);
        }
        if let Some(v) = body.publisher.clone() {
            e.publisher = v;
        }
        if let Some(v) = body.extension_type.clone() {
            e.extension_type = v;
        }
        if body.type_handler_version.is_some() {
            e.type_handler_version = resolve_version(body.type_handler_version.as_deref());
        }
        if let Some(v) = body.enable_automatic_upgrade {
            e.enable_automatic_upgrade = Some(v);
        }
        if let Some(v) = body.auto_upgrade_minor_version {
            e.auto_upgrade_minor_version = v;
        }
        if let Some(v) = body.settings.clone() {
            e.settings = v;
        }
        if let Some(v) = body.force_update_tag.clone() {
            e.force_update_tag = Some(v);
        }
        e
    };
    e.provisioning_state = if creating { "Creating" } else { "Updating" }.into();
    let location = m.location.clone();
    m.extensions.insert(ext_key.to_owned(), e);
    let api = req.api_version().unwrap_or("2025-01-13").to_owned();
    let kind = if creating {
        OpKind::Create
    } else {
        OpKind::Update
    };
    let Some(op_id) =
        crate::arm::lro::start(inner, &mut w, kind, key, ext_key, &location, &api, now)
    else {
        return parent_not_found(machine);
    };
    let Some(m) = w.machines.get_mut(key) else {
        return parent_not_found(machine);
    };
    let Some(e) = m.extensions.get_mut(ext_key) else {
        return parent_not_found(name);
    };
    e.pending_op = Some(op_id.clone());
    let Some(e) = m.extensions.get(ext_key) else {
        return parent_not_found(name);
    };
    let rendered = render(m, e, &inner.clock);
    let Some(op) = w.operations.get(&op_id) else {
        return Resp::empty(202);
    };
    let resp = match cfg.lro.put_style {
        PutStyle::CreatedOrOk => Resp::json(if creating { 201 } else { 200 }, &rendered),
        PutStyle::Accepted => Resp::empty(202),
    };
    crate::arm::lro::with_headers(inner, resp, op, cfg.lro.retry_after_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_resolution() {
        assert_eq!(resolve_version(None), "1.0.1.30");
        assert_eq!(resolve_version(Some("1.0")), "1.0.1.30");
        assert_eq!(resolve_version(Some("2.1")), "2.1");
    }
}
