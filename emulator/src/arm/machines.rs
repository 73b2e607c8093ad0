//! `Microsoft.HybridCompute/machines`: GET and list by resource group.

use serde_json::{Value, json};

use super::{machine_key, method_not_allowed, not_found};
use crate::emulator::Inner;
use crate::http::{Req, Resp};
use crate::state::Machine;

fn render(m: &Machine) -> Value {
    json!({
        "id": m.id,
        "name": m.name,
        "type": "Microsoft.HybridCompute/machines",
        "location": m.location,
        "kind": "HCI",
        "properties": {
            "provisioningState": "Succeeded",
            "status": "Connected",
            "osType": m.os_type.to_ascii_lowercase(),
            "agentVersion": "1.50.02995.1884",
            "vmId": crate::emulator::stable_uuid(&format!("arc|{}", m.id.to_ascii_lowercase())),
        },
    })
}

/// GET one machine.
pub(crate) fn get(inner: &Inner, req: &Req, sub: &str, rg: &str, name: &str) -> Resp {
    if req.method != http::Method::GET {
        return method_not_allowed(req);
    }
    let w = inner.world();
    w.machines.get(&machine_key(sub, rg, name)).map_or_else(
        || not_found("Microsoft.HybridCompute/machines", name, rg),
        |m| Resp::json(200, &render(m)),
    )
}

/// GET machines of a resource group.
pub(crate) fn list(inner: &Inner, req: &Req, sub: &str, rg: &str) -> Resp {
    if req.method != http::Method::GET {
        return method_not_allowed(req);
    }
    let w = inner.world();
    let value: Vec<Value> = w
        .machines
        .values()
        .filter(|m| {
            m.subscription.eq_ignore_ascii_case(sub) && m.resource_group.eq_ignore_ascii_case(rg)
        })
        .map(render)
        .collect();
    Resp::json(200, &json!({ "value": value }))
}
