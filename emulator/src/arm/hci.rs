//! `Microsoft.AzureStackHCI`: clusters (GET), VM instances (GET) and attestation status (GET)
//! (CONTRACTS.md §4 and §5).

use serde_json::{Value, json};

use super::{machine_key, method_not_allowed, not_found, parent_not_found};
use crate::clock::Clock;
use crate::emulator::Inner;
use crate::http::{Req, Resp};
use crate::state::{AttestationStatusProps, Machine, StatusSource};

/// GET a cluster (seeded only).
pub(crate) fn cluster(inner: &Inner, req: &Req, sub: &str, rg: &str, name: &str) -> Resp {
    if req.method != http::Method::GET {
        return method_not_allowed(req);
    }
    let key = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.AzureStackHCI/clusters/{name}"
    )
    .to_ascii_lowercase();
    let w = inner.world();
    let Some(c) = w.clusters.get(&key) else {
        return not_found("Microsoft.AzureStackHCI/clusters", name, rg);
    };
    let s = &c.spec;
    let cluster_name = s.id.rsplit('/').next().unwrap_or(name);
    let mut props = json!({
        "provisioningState": "Succeeded",
        "status": "ConnectedRecently",
        "connectivityStatus": "Connected",
        "cloudId": c.cloud_id,
        "aadTenantId": s.aad_tenant_id,
    });
    if let Some(obj) = props.as_object_mut() {
        if let Some(cid) = &s.aad_client_id {
            obj.insert("aadClientId".into(), json!(cid));
        }
        if let Some(cfg) = &s.isolated_vm_attestation_configuration {
            obj.insert("isolatedVmAttestationConfiguration".into(), json!(cfg));
        }
    }
    Resp::json(
        200,
        &json!({
            "id": s.id,
            "name": cluster_name,
            "type": "Microsoft.AzureStackHCI/clusters",
            "location": s.location,
            "tags": {},
            "properties": props,
        }),
    )
}

fn vm_instance_id(m: &Machine) -> String {
    format!(
        "{}/providers/Microsoft.AzureStackHCI/virtualMachineInstances/default",
        m.id
    )
}

/// ARM JSON of a VM instance (shape of `VirtualMachineInstances_Get.json`).
pub(crate) fn render_vm(m: &Machine) -> Option<Value> {
    let vm = m.vm.as_ref()?;
    let s = &vm.spec;
    let custom_location = s.custom_location.clone().unwrap_or_else(|| {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ExtendedLocation/customLocations/{}-cl",
            m.subscription, m.resource_group, m.resource_group
        )
    });
    let mut security = json!({
        "enableTPM": s.enable_tpm,
        "uefiSettings": { "secureBootEnabled": s.secure_boot_enabled },
    });
    if let (Some(t), Some(obj)) = (&s.security_type, security.as_object_mut()) {
        obj.insert("securityType".into(), json!(t));
    }
    let nics: Vec<Value> = s
        .network_interfaces
        .iter()
        .map(|id| json!({ "id": id }))
        .collect();
    let mut props = json!({
        "hardwareProfile": { "vmSize": "Default" },
        "networkProfile": { "networkInterfaces": nics },
        "osProfile": { "computerName": m.name },
        "securityProfile": security,
        "storageProfile": { "osDisk": { "osType": s.os_type } },
        "provisioningState": "Succeeded",
        "status": {
            "powerState": s.power_state,
            "provisioningStatus": { "status": "Succeeded" },
        },
        "instanceView": {
            "vmAgent": {
                "vmConfigAgentVersion": "1.0.0",
                "statuses": [{
                    "code": "ProvisioningState/succeeded",
                    "level": "Info",
                    "displayStatus": "Connected",
                    "message": "Successfully established connection with mocguestagent",
                }],
            },
        },
    });
    if s.security_type.is_some()
        && let Some(obj) = props.as_object_mut()
    {
        obj.insert("vmId".into(), json!(vm.vm_id));
    }
    Some(json!({
        "id": vm_instance_id(m),
        "name": "default",
        "type": "Microsoft.AzureStackHCI/virtualMachineInstances",
        "extendedLocation": { "name": custom_location, "type": "CustomLocation" },
        "properties": props,
    }))
}

/// GET `.../virtualMachineInstances/default`.
pub(crate) fn vm_instance(inner: &Inner, req: &Req, sub: &str, rg: &str, machine: &str) -> Resp {
    if req.method != http::Method::GET {
        return method_not_allowed(req);
    }
    let key = machine_key(sub, rg, machine);
    let w = inner.world();
    let Some(m) = w.machines.get(&key) else {
        return parent_not_found(machine);
    };
    render_vm(m).map_or_else(
        || {
            not_found(
                "Microsoft.AzureStackHCI/virtualMachineInstances",
                "default",
                rg,
            )
        },
        |v| Resp::json(200, &v),
    )
}

/// The properties the status GET returns now (`None` = not reported).
pub(crate) fn status_props(m: &Machine, clock: &Clock) -> Option<AttestationStatusProps> {
    match m.guest.status.as_ref()? {
        StatusSource::Manual(p) => Some(p.clone()),
        StatusSource::Simulated { at, props } => {
            let mut p = props.clone();
            p.timestamp = Some(crate::timefmt::format_status_timestamp(clock.to_real(*at)));
            Some(p)
        }
    }
}

/// GET `.../virtualMachineInstances/default/attestationStatus/default`.
pub(crate) fn attestation_status(
    inner: &Inner,
    req: &Req,
    sub: &str,
    rg: &str,
    machine: &str,
) -> Resp {
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
    if m.vm.is_none() {
        return parent_not_found("default");
    }
    let Some(props) = status_props(m, &inner.clock) else {
        return not_found(
            "Microsoft.AzureStackHCI/virtualMachineInstances/default/attestationStatus",
            "default",
            rg,
        );
    };
    Resp::json(
        200,
        &json!({
            "id": format!("{}/attestationStatus/default", vm_instance_id(m)),
            "name": "default",
            "type": "Microsoft.AzureStackHCI/virtualMachineInstances/attestationStatus",
            "properties": props,
        }),
    )
}
