//! The AttestationProvider reconcile error (pure): what ended a reconcile, with its reason and
//! retry hint. Most Azure trouble is reported in status and conditions; an error is returned only
//! when trying again later can help, so that `error_policy` backs off.

use std::time::Duration;

use crate::controller::{self, azure_reason};

/// An error that ends an AttestationProvider reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The shared context failed (the credentials Secret, or the operator's own identity).
    #[error(transparent)]
    Context(#[from] controller::Error),
    /// An Azure call of a named step failed.
    #[error("{step}: {source}")]
    Azure {
        /// The step that made the call, e.g. `read the provider`.
        step: &'static str,
        /// The Azure client's error.
        #[source]
        source: crate::azure::Error,
    },
    /// The object has no namespace (the kind is namespaced).
    #[error("object has no namespace")]
    NoNamespace,
}

impl Error {
    /// Wraps an Azure error with the step that met it.
    pub fn azure(step: &'static str) -> impl FnOnce(crate::azure::Error) -> Self {
        move |source| Self::Azure { step, source }
    }

    /// A bounded CamelCase reason, for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubernetesError",
            Self::Context(e) => e.reason(),
            Self::Azure { source, .. } => azure_reason::reason(source),
            Self::NoNamespace => "NoNamespace",
        }
    }

    /// The error and its sources as one bounded line, for a condition message.
    pub fn message(&self) -> String {
        azure_reason::message(self)
    }

    /// How long Azure asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Azure { source, .. } | Self::Context(controller::Error::Azure(source)) => {
                source.retry_after()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::Service;

    #[test]
    fn reasons_and_retry_hints() {
        let e = Error::azure("read the provider")(crate::azure::Error::Api {
            service: Service::Arm,
            operation: "get_provider",
            status: 429,
            code: None,
            message: None,
            retry_after: Some(Duration::from_secs(7)),
            request_id: None,
        });
        assert_eq!(e.reason(), "AzureThrottled");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert!(
            e.message()
                .starts_with("read the provider: arm get_provider")
        );
        assert_eq!(Error::NoNamespace.reason(), "NoNamespace");
        assert_eq!(Error::NoNamespace.retry_after(), None);
    }
}
