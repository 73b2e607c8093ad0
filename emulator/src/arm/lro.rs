//! ARM asynchronous operations for HybridCompute (CONTRACTS.md §3): the `Azure-AsyncOperation`
//! status resource and the `Location` result URL.

use std::time::SystemTime;

use serde_json::json;

use super::method_not_allowed;
use crate::config::EmulatorConfig;
use crate::emulator::Inner;
use crate::http::{Req, Resp};
use crate::state::{ExtensionBehavior, OpKind, OpStatus, Operation, World};

/// Normalised location segment (`East US` → `eastus`).
pub(crate) fn location_segment(location: &str) -> String {
    location.replace(' ', "").to_ascii_lowercase()
}

fn op_base(inner: &Inner, sub: &str, location: &str) -> String {
    format!(
        "{}/subscriptions/{sub}/providers/Microsoft.HybridCompute/locations/{}",
        inner.endpoint,
        location_segment(location)
    )
}

/// Adds `Azure-AsyncOperation`, `Location` and `Retry-After` for an operation.
pub(crate) fn with_headers(inner: &Inner, resp: Resp, op: &Operation, retry_after: u64) -> Resp {
    let base = op_base(inner, &op.subscription, &op.location);
    resp.header(
        "azure-asyncoperation",
        format!(
            "{base}/operationstatus/{}?api-version={}",
            op.id, op.api_version
        ),
    )
    .header(
        "location",
        format!(
            "{base}/operationresults/{}?api-version={}",
            op.id, op.api_version
        ),
    )
    .header("retry-after", retry_after.to_string())
}

/// Registers a new operation on an extension and returns its id.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    inner: &Inner,
    world: &mut World,
    kind: OpKind,
    machine_key: &str,
    ext_key: &str,
    location: &str,
    api_version: &str,
    now: SystemTime,
) -> Option<String> {
    let machine = world.machines.get(machine_key)?;
    let behavior: ExtensionBehavior = machine
        .behavior
        .clone()
        .unwrap_or_else(|| world.default_behavior.clone());
    let id = inner.random_id();
    let op = Operation {
        id: id.clone(),
        kind,
        machine: machine_key.to_owned(),
        extension: ext_key.to_owned(),
        subscription: machine.subscription.clone(),
        location: location.to_owned(),
        api_version: api_version.to_owned(),
        started: now,
        observed: 0,
        behavior,
        status: OpStatus::InProgress,
        ended: None,
    };
    world.operations.insert(id.clone(), op);
    Some(id)
}

fn observe(inner: &Inner, cfg: &EmulatorConfig, op_id: &str) -> Option<()> {
    let now = inner.clock.now();
    let mut w = inner.world();
    let machine = w.operations.get(op_id)?.machine.clone();
    crate::sim::sync_machine(&mut w, cfg, &machine, now);
    crate::sim::progress_op(&mut w, cfg, op_id, now, true);
    Some(())
}

fn lookup<'w>(w: &'w World, sub: &str, op: &str) -> Option<&'w Operation> {
    w.operations
        .get(op)
        .filter(|o| o.subscription.eq_ignore_ascii_case(sub))
}

fn op_not_found(op: &str) -> Resp {
    Resp::cloud_error(
        404,
        "ResourceNotFound",
        &format!("The operation '{op}' was not found."),
    )
}

/// GET `.../locations/{loc}/operationstatus/{op}`.
pub(crate) fn status(inner: &Inner, req: &Req, sub: &str, _location: &str, op: &str) -> Resp {
    if req.method != http::Method::GET {
        return method_not_allowed(req);
    }
    let cfg = inner.cfg();
    observe(inner, &cfg, op);
    let w = inner.world();
    let Some(o) = lookup(&w, sub, op) else {
        return op_not_found(op);
    };
    let mut body = json!({
        "id": format!("/subscriptions/{}/providers/Microsoft.HybridCompute/locations/{}/operationstatus/{}", o.subscription, location_segment(&o.location), o.id),
        "name": o.id,
        "startTime": crate::timefmt::rfc3339(inner.clock.to_real(o.started)),
    });
    let status = match &o.status {
        OpStatus::InProgress => "InProgress",
        OpStatus::Succeeded => "Succeeded",
        OpStatus::Failed { .. } => "Failed",
    };
    if let Some(obj) = body.as_object_mut() {
        obj.insert("status".into(), json!(status));
        if let Some(end) = o.ended {
            obj.insert(
                "endTime".into(),
                json!(crate::timefmt::rfc3339(inner.clock.to_real(end))),
            );
        }
        if let OpStatus::Failed { code, message } = &o.status {
            obj.insert("error".into(), json!({ "code": code, "message": message }));
        }
    }
    let resp = Resp::json(200, &body);
    if o.status == OpStatus::InProgress {
        resp.header("retry-after", cfg.lro.retry_after_secs.to_string())
    } else {
        resp
    }
}

/// GET `.../locations/{loc}/operationresults/{op}`: 202 while running, then 200 (resource) /
/// 204, or the error.
pub(crate) fn result(inner: &Inner, req: &Req, sub: &str, _location: &str, op: &str) -> Resp {
    if req.method != http::Method::GET {
        return method_not_allowed(req);
    }
    let cfg = inner.cfg();
    observe(inner, &cfg, op);
    let w = inner.world();
    let Some(o) = lookup(&w, sub, op) else {
        return op_not_found(op);
    };
    match &o.status {
        OpStatus::InProgress => with_headers(inner, Resp::empty(202), o, cfg.lro.retry_after_secs),
        OpStatus::Failed { code, message } => Resp::cloud_error(400, code, message),
        OpStatus::Succeeded => {
            if o.kind == OpKind::Delete {
                return Resp::empty(204);
            }
            let rendered = w.machines.get(&o.machine).and_then(|m| {
                m.extensions
                    .get(&o.extension)
                    .map(|e| super::extensions::render(m, e, &inner.clock))
            });
            rendered.map_or_else(|| Resp::empty(204), |v| Resp::json(200, &v))
        }
    }
}
