//! The extension the spec asks for, as the body of the ARM PUT (pure): the documented
//! `az connectedmachine extension create --name GuestAttestation --type GuestAttestation
//! --publisher ... --settings ... --enable-automatic-upgrade` as a resource.

use ring::digest;
use serde_json::Value;

use super::preflight::{Unmet, VmFacts, preflight};
use super::settings::{Endpoints, SourceProblem, render_settings};
use crate::azure::{Machine, MachineExtensionSpec, MachineExtensionSpecProperties};
use crate::crd::GuestAttestationExtensionSpec;
use crate::crd::extension::Publisher;

/// The extension's name on the machine (`--name GuestAttestation`).
pub const EXTENSION_NAME: &str = "GuestAttestation";

/// The extension's type (`--type GuestAttestation`).
pub const EXTENSION_TYPE: &str = "GuestAttestation";

/// The publisher's wire name.
pub fn publisher_name(p: Publisher) -> &'static str {
    match p {
        Publisher::WindowsAttestation => "Microsoft.Azure.Security.WindowsAttestation",
        Publisher::LinuxAttestation => "Microsoft.Azure.Security.LinuxAttestation",
    }
}

/// The publisher: the spec's, else the one for the machine's OS (Windows or Linux, compared
/// case-insensitively); None when neither tells.
pub fn publisher(spec: Option<Publisher>, os_type: Option<&str>) -> Option<&'static str> {
    if let Some(p) = spec {
        return Some(publisher_name(p));
    }
    match os_type {
        Some(os) if os.eq_ignore_ascii_case("windows") => {
            Some(publisher_name(Publisher::WindowsAttestation))
        }
        Some(os) if os.eq_ignore_ascii_case("linux") => {
            Some(publisher_name(Publisher::LinuxAttestation))
        }
        _ => None,
    }
}

/// The PUT body: name and type GuestAttestation, the publisher, `enableAutomaticUpgrade`,
/// `typeHandlerVersion` only when pinned, the location and the rendered settings.
pub fn desired_extension(
    spec: &GuestAttestationExtensionSpec,
    publisher: &str,
    location: &str,
    settings: Value,
) -> MachineExtensionSpec {
    MachineExtensionSpec {
        location: location.to_owned(),
        tags: std::collections::BTreeMap::new(),
        properties: MachineExtensionSpecProperties {
            force_update_tag: None,
            publisher: publisher.to_owned(),
            extension_type: EXTENSION_TYPE.to_owned(),
            type_handler_version: spec.type_handler_version.clone(),
            enable_automatic_upgrade: Some(spec.enable_automatic_upgrade),
            auto_upgrade_minor_version: None,
            settings: Some(settings),
        },
    }
}

/// SHA-256 (hex) of what the operator asks Azure for (publisher, type, version pin, automatic
/// upgrade and settings; not the location, which Azure cannot change). Kept in
/// status.settingsHash when applied or found in sync, it tells a change of the spec (or of the
/// cluster's endpoints) from a change made outside the operator.
pub fn desired_hash(desired: &MachineExtensionSpec) -> String {
    // serde_json writes object keys in a fixed order, so equal values hash equally.
    let bytes = serde_json::to_vec(&desired.properties).unwrap_or_default();
    digest::digest(&digest::SHA256, &bytes)
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// What the target extension is derived from.
#[derive(Clone, Copy, Debug)]
pub struct TargetFacts<'a> {
    /// The Arc machine (None: it does not exist).
    pub machine: Option<&'a Machine>,
    /// The VM instance's facts (None: the machine has no VM instance).
    pub vm: Option<&'a VmFacts>,
    /// The settings' endpoints, or why they are unknown.
    pub endpoints: &'a Result<Endpoints, SourceProblem>,
}

