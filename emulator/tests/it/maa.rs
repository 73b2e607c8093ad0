//! MAA data plane: policy set/get/reset, JWKS, OpenID metadata, signed policies.

use azure_emulator::signing::{PolicySigner, UNSIGNED_RESET, unsigned_policy};
use azure_emulator::{Emulator, ProviderSpec};
use base64::Engine as _;
use serde_json::Value;

use crate::common::*;

const POLICY: &str = "version=1.0;authorizationrules{=> permit();};issuancerules{};";
const EXPECTED_BODY: &str = "eyJhbGciOiJub25lIn0.eyJBdHRlc3RhdGlvblBvbGljeSI6ICJkbVZ5YzJsdmJqMHhMakE3WVhWMGFHOXlhWHBoZEdsdmJuSjFiR1Z6ZXowLUlIQmxjbTFwZENncE8zMDdhWE56ZFdGdVkyVnlkV3hsYzN0OU93In0.";
const EXPECTED_HASH: &str = "pveaspNJXn1BbCk2ADPH4xhekUS-UQcgOXYXhh9YAmE";

fn b64url(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .expect("b64url")
}

/// Verifies an MAA response token with the provider's /certs and returns its claims.
async fn verified(http: &reqwest::Client, attest_uri: &str, token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&b64url(parts[0])).expect("header");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["jku"], format!("{attest_uri}/certs"));
    let jwks: Value = http
        .get(format!("{attest_uri}/certs"))
        .send()
        .await
        .expect("certs")
        .json()
        .await
        .expect("json");
    let key = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid in jwks");
    assert!(key["x5c"][0].is_string());
    let n = b64url(key["n"].as_str().expect("n"));
    let e = b64url(key["e"].as_str().expect("e"));
    ring::signature::RsaPublicKeyComponents { n: &n, e: &e }
        .verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64url(parts[2]),
        )
        .expect("token signature verifies with /certs");
    let claims: Value = serde_json::from_slice(&b64url(parts[1])).expect("claims");
    assert_eq!(claims["iss"], attest_uri);
    claims
}

fn provider(emu: &Emulator, name: &str, certs: Vec<String>) -> String {
    emu.put_attestation_provider(&ProviderSpec {
        id: provider_id(name),
        location: "eastus".into(),
        tags: std::collections::BTreeMap::default(),
        policy_signing_certificates: certs,
    })
    .expect("provider");
    emu.attest_uri(name)
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: &str,
) -> (u16, Value) {
    let r = http
        .request(method, url)
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body(body.to_owned())
        .send()
        .await
        .expect("send");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn policy_set_get_reset_with_hash() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, MAA).await;
    let uri = provider(&emu, "aadprov", vec![]);
    let policy_url = format!("{uri}/policies/AzureGuest?api-version=2022-08-01");

    let (s, b) = get_json(&http, &policy_url, &t).await;
    assert_eq!(s, 200);
    let c = verified(&http, &uri, b["token"].as_str().expect("token")).await;
    assert_eq!(
        c["x-ms-policy"],
        unsigned_policy(azure_emulator::api_versions::DEFAULT_POLICY),
        "default policy before any PUT"
    );

    assert_eq!(unsigned_policy(POLICY), EXPECTED_BODY);
    let (s, b) = send(&http, reqwest::Method::PUT, &policy_url, &t, EXPECTED_BODY).await;
    assert_eq!(s, 200, "{b}");
    let c = verified(&http, &uri, b["token"].as_str().expect("token")).await;
    assert_eq!(c["x-ms-policy-result"], "Updated");
    assert_eq!(c["x-ms-policy-token-hash"], EXPECTED_HASH);
    assert!(c.get("x-ms-policy-signer").is_none());

    let (_, b) = get_json(&http, &policy_url, &t).await;
    let c = verified(&http, &uri, b["token"].as_str().expect("token")).await;
    assert_eq!(c["x-ms-policy"], EXPECTED_BODY);
    assert_eq!(
        emu.policy("aadprov", "AzureGuest").expect("policy").text,
        POLICY
    );
    // Types are per type.
    assert!(emu.policy("aadprov", "Tpm").expect("policy").is_default);

    let (s, b) = send(
        &http,
        reqwest::Method::POST,
        &format!("{uri}/policies/AzureGuest:reset?api-version=2022-08-01"),
        &t,
        UNSIGNED_RESET,
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let c = verified(&http, &uri, b["token"].as_str().expect("token")).await;
    assert_eq!(c["x-ms-policy-result"], "Removed");
    assert!(
        emu.policy("aadprov", "AzureGuest")
            .expect("policy")
            .is_default
    );

    // Contract breaks.
    let (s, b) = send(
        &http,
        reqwest::Method::PUT,
        &policy_url,
        &t,
        &unsigned_policy("version=1.0;authorizationrules{=> permit();};"),
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("InvalidParameter")),
        "invalid policy text: {b}"
    );
    let (s, _) = send(&http, reqwest::Method::PUT, &policy_url, &t, "not a jws").await;
    assert_eq!(s, 400);
    let r = http
        .put(&policy_url)
        .bearer_auth(&t)
        .header("content-type", "application/json")
        .body(format!("\"{EXPECTED_BODY}\""))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 415);
    let (s, b) = send(
        &http,
        reqwest::Method::PUT,
        &format!("{uri}/policies/AzureGuest"),
        &t,
        EXPECTED_BODY,
    )
    .await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("MissingApiVersionParameter"))
    );
    let (s, _) = send(
        &http,
        reqwest::Method::PUT,
        &format!("{uri}/policies/AzureGuest?api-version=2019-01-01"),
        &t,
        EXPECTED_BODY,
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = send(
        &http,
        reqwest::Method::PUT,
        &format!("{uri}/policies/Bogus?api-version=2022-08-01"),
        &t,
        EXPECTED_BODY,
    )
    .await;
    assert_eq!(s, 400);
    for v in ["2020-10-01", "2025-06-01"] {
        let (s, _) = get_json(&http, &format!("{uri}/policies/Tpm?api-version={v}"), &t).await;
        assert_eq!(s, 200, "{v}");
    }

    let oidc: Value = http
        .get(format!("{uri}/.well-known/openid-configuration"))
        .send()
        .await
        .expect("oidc")
        .json()
        .await
        .expect("json");
    assert_eq!(oidc["jwks_uri"], format!("{uri}/certs"));
    assert_eq!(oidc["issuer"], uri);
    let r = http
        .get(format!(
            "{}/policies/Tpm?api-version=2022-08-01",
            emu.attest_uri("missing")
        ))
        .bearer_auth(&t)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
    emu.shutdown().await;
}

