//! The AttestationProvider reconciler (I/O): a short driver over named steps.
//!
//! ```text
//! reconcile ─┬─ deleting ── cleanup: decide (pure) → holders (GuestAttestationExtensions) → delete → release
//!            └─ finalizer ─ apply:
//!                 1. target     pure   spec → provider id or cluster id          (invalid: InvalidSpec, await change)
//!                 2. endpoint   I/O    cluster → provider; create when missing, patch when different (Manage)
//!                 3. policy     I/O    source → structural check (pure) → MAA GET → compare (pure) → PUT (Manage)
//!                 4. status     pure   render; server-side apply only when it changed; Events
//!                 5. requeue           the next drift check (Azure sends no events)
//! ```
//!
//! A step that meets an Azure failure still lets the status be written (the failing condition
//! says why, the last observed values stay) and then returns the error, so that `error_policy`
//! backs off. Findings that retrying cannot change (a malformed or rejected policy, a missing
//! ConfigMap, a missing provider under Observe) are reported in status and are not errors.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::{
    Api, ResourceExt,
    api::{ListParams, PartialObjectMeta, Patch, PatchParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::{self, Action},
        events::EventType,
        reflector, watcher,
    },
};
use tracing::{info, warn};

use super::deletion::{self, Cleanup, Released};
use super::desired::{self, ClusterProblem, OnMissing, PolicySource, Resolved, Target};
use super::error::Error;
use super::policy::{self, Comparison};
use super::policy_check::check_policy;
use super::status::{self, Endpoint, Input, Notice, Policy};
use super::triggers;
use crate::azure::{
    AttestationProvider as AzureProvider, AzureApi, AzureClients, PolicySigner, ProviderId, Toggle,
    TrustModel, policy_token_hash,
};
use crate::controller::companions::Companions;
use crate::controller::memory::Store;
use crate::controller::{self as shared, Context};
use crate::crd::provider::AttestationProviderStatus;
use crate::crd::{AttestationProvider, GuestAttestationExtension, ManagementPolicy};
use crate::metrics::FailureLabels;

/// The controller's name in metrics, Events and field managers.
pub const CONTROLLER: &str = "attestationprovider";

/// The finalizer that lets deletionPolicy act on Azure before the object goes.
pub const FINALIZER: &str = "attestationproviders.guestattestation.dev/cleanup";

/// How often Azure is checked for drift (scaled by `Settings::interval_scale`, ±10 % jitter).
pub const DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(600);

/// How often a deletion blocked by GuestAttestationExtensions looks again (their removal also
/// triggers a reconcile at once).
pub const BLOCKED_RECHECK_INTERVAL: Duration = Duration::from_secs(60);

/// What the controller remembers of one object between reconciles (lost on restart, which costs
/// at most one repeated Event or one repeated PUT).
#[derive(Clone, Debug, Default)]
pub struct Memory {
    /// The digest of the effective policy last reported as drift: one Event per drift found, not
    /// one per reconcile that finds it again.
    pub reported_drift: Option<String>,
    /// The hash of a desired text MAA rejected, and its message: not sent again until it changes.
    pub rejected: Option<(String, String)>,
}

/// The controller's context: the shared one plus its memory.
pub struct ProviderContext<C: AzureClients> {
    /// Shared context.
    pub ctx: Context<C>,
    /// Per-object memory.
    pub memory: Store<Memory>,
}

impl<C: AzureClients> ProviderContext<C> {
    /// Wraps a shared context.
    pub fn new(ctx: Context<C>) -> Self {
        Self {
            ctx,
            memory: Store::default(),
        }
    }
}

/// Reconciles one AttestationProvider.
pub async fn reconcile<C: AzureClients>(
    obj: Arc<AttestationProvider>,
    pctx: Arc<ProviderContext<C>>,
) -> Result<Action, Error> {
    pctx.ctx
        .reconcile_in_turn(CONTROLLER, &*obj, || reconcile_inner(&obj, &pctx))
        .await
}

