//! Contract tests: every response shape is checked against the swagger definitions and the
//! official examples in shared/azure-specs (a small JSON-schema subset: $ref, allOf, type,
//! properties, additionalProperties, items, enum). Unknown properties are errors, except the
//! ARM envelope of resources whose base type lives in common-types (not copied).

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::*;

const ENVELOPE: [&str; 9] = [
    "id",
    "name",
    "type",
    "location",
    "tags",
    "systemData",
    "extendedLocation",
    "identity",
    "kind",
];
/// Enum values seen in official examples and live output but missing from the enum.
const ENUM_EXCEPTIONS: [&str; 1] = ["Information"];

/// The specs beside the checkout (../shared), or, for a clone elsewhere on this machine, at
/// /work/shared.
fn specs() -> PathBuf {
    let beside = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/azure-specs");
    let machine = PathBuf::from("/work/shared/azure-specs");
    if !beside.is_dir() && machine.is_dir() {
        return machine;
    }
    beside
}

fn load(rel: &str) -> Value {
    let text = std::fs::read_to_string(specs().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).expect("spec json")
}

struct Checker<'a> {
    root: &'a Value,
    extra: &'a [&'a str],
    errors: Vec<String>,
}

impl<'a> Checker<'a> {
    fn local(&self, r: &str) -> Option<&'a Value> {
        let root: &'a Value = self.root;
        r.strip_prefix("#/definitions/")
            .and_then(|n| root.get("definitions")?.get(n))
    }

    fn check(&mut self, schema: &Value, v: &Value, at: &str, envelope: bool) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            if let Some(target) = self.local(r) {
                self.check(target, v, at, envelope);
            }
            return;
        }
        let mut props: Vec<(String, Value)> = Vec::new();
        let mut envelope = envelope;
        let mut constrained = false;
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for part in all {
                match part.get("$ref").and_then(Value::as_str) {
                    Some(r) if r.starts_with("#/") => {
                        if let Some(p) = self
                            .local(r)
                            .and_then(|t| t.get("properties"))
                            .and_then(Value::as_object)
                        {
                            constrained = true;
                            props.extend(p.iter().map(|(k, s)| (k.clone(), s.clone())));
                        }
                    }
                    _ => envelope = true,
                }
            }
        }
        if let Some(p) = schema.get("properties").and_then(Value::as_object) {
            constrained = true;
            props.extend(p.iter().map(|(k, s)| (k.clone(), s.clone())));
        }
        let ty = schema.get("type").and_then(Value::as_str);
        let ok = match ty {
            Some("object") => v.is_object(),
            Some("string") => v.is_string() || v.is_null(),
            Some("boolean") => v.is_boolean(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some("number") => v.is_number(),
            Some("array") => v.is_array(),
            _ => true,
        };
        if !ok {
            self.errors.push(format!("{at}: expected {ty:?}, got {v}"));
            return;
        }
        if let (Some(values), Some(s)) = (schema.get("enum").and_then(Value::as_array), v.as_str())
            && !values.iter().any(|e| e.as_str() == Some(s))
            && !ENUM_EXCEPTIONS.contains(&s)
        {
            self.errors
                .push(format!("{at}: '{s}' not in enum {values:?}"));
        }
        if let Some(items) = schema.get("items") {
            for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                self.check(items, item, &format!("{at}[{i}]"), false);
            }
        }
        if let Some(obj) = v.as_object() {
            let additional = schema.get("additionalProperties");
            for (k, val) in obj {
                if let Some((_, s)) = props.iter().find(|(p, _)| p == k) {
                    let s = s.clone();
                    self.check(&s, val, &format!("{at}.{k}"), false);
                } else if additional.is_some_and(|a| a.is_object() || a == &Value::Bool(true)) {
                    if let Some(a) = additional.filter(|a| a.is_object()) {
                        let a = a.clone();
                        self.check(&a, val, &format!("{at}.{k}"), false);
                    }
                } else if (envelope && ENVELOPE.contains(&k.as_str()))
                    || self.extra.contains(&k.as_str())
                    || !constrained
                {
                } else {
                    self.errors
                        .push(format!("{at}: property '{k}' is not in the spec"));
                }
            }
        }
    }
}

fn assert_conforms(spec: &str, definition: &str, value: &Value, extra: &[&str]) {
    let root = load(spec);
    let mut c = Checker {
        root: &root,
        extra,
        errors: Vec::new(),
    };
    let schema = json!({ "$ref": format!("#/definitions/{definition}") });
    c.check(&schema, value, definition, false);
    assert!(
        c.errors.is_empty(),
        "{definition} from {spec}:\n{}\nvalue: {value:#}",
        c.errors.join("\n")
    );
}

/// Every object key of `example` (recursively) also appears in `ours`.
fn assert_has_example_keys(example: &Value, ours: &Value, at: &str) {
    if let (Some(e), Some(o)) = (example.as_object(), ours.as_object()) {
        for (k, ev) in e {
            let ov = o
                .get(k)
                .unwrap_or_else(|| panic!("{at}.{k} from the example is missing in {ours:#}"));
            // Free-form payloads (extension settings) are the caller's, not the shape's.
            if k != "settings" {
                assert_has_example_keys(ev, ov, &format!("{at}.{k}"));
            }
        }
    }
}

