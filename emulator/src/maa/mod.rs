//! MAA data plane under each provider's attestUri (`{endpoint}/attest/{name}`): policy
//! GET/PUT/reset with real JWS handling, `/certs` and the OpenID metadata (CONTRACTS.md §2).

mod policy_lang;

use std::time::SystemTime;

use serde_json::{Value, json};

use crate::emulator::Inner;
use crate::http::{Req, Resp};
use crate::jwt::{
    Jws, b64std, b64std_decode, b64url, b64url_decode, sha256, sign_jwt, verify_rs256_der,
};
use crate::state::{Provider, StoredPolicy};
use crate::tokens::{MAA_AUDIENCES, validate_bearer};

/// Data-plane api-versions accepted.
pub const DATAPLANE_VERSIONS: [&str; 3] = ["2022-08-01", "2020-10-01", "2025-06-01"];
/// Attestation types (2025-06-01 enum; accepted on every version since the enum is extensible).
pub const ATTESTATION_TYPES: [&str; 6] = [
    "SgxEnclave",
    "OpenEnclave",
    "AzureGuest",
    "SevSnpVm",
    "Tpm",
    "TdxVm",
];
/// Policy returned before any PUT and after reset (the text in the official Get_Policy example).
pub const DEFAULT_POLICY: &str =
    "\r\nversion=1.0;\r\nauthorizationrules { => permit(); };\r\nissuancerules {};";
/// `{"alg":"none"}` base64url.
const NONE_HEADER: &str = "eyJhbGciOiJub25lIn0";

/// The unsigned JWS for a policy text, formatted like the Azure SDKs do
/// (`{"AttestationPolicy": "<base64url>"}`).
pub(crate) fn unsigned_policy_jws(text: &str) -> String {
    let payload = format!("{{\"AttestationPolicy\": \"{}\"}}", b64url(text.as_bytes()));
    format!("{NONE_HEADER}.{}.", b64url(payload.as_bytes()))
}

/// The policy in force for a type.
pub(crate) fn effective_policy(p: &Provider, attestation_type: &str) -> StoredPolicy {
    p.policies
        .get(&attestation_type.to_ascii_lowercase())
        .cloned()
        .unwrap_or_else(|| StoredPolicy {
            text: DEFAULT_POLICY.to_owned(),
            jws: unsigned_policy_jws(DEFAULT_POLICY),
            signed: false,
            is_default: true,
        })
}

fn bad(message: &str) -> Resp {
    Resp::cloud_error(400, "InvalidParameter", message)
}

fn instance_jwk(p: &Provider, inner: &Inner) -> Value {
    json!({
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "kid": p.kid,
        "x5c": [b64std(&p.instance_cert)],
        "n": inner.maa_key.n_b64(),
        "e": inner.maa_key.e_b64(),
    })
}

fn response_token(inner: &Inner, p: &Provider, mut claims: serde_json::Map<String, Value>) -> Resp {
    let uri = inner.attest_uri(&p.name);
    let now = crate::timefmt::unix_seconds(SystemTime::now());
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now));
    claims.insert("exp".into(), json!(now + 3600));
    claims.insert("iss".into(), json!(uri));
    let header = json!({"alg": "RS256", "jku": format!("{uri}/certs"), "kid": p.kid, "typ": "JWT"});
    match sign_jwt(&inner.maa_key, &header, &Value::Object(claims)) {
        Ok(token) => Resp::json(200, &json!({ "token": token })),
        Err(e) => Resp::cloud_error(500, "InternalServerError", &e.to_string()),
    }
}

