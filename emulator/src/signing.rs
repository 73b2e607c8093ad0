//! Policy signing for tests: RSA keys with X.509 certificates, and signed policy JWSs of the
//! shape MAA expects from Isolated providers (`alg` RS256, `x5c` chain, payload
//! `{"AttestationPolicy": "<base64url>"}`).

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::PrivatePkcs8KeyDer;
use serde_json::{Value, json};

use crate::Error;
use crate::jwt::{b64std, b64url};
use crate::keys::{RsaKey, cached_key};

/// An RSA key with a certificate (and the chain up to a root), able to sign policies.
#[derive(Debug, Clone)]
pub struct PolicySigner {
    key: Arc<RsaKey>,
    /// This signer's certificate first, then its issuers.
    chain: Vec<Vec<u8>>,
    name: String,
}

fn rcgen_key(key: &RsaKey) -> Result<KeyPair, Error> {
    let pkcs8 = PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec());
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(
        &pkcs8,
        &rcgen::PKCS_RSA_SHA256,
    )?)
}

fn ca_params(name: &str) -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

impl PolicySigner {
    /// A self-signed (root) signer. Keys derive from `seed` (cached per process; RSA key
    /// generation is slow in debug builds).
    pub fn generate(seed: u64, common_name: &str) -> Result<Self, Error> {
        let key = cached_key(seed, 1000, 2048)?;
        let cert = ca_params(common_name)?.self_signed(&rcgen_key(&key)?)?;
        Ok(Self {
            key,
            chain: vec![cert.der().to_vec()],
            name: common_name.to_owned(),
        })
    }

    /// A signer whose certificate is issued by `self` (chain: new cert, then `self`'s chain).
    pub fn issue(&self, seed: u64, common_name: &str) -> Result<Self, Error> {
        let key = cached_key(seed, 1001, 2048)?;
        let issuer = Issuer::new(ca_params(&self.name)?, rcgen_key(&self.key)?);
        let cert = ca_params(common_name)?.signed_by(&rcgen_key(&key)?, &issuer)?;
        let mut chain = vec![cert.der().to_vec()];
        chain.extend(self.chain.iter().cloned());
        Ok(Self {
            key,
            chain,
            name: common_name.to_owned(),
        })
    }

    /// A self-signed signer that reuses this signer's key with a fresh certificate (so it is
    /// trusted by nobody who trusts `self`'s issuers).
    pub fn self_signed_twin(&self, common_name: &str) -> Result<Self, Error> {
        let cert = ca_params(common_name)?.self_signed(&rcgen_key(&self.key)?)?;
        Ok(Self {
            key: Arc::clone(&self.key),
            chain: vec![cert.der().to_vec()],
            name: common_name.to_owned(),
        })
    }

    /// Base64 (standard) DER of this signer's certificate.
    pub fn certificate_b64(&self) -> String {
        self.chain.first().map(|c| b64std(c)).unwrap_or_default()
    }

    /// `policySigningCertificates` JWKS trusting this signer's certificate.
    pub fn policy_signing_certificates(&self) -> Value {
        json!({ "keys": [{ "kty": "RSA", "use": "sig", "x5c": [self.certificate_b64()] }] })
    }

    /// A signed JWS with `payload` bytes (x5c = the whole chain).
    pub fn sign(&self, payload: &[u8]) -> Result<String, Error> {
        let x5c: Vec<String> = self.chain.iter().map(|c| b64std(c)).collect();
        let header = json!({ "alg": "RS256", "x5c": x5c });
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(payload)
        );
        let sig = self.key.sign_rs256(input.as_bytes())?;
        Ok(format!("{input}.{}", b64url(&sig)))
    }

    /// A signed policy JWS for PUT `/policies/{type}`.
    pub fn signed_policy(&self, policy_text: &str) -> Result<String, Error> {
        let payload = format!(
            "{{\"AttestationPolicy\": \"{}\"}}",
            b64url(policy_text.as_bytes())
        );
        self.sign(payload.as_bytes())
    }

    /// A signed JWS with an empty payload for POST `/policies/{type}:reset`.
    pub fn signed_reset(&self) -> Result<String, Error> {
        self.sign(b"")
    }
}

/// The unsigned JWS (`alg: none`) for a policy text, byte-for-byte as the Azure SDKs build it.
pub fn unsigned_policy(policy_text: &str) -> String {
    crate::maa::unsigned_policy_jws(policy_text)
}

/// The unsigned reset body `eyJhbGciOiJub25lIn0..`.
pub const UNSIGNED_RESET: &str = "eyJhbGciOiJub25lIn0..";
