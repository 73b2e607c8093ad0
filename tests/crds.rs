//! Offline checks of the CRDs: the committed YAML equals crdgen's output, the examples are
//! valid, and every CEL rule has a passing and a failing case (evaluated with kube's CEL).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[allow(dead_code)] // each test target uses part of the table
#[path = "support/cases.rs"]
mod cases;

use std::{fs, path::Path};

use guest_attestation_operator::crd;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::Validator;
use serde_json::Value;

fn crd_for(kind: &str) -> CustomResourceDefinition {
    crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("known kind")
}

/// Evaluates the CEL rules of the CRD's schema on `object` (as the API server would, minus the
/// structural checks), returning the messages of the rules that failed.
fn cel_errors(object: &Value, old: Option<&Value>) -> Vec<String> {
    let kind = object["kind"].as_str().unwrap();
    let crd = crd_for(kind);
    let schema = serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    match Validator::new().validate(&schema, object, old) {
        Ok(()) => vec![],
        Err(errors) => errors.as_slice().iter().map(|e| format!("{e:?}")).collect(),
    }
}

#[test]
fn committed_crds_match_crdgen() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rendered = crd::render_all().unwrap();
    assert_eq!(rendered.len(), 3);
    for (file, yaml) in rendered {
        let path = root.join("crds").join(&file);
        let committed = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `make crds`", path.display()));
        assert!(
            committed == yaml,
            "crds/{file} is out of date; run `make crds` and commit it"
        );
        let chart = root
            .join("charts/guest-attestation-operator/crds")
            .join(&file);
        if chart.parent().unwrap().exists() {
            let copy = fs::read_to_string(&chart).unwrap();
            assert!(
                copy == yaml,
                "{} is out of date; run `make crds`",
                chart.display()
            );
        }
    }
}

#[test]
fn examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut kinds = std::collections::BTreeSet::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        for doc in serde_yaml::Deserializer::from_str(&fs::read_to_string(&path).unwrap()) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            let kind = value["kind"].as_str().unwrap().to_owned();
            match kind.as_str() {
                "AttestationProvider" => {
                    let o: crd::AttestationProvider =
                        serde_json::from_value(value.clone()).unwrap();
                    o.validate_cel().unwrap();
                }
                "GuestAttestationExtension" => {
                    let o: crd::GuestAttestationExtension =
                        serde_json::from_value(value.clone()).unwrap();
                    o.validate_cel().unwrap();
                }
                "AttestationStatus" => {
                    let o: crd::AttestationStatus = serde_json::from_value(value.clone()).unwrap();
                    o.validate_cel().unwrap();
                }
                _ => continue,
            }
            kinds.insert(kind);
        }
    }
    assert_eq!(kinds.len(), 3, "one example of each kind, found {kinds:?}");
}

#[test]
fn every_cel_rule_fails_its_bad_case() {
    let invalid = cases::invalid();
    assert!(invalid.len() >= 12);
    for case in invalid.iter().filter(|c| c.cel) {
        let errors = cel_errors(&case.object, None);
        assert!(
            errors.iter().any(|e| e.contains(case.message)),
            "{}: expected a CEL error containing {:?}, got {errors:?}",
            case.name,
            case.message
        );
    }
}

#[test]
fn every_cel_rule_passes_its_good_case() {
    for (name, object) in cases::valid() {
        let errors = cel_errors(&object, None);
        assert!(
            errors.is_empty(),
            "{name}: unexpected CEL errors {errors:?}"
        );
    }
}

#[test]
fn schema_only_cases_pass_cel() {
    // These are rejected by the structural schema (enum, maxLength), which CEL does not see.
    for case in cases::invalid().iter().filter(|c| !c.cel) {
        let errors = cel_errors(&case.object, None);
        assert!(errors.is_empty(), "{}: {errors:?}", case.name);
    }
}

#[test]
fn machine_id_is_immutable_on_extensions() {
    let old = cases::extension(
        "x",
        serde_json::json!({"machineId": cases::machine_id("vm1"), "clusterId": cases::cluster_id("c1")}),
    );
    let mut new = old.clone();
    assert!(cel_errors(&new, Some(&old)).is_empty());
    new["spec"]["machineId"] = cases::machine_id("vm2").into();
    let errors = cel_errors(&new, Some(&old));
    assert!(
        errors
            .iter()
            .any(|e| e.contains("spec.machineId is immutable")),
        "{errors:?}"
    );
}

#[test]
fn defaults_live_in_the_schema() {
    let yaml = crd::render_all()
        .unwrap()
        .into_iter()
        .map(|(_, y)| y)
        .collect::<String>();
    for default in [
        "default: 30m",
        "default: 8h",
        "default: DUMMY_Tenant_NewConfig",
        "default: 4H",
        "default: Retain",
        "default: Delete",
        "default: Manage",
        "default: AzureGuest",
        "default: 2022-08-01",
    ] {
        assert!(yaml.contains(default), "missing schema default {default:?}");
    }
}

#[test]
fn every_string_and_list_is_bounded() {
    fn walk(path: &str, v: &Value, unbounded: &mut Vec<String>) {
        let Some(obj) = v.as_object() else { return };
        match obj.get("type").and_then(Value::as_str) {
            Some("string")
                if !obj.contains_key("maxLength")
                    && !obj.contains_key("enum")
                    && obj.get("format").and_then(Value::as_str) != Some("date-time") =>
            {
                unbounded.push(path.to_owned());
            }
            Some("array") if !obj.contains_key("maxItems") => unbounded.push(path.to_owned()),
            Some("object")
                if obj.contains_key("additionalProperties")
                    && !obj.contains_key("maxProperties") =>
            {
                unbounded.push(path.to_owned());
            }
            _ => {}
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                walk(&format!("{path}.{k}"), p, unbounded);
            }
        }
        if let Some(items) = obj.get("items") {
            walk(&format!("{path}[]"), items, unbounded);
        }
        if let Some(ap) = obj.get("additionalProperties") {
            walk(&format!("{path}{{}}"), ap, unbounded);
        }
    }
    for crd in crd::all() {
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut unbounded = vec![];
        for part in ["spec", "status"] {
            walk(part, &schema["properties"][part], &mut unbounded);
        }
        assert!(
            unbounded.is_empty(),
            "{}: unbounded fields {unbounded:?}",
            crd.spec.names.kind
        );
    }
}
