//! Azure Resource Manager front door: authentication, api-version checks, throttling, headers,
//! and routing to the resource providers.

pub(crate) mod extensions;
pub(crate) mod hci;
pub(crate) mod lro;
pub(crate) mod machines;
pub(crate) mod providers;

use std::time::Instant;

use serde_json::Value;

use crate::emulator::Inner;
use crate::http::{Req, Resp};
use crate::throttle::{OpKind, Take};
use crate::tokens::{ARM_AUDIENCES, validate_bearer};

/// api-versions accepted for `Microsoft.Attestation/attestationProviders` (CONTRACTS.md §0/§1).
pub const ATTESTATION_VERSIONS: [&str; 4] = [
    "2021-06-01",
    "2020-10-01",
    "2021-06-01-preview",
    "2018-09-01-preview",
];
/// api-versions accepted for `Microsoft.AzureStackHCI/clusters` (§4: versions that carry
/// `isolatedVmAttestationConfiguration`).
pub const CLUSTER_VERSIONS: [&str; 3] = ["2024-01-01", "2024-04-01", "2025-10-01"];
/// api-versions accepted for `Microsoft.HybridCompute` machines, extensions and operations (§3).
pub const HYBRID_COMPUTE_VERSIONS: [&str; 1] = ["2025-01-13"];
/// api-versions accepted for `virtualMachineInstances` (§5, Pulumi list + spec repo).
pub const VM_VERSIONS: [&str; 13] = [
    "2023-07-01-preview",
    "2023-09-01-preview",
    "2024-01-01",
    "2024-02-01-preview",
    "2024-05-01-preview",
    "2024-07-15-preview",
    "2024-08-01-preview",
    "2024-10-01-preview",
    "2025-02-01-preview",
    "2025-04-01-preview",
    "2025-06-01-preview",
    "2025-09-01-preview",
    "2026-04-01-preview",
];
/// api-versions whose VM instance surface has `attestationStatus` (first seen 2024-02-01-preview;
/// the only stable, 2024-01-01, has none).
pub const ATTESTATION_STATUS_VERSIONS: [&str; 9] = [
    "2024-02-01-preview",
    "2024-05-01-preview",
    "2024-07-15-preview",
    "2024-08-01-preview",
    "2024-10-01-preview",
    "2025-02-01-preview",
    "2025-04-01-preview",
    "2025-06-01-preview",
    "2026-04-01-preview",
];

