//! The MAA data plane (I/O): policy get, set and reset on a provider's `attestUri`.
//!
//! * The policy is sent as a JWS whose payload is exactly `{"AttestationPolicy": "<base64url(policy)>"}` (the
//!   Python SDK's serialisation, which CONTRACTS.md's worked example reproduces byte for byte): unsigned with
//!   header `{"alg":"none"}` and an empty signature, or RS256-signed with the signing certificate chain in `x5c`.
//! * MAA answers `{"token": "<JWT>"}`, signed by the instance. The JWT is verified (RS256 only) against the
//!   instance's `/certs` key set, fetched over verified TLS from the same `attestUri` and cached per instance
//!   (refetched once when a `kid` is unknown); `jku` and `x5c` in the token header are ignored.
//! * After a set, `x-ms-policy-token-hash` must equal base64url(SHA-256(the exact JWS sent)).
//! * The effective policy text is decoded from `x-ms-policy` for comparison with the desired one.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use reqwest::Method;
use ring::rand::SystemRandom;
use ring::signature::{self, RsaKeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use url::Url;

use super::client::AzureClient;
use super::error::{Error, Service};
use super::http::{Request, Response};
use super::ids::IdError;
use super::models::{JsonWebKey, JsonWebKeySet};

/// base64url of `{"alg":"none"}`.
pub const UNSIGNED_HEADER: &str = "eyJhbGciOiJub25lIn0";

/// The unsigned JWS with an empty payload that resets a policy.
pub const UNSIGNED_RESET_JWS: &str = "eyJhbGciOiJub25lIn0..";

/// Response tokens may be this much past `exp` (clock skew).
const EXP_LEEWAY_SECS: u64 = 300;

/// base64 decoding that accepts both alphabets, with or without padding.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let s: String = s
        .trim()
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    LENIENT.decode(s).ok()
}

/// The JWS payload of a policy: `{"AttestationPolicy": "<base64url(policy)>"}`, with the space after the colon
/// that the Python SDK writes (the hash covers these exact bytes).
pub fn policy_payload(policy: &str) -> String {
    format!(
        "{{\"AttestationPolicy\": \"{}\"}}",
        URL_SAFE_NO_PAD.encode(policy.as_bytes())
    )
}

/// The unsigned JWS of a policy: `eyJhbGciOiJub25lIn0.<base64url(payload)>.`
pub fn unsigned_policy_jws(policy: &str) -> String {
    format!(
        "{UNSIGNED_HEADER}.{}.",
        URL_SAFE_NO_PAD.encode(policy_payload(policy).as_bytes())
    )
}

/// The policy JWS to send: unsigned, or signed by `signer`.
pub fn policy_jws(policy: &str, signer: Option<&PolicySigner>) -> Result<String, Error> {
    match signer {
        None => Ok(unsigned_policy_jws(policy)),
        Some(s) => s.sign(&URL_SAFE_NO_PAD.encode(policy_payload(policy).as_bytes())),
    }
}

/// The reset JWS: unsigned (`eyJhbGciOiJub25lIn0..`), or signed with an empty payload.
pub fn reset_jws(signer: Option<&PolicySigner>) -> Result<String, Error> {
    match signer {
        None => Ok(UNSIGNED_RESET_JWS.to_owned()),
        Some(s) => s.sign(""),
    }
}

/// `x-ms-policy-token-hash`: base64url(SHA-256(the ASCII bytes of the JWS)).
pub fn policy_token_hash(jws: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, jws.as_bytes()))
}

/// Why a policy JWS could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolicyDecodeError {
    /// Not three dot-separated parts.
    #[error("not a compact JWS")]
    NotCompact,
    /// The payload is not base64url.
    #[error("the payload is not base64url")]
    PayloadEncoding,
    /// The payload is not `{"AttestationPolicy": "..."}`.
    #[error("the payload has no AttestationPolicy")]
    NoPolicy,
    /// The policy is not base64url of UTF-8.
    #[error("AttestationPolicy is not base64url of UTF-8 text")]
    PolicyEncoding,
}

