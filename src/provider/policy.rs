//! The policy comparison and the material that goes with it (pure): hashes, the comparison of the
//! desired text with the effective policy MAA reports, and the policy signing certificates of an
//! Isolated provider. The JWS itself is built by the Azure client ([`crate::azure::policy_jws`]);
//! the tests here pin what the operator sends.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::azure::{JsonWebKey, JsonWebKeySet, MaaPolicy, normalize_policy};

/// SHA-256 of `text` as lower-case hex (`status.appliedPolicyHash`).
pub fn sha256_hex(text: &str) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            // Writing into a String cannot fail.
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// How the effective policy compares with the desired one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// Equal after normalisation (line endings, trailing whitespace).
    InSync,
    /// Different; `effective_digest` identifies what Azure holds, so that one drift is reported
    /// once however many reconciles find it.
    Drifted {
        /// SHA-256 hex of the normalised effective text ("none" when MAA holds no policy).
        effective_digest: String,
    },
}

/// Compares the desired text with what MAA reports. Whitespace at line ends and line endings do not
/// count (MAA may keep the text byte for byte or not: CONTRACTS.md §2 leaves it open).
pub fn compare(desired: &str, effective: &MaaPolicy) -> Comparison {
    if effective.matches(desired) {
        return Comparison::InSync;
    }
    Comparison::Drifted {
        effective_digest: effective
            .policy
            .as_deref()
            .map_or_else(|| "none".to_owned(), |p| sha256_hex(&normalize_policy(p))),
    }
}

/// Why the policy signing certificates could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificatesError {
    /// Not PEM.
    #[error("the policy signing certificates are not PEM certificates")]
    NotPem,
    /// No certificate in the PEM.
    #[error("no certificate found in the policy signing certificates")]
    Empty,
}

