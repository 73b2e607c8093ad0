//! The Helm chart and the operator binary, with the real tools (Helm v4, kubectl) and the real API
//! server:
//!
//! * `helm lint --strict`; the values schema rejects nonsense;
//! * the rendered manifests: restricted pod security, least-privilege RBAC, server-side dry-run,
//!   and a Pod built from the Deployment's template admitted by PodSecurity `restricted`;
//! * `helm install`, then the operator binary as processes with a TokenRequest token of the
//!   chart's ServiceAccount, against the Azure emulator: every example reaches Ready (the chart's
//!   RBAC is enough); SelfSubjectAccessReviews show it is not more than needed; two replicas on
//!   one Lease: one leader writes, the other takes over after SIGTERM and after SIGKILL (the audit
//!   log shows no writes outside a replica's term); the Argo CD health Lua of
//!   docs/observability.md on the real objects; no secret in the logs.

use std::{
    collections::BTreeSet,
    fs,
    path::PathBuf,
    process::Output,
    time::{Duration, Instant},
};

use azure_emulator::{
    AttestationStatusProps, Emulator, ExtensionBehavior, Seed, format_status_timestamp,
};
use k8s_openapi::{
    api::{
        authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        },
        coordination::v1::Lease,
        core::v1::{Namespace, Pod},
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams, PostParams},
};
use serde::Deserialize as _;
use serde_json::{Value, json};

use crate::support::{
    self, azure as az, dynamic_api,
    operator::{self, Operator, OperatorSpec, client_from, token_kubeconfig, wait_ready},
    repo_root,
};

const CHART: &str = "charts/guest-attestation-operator";

// ---------------------------------------------------------------------------------------------
// tools

fn helm(args: &[&str]) -> Output {
    operator::helm(support::env(), args)
}

fn helm_ok(args: &[&str]) -> String {
    operator::helm_ok(support::env(), args)
}