/// A recognised ARM route (segments as in the request).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    ProvidersBySubscription {
        sub: &'a str,
    },
    ProvidersByGroup {
        sub: &'a str,
        rg: &'a str,
    },
    Provider {
        sub: &'a str,
        rg: &'a str,
        name: &'a str,
    },
    Cluster {
        sub: &'a str,
        rg: &'a str,
        name: &'a str,
    },
    Machines {
        sub: &'a str,
        rg: &'a str,
    },
    Machine {
        sub: &'a str,
        rg: &'a str,
        name: &'a str,
    },
    VmInstance {
        sub: &'a str,
        rg: &'a str,
        machine: &'a str,
    },
    AttestationStatus {
        sub: &'a str,
        rg: &'a str,
        machine: &'a str,
    },
    Extensions {
        sub: &'a str,
        rg: &'a str,
        machine: &'a str,
    },
    Extension {
        sub: &'a str,
        rg: &'a str,
        machine: &'a str,
        name: &'a str,
    },
    OperationStatus {
        sub: &'a str,
        location: &'a str,
        op: &'a str,
    },
    OperationResult {
        sub: &'a str,
        location: &'a str,
        op: &'a str,
    },
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[allow(clippy::many_single_char_names)] // path segments, matched positionally
pub(crate) fn parse_route<'a>(segs: &[&'a str]) -> Option<Route<'a>> {
    let [s, sub, rest @ ..] = segs else {
        return None;
    };
    if !eq(s, "subscriptions") {
        return None;
    }
    let sub = *sub;
    match rest {
        [p, ns, t]
            if eq(p, "providers")
                && eq(ns, "Microsoft.Attestation")
                && eq(t, "attestationProviders") =>
        {
            Some(Route::ProvidersBySubscription { sub })
        }
        [p, ns, l, location, kind, op]
            if eq(p, "providers") && eq(ns, "Microsoft.HybridCompute") && eq(l, "locations") =>
        {
            if eq(kind, "operationstatus") || eq(kind, "operationStatuses") {
                Some(Route::OperationStatus { sub, location, op })
            } else if eq(kind, "operationresults") {
                Some(Route::OperationResult { sub, location, op })
            } else {
                None
            }
        }
        [r, rg, p, ns, rest @ ..] if eq(r, "resourceGroups") && eq(p, "providers") => {
            let rg = *rg;
            if eq(ns, "Microsoft.Attestation") {
                match rest {
                    [t] if eq(t, "attestationProviders") => {
                        Some(Route::ProvidersByGroup { sub, rg })
                    }
                    [t, name] if eq(t, "attestationProviders") => {
                        Some(Route::Provider { sub, rg, name })
                    }
                    _ => None,
                }
            } else if eq(ns, "Microsoft.AzureStackHCI") {
                match rest {
                    [t, name] if eq(t, "clusters") => Some(Route::Cluster { sub, rg, name }),
                    _ => None,
                }
            } else if eq(ns, "Microsoft.HybridCompute") {
                match rest {
                    [t] if eq(t, "machines") => Some(Route::Machines { sub, rg }),
                    [t, name] if eq(t, "machines") => Some(Route::Machine { sub, rg, name }),
                    [t, machine, e] if eq(t, "machines") && eq(e, "extensions") => {
                        Some(Route::Extensions { sub, rg, machine })
                    }
                    [t, machine, e, name] if eq(t, "machines") && eq(e, "extensions") => {
                        Some(Route::Extension {
                            sub,
                            rg,
                            machine,
                            name,
                        })
                    }
                    [t, machine, p2, ns2, v, d]
                        if eq(t, "machines")
                            && eq(p2, "providers")
                            && eq(ns2, "Microsoft.AzureStackHCI")
                            && eq(v, "virtualMachineInstances")
                            && eq(d, "default") =>
                    {
                        Some(Route::VmInstance { sub, rg, machine })
                    }
                    [t, machine, p2, ns2, v, d, a, d2]
                        if eq(t, "machines")
                            && eq(p2, "providers")
                            && eq(ns2, "Microsoft.AzureStackHCI")
                            && eq(v, "virtualMachineInstances")
                            && eq(d, "default")
                            && eq(a, "attestationStatus")
                            && eq(d2, "default") =>
                    {
                        Some(Route::AttestationStatus { sub, rg, machine })
                    }
                    _ => None,
                }
            } else {
                None
            }
        }
        _ => None,
    }
}

impl Route<'_> {
    fn versions(&self) -> (&'static [&'static str], &'static str) {
        match self {
            Self::ProvidersBySubscription { .. }
            | Self::ProvidersByGroup { .. }
            | Self::Provider { .. } => (
                &ATTESTATION_VERSIONS,
                "Microsoft.Attestation/attestationProviders",
            ),
            Self::Cluster { .. } => (&CLUSTER_VERSIONS, "Microsoft.AzureStackHCI/clusters"),
            Self::Machines { .. } | Self::Machine { .. } => {
                (&HYBRID_COMPUTE_VERSIONS, "Microsoft.HybridCompute/machines")
            }
            Self::Extensions { .. } | Self::Extension { .. } => (
                &HYBRID_COMPUTE_VERSIONS,
                "Microsoft.HybridCompute/machines/extensions",
            ),
            Self::OperationStatus { .. } | Self::OperationResult { .. } => (
                &HYBRID_COMPUTE_VERSIONS,
                "Microsoft.HybridCompute/locations/operationstatus",
            ),
            Self::VmInstance { .. } => (
                &VM_VERSIONS,
                "Microsoft.AzureStackHCI/virtualMachineInstances",
            ),
            Self::AttestationStatus { .. } => (
                &ATTESTATION_STATUS_VERSIONS,
                "Microsoft.AzureStackHCI/virtualMachineInstances/attestationStatus",
            ),
        }
    }

    fn subscription(&self) -> &str {
        match self {
            Self::ProvidersBySubscription { sub }
            | Self::ProvidersByGroup { sub, .. }
            | Self::Provider { sub, .. }
            | Self::Cluster { sub, .. }
            | Self::Machines { sub, .. }
            | Self::Machine { sub, .. }
            | Self::VmInstance { sub, .. }
            | Self::AttestationStatus { sub, .. }
            | Self::Extensions { sub, .. }
            | Self::Extension { sub, .. }
            | Self::OperationStatus { sub, .. }
            | Self::OperationResult { sub, .. } => sub,
        }
    }
}