fn example_body(rel: &str, status: &str) -> Value {
    load(rel)["responses"][status]["body"].clone()
}

fn jwt_claims(token: &str) -> Value {
    let p = token.split('.').nth(1).expect("payload");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .expect("b64"),
    )
    .expect("json")
}

#[test]
fn validator_accepts_the_official_examples() {
    assert_conforms(
        "attestation/mgmt/2021-06-01/attestation.json",
        "AttestationProvider",
        &example_body(
            "attestation/mgmt/2021-06-01/examples/Get_AttestationProvider.json",
            "200",
        ),
        &[],
    );
    assert_conforms(
        "hybridcompute/2025-01-13/HybridCompute.extensions-excerpt.json",
        "MachineExtension",
        &example_body(
            "hybridcompute/2025-01-13/examples/extension/Extension_Get.json",
            "200",
        ),
        &[],
    );
    assert_conforms(
        "azurestackhci/StackHCIVM/2025-06-01-preview/stackhcivm.attestation-excerpt.json",
        "AttestationStatus",
        &example_body(
            "azurestackhci/StackHCIVM/2025-06-01-preview/examples/AttestationStatuses_Get.json",
            "200",
        ),
        &[],
    );
    assert_conforms(
        "attestation/dataplane/2025-06-01/attestation.policy-excerpt.json",
        "JsonWebKeySet",
        &example_body(
            "attestation/dataplane/2025-06-01/examples/Get_Certs.json",
            "200",
        ),
        &[],
    );
    // And rejects an unknown property.
    let root = load("attestation/mgmt/2021-06-01/attestation.json");
    let mut c = Checker {
        root: &root,
        extra: &[],
        errors: Vec::new(),
    };
    c.check(
        &json!({"$ref": "#/definitions/StatusResult"}),
        &json!({"bogus": 1, "status": "Weird"}),
        "x",
        false,
    );
    assert_eq!(c.errors.len(), 2, "{:?}", c.errors);
}

