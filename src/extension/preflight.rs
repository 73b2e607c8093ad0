//! The prerequisites the product documentation names for guest attestation, checked from the
//! VM instance (pure): a Trusted Launch VM with vTPM and Secure Boot enabled and at least one
//! network interface. Every unmet item is named, so one look at the condition tells the whole
//! story.

use std::fmt;

use crate::azure::{SecurityProfile, SecurityType, VmInstance};

/// What the preflight reads from the VM instance
/// (`.../providers/Microsoft.AzureStackHCI/virtualMachineInstances/default`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmFacts {
    /// `securityProfile.securityType` (`TrustedLaunch`, `ConfidentialVM`), None for a standard VM.
    pub security_type: Option<SecurityType>,
    /// `securityProfile.enableTPM`.
    pub tpm_enabled: Option<bool>,
    /// `securityProfile.uefiSettings.secureBootEnabled`.
    pub secure_boot_enabled: Option<bool>,
    /// How many entries `networkProfile.networkInterfaces` has; None when the VM instance as read
    /// does not tell (the check is then skipped rather than failing every VM).
    pub network_interfaces: Option<usize>,
}

impl VmFacts {
    /// The facts of a VM instance as the Azure client reads it.
    pub fn from_instance(vm: &VmInstance) -> Self {
        let sp = vm.properties.security_profile.as_ref();
        Self {
            security_type: sp.and_then(|s| s.security_type.clone()),
            tpm_enabled: sp.and_then(|s| s.enable_tpm),
            secure_boot_enabled: sp.and_then(SecurityProfile::secure_boot_enabled),
            network_interfaces: Some(
                vm.properties
                    .network_profile
                    .as_ref()
                    .map_or(0, |n| n.network_interfaces.len()),
            ),
        }
    }
}

/// One prerequisite that does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unmet {
    /// The Arc machine does not exist.
    MachineNotFound,
    /// The machine has no Azure Local VM instance (it is not an Azure Local VM).
    VmInstanceNotFound,
    /// The VM is not a Trusted Launch VM.
    NotTrustedLaunch {
        /// The security type found, if any.
        found: Option<String>,
    },
    /// vTPM is not enabled.
    TpmDisabled,
    /// Secure Boot is not enabled.
    SecureBootDisabled,
    /// The VM has no network interface (attestation needs network connectivity).
    NoNetworkInterface,
    /// Where the settings come from is not usable (cluster or AttestationProvider).
    Source(super::settings::SourceProblem),
    /// No publisher in the spec and the machine reports no OS type to choose one from.
    PublisherUnknown {
        /// The OS type the machine reports, if any.
        os_type: Option<String>,
    },
    /// No location in the spec and the machine reports none.
    LocationUnknown,
}

impl Unmet {
    /// The condition reason this item gives when it is the first one.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MachineNotFound => "MachineNotFound",
            Self::VmInstanceNotFound => "NotAnAzureLocalVm",
            Self::NotTrustedLaunch { .. }
            | Self::TpmDisabled
            | Self::SecureBootDisabled
            | Self::NoNetworkInterface => "PrerequisitesNotMet",
            Self::Source(p) => p.reason(),
            Self::PublisherUnknown { .. } => "PublisherUnknown",
            Self::LocationUnknown => "LocationUnknown",
        }
    }
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MachineNotFound => f.write_str("the Arc machine spec.machineId does not exist"),
            Self::VmInstanceNotFound => f.write_str(
                "the machine has no Azure Local VM instance (virtualMachineInstances/default): it is not an Azure Local VM",
            ),
            Self::NotTrustedLaunch { found: Some(t) } => {
                write!(f, "the security type is {t}, not TrustedLaunch")
            }
            Self::NotTrustedLaunch { found: None } => {
                f.write_str("the VM is not a Trusted Launch VM (no security type)")
            }
            Self::TpmDisabled => f.write_str("vTPM is not enabled (securityProfile.enableTPM)"),
            Self::SecureBootDisabled => f.write_str(
                "Secure Boot is not enabled (securityProfile.uefiSettings.secureBootEnabled)",
            ),
            Self::NoNetworkInterface => f.write_str(
                "the VM has no network interface (attestation needs network connectivity)",
            ),
            Self::Source(p) => p.fmt(f),
            Self::PublisherUnknown { os_type: Some(os) } => write!(
                f,
                "the machine's OS type {os:?} is neither Windows nor Linux: set spec.publisher"
            ),
            Self::PublisherUnknown { os_type: None } => f.write_str(
                "the machine reports no OS type to choose the publisher from: set spec.publisher",
            ),
            Self::LocationUnknown => {
                f.write_str("the machine reports no location: set spec.location")
            }
        }
    }
}

