//! JWS/JWT helpers: base64url, compact serialisation, RS256 signing and verification.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::Error;
use crate::keys::RsaKey;

/// Base64url without padding.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url, tolerating trailing `=` padding.
pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Standard base64 (with padding), as used by `x5c`.
pub(crate) fn b64std(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes standard base64.
pub(crate) fn b64std_decode(s: &str) -> Option<Vec<u8>> {
    STANDARD.decode(s.trim()).ok()
}

/// SHA-256 digest.
pub(crate) fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// Signs `claims` with `key` (RS256) and returns the compact JWT.
pub(crate) fn sign_jwt(key: &RsaKey, header: &Value, claims: &Value) -> Result<String, Error> {
    let h = b64url(header.to_string().as_bytes());
    let c = b64url(claims.to_string().as_bytes());
    let input = format!("{h}.{c}");
    let sig = key.sign_rs256(input.as_bytes())?;
    Ok(format!("{input}.{}", b64url(&sig)))
}

/// A compact JWS split into its parts.
#[derive(Debug)]
pub(crate) struct Jws {
    /// Decoded protected header.
    pub(crate) header: Value,
    /// Decoded payload bytes (may be empty).
    pub(crate) payload: Vec<u8>,
    /// `header.payload` exactly as received (the signing input).
    pub(crate) signing_input: String,
    /// Decoded signature (empty for `alg: none`).
    pub(crate) signature: Vec<u8>,
}

impl Jws {
    /// Parses a compact JWS. Returns a human-readable reason on failure.
    pub(crate) fn parse(token: &str) -> Result<Self, String> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("a JWS in compact serialization must have exactly three parts".into());
        };
        let header_bytes = b64url_decode(h).ok_or("the JWS header is not base64url")?;
        let header: Value =
            serde_json::from_slice(&header_bytes).map_err(|_| "the JWS header is not JSON")?;
        if !header.is_object() {
            return Err("the JWS header is not a JSON object".into());
        }
        let payload = b64url_decode(p).ok_or("the JWS payload is not base64url")?;
        let signature = b64url_decode(s).ok_or("the JWS signature is not base64url")?;
        Ok(Self {
            header,
            payload,
            signing_input: format!("{h}.{p}"),
            signature,
        })
    }

    /// The `alg` header value.
    pub(crate) fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    /// The payload parsed as JSON.
    pub(crate) fn claims(&self) -> Option<Value> {
        serde_json::from_slice(&self.payload).ok()
    }
}

/// Verifies an RS256 signature with a DER `RSAPublicKey`.
pub(crate) fn verify_rs256_der(public_key_der: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        public_key_der,
    )
    .verify(msg, sig)
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_unsigned_jws() {
        let jws = Jws::parse("eyJhbGciOiJub25lIn0.e30.").expect("parse");
        assert_eq!(jws.alg(), Some("none"));
        assert_eq!(jws.payload, b"{}");
        assert!(jws.signature.is_empty());
        assert!(Jws::parse("a.b").is_err());
        assert!(Jws::parse("!!.e30.").is_err());
    }

    #[test]
    fn b64url_roundtrip_tolerates_padding() {
        assert_eq!(b64url(b"ab"), "YWI");
        assert_eq!(b64url_decode("YWI=").as_deref(), Some(&b"ab"[..]));
    }
}