/// Decodes the policy text of a policy JWS (`x-ms-policy`); `Ok(None)` for an empty payload (a reset token).
pub fn decode_policy_jws(jws: &str) -> Result<Option<String>, PolicyDecodeError> {
    let mut parts = jws.trim().split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PolicyDecodeError::NotCompact);
    };
    if payload.is_empty() {
        return Ok(None);
    }
    let payload = b64_decode(payload).ok_or(PolicyDecodeError::PayloadEncoding)?;
    let value: Value = serde_json::from_slice(&payload).map_err(|_| PolicyDecodeError::NoPolicy)?;
    let policy = value
        .get("AttestationPolicy")
        .and_then(Value::as_str)
        .ok_or(PolicyDecodeError::NoPolicy)?;
    let bytes = b64_decode(policy).ok_or(PolicyDecodeError::PolicyEncoding)?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| PolicyDecodeError::PolicyEncoding)
}

/// Normalises a policy text for comparison: line endings to `\n`, trailing whitespace of lines and of the text
/// removed (whether MAA keeps the text byte for byte is unconfirmed).
pub fn normalize_policy(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// An RS256 policy signing key with its certificate chain. `Debug` never shows the key.
pub struct PolicySigner {
    key: RsaKeyPair,
    /// Standard base64 DER certificates, leaf first.
    x5c: Vec<String>,
    rng: SystemRandom,
}

impl fmt::Debug for PolicySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicySigner")
            .field("key", &"[REDACTED]")
            .field("certificates", &self.x5c.len())
            .finish_non_exhaustive()
    }
}

fn signer_error(what: &'static str) -> Error {
    Error::Credential { what, source: None }
}

impl PolicySigner {
    /// A signer from a PEM RSA private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`) and a PEM
    /// certificate chain, leaf first. The leaf certificate must hold the key's public half.
    pub fn from_pem(key_pem: &[u8], cert_chain_pem: &[u8]) -> Result<Self, Error> {
        // The PEM parser's errors are not kept: they could quote key material.
        let key_der = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| signer_error("the policy signing key is not a PEM private key"))?;
        let key = match &key_der {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err(signer_error("the policy signing key is not an RSA key")),
        }
        .map_err(|_| signer_error("the policy signing key is not a usable RSA key"))?;
        let certs = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| signer_error("the policy signing certificates are not PEM"))?;
        let Some(leaf) = certs.first() else {
            return Err(signer_error("no policy signing certificate"));
        };
        let signer = PolicySigner {
            x5c: certs.iter().map(|c| STANDARD.encode(c.as_ref())).collect(),
            key,
            rng: SystemRandom::new(),
        };
        // Prove that the leaf certificate matches the key.
        let probe = b"guest-attestation-operator key check";
        let sig = signer.raw_sign(probe)?;
        let cert = webpki::EndEntityCert::try_from(leaf)
            .map_err(|_| signer_error("the policy signing certificate cannot be parsed"))?;
        cert.verify_signature(webpki::ring::RSA_PKCS1_2048_8192_SHA256, probe, &sig)
            .map_err(|_| {
                signer_error("the policy signing certificate does not match the signing key")
            })?;
        Ok(signer)
    }

    /// The certificates as a key set, for an Isolated provider's `policySigningCertificates`.
    pub fn certificates(&self) -> JsonWebKeySet {
        JsonWebKeySet {
            keys: self
                .x5c
                .first()
                .map(|leaf| JsonWebKey {
                    kty: "RSA".into(),
                    key_use: Some("sig".into()),
                    x5c: vec![leaf.clone()],
                    ..Default::default()
                })
                .into_iter()
                .collect(),
        }
    }

    fn raw_sign(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let mut sig = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&signature::RSA_PKCS1_SHA256, &self.rng, msg, &mut sig)
            .map_err(|_| signer_error("signing the policy failed"))?;
        Ok(sig)
    }

    /// A compact RS256 JWS of `payload_b64` (already base64url), with header `{"alg":"RS256","x5c":[...]}`.
    pub fn sign(&self, payload_b64: &str) -> Result<String, Error> {
        let header = serde_json::json!({ "alg": "RS256", "x5c": self.x5c });
        let header_b64 = URL_SAFE_NO_PAD.encode(header.to_string().as_bytes());
        let input = format!("{header_b64}.{payload_b64}");
        let sig = self.raw_sign(input.as_bytes())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

/// A decoded response JWT (public only for the property tests and fuzz targets).
#[derive(Debug)]
pub struct Jwt {
    alg: Option<String>,
    kid: Option<String>,
    claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

/// Splits and decodes a compact JWS (header, claims, signature); nothing is verified here.
pub fn parse_jwt(token: &str) -> Result<Jwt, &'static str> {
    #[derive(Deserialize)]
    struct Header {
        alg: Option<String>,
        kid: Option<String>,
    }
    let mut parts = token.trim().split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the token is not a compact JWS");
    };
    let header: Header = b64_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the token header is not base64url JSON")?;
    let claims: Map<String, Value> = b64_decode(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the token body is not a base64url JSON object")?;
    let signature = b64_decode(s).ok_or("the token signature is not base64url")?;
    Ok(Jwt {
        alg: header.alg,
        kid: header.kid,
        claims,
        signing_input: format!("{h}.{p}"),
        signature,
    })
}

fn key_verifies(key: &JsonWebKey, msg: &[u8], sig: &[u8]) -> bool {
    if let (Some(n), Some(e)) = (&key.n, &key.e)
        && let (Some(n), Some(e)) = (b64_decode(n), b64_decode(e))
    {
        return signature::RsaPublicKeyComponents { n, e }
            .verify(&signature::RSA_PKCS1_2048_8192_SHA256, msg, sig)
            .is_ok();
    }
    let Some(der) = key.x5c.first().and_then(|c| b64_decode(c)) else {
        return false;
    };
    let der = CertificateDer::from(der);
    webpki::EndEntityCert::try_from(&der).is_ok_and(|cert| {
        cert.verify_signature(webpki::ring::RSA_PKCS1_2048_8192_SHA256, msg, sig)
            .is_ok()
    })
}

/// Whether the key set holds a key that verifies the token: `Ok(false)` when no key has the token's `kid`.
pub fn verify_jwt(jwks: &JsonWebKeySet, jwt: &Jwt) -> Result<bool, &'static str> {
    if jwt.alg.as_deref() != Some("RS256") {
        return Err("the token is not signed with RS256");
    }
    let candidates: Vec<&JsonWebKey> = jwks
        .keys
        .iter()
        .filter(|k| jwt.kid.is_none() || k.kid == jwt.kid)
        .collect();
    if candidates.is_empty() {
        return Ok(false);
    }
    if candidates
        .iter()
        .any(|k| key_verifies(k, jwt.signing_input.as_bytes(), &jwt.signature))
    {
        Ok(true)
    } else {
        Err("the token signature does not verify against the instance's signing keys")
    }
}

