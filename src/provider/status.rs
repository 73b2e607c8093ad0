//! The AttestationProvider status as a function of what the reconcile observed and did (pure):
//! `(old status, generation, observations, now) -> status`. Only transitions carry `now`
//! (`lastTransitionTime`, and `lastPolicyUpdateTime` when the operator set the policy), so a
//! reconcile that finds nothing new renders the stored status again and nothing is written.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::policy_check::PolicyProblem;
use crate::azure::{AttestationProvider, Toggle};
use crate::controller::conditions::{self, Desired};
use crate::crd::provider::{AttestationProviderStatus, PublicNetworkAccess};
use crate::crd::{Condition, ConditionStatus, ManagementPolicy};

/// Condition types, in the order they are written.
pub mod types {
    /// The provider exists in Azure and is Ready.
    pub const ENDPOINT_READY: &str = "EndpointReady";
    /// The effective policy matches the declared one.
    pub const POLICY_IN_SYNC: &str = "PolicyInSync";
    /// The provider accepts public network traffic (a warning when not: guest attestation needs it).
    pub const PUBLIC_NETWORK_ACCESS: &str = "PublicNetworkAccess";
    /// The summary GitOps tools read.
    pub const READY: &str = "Ready";
}

/// Condition reasons (the closed set; Azure failures add the reasons of
/// [`crate::controller::azure_reason`]).
pub mod reasons {
    /// EndpointReady=True.
    pub const PROVIDER_READY: &str = "ProviderReady";
    /// The provider reports NotReady or Error.
    pub const PROVIDER_NOT_READY: &str = "ProviderNotReady";
    /// The provider does not exist and is not created.
    pub const PROVIDER_NOT_FOUND: &str = "ProviderNotFound";
    /// clusterRef names a cluster that does not exist.
    pub const CLUSTER_NOT_FOUND: &str = "ClusterNotFound";
    /// The cluster names no attestation provider.
    pub const CLUSTER_HAS_NO_PROVIDER: &str = "ClusterHasNoAttestationProvider";
    /// spec.policySigningCertificates cannot be read (creation only).
    pub const SIGNING_CERTIFICATES_INVALID: &str = "SigningCertificatesInvalid";
    /// The spec breaks a rule admission should have enforced.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// PolicyInSync=True: Azure holds the declared policy.
    pub const IN_SYNC: &str = "InSync";
    /// spec.policy is absent.
    pub const NOT_MANAGED: &str = "NotManaged";
    /// Observe found a different policy.
    pub const POLICY_DRIFTED: &str = "PolicyDrifted";
    /// The structural check failed; nothing was sent.
    pub const POLICY_INVALID: &str = "PolicyInvalid";
    /// MAA refused the policy.
    pub const POLICY_REJECTED: &str = "PolicyRejected";
    /// The ConfigMap or its key is missing.
    pub const POLICY_SOURCE_NOT_FOUND: &str = "PolicySourceNotFound";
    /// The provider is not Ready, so its policy cannot be read.
    pub const ENDPOINT_NOT_READY: &str = "EndpointNotReady";
    /// An Isolated provider needs a signed policy and no key is configured.
    pub const SIGNING_KEY_REQUIRED: &str = "SigningKeyRequired";
    /// The signing key Secret is missing or unusable.
    pub const SIGNING_KEY_INVALID: &str = "SigningKeyInvalid";
    /// PublicNetworkAccess=True.
    pub const ENABLED: &str = "Enabled";
    /// PublicNetworkAccess=False (and PolicyInSync=Unknown when MAA refuses us for it).
    pub const PUBLIC_NETWORK_ACCESS_DISABLED: &str = "PublicNetworkAccessDisabled";
    /// PublicNetworkAccess=Unknown: no provider observed.
    pub const NOT_OBSERVED: &str = "NotObserved";
    /// Ready=True.
    pub const RECONCILED: &str = "Reconciled";
    /// Ready=False while deletion waits for GuestAttestationExtensions to let go.
    pub const DELETION_BLOCKED: &str = "DeletionBlocked";
}

/// `status.policyState` values.
pub mod states {
    /// Azure holds the declared policy.
    pub const IN_SYNC: &str = "InSync";
    /// Azure holds another policy.
    pub const DRIFTED: &str = "Drifted";
    /// The declared policy is malformed, or MAA refused it.
    pub const INVALID: &str = "Invalid";
    /// Not known (no endpoint, no source, a failed read).
    pub const UNKNOWN: &str = "Unknown";
}

