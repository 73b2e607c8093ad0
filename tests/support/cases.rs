//! Objects the API server must reject, each with the message it must give. Shared by the offline
//! CEL tests (`tests/crds.rs`) and the admission tests against the real API server (`tests/it`).

#![allow(clippy::needless_pass_by_value)] // builders read best taking json!(...) by value

use serde_json::{Value, json};

pub const SUB: &str = "fd3c3665-1729-4b7b-9a38-238e83b0f98b";

pub fn machine_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/azlocal-rg/providers/Microsoft.HybridCompute/machines/{name}"
    )
}

pub fn cluster_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/azlocal-rg/providers/Microsoft.AzureStackHCI/clusters/{name}"
    )
}

pub fn provider_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/azlocal-rg/providers/Microsoft.Attestation/attestationProviders/{name}"
    )
}

pub fn status(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationStatus",
           "metadata": {"name": name}, "spec": spec})
}

pub fn extension(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "guestattestation.dev/v1alpha1", "kind": "GuestAttestationExtension",
           "metadata": {"name": name}, "spec": spec})
}

pub fn provider(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationProvider",
           "metadata": {"name": name}, "spec": spec})
}

/// One object to reject.
pub struct Invalid {
    pub name: &'static str,
    pub object: Value,
    /// A substring of the API server's message.
    pub message: &'static str,
    /// Whether a CEL rule (not the structural schema) rejects it, so `validate_cel()` must too.
    pub cel: bool,
}

#[allow(clippy::too_many_lines)] // a table
pub fn invalid() -> Vec<Invalid> {
    vec![
        Invalid {
            name: "machine-id-not-arm",
            object: status("bad1", json!({"machineId": "demo-vm"})),
            message: "spec.machineId must be an ARM resource ID of the form /subscriptions/",
            cel: true,
        },
        Invalid {
            name: "machine-id-bad-subscription",
            object: status(
                "bad2",
                json!({"machineId": "/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/vm"}),
            ),
            message: "spec.machineId must be an ARM resource ID",
            cel: true,
        },
        Invalid {
            name: "machine-id-wrong-type",
            object: status("bad3", json!({"machineId": cluster_id("azlocal-east")})),
            message: "spec.machineId must name a Microsoft.HybridCompute/machines resource",
            cel: true,
        },
        Invalid {
            name: "cluster-id-wrong-type",
            object: extension(
                "bad4",
                json!({"machineId": machine_id("vm1"), "clusterId": machine_id("vm1")}),
            ),
            message: "spec.clusterId must name a Microsoft.AzureStackHCI/clusters resource",
            cel: true,
        },
        Invalid {
            name: "cluster-id-malformed",
            object: extension(
                "bad5",
                json!({"machineId": machine_id("vm1"), "clusterId": "/subscriptions//clusters/x"}),
            ),
            message: "spec.clusterId must be an ARM resource ID of the form",
            cel: true,
        },
        Invalid {
            name: "provider-id-wrong-type",
            object: provider("bad6", json!({"resourceId": cluster_id("azlocal-east")})),
            message: "spec.resourceId must name a Microsoft.Attestation/attestationProviders resource",
            cel: true,
        },
        Invalid {
            name: "provider-name-too-short",
            object: provider("bad7", json!({"resourceId": provider_id("ab")})),
            message: "name of 3-24 letters, digits or hyphens",
            cel: true,
        },
        Invalid {
            name: "cluster-ref-malformed",
            object: provider(
                "bad8",
                json!({"clusterRef": {"resourceId": "azlocal-east"}}),
            ),
            message: "spec.clusterRef.resourceId must be an ARM resource ID",
            cel: true,
        },
        Invalid {
            name: "bad-duration",
            object: status(
                "bad9",
                json!({"machineId": machine_id("vm1"), "refreshInterval": "30 minutes"}),
            ),
            message: "spec.refreshInterval must be a duration such as 30s, 5m or 1h30m",
            cel: true,
        },
        Invalid {
            name: "refresh-interval-too-short",
            object: status(
                "bad10",
                json!({"machineId": machine_id("vm1"), "refreshInterval": "30s"}),
            ),
            message: "spec.refreshInterval must be between 1m and 24h",
            cel: true,
        },
        Invalid {
            name: "stale-after-too-long",
            object: status(
                "bad11",
                json!({"machineId": machine_id("vm1"), "staleAfter": "200h"}),
            ),
            message: "spec.staleAfter must be between 1m and 168h",
            cel: true,
        },
        Invalid {
            name: "unknown-reporting-frequency",
            object: extension(
                "bad12",
                json!({"machineId": machine_id("vm1"), "clusterId": cluster_id("c1"), "settings": {"ascReportingFrequency": "4h"}}),
            ),
            message: "spec.settings.ascReportingFrequency must be a whole number of hours from 1H to 8H",
            cel: true,
        },
        Invalid {
            name: "reporting-frequency-over-8h",
            object: extension(
                "bad13",
                json!({"machineId": machine_id("vm1"), "clusterId": cluster_id("c1"), "settings": {"ascReportingFrequency": "12H"}}),
            ),
            message: "spec.settings.ascReportingFrequency must be a whole number of hours from 1H to 8H",
            cel: true,
        },
        Invalid {
            name: "extension-both-cluster-and-provider",
            object: extension(
                "bad14",
                json!({"machineId": machine_id("vm1"), "clusterId": cluster_id("c1"), "providerRef": {"name": "p"}}),
            ),
            message: "exactly one of spec.clusterId and spec.providerRef must be set",
            cel: true,
        },
        Invalid {
            name: "extension-neither-cluster-nor-provider",
            object: extension("bad15", json!({"machineId": machine_id("vm1")})),
            message: "exactly one of spec.clusterId and spec.providerRef must be set",
            cel: true,
        },
        Invalid {
            name: "provider-both-resource-and-cluster",
            object: provider(
                "bad16",
                json!({"resourceId": provider_id("maa1"), "clusterRef": {"resourceId": cluster_id("c1")}}),
            ),
            message: "exactly one of spec.resourceId and spec.clusterRef must be set",
            cel: true,
        },
        Invalid {
            name: "provider-neither",
            object: provider("bad17", json!({"location": "eastus"})),
            message: "exactly one of spec.resourceId and spec.clusterRef must be set",
            cel: true,
        },
        Invalid {
            name: "policy-both-text-and-configmap",
            object: provider(
                "bad18",
                json!({"resourceId": provider_id("maa1"), "policy": {"text": "version=1.0;", "configMapKeyRef": {"name": "p", "key": "policy"}}}),
            ),
            message: "exactly one of spec.policy.text and spec.policy.configMapKeyRef must be set",
            cel: true,
        },
        Invalid {
            name: "type-handler-version",
            object: extension(
                "bad19",
                json!({"machineId": machine_id("vm1"), "clusterId": cluster_id("c1"), "typeHandlerVersion": "latest"}),
            ),
            message: "spec.typeHandlerVersion must be a dotted version",
            cel: true,
        },
        Invalid {
            name: "credentials-ref-name",
            object: status(
                "bad20",
                json!({"machineId": machine_id("vm1"), "credentialsRef": {"name": "Azure_SP"}}),
            ),
            message: "credentialsRef.name must be a Kubernetes object name",
            cel: true,
        },
        Invalid {
            name: "unknown-management-policy",
            object: extension(
                "bad21",
                json!({"machineId": machine_id("vm1"), "clusterId": cluster_id("c1"), "managementPolicy": "Sometimes"}),
            ),
            message: "Unsupported value: \"Sometimes\"",
            cel: false,
        },
        Invalid {
            name: "unknown-attestation-type",
            object: provider(
                "bad22",
                json!({"resourceId": provider_id("maa1"), "policy": {"attestationType": "Nitro", "text": "version=1.0;"}}),
            ),
            message: "Unsupported value: \"Nitro\"",
            cel: false,
        },
        Invalid {
            name: "over-long-tag-value",
            object: provider(
                "bad23",
                json!({"resourceId": provider_id("maa1"), "tags": {"owner": "x".repeat(300)}}),
            ),
            message: "Too long: may not be more than 256",
            cel: false,
        },
        Invalid {
            name: "over-long-policy",
            object: provider(
                "bad24",
                json!({"resourceId": provider_id("maa1"), "policy": {"text": "x".repeat(70_000)}}),
            ),
            message: "Too long: may not be more than 65536",
            cel: false,
        },
    ]
}