async fn reconcile_inner<C: AzureClients>(
    obj: &AttestationProvider,
    pctx: &ProviderContext<C>,
) -> Result<Action, Error> {
    let ns = obj.namespace().ok_or(Error::NoNamespace)?;
    if obj.metadata.deletion_timestamp.is_some() {
        return cleanup(obj, pctx, &ns).await;
    }
    ensure_finalizer(obj, &pctx.ctx, &ns).await?;
    apply(obj, pctx, &ns).await
}

// ---------------------------------------------------------------------------------------------
// apply

async fn apply<C: AzureClients>(
    obj: &AttestationProvider,
    pctx: &ProviderContext<C>,
    ns: &str,
) -> Result<Action, Error> {
    let ctx = &pctx.ctx;
    let uid = obj.uid().unwrap_or_default();
    // 1. target
    let target = match desired::target(&obj.spec) {
        Ok(t) => t,
        Err(problem) => {
            let endpoint = Endpoint::InvalidSpec(problem);
            write_status(
                obj,
                ctx,
                ns,
                &endpoint,
                &Policy::EndpointNotReady,
                Vec::new(),
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let azure = match ctx.azure_for(ns, obj.spec.credentials_ref.as_ref()).await {
        // The policy's own data-plane api-version applies to this object's MAA calls.
        Ok(a) => match &obj.spec.policy {
            Some(p) => a.with_maa_api_version(&p.api_version),
            None => a,
        },
        Err(e) => {
            let e = Error::from(e);
            let endpoint = Endpoint::Failed {
                reason: e.reason(),
                message: e.message(),
            };
            write_status(
                obj,
                ctx,
                ns,
                &endpoint,
                &Policy::EndpointNotReady,
                Vec::new(),
            )
            .await?;
            return Err(e);
        }
    };
    let mut notices = Vec::new();
    // 2. endpoint
    let (endpoint, failure) =
        match ensure_endpoint(obj, ctx, ns, &azure, &target, &mut notices).await {
            Ok(e) => (e, None),
            Err(e) => (
                Endpoint::Failed {
                    reason: e.reason(),
                    message: e.message(),
                },
                Some(e),
            ),
        };
    // 3. policy
    let mut memory = pctx.memory.get(&uid);
    let (policy, failure) = match failure {
        Some(e) => (Policy::EndpointNotReady, Some(e)),
        None => ensure_policy(obj, ctx, ns, &azure, &endpoint, &mut memory, &mut notices).await,
    };
    pctx.memory.put(&uid, memory);
    // 4. status
    write_status(obj, ctx, ns, &endpoint, &policy, notices).await?;
    // 5. requeue
    match failure {
        Some(e) => Err(e),
        None => Ok(Action::requeue(drift_check_after(ctx, &uid))),
    }
}

fn drift_check_after<C: AzureClients>(ctx: &Context<C>, uid: &str) -> Duration {
    ctx.settings
        .scaled(DRIFT_CHECK_INTERVAL)
        .mul_f64(crate::attestation_status::schedule::jitter(uid))
}

/// Step 2: finds the provider (directly or through the cluster), creates it when it is missing
/// and that is allowed, and patches what differs under Manage.
async fn ensure_endpoint<C: AzureClients>(
    obj: &AttestationProvider,
    ctx: &Context<C>,
    ns: &str,
    azure: &C::Client,
    target: &Target,
    notices: &mut Vec<Notice>,
) -> Result<Endpoint, Error> {
    let spec = &obj.spec;
    let resolved = match target {
        Target::Provider(id) => Resolved {
            id: id.clone(),
            location: spec.location.clone(),
        },
        Target::Cluster(cluster_id) => {
            let cluster = azure
                .get_cluster(cluster_id)
                .await
                .map_err(Error::azure("read the Azure Local cluster"))?;
            let Some(cluster) = cluster else {
                return Ok(Endpoint::ClusterNotFound {
                    cluster: cluster_id.to_string(),
                });
            };
            match desired::through_cluster(spec.location.as_deref(), &cluster) {
                Ok(r) => r,
                Err(problem) => {
                    return Ok(Endpoint::ClusterHasNoProvider {
                        cluster: cluster_id.to_string(),
                        detail: match problem {
                            ClusterProblem::NoProvider => "isolatedVmAttestationConfiguration.attestationResourceId is not set".to_owned(),
                            ClusterProblem::BadProviderId(m) => m,
                        },
                    });
                }
            }
        }
    };
    let id = resolved.id.to_string();
    let observed = azure
        .get_provider(&resolved.id)
        .await
        .map_err(Error::azure("read the attestation provider"))?;
    let provider = match observed {
        Some(p) => patch_if_needed(obj, azure, &resolved.id, p, notices).await?,
        None => match desired::on_missing(spec, resolved.location.as_deref()) {
            OnMissing::Leave { why } => return Ok(Endpoint::Missing { id, why }),
            OnMissing::Create { location } => {
                let certificates = match signing_certificates(obj, ctx, ns).await? {
                    Ok(c) => c,
                    Err(message) => return Ok(Endpoint::CertificatesInvalid { id, message }),
                };
                let body = desired::desired_provider(spec, &location, certificates);
                let created = azure
                    .put_provider(&resolved.id, &body)
                    .await
                    .map_err(Error::azure("create the attestation provider"))?;
                let seen_before = obj.status.as_ref().is_some_and(|s| s.attest_uri.is_some());
                notices.push(Notice {
                    warning: false,
                    reason: "Recreated",
                    note: if seen_before {
                        format!("provider {id} had disappeared from Azure and was recreated in {location}")
                    } else {
                        format!("provider {id} did not exist and was created in {location}")
                    },
                });
                info!(provider = %id, "attestation provider created");
                created
            }
        },
    };
    Ok(Endpoint::Found {
        id,
        provider: Box::new(provider),
    })
}

async fn patch_if_needed<A: AzureApi>(
    obj: &AttestationProvider,
    azure: &A,
    id: &ProviderId,
    observed: AzureProvider,
    notices: &mut Vec<Notice>,
) -> Result<AzureProvider, Error> {
    if obj.spec.management_policy == ManagementPolicy::Observe {
        return Ok(observed);
    }
    let Some(patch) = desired::provider_patch(&obj.spec, &observed) else {
        return Ok(observed);
    };
    let patched = azure
        .patch_provider(id, &patch)
        .await
        .map_err(Error::azure("update the attestation provider"))?;
    notices.push(Notice {
        warning: false,
        reason: "ProviderUpdated",
        note: format!(
            "provider {id} updated to match the spec ({})",
            [
                patch.properties.as_ref().map(|_| "publicNetworkAccess"),
                patch.tags.as_ref().map(|_| "tags"),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
        ),
    });
    Ok(patched)
}

/// spec.policySigningCertificates as a key set; `Ok(Err(message))` when the Secret cannot be used.
async fn signing_certificates<C: AzureClients>(
    obj: &AttestationProvider,
    ctx: &Context<C>,
    ns: &str,
) -> Result<Result<Option<crate::azure::JsonWebKeySet>, String>, Error> {
    let Some(c) = &obj.spec.policy_signing_certificates else {
        return Ok(Ok(None));
    };
    let r = &c.secret_ref;
    let what = "spec.policySigningCertificates.secretRef";
    Ok(match secret_key(ctx, ns, &r.name, &r.key, what).await? {
        Err(m) => Err(m),
        Ok(pem) => policy::signing_certificates(&pem)
            .map(Some)
            .map_err(|e| format!("Secret {} key {}: {e}", r.name, r.key)),
    })
}

/// Step 3: the policy, from the declared text to what MAA holds. Returns the finding and, when an
/// Azure or Kubernetes call failed, the error to back off on.
async fn ensure_policy<C: AzureClients>(
    obj: &AttestationProvider,
    ctx: &Context<C>,
    ns: &str,
    azure: &C::Client,
    endpoint: &Endpoint,
    memory: &mut Memory,
    notices: &mut Vec<Notice>,
) -> (Policy, Option<Error>) {
    let Some(spec) = &obj.spec.policy else {
        *memory = Memory::default();
        return (Policy::NotManaged, None);
    };
    let text = match policy_text(ctx, ns, spec).await {
        Ok(Ok(text)) => text,
        Ok(Err(message)) => return (Policy::SourceNotFound(message), None),
        Err(e) => return failed(e),
    };
    // The structural check comes before anything is sent: a typo never reaches Azure.
    if let Err(problem) = check_policy(&text) {
        return (Policy::Invalid(problem), None);
    }
    let Some(provider) = endpoint.ready() else {
        return (Policy::EndpointNotReady, None);
    };
    let declared = Declared {
        spec,
        hash: policy::sha256_hex(&text),
        text,
        attestation_type: desired::attestation_type(spec.attestation_type),
        attest_uri: provider
            .properties
            .attest_uri
            .as_deref()
            .unwrap_or_default(),
        provider,
    };
    let effective = match azure
        .maa_get_policy(declared.attest_uri, declared.attestation_type)
        .await
    {
        Ok(p) => p,
        Err(e) => return policy_failure(provider, Error::azure("read the policy")(e)),
    };
    match policy::compare(&declared.text, &effective) {
        Comparison::InSync => {
            memory.reported_drift = None;
            return (
                Policy::InSync {
                    desired_hash: declared.hash,
                    token_hash: effective.policy_jws.as_deref().map(policy_token_hash),
                },
                None,
            );
        }
        Comparison::Drifted { effective_digest } => {
            let observe = obj.spec.management_policy == ManagementPolicy::Observe;
            report_drift(&declared, observe, effective_digest, memory, notices);
            if observe {
                return (Policy::Drifted, None);
            }
        }
    }
    set_policy(ctx, ns, azure, declared, memory, notices).await
}

/// The declared policy, checked, with where it goes.
struct Declared<'a> {
    spec: &'a crate::crd::provider::PolicySpec,
    text: String,
    /// SHA-256 hex of `text`.
    hash: String,
    attestation_type: &'static str,
    attest_uri: &'a str,
    provider: &'a AzureProvider,
}

/// One Warning Event per drift found: a drift already reported (same effective policy) is not
/// reported again by the reconciles that find it again.
fn report_drift(
    declared: &Declared<'_>,
    observe: bool,
    effective_digest: String,
    memory: &mut Memory,
    notices: &mut Vec<Notice>,
) {
    if memory.reported_drift.as_deref() == Some(effective_digest.as_str()) {
        return;
    }
    notices.push(Notice {
        warning: true,
        reason: "PolicyDrift",
        note: format!(
            "the effective {} policy on {} differs from the declared one; {}",
            declared.attestation_type,
            declared.attest_uri,
            if observe {
                "managementPolicy Observe leaves it"
            } else {
                "setting the declared policy"
            }
        ),
    });
    memory.reported_drift = Some(effective_digest);
}

/// Sets the declared policy (Manage), signed when a key is configured; an Isolated provider
/// without one cannot be written. A text MAA rejected is not sent again until it changes.
async fn set_policy<C: AzureClients>(
    ctx: &Context<C>,
    ns: &str,
    azure: &C::Client,
    declared: Declared<'_>,
    memory: &mut Memory,
    notices: &mut Vec<Notice>,
) -> (Policy, Option<Error>) {
    if let Some((hash, message)) = &memory.rejected
        && *hash == declared.hash
    {
        return (
            Policy::Rejected {
                message: message.clone(),
            },
            None,
        );
    }
    let signer = match &declared.spec.signing_key_secret_ref {
        Some(r) => match load_signer(ctx, ns, &r.name).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(message)) => return (Policy::SigningKeyInvalid(message), None),
            Err(e) => return failed(e),
        },
        None if declared.provider.properties.trust_model == Some(TrustModel::Isolated) => {
            return (Policy::SigningKeyRequired, None);
        }
        None => None,
    };
    let result = azure
        .maa_set_policy(
            declared.attest_uri,
            declared.attestation_type,
            &declared.text,
            signer.as_ref(),
        )
        .await;
    match result {
        Ok(outcome) => {
            memory.reported_drift = None;
            memory.rejected = None;
            notices.push(Notice {
                warning: false,
                reason: "PolicyApplied",
                note: format!(
                    "the declared {} policy (sha256 {}) was set on {}{}",
                    declared.attestation_type,
                    declared.hash,
                    declared.attest_uri,
                    if signer.is_some() { ", signed" } else { "" }
                ),
            });
            (
                Policy::Applied {
                    desired_hash: declared.hash,
                    token_hash: outcome.token_hash,
                },
                None,
            )
        }
        // MAA judged the text and refused it: retrying the same text cannot succeed.
        Err(e) if e.status() == Some(400) => {
            let message = e.message().map_or_else(|| e.to_string(), str::to_owned);
            memory.rejected = Some((declared.hash, message.clone()));
            (Policy::Rejected { message }, None)
        }
        Err(e) => policy_failure(declared.provider, Error::azure("set the policy")(e)),
    }
}

fn failed(e: Error) -> (Policy, Option<Error>) {
    (
        Policy::Failed {
            reason: e.reason(),
            message: e.message(),
        },
        Some(e),
    )
}

/// MAA refuses every caller of a provider without public network access (403): that is a
/// finding, not something retrying fixes.
fn policy_failure(provider: &AzureProvider, e: Error) -> (Policy, Option<Error>) {
    let forbidden = matches!(&e, Error::Azure { source, .. } if source.status() == Some(403));
    if forbidden && provider.properties.public_network_access == Some(Toggle::Disabled) {
        return (Policy::Unreachable, None);
    }
    failed(e)
}

/// The declared policy text; `Ok(Err(message))` when its ConfigMap or key is missing.
async fn policy_text<C: AzureClients>(
    ctx: &Context<C>,
    ns: &str,
    spec: &crate::crd::provider::PolicySpec,
) -> Result<Result<String, String>, Error> {
    let source = match desired::policy_source(spec) {
        Ok(s) => s,
        Err(m) => return Ok(Err(m)),
    };
    let (name, key) = match source {
        PolicySource::Inline(text) => return Ok(Ok(text.to_owned())),
        PolicySource::ConfigMap { name, key } => (name, key),
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    let Some(cm) = api.get_opt(name).await? else {
        return Ok(Err(format!(
            "ConfigMap {name} (spec.policy.configMapKeyRef) not found in namespace {ns}"
        )));
    };
    Ok(cm
        .data
        .and_then(|mut d| d.remove(key))
        .ok_or_else(|| format!("ConfigMap {name} has no key {key} (spec.policy.configMapKeyRef)")))
}

/// The policy signer from a `kubernetes.io/tls`-shaped Secret (`tls.key`, `tls.crt`);
/// `Ok(Err(message))` when it is missing or unusable. Messages never quote key material.
async fn load_signer<C: AzureClients>(
    ctx: &Context<C>,
    ns: &str,
    name: &str,
) -> Result<Result<PolicySigner, String>, Error> {
    let what = "spec.policy.signingKeySecretRef";
    let key = match secret_key(ctx, ns, name, "tls.key", what).await? {
        Ok(k) => k,
        Err(m) => return Ok(Err(m)),
    };
    let chain = match secret_key(ctx, ns, name, "tls.crt", what).await? {
        Ok(c) => c,
        Err(m) => return Ok(Err(m)),
    };
    Ok(PolicySigner::from_pem(&key, &chain).map_err(|e| format!("Secret {name} ({what}): {e}")))
}

/// One key of a Secret in the object's namespace; `Ok(Err(message))` when either is missing.
async fn secret_key<C: AzureClients>(
    ctx: &Context<C>,
    ns: &str,
    name: &str,
    key: &str,
    what: &str,
) -> Result<Result<Vec<u8>, String>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(Err(format!(
            "Secret {name} ({what}) not found in namespace {ns}"
        )));
    };
    Ok(secret
        .data
        .and_then(|mut d| d.remove(key))
        .map(|b| b.0)
        .ok_or_else(|| format!("Secret {name} ({what}) has no key {key}")))
}