/// What the endpoint step found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// The spec is unusable.
    InvalidSpec(String),
    /// clusterRef's cluster does not exist.
    ClusterNotFound {
        /// The cluster id.
        cluster: String,
    },
    /// The cluster names no usable provider.
    ClusterHasNoProvider {
        /// The cluster id.
        cluster: String,
        /// What is missing or wrong.
        detail: String,
    },
    /// The provider does not exist and was not created.
    Missing {
        /// Its id.
        id: String,
        /// Why it was not created.
        why: String,
    },
    /// The provider is missing and spec.policySigningCertificates cannot be read, so it was not
    /// created.
    CertificatesInvalid {
        /// Its id.
        id: String,
        /// What is wrong with the certificates.
        message: String,
    },
    /// The provider exists (adopted, created or patched by this reconcile).
    Found {
        /// Its id.
        id: String,
        /// As Azure returned it.
        provider: Box<AttestationProvider>,
    },
    /// An Azure call failed; the last observed values stay.
    Failed {
        /// Condition reason.
        reason: &'static str,
        /// Bounded message.
        message: String,
    },
}

impl Endpoint {
    /// The provider, when it was observed and is Ready.
    pub fn ready(&self) -> Option<&AttestationProvider> {
        match self {
            Self::Found { provider, .. } if provider.is_ready() => Some(provider),
            _ => None,
        }
    }
}

/// What the policy step found or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// spec.policy is absent.
    NotManaged,
    /// The policy text could not be read (ConfigMap or key missing).
    SourceNotFound(String),
    /// The text failed the structural check; nothing was sent.
    Invalid(PolicyProblem),
    /// No Ready endpoint to read the policy from.
    EndpointNotReady,
    /// Azure holds the declared policy.
    InSync {
        /// SHA-256 hex of the desired text.
        desired_hash: String,
        /// The token hash of the stored policy JWS.
        token_hash: Option<String>,
    },
    /// The operator set the policy in this reconcile.
    Applied {
        /// SHA-256 hex of the desired text.
        desired_hash: String,
        /// `x-ms-policy-token-hash` MAA returned.
        token_hash: Option<String>,
    },
    /// Azure holds another policy and Observe leaves it.
    Drifted,
    /// The provider is Isolated and no signing key is configured.
    SigningKeyRequired,
    /// The signing key Secret is missing or unusable.
    SigningKeyInvalid(String),
    /// MAA refused the policy (HTTP 400).
    Rejected {
        /// MAA's message.
        message: String,
    },
    /// MAA refused the call because the provider has no public network access.
    Unreachable,
    /// An Azure call failed.
    Failed {
        /// Condition reason.
        reason: &'static str,
        /// Bounded message.
        message: String,
    },
}

/// Everything the status is computed from.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The stored status.
    pub old: Option<&'a AttestationProviderStatus>,
    /// metadata.generation.
    pub generation: Option<i64>,
    /// spec.publicNetworkAccess.
    pub spec_access: PublicNetworkAccess,
    /// spec.managementPolicy.
    pub management: ManagementPolicy,
    /// The endpoint step's finding.
    pub endpoint: &'a Endpoint,
    /// The policy step's finding.
    pub policy: &'a Policy,
    /// Now (used only for transitions).
    pub now: Timestamp,
}