/// The `policySigningCertificates` key set of a new Isolated provider from PEM certificates: one
/// RSA signing key per certificate, each carrying its certificate in `x5c`.
pub fn signing_certificates(pem: &[u8]) -> Result<JsonWebKeySet, CertificatesError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CertificatesError::NotPem)?;
    if certs.is_empty() {
        return Err(CertificatesError::Empty);
    }
    Ok(JsonWebKeySet {
        keys: certs
            .iter()
            .map(|c| JsonWebKey {
                kty: "RSA".to_owned(),
                key_use: Some("sig".to_owned()),
                x5c: vec![STANDARD.encode(c.as_ref())],
                ..JsonWebKey::default()
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::{
        PolicySigner, decode_policy_jws, policy_jws, policy_payload, policy_token_hash,
    };
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    const KEY: &str = include_str!("../azure/testdata/policy-signer.key.pem");
    const CERT: &str = include_str!("../azure/testdata/policy-signer.cert.pem");
    /// CONTRACTS.md §2, worked example.
    const POLICY: &str = "version=1.0;authorizationrules{=> permit();};issuancerules{};";

    fn effective(text: Option<&str>) -> MaaPolicy {
        MaaPolicy {
            policy_jws: text.map(crate::azure::unsigned_policy_jws),
            policy: text.map(str::to_owned),
            signed: false,
        }
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha256_hex(POLICY).len(), 64);
    }

    #[test]
    fn comparison_ignores_line_endings_and_trailing_whitespace() {
        let desired = "version=1.0;\nauthorizationrules { => permit(); };\nissuancerules {};\n";
        let crlf =
            "\r\nversion=1.0;\r\nauthorizationrules { => permit(); };   \r\nissuancerules {};";
        assert_eq!(compare(desired, &effective(Some(crlf))), Comparison::InSync);
        assert_eq!(
            compare(desired, &effective(Some(&desired.replace('\n', "\r")))),
            Comparison::InSync
        );
        // a change inside a line is a drift, and the same drift has the same digest
        let other = "version=1.0;\nauthorizationrules { => deny(); };\nissuancerules {};";
        let a = compare(desired, &effective(Some(other)));
        let b = compare(desired, &effective(Some(&other.replace('\n', "\r\n"))));
        assert!(matches!(a, Comparison::Drifted { .. }));
        assert_eq!(a, b);
        // the text as a whole is trimmed, but indentation inside it counts (the client's
        // normalize_policy: only what editors and transports change is ignored)
        assert!(matches!(
            compare(
                desired,
                &effective(Some(
                    "  version=1.0;\nauthorizationrules { => permit(); };\nissuancerules {};"
                ))
            ),
            Comparison::InSync
        ));
        assert!(matches!(
            compare(
                desired,
                &effective(Some(
                    "version=1.0;\n  authorizationrules { => permit(); };\nissuancerules {};"
                ))
            ),
            Comparison::Drifted { .. }
        ));
        assert_eq!(
            compare(desired, &effective(None)),
            Comparison::Drifted {
                effective_digest: "none".into()
            }
        );
    }

    #[test]
    fn the_jws_sent_carries_exactly_the_desired_text() {
        // unsigned (AAD): CONTRACTS.md §2's worked example, byte for byte
        let jws = policy_jws(POLICY, None).unwrap();
        assert_eq!(
            jws,
            "eyJhbGciOiJub25lIn0.eyJBdHRlc3RhdGlvblBvbGljeSI6ICJkbVZ5YzJsdmJqMHhMakE3WVhWMGFHOXlhWHBoZEdsdmJuSjFiR1Z6ZXowLUlIQmxjbTFwZENncE8zMDdhWE56ZFdGdVkyVnlkV3hsYzN0OU93In0."
        );
        assert_eq!(
            policy_token_hash(&jws),
            "pveaspNJXn1BbCk2ADPH4xhekUS-UQcgOXYXhh9YAmE"
        );
        assert_eq!(decode_policy_jws(&jws).unwrap().as_deref(), Some(POLICY));
        // CRLF text travels untouched: the comparison normalises, the payload does not
        let crlf = POLICY.replace(';', ";\r\n");
        assert_eq!(
            decode_policy_jws(&policy_jws(&crlf, None).unwrap())
                .unwrap()
                .as_deref(),
            Some(crlf.as_str())
        );
        // signed (Isolated): RS256 with the chain in x5c, the same payload bytes
        let key = PolicySigner::from_pem(KEY.as_bytes(), CERT.as_bytes()).unwrap();
        let signed = policy_jws(POLICY, Some(&key)).unwrap();
        let parts: Vec<&str> = signed.split('.').collect();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(
            header["x5c"][0],
            signing_certificates(CERT.as_bytes()).unwrap().keys[0].x5c[0]
        );
        assert_eq!(
            URL_SAFE_NO_PAD.decode(parts[1]).unwrap(),
            policy_payload(POLICY).into_bytes()
        );
        assert_eq!(decode_policy_jws(&signed).unwrap().as_deref(), Some(POLICY));
        // RS256 (PKCS#1 v1.5) is deterministic: the same text gives the same token hash
        assert_eq!(
            policy_token_hash(&signed),
            policy_token_hash(&policy_jws(POLICY, Some(&key)).unwrap())
        );
    }

    #[test]
    fn signing_certificates_from_pem() {
        let jwks = signing_certificates(CERT.as_bytes()).unwrap();
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(jwks.keys[0].kty, "RSA");
        assert_eq!(jwks.keys[0].key_use.as_deref(), Some("sig"));
        // the same key set the Azure client derives from a signer
        let signer = PolicySigner::from_pem(KEY.as_bytes(), CERT.as_bytes()).unwrap();
        assert_eq!(jwks, signer.certificates());
        let two = format!("{CERT}\n{CERT}");
        assert_eq!(signing_certificates(two.as_bytes()).unwrap().keys.len(), 2);
        assert_eq!(
            signing_certificates(b"no pem here"),
            Err(CertificatesError::Empty)
        );
        assert_eq!(
            signing_certificates(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
            Err(CertificatesError::NotPem)
        );
    }
}