// ---------------------------------------------------------------------------------------------
// status and Events

/// Step 4: renders the status, applies it when it changed, and publishes the Events of this
/// reconcile (its actions, and the conditions that entered a reported state).
async fn write_status<C: AzureClients>(
    obj: &AttestationProvider,
    ctx: &Context<C>,
    ns: &str,
    endpoint: &Endpoint,
    policy: &Policy,
    notices: Vec<Notice>,
) -> Result<(), Error> {
    let status = status::render(&Input {
        old: obj.status.as_ref(),
        generation: obj.metadata.generation,
        spec_access: obj.spec.public_network_access,
        management: obj.spec.management_policy,
        endpoint,
        policy,
        now: Timestamp::now(),
    });
    apply_status(obj, ctx, ns, status, notices).await
}

async fn apply_status<C: AzureClients>(
    obj: &AttestationProvider,
    ctx: &Context<C>,
    ns: &str,
    status: AttestationProviderStatus,
    mut notices: Vec<Notice>,
) -> Result<(), Error> {
    notices.extend(status::notices(obj.status.as_ref(), &status));
    let manager = format!("{}/{CONTROLLER}/status", ctx.settings.field_manager);
    let written = ctx
        .apply_status(obj, ns, obj.status.as_ref(), &status, CONTROLLER, &manager)
        .await;
    // Events are published even when the write failed: they report what was done in Azure.
    for n in notices {
        publish(obj, ctx, n.warning, n.reason, &n.note, "Reconcile").await;
    }
    written?;
    Ok(())
}