/// One valid object per rule family, to prove each rule also passes (paired with `invalid`).
pub fn valid() -> Vec<(&'static str, Value)> {
    vec![
        (
            "status-minimal",
            status("ok1", json!({"machineId": machine_id("vm1")})),
        ),
        (
            "status-full",
            status(
                "ok2",
                json!({"machineId": machine_id("vm-1.x_y"), "refreshInterval": "1h30m", "staleAfter": "168h", "credentialsRef": {"name": "azure-sp"}}),
            ),
        ),
        (
            "status-lower-case-provider",
            status(
                "ok3",
                json!({"machineId": machine_id("vm1").replace("Microsoft.HybridCompute", "microsoft.hybridcompute")}),
            ),
        ),
        (
            "extension-cluster",
            extension(
                "ok4",
                json!({"machineId": machine_id("vm1"), "clusterId": cluster_id("c1"), "typeHandlerVersion": "1.0.1.30", "settings": {"ascReportingFrequency": "8H", "maaTenantName": "DUMMY_Tenant_NewConfig"}}),
            ),
        ),
        (
            "extension-provider",
            extension(
                "ok5",
                json!({"machineId": machine_id("vm1"), "providerRef": {"name": "azlocal-east"}}),
            ),
        ),
        (
            "provider-id",
            provider(
                "ok6",
                json!({"resourceId": provider_id("maa-1"), "policy": {"configMapKeyRef": {"name": "policy", "key": "policy.txt"}}}),
            ),
        ),
        (
            "provider-cluster",
            provider(
                "ok7",
                json!({"clusterRef": {"resourceId": cluster_id("c1")}, "tags": {"owner": "ops"}}),
            ),
        ),
    ]
}
