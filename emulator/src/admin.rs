//! The control API: plain HTTP on a separate loopback port, JSON in and out, mirroring the Rust
//! API of [`crate::Control`] for tests and demos that run the emulator as a process.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::{LroConfig, ThrottleConfig};
use crate::emulator::{Control, Inner};
use crate::faults::Fault;
use crate::http::{Req, Resp};
use crate::seed::Seed;
use crate::state::{
    AttestationStatusProps, ClusterSpec, ExtensionBehavior, ExtensionPatch, ExtensionSpec,
    FederatedCredential, ProviderSpec, VmSpec,
};

fn err(status: u16, message: &str) -> Resp {
    Resp::json(status, &json!({ "error": message }))
}

fn ok() -> Resp {
    Resp::json(200, &json!({ "ok": true }))
}

fn body<T: DeserializeOwned>(req: &Req) -> Result<T, Resp> {
    serde_json::from_slice(&req.body).map_err(|e| err(400, &format!("invalid body: {e}")))
}

fn result(r: Result<(), crate::Error>) -> Resp {
    match r {
        Ok(()) => ok(),
        Err(crate::Error::NotFound(m)) => err(404, &format!("not found: {m}")),
        Err(e) => err(400, &e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MachineBody {
    id: String,
    location: String,
    #[serde(default)]
    os_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MachineRef<T> {
    machine_id: String,
    #[serde(flatten)]
    rest: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Power {
    power_state: String,
}

#[derive(Deserialize)]
struct Flag {
    value: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Security {
    secure_boot_enabled: bool,
    enable_tpm: bool,
}

#[derive(Deserialize)]
struct Status {
    status: Option<AttestationStatusProps>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Behavior {
    #[serde(default)]
    machine_id: Option<String>,
    behavior: ExtensionBehavior,
}

#[derive(Deserialize)]
struct ExtPut {
    extension: ExtensionSpec,
}

#[derive(Deserialize)]
struct ExtPatch {
    name: String,
    patch: ExtensionPatch,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyBody {
    provider: String,
    attestation_type: String,
    text: String,
}

#[derive(Deserialize)]
struct Advance {
    seconds: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sp {
    tenant: String,
    client_id: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default, flatten)]
    federated: FederatedCredential,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mi {
    #[serde(default)]
    client_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Mint {
    tenant: String,
    client_id: String,
    audience: String,
    lifetime_secs: i64,
}

/// Handles one control request.
#[allow(clippy::too_many_lines)] // one flat table of routes reads best
pub(crate) fn handle(inner: &Arc<Inner>, req: &Req) -> Resp {
    let ctl = Control::from_inner(inner);
    let q = |name: &str| req.q(name).unwrap_or("").to_owned();
    macro_rules! parse {
        ($t:ty) => {
            match body::<$t>(req) {
                Ok(v) => v,
                Err(r) => return r,
            }
        };
    }
    let segs = req.segments();
    match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["healthz"]) => Resp::json(200, &json!({"status": "ok"})),
        ("GET", ["info"]) => Resp::json(
            200,
            &json!({"endpoint": ctl.endpoint(), "ca": ctl.ca_pem(), "clockOffsetSeconds": ctl.clock_offset().as_secs_f64()}),
        ),
        ("POST", ["reset"]) => result(ctl.reset()),
        ("POST", ["seed"]) => {
            let text = String::from_utf8_lossy(&req.body);
            match Seed::parse(&text) {
                Ok(seed) => result(ctl.apply_seed(&seed)),
                Err(e) => err(400, &e.to_string()),
            }
        }
        ("POST", ["tenants"]) => {
            let v: Value = parse!(Value);
            ctl.add_tenant(v.get("tenant").and_then(Value::as_str).unwrap_or_default());
            ok()
        }
        ("POST", ["service-principals"]) => {
            let sp = parse!(Sp);
            ctl.add_service_principal(
                &sp.tenant,
                &sp.client_id,
                sp.secret.as_deref().unwrap_or_default(),
            );
            ok()
        }
        ("POST", ["federated-clients"]) => {
            let sp = parse!(Sp);
            ctl.add_federated_credential(&sp.tenant, &sp.client_id, sp.federated);
            ok()
        }
        ("POST", ["managed-identities"]) => {
            let mi = parse!(Mi);
            Resp::json(
                200,
                &json!({"clientId": ctl.enable_managed_identity(mi.client_id.as_deref())}),
            )
        }
        ("POST", ["tokens"]) => {
            let m = parse!(Mint);
            match ctl.mint_token(&m.tenant, &m.client_id, &m.audience, m.lifetime_secs) {
                Ok(t) => Resp::json(200, &json!({"accessToken": t})),
                Err(e) => err(500, &e.to_string()),
            }
        }
        ("PUT", ["clusters"]) => result(ctl.put_cluster(parse!(ClusterSpec))),
        ("PUT", ["machines"]) => {
            let m = parse!(MachineBody);
            result(ctl.put_machine(
                &m.id,
                &m.location,
                m.os_type.as_deref().unwrap_or("Windows"),
            ))
        }
        ("DELETE", ["machines"]) => {
            Resp::json(200, &json!({"deleted": ctl.delete_machine(&q("id"))}))
        }
        ("PUT", ["vm-instances"]) => {
            let b = parse!(MachineRef<Value>);
            let spec: VmSpec =
                match serde_json::from_value(b.rest.get("vm").cloned().unwrap_or(Value::Null)) {
                    Ok(s) => s,
                    Err(e) => return err(400, &format!("invalid vm: {e}")),
                };
            result(ctl.put_vm_instance(&b.machine_id, spec))
        }
        ("DELETE", ["vm-instances"]) => result(ctl.remove_vm_instance(&q("machineId"))),
        ("POST", ["vm", "power"]) => {
            let b = parse!(MachineRef<Power>);
            result(ctl.set_power_state(&b.machine_id, &b.rest.power_state))
        }
        ("POST", ["vm", "compromised"]) => {
            let b = parse!(MachineRef<Flag>);
            result(ctl.set_compromised(&b.machine_id, b.rest.value))
        }
        ("POST", ["vm", "security"]) => {
            let b = parse!(MachineRef<Security>);
            result(ctl.set_vm_security(
                &b.machine_id,
                b.rest.secure_boot_enabled,
                b.rest.enable_tpm,
            ))
        }
        ("POST", ["guest", "reporting"]) => {
            let b = parse!(MachineRef<Flag>);
            result(ctl.set_guest_reporting(&b.machine_id, b.rest.value))
        }
        ("POST", ["guest", "report-now"]) => {
            let b = parse!(MachineRef<Value>);
            result(ctl.report_attestation_now(&b.machine_id))
        }
        ("PUT", ["attestation-status"]) => {
            let b = parse!(MachineRef<Status>);
            result(ctl.set_attestation_status(&b.machine_id, b.rest.status))
        }
        ("GET", ["attestation-status"]) => match ctl.attestation_status(&q("machineId")) {
            Ok(s) => Resp::json(200, &json!({"status": s})),
            Err(e) => err(404, &e.to_string()),
        },
        ("PUT", ["extension-behavior"]) => {
            let b = parse!(Behavior);
            if let Some(m) = b.machine_id {
                result(ctl.set_extension_behavior(&m, b.behavior))
            } else {
                ctl.set_default_extension_behavior(b.behavior);
                ok()
            }
        }
        ("PUT", ["extensions"]) => {
            let b = parse!(MachineRef<ExtPut>);
            result(ctl.put_extension(&b.machine_id, b.rest.extension))
        }
        ("PATCH", ["extensions"]) => {
            let b = parse!(MachineRef<ExtPatch>);
            result(ctl.modify_extension(&b.machine_id, &b.rest.name, b.rest.patch))
        }
        ("GET", ["extensions"]) => match ctl.extension(&q("machineId"), &q("name")) {
            Some(v) => Resp::json(200, &v),
            None => err(404, "no such extension"),
        },
        ("DELETE", ["extensions"]) => Resp::json(
            200,
            &json!({"deleted": ctl.remove_extension(&q("machineId"), &q("name"))}),
        ),
        ("GET", ["extension-operations"]) => Resp::json(
            200,
            &json!({"count": ctl.extension_operations(&q("machineId"))}),
        ),
        ("PUT", ["attestation-providers"]) => {
            match ctl.put_attestation_provider(&parse!(ProviderSpec)) {
                Ok(v) => Resp::json(200, &v),
                Err(e) => err(400, &e.to_string()),
            }
        }
        ("GET", ["attestation-providers"]) => match ctl.attestation_provider(&q("id")) {
            Some(v) => Resp::json(200, &v),
            None => err(404, "no such provider"),
        },
        ("DELETE", ["attestation-providers"]) => Resp::json(
            200,
            &json!({"deleted": ctl.delete_attestation_provider(&q("id"))}),
        ),
        ("GET", ["policies"]) => match ctl.policy(&q("provider"), &q("type")) {
            Ok(p) => Resp::json(200, &json!(p)),
            Err(e) => err(404, &e.to_string()),
        },
        ("PUT", ["policies"]) => {
            let b = parse!(PolicyBody);
            result(ctl.set_policy(&b.provider, &b.attestation_type, &b.text))
        }
        ("POST", ["clock", "advance"]) => {
            let b = parse!(Advance);
            match Duration::try_from_secs_f64(b.seconds) {
                Ok(d) => {
                    ctl.advance_clock(d);
                    Resp::json(
                        200,
                        &json!({"offsetSeconds": ctl.clock_offset().as_secs_f64()}),
                    )
                }
                Err(e) => err(400, &e.to_string()),
            }
        }
        ("GET", ["clock"]) => Resp::json(
            200,
            &json!({"offsetSeconds": ctl.clock_offset().as_secs_f64(), "virtualNow": crate::timefmt::rfc3339(ctl.virtual_now())}),
        ),
        ("POST", ["faults"]) => match ctl.add_fault(parse!(Fault)) {
            Ok(id) => Resp::json(200, &json!({"id": id})),
            Err(e) => err(400, &e.to_string()),
        },
        ("DELETE", ["faults"]) => {
            ctl.clear_faults();
            ok()
        }
        ("DELETE", ["faults", id]) => Resp::json(
            200,
            &json!({"deleted": id.parse().is_ok_and(|id| ctl.remove_fault(id))}),
        ),
        ("GET", ["faults", id]) => match id.parse().ok().and_then(|id| ctl.fault_hits(id)) {
            Some(h) => Resp::json(200, &json!({"hits": h})),
            None => err(404, "no such fault"),
        },
        ("GET", ["requests"]) => Resp::json(200, &json!(ctl.requests())),
        ("DELETE", ["requests"]) => {
            ctl.clear_requests();
            ok()
        }
        ("PUT", ["config", "lro"]) => {
            ctl.set_lro_config(parse!(LroConfig));
            ok()
        }
        ("PUT", ["config", "throttle"]) => {
            ctl.set_throttle_config(parse!(ThrottleConfig));
            ok()
        }
        _ => err(
            404,
            &format!("no control route {} {}", req.method, req.path),
        ),
    }
}