/// Verifies an RS256 policy JWS: signature by the x5c leaf, each chain link, and (for
/// Isolated providers) a chain to one of the policy signing certificates. Returns the signer JWK.
fn verify_signed(p: &Provider, jws: &Jws) -> Result<Value, String> {
    let x5c: Vec<String> = jws
        .header
        .get("x5c")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if x5c.is_empty() {
        return Err(
            "a signed policy must carry its signing certificate chain in the 'x5c' header".into(),
        );
    }
    let ders: Vec<Vec<u8>> = x5c
        .iter()
        .map(|c| b64std_decode(c).ok_or_else(|| "x5c entries must be standard base64".to_owned()))
        .collect::<Result<_, _>>()?;
    let certs: Vec<x509_parser::certificate::X509Certificate<'_>> = ders
        .iter()
        .map(|d| {
            x509_parser::parse_x509_certificate(d)
                .map(|(_, c)| c)
                .map_err(|_| "an x5c entry is not a DER X.509 certificate".to_owned())
        })
        .collect::<Result<_, _>>()?;
    let leaf = certs.first().ok_or("empty x5c")?;
    let spki = &leaf.public_key().subject_public_key.data;
    if !verify_rs256_der(spki, jws.signing_input.as_bytes(), &jws.signature) {
        return Err("the policy signature does not verify with the x5c signing certificate".into());
    }
    for pair in certs.windows(2) {
        if let [child, parent] = pair
            && child.verify_signature(Some(parent.public_key())).is_err()
        {
            return Err("the x5c certificate chain does not verify".into());
        }
    }
    if p.is_isolated() {
        let trusted = p.signing_certs.iter().any(|anchor| {
            ders.iter().any(|d| d == anchor)
                || x509_parser::parse_x509_certificate(anchor).is_ok_and(|(_, a)| {
                    certs
                        .last()
                        .is_some_and(|last| last.verify_signature(Some(a.public_key())).is_ok())
                })
        });
        if !trusted {
            return Err("the policy signing certificate does not chain to any of the provider's policy signing certificates".into());
        }
    }
    Ok(json!({ "kty": "RSA", "x5c": [x5c[0]] }))
}

/// Checks the JWS envelope for the provider's trust model. Returns the signer JWK for signed ones.
fn check_envelope(p: &Provider, jws: &Jws) -> Result<Option<Value>, Resp> {
    match jws.alg() {
        Some("none") => {
            if !jws.signature.is_empty() {
                return Err(bad(
                    "an unsecured JWS (alg 'none') must have an empty signature",
                ));
            }
            if p.is_isolated() {
                return Err(bad(
                    "The attestation provider is in Isolated trust mode: policies must be signed (RS256 with an x5c chain to a policy signing certificate).",
                ));
            }
            Ok(None)
        }
        Some("RS256") => verify_signed(p, jws).map(Some).map_err(|m| bad(&m)),
        Some(other) => Err(bad(&format!(
            "unsupported JWS algorithm '{other}'; use 'none' or 'RS256'"
        ))),
        None => Err(bad("the JWS header has no 'alg'")),
    }
}

fn text_body(req: &Req) -> Result<(String, Jws), Resp> {
    if req.media_type().as_deref() != Some("text/plain") {
        return Err(Resp::cloud_error(
            415,
            "UnsupportedMediaType",
            &format!(
                "The content type '{}' is not supported; send the JWS as text/plain.",
                req.header("content-type").unwrap_or("")
            ),
        ));
    }
    let raw = std::str::from_utf8(&req.body).map_err(|_| bad("the request body is not UTF-8"))?;
    let jws =
        Jws::parse(raw.trim()).map_err(|e| bad(&format!("the request body is not a JWS: {e}")))?;
    Ok((raw.to_owned(), jws))
}