async fn publish<C: AzureClients>(
    obj: &AttestationProvider,
    ctx: &Context<C>,
    warning: bool,
    reason: &str,
    note: &str,
    action: &str,
) {
    let type_ = if warning {
        EventType::Warning
    } else {
        EventType::Normal
    };
    ctx.publish(obj, type_, reason, action, note).await;
}

// ---------------------------------------------------------------------------------------------
// finalizer and cleanup

fn has_finalizer(obj: &AttestationProvider) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer. The merge patch carries the resourceVersion, so a concurrent change to the
/// finalizer list fails with a conflict (and is retried) instead of being overwritten.
async fn ensure_finalizer<C: AzureClients>(
    obj: &AttestationProvider,
    ctx: &Context<C>,
    ns: &str,
) -> Result<(), Error> {
    if has_finalizer(obj) {
        return Ok(());
    }
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    set_finalizers(obj, ctx, ns, finalizers).await
}

async fn set_finalizers<C: AzureClients>(
    obj: &AttestationProvider,
    ctx: &Context<C>,
    ns: &str,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let api: Api<AttestationProvider> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Honours deletionPolicy, then releases the finalizer. It stays only while a
/// GuestAttestationExtension references the provider, or while a retryable Azure failure lasts.
async fn cleanup<C: AzureClients>(
    obj: &AttestationProvider,
    pctx: &ProviderContext<C>,
    ns: &str,
) -> Result<Action, Error> {
    let ctx = &pctx.ctx;
    if !has_finalizer(obj) {
        return Ok(Action::await_change());
    }
    let spec = &obj.spec;
    let deleting = spec.deletion_policy == crate::crd::DeletionPolicy::Delete
        && spec.management_policy == ManagementPolicy::Manage;
    // Kubernetes-only facts first: a blocked deletion of a known provider needs no Azure call.
    let holders = if deleting {
        holders(ctx, ns, &obj.name_any()).await?
    } else {
        Vec::new()
    };
    let known = known_provider_id(obj);
    let id = match (&known, deleting) {
        (None, true) => match resolve_for_cleanup(obj, ctx, ns).await {
            Ok(id) => id,
            Err(Resolution::Retry(e)) => return Err(e),
            Err(Resolution::GiveUp(message)) => {
                return release(obj, pctx, ns, deletion::abandoned(None, &message)).await;
            }
        },
        _ => known,
    };
    match deletion::decide(
        spec.deletion_policy,
        spec.management_policy,
        id.as_ref(),
        &holders,
    ) {
        Cleanup::Release(r) => release(obj, pctx, ns, r).await,
        Cleanup::Blocked { holders } => {
            let provider = id.as_ref().map(ToString::to_string).unwrap_or_default();
            let status = status::deletion_blocked(
                obj.status.as_ref(),
                obj.metadata.generation,
                &provider,
                &holders,
                Timestamp::now(),
            );
            apply_status(obj, ctx, ns, status, Vec::new()).await?;
            Ok(Action::requeue(
                ctx.settings.scaled(BLOCKED_RECHECK_INTERVAL),
            ))
        }
        Cleanup::Delete(id) => {
            let azure = match ctx.azure_for(ns, spec.credentials_ref.as_ref()).await {
                Ok(a) => a,
                Err(e) => {
                    let e = Error::from(e);
                    return match give_up_on(Some(&id), &e) {
                        Some(r) => release(obj, pctx, ns, r).await,
                        None => Err(e),
                    };
                }
            };
            match azure.delete_provider(&id).await {
                Ok(outcome) => release(obj, pctx, ns, deletion::deleted(&id, &outcome)).await,
                Err(source) => {
                    let e = Error::azure("delete the attestation provider")(source);
                    match give_up_on(Some(&id), &e) {
                        Some(r) => release(obj, pctx, ns, r).await,
                        None => Err(e),
                    }
                }
            }
        }
    }
}

/// Whether a cleanup failure ends the cleanup: Azure failures that retrying cannot cure, and
/// credentials that are gone or unusable (a namespace being deleted loses its Secrets).
fn give_up_on(id: Option<&ProviderId>, e: &Error) -> Option<Released> {
    let message = e.message();
    match e {
        Error::Azure { source, .. } | Error::Context(shared::Error::Azure(source)) => {
            deletion::give_up(id, source, &message)
        }
        Error::Context(shared::Error::Credentials { .. }) => {
            Some(deletion::abandoned(id, &message))
        }
        _ => None,
    }
}

enum Resolution {
    Retry(Error),
    GiveUp(String),
}

/// The provider to delete when the spec names it through a cluster that was never resolved.
async fn resolve_for_cleanup<C: AzureClients>(
    obj: &AttestationProvider,
    ctx: &Context<C>,
    ns: &str,
) -> Result<Option<ProviderId>, Resolution> {
    let Ok(Target::Cluster(cluster_id)) = desired::target(&obj.spec) else {
        return Ok(None);
    };
    let attempt = async {
        let azure = ctx.azure_for(ns, obj.spec.credentials_ref.as_ref()).await?;
        azure
            .get_cluster(&cluster_id)
            .await
            .map_err(Error::azure("read the Azure Local cluster"))
    };
    match attempt.await {
        Ok(cluster) => Ok(cluster.and_then(|c| {
            desired::through_cluster(obj.spec.location.as_deref(), &c)
                .ok()
                .map(|r| r.id)
        })),
        Err(e) => match give_up_on(None, &e) {
            Some(r) => Err(Resolution::GiveUp(r.note)),
            None => Err(Resolution::Retry(e)),
        },
    }
}

/// The provider id this object acted on: spec.resourceId, else the one resolved through the
/// cluster and recorded in status.
fn known_provider_id(obj: &AttestationProvider) -> Option<ProviderId> {
    obj.spec
        .resource_id
        .as_deref()
        .or_else(|| obj.status.as_ref()?.resource_id.as_deref())
        .and_then(|id| ProviderId::parse(id).ok())
}

/// The GuestAttestationExtensions of the namespace whose spec.providerRef names this provider.
async fn holders<C: AzureClients>(
    ctx: &Context<C>,
    ns: &str,
    name: &str,
) -> Result<Vec<String>, Error> {
    let api: Api<GuestAttestationExtension> = Api::namespaced(ctx.client.clone(), ns);
    let mut names: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|g| g.spec.provider_ref.as_ref().is_some_and(|r| r.name == name))
        .map(|g| g.name_any())
        .collect();
    names.sort();
    Ok(names)
}