#[tokio::test]
async fn isolated_provider_requires_verified_signed_policies() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, MAA).await;
    let root = PolicySigner::generate(7, "policy root").expect("root");
    let leaf = root.issue(7, "policy signer").expect("leaf");
    let uri = provider(&emu, "isoprov", vec![root.certificate_b64()]);
    let policy_url = format!("{uri}/policies/AzureGuest?api-version=2022-08-01");

    let (s, b) = send(&http, reqwest::Method::PUT, &policy_url, &t, EXPECTED_BODY).await;
    assert_eq!(s, 400, "unsigned refused in Isolated mode: {b}");

    let signed = leaf.signed_policy(POLICY).expect("sign");
    let (s, b) = send(&http, reqwest::Method::PUT, &policy_url, &t, &signed).await;
    assert_eq!(s, 200, "{b}");
    let c = verified(&http, &uri, b["token"].as_str().expect("token")).await;
    assert_eq!(c["x-ms-policy-result"], "Updated");
    assert_eq!(c["x-ms-policy-signer"]["x5c"][0], leaf.certificate_b64());
    let expected_hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        ring::digest::digest(&ring::digest::SHA256, signed.as_bytes()),
    );
    assert_eq!(c["x-ms-policy-token-hash"], expected_hash);
    assert!(emu.policy("isoprov", "AzureGuest").expect("policy").signed);

    // A signature that does not verify.
    let mut forged = signed.clone();
    let cut = forged.rfind('.').expect("dot");
    forged.replace_range(cut + 1..cut + 5, "AAAA");
    let (s, _) = send(&http, reqwest::Method::PUT, &policy_url, &t, &forged).await;
    assert_eq!(s, 400, "bad signature");
    // A valid signature from a certificate that does not chain to the provider's roots.
    let stranger = leaf.self_signed_twin("stranger").expect("twin");
    let (s, _) = send(
        &http,
        reqwest::Method::PUT,
        &policy_url,
        &t,
        &stranger.signed_policy(POLICY).expect("sign"),
    )
    .await;
    assert_eq!(s, 400, "untrusted signer");

    // Reset must be signed too.
    let (s, _) = send(
        &http,
        reqwest::Method::POST,
        &format!("{uri}/policies/AzureGuest:reset?api-version=2022-08-01"),
        &t,
        UNSIGNED_RESET,
    )
    .await;
    assert_eq!(s, 400);
    let (s, b) = send(
        &http,
        reqwest::Method::POST,
        &format!("{uri}/policies/AzureGuest%3Areset?api-version=2022-08-01"),
        &t,
        &leaf.signed_reset().expect("reset"),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    emu.shutdown().await;
}