/// Handles a request under `/attest/{provider}/...`.
pub(crate) fn handle(inner: &Inner, req: &Req, provider: &str, rest: &[&str]) -> Resp {
    {
        let w = inner.world();
        let Some(p) = w.provider_by_name(provider) else {
            return Resp::cloud_error(
                404,
                "NotFound",
                &format!("The attestation provider '{provider}' does not exist."),
            );
        };
        if p.public_network_access.eq_ignore_ascii_case("Disabled") {
            return Resp::cloud_error(
                403,
                "Forbidden",
                "Public network access to this attestation provider is disabled.",
            );
        }
    }
    match rest {
        [c] if c.eq_ignore_ascii_case("certs") => anonymous(inner, req, provider, true),
        [w, o]
            if w.eq_ignore_ascii_case(".well-known")
                && o.eq_ignore_ascii_case("openid-configuration") =>
        {
            anonymous(inner, req, provider, false)
        }
        [pol, t] if pol.eq_ignore_ascii_case("policies") => {
            if let Err(e) = validate_bearer(inner, req, &MAA_AUDIENCES) {
                let (_, message) = e.arm(&MAA_AUDIENCES);
                return Resp::cloud_error(401, "Unauthorized", &message)
                    .header("www-authenticate", e.www_authenticate(&inner.endpoint));
            }
            if let Err(r) = check_version(req, true) {
                return r;
            }
            let (ty, is_reset) = match t.split_once(':') {
                Some((kind, action)) if action.eq_ignore_ascii_case("reset") => (kind, true),
                Some(_) => {
                    return Resp::cloud_error(
                        404,
                        "NotFound",
                        &format!("Unknown action in '{t}'."),
                    );
                }
                None => (*t, false),
            };
            let Some(ty) = ATTESTATION_TYPES
                .iter()
                .find(|a| a.eq_ignore_ascii_case(ty))
            else {
                return bad(&format!(
                    "Unknown attestation type '{ty}'. Supported: {}.",
                    ATTESTATION_TYPES.join(", ")
                ));
            };
            match (&req.method, is_reset) {
                (&http::Method::GET, false) => get_policy(inner, provider, ty),
                (&http::Method::PUT, false) => set_policy(inner, req, provider, ty),
                (&http::Method::POST, true) => reset_policy(inner, req, provider, ty),
                _ => Resp::cloud_error(
                    405,
                    "MethodNotAllowed",
                    &format!("Method '{}' is not allowed here.", req.method),
                ),
            }
        }
        _ => Resp::cloud_error(404, "NotFound", &format!("No route for '{}'.", req.path)),
    }
}

