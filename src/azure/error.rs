//! `azure::Error`: every failure of the Azure client, with the HTTP status, the Azure error code and message, the
//! operation, and whether retrying can help.
//!
//! Messages never contain a secret or a token: credentials and tokens are [`Secret`](super::Secret)s, request
//! bodies are never quoted, and Azure's own error text is bounded in length.

use std::fmt;
use std::time::Duration;

use super::ids::IdError;

/// The Azure service a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Azure Resource Manager (the management plane).
    Arm,
    /// The Microsoft Azure Attestation data plane of one provider (`attestUri`).
    Maa,
    /// The Entra ID (Azure AD) token endpoint.
    Entra,
    /// The managed-identity token endpoint (IMDS).
    Imds,
}

impl Service {
    /// A stable lower-case label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Arm => "arm",
            Service::Maa => "maa",
            Service::Entra => "entra",
            Service::Imds => "imds",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong on the wire before an HTTP status arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The TCP connection could not be made (the request was never sent).
    Connect,
    /// The server's certificate was not trusted, or the TLS handshake failed. Retrying cannot help.
    Tls,
    /// The connect or request timeout elapsed.
    Timeout,
    /// The connection broke while the request or response was in flight.
    Other,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Connect => "connection failed",
            TransportKind::Tls => "TLS handshake failed",
            TransportKind::Timeout => "timed out",
            TransportKind::Other => "connection broken",
        })
    }
}

/// Why a request was held back on the client side, without being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// Azure answered an earlier request in the same scope with `Retry-After`, which has not elapsed yet.
    RetryAfter,
    /// The client-side token bucket of this (principal, subscription, operation kind) is empty for longer than
    /// the call may wait.
    RateLimit,
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HoldReason::RetryAfter => "the scope is throttled by Retry-After",
            HoldReason::RateLimit => "the client-side rate limit is exhausted",
        })
    }
}

/// An error of the Azure client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Azure answered with an error status (after any retries).
    #[error("{service} {operation} failed with HTTP {status}{}", code_suffix(.code.as_deref(), .message.as_deref()))]
    Api {
        /// The service that answered.
        service: Service,
        /// The client operation, e.g. `get_cluster`.
        operation: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The Azure error code (`error.code` of ARM/MAA, `error` of Entra, or `x-ms-error-code`).
        code: Option<String>,
        /// The Azure error message, bounded in length.
        message: Option<String>,
        /// The `Retry-After` Azure sent, if any.
        retry_after: Option<Duration>,
        /// Azure's request id (`x-ms-request-id`), for support cases.
        request_id: Option<String>,
    },
    /// The request did not get an HTTP answer.
    #[error("{service} {operation}: {kind}")]
    Transport {
        /// The service called.
        service: Service,
        /// The client operation.
        operation: &'static str,
        /// What went wrong.
        kind: TransportKind,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The request was held back on the client side and not sent.
    #[error("{service} {operation} not sent: {reason}, retry after {retry_after:?}")]
    Held {
        /// The service that would have been called.
        service: Service,
        /// The client operation.
        operation: &'static str,
        /// Why it was held back.
        reason: HoldReason,
        /// When it may be sent.
        retry_after: Duration,
    },
    /// A successful response whose body could not be decoded.
    #[error("{service} {operation} returned a malformed body (HTTP {status})")]
    Decode {
        /// The service that answered.
        service: Service,
        /// The client operation.
        operation: &'static str,
        /// The HTTP status of the response.
        status: u16,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A response that breaks the contract (missing field or header, bad signature, hash mismatch, ...).
    #[error("{service} {operation} returned an invalid response: {reason}")]
    InvalidResponse {
        /// The service that answered.
        service: Service,
        /// The client operation.
        operation: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A long-running operation ended in `Failed` or `Canceled`.
    #[error("long-running {operation} ended {status}{}", code_suffix(.code.as_deref(), .message.as_deref()))]
    OperationFailed {
        /// The client operation that started it.
        operation: &'static str,
        /// The terminal status (`Failed`, `Canceled`).
        status: String,
        /// The Azure error code, if any.
        code: Option<String>,
        /// The Azure error message, if any.
        message: Option<String>,
    },
    /// A long-running operation did not finish before the client's deadline.
    #[error("long-running {operation} did not finish within {timeout:?}")]
    OperationTimeout {
        /// The client operation that started it.
        operation: &'static str,
        /// The deadline that passed.
        timeout: Duration,
    },
    /// Credentials are incomplete or cannot be used (a missing variable, an unreadable token file, a bad key).
    #[error("credential problem: {what}")]
    Credential {
        /// What is wrong.
        what: &'static str,
        /// The underlying error, if any (never contains the secret).
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The client configuration is invalid (a bad URL or CA bundle, a TLS setup failure).
    #[error("invalid Azure client configuration: {what}")]
    Config {
        /// What is wrong.
        what: &'static str,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// An argument was invalid (a resource id, a name, an attestation type, a URL).
    #[error("invalid argument")]
    InvalidArgument(#[from] IdError),
}

/// The longest Azure error message kept in an [`Error`].
pub(crate) const MAX_MESSAGE_LEN: usize = 1024;

fn code_suffix(code: Option<&str>, message: Option<&str>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(" ({c}: {m})"),
        (Some(c), None) => format!(" ({c})"),
        (None, Some(m)) => format!(" ({m})"),
        (None, None) => String::new(),
    }
}

impl Error {
    /// Whether trying the same call again later can succeed: throttling, 408/5xx, timeouts and broken
    /// connections, client-side holds, malformed bodies, and operations that timed out on our side.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Api {
                status,
                retry_after,
                ..
            } => is_retryable_status(*status) || (*status == 409 && retry_after.is_some()),
            Error::Transport { kind, .. } => *kind != TransportKind::Tls,
            Error::Held { .. }
            | Error::Decode { .. }
            | Error::OperationTimeout { .. }
            | Error::InvalidResponse { .. } => true,
            Error::OperationFailed { .. }
            | Error::Credential { .. }
            | Error::Config { .. }
            | Error::InvalidArgument(_) => false,
        }
    }

    /// How long to wait before trying again, when Azure (or the client-side limiter) said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api { retry_after, .. } => *retry_after,
            Error::Held { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The HTTP status, when Azure answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The Azure error code, when Azure sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } | Error::OperationFailed { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The Azure error message, when Azure sent one.
    pub fn message(&self) -> Option<&str> {
        match self {
            Error::Api { message, .. } | Error::OperationFailed { message, .. } => {
                message.as_deref()
            }
            _ => None,
        }
    }

    /// The client operation that failed, when known.
    pub fn operation(&self) -> Option<&'static str> {
        match self {
            Error::Api { operation, .. }
            | Error::Transport { operation, .. }
            | Error::Held { operation, .. }
            | Error::Decode { operation, .. }
            | Error::InvalidResponse { operation, .. }
            | Error::OperationFailed { operation, .. }
            | Error::OperationTimeout { operation, .. } => Some(operation),
            _ => None,
        }
    }

    /// Whether Azure answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the credentials were rejected: the token endpoint refused them, or ARM/MAA answered 401/403.
    /// A controller reads its `credentialsRef` Secret again on this.
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Error::Api {
                service, status, ..
            } => {
                matches!(status, 401 | 403)
                    || (matches!(service, Service::Entra | Service::Imds) && *status == 400)
            }
            Error::Credential { .. } => true,
            _ => false,
        }
    }
}

