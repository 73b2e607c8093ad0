//! Maps Azure client errors to condition reasons (pure).

use crate::azure::Error;

/// The CamelCase reason for a condition about a failed Azure call.
pub fn reason(e: &Error) -> &'static str {
    match e {
        Error::Api {
            status: 401 | 403, ..
        } => "AzureAuthorizationFailed",
        Error::Api { status: 429, .. } | Error::Held { .. } => "AzureThrottled",
        Error::Api { status, .. } if *status >= 500 => "AzureUnavailable",
        Error::Api { .. } => "AzureRequestRejected",
        Error::Transport { .. } => "AzureUnreachable",
        Error::Decode { .. } | Error::InvalidResponse { .. } => "AzureInvalidResponse",
        Error::OperationFailed { .. } => "AzureOperationFailed",
        Error::OperationTimeout { .. } => "AzureOperationTimedOut",
        Error::Credential { .. } => "CredentialsInvalid",
        Error::Config { .. } => "AzureConfigurationInvalid",
        Error::InvalidArgument(_) => "InvalidResourceId",
    }
}

/// The error and its sources as one bounded line (no secrets: the client's errors never hold any).
pub fn message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    super::conditions::truncate(&out, super::conditions::MAX_MESSAGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::Service;

    fn api(status: u16) -> Error {
        Error::Api {
            service: Service::Arm,
            operation: "get",
            status,
            code: Some("Code".into()),
            message: Some("msg".into()),
            retry_after: None,
            request_id: None,
        }
    }

    #[test]
    fn reasons() {
        assert_eq!(reason(&api(401)), "AzureAuthorizationFailed");
        assert_eq!(reason(&api(403)), "AzureAuthorizationFailed");
        assert_eq!(reason(&api(429)), "AzureThrottled");
        assert_eq!(reason(&api(503)), "AzureUnavailable");
        assert_eq!(reason(&api(400)), "AzureRequestRejected");
        assert!(message(&api(400)).contains("HTTP 400"));
    }
}