fn well_formed_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && (b.len() == 10
            || (b[10] == b'-' && b.len() > 11 && b[11..].iter().all(u8::is_ascii_alphanumeric)))
}

/// Checks `api-version` against the supported list (ARM error shapes).
pub(crate) fn check_api_version(req: &Req, supported: &[&str], rtype: &str) -> Result<(), Resp> {
    let Some(v) = req.api_version() else {
        return Err(Resp::cloud_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if !well_formed_version(v) {
        return Err(Resp::cloud_error(
            400,
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{v}' is invalid. The supported versions are '{}'.",
                supported.join(",")
            ),
        ));
    }
    if !supported.iter().any(|s| s.eq_ignore_ascii_case(v)) {
        return Err(Resp::cloud_error(
            400,
            "NoRegisteredProviderFound",
            &format!(
                "No registered resource provider found for API version '{v}' and type '{rtype}'. The supported api-versions are '{}'.",
                supported.join(", ")
            ),
        ));
    }
    Ok(())
}

/// 404 ResourceNotFound in ARM's words.
pub(crate) fn not_found(rtype: &str, name: &str, rg: &str) -> Resp {
    Resp::cloud_error(
        404,
        "ResourceNotFound",
        &format!(
            "The Resource '{rtype}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
        ),
    )
}

/// 404 ParentResourceNotFound.
pub(crate) fn parent_not_found(parent: &str) -> Resp {
    Resp::cloud_error(
        404,
        "ParentResourceNotFound",
        &format!(
            "Can not perform requested operation on nested resource. Parent resource '{parent}' not found."
        ),
    )
}

pub(crate) fn method_not_allowed(req: &Req) -> Resp {
    Resp::cloud_error(
        405,
        "MethodNotAllowed",
        &format!(
            "The requested resource does not support http method '{}'.",
            req.method
        ),
    )
}

/// Parses a JSON object body (415 for another media type, 400 InvalidRequestContent otherwise).
pub(crate) fn json_body(req: &Req) -> Result<serde_json::Map<String, Value>, Resp> {
    match req.media_type().as_deref() {
        Some("application/json" | "text/json") => {}
        other => {
            return Err(Resp::cloud_error(
                415,
                "UnsupportedMediaType",
                &format!(
                    "The content media type '{}' is not supported. Only 'application/json' is supported.",
                    other.unwrap_or("")
                ),
            ));
        }
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid_content(
            "Unexpected JSON token: the request body must be a JSON object.",
        )),
        Err(e) => Err(invalid_content(&format!("{e}"))),
    }
}

/// 400 InvalidRequestContent.
pub(crate) fn invalid_content(detail: &str) -> Resp {
    Resp::cloud_error(
        400,
        "InvalidRequestContent",
        &format!("The request content was invalid and could not be deserialized: '{detail}'."),
    )
}