/// HTTP statuses worth retrying: request timeout, throttling and server errors.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Truncates Azure's error text to [`MAX_MESSAGE_LEN`] bytes on a character boundary.
pub(crate) fn bounded(mut text: String) -> String {
    if text.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, retry_after: Option<Duration>) -> Error {
        Error::Api {
            service: Service::Arm,
            operation: "get_cluster",
            status,
            code: Some("ResourceNotFound".into()),
            message: Some("The Resource was not found.".into()),
            retry_after,
            request_id: None,
        }
    }

    #[test]
    fn retry_classes() {
        assert!(!api(404, None).retryable());
        assert!(!api(400, None).retryable());
        assert!(!api(403, None).retryable());
        assert!(api(429, Some(Duration::from_secs(3))).retryable());
        assert!(api(500, None).retryable());
        assert!(api(503, None).retryable());
        assert!(!api(409, None).retryable());
        assert!(api(409, Some(Duration::from_secs(1))).retryable());
        let held = Error::Held {
            service: Service::Arm,
            operation: "get_cluster",
            reason: HoldReason::RetryAfter,
            retry_after: Duration::from_secs(2),
        };
        assert!(held.retryable());
        assert_eq!(held.retry_after(), Some(Duration::from_secs(2)));
        assert!(
            !Error::OperationFailed {
                operation: "put_extension",
                status: "Failed".into(),
                code: None,
                message: None
            }
            .retryable()
        );
    }

    #[test]
    fn display_carries_status_code_and_message() {
        let e = api(404, None);
        assert!(e.is_not_found());
        assert_eq!(e.code(), Some("ResourceNotFound"));
        assert_eq!(
            e.to_string(),
            "arm get_cluster failed with HTTP 404 (ResourceNotFound: The Resource was not found.)"
        );
    }

    #[test]
    fn auth_failures() {
        let entra = Error::Api {
            service: Service::Entra,
            operation: "get_token",
            status: 400,
            code: Some("invalid_client".into()),
            message: None,
            retry_after: None,
            request_id: None,
        };
        assert!(entra.is_auth_failure());
        assert!(api(401, None).is_auth_failure());
        assert!(!api(400, None).is_auth_failure());
    }

    #[test]
    fn messages_are_bounded() {
        let long = "é".repeat(2000);
        let b = bounded(long);
        assert!(b.len() <= MAX_MESSAGE_LEN + '…'.len_utf8());
        assert!(b.ends_with('…'));
    }
}