/// The extension to PUT, or every unmet prerequisite (in the order: machine, VM, settings
/// source, publisher, location). Nothing is deployed unless all hold.
pub fn target(
    spec: &GuestAttestationExtensionSpec,
    facts: TargetFacts<'_>,
) -> Result<MachineExtensionSpec, Vec<Unmet>> {
    let Some(machine) = facts.machine else {
        return Err(vec![Unmet::MachineNotFound]);
    };
    let mut unmet = match facts.vm {
        None => vec![Unmet::VmInstanceNotFound],
        Some(vm) => preflight(vm),
    };
    if let Err(p) = facts.endpoints {
        unmet.push(Unmet::Source(p.clone()));
    }
    let os_type = machine.properties.os_type.as_deref();
    let publisher = publisher(spec.publisher, os_type);
    if publisher.is_none() {
        unmet.push(Unmet::PublisherUnknown {
            os_type: os_type.map(str::to_owned),
        });
    }
    let location = spec
        .location
        .as_deref()
        .or(machine.location.as_deref())
        .filter(|l| !l.is_empty());
    if location.is_none() {
        unmet.push(Unmet::LocationUnknown);
    }
    match (unmet.is_empty(), facts.endpoints, publisher, location) {
        (true, Ok(endpoints), Some(publisher), Some(location)) => Ok(desired_extension(
            spec,
            publisher,
            location,
            render_settings(endpoints, &spec.settings),
        )),
        _ => Err(unmet),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: Value) -> GuestAttestationExtensionSpec {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> Value {
        serde_json::json!({
            "machineId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/vm1",
            "clusterId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.AzureStackHCI/clusters/c1"
        })
    }

    #[test]
    fn publisher_from_spec_or_os() {
        assert_eq!(
            publisher(None, Some("Windows")),
            Some("Microsoft.Azure.Security.WindowsAttestation")
        );
        assert_eq!(
            publisher(None, Some("linux")),
            Some("Microsoft.Azure.Security.LinuxAttestation")
        );
        assert_eq!(publisher(None, Some("Plan9")), None);
        assert_eq!(publisher(None, None), None);
        assert_eq!(
            publisher(Some(Publisher::LinuxAttestation), Some("Windows")),
            Some("Microsoft.Azure.Security.LinuxAttestation")
        );
    }

    #[test]
    fn put_body_matches_the_documented_command() {
        let settings = serde_json::json!({"AttestationConfig": {"isAzureStack": "true"}});
        let d = desired_extension(
            &spec(base()),
            "Microsoft.Azure.Security.WindowsAttestation",
            "eastus",
            settings.clone(),
        );
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({
                "location": "eastus",
                "properties": {
                    "publisher": "Microsoft.Azure.Security.WindowsAttestation",
                    "type": "GuestAttestation",
                    "enableAutomaticUpgrade": true,
                    "settings": settings
                }
            })
        );
    }

    #[test]
    fn version_only_when_pinned_and_upgrade_as_specified() {
        let mut s = base();
        s["typeHandlerVersion"] = "1.0.1.30".into();
        s["enableAutomaticUpgrade"] = false.into();
        let d = desired_extension(&spec(s), "p", "westus", Value::Null);
        assert_eq!(
            d.properties.type_handler_version.as_deref(),
            Some("1.0.1.30")
        );
        assert_eq!(d.properties.enable_automatic_upgrade, Some(false));
        assert_eq!(d.location, "westus");
    }

    fn machine(os: Option<&str>, location: Option<&str>) -> Machine {
        serde_json::from_value(serde_json::json!({
            "location": location, "properties": {"osType": os}
        }))
        .unwrap()
    }

    #[allow(clippy::unnecessary_wraps)] // the shape TargetFacts takes
    fn endpoints() -> Result<Endpoints, SourceProblem> {
        Ok(Endpoints {
            maa_endpoint: "https://maa".into(),
            relying_party_endpoint: "https://rp".into(),
            cluster_id: "/c".into(),
            cluster_aad_tenant_id: "t".into(),
        })
    }

    fn trusted() -> VmFacts {
        VmFacts {
            security_type: Some(crate::azure::SecurityType::TrustedLaunch),
            tpm_enabled: Some(true),
            secure_boot_enabled: Some(true),
            network_interfaces: Some(1),
        }
    }

    #[test]
    fn target_when_everything_holds() {
        let m = machine(Some("Linux"), Some("eastus"));
        let vm = trusted();
        let e = endpoints();
        let d = target(
            &spec(base()),
            TargetFacts {
                machine: Some(&m),
                vm: Some(&vm),
                endpoints: &e,
            },
        )
        .unwrap();
        assert_eq!(d.location, "eastus");
        assert_eq!(
            d.properties.publisher,
            "Microsoft.Azure.Security.LinuxAttestation"
        );
        let settings = d.properties.settings.unwrap();
        assert_eq!(
            settings["AttestationConfig"]["MaaSettings"]["maaEndpoint"],
            "https://maa"
        );
        // spec.location wins over the machine's.
        let mut s = base();
        s["location"] = "westus".into();
        let d = target(
            &spec(s),
            TargetFacts {
                machine: Some(&m),
                vm: Some(&vm),
                endpoints: &e,
            },
        )
        .unwrap();
        assert_eq!(d.location, "westus");
    }

    #[test]
    fn target_names_every_unmet_item() {
        let e = endpoints();
        assert_eq!(
            target(
                &spec(base()),
                TargetFacts {
                    machine: None,
                    vm: None,
                    endpoints: &e
                }
            )
            .unwrap_err(),
            vec![Unmet::MachineNotFound]
        );
        let m = machine(None, None);
        let vm = VmFacts {
            tpm_enabled: Some(false),
            ..trusted()
        };
        let bad = Err(SourceProblem::AttestationNotConfigured {
            cluster: "/c".into(),
            missing: "isolatedVmAttestationConfiguration",
        });
        let unmet = target(
            &spec(base()),
            TargetFacts {
                machine: Some(&m),
                vm: Some(&vm),
                endpoints: &bad,
            },
        )
        .unwrap_err();
        assert_eq!(unmet.len(), 4, "{unmet:?}");
        assert_eq!(unmet[0], Unmet::TpmDisabled);
        assert_eq!(unmet[1].reason(), "AttestationNotConfigured");
        assert_eq!(unmet[2], Unmet::PublisherUnknown { os_type: None });
        assert_eq!(unmet[3], Unmet::LocationUnknown);
        let unmet = target(
            &spec(base()),
            TargetFacts {
                machine: Some(&m),
                vm: None,
                endpoints: &e,
            },
        )
        .unwrap_err();
        assert_eq!(unmet[0], Unmet::VmInstanceNotFound);
    }

    #[test]
    fn hash_follows_what_is_asked_not_where() {
        let a = desired_extension(&spec(base()), "p", "eastus", serde_json::json!({"a": "1"}));
        let b = desired_extension(&spec(base()), "p", "westus", serde_json::json!({"a": "1"}));
        let c = desired_extension(&spec(base()), "p", "eastus", serde_json::json!({"a": "2"}));
        assert_eq!(desired_hash(&a), desired_hash(&b));
        assert_ne!(desired_hash(&a), desired_hash(&c));
        assert_eq!(desired_hash(&a).len(), 64);
    }
}