/// The VM's unmet prerequisites, in the document's order (empty when all hold). Absent
/// security settings count as not enabled.
pub fn preflight(vm: &VmFacts) -> Vec<Unmet> {
    let mut unmet = Vec::new();
    if vm.security_type != Some(SecurityType::TrustedLaunch) {
        unmet.push(Unmet::NotTrustedLaunch {
            found: vm.security_type.as_ref().map(|t| t.as_str().to_owned()),
        });
    }
    if vm.tpm_enabled != Some(true) {
        unmet.push(Unmet::TpmDisabled);
    }
    if vm.secure_boot_enabled != Some(true) {
        unmet.push(Unmet::SecureBootDisabled);
    }
    if vm.network_interfaces == Some(0) {
        unmet.push(Unmet::NoNetworkInterface);
    }
    unmet
}

/// The condition reason and message for a non-empty list: the first item's reason, every item
/// in the message.
pub fn summary(unmet: &[Unmet]) -> (&'static str, String) {
    let reason = unmet.first().map_or("PrerequisitesNotMet", Unmet::reason);
    let items: Vec<String> = unmet.iter().map(ToString::to_string).collect();
    (
        reason,
        format!(
            "not deployed: {} prerequisite(s) unmet: {}",
            unmet.len(),
            items.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> VmFacts {
        VmFacts {
            security_type: Some(SecurityType::TrustedLaunch),
            tpm_enabled: Some(true),
            secure_boot_enabled: Some(true),
            network_interfaces: Some(1),
        }
    }

    #[test]
    fn trusted_launch_vm_passes() {
        assert!(preflight(&trusted()).is_empty());
    }

    #[test]
    fn every_unmet_item_is_named() {
        let vm = VmFacts {
            security_type: None,
            tpm_enabled: Some(false),
            secure_boot_enabled: None,
            network_interfaces: Some(0),
        };
        let unmet = preflight(&vm);
        assert_eq!(
            unmet,
            vec![
                Unmet::NotTrustedLaunch { found: None },
                Unmet::TpmDisabled,
                Unmet::SecureBootDisabled,
                Unmet::NoNetworkInterface
            ]
        );
        let (reason, message) = summary(&unmet);
        assert_eq!(reason, "PrerequisitesNotMet");
        for needle in [
            "4 prerequisite",
            "Trusted Launch",
            "vTPM",
            "Secure Boot",
            "network interface",
        ] {
            assert!(message.contains(needle), "{needle}: {message}");
        }
    }

    #[test]
    fn each_item_alone() {
        type Change = fn(&mut VmFacts);
        let cases: [(Change, Unmet); 4] = [
            (
                |v| v.security_type = Some(SecurityType::ConfidentialVm),
                Unmet::NotTrustedLaunch {
                    found: Some("ConfidentialVM".into()),
                },
            ),
            (|v| v.tpm_enabled = Some(false), Unmet::TpmDisabled),
            (
                |v| v.secure_boot_enabled = Some(false),
                Unmet::SecureBootDisabled,
            ),
            (
                |v| v.network_interfaces = Some(0),
                Unmet::NoNetworkInterface,
            ),
        ];
        for (change, want) in cases {
            let mut vm = trusted();
            change(&mut vm);
            assert_eq!(preflight(&vm), vec![want]);
        }
    }

    #[test]
    fn unknown_nic_count_is_not_a_failure() {
        let vm = VmFacts {
            network_interfaces: None,
            ..trusted()
        };
        assert!(preflight(&vm).is_empty());
    }

    #[test]
    fn facts_from_the_documented_vm_instance() {
        let vm: VmInstance = serde_json::from_value(serde_json::json!({
            "properties": {"securityProfile": {"enableTpm": true, "securityType": "TrustedLaunch",
                "uefiSettings": {"secureBootEnabled": true}},
                "networkProfile": {"networkInterfaces": [{"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.AzureStackHCI/networkInterfaces/nic1"}]}}
        }))
        .unwrap();
        let facts = VmFacts::from_instance(&vm);
        assert_eq!(facts.security_type, Some(SecurityType::TrustedLaunch));
        assert_eq!(facts.tpm_enabled, Some(true));
        assert_eq!(facts.secure_boot_enabled, Some(true));
        assert_eq!(facts.network_interfaces, Some(1));
        assert!(preflight(&facts).is_empty());
    }

    #[test]
    fn a_vm_without_network_profile_has_no_interface() {
        let vm: VmInstance = serde_json::from_value(serde_json::json!({
            "properties": {"securityProfile": {"enableTPM": true, "securityType": "TrustedLaunch",
                "uefiSettings": {"secureBootEnabled": true}}}
        }))
        .unwrap();
        let facts = VmFacts::from_instance(&vm);
        assert_eq!(facts.network_interfaces, Some(0));
        assert_eq!(preflight(&facts).len(), 1);
    }

    #[test]
    fn first_item_gives_the_reason() {
        assert_eq!(summary(&[Unmet::MachineNotFound]).0, "MachineNotFound");
        assert_eq!(
            summary(&[Unmet::TpmDisabled, Unmet::LocationUnknown]).0,
            "PrerequisitesNotMet"
        );
    }
}
