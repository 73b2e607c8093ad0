//! What deleting an AttestationProvider does (pure): the decision from deletionPolicy,
//! managementPolicy, the provider's id and the GuestAttestationExtensions that still reference it,
//! and which failures end the cleanup rather than retry it.
//!
//! The finalizer is always released when the cleanup cannot make progress on its own (a documented
//! reason is given in an Event), so that a namespace deletion is never stuck on a provider: only a
//! referencing GuestAttestationExtension, or an Azure failure that retrying can cure, holds it.

use crate::azure::{DeleteOutcome, Error as AzureError, ProviderId};
use crate::crd::{DeletionPolicy, ManagementPolicy};

/// What the cleanup does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Release the finalizer without touching Azure.
    Release(Released),
    /// Keep the finalizer: GuestAttestationExtensions still reference the provider.
    Blocked {
        /// Their names.
        holders: Vec<String>,
    },
    /// Delete the provider, then release the finalizer.
    Delete(ProviderId),
}

/// Why the finalizer was released: the Event's reason and note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// Event reason.
    pub reason: &'static str,
    /// Event note.
    pub note: String,
}

impl Released {
    fn normal(reason: &'static str, note: String) -> Self {
        Self {
            warning: false,
            reason,
            note,
        }
    }

    fn warning(reason: &'static str, note: String) -> Self {
        Self {
            warning: true,
            reason,
            note,
        }
    }
}

/// Decides the cleanup. `provider` is the provider's id when it is known (spec.resourceId, or the
/// id resolved through the cluster); `holders` are the GuestAttestationExtensions of the namespace
/// whose spec.providerRef names this object.
pub fn decide(
    deletion: DeletionPolicy,
    management: ManagementPolicy,
    provider: Option<&ProviderId>,
    holders: &[String],
) -> Cleanup {
    if deletion == DeletionPolicy::Retain {
        return Cleanup::Release(Released::normal(
            "ProviderRetained",
            provider.map_or_else(
                || "deletionPolicy Retain: Azure is left as it is".to_owned(),
                |id| format!("deletionPolicy Retain: provider {id} is left in Azure"),
            ),
        ));
    }
    if management == ManagementPolicy::Observe {
        return Cleanup::Release(Released::normal(
            "ProviderRetained",
            "managementPolicy Observe never writes to Azure: the provider is left in place"
                .to_owned(),
        ));
    }
    let Some(id) = provider else {
        return Cleanup::Release(Released::warning(
            "CleanupSkipped",
            "deletionPolicy Delete, but the provider was never resolved (the cluster names none): \
             nothing to delete"
                .to_owned(),
        ));
    };
    if !holders.is_empty() {
        return Cleanup::Blocked {
            holders: holders.to_vec(),
        };
    }
    Cleanup::Delete(id.clone())
}

/// The finalizer release after Azure answered the DELETE.
pub fn deleted(id: &ProviderId, outcome: &DeleteOutcome) -> Released {
    match outcome {
        DeleteOutcome::Deleted | DeleteOutcome::Accepted => Released::normal(
            "ProviderDeleted",
            format!("deletionPolicy Delete: provider {id} was deleted from Azure"),
        ),
        DeleteOutcome::NotFound => Released::normal(
            "ProviderDeleted",
            format!("deletionPolicy Delete: provider {id} was already gone"),
        ),
    }
}

/// Whether a failed cleanup call should end the cleanup (release the finalizer, leaving the
/// provider) instead of being retried: everything that retrying cannot cure, such as missing or
/// rejected credentials, a refused request or a missing permission. `None` means retry.
pub fn give_up(id: Option<&ProviderId>, error: &AzureError, message: &str) -> Option<Released> {
    if error.retryable() {
        return None;
    }
    Some(abandoned(id, message))
}

/// The release when the cleanup cannot go on (credentials gone, a permanent Azure refusal).
pub fn abandoned(id: Option<&ProviderId>, message: &str) -> Released {
    let what = id.map_or_else(|| "the provider".to_owned(), |i| format!("provider {i}"));
    Released::warning(
        "CleanupAbandoned",
        format!(
            "deletionPolicy Delete could not complete and is abandoned, {what} is left in Azure: {message}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::Service;

    fn id() -> ProviderId {
        ProviderId::parse("/subscriptions/fd3c3665-1729-4b7b-9a38-238e83b0f98b/resourceGroups/rg/providers/Microsoft.Attestation/attestationProviders/maa1").unwrap()
    }

    #[test]
    fn retain_and_observe_never_touch_azure() {
        for m in [ManagementPolicy::Manage, ManagementPolicy::Observe] {
            let Cleanup::Release(r) = decide(DeletionPolicy::Retain, m, Some(&id()), &["x".into()])
            else {
                panic!("retain releases");
            };
            assert_eq!(r.reason, "ProviderRetained");
            assert!(!r.warning);
        }
        assert!(matches!(
            decide(
                DeletionPolicy::Delete,
                ManagementPolicy::Observe,
                Some(&id()),
                &[]
            ),
            Cleanup::Release(Released {
                reason: "ProviderRetained",
                ..
            })
        ));
    }

    #[test]
    fn delete_waits_for_every_holder() {
        assert_eq!(
            decide(
                DeletionPolicy::Delete,
                ManagementPolicy::Manage,
                Some(&id()),
                &["a".into(), "b".into()]
            ),
            Cleanup::Blocked {
                holders: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            decide(
                DeletionPolicy::Delete,
                ManagementPolicy::Manage,
                Some(&id()),
                &[]
            ),
            Cleanup::Delete(id())
        );
        assert!(matches!(
            decide(DeletionPolicy::Delete, ManagementPolicy::Manage, None, &[]),
            Cleanup::Release(Released {
                reason: "CleanupSkipped",
                warning: true,
                ..
            })
        ));
    }

    #[test]
    fn failures_retry_only_when_retrying_can_help() {
        let api = |status| AzureError::Api {
            service: Service::Arm,
            operation: "delete_provider",
            status,
            code: None,
            message: None,
            retry_after: None,
            request_id: None,
        };
        assert_eq!(give_up(Some(&id()), &api(503), "m"), None);
        assert_eq!(give_up(Some(&id()), &api(429), "m"), None);
        let r = give_up(Some(&id()), &api(403), "forbidden").unwrap();
        assert_eq!(r.reason, "CleanupAbandoned");
        assert!(r.warning && r.note.contains("forbidden") && r.note.contains("maa1"));
        assert_eq!(
            deleted(&id(), &DeleteOutcome::NotFound).reason,
            "ProviderDeleted"
        );
    }
}
