//! Desired vs actual (pure): the extension's state in Azure and every way it differs from what
//! the spec asks for. A PUT is sent only when this finds a difference (or a failure to retry),
//! never to "refresh" an extension that already matches.

use std::fmt;

use crate::azure::{MachineExtension, MachineExtensionSpec, ProvisioningState};

/// The extension's provisioning state, as far as the controller cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// No extension named GuestAttestation on the machine.
    Missing,
    /// Creating, Updating, Deleting (or another non-terminal state Azure invents).
    InProgress(String),
    /// Failed or Canceled, with Azure's details (instanceView.status).
    Failed {
        /// The provisioning state (Failed, Canceled).
        state: String,
        /// instanceView.status code and message, when Azure gives them.
        detail: Option<String>,
    },
    /// Succeeded (or no provisioningState at all, as ARM resources without one are settled).
    Succeeded,
}

/// One way the extension in Azure differs from the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Difference {
    /// The settings document differs (any key or value; keys are case-sensitive).
    Settings,
    /// Another publisher.
    Publisher {
        /// Asked for.
        want: String,
        /// Found.
        have: String,
    },
    /// Another extension type.
    ExtensionType {
        /// Asked for.
        want: String,
        /// Found.
        have: String,
    },
    /// typeHandlerVersion does not satisfy the pin.
    Version {
        /// spec.typeHandlerVersion.
        pin: String,
        /// Found.
        have: String,
    },
    /// enableAutomaticUpgrade differs.
    AutomaticUpgrade {
        /// Asked for.
        want: bool,
        /// Found.
        have: bool,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Settings => f.write_str("settings differ from the rendered settings"),
            Self::Publisher { want, have } => write!(f, "publisher is {have}, not {want}"),
            Self::ExtensionType { want, have } => write!(f, "type is {have}, not {want}"),
            Self::Version { pin, have } => {
                write!(f, "typeHandlerVersion is {have}, not the pinned {pin}")
            }
            Self::AutomaticUpgrade { want, have } => {
                write!(f, "enableAutomaticUpgrade is {have}, not {want}")
            }
        }
    }
}

/// The comparison's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    /// The extension's state.
    pub state: State,
    /// How it differs (empty when it matches or is missing).
    pub differences: Vec<Difference>,
}

impl Assessment {
    /// Present, Succeeded and matching: nothing to do.
    pub fn in_sync(&self) -> bool {
        self.state == State::Succeeded && self.differences.is_empty()
    }
}

