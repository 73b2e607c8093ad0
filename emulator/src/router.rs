//! Top-level routing of the HTTPS listener to Entra, IMDS, ARM and the MAA data plane.

use serde_json::json;

use crate::emulator::Inner;
use crate::http::{Req, Resp};

#[derive(Debug, PartialEq, Eq)]
enum Surface<'a> {
    Token { tenant: &'a str },
    Keys,
    Imds,
    Arm,
    Maa { provider: &'a str },
    Unknown,
}

fn surface<'a>(segs: &[&'a str]) -> Surface<'a> {
    match segs {
        [tenant, o, v, t]
            if o.eq_ignore_ascii_case("oauth2")
                && v.eq_ignore_ascii_case("v2.0")
                && t.eq_ignore_ascii_case("token") =>
        {
            Surface::Token { tenant }
        }
        [_, d, v, k]
            if d.eq_ignore_ascii_case("discovery")
                && v.eq_ignore_ascii_case("v2.0")
                && k.eq_ignore_ascii_case("keys") =>
        {
            Surface::Keys
        }
        [m, i, o, t]
            if m.eq_ignore_ascii_case("metadata")
                && i.eq_ignore_ascii_case("identity")
                && o.eq_ignore_ascii_case("oauth2")
                && t.eq_ignore_ascii_case("token") =>
        {
            Surface::Imds
        }
        [s, ..] if s.eq_ignore_ascii_case("subscriptions") => Surface::Arm,
        [a, provider, ..] if a.eq_ignore_ascii_case("attest") => Surface::Maa { provider },
        _ => Surface::Unknown,
    }
}

/// Handles one request of the HTTPS listener.
pub(crate) fn route(inner: &Inner, req: &Req) -> Resp {
    let segs = req.segments();
    match surface(&segs) {
        Surface::Token { tenant } => crate::tokens::token_endpoint(inner, req, tenant),
        Surface::Imds => crate::tokens::imds(inner, req),
        Surface::Keys => Resp::json(200, &json!({"keys": [inner.entra_jwk()]})),
        Surface::Arm => crate::arm::handle(inner, req),
        Surface::Maa { provider } => {
            let rest = segs.get(2..).unwrap_or(&[]);
            crate::maa::handle(inner, req, provider, rest)
        }
        Surface::Unknown => {
            Resp::cloud_error(404, "NotFound", &format!("No route for '{}'.", req.path))
        }
    }
}

/// Caller identity for the request log.
pub(crate) fn principal(inner: &Inner, req: &Req) -> Option<String> {
    let segs = req.segments();
    match surface(&segs) {
        Surface::Token { .. } => form_urlencoded::parse(&req.body)
            .find(|(k, _)| k == "client_id")
            .map(|(_, v)| v.into_owned()),
        Surface::Imds => Some(req.q("client_id").unwrap_or("managed-identity").to_owned()),
        _ => crate::tokens::peek_principal(inner, req),
    }
}

/// (subscription, attestation provider) the request is about, for the log.
pub(crate) fn scope(req: &Req) -> (Option<String>, Option<String>) {
    let segs = req.segments();
    match surface(&segs) {
        Surface::Arm => (segs.get(1).map(|s| s.to_ascii_lowercase()), None),
        Surface::Maa { provider } => (None, Some(provider.to_ascii_lowercase())),
        _ => (None, None),
    }
}

/// The error body a scripted fault sends, in the shape of the surface it hits.
pub(crate) fn fault_response(req: &Req, status: u16, code: &str, message: &str) -> Resp {
    let segs = req.segments();
    match surface(&segs) {
        Surface::Token { .. } | Surface::Imds => Resp::json(
            status,
            &json!({"error": code, "error_description": message, "error_codes": [], "timestamp": crate::timefmt::rfc3339(std::time::SystemTime::now())}),
        ),
        _ => Resp::cloud_error(status, code, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surfaces() {
        assert_eq!(
            surface(&["t1", "oauth2", "v2.0", "token"]),
            Surface::Token { tenant: "t1" }
        );
        assert_eq!(
            surface(&["metadata", "identity", "oauth2", "token"]),
            Surface::Imds
        );
        assert_eq!(surface(&["Subscriptions", "x"]), Surface::Arm);
        assert_eq!(
            surface(&["attest", "p1", "certs"]),
            Surface::Maa { provider: "p1" }
        );
        assert_eq!(surface(&["favicon.ico"]), Surface::Unknown);
    }
}