/// Checks `exp` (with leeway) and `iss` (must be the instance, when present).
pub fn check_claims(jwt: &Jwt, instance: &Url, now: SystemTime) -> Result<(), &'static str> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if let Some(exp) = jwt.claims.get("exp") {
        let exp = exp.as_u64().ok_or("the token's exp is not a number")?;
        // saturating: a hostile exp near u64::MAX must not overflow (a panic in debug builds)
        if exp.saturating_add(EXP_LEEWAY_SECS) < now {
            return Err("the token has expired");
        }
    }
    if let Some(iss) = jwt.claims.get("iss") {
        let iss = iss.as_str().ok_or("the token's iss is not a string")?;
        let want = instance.as_str().trim_end_matches('/');
        if !iss.trim_end_matches('/').eq_ignore_ascii_case(want) {
            return Err("the token was not issued by this attestation instance");
        }
    }
    Ok(())
}

/// `x-ms-policy-result`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyResult {
    /// The policy was set.
    Updated,
    /// The policy was reset to the default.
    Removed,
    /// Another value.
    Other(String),
}

impl From<&str> for PolicyResult {
    fn from(s: &str) -> Self {
        if s.eq_ignore_ascii_case("Updated") {
            PolicyResult::Updated
        } else if s.eq_ignore_ascii_case("Removed") {
            PolicyResult::Removed
        } else {
            PolicyResult::Other(s.to_owned())
        }
    }
}

/// A policy as MAA reports it (GET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaaPolicy {
    /// The stored policy JWS (`x-ms-policy`), if any.
    pub policy_jws: Option<String>,
    /// Its decoded policy text, if any.
    pub policy: Option<String>,
    /// Whether the stored JWS is signed (its header is not `{"alg":"none"}`).
    pub signed: bool,
}

impl MaaPolicy {
    /// Whether the stored policy equals `desired` after [`normalize_policy`].
    pub fn matches(&self, desired: &str) -> bool {
        self.policy
            .as_deref()
            .is_some_and(|p| normalize_policy(p) == normalize_policy(desired))
    }
}