async fn release<C: AzureClients>(
    obj: &AttestationProvider,
    pctx: &ProviderContext<C>,
    ns: &str,
    released: Released,
) -> Result<Action, Error> {
    let finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(obj, &pctx.ctx, ns, finalizers).await?;
    info!(reason = released.reason, "finalizer released");
    publish(
        obj,
        &pctx.ctx,
        released.warning,
        released.reason,
        &released.note,
        "Delete",
    )
    .await;
    pctx.memory.forget(&obj.uid().unwrap_or_default());
    Ok(Action::await_change())
}

// ---------------------------------------------------------------------------------------------
// error policy and wiring

/// Failed reconciles back off per object (5 s × 2ⁿ, capped at 5 min); Azure's Retry-After wins
/// when it is longer.
#[allow(clippy::needless_pass_by_value)] // the signature kube::runtime::Controller::run expects
pub fn error_policy<C: AzureClients>(
    obj: Arc<AttestationProvider>,
    error: &Error,
    pctx: Arc<ProviderContext<C>>,
) -> Action {
    let ctx = &pctx.ctx;
    ctx.metrics
        .reconcile_failures
        .get_or_create(&FailureLabels {
            controller: CONTROLLER,
            reason: error.reason(),
        })
        .inc();
    warn!(name = obj.name_any(), reason = error.reason(), error = %error, "reconcile failed");
    let backoff = ctx.backoff.next(&obj.uid().unwrap_or_default());
    Action::requeue(backoff.max(error.retry_after().unwrap_or_default()))
}