/// Whether `have` satisfies the pin: equal, or a longer version under it (Azure resolves a pin
/// such as `1.0` to the newest `1.0.x.y`).
pub fn version_satisfies(pin: &str, have: &str) -> bool {
    have == pin
        || have
            .strip_prefix(pin)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The state of an extension (Missing when there is none).
pub fn state(actual: Option<&MachineExtension>) -> State {
    let Some(actual) = actual else {
        return State::Missing;
    };
    match &actual.properties.provisioning_state {
        None | Some(ProvisioningState::Succeeded) => State::Succeeded,
        Some(s @ (ProvisioningState::Failed | ProvisioningState::Canceled)) => State::Failed {
            state: s.to_string(),
            detail: instance_view_detail(actual),
        },
        Some(s) => State::InProgress(s.to_string()),
    }
}

/// The state of `actual` and how it differs from `desired`.
pub fn compare(desired: &MachineExtensionSpec, actual: Option<&MachineExtension>) -> Assessment {
    let Some(actual) = actual else {
        return Assessment {
            state: State::Missing,
            differences: Vec::new(),
        };
    };
    let p = &actual.properties;
    let state = state(Some(actual));
    let want = &desired.properties;
    let mut differences = Vec::new();
    if p.settings.as_ref() != want.settings.as_ref() {
        differences.push(Difference::Settings);
    }
    let have_publisher = p.publisher.clone().unwrap_or_default();
    if !have_publisher.eq_ignore_ascii_case(&want.publisher) {
        differences.push(Difference::Publisher {
            want: want.publisher.clone(),
            have: have_publisher,
        });
    }
    let have_type = p.extension_type.clone().unwrap_or_default();
    if !have_type.eq_ignore_ascii_case(&want.extension_type) {
        differences.push(Difference::ExtensionType {
            want: want.extension_type.clone(),
            have: have_type,
        });
    }
    if let Some(pin) = &want.type_handler_version {
        let have = actual_version(actual).unwrap_or_default();
        if !version_satisfies(pin, &have) {
            differences.push(Difference::Version {
                pin: pin.clone(),
                have,
            });
        }
    }
    let want_upgrade = want.enable_automatic_upgrade.unwrap_or(false);
    let have_upgrade = p.enable_automatic_upgrade.unwrap_or(false);
    if want_upgrade != have_upgrade {
        differences.push(Difference::AutomaticUpgrade {
            want: want_upgrade,
            have: have_upgrade,
        });
    }
    Assessment { state, differences }
}

/// typeHandlerVersion, from the properties or else the instance view.
pub fn actual_version(e: &MachineExtension) -> Option<String> {
    e.properties.type_handler_version.clone().or_else(|| {
        e.properties
            .instance_view
            .as_ref()
            .and_then(|v| v.type_handler_version.clone())
    })
}

/// `code: message` of instanceView.status, when there is one.
pub fn instance_view_detail(e: &MachineExtension) -> Option<String> {
    let status = e.properties.instance_view.as_ref()?.status.as_ref()?;
    match (&status.code, &status.message) {
        (Some(c), Some(m)) => Some(format!("{c}: {m}")),
        (None, Some(m)) => Some(m.clone()),
        (Some(c), None) => Some(c.clone()),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::MachineExtensionSpecProperties;
    use serde_json::{Value, json};

    fn desired(pin: Option<&str>) -> MachineExtensionSpec {
        MachineExtensionSpec {
            location: "eastus".into(),
            tags: std::collections::BTreeMap::new(),
            properties: MachineExtensionSpecProperties {
                publisher: "Microsoft.Azure.Security.WindowsAttestation".into(),
                extension_type: "GuestAttestation".into(),
                type_handler_version: pin.map(str::to_owned),
                enable_automatic_upgrade: Some(true),
                settings: Some(json!({"AttestationConfig": {"isAzureStack": "true"}})),
                ..Default::default()
            },
        }
    }

    /// The documented extension (seed document), trimmed.
    fn actual(patch: impl FnOnce(&mut Value)) -> MachineExtension {
        let mut v = json!({
            "name": "GuestAttestation",
            "properties": {
                "autoUpgradeMinorVersion": false,
                "enableAutomaticUpgrade": true,
                "instanceView": {"name": "GuestAttestation", "type": "GuestAttestation", "typeHandlerVersion": "1.0.1.30",
                    "status": {"code": "0", "level": "Information", "message": "AszAttestationClient Started Successfully"}},
                "provisioningState": "Succeeded",
                "publisher": "Microsoft.Azure.Security.WindowsAttestation",
                "settings": {"AttestationConfig": {"isAzureStack": "true"}},
                "type": "GuestAttestation",
                "typeHandlerVersion": "1.0.1.30"
            }
        });
        patch(&mut v);
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn missing() {
        let a = compare(&desired(None), None);
        assert_eq!(a.state, State::Missing);
        assert!(!a.in_sync());
    }

    #[test]
    fn documented_extension_matches() {
        let a = compare(&desired(None), Some(&actual(|_| {})));
        assert!(a.in_sync(), "{a:?}");
        let a = compare(&desired(Some("1.0")), Some(&actual(|_| {})));
        assert!(a.in_sync(), "a 1.0 pin is satisfied by 1.0.1.30: {a:?}");
        // ARM compares publishers case-insensitively.
        let a = compare(
            &desired(None),
            Some(&actual(|v| {
                v["properties"]["publisher"] = "microsoft.azure.security.windowsattestation".into();
            })),
        );
        assert!(a.in_sync(), "{a:?}");
    }

    #[test]
    fn every_difference_is_found() {
        let a = compare(
            &desired(Some("1.0.1.30")),
            Some(&actual(|v| {
                let p = &mut v["properties"];
                p["settings"]["AttestationConfig"]["isAzureStack"] = "false".into();
                p["publisher"] = "Microsoft.Azure.Security.LinuxAttestation".into();
                p["type"] = "Other".into();
                p["typeHandlerVersion"] = "1.0.0.9".into();
                p["enableAutomaticUpgrade"] = false.into();
            })),
        );
        assert_eq!(a.state, State::Succeeded);
        assert_eq!(a.differences.len(), 5, "{:?}", a.differences);
        assert_eq!(a.differences[0], Difference::Settings);
        assert_eq!(
            a.differences[3].to_string(),
            "typeHandlerVersion is 1.0.0.9, not the pinned 1.0.1.30"
        );
        // Without a pin, any version is fine (automatic upgrades move it).
        let a = compare(
            &desired(None),
            Some(&actual(|v| {
                v["properties"]["typeHandlerVersion"] = "2.0".into();
            })),
        );
        assert!(a.in_sync());
    }

    #[test]
    fn settings_keys_are_case_sensitive() {
        let a = compare(
            &desired(None),
            Some(&actual(|v| {
                v["properties"]["settings"] =
                    json!({"attestationConfig": {"isAzureStack": "true"}});
            })),
        );
        assert_eq!(a.differences, vec![Difference::Settings]);
        let a = compare(
            &desired(None),
            Some(&actual(|v| {
                v["properties"]["settings"] = json!({"AttestationConfig": {"isAzureStack": true}});
            })),
        );
        assert_eq!(a.differences, vec![Difference::Settings]);
    }

    #[test]
    fn states() {
        let a = compare(
            &desired(None),
            Some(&actual(|v| {
                v["properties"]["provisioningState"] = "Creating".into();
            })),
        );
        assert_eq!(a.state, State::InProgress("Creating".into()));
        let a = compare(
            &desired(None),
            Some(&actual(|v| {
                v["properties"]["provisioningState"] = "Failed".into();
                v["properties"]["instanceView"]["status"] = json!({"code": "ExtensionOperationFailed", "level": "Error", "message": "boom"});
            })),
        );
        assert_eq!(
            a.state,
            State::Failed {
                state: "Failed".into(),
                detail: Some("ExtensionOperationFailed: boom".into())
            }
        );
        let a = compare(
            &desired(None),
            Some(&actual(|v| {
                v["properties"]["provisioningState"] = "Canceled".into();
            })),
        );
        assert!(matches!(a.state, State::Failed { .. }));
    }

    #[test]
    fn version_pins() {
        assert!(version_satisfies("1.0", "1.0.1.30"));
        assert!(version_satisfies("1.0.1.30", "1.0.1.30"));
        assert!(!version_satisfies("1.0", "1.01.1"));
        assert!(!version_satisfies("1.0.1.30", "1.0.1.3"));
        assert!(!version_satisfies("1.0", ""));
    }
}