/// The status to write.
pub fn render(input: &Input<'_>) -> AttestationProviderStatus {
    let old = input.old.cloned().unwrap_or_default();
    let mut s = AttestationProviderStatus {
        observed_generation: input.generation,
        conditions: Vec::new(),
        ..old.clone()
    };
    match input.endpoint {
        Endpoint::Found { id, provider } => {
            let p = &provider.properties;
            // Azure's values are cut to the schema's maxLength, or the API server would refuse
            // every status write; an endpoint too long to store is not stored rather than cut.
            let cut = |v: &str, max| conditions::truncate(v, max);
            s.resource_id = Some(id.clone());
            s.attest_uri = p.attest_uri.clone().filter(|u| u.len() <= 512);
            s.trust_model = p.trust_model.as_ref().map(|t| cut(t.as_str(), 32));
            s.provider_status = p.status.as_ref().map(|t| cut(t.as_str(), 32));
            s.public_network_access = Some(cut(
                p.public_network_access
                    .as_ref()
                    .map_or("Enabled", Toggle::as_str),
                16,
            ));
        }
        Endpoint::Missing { id, .. } | Endpoint::CertificatesInvalid { id, .. } => {
            s.resource_id = Some(id.clone());
            clear_provider(&mut s);
        }
        Endpoint::InvalidSpec(_)
        | Endpoint::ClusterNotFound { .. }
        | Endpoint::ClusterHasNoProvider { .. } => {
            s.resource_id = None;
            clear_provider(&mut s);
        }
        // A failed read says nothing new: the last observed values stay.
        Endpoint::Failed { .. } => {}
    }
    render_policy_fields(&mut s, &old, input);
    let endpoint = endpoint_condition(input.endpoint);
    let policy = policy_condition(input.policy);
    let access = access_condition(input, s.public_network_access.as_deref());
    let ready = ready_condition(&endpoint, &policy);
    s.conditions = conditions::merge(
        &old.conditions,
        vec![endpoint, policy, access, ready],
        input.generation,
        input.now,
    );
    s
}

fn clear_provider(s: &mut AttestationProviderStatus) {
    s.attest_uri = None;
    s.trust_model = None;
    s.provider_status = None;
    s.public_network_access = None;
}

fn render_policy_fields(
    s: &mut AttestationProviderStatus,
    old: &AttestationProviderStatus,
    input: &Input<'_>,
) {
    s.policy_state = Some(
        match input.policy {
            Policy::NotManaged => {
                s.applied_policy_hash = None;
                s.policy_token_hash = None;
                s.last_policy_update_time = None;
                s.policy_state = None;
                return;
            }
            Policy::InSync {
                desired_hash,
                token_hash,
            } => {
                // Keep the hash MAA returned when the operator set this very text; otherwise the
                // stored token's hash is the best account of what MAA holds.
                let same_text = old.applied_policy_hash.as_deref() == Some(desired_hash.as_str());
                if !(same_text && old.policy_token_hash.is_some()) {
                    s.policy_token_hash.clone_from(token_hash);
                }
                s.applied_policy_hash = Some(desired_hash.clone());
                states::IN_SYNC
            }
            Policy::Applied {
                desired_hash,
                token_hash,
            } => {
                s.applied_policy_hash = Some(desired_hash.clone());
                s.policy_token_hash.clone_from(token_hash);
                s.last_policy_update_time = Some(Time(input.now));
                states::IN_SYNC
            }
            Policy::Drifted | Policy::SigningKeyRequired | Policy::SigningKeyInvalid(_) => {
                states::DRIFTED
            }
            Policy::Invalid(_) | Policy::Rejected { .. } => states::INVALID,
            Policy::SourceNotFound(_)
            | Policy::EndpointNotReady
            | Policy::Unreachable
            | Policy::Failed { .. } => states::UNKNOWN,
        }
        .to_owned(),
    );
}

fn endpoint_condition(e: &Endpoint) -> Desired {
    use ConditionStatus::{False, True, Unknown};
    let d = |status, reason: &str, message: String| {
        Desired::new(types::ENDPOINT_READY, status, reason, message)
    };
    match e {
        Endpoint::Found { id, provider } => {
            let p = &provider.properties;
            let status = p.status.as_ref().map_or("unknown", |s| s.as_str());
            if provider.is_ready() {
                d(
                    True,
                    reasons::PROVIDER_READY,
                    format!(
                        "provider {id} is Ready at {} (trust model {})",
                        p.attest_uri.as_deref().unwrap_or_default(),
                        p.trust_model.as_ref().map_or("unknown", |t| t.as_str())
                    ),
                )
            } else {
                d(
                    False,
                    reasons::PROVIDER_NOT_READY,
                    format!("provider {id} reports status {status} and no usable attestUri yet"),
                )
            }
        }
        Endpoint::Missing { id, why } => d(
            False,
            reasons::PROVIDER_NOT_FOUND,
            format!("provider {id} does not exist; {why}"),
        ),
        Endpoint::CertificatesInvalid { id, message } => d(
            False,
            reasons::SIGNING_CERTIFICATES_INVALID,
            format!("provider {id} does not exist and is not created: {message}"),
        ),
        Endpoint::ClusterNotFound { cluster } => d(
            False,
            reasons::CLUSTER_NOT_FOUND,
            format!("the Azure Local cluster {cluster} (spec.clusterRef) does not exist"),
        ),
        Endpoint::ClusterHasNoProvider { cluster, detail } => d(
            False,
            reasons::CLUSTER_HAS_NO_PROVIDER,
            format!("the Azure Local cluster {cluster} names no attestation provider: {detail}"),
        ),
        Endpoint::InvalidSpec(m) => d(False, reasons::INVALID_SPEC, m.clone()),
        Endpoint::Failed { reason, message } => d(Unknown, reason, message.clone()),
    }
}

