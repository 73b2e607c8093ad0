//! Seed documents (JSON or YAML): identities, clusters, machines with their VMs, extensions and
//! statuses, attestation providers and faults, applied at start or through the control API.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::emulator::Control;
use crate::faults::Fault;
use crate::state::{
    AttestationStatusProps, ClusterSpec, ExtensionBehavior, ExtensionSpec, FederatedCredential,
    ProviderSpec, VmSpec,
};

/// A whole emulated world.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Seed {
    /// Entra tenants and their app registrations.
    pub tenants: Vec<TenantSeed>,
    /// IMDS managed identities (`clientId: null` = system-assigned).
    pub managed_identities: Vec<ManagedIdentitySeed>,
    /// Azure Local clusters.
    pub clusters: Vec<ClusterSpec>,
    /// Arc machines with their VM instance, extensions and status.
    pub machines: Vec<MachineSeed>,
    /// Attestation providers that already exist.
    pub attestation_providers: Vec<ProviderSpec>,
    /// Faults armed from the start.
    pub faults: Vec<Fault>,
}

/// A tenant.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TenantSeed {
    /// Tenant id.
    pub id: String,
    /// Apps with client secrets.
    pub service_principals: Vec<ServicePrincipalSeed>,
    /// Apps with federated credentials (workload identity).
    pub federated_clients: Vec<FederatedClientSeed>,
}

/// An app registration with a secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipalSeed {
    /// Client (application) id.
    pub client_id: String,
    /// Client secret.
    pub secret: String,
}

/// An app registration with a federated credential.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedClientSeed {
    /// Client (application) id.
    pub client_id: String,
    /// Optional issuer/subject constraints.
    #[serde(flatten)]
    pub credential: FederatedCredential,
}

/// A managed identity.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ManagedIdentitySeed {
    /// User-assigned client id; `None` for the system-assigned identity.
    pub client_id: Option<String>,
}

/// A machine and what is on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineSeed {
    /// `/subscriptions/.../providers/Microsoft.HybridCompute/machines/{name}`.
    pub id: String,
    /// Region.
    pub location: String,
    /// `Windows` (default) or `Linux`.
    #[serde(default = "windows")]
    pub os_type: String,
    /// The Azure Local VM instance, if any.
    #[serde(default)]
    pub vm: Option<VmSpec>,
    /// Extensions already installed.
    #[serde(default)]
    pub extensions: Vec<ExtensionSpec>,
    /// How extension operations end on this machine.
    #[serde(default)]
    pub extension_behavior: Option<ExtensionBehavior>,
    /// A fixed attestation status (takes the machine out of the guest simulation).
    #[serde(default)]
    pub attestation_status: Option<AttestationStatusProps>,
    /// The guest extension reports (default true).
    #[serde(default = "yes")]
    pub guest_reporting: bool,
    /// The VM's boot chain is compromised.
    #[serde(default)]
    pub compromised: bool,
}

fn windows() -> String {
    "Windows".into()
}

fn yes() -> bool {
    true
}

impl Seed {
    /// Parses JSON or YAML.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| Error::InvalidSeed(e.to_string()))
        } else {
            serde_yaml::from_str(text).map_err(|e| Error::InvalidSeed(e.to_string()))
        }
    }
}

pub(crate) fn apply(ctl: &Control, seed: &Seed) -> Result<(), Error> {
    for t in &seed.tenants {
        ctl.add_tenant(&t.id);
        for sp in &t.service_principals {
            ctl.add_service_principal(&t.id, &sp.client_id, &sp.secret);
        }
        for f in &t.federated_clients {
            ctl.add_federated_credential(&t.id, &f.client_id, f.credential.clone());
        }
    }
    for mi in &seed.managed_identities {
        ctl.enable_managed_identity(mi.client_id.as_deref());
    }
    for c in &seed.clusters {
        ctl.put_cluster(c.clone())?;
    }
    for p in &seed.attestation_providers {
        ctl.put_attestation_provider(p)?;
    }
    for m in &seed.machines {
        ctl.put_machine(&m.id, &m.location, &m.os_type)?;
        if let Some(b) = &m.extension_behavior {
            ctl.set_extension_behavior(&m.id, b.clone())?;
        }
        if let Some(vm) = &m.vm {
            ctl.put_vm_instance(&m.id, vm.clone())?;
            if m.compromised {
                ctl.set_compromised(&m.id, true)?;
            }
        }
        if !m.guest_reporting {
            ctl.set_guest_reporting(&m.id, false)?;
        }
        for e in &m.extensions {
            ctl.put_extension(&m.id, e.clone())?;
        }
        if let Some(s) = &m.attestation_status {
            ctl.set_attestation_status(&m.id, Some(s.clone()))?;
        }
    }
    for f in &seed.faults {
        ctl.add_fault(f.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_yaml_and_json() {
        let yaml = r"
tenants:
  - id: t1
    servicePrincipals: [{clientId: c1, secret: s1}]
    federatedClients: [{clientId: c2, subject: 'system:serviceaccount:ns:sa'}]
machines:
  - id: /subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/vm1
    location: eastus
    vm: {securityType: TrustedLaunch, enableTpm: true, secureBootEnabled: true, powerState: Running}
";
        let s = Seed::parse(yaml).expect("yaml");
        assert_eq!(
            s.tenants[0].federated_clients[0]
                .credential
                .subject
                .as_deref(),
            Some("system:serviceaccount:ns:sa")
        );
        assert_eq!(s.machines[0].os_type, "Windows");
        assert!(s.machines[0].guest_reporting);
        let json = r#"{"clusters":[{"id":"/subscriptions/s/resourceGroups/rg/providers/Microsoft.AzureStackHCI/clusters/c","location":"eastus","aadTenantId":"t"}]}"#;
        assert_eq!(Seed::parse(json).expect("json").clusters.len(), 1);
        assert!(Seed::parse("{not json").is_err());
    }
}