/// The result of a policy set or reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    /// `x-ms-policy-result`.
    pub result: Option<PolicyResult>,
    /// `x-ms-policy-token-hash` (verified against the JWS sent, for a set).
    pub token_hash: Option<String>,
    /// Whether MAA reported a signer (`x-ms-policy-signer`).
    pub signed: bool,
    /// The effective policy text, when the response carries `x-ms-policy`.
    pub policy: Option<String>,
}

fn invalid(operation: &'static str, reason: &'static str) -> Error {
    Error::InvalidResponse {
        service: Service::Maa,
        operation,
        reason,
    }
}

fn check_attestation_type(t: &str) -> Result<(), Error> {
    if !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(IdError::new("attestation type", t, "must be 1 to 64 letters and digits").into())
    }
}

/// The instance base URL: https, no query or fragment, no trailing slash.
pub(crate) fn instance_url(attest_uri: &str) -> Result<Url, Error> {
    let url = Url::parse(attest_uri.trim())
        .map_err(|_| IdError::new("attestUri", attest_uri, "not a URL"))?;
    if url.scheme() != "https" {
        return Err(IdError::new("attestUri", attest_uri, "not https").into());
    }
    if url.query().is_some() || url.fragment().is_some() || url.cannot_be_a_base() {
        return Err(IdError::new("attestUri", attest_uri, "has a query or fragment").into());
    }
    Ok(url)
}

