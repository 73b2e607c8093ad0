//! CEL rules for ARM resource IDs, shared by the CRD schemas.
//!
//! Each ID field carries two rules: the general ARM shape, and the resource type (checked only
//! when the shape holds), so a malformed ID and an ID of the wrong type get different messages.
//! Patterns avoid backslashes because CEL string literals would need them doubled.

/// `/subscriptions/<GUID>/resourceGroups/<1–90 of letters, digits, -_.()>/providers/`.
macro_rules! arm_prefix {
    () => {
        "^/subscriptions/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/resourceGroups/[-a-zA-Z0-9_.()]{1,90}/providers/"
    };
}

/// The RE2 pattern of any resource-group-scoped ARM resource ID.
macro_rules! arm_shape {
    () => {
        concat!(
            "(?i)",
            arm_prefix!(),
            "[a-zA-Z0-9.]+/[a-zA-Z0-9]+/[^/]+(/[a-zA-Z0-9]+/[^/]+)*$"
        )
    };
}

/// CEL: the value is an ARM resource ID.
pub const SHAPE_RULE: &str = concat!("self.matches('", arm_shape!(), "')");

/// CEL: an ARM ID of the wrong shape passes (the shape rule reports it); one of the right shape
/// must be an Arc machine.
pub const MACHINE_RULE: &str = concat!(
    "!self.matches('",
    arm_shape!(),
    "') || self.matches('(?i)",
    arm_prefix!(),
    "Microsoft[.]HybridCompute/machines/[a-zA-Z0-9_.-]{1,54}$')"
);

/// CEL: an Azure Local cluster ID (when the shape holds).
pub const CLUSTER_RULE: &str = concat!(
    "!self.matches('",
    arm_shape!(),
    "') || self.matches('(?i)",
    arm_prefix!(),
    "Microsoft[.]AzureStackHCI/clusters/[a-zA-Z0-9_.-]{1,64}$')"
);

/// CEL: a Microsoft Azure Attestation provider ID (when the shape holds). The name rule is the
/// spec's `^[a-zA-Z0-9-]{3,24}$`.
pub const PROVIDER_RULE: &str = concat!(
    "!self.matches('",
    arm_shape!(),
    "') || self.matches('(?i)",
    arm_prefix!(),
    "Microsoft[.]Attestation/attestationProviders/[a-zA-Z0-9-]{3,24}$')"
);

/// The expected form of each ID, used in messages.
pub const MACHINE_FORM: &str = "/subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.HybridCompute/machines/<machine name>";
/// See [`MACHINE_FORM`].
pub const CLUSTER_FORM: &str = "/subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.AzureStackHCI/clusters/<cluster name>";
/// See [`MACHINE_FORM`].
pub const PROVIDER_FORM: &str = "/subscriptions/<subscription GUID>/resourceGroups/<resource group>/providers/Microsoft.Attestation/attestationProviders/<provider name, 3-24 letters, digits or hyphens>";

/// CEL: a Kubernetes-style duration (`30s`, `5m`, `1h30m`; units s, m, h).
pub const DURATION_SHAPE_RULE: &str = "self.matches('^([0-9]+(s|m|h))+$')";