fn policy_condition(p: &Policy) -> Desired {
    use ConditionStatus::{False, True, Unknown};
    let d = |status, reason: &str, message: String| {
        Desired::new(types::POLICY_IN_SYNC, status, reason, message)
    };
    match p {
        Policy::NotManaged => d(
            True,
            reasons::NOT_MANAGED,
            "spec.policy is not set: the provider's policy is left as it is".to_owned(),
        ),
        // One message for both, so that the reconcile after a set (which finds the policy in
        // sync) renders the same status and writes nothing.
        Policy::InSync { desired_hash, .. } | Policy::Applied { desired_hash, .. } => d(
            True,
            reasons::IN_SYNC,
            format!("the effective policy matches the declared one (sha256 {desired_hash})"),
        ),
        Policy::SourceNotFound(m) => d(False, reasons::POLICY_SOURCE_NOT_FOUND, m.clone()),
        Policy::Invalid(problem) => d(
            False,
            reasons::POLICY_INVALID,
            format!("the declared policy is malformed, nothing was sent to Azure: {problem}"),
        ),
        Policy::EndpointNotReady => d(
            Unknown,
            reasons::ENDPOINT_NOT_READY,
            "the policy cannot be read before the provider is Ready".to_owned(),
        ),
        Policy::Drifted => d(
            False,
            reasons::POLICY_DRIFTED,
            "the effective policy differs from the declared one; managementPolicy Observe leaves it"
                .to_owned(),
        ),
        Policy::SigningKeyRequired => d(
            False,
            reasons::SIGNING_KEY_REQUIRED,
            "the effective policy differs from the declared one, and the provider is Isolated: \
             its policy must be signed; set spec.policy.signingKeySecretRef"
                .to_owned(),
        ),
        Policy::SigningKeyInvalid(m) => d(
            False,
            reasons::SIGNING_KEY_INVALID,
            format!("the effective policy differs from the declared one and cannot be signed: {m}"),
        ),
        Policy::Rejected { message } => d(
            False,
            reasons::POLICY_REJECTED,
            format!("MAA rejected the declared policy: {message}"),
        ),
        Policy::Unreachable => d(
            Unknown,
            reasons::PUBLIC_NETWORK_ACCESS_DISABLED,
            "MAA refused the policy call: the provider's public network access is Disabled"
                .to_owned(),
        ),
        Policy::Failed { reason, message } => d(Unknown, reason, message.clone()),
    }
}

fn access_condition(input: &Input<'_>, observed: Option<&str>) -> Desired {
    const WHY: &str = "guest attestation needs outbound access from the VMs to MAA";
    let d = |status, reason: &str, message: String| {
        Desired::new(types::PUBLIC_NETWORK_ACCESS, status, reason, message)
    };
    let declared_disabled = input.spec_access == PublicNetworkAccess::Disabled;
    match observed {
        Some(a) if a.eq_ignore_ascii_case("Disabled") => {
            let note = if declared_disabled {
                "as declared"
            } else if input.management == ManagementPolicy::Observe {
                "spec.publicNetworkAccess is Enabled, but managementPolicy Observe leaves it"
            } else {
                "spec.publicNetworkAccess is Enabled: it is being changed"
            };
            d(
                ConditionStatus::False,
                reasons::PUBLIC_NETWORK_ACCESS_DISABLED,
                format!("public network access is Disabled ({note}); {WHY}"),
            )
        }
        Some(_) => d(
            ConditionStatus::True,
            reasons::ENABLED,
            "public network access is Enabled".to_owned(),
        ),
        None if declared_disabled => d(
            ConditionStatus::False,
            reasons::PUBLIC_NETWORK_ACCESS_DISABLED,
            format!("spec.publicNetworkAccess is Disabled; {WHY}"),
        ),
        None => d(
            ConditionStatus::Unknown,
            reasons::NOT_OBSERVED,
            "no provider observed".to_owned(),
        ),
    }
}

