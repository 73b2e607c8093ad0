//! The CRDs on the real API server: established, printer columns, examples accepted, bad objects
//! rejected with the expected messages.

use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams},
    core::{ApiResource, GroupVersionKind},
    discovery,
};
use serde_json::Value;

use crate::{cases, support};

fn api_resource(kind: &str) -> ApiResource {
    let plural = match kind {
        "AttestationProvider" => "attestationproviders",
        "GuestAttestationExtension" => "guestattestationextensions",
        "AttestationStatus" => "attestationstatuses",
        other => panic!("unknown kind {other}"),
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("guestattestation.dev", "v1alpha1", kind),
        plural,
    )
}

async fn apply(
    client: &kube::Client,
    ns: &str,
    object: &Value,
) -> Result<DynamicObject, kube::Error> {
    let kind = object["kind"].as_str().unwrap();
    let name = object["metadata"]["name"].as_str().unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &api_resource(kind));
    api.patch(
        name,
        &PatchParams::apply("it-crds").force(),
        &Patch::Apply(object),
    )
    .await
}

#[tokio::test]
async fn crds_are_established_and_discoverable() {
    let env = support::env();
    let client = env.client().await;
    for kind in [
        "AttestationProvider",
        "GuestAttestationExtension",
        "AttestationStatus",
    ] {
        let gvk = GroupVersionKind::gvk("guestattestation.dev", "v1alpha1", kind);
        let (ar, caps) = discovery::pinned_kind(&client, &gvk).await.unwrap();
        assert_eq!(caps.scope, discovery::Scope::Namespaced, "{kind}");
        assert!(
            caps.subresources.iter().any(|(s, _)| s.plural == "status"),
            "{kind} has /status"
        );
        assert_eq!(ar.plural, api_resource(kind).plural);
    }
    // Short names and the category resolve through kubectl's discovery.
    let out = env.kubectl_ok(&[
        "api-resources",
        "--api-group=guestattestation.dev",
        "-o",
        "wide",
    ]);
    for short in ["atp", "gae", "ats"] {
        assert!(out.contains(short), "short name {short} in {out}");
    }
    assert!(out.contains("guestattestation"), "category in {out}");
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let env = support::env();
    let client = env.client().await;
    let ns = support::namespace(&client, "columns").await;
    for (_, object) in cases::valid() {
        apply(&client, &ns, &object).await.unwrap();
    }
    let ats = env.kubectl_ok(&["get", "ats", "-n", &ns]);
    let header = ats.lines().next().unwrap();
    for col in [
        "NAME",
        "MACHINE",
        "HEALTH",
        "REASON",
        "SECURE-BOOT",
        "BOOT-INTEGRITY",
        "ATTESTED",
        "AGE",
    ] {
        assert!(header.contains(col), "ats column {col} in {header:?}");
    }
    let gae = env.kubectl_ok(&["get", "gae", "-n", &ns]);
    for col in ["MACHINE", "STATE", "VERSION", "READY", "AGE"] {
        assert!(
            gae.lines().next().unwrap().contains(col),
            "gae column {col} in {gae}"
        );
    }
    let atp = env.kubectl_ok(&["get", "atp", "-n", &ns]);
    for col in ["ENDPOINT", "READY", "POLICY", "AGE"] {
        assert!(
            atp.lines().next().unwrap().contains(col),
            "atp column {col} in {atp}"
        );
    }
    // The category lists all three kinds at once.
    let all = env.kubectl_ok(&["get", "guestattestation", "-n", &ns, "-o", "name"]);
    assert_eq!(all.lines().count(), cases::valid().len(), "{all}");
}

#[tokio::test]
async fn every_example_is_accepted_by_server_side_apply() {
    let env = support::env();
    let client = env.client().await;
    let ns = support::namespace(&client, "examples").await;
    let dir = support::repo_root().join("examples");
    let mut applied = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        for doc in serde_yaml::Deserializer::from_str(&std::fs::read_to_string(&path).unwrap()) {
            let object: Value = serde::Deserialize::deserialize(doc).unwrap();
            if object["apiVersion"] != "guestattestation.dev/v1alpha1" {
                continue;
            }
            let stored = apply(&client, &ns, &object)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // Defaults are applied by the API server from the schema.
            assert!(stored.data["spec"].is_object());
            applied += 1;
        }
    }
    assert!(applied >= 3);
}

#[tokio::test]
async fn schema_defaults_are_applied_by_the_server() {
    let env = support::env();
    let client = env.client().await;
    let ns = support::namespace(&client, "defaults").await;
    let stored = apply(
        &client,
        &ns,
        &cases::status(
            "d1",
            serde_json::json!({"machineId": cases::machine_id("vm1")}),
        ),
    )
    .await
    .unwrap();
    assert_eq!(stored.data["spec"]["refreshInterval"], "30m");
    assert_eq!(stored.data["spec"]["staleAfter"], "8h");
    let stored = apply(
        &client,
        &ns,
        &cases::extension("d2", serde_json::json!({"machineId": cases::machine_id("vm1"), "clusterId": cases::cluster_id("c1")})),
    )
    .await
    .unwrap();
    let spec = &stored.data["spec"];
    assert_eq!(spec["settings"]["maaTenantName"], "DUMMY_Tenant_NewConfig");
    assert_eq!(spec["settings"]["ascReportingFrequency"], "4H");
    assert_eq!(spec["settings"]["useCustomToken"], true);
    assert_eq!(spec["settings"]["disableAlerts"], false);
    assert_eq!(spec["deletionPolicy"], "Delete");
    assert_eq!(spec["managementPolicy"], "Manage");
    assert_eq!(spec["enableAutomaticUpgrade"], true);
}

#[tokio::test]
async fn bad_objects_are_rejected_with_clear_messages() {
    let env = support::env();
    let client = env.client().await;
    let ns = support::namespace(&client, "invalid").await;
    let invalid = cases::invalid();
    assert!(invalid.len() >= 12);
    for case in invalid {
        match apply(&client, &ns, &case.object).await {
            Ok(_) => panic!(
                "{}: accepted, expected a rejection with {:?}",
                case.name, case.message
            ),
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{}: {status:?}", case.name);
                assert!(
                    status.message.contains(case.message),
                    "{}: expected {:?} in {:?}",
                    case.name,
                    case.message,
                    status.message
                );
            }
            Err(e) => panic!("{}: unexpected error {e}", case.name),
        }
    }
}

#[tokio::test]
async fn machine_id_cannot_change() {
    let env = support::env();
    let client = env.client().await;
    let ns = support::namespace(&client, "immutable").await;
    let mut object = cases::extension(
        "imm",
        serde_json::json!({"machineId": cases::machine_id("vm1"), "clusterId": cases::cluster_id("c1")}),
    );
    apply(&client, &ns, &object).await.unwrap();
    object["spec"]["machineId"] = cases::machine_id("vm2").into();
    let err = apply(&client, &ns, &object).await.unwrap_err();
    assert!(
        err.to_string().contains("spec.machineId is immutable"),
        "{err}"
    );
}