/// Handles one ARM request.
pub(crate) fn handle(inner: &Inner, req: &Req) -> Resp {
    let principal = match validate_bearer(inner, req, &ARM_AUDIENCES) {
        Ok(p) => p,
        Err(e) => {
            let (code, message) = e.arm(&ARM_AUDIENCES);
            return Resp::cloud_error(401, code, &message)
                .header("www-authenticate", e.www_authenticate(&inner.endpoint));
        }
    };
    let segs = req.segments();
    let Some(route) = parse_route(&segs) else {
        return Resp::cloud_error(
            404,
            "InvalidResourceType",
            &format!(
                "The resource type could not be found for path '{}'.",
                req.path
            ),
        );
    };
    let (versions, rtype) = route.versions();
    if let Err(resp) = check_api_version(req, versions, rtype) {
        return resp;
    }
    let kind = OpKind::of(&req.method);
    let cfg = inner.cfg();
    let sub = route.subscription().to_ascii_lowercase();
    let actor = if principal.appid.is_empty() {
        principal.tenant.clone()
    } else {
        principal.appid.clone()
    };
    let remaining = match inner
        .buckets()
        .take(&cfg.throttle, &actor, &sub, kind, Instant::now())
    {
        Take::Ok(left) => left,
        Take::Throttled(wait) => {
            return Resp::cloud_error(
                429,
                "SubscriptionRequestsThrottled",
                &format!(
                    "Number of '{}' requests for subscription '{sub}' actor '{actor}' exceeded. Please try again after '{wait}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
                    kind.word()
                ),
            )
            .header("retry-after", wait.to_string())
            .header(kind.header(), "0");
        }
    };
    let resp = dispatch(inner, req, &route);
    resp.header(kind.header(), remaining.to_string())
}

fn dispatch(inner: &Inner, req: &Req, route: &Route<'_>) -> Resp {
    match *route {
        Route::ProvidersBySubscription { sub } => providers::list(inner, req, sub, None),
        Route::ProvidersByGroup { sub, rg } => providers::list(inner, req, sub, Some(rg)),
        Route::Provider { sub, rg, name } => providers::handle(inner, req, sub, rg, name),
        Route::Cluster { sub, rg, name } => hci::cluster(inner, req, sub, rg, name),
        Route::Machines { sub, rg } => machines::list(inner, req, sub, rg),
        Route::Machine { sub, rg, name } => machines::get(inner, req, sub, rg, name),
        Route::VmInstance { sub, rg, machine } => hci::vm_instance(inner, req, sub, rg, machine),
        Route::AttestationStatus { sub, rg, machine } => {
            hci::attestation_status(inner, req, sub, rg, machine)
        }
        Route::Extensions { sub, rg, machine } => extensions::list(inner, req, sub, rg, machine),
        Route::Extension {
            sub,
            rg,
            machine,
            name,
        } => extensions::handle(inner, req, sub, rg, machine, name),
        Route::OperationStatus { sub, location, op } => lro::status(inner, req, sub, location, op),
        Route::OperationResult { sub, location, op } => lro::result(inner, req, sub, location, op),
    }
}

/// Lower-case machine key from path parts.
pub(crate) fn machine_key(sub: &str, rg: &str, machine: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.HybridCompute/machines/{machine}")
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_case_insensitive() {
        let p = "subscriptions/S/resourcegroups/RG/providers/microsoft.hybridcompute/machines/vm1/providers/Microsoft.AzureStackHCI/virtualMachineInstances/default/AttestationStatus/default";
        let segs: Vec<&str> = p.split('/').collect();
        assert_eq!(
            parse_route(&segs),
            Some(Route::AttestationStatus {
                sub: "S",
                rg: "RG",
                machine: "vm1"
            })
        );
        let segs: Vec<&str> = "subscriptions/s/providers/Microsoft.HybridCompute/locations/eastus/operationresults/op1".split('/').collect();
        assert_eq!(
            parse_route(&segs),
            Some(Route::OperationResult {
                sub: "s",
                location: "eastus",
                op: "op1"
            })
        );
        let segs: Vec<&str> =
            "subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachines/x"
                .split('/')
                .collect();
        assert_eq!(parse_route(&segs), None);
    }

    #[test]
    fn api_version_shapes() {
        assert!(well_formed_version("2021-06-01"));
        assert!(well_formed_version("2025-06-01-preview"));
        assert!(!well_formed_version("2021-6-01"));
        assert!(!well_formed_version("latest"));
        assert!(!well_formed_version("2021-06-01-"));
    }
}