#[tokio::test]
async fn responses_conform_to_specs_and_examples() {
    let emu = start().await;
    let http = client(&emu);
    let arm = token(&emu, &http, ARM).await;
    let maa = token(&emu, &http, MAA).await;

    // Attestation provider (2021-06-01).
    let pid = provider_id("contractprov");
    let body =
        load("attestation/mgmt/2021-06-01/examples/Create_AttestationProvider.json")["parameters"]
            ["creationParams"]
            .clone();
    let r = http
        .put(url(&emu, &pid, "2021-06-01"))
        .bearer_auth(&arm)
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.expect("json");
    let mgmt = "attestation/mgmt/2021-06-01/attestation.json";
    assert_conforms(mgmt, "AttestationProvider", &created, &[]);
    let mut example = example_body(
        "attestation/mgmt/2021-06-01/examples/Create_AttestationProvider.json",
        "201",
    );
    assert_has_example_keys(&example, &created, "provider");
    example["id"] = json!(format!("/{}", example["id"].as_str().expect("id")));
    assert_eq!(
        created["location"], example["location"],
        "location echoed as sent"
    );
    let (_, list) = get_json(
        &http,
        &url(
            &emu,
            &format!("/subscriptions/{SUB}/providers/Microsoft.Attestation/attestationProviders"),
            "2021-06-01",
        ),
        &arm,
    )
    .await;
    assert_conforms(mgmt, "AttestationProviderListResult", &list, &[]);
    let (_, err) = get_json(
        &http,
        &url(&emu, &provider_id("nothere"), "2021-06-01"),
        &arm,
    )
    .await;
    assert_conforms(mgmt, "CloudError", &err, &[]);

    // Extension (2025-01-13).
    let mid = seed_vm(&emu, "DemoVM");
    emu.set_lro_config(azure_emulator::LroConfig {
        polls: 0,
        ..Default::default()
    });
    let ext = format!("{mid}/extensions/GuestAttestation");
    let r = http
        .put(url(&emu, &ext, "2025-01-13"))
        .bearer_auth(&arm)
        .json(&guest_attestation_body())
        .send()
        .await
        .expect("put");
    let hc = "hybridcompute/2025-01-13/HybridCompute.extensions-excerpt.json";
    assert_conforms(
        hc,
        "MachineExtension",
        &r.json::<Value>().await.expect("json"),
        &[],
    );
    let (_, e) = get_json(&http, &url(&emu, &ext, "2025-01-13"), &arm).await;
    assert_conforms(hc, "MachineExtension", &e, &[]);
    assert_has_example_keys(
        &example_body(
            "hybridcompute/2025-01-13/examples/extension/Extension_Get.json",
            "200",
        ),
        &e,
        "extension",
    );
    let (_, list) = get_json(
        &http,
        &url(&emu, &format!("{mid}/extensions"), "2025-01-13"),
        &arm,
    )
    .await;
    assert_conforms(hc, "MachineExtensionsListResult", &list, &[]);

    // VM instance and attestation status (2025-06-01-preview).
    let vmx = "azurestackhci/StackHCIVM/2025-06-01-preview/stackhcivm.attestation-excerpt.json";
    let vm_path =
        format!("{mid}/providers/Microsoft.AzureStackHCI/virtualMachineInstances/default");
    let (_, vm) = get_json(&http, &url(&emu, &vm_path, "2025-06-01-preview"), &arm).await;
    assert_conforms(vmx, "VirtualMachineInstance", &vm, &[]);
    let ex = example_body(
        "azurestackhci/StackHCIVM/2025-06-01-preview/examples/VirtualMachineInstances_Get.json",
        "200",
    );
    for k in ["name", "type", "id", "extendedLocation", "properties"] {
        assert!(vm.get(k).is_some(), "{k}");
    }
    for k in [
        "hardwareProfile",
        "networkProfile",
        "osProfile",
        "provisioningState",
        "storageProfile",
    ] {
        assert!(
            ex["properties"].get(k).is_some() && vm["properties"].get(k).is_some(),
            "{k}"
        );
    }
    let (s, st) = get_json(
        &http,
        &url(
            &emu,
            &format!("{vm_path}/attestationStatus/default"),
            "2025-06-01-preview",
        ),
        &arm,
    )
    .await;
    assert_eq!(s, 200, "{st}");
    assert_conforms(vmx, "AttestationStatus", &st, &[]);
    assert_has_example_keys(
        &example_body(
            "azurestackhci/StackHCIVM/2025-06-01-preview/examples/AttestationStatuses_Get.json",
            "200",
        ),
        &st,
        "status",
    );

    // Cluster (2025-10-01).
    let cid = seed_cluster(&emu, "myCluster", true);
    let (_, c) = get_json(&http, &url(&emu, &cid, "2025-10-01"), &arm).await;
    assert_conforms(
        "azurestackhci/StackHCI/2025-10-01/clusters.attestation-excerpt.json",
        "Cluster",
        &c,
        &[],
    );
    let ex = example_body(
        "azurestackhci/StackHCI/2025-10-01/examples/GetCluster.json",
        "200",
    );
    assert_has_example_keys(
        &ex["properties"]["isolatedVmAttestationConfiguration"],
        &c["properties"]["isolatedVmAttestationConfiguration"],
        "cluster",
    );

    // MAA data plane (2022-08-01 and 2025-06-01 definitions).
    let uri = emu.attest_uri("contractprov");
    let dp22 = "attestation/dataplane/2022-08-01/attestation.json";
    let dp25 = "attestation/dataplane/2025-06-01/attestation.policy-excerpt.json";
    let certs: Value = http
        .get(format!("{uri}/certs"))
        .send()
        .await
        .expect("certs")
        .json()
        .await
        .expect("json");
    assert_conforms(dp25, "JsonWebKeySet", &certs, &[]);
    assert_has_example_keys(
        &example_body(
            "attestation/dataplane/2025-06-01/examples/Get_Certs.json",
            "200",
        )["keys"][0],
        &certs["keys"][0],
        "jwk",
    );
    let oidc: Value = http
        .get(format!("{uri}/.well-known/openid-configuration"))
        .send()
        .await
        .expect("oidc")
        .json()
        .await
        .expect("json");
    assert_conforms(dp25, "OpenIDConfigurationResponse", &oidc, &[]);
    assert_has_example_keys(
        &example_body(
            "attestation/dataplane/2025-06-01/examples/Get_MetadataConfiguration.json",
            "200",
        ),
        &oidc,
        "oidc",
    );
    let put = http
        .put(format!("{uri}/policies/AzureGuest?api-version=2022-08-01"))
        .bearer_auth(&maa)
        .header("content-type", "text/plain")
        .body(azure_emulator::signing::unsigned_policy(
            "version=1.0;authorizationrules{=> permit();};issuancerules{};",
        ))
        .send()
        .await
        .expect("put");
    let resp: Value = put.json().await.expect("json");
    assert_conforms(dp25, "PolicyResponse", &resp, &[]);
    let claims = jwt_claims(resp["token"].as_str().expect("token"));
    let jwt_std = ["iat", "nbf", "exp", "iss"];
    assert_conforms(dp22, "PolicyResult", &claims, &jwt_std);
    assert_conforms(dp25, "PolicyResult", &claims, &jwt_std);
    let (_, got) = get_json(
        &http,
        &format!("{uri}/policies/AzureGuest?api-version=2022-08-01"),
        &maa,
    )
    .await;
    let claims = jwt_claims(got["token"].as_str().expect("token"));
    assert_conforms(dp25, "PolicyResult", &claims, &jwt_std);
    let (_, err) = get_json(
        &http,
        &format!("{uri}/policies/Bogus?api-version=2022-08-01"),
        &maa,
    )
    .await;
    assert_conforms(dp22, "CloudError", &err, &[]);
    emu.shutdown().await;
}