fn ready_condition(endpoint: &Desired, policy: &Desired) -> Desired {
    let failing = [endpoint, policy]
        .into_iter()
        .find(|c| c.status != ConditionStatus::True);
    match failing {
        Some(c) => Desired::new(
            types::READY,
            ConditionStatus::False,
            c.reason.clone(),
            format!("{}: {}", c.type_, c.message),
        ),
        None => Desired::new(
            types::READY,
            ConditionStatus::True,
            reasons::RECONCILED,
            if policy.reason == reasons::NOT_MANAGED {
                "the provider is Ready; its policy is not managed"
            } else {
                "the provider is Ready and its policy is in sync"
            },
        ),
    }
}

/// The status while deletion waits for the GuestAttestationExtensions that reference the
/// provider: the other conditions stay, Ready says who holds it.
pub fn deletion_blocked(
    old: Option<&AttestationProviderStatus>,
    generation: Option<i64>,
    provider: &str,
    holders: &[String],
    now: Timestamp,
) -> AttestationProviderStatus {
    let old = old.cloned().unwrap_or_default();
    let mut desired: Vec<Desired> = [
        types::ENDPOINT_READY,
        types::POLICY_IN_SYNC,
        types::PUBLIC_NETWORK_ACCESS,
    ]
    .into_iter()
    .filter_map(|t| conditions::find(&old.conditions, t).map(|c| keep(t, c)))
    .collect();
    desired.push(Desired::new(
        types::READY,
        ConditionStatus::False,
        reasons::DELETION_BLOCKED,
        format!(
            "deletionPolicy Delete: provider {provider} is not deleted from Azure while \
             GuestAttestationExtension {} reference it (spec.providerRef)",
            holders.join(", ")
        ),
    ));
    AttestationProviderStatus {
        observed_generation: generation,
        conditions: conditions::merge(&old.conditions, desired, generation, now),
        ..old
    }
}

fn keep(type_: &'static str, c: &Condition) -> Desired {
    Desired::new(type_, c.status, c.reason.clone(), c.message.clone())
}

/// A user-visible change worth an Event, found by comparing the old and new status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// Event reason.
    pub reason: &'static str,
    /// Event note.
    pub note: String,
}