/// `helm template` with `--set` values; the documents, parsed.
fn render(release: &str, ns: &str, sets: &[&str], include_crds: bool) -> (String, Vec<Value>) {
    let mut args = vec!["template", release, CHART, "-n", ns];
    if include_crds {
        args.push("--include-crds");
    }
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let text = helm_ok(&args);
    let docs = serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| {
            let v = serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap();
            (!v.is_null()).then_some(v)
        })
        .collect();
    (text, docs)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn yaml_docs(docs: &[&Value]) -> String {
    docs.iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

async fn labelled_namespace(client: &Client, prefix: &str, restricted: bool) -> String {
    let ns = support::namespace(client, prefix).await;
    if restricted {
        let patch = json!({"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }}});
        Api::<Namespace>::all(client.clone())
            .patch(&ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    ns
}

// ---------------------------------------------------------------------------------------------
// lint and render

/// Values that switch every optional part on.
const EVERYTHING: &[&str] = &[
    "replicaCount=2",
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "networkPolicy.enabled=true",
    "networkPolicy.allowIMDS=true",
    "networkPolicy.apiServerCIDRs={10.0.0.1/32}",
    "workloadIdentity.enabled=true",
    "workloadIdentity.clientId=24a6e53d-04e5-44d2-b7cc-1b732a847dfc",
    "serviceAccount.labels.team=platform",
    "azure.extraCA.configMap=azure-ca",
    "azure.credentials.existingSecret=operator-sp",
    "azure.apiVersions.vmInstances=2025-06-01-preview",
];

#[test]
fn chart_lints_strictly_and_its_schema_rejects_nonsense() {
    helm_ok(&["lint", "--strict", CHART]);
    let mut args = vec!["lint", "--strict", CHART];
    for s in EVERYTHING {
        args.extend(["--set", s]);
    }
    helm_ok(&args);
    helm_ok(&[
        "lint",
        "--strict",
        CHART,
        "--set",
        "watchNamespaces={team-a,team-b}",
    ]);
    for bad in [
        "controller.concurrency=0",
        "leaderElection.leaseDuration=15",
        "logging.format=xml",
        "unknownKey=1",
        "azure.cloud=Mars",
    ] {
        let out = helm(&["template", "x", CHART, "--set", bad]);
        assert!(!out.status.success(), "--set {bad} was accepted");
    }
    // Two replicas without a Lease would reconcile everything twice.
    let out = helm(&[
        "template",
        "x",
        CHART,
        "--set",
        "replicaCount=2",
        "--set",
        "leaderElection.enabled=false",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("leaderElection"));
}

fn assert_restricted_pod(pod: &Value) {
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 65532);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    for c in pod["containers"].as_array().unwrap() {
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{c}");
        assert_eq!(sc["runAsUser"], 65532);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        for k in ["cpu", "memory"] {
            assert!(c["resources"]["requests"][k].is_string(), "requests.{k}");
        }
        assert!(c["resources"]["limits"]["memory"].is_string());
        assert!(c["resources"]["limits"]["cpu"].is_string());
    }
}

/// No wildcard anywhere; Secrets get only; Leases only in a Role of `release_ns`, get/update
/// only by name; no binding to a built-in role.
fn assert_least_privilege(docs: &[Value], release_ns: &str, lease: &str) {
    let mut saw_secrets = false;
    for role in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
    {
        for rule in role["rules"].as_array().unwrap() {
            let (groups, resources, verbs) = (
                strings(&rule["apiGroups"]),
                strings(&rule["resources"]),
                strings(&rule["verbs"]),
            );
            for s in groups.iter().chain(&resources).chain(&verbs) {
                assert!(!s.contains('*'), "wildcard in {rule}");
            }
            assert!(rule.get("nonResourceURLs").is_none());
            if resources.iter().any(|r| r == "secrets") {
                saw_secrets = true;
                assert_eq!(verbs, ["get"], "secrets: {rule}");
            }
            if resources.iter().any(|r| r == "leases") {
                assert_eq!(role["kind"], "Role", "leases outside a Role: {rule}");
                assert_eq!(role["metadata"]["namespace"], release_ns);
                let names = strings(&rule["resourceNames"]);
                if verbs.iter().any(|v| v != "create") {
                    assert_eq!(names, [lease], "{rule}");
                    assert!(verbs.iter().all(|v| v == "get" || v == "update"), "{rule}");
                }
            }
            for v in &verbs {
                assert!(
                    [
                        "get", "list", "watch", "create", "update", "patch", "delete"
                    ]
                    .contains(&v.as_str()),
                    "unexpected verb {v}"
                );
            }
        }
    }
    assert!(saw_secrets);
    for b in docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRoleBinding" || d["kind"] == "RoleBinding")
    {
        let role = b["roleRef"]["name"].as_str().unwrap();
        assert!(
            !["cluster-admin", "admin", "edit", "view"].contains(&role),
            "binds {role}"
        );
        assert!(role.contains("guest-attestation-operator"), "{b}");
    }
}

#[tokio::test]
async fn rendered_chart_is_restricted_least_privilege_and_accepted_by_the_server() {
    let env = support::env();
    let client = env.client().await;
    let ns = labelled_namespace(&client, "chart-render", true).await;
    let other = support::namespace(&client, "chart-render-b").await;
    let release = format!("r{}", &ns[ns.len() - 8..]);
    let lease = format!("{release}-guest-attestation-operator");
    let watch = format!("watchNamespaces={{{ns},{other}}}");
    let mut everything: Vec<&str> = EVERYTHING.to_vec();
    everything.push(&watch);
    for (name, sets) in [
        ("defaults (all namespaces)", vec![]),
        ("namespaced, everything on", everything),
    ] {
        let (_, docs) = render(&release, &ns, &sets, true);
        let deployments = of_kind(&docs, "Deployment");
        assert_eq!(deployments.len(), 1, "{name}");
        let d = deployments[0];
        let pod = &d["spec"]["template"]["spec"];
        assert_restricted_pod(pod);
        assert_least_privilege(&docs, &ns, &lease);
        let replicas = d["spec"]["replicas"].as_i64().unwrap();
        assert_eq!(
            of_kind(&docs, "PodDisruptionBudget").len(),
            usize::from(replicas > 1),
            "{name}"
        );
        assert_eq!(of_kind(&docs, "Service").len(), 1);
        assert_eq!(of_kind(&docs, "CustomResourceDefinition").len(), 3);
        if sets_contain(&sets, "watchNamespaces") {
            assert!(of_kind(&docs, "ClusterRole").is_empty(), "{name}");
            let roles: BTreeSet<String> = of_kind(&docs, "Role")
                .iter()
                .map(|r| r["metadata"]["namespace"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(roles, BTreeSet::from([ns.clone(), other.clone()]));
            assert_eq!(
                d["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"],
                "true"
            );
            let sa = of_kind(&docs, "ServiceAccount")[0];
            assert_eq!(
                sa["metadata"]["annotations"]["azure.workload.identity/client-id"],
                "24a6e53d-04e5-44d2-b7cc-1b732a847dfc"
            );
            assert_eq!(sa["metadata"]["labels"]["team"], "platform");
            assert_eq!(of_kind(&docs, "NetworkPolicy").len(), 1);
            assert_eq!(of_kind(&docs, "PrometheusRule").len(), 1);
            assert_eq!(of_kind(&docs, "ServiceMonitor").len(), 1);
        } else {
            assert_eq!(of_kind(&docs, "ClusterRole").len(), 1, "{name}");
        }
        // The API server validates everything it serves (prometheus-operator's kinds are not
        // installed here; their metric names are checked against a live operator below).
        let served: Vec<&Value> = docs
            .iter()
            .filter(|d| {
                !d["apiVersion"]
                    .as_str()
                    .unwrap()
                    .starts_with("monitoring.coreos.com/")
            })
            .collect();
        let out = support::kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--force-conflicts",
                "-f",
                "-",
            ],
            &yaml_docs(&served),
        );
        assert!(
            out.status.success(),
            "{name}: server-side dry-run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // PodSecurity `restricted` admits a Pod built from the Deployment's template.
        let mut pod_obj: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "operator-pod-template", "namespace": ns,
                "labels": d["spec"]["template"]["metadata"]["labels"]},
            "spec": pod,
        }))
        .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        pods.create(&dry, &pod_obj).await.unwrap_or_else(|e| {
            panic!("{name}: PodSecurity restricted rejected the pod template: {e}")
        });
        // Control: the same admission rejects a pod that drops the hardening.
        let spec = pod_obj.spec.as_mut().unwrap();
        spec.security_context = None;
        spec.containers[0].security_context = None;
        let err = pods.create(&dry, &pod_obj).await.unwrap_err();
        assert!(format!("{err}").contains("restricted"), "{err}");
    }
}

fn sets_contain(sets: &[&str], key: &str) -> bool {
    sets.iter().any(|s| s.starts_with(key))
}

// ---------------------------------------------------------------------------------------------
// the operator binary with the chart's identity

/// The operator processes of one run.
fn operator_spec(run: &Run) -> OperatorSpec {
    OperatorSpec {
        kubeconfig: run.kubeconfig.clone(),
        namespaces: vec![run.ns.clone()],
        lease_ns: run.ns.clone(),
        lease: run.lease.clone(),
        azure_endpoint: run.emu.endpoint(),
        ca: run.ca.clone(),
        dir: run.dir.clone(),
        suffix: run.suffix.clone(),
        extra_args: [
            "--shutdown-timeout",
            "10s",
            "--crd-timeout",
            "30s",
            // The examples refresh every 30m; scaled to 3.6 s so a VM that had not reported yet is
            // read again soon.
            "--interval-scale",
            "0.002",
        ]
        .map(str::to_owned)
        .to_vec(),
    }
}

/// What one end-to-end run shares.
struct Run {
    ns: String,
    suffix: String,
    lease: String,
    kubeconfig: PathBuf,
    ca: PathBuf,
    dir: PathBuf,
    emu: Emulator,
    token: String,
}

const SUB: &str = az::SUB;
const RG: &str = "azlocal-rg";
const PROVIDER: &str = "azlocaleastmaa";

fn machine(name: &str) -> String {
    az::machine_id(RG, name)
}

/// The emulated world the examples refer to: the Azure Local cluster azlocal-east with its
/// attestation provider, demo-vm (a Trusted Launch VM without the extension) and legacy-vm (a VM
/// that reports Healthy), plus VMs for the health-check cases.
async fn emulator() -> Emulator {
    let emu = az::emulator().await;
    let cluster = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.AzureStackHCI/clusters/azlocal-east"
    );
    let provider = format!(
        "/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Attestation/attestationProviders/{PROVIDER}"
    );
    let vm = |name: &str, secure_boot: bool| {
        json!({"id": machine(name), "location": "eastus",
            "vm": {"securityType": "TrustedLaunch", "enableTpm": true, "secureBootEnabled": secure_boot,
                "powerState": "Running",
                "networkInterfaces": [format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.AzureStackHCI/networkInterfaces/{name}-nic")]}})
    };
    let seed = json!({
        "clusters": [{"id": cluster, "location": "eastus", "aadTenantId": az::TENANT,
            "isolatedVmAttestationConfiguration": {
                "attestationResourceId": provider,
                "relyingPartyServiceEndpoint": "https://dp.stackhci.azure.com/eastus/igvmAttestation/test",
                "attestationServiceEndpoint": emu.attest_uri(PROVIDER)}}],
        "attestationProviders": [{"id": provider, "location": "eastus"}],
        "machines": [vm("demo-vm", true), vm("legacy-vm", true), vm("unhealthy-vm", false),
            vm("failing-vm", true), vm("slow-vm", true)],
    });
    emu.apply_seed(&Seed::parse(&seed.to_string()).unwrap())
        .unwrap();
    let now = format_status_timestamp(std::time::SystemTime::now());
    emu.set_attestation_status(
        &machine("legacy-vm"),
        Some(AttestationStatusProps {
            attest_secure_boot_enabled: Some("Enabled".into()),
            attestation_cert_validated: Some("Valid".into()),
            boot_integrity_validated: Some("Valid".into()),
            linux_kernel_version: Some("0".into()),
            health_status: Some("Healthy".into()),
            timestamp: Some(now.clone()),
            provisioning_state: Some("Succeeded".into()),
            ..AttestationStatusProps::default()
        }),
    )
    .unwrap();
    emu.set_attestation_status(
        &machine("unhealthy-vm"),
        Some(AttestationStatusProps {
            attest_secure_boot_enabled: Some("Disabled".into()),
            attestation_cert_validated: Some("Valid".into()),
            boot_integrity_validated: Some("Valid".into()),
            linux_kernel_version: Some("0".into()),
            health_status: Some("Unhealthy".into()),
            timestamp: Some(now),
            provisioning_state: Some("Succeeded".into()),
            ..AttestationStatusProps::default()
        }),
    )
    .unwrap();
    emu.set_extension_behavior(
        &machine("failing-vm"),
        ExtensionBehavior::Fail {
            code: "VMExtensionProvisioningError".into(),
            message: "the extension handler failed to install".into(),
        },
    )
    .unwrap();
    emu.set_extension_behavior(&machine("slow-vm"), ExtensionBehavior::Stuck)
        .unwrap();
    emu
}

fn ready_status(o: &DynamicObject) -> Option<String> {
    o.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

/// Waits until `check` holds for the object, returning it; fails with its last status.
async fn wait_obj(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    what: &str,
    timeout: Duration,
    check: impl Fn(&DynamicObject) -> bool,
) -> DynamicObject {
    let api = dynamic_api(client, ns, kind);
    let deadline = Instant::now() + timeout;
    loop {
        let obj = api.get_opt(name).await.unwrap();
        if let Some(o) = &obj
            && check(o)
        {
            return o.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {kind} {name} to be {what}; last: {:#}",
            obj.map_or(Value::Null, |o| o.data["status"].clone())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn lease_holder(client: &Client, ns: &str, name: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .unwrap()
        .and_then(|l| l.spec?.holder_identity)
        .filter(|h| !h.is_empty())
}

async fn wait_holder(client: &Client, run: &Run, who: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if lease_holder(client, &run.ns, &run.lease).await.as_deref() == Some(who) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{who} did not hold the Lease within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (verb, group, resource, subresource, namespace, name) → allowed?
async fn can(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> bool {
    let (resource, sub) = resource
        .split_once('/')
        .map_or((resource, None), |(r, s)| (r, Some(s)));
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: sub.map(Into::into),
                namespace: ns.map(Into::into),
                name: name.map(Into::into),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap()
        .allowed
}

/// (verb, API group, resource[/subresource], namespace, name).
type Access<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

#[allow(clippy::too_many_lines)] // two tables
async fn assert_rbac(sa: &Client, run: &Run, other_ns: &str) {
    let ns = run.ns.as_str();
    let g = "guestattestation.dev";
    let allowed: &[Access<'_>] = &[
        ("list", g, "attestationstatuses", Some(ns), None),
        ("watch", g, "guestattestationextensions", Some(ns), None),
        (
            "patch",
            g,
            "attestationproviders/status",
            Some(ns),
            Some("x"),
        ),
        ("create", g, "attestationstatuses", Some(ns), None),
        (
            "update",
            g,
            "guestattestationextensions/finalizers",
            Some(ns),
            Some("x"),
        ),
        ("get", "", "secrets", Some(ns), Some("azure-sp")),
        ("watch", "", "configmaps", Some(ns), None),
        ("create", "events.k8s.io", "events", Some(ns), None),
        (
            "get",
            "coordination.k8s.io",
            "leases",
            Some(ns),
            Some(&run.lease),
        ),
        (
            "update",
            "coordination.k8s.io",
            "leases",
            Some(ns),
            Some(&run.lease),
        ),
        ("create", "coordination.k8s.io", "leases", Some(ns), None),
    ];
    let denied: &[Access<'_>] = &[
        ("list", "", "secrets", Some(ns), None),
        ("watch", "", "secrets", Some(ns), None),
        ("list", "", "secrets", None, None),
        ("watch", "", "secrets", None, None),
        ("get", "", "secrets", Some(other_ns), Some("azure-sp")),
        ("create", "", "secrets", Some(ns), None),
        ("update", "", "secrets", Some(ns), Some("azure-sp")),
        ("*", "*", "*", None, None),
        ("*", "*", "*", Some(ns), None),
        ("create", "", "configmaps", Some(ns), None),
        ("create", "", "pods", Some(ns), None),
        ("patch", "apps", "deployments", Some(ns), Some("x")),
        ("delete", "", "namespaces", None, Some(ns)),
        (
            "create",
            "rbac.authorization.k8s.io",
            "clusterroles",
            None,
            None,
        ),
        ("create", g, "guestattestationextensions", Some(ns), None),
        ("delete", g, "attestationproviders", Some(ns), Some("x")),
        ("list", g, "attestationstatuses", Some(other_ns), None),
        ("list", g, "attestationstatuses", None, None),
        ("create", "events.k8s.io", "events", Some(other_ns), None),
        (
            "update",
            "coordination.k8s.io",
            "leases",
            Some(ns),
            Some("someone-else"),
        ),
        (
            "get",
            "coordination.k8s.io",
            "leases",
            Some(ns),
            Some("someone-else"),
        ),
        (
            "delete",
            "coordination.k8s.io",
            "leases",
            Some(ns),
            Some(&run.lease),
        ),
        ("list", "coordination.k8s.io", "leases", Some(ns), None),
        (
            "create",
            "coordination.k8s.io",
            "leases",
            Some(other_ns),
            None,
        ),
        (
            "get",
            "coordination.k8s.io",
            "leases",
            Some(other_ns),
            Some(&run.lease),
        ),
    ];
    for (verb, group, res, ns, name) in allowed {
        assert!(
            can(sa, verb, group, res, *ns, *name).await,
            "must allow {verb} {group}/{res} in {ns:?} {name:?}"
        );
    }
    for (verb, group, res, ns, name) in denied {
        assert!(
            !can(sa, verb, group, res, *ns, *name).await,
            "must deny {verb} {group}/{res} in {ns:?} {name:?}"
        );
    }
    // And a forbidden call really is refused.
    let err = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(sa.clone(), ns)
        .list(&kube::api::ListParams::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err}"
    );
}

/// One audit event of interest.
#[derive(Debug)]
struct Audited {
    at: Timestamp,
    #[allow(dead_code)] // shown when an assertion fails
    verb: String,
    resource: String,
    code: i64,
}

const WRITES: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

/// The write requests each operator sent, from the API server's audit log.
fn audited_writes(identity: &str) -> Vec<Audited> {
    let text = fs::read_to_string(support::env().dir.join("audit.log"))
        .expect("audit.log (testenv --audit)");
    let tag = format!("({identity})");
    text.lines()
        .filter(|l| l.contains(&tag))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["stage"] == "ResponseComplete")
        .filter(|e| WRITES.contains(&e["verb"].as_str().unwrap_or_default()))
        .map(|e| Audited {
            at: e["requestReceivedTimestamp"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            verb: e["verb"].as_str().unwrap().to_owned(),
            resource: format!(
                "{}{}",
                e["objectRef"]["resource"].as_str().unwrap_or_default(),
                e["objectRef"]["subresource"]
                    .as_str()
                    .map(|s| format!("/{s}"))
                    .unwrap_or_default()
            ),
            code: e["responseStatus"]["code"].as_i64().unwrap_or_default(),
        })
        .collect()
}

/// When `identity` first wrote the Lease successfully (its term began).
fn term_start(writes: &[Audited]) -> Option<Timestamp> {
    writes
        .iter()
        .filter(|w| w.resource == "leases" && (200..300).contains(&w.code))
        .map(|w| w.at)
        .min()
}

fn non_lease(writes: &[Audited]) -> Vec<&Audited> {
    writes.iter().filter(|w| w.resource != "leases").collect()
}

/// The Argo CD health check of docs/observability.md: the first ```lua block.
fn argo_health_lua() -> String {
    let doc = fs::read_to_string(repo_root().join("docs/observability.md")).unwrap();
    let start = doc
        .find("```lua\n")
        .expect("a ```lua block in docs/observability.md")
        + 7;
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_owned()
}

/// Runs the health check on one object as Argo CD does (the object as global `obj`).
fn argo_health(script: &str, obj: &Value) -> (String, String) {
    use mlua::{Lua, LuaSerdeExt, Table, serde::SerializeOptions};
    let lua = Lua::new();
    let opts = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    lua.globals()
        .set("obj", lua.to_value_with(obj, opts).unwrap())
        .unwrap();
    let hs: Table = lua.load(script).eval().unwrap();
    (
        hs.get("status").unwrap(),
        hs.get::<Option<String>>("message")
            .unwrap()
            .unwrap_or_default(),
    )
}

/// The Flux health-check expressions of docs/observability.md: kind → (inProgress, failed,
/// current).
fn flux_exprs() -> std::collections::BTreeMap<String, [String; 3]> {
    let doc = fs::read_to_string(repo_root().join("docs/observability.md")).unwrap();
    let block = doc
        .split("```yaml\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .find(|b| b.contains("healthCheckExprs"))
        .expect("a yaml block with healthCheckExprs in docs/observability.md");
    let ks: Value = serde_yaml::from_str(block).unwrap();
    ks["spec"]["healthCheckExprs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("kind"), [s("inProgress"), s("failed"), s("current")])
        })
        .collect()
}

/// Flux's verdict with those expressions: inProgress, then failed, then current; an expression
/// that cannot be evaluated (no status yet) keeps Flux waiting, i.e. InProgress.
fn flux_health(exprs: &[String; 3], obj: &Value) -> &'static str {
    let mut ctx = cel::Context::default();
    for (k, v) in obj.as_object().unwrap() {
        ctx.add_variable_from_value(k.as_str(), cel::to_value(v).unwrap());
    }
    let holds = |e: &str| {
        cel::Program::compile(e)
            .unwrap_or_else(|err| panic!("{e}: {err}"))
            .execute(&ctx)
            .map(|v| v == cel::Value::Bool(true))
    };
    match (holds(&exprs[0]), holds(&exprs[1]), holds(&exprs[2])) {
        (Err(_) | Ok(true), _, _) => "InProgress",
        (_, Ok(true), _) => "Failed",
        (_, _, Ok(true)) => "Current",
        _ => "InProgress",
    }
}

fn full(o: &DynamicObject) -> Value {
    serde_json::to_value(o).unwrap()
}

/// Metric names an alert expression uses.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("guest_attestation_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::too_many_lines)] // one story: install, run, hand over, audit
async fn operator_binary_runs_with_the_charts_rbac_and_hands_over_its_lease() {
    let env = support::env();
    let admin = env.client().await;
    let ns = labelled_namespace(&admin, "chart-e2e", true).await;
    let other_ns = support::namespace(&admin, "chart-e2e-other").await;
    let suffix = ns[ns.len() - 8..].to_owned();
    let release = format!("gao-{suffix}");
    let fullname = format!("{release}-guest-attestation-operator");
    let dir = std::env::temp_dir().join(format!("gao-chart-{suffix}"));
    fs::create_dir_all(&dir).unwrap();

    // helm install with the operator watching this namespace (Roles here, the Lease here). Helm
    // v4 server-side applies crds/ over the copies the test support applied with kubectl; it
    // forces ownership because crdgen writes integer bounds as `minimum: 0.0`, which the API
    // server stores as 0, so a second field manager applying the same file conflicts.
    helm_ok(&[
        "install",
        &release,
        CHART,
        "-n",
        &ns,
        "--force-conflicts",
        "--set",
        &format!("watchNamespaces={{{ns}}}"),
    ]);
    let out = helm_ok(&["status", &release, "-n", &ns]);
    assert!(out.contains("deployed"), "{out}");

    // A TokenRequest token (empty audiences) of the chart's ServiceAccount.
    let token = operator::service_account_token(&admin, &ns, &fullname).await;
    let kubeconfig = dir.join("operator.kubeconfig");
    token_kubeconfig(env, &kubeconfig, &ns, &token);
    let sa = client_from(&kubeconfig).await;

    let emu = emulator().await;
    let ca = dir.join("emulator-ca.pem");
    emu.write_ca(&ca).unwrap();
    let run = Run {
        ns: ns.clone(),
        suffix,
        lease: fullname.clone(),
        kubeconfig,
        ca,
        dir,
        emu,
        token,
    };
    assert_rbac(&sa, &run, &other_ns).await;

    // The examples (the credentials Secret with the emulator's service principal).
    az::credentials_secret(&admin, &ns).await;
    let examples: Vec<String> = fs::read_dir(repo_root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| !p.ends_with("credentials-secret.yaml"))
        // The kustomization is for GitOps tools, not for the API server.
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut expected: Vec<(String, String)> = Vec::new();
    for path in &examples {
        env.kubectl_ok(&["apply", "--server-side", "-n", &ns, "-f", path]);
        for doc in serde_yaml::Deserializer::from_str(&fs::read_to_string(path).unwrap()) {
            let v = serde_yaml::Value::deserialize(doc).unwrap();
            expected.push((
                v["kind"].as_str().unwrap().to_owned(),
                v["metadata"]["name"].as_str().unwrap().to_owned(),
            ));
        }
    }
    // Objects for the health-check cases.
    let gae = |name: &str| {
        format!(
            "apiVersion: guestattestation.dev/v1alpha1\nkind: GuestAttestationExtension\nmetadata: {{name: {name}}}\nspec:\n  machineId: {}\n  clusterId: /subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.AzureStackHCI/clusters/azlocal-east\n  credentialsRef: {{name: azure-sp}}\n",
            machine(name)
        )
    };
    let extra = format!(
        "{}---\n{}---\napiVersion: guestattestation.dev/v1alpha1\nkind: AttestationStatus\nmetadata: {{name: unhealthy-vm}}\nspec:\n  machineId: {}\n  credentialsRef: {{name: azure-sp}}\n",
        gae("failing-vm"),
        gae("slow-vm"),
        machine("unhealthy-vm")
    );
    let out = support::kubectl_stdin(&["apply", "--server-side", "-n", &ns, "-f", "-"], &extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Replica A leads; replica B stands by.
    let mut a = Operator::start(&operator_spec(&run), "op-a");
    wait_holder(&admin, &run, &a.identity, Duration::from_secs(60)).await;
    let mut b = Operator::start(&operator_spec(&run), "op-b");
    wait_ready(&b, "standby", Duration::from_secs(60)).await;

    // Every example reaches Ready with exactly the chart's RBAC (and the AttestationStatus the
    // extension creates for demo-vm).
    let t_examples = Instant::now();
    expected.push(("AttestationStatus".into(), "demo-vm".into()));
    for (kind, name) in &expected {
        wait_obj(
            &admin,
            &ns,
            kind,
            name,
            "Ready",
            Duration::from_secs(90),
            |o| ready_status(o).as_deref() == Some("True"),
        )
        .await;
    }
    let examples_ready = t_examples.elapsed();
    wait_ready(&a, "leading", Duration::from_secs(30)).await;
    assert_eq!(b.get("/readyz").await.map(|r| r.0), Some(200));

    // The health-check cases, produced by the operator.
    let unhealthy = wait_obj(
        &admin,
        &ns,
        "AttestationStatus",
        "unhealthy-vm",
        "Unhealthy",
        Duration::from_secs(60),
        |o| o.data["status"]["health"] == "Unhealthy",
    )
    .await;
    let failing = wait_obj(
        &admin,
        &ns,
        "GuestAttestationExtension",
        "failing-vm",
        "failed",
        Duration::from_secs(60),
        |o| ready_status(o).as_deref() == Some("False"),
    )
    .await;
    let slow = wait_obj(
        &admin,
        &ns,
        "GuestAttestationExtension",
        "slow-vm",
        "deploying",
        Duration::from_secs(60),
        |o| {
            o.data["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Deployed" && c["status"] == "Unknown")
            })
        },
    )
    .await;

    // Argo CD's health check and Flux's health expressions (docs/observability.md) on these real
    // objects.
    let lua = argo_health_lua();
    let flux = flux_exprs();
    assert_eq!(flux.len(), 3);
    let check = |o: &Value, argo: &str, kstatus: &str| {
        let (status, message) = argo_health(&lua, o);
        let what = format!("{} {}", o["kind"], o["metadata"]["name"]);
        assert_eq!(status, argo, "Argo CD on {what}: {message}");
        let kind = o["kind"].as_str().unwrap();
        assert_eq!(flux_health(&flux[kind], o), kstatus, "Flux on {what}");
        message
    };
    for (kind, name) in &expected {
        let o = dynamic_api(&admin, &ns, kind).get(name).await.unwrap();
        check(&full(&o), "Healthy", "Current");
    }
    let message = check(&full(&unhealthy), "Degraded", "Failed");
    assert!(message.contains("SecureBootDisabled"), "{message}");
    check(&full(&failing), "Degraded", "Failed");
    check(&full(&slow), "Progressing", "InProgress");
    let mut newer = full(&unhealthy);
    newer["metadata"]["generation"] = json!(unhealthy.metadata.generation.unwrap() + 1);
    check(&newer, "Progressing", "InProgress");
    let mut fresh = full(&unhealthy);
    fresh.as_object_mut().unwrap().remove("status");
    check(&fresh, "Progressing", "InProgress");

    // /metrics: every metric the PrometheusRule's alerts use is exported by the leader.
    let (_, metrics) = a.get("/metrics").await.unwrap();
    let (_, docs) = render(
        &release,
        &ns,
        &["metrics.prometheusRule.enabled=true"],
        false,
    );
    let rule = of_kind(&docs, "PrometheusRule")[0];
    let mut used = BTreeSet::new();
    for r in rule["spec"]["groups"][0]["rules"].as_array().unwrap() {
        used.extend(metric_names(r["expr"].as_str().unwrap()));
    }
    assert!(used.len() >= 6, "{used:?}");
    // A labelled counter appears only after its first sample (no reconcile failed here): those
    // must at least be registered by the operator's metrics.
    let registered = {
        let m = guest_attestation_operator::metrics::Metrics::new();
        m.reconcile_failures
            .get_or_create(&guest_attestation_operator::metrics::FailureLabels {
                controller: "attestationstatus",
                reason: "KubernetesError",
            })
            .inc();
        m.encode()
    };
    for name in &used {
        let family = name.strip_suffix("_total").unwrap_or(name);
        let type_line = format!("# TYPE {family} ");
        let live = metrics.contains(&type_line);
        assert!(
            live || (name.ends_with("_total") && registered.contains(&type_line)),
            "alert metric {name} is not exported:\n{metrics}"
        );
        if !name.ends_with("_total") {
            assert!(live, "alert gauge {name} is not exported by the leader");
        }
    }
    assert!(metrics.contains("guest_attestation_attestation_health{health=\"Unhealthy\",reason=\"SecureBootDisabled\"} 1"), "{metrics}");
    assert!(metrics.contains("guest_attestation_leader 1"));
    let (_, standby_metrics) = b.get("/metrics").await.unwrap();
    assert!(standby_metrics.contains("guest_attestation_leader 0"));

    // SIGTERM the leader: it drains, releases the Lease, exits 0; B takes over and reconciles.
    let t_sigterm = Timestamp::now();
    let start = Instant::now();
    a.signal("TERM");
    let handover = wait_holder(&admin, &run, &b.identity, Duration::from_secs(10)).await;
    let ats = dynamic_api(&admin, &ns, "AttestationStatus");
    let patched = ats
        .patch(
            "legacy-vm",
            &PatchParams::apply("chart-test").force(),
            &Patch::Apply(
                json!({"apiVersion": "guestattestation.dev/v1alpha1", "kind": "AttestationStatus",
                "spec": {"refreshInterval": "31m"}}),
            ),
        )
        .await
        .unwrap();
    let generation = patched.metadata.generation.unwrap();
    wait_obj(
        &admin,
        &ns,
        "AttestationStatus",
        "legacy-vm",
        "observed by B",
        Duration::from_secs(30),
        |o| o.data["status"]["observedGeneration"].as_i64() == Some(generation),
    )
    .await;
    let reconciled_by_b = start.elapsed();
    assert_eq!(
        a.exited(Duration::from_secs(15)).await,
        Some(0),
        "{}",
        a.log_text()
    );
    assert!(
        handover < Duration::from_secs(5),
        "handover took {handover:?}"
    );
    assert!(a.log_text().contains("released the Lease"));

    // SIGKILL the new leader with C standing by: C takes over within lease duration + retry.
    let mut c = Operator::start(&operator_spec(&run), "op-c");
    wait_ready(&c, "standby", Duration::from_secs(60)).await;
    let t_kill = Instant::now();
    b.signal("KILL");
    b.exited(Duration::from_secs(5)).await;
    let failover = wait_holder(&admin, &run, &c.identity, Duration::from_secs(30)).await;
    let failover_from_kill = t_kill.elapsed();
    assert!(
        failover <= Duration::from_secs(15 + 2 + 3),
        "failover took {failover:?}"
    );
    wait_ready(&c, "leading", Duration::from_secs(30)).await;

    // Someone takes the Lease without waiting for it to expire (no candidate that follows the
    // protocol does): C notices at its next renewal (one retry period, 2 s), cancels its
    // controllers at once and exits 1 (to be restarted as a standby).
    let t_steal = Timestamp::now();
    Api::<Lease>::namespaced(admin.clone(), &ns)
        .patch(
            &run.lease,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"holderIdentity": "intruder"}})),
        )
        .await
        .unwrap();
    let stolen = Instant::now();
    assert_eq!(
        c.exited(Duration::from_secs(10)).await,
        Some(1),
        "{}",
        c.log_text()
    );
    let stopped_after_loss = stolen.elapsed();
    assert!(
        stopped_after_loss < Duration::from_secs(4),
        "C kept running {stopped_after_loss:?} after losing the Lease"
    );
    // C may write until it notices: at most one retry period plus a request.
    let c_noticed = t_steal
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(3))
        .unwrap();
    assert!(c.log_text().contains("lost the Lease"), "{}", c.log_text());

    // The audit log: a replica writes nothing outside its term, and terms do not overlap.
    let (wa, wb, wc) = (
        audited_writes(&a.identity),
        audited_writes(&b.identity),
        audited_writes(&c.identity),
    );
    let (ta, tb, tc) = (
        term_start(&wa).expect("A took the Lease"),
        term_start(&wb).expect("B took the Lease"),
        term_start(&wc).expect("C took the Lease"),
    );
    assert!(ta < t_sigterm && t_sigterm < tb && tb < tc);
    assert!(
        !non_lease(&wa).is_empty(),
        "the leader wrote nothing: {wa:?}"
    );
    assert!(!non_lease(&wb).is_empty(), "B wrote nothing as leader");
    for (who, writes, from, until) in [
        ("A", &wa, ta, Some(tb)),
        ("B", &wb, tb, Some(tc)),
        ("C", &wc, tc, Some(c_noticed)),
    ] {
        for w in non_lease(writes) {
            assert!(
                w.at >= from && until.is_none_or(|u| w.at < u),
                "{who} wrote outside its term ({from} .. {until:?}): {w:?}"
            );
        }
    }
    let standby_writes =
        wb.iter().filter(|w| w.at < tb).count() + wc.iter().filter(|w| w.at < tc).count();
    assert_eq!(standby_writes, 0, "a standby wrote");

    // No secret in the logs: the client secret, the ServiceAccount token, JWTs, auth headers.
    for op in [&a, &b, &c] {
        let log = op.log_text();
        assert!(!log.is_empty());
        for needle in [
            az::CLIENT_SECRET,
            run.token.as_str(),
            "eyJ",
            "Authorization:",
            "Bearer ",
        ] {
            assert!(!log.contains(needle), "{} logged {needle:.8}…", op.identity);
        }
    }
    eprintln!(
        "chart e2e: examples Ready after {examples_ready:?}; SIGTERM handover {handover:?} (reconciled by the new leader {reconciled_by_b:?}); SIGKILL failover {failover:?} ({failover_from_kill:?} from the kill); leader stopped {stopped_after_loss:?} after its Lease was taken; writes A={} B={} C={}",
        non_lease(&wa).len(),
        non_lease(&wb).len(),
        non_lease(&wc).len()
    );
    let _ = fs::remove_dir_all(&run.dir);
}