fn endpoint(instance: &Url, segments: &[&str]) -> Result<Url, Error> {
    let mut url = instance.clone();
    url.path_segments_mut()
        .map_err(|()| IdError::new("attestUri", instance.as_str(), "cannot be a base URL"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

impl AzureClient {
    /// The instance's signing keys, cached; `refresh` fetches them again.
    async fn maa_keys(&self, instance: &Url, refresh: bool) -> Result<Arc<JsonWebKeySet>, Error> {
        let key = instance.as_str().trim_end_matches('/').to_ascii_lowercase();
        if !refresh && let Some(keys) = self.cached_jwks(&key) {
            return Ok(keys);
        }
        let url = endpoint(instance, &["certs"])?;
        let req = Request::new(
            Service::Maa,
            "maa_get_certs",
            Method::GET,
            url,
            self.principal_arc(),
        );
        // /certs is public: no token is sent.
        let resp = self.core().send(&req, None).await?;
        let keys: JsonWebKeySet = resp.json(Service::Maa, "maa_get_certs")?;
        let keys = Arc::new(keys);
        self.store_jwks(key, keys.clone());
        Ok(keys)
    }

    /// Decodes and verifies a `{"token": ...}` response; returns the claims.
    async fn maa_verified_claims(
        &self,
        operation: &'static str,
        instance: &Url,
        resp: &Response,
    ) -> Result<Map<String, Value>, Error> {
        #[derive(Deserialize)]
        struct TokenBody {
            token: String,
        }
        let body: TokenBody = resp.json(Service::Maa, operation)?;
        let jwt = parse_jwt(&body.token).map_err(|r| invalid(operation, r))?;
        let keys = self.maa_keys(instance, false).await?;
        let mut verified = verify_jwt(&keys, &jwt).map_err(|r| invalid(operation, r))?;
        if !verified {
            // an unknown kid: the instance may have rotated its keys
            let keys = self.maa_keys(instance, true).await?;
            verified = verify_jwt(&keys, &jwt).map_err(|r| invalid(operation, r))?;
        }
        if !verified {
            return Err(invalid(
                operation,
                "no signing key of the instance has the token's kid",
            ));
        }
        check_claims(&jwt, instance, SystemTime::now()).map_err(|r| invalid(operation, r))?;
        Ok(jwt.claims)
    }

    async fn maa_send(&self, req: &Request) -> Result<Response, Error> {
        let scope = self.core().config.cloud.maa_scope.clone();
        self.send_authed(req, &scope).await
    }

    fn maa_request(
        &self,
        operation: &'static str,
        method: Method,
        instance: &Url,
        segments: &[&str],
    ) -> Result<Request, Error> {
        let mut url = endpoint(instance, segments)?;
        url.query_pairs_mut()
            .append_pair("api-version", self.maa_api_version());
        Ok(Request::new(
            Service::Maa,
            operation,
            method,
            url,
            self.principal_arc(),
        ))
    }

    /// Gets the policy of `attestation_type` (e.g. `Tpm`, `AzureGuest`) on the instance at `attest_uri`, with its
    /// response token verified and the policy text decoded.
    pub async fn maa_get_policy(
        &self,
        attest_uri: &str,
        attestation_type: &str,
    ) -> Result<MaaPolicy, Error> {
        const OP: &str = "maa_get_policy";
        check_attestation_type(attestation_type)?;
        let instance = instance_url(attest_uri)?;
        let req = self.maa_request(OP, Method::GET, &instance, &["policies", attestation_type])?;
        let resp = self.maa_send(&req).await?;
        let claims = self.maa_verified_claims(OP, &instance, &resp).await?;
        let policy_jws = match claims.get("x-ms-policy") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(invalid(OP, "x-ms-policy is not a string")),
        };
        let policy = match &policy_jws {
            Some(jws) => decode_policy_jws(jws).map_err(|_| {
                invalid(
                    OP,
                    "x-ms-policy is not a policy JWS with an AttestationPolicy",
                )
            })?,
            None => None,
        };
        let signed = policy_jws
            .as_deref()
            .is_some_and(|j| !j.starts_with(UNSIGNED_HEADER));
        Ok(MaaPolicy {
            policy_jws,
            policy,
            signed,
        })
    }

    /// Sets the policy of `attestation_type`: unsigned (AAD trust model) or signed by `signer` (required for
    /// Isolated providers). Verifies the response token and that `x-ms-policy-token-hash` matches the JWS sent.
    pub async fn maa_set_policy(
        &self,
        attest_uri: &str,
        attestation_type: &str,
        policy: &str,
        signer: Option<&PolicySigner>,
    ) -> Result<PolicyOutcome, Error> {
        const OP: &str = "maa_set_policy";
        check_attestation_type(attestation_type)?;
        let instance = instance_url(attest_uri)?;
        let jws = policy_jws(policy, signer)?;
        let mut req =
            self.maa_request(OP, Method::PUT, &instance, &["policies", attestation_type])?;
        req.body = Some(("text/plain", jws.clone().into_bytes()));
        let resp = self.maa_send(&req).await?;
        let claims = self.maa_verified_claims(OP, &instance, &resp).await?;
        let outcome = outcome(OP, &claims)?;
        let Some(hash) = &outcome.token_hash else {
            return Err(invalid(OP, "the response has no x-ms-policy-token-hash"));
        };
        if hash.trim_end_matches('=') != policy_token_hash(&jws) {
            return Err(invalid(
                OP,
                "x-ms-policy-token-hash does not match the policy token sent",
            ));
        }
        if outcome.result != Some(PolicyResult::Updated) {
            return Err(invalid(OP, "x-ms-policy-result is not Updated"));
        }
        Ok(outcome)
    }

    /// Resets the policy of `attestation_type` to the default (`POST .../policies/{type}:reset`), unsigned or
    /// signed by `signer`. Verifies the response token.
    pub async fn maa_reset_policy(
        &self,
        attest_uri: &str,
        attestation_type: &str,
        signer: Option<&PolicySigner>,
    ) -> Result<PolicyOutcome, Error> {
        const OP: &str = "maa_reset_policy";
        check_attestation_type(attestation_type)?;
        let instance = instance_url(attest_uri)?;
        let jws = reset_jws(signer)?;
        let reset = format!("{attestation_type}:reset");
        let mut req = self.maa_request(OP, Method::POST, &instance, &["policies", &reset])?;
        // A reset is idempotent.
        req.idempotent = true;
        req.body = Some(("text/plain", jws.into_bytes()));
        let resp = self.maa_send(&req).await?;
        let claims = self.maa_verified_claims(OP, &instance, &resp).await?;
        outcome(OP, &claims)
    }
}

fn outcome(operation: &'static str, claims: &Map<String, Value>) -> Result<PolicyOutcome, Error> {
    let text = |name: &str| match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(operation, "a policy claim is not a string")),
    };
    let policy = match text("x-ms-policy")? {
        Some(jws) => decode_policy_jws(&jws)
            .map_err(|_| invalid(operation, "x-ms-policy is not a policy JWS"))?,
        None => None,
    };
    Ok(PolicyOutcome {
        result: text("x-ms-policy-result")?.map(|r| PolicyResult::from(r.as_str())),
        token_hash: text("x-ms-policy-token-hash")?,
        signed: claims
            .get("x-ms-policy-signer")
            .is_some_and(|v| !v.is_null()),
        policy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CONTRACTS.md §2, worked example.
    const POLICY: &str = "version=1.0;authorizationrules{=> permit();};issuancerules{};";
    const PAYLOAD: &str = r#"{"AttestationPolicy": "dmVyc2lvbj0xLjA7YXV0aG9yaXphdGlvbnJ1bGVzez0-IHBlcm1pdCgpO307aXNzdWFuY2VydWxlc3t9Ow"}"#;
    const PUT_BODY: &str = "eyJhbGciOiJub25lIn0.eyJBdHRlc3RhdGlvblBvbGljeSI6ICJkbVZ5YzJsdmJqMHhMakE3WVhWMGFHOXlhWHBoZEdsdmJuSjFiR1Z6ZXowLUlIQmxjbTFwZENncE8zMDdhWE56ZFdGdVkyVnlkV3hsYzN0OU93In0.";
    const HASH: &str = "pveaspNJXn1BbCk2ADPH4xhekUS-UQcgOXYXhh9YAmE";

    const TEST_KEY: &str = include_str!("testdata/policy-signer.key.pem");
    const TEST_CERT: &str = include_str!("testdata/policy-signer.cert.pem");

    #[test]
    fn worked_example_is_reproduced_exactly() {
        assert_eq!(policy_payload(POLICY), PAYLOAD);
        assert_eq!(unsigned_policy_jws(POLICY), PUT_BODY);
        assert_eq!(policy_jws(POLICY, None).unwrap(), PUT_BODY);
        assert_eq!(policy_token_hash(PUT_BODY), HASH);
        assert_eq!(
            decode_policy_jws(PUT_BODY).unwrap().as_deref(),
            Some(POLICY)
        );
        assert_eq!(reset_jws(None).unwrap(), "eyJhbGciOiJub25lIn0..");
        assert_eq!(decode_policy_jws(UNSIGNED_RESET_JWS).unwrap(), None);
    }

    #[test]
    fn decodes_the_spec_get_policy_example() {
        // x-ms-policy of Get_Policy.json (2022-08-01), padded standard base64 inside
        let jws = "eyJhbGciOiJub25lIn0.eyJBdHRlc3RhdGlvblBvbGljeSI6ICJEUXAyWlhKemFXOXVQVEV1TURzTkNtRjFkR2h2Y21sNllYUnBiMjV5ZFd4bGN5QjdJRDAtSUhCbGNtMXBkQ2dwT3lCOU93MEthWE56ZFdGdVkyVnlkV3hsY3lCN2ZUcyJ9.";
        assert_eq!(
            decode_policy_jws(jws).unwrap().as_deref(),
            Some("\r\nversion=1.0;\r\nauthorizationrules { => permit(); };\r\nissuancerules {};")
        );
        assert_eq!(decode_policy_jws("a.b"), Err(PolicyDecodeError::NotCompact));
        assert_eq!(
            decode_policy_jws("a.!!!.c"),
            Err(PolicyDecodeError::PayloadEncoding)
        );
        assert_eq!(
            decode_policy_jws("a.e30.c"),
            Err(PolicyDecodeError::NoPolicy)
        );
    }

    #[test]
    fn normalisation() {
        let a =
            "\r\nversion=1.0;\r\nauthorizationrules { => permit(); };  \r\nissuancerules {};\r\n";
        let b = "version=1.0;\nauthorizationrules { => permit(); };\nissuancerules {};";
        assert_eq!(normalize_policy(a), normalize_policy(b));
        let p = MaaPolicy {
            policy_jws: None,
            policy: Some(a.into()),
            signed: false,
        };
        assert!(p.matches(b));
        assert!(!p.matches("version=1.0;"));
    }

    #[test]
    fn signed_jws_verifies_with_its_certificate() {
        let signer = PolicySigner::from_pem(TEST_KEY.as_bytes(), TEST_CERT.as_bytes()).unwrap();
        assert!(!format!("{signer:?}").contains("BEGIN"));
        let jws = policy_jws(POLICY, Some(&signer)).unwrap();
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&b64_decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["x5c"].as_array().unwrap().len(), 1);
        // the payload is the same exact bytes as the unsigned form
        assert_eq!(parts[1], PUT_BODY.split('.').nth(1).unwrap());
        assert_eq!(decode_policy_jws(&jws).unwrap().as_deref(), Some(POLICY));
        // verifiable through the x5c certificate, as MAA does
        let jwt = parse_jwt(&jws).unwrap();
        let keys = signer.certificates();
        assert_eq!(verify_jwt(&keys, &jwt), Ok(true));
        // a tampered payload does not verify
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(b"{}"),
            parts[2]
        );
        let jwt = parse_jwt(&tampered).unwrap();
        assert!(verify_jwt(&keys, &jwt).is_err());
        // reset: signed, empty payload
        let reset = reset_jws(Some(&signer)).unwrap();
        assert!(reset.contains(".."));
        assert_eq!(decode_policy_jws(&reset).unwrap(), None);
    }

    #[test]
    fn signer_rejects_bad_material() {
        assert!(PolicySigner::from_pem(b"nope", TEST_CERT.as_bytes()).is_err());
        assert!(PolicySigner::from_pem(TEST_KEY.as_bytes(), b"").is_err());
        let err = PolicySigner::from_pem(TEST_KEY.as_bytes(), b"junk").unwrap_err();
        assert!(!err.to_string().contains("PRIVATE"));
    }

    #[test]
    fn jwt_checks() {
        let signer = PolicySigner::from_pem(TEST_KEY.as_bytes(), TEST_CERT.as_bytes()).unwrap();
        let instance = Url::parse("https://prov.eus.attest.azure.net").unwrap();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body = |claims: Value| URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
        let make = |claims: Value| {
            // the signer's header has no kid; MAA's tokens have one, which is matched when present
            parse_jwt(&signer.sign(&body(claims)).unwrap()).unwrap()
        };
        let ok =
            make(serde_json::json!({"iss": "https://prov.eus.attest.azure.net/", "exp": now + 60}));
        assert!(check_claims(&ok, &instance, SystemTime::now()).is_ok());
        let expired = make(serde_json::json!({"exp": now - 3600}));
        assert!(check_claims(&expired, &instance, SystemTime::now()).is_err());
        let other = make(serde_json::json!({"iss": "https://evil.example"}));
        assert!(check_claims(&other, &instance, SystemTime::now()).is_err());
        // alg none is never accepted in a response
        let none = parse_jwt(PUT_BODY).unwrap();
        assert!(verify_jwt(&signer.certificates(), &none).is_err());
        // a kid that no key has
        let mut with_kid = make(serde_json::json!({}));
        with_kid.kid = Some("unknown".into());
        let keys = JsonWebKeySet {
            keys: vec![JsonWebKey {
                kid: Some("k1".into()),
                ..signer.certificates().keys[0].clone()
            }],
        };
        assert_eq!(verify_jwt(&keys, &with_kid), Ok(false));
    }

    #[test]
    fn huge_exp_is_not_an_overflow() {
        // Regression (property tests, issue 11): `exp + leeway` overflowed for exp near u64::MAX.
        let token = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{}}}"#, u64::MAX).as_bytes())
        );
        let jwt = parse_jwt(&token).unwrap();
        let instance = Url::parse("https://prov.eus.attest.azure.net").unwrap();
        assert_eq!(check_claims(&jwt, &instance, SystemTime::now()), Ok(()));
    }

    #[test]
    fn urls() {
        let i = instance_url("https://127.0.0.1:8443/maa/prov1/").unwrap();
        assert_eq!(
            endpoint(&i, &["policies", "Tpm:reset"]).unwrap().as_str(),
            "https://127.0.0.1:8443/maa/prov1/policies/Tpm:reset"
        );
        let i = instance_url("https://prov.eus.attest.azure.net").unwrap();
        assert_eq!(
            endpoint(&i, &["certs"]).unwrap().as_str(),
            "https://prov.eus.attest.azure.net/certs"
        );
        assert!(instance_url("http://prov.attest.azure.net").is_err());
        assert!(instance_url("https://x/?a=b").is_err());
        assert!(check_attestation_type("Tpm").is_ok());
        assert!(check_attestation_type("../x").is_err());
    }
}