/// The Events that the change from `old` to `new` deserves: a condition entering one of the
/// reported states (once per entry, not once per reconcile).
pub fn notices(
    old: Option<&AttestationProviderStatus>,
    new: &AttestationProviderStatus,
) -> Vec<Notice> {
    const REPORTED: &[(&str, &str)] = &[
        (types::ENDPOINT_READY, reasons::PROVIDER_NOT_FOUND),
        (types::ENDPOINT_READY, reasons::PROVIDER_NOT_READY),
        (types::ENDPOINT_READY, reasons::CLUSTER_NOT_FOUND),
        (types::ENDPOINT_READY, reasons::CLUSTER_HAS_NO_PROVIDER),
        (types::ENDPOINT_READY, reasons::SIGNING_CERTIFICATES_INVALID),
        (types::POLICY_IN_SYNC, reasons::POLICY_INVALID),
        (types::POLICY_IN_SYNC, reasons::POLICY_REJECTED),
        (types::POLICY_IN_SYNC, reasons::POLICY_SOURCE_NOT_FOUND),
        (types::POLICY_IN_SYNC, reasons::SIGNING_KEY_REQUIRED),
        (types::POLICY_IN_SYNC, reasons::SIGNING_KEY_INVALID),
        (
            types::PUBLIC_NETWORK_ACCESS,
            reasons::PUBLIC_NETWORK_ACCESS_DISABLED,
        ),
        (types::READY, reasons::DELETION_BLOCKED),
    ];
    let old_conditions = old.map(|s| s.conditions.as_slice()).unwrap_or_default();
    REPORTED
        .iter()
        .filter_map(|(type_, reason)| {
            let now = conditions::find(&new.conditions, type_)?;
            if now.reason != *reason {
                return None;
            }
            let before = conditions::find(old_conditions, type_);
            let changed = before.is_none_or(|b| b.reason != now.reason || b.message != now.message);
            changed.then(|| Notice {
                warning: true,
                reason,
                note: now.message.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::{AttestationProviderProperties, ProviderStatus, TrustModel};

    const ID: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Attestation/attestationProviders/maa1";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn provider(status: &str, access: Option<&str>) -> Endpoint {
        Endpoint::Found {
            id: ID.into(),
            provider: Box::new(AttestationProvider {
                properties: AttestationProviderProperties {
                    trust_model: Some(TrustModel::Aad),
                    status: Some(ProviderStatus::from(status)),
                    attest_uri: Some("https://maa1.eus.attest.azure.net".into()),
                    public_network_access: access.map(Toggle::from),
                    tpm_attestation_authentication: None,
                },
                ..Default::default()
            }),
        }
    }

    fn input<'a>(
        old: Option<&'a AttestationProviderStatus>,
        endpoint: &'a Endpoint,
        policy: &'a Policy,
        now: Timestamp,
    ) -> Input<'a> {
        Input {
            old,
            generation: Some(2),
            spec_access: PublicNetworkAccess::Enabled,
            management: ManagementPolicy::Manage,
            endpoint,
            policy,
            now,
        }
    }

    fn cond(s: &AttestationProviderStatus, t: &str) -> (ConditionStatus, String) {
        let c = conditions::find(&s.conditions, t).unwrap();
        (c.status, c.reason.clone())
    }

    #[test]
    fn overlong_azure_values_fit_the_schema() {
        // Regression (issue 11): unexpected enum values and an absurd attestUri were mirrored
        // verbatim, past the status schema's maxLength, so every status write was refused.
        let ep = Endpoint::Found {
            id: ID.into(),
            provider: Box::new(AttestationProvider {
                properties: AttestationProviderProperties {
                    trust_model: Some(TrustModel::from("T".repeat(100).as_str())),
                    status: Some(ProviderStatus::from("S".repeat(100).as_str())),
                    attest_uri: Some(format!("https://{}.attest.azure.net", "a".repeat(600))),
                    public_network_access: Some(Toggle::from("SecuredByPerimeter")),
                    tpm_attestation_authentication: None,
                },
                ..Default::default()
            }),
        };
        let s = render(&input(
            None,
            &ep,
            &Policy::NotManaged,
            ts("2026-01-01T00:00:00Z"),
        ));
        assert!(s.trust_model.unwrap().len() <= 32);
        assert!(s.provider_status.unwrap().len() <= 32);
        assert!(s.public_network_access.unwrap().len() <= 16);
        assert_eq!(s.attest_uri, None);
    }

    #[test]
    fn ready_provider_with_policy_applied_then_found_in_sync_writes_once() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let t1 = ts("2026-01-01T00:10:00Z");
        let ep = provider("Ready", Some("Enabled"));
        let applied = Policy::Applied {
            desired_hash: "h1".into(),
            token_hash: Some("tok".into()),
        };
        let first = render(&input(None, &ep, &applied, t0));
        assert_eq!(
            first.attest_uri.as_deref(),
            Some("https://maa1.eus.attest.azure.net")
        );
        assert_eq!(first.trust_model.as_deref(), Some("AAD"));
        assert_eq!(first.provider_status.as_deref(), Some("Ready"));
        assert_eq!(first.resource_id.as_deref(), Some(ID));
        assert_eq!(first.policy_state.as_deref(), Some("InSync"));
        assert_eq!(first.applied_policy_hash.as_deref(), Some("h1"));
        assert_eq!(first.policy_token_hash.as_deref(), Some("tok"));
        assert_eq!(first.last_policy_update_time, Some(Time(t0)));
        assert_eq!(first.observed_generation, Some(2));
        assert!(
            first
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(2))
        );
        assert_eq!(
            cond(&first, "Ready"),
            (ConditionStatus::True, "Reconciled".into())
        );
        assert_eq!(
            cond(&first, "EndpointReady"),
            (ConditionStatus::True, "ProviderReady".into())
        );
        assert_eq!(
            cond(&first, "PublicNetworkAccess"),
            (ConditionStatus::True, "Enabled".into())
        );
        // the next reconcile finds it in sync (token hash of the stored JWS may differ): same status
        let in_sync = Policy::InSync {
            desired_hash: "h1".into(),
            token_hash: Some("other".into()),
        };
        let second = render(&input(Some(&first), &ep, &in_sync, t1));
        assert_eq!(second, first);
    }

    #[test]
    fn adoption_in_sync_records_the_stored_token_hash() {
        let ep = provider("Ready", None);
        let in_sync = Policy::InSync {
            desired_hash: "h1".into(),
            token_hash: Some("stored".into()),
        };
        let s = render(&input(None, &ep, &in_sync, ts("2026-01-01T00:00:00Z")));
        assert_eq!(s.policy_token_hash.as_deref(), Some("stored"));
        assert_eq!(s.last_policy_update_time, None);
        assert_eq!(s.public_network_access.as_deref(), Some("Enabled"));
    }

    #[test]
    fn policy_states_and_reasons() {
        let ep = provider("Ready", Some("Enabled"));
        let now = ts("2026-01-01T00:00:00Z");
        let cases: Vec<(Policy, &str, ConditionStatus, &str)> = vec![
            (
                Policy::Drifted,
                "Drifted",
                ConditionStatus::False,
                "PolicyDrifted",
            ),
            (
                Policy::Invalid(PolicyProblem::UnterminatedRule { line: 4 }),
                "Invalid",
                ConditionStatus::False,
                "PolicyInvalid",
            ),
            (
                Policy::Rejected {
                    message: "bad".into(),
                },
                "Invalid",
                ConditionStatus::False,
                "PolicyRejected",
            ),
            (
                Policy::SourceNotFound("cm".into()),
                "Unknown",
                ConditionStatus::False,
                "PolicySourceNotFound",
            ),
            (
                Policy::SigningKeyRequired,
                "Drifted",
                ConditionStatus::False,
                "SigningKeyRequired",
            ),
            (
                Policy::EndpointNotReady,
                "Unknown",
                ConditionStatus::Unknown,
                "EndpointNotReady",
            ),
            (
                Policy::Failed {
                    reason: "AzureUnavailable",
                    message: "503".into(),
                },
                "Unknown",
                ConditionStatus::Unknown,
                "AzureUnavailable",
            ),
        ];
        for (policy, state, status, reason) in cases {
            let s = render(&input(None, &ep, &policy, now));
            assert_eq!(s.policy_state.as_deref(), Some(state), "{policy:?}");
            assert_eq!(
                cond(&s, "PolicyInSync"),
                (status, reason.to_owned()),
                "{policy:?}"
            );
            assert_eq!(
                cond(&s, "Ready"),
                (ConditionStatus::False, reason.to_owned()),
                "{policy:?}"
            );
        }
        let invalid = render(&input(
            None,
            &ep,
            &Policy::Invalid(PolicyProblem::UnterminatedRule { line: 4 }),
            now,
        ));
        let msg = &conditions::find(&invalid.conditions, "PolicyInSync")
            .unwrap()
            .message;
        assert!(msg.contains("line 4"), "{msg}");
        let unmanaged = render(&input(None, &ep, &Policy::NotManaged, now));
        assert_eq!(unmanaged.policy_state, None);
        assert_eq!(
            cond(&unmanaged, "Ready"),
            (ConditionStatus::True, "Reconciled".into())
        );
    }

    #[test]
    fn endpoint_findings() {
        let now = ts("2026-01-01T00:00:00Z");
        let ready = render(&input(
            None,
            &provider("Ready", None),
            &Policy::NotManaged,
            now,
        ));
        let missing = Endpoint::Missing {
            id: ID.into(),
            why: "managementPolicy Observe never creates it".into(),
        };
        let s = render(&input(
            Some(&ready),
            &missing,
            &Policy::EndpointNotReady,
            now,
        ));
        assert_eq!(s.attest_uri, None, "a missing provider has no endpoint");
        assert_eq!(s.resource_id.as_deref(), Some(ID));
        assert_eq!(
            cond(&s, "EndpointReady"),
            (ConditionStatus::False, "ProviderNotFound".into())
        );
        assert_eq!(
            cond(&s, "Ready"),
            (ConditionStatus::False, "ProviderNotFound".into())
        );
        assert_eq!(
            cond(&s, "PublicNetworkAccess"),
            (ConditionStatus::Unknown, "NotObserved".into())
        );
        // a failed read keeps what was observed
        let failed = Endpoint::Failed {
            reason: "AzureUnavailable",
            message: "503".into(),
        };
        let s = render(&input(
            Some(&ready),
            &failed,
            &Policy::EndpointNotReady,
            now,
        ));
        assert_eq!(s.attest_uri, ready.attest_uri);
        assert_eq!(
            cond(&s, "EndpointReady"),
            (ConditionStatus::Unknown, "AzureUnavailable".into())
        );
        assert_eq!(
            cond(&s, "Ready"),
            (ConditionStatus::False, "AzureUnavailable".into())
        );
        let s = render(&input(
            None,
            &provider("NotReady", None),
            &Policy::EndpointNotReady,
            now,
        ));
        assert_eq!(
            cond(&s, "EndpointReady"),
            (ConditionStatus::False, "ProviderNotReady".into())
        );
        let s = render(&input(
            None,
            &Endpoint::ClusterNotFound {
                cluster: "c".into(),
            },
            &Policy::EndpointNotReady,
            now,
        ));
        assert_eq!(s.resource_id, None);
        assert_eq!(
            cond(&s, "EndpointReady"),
            (ConditionStatus::False, "ClusterNotFound".into())
        );
    }

    #[test]
    fn public_network_access_disabled_is_a_warning_not_a_failure() {
        let now = ts("2026-01-01T00:00:00Z");
        let ep = provider("Ready", Some("Disabled"));
        let policy = Policy::InSync {
            desired_hash: "h".into(),
            token_hash: None,
        };
        let mut i = input(None, &ep, &policy, now);
        i.spec_access = PublicNetworkAccess::Disabled;
        let s = render(&i);
        assert_eq!(
            cond(&s, "PublicNetworkAccess"),
            (ConditionStatus::False, "PublicNetworkAccessDisabled".into())
        );
        let msg = &conditions::find(&s.conditions, "PublicNetworkAccess")
            .unwrap()
            .message;
        assert!(
            msg.contains("as declared") && msg.contains("guest attestation needs"),
            "{msg}"
        );
        assert_eq!(
            cond(&s, "Ready"),
            (ConditionStatus::True, "Reconciled".into())
        );
        assert_eq!(
            notices(None, &s),
            vec![Notice {
                warning: true,
                reason: "PublicNetworkAccessDisabled",
                note: msg.clone()
            }]
        );
        assert!(notices(Some(&s), &s).is_empty(), "once per entry");
        // declared Disabled, nothing observed yet
        let missing = Endpoint::Missing {
            id: ID.into(),
            why: "x".into(),
        };
        let mut i = input(None, &missing, &Policy::EndpointNotReady, now);
        i.spec_access = PublicNetworkAccess::Disabled;
        assert_eq!(
            cond(&render(&i), "PublicNetworkAccess"),
            (ConditionStatus::False, "PublicNetworkAccessDisabled".into())
        );
    }

    #[test]
    fn blocked_deletion_names_the_holders_and_keeps_the_rest() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let ready = render(&input(
            None,
            &provider("Ready", None),
            &Policy::NotManaged,
            t0,
        ));
        let s = deletion_blocked(
            Some(&ready),
            Some(3),
            ID,
            &["gae-a".into(), "gae-b".into()],
            t0,
        );
        assert_eq!(
            cond(&s, "Ready"),
            (ConditionStatus::False, "DeletionBlocked".into())
        );
        let msg = &conditions::find(&s.conditions, "Ready").unwrap().message;
        assert!(msg.contains("gae-a, gae-b"), "{msg}");
        assert_eq!(
            cond(&s, "EndpointReady"),
            (ConditionStatus::True, "ProviderReady".into())
        );
        assert_eq!(s.attest_uri, ready.attest_uri);
        assert_eq!(notices(Some(&ready), &s).len(), 1);
        assert_eq!(
            deletion_blocked(Some(&s), Some(3), ID, &["gae-a".into(), "gae-b".into()], t0),
            s
        );
    }
}