/// Runs the controller until `shutdown` resolves: watches AttestationProviders (all namespaces, or
/// one) with managedFields stripped before caching; ConfigMap changes (metadata only) reconcile
/// the providers that read their policy from them; GuestAttestationExtension changes reconcile
/// the provider they hold while it waits to be deleted. Concurrency is bounded.
pub async fn run<C: AzureClients>(
    pctx: Arc<ProviderContext<C>>,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = pctx.ctx.client.clone();
    let (providers, config_maps, extensions): (
        Api<AttestationProvider>,
        Api<PartialObjectMeta<ConfigMap>>,
        Api<GuestAttestationExtension>,
    ) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client),
        ),
    };
    let settings = &pctx.ctx.settings;
    let config = watcher::Config::default().page_size(settings.page_size);
    let (reader, writer) = reflector::store();
    let stream = watcher(providers, config.clone())
        .default_backoff()
        .modify(shared::strip_for_cache)
        .reflect(writer)
        .touched_objects();
    let _companions = Companions::start(&pctx, |c| &c.memory, None, &reader);
    let cm_store = reader.clone();
    // Metadata only: a ConfigMap's content never enters memory, yet every change bumps its
    // resourceVersion and so arrives here.
    let cm_stream = watcher(config_maps, config.clone())
        .default_backoff()
        .touched_objects();
    let gae_store = reader.clone();
    let gae_stream = watcher(extensions, config)
        .default_backoff()
        .modify(shared::strip_for_cache)
        .touched_objects();
    Controller::for_stream(stream, reader)
        .watches_stream(cm_stream, move |cm| {
            triggers::providers_using_config_map(
                &cm_store.state(),
                cm.metadata.namespace.as_deref(),
                cm.metadata.name.as_deref().unwrap_or_default(),
            )
        })
        .watches_stream(gae_stream, move |gae| {
            triggers::deleting_provider_held_by(&gae_store.state(), &gae)
        })
        // Unbounded here: reconciles take turns in arrival order in Context::reconcile_in_turn.
        .with_config(controller::Config::default().concurrency(0))
        .graceful_shutdown_on(pctx.ctx.closing_turns(shutdown))
        // Boxed: kube-runtime keeps each pending reconcile inline in a table that never shrinks,
        // so its slots would stay the size of the whole reconcile after a cold start.
        .run(|o, c| Box::pin(reconcile(o, c)), error_policy, pctx)
        .for_each(|_| std::future::ready(()))
        .await;
}