fn check_version(req: &Req, required: bool) -> Result<(), Resp> {
    match req.api_version() {
        None if !required => Ok(()),
        None => Err(Resp::cloud_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
        Some(v) if DATAPLANE_VERSIONS.contains(&v) => Ok(()),
        Some(v) => Err(Resp::cloud_error(
            400,
            "UnsupportedApiVersion",
            &format!(
                "The HTTP resource that matches the request URI does not support the API version '{v}'. Supported: {}.",
                DATAPLANE_VERSIONS.join(", ")
            ),
        )),
    }
}

fn anonymous(inner: &Inner, req: &Req, provider: &str, certs: bool) -> Resp {
    if req.method != http::Method::GET {
        return Resp::cloud_error(
            405,
            "MethodNotAllowed",
            &format!("Method '{}' is not allowed here.", req.method),
        );
    }
    if let Err(r) = check_version(req, false) {
        return r;
    }
    let w = inner.world();
    let Some(p) = w.provider_by_name(provider) else {
        return Resp::empty(404);
    };
    let uri = inner.attest_uri(&p.name);
    if certs {
        return Resp::json(200, &json!({ "keys": [instance_jwk(p, inner)] }));
    }
    Resp::json(
        200,
        &json!({
            "issuer": uri,
            "jwks_uri": format!("{uri}/certs"),
            "response_types_supported": ["token", "none"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "revocation_endpoint": format!("{uri}/revoke"),
            "claims_supported": ["is-debuggable", "sgx-mrsigner", "sgx-mrenclave", "product-id", "svn", "tee", "device_id", "component_0_id", "expected_components"],
        }),
    )
}

fn get_policy(inner: &Inner, provider: &str, ty: &str) -> Resp {
    let w = inner.world();
    let Some(p) = w.provider_by_name(provider) else {
        return Resp::empty(404);
    };
    let policy = effective_policy(p, ty);
    let mut claims = serde_json::Map::new();
    claims.insert("x-ms-policy".into(), json!(policy.jws));
    response_token(inner, p, claims)
}

fn set_policy(inner: &Inner, req: &Req, provider: &str, ty: &str) -> Resp {
    let (raw, jws) = match text_body(req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut w = inner.world();
    let Some(p) = w.provider_by_name_mut(provider) else {
        return Resp::empty(404);
    };
    let signer = match check_envelope(p, &jws) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(encoded) = jws.claims().and_then(|c| {
        c.get("AttestationPolicy")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }) else {
        return bad(
            "The policy JWS payload must be a JSON object with an 'AttestationPolicy' string (base64url of the policy text).",
        );
    };
    let Some(text) = b64url_decode(&encoded).and_then(|b| String::from_utf8(b).ok()) else {
        return bad("'AttestationPolicy' must be base64url-encoded UTF-8 policy text.");
    };
    if let Err(why) = policy_lang::validate(&text) {
        return bad(&format!("Policy parsing failed: {why}"));
    }
    p.policies.insert(
        ty.to_ascii_lowercase(),
        StoredPolicy {
            text,
            jws: raw.trim().to_owned(),
            signed: signer.is_some(),
            is_default: false,
        },
    );
    let mut claims = serde_json::Map::new();
    claims.insert("x-ms-policy-result".into(), json!("Updated"));
    claims.insert(
        "x-ms-policy-token-hash".into(),
        json!(b64url(&sha256(raw.as_bytes()))),
    );
    if let Some(s) = signer {
        claims.insert("x-ms-policy-signer".into(), s);
    }
    response_token(inner, p, claims)
}

fn reset_policy(inner: &Inner, req: &Req, provider: &str, ty: &str) -> Resp {
    let (raw, jws) = match text_body(req) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut w = inner.world();
    let Some(p) = w.provider_by_name_mut(provider) else {
        return Resp::empty(404);
    };
    let signer = match check_envelope(p, &jws) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !jws.payload.is_empty()
        && jws
            .claims()
            .is_none_or(|c| c.as_object().is_none_or(|o| !o.is_empty()))
    {
        return bad("The reset JWS must have an empty payload.");
    }
    p.policies.remove(&ty.to_ascii_lowercase());
    let mut claims = serde_json::Map::new();
    claims.insert("x-ms-policy-result".into(), json!("Removed"));
    claims.insert(
        "x-ms-policy-token-hash".into(),
        json!(b64url(&sha256(raw.as_bytes()))),
    );
    if let Some(s) = signer {
        claims.insert("x-ms-policy-signer".into(), s);
    }
    response_token(inner, p, claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CONTRACTS.md §2 worked example: policy text → exact PUT body → x-ms-policy-token-hash.
    #[test]
    fn contracts_worked_example() {
        let text = "version=1.0;authorizationrules{=> permit();};issuancerules{};";
        let body = unsigned_policy_jws(text);
        assert_eq!(
            body,
            "eyJhbGciOiJub25lIn0.eyJBdHRlc3RhdGlvblBvbGljeSI6ICJkbVZ5YzJsdmJqMHhMakE3WVhWMGFHOXlhWHBoZEdsdmJuSjFiR1Z6ZXowLUlIQmxjbTFwZENncE8zMDdhWE56ZFdGdVkyVnlkV3hsYzN0OU93In0."
        );
        let payload = b64url_decode(body.split('.').nth(1).expect("payload")).expect("b64");
        assert_eq!(
            String::from_utf8(payload).expect("utf8"),
            "{\"AttestationPolicy\": \"dmVyc2lvbj0xLjA7YXV0aG9yaXphdGlvbnJ1bGVzez0-IHBlcm1pdCgpO307aXNzdWFuY2VydWxlc3t9Ow\"}"
        );
        assert_eq!(
            b64url(&sha256(body.as_bytes())),
            "pveaspNJXn1BbCk2ADPH4xhekUS-UQcgOXYXhh9YAmE"
        );
    }

    #[test]
    fn default_policy_matches_official_example() {
        // The x-ms-policy inside Get_Policy.json (2022-08-01 example) decodes to DEFAULT_POLICY.
        let example = "eyJhbGciOiJub25lIn0.eyJBdHRlc3RhdGlvblBvbGljeSI6ICJEUXAyWlhKemFXOXVQVEV1TURzTkNtRjFkR2h2Y21sNllYUnBiMjV5ZFd4bGN5QjdJRDAtSUhCbGNtMXBkQ2dwT3lCOU93MEthWE56ZFdGdVkyVnlkV3hsY3lCN2ZUcyJ9.";
        assert_eq!(unsigned_policy_jws(DEFAULT_POLICY), example);
        policy_lang::validate(DEFAULT_POLICY).expect("default policy is valid");
    }
}
