//! Entra, IMDS and bearer-token checks.

use std::time::Duration;

use azure_emulator::{EmulatorConfig, FederatedCredential};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::*;

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A projected-service-account-shaped JWT (the emulator checks claims, not the issuer signature).
fn assertion(aud: &str, exp_in: i64) -> String {
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs(),
    )
    .expect("i64");
    let header = json!({"alg": "RS256", "kid": "k"});
    let claims = json!({"aud": [aud], "iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:gao:operator", "iat": now - 10, "nbf": now - 10, "exp": now + exp_in});
    format!("{}.{}.c2ln", b64(&header), b64(&claims))
}

async fn token_request(
    emu: &azure_emulator::Emulator,
    http: &reqwest::Client,
    tenant: &str,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let resp = http
        .post(format!("{}/{tenant}/oauth2/v2.0/token", emu.endpoint()))
        .form(form)
        .send()
        .await
        .expect("send");
    (resp.status().as_u16(), resp.json().await.expect("json"))
}

#[tokio::test]
async fn client_secret_flow_and_rejections() {
    let emu = start().await;
    let http = client(&emu);
    let ok = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT),
        ("client_secret", SECRET),
        ("scope", "https://management.azure.com/.default"),
    ];
    let (status, body) = token_request(&emu, &http, TENANT, &ok).await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert!(
        body["expires_in"].is_u64(),
        "expires_in is a number: {body}"
    );
    let c = claims(body["access_token"].as_str().expect("token"));
    assert_eq!(c["aud"], "https://management.azure.com");
    assert_eq!(c["tid"], TENANT);
    assert_eq!(c["appid"], CLIENT);
    assert!(c["exp"].as_i64() > c["iat"].as_i64());
    assert!(
        c["oid"].is_string()
            && c["nbf"].is_i64()
            && c["iss"].as_str().is_some_and(|s| s.contains(TENANT))
    );

    let entra_shape = |body: &Value, code: u64, error: &str| {
        assert_eq!(body["error"], error, "{body}");
        assert_eq!(body["error_codes"], json!([code]), "{body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.starts_with(&format!("AADSTS{code}:"))),
            "{body}"
        );
        for k in ["timestamp", "trace_id", "correlation_id"] {
            assert!(body[k].is_string(), "{k} in {body}");
        }
    };
    let (s, b) = token_request(
        &emu,
        &http,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "nope"),
            ("client_secret", SECRET),
            ("scope", "https://management.azure.com/.default"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    entra_shape(&b, 700_016, "unauthorized_client");
    let (s, b) = token_request(
        &emu,
        &http,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", "wrong"),
            ("scope", "https://management.azure.com/.default"),
        ],
    )
    .await;
    assert_eq!(s, 401);
    entra_shape(&b, 7_000_215, "invalid_client");
    let (s, b) = token_request(
        &emu,
        &http,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("scope", "https://management.azure.com/user_impersonation"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["error"], "invalid_scope");
    let (s, b) = token_request(
        &emu,
        &http,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("scope", "a/.default b/.default"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    entra_shape(&b, 70_011, "invalid_scope");
    let (s, b) = token_request(&emu, &http, "other-tenant", &ok).await;
    assert_eq!(s, 400);
    entra_shape(&b, 90_002, "invalid_request");
    // Resource with a trailing slash ("//.default") is accepted like Azure does.
    let (s, b) = token_request(
        &emu,
        &http,
        TENANT,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("scope", "https://attest.azure.net//.default"),
        ],
    )
    .await;
    assert_eq!(s, 200, "{b}");
    emu.shutdown().await;
}

#[tokio::test]
async fn federated_assertion_flow() {
    let emu = start().await;
    emu.add_federated_credential(
        TENANT,
        "fed-client",
        FederatedCredential {
            issuer: None,
            subject: Some("system:serviceaccount:gao:operator".into()),
        },
    );
    let http = client(&emu);
    let form = |a: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", "fed-client".to_owned()),
            ("scope", "https://management.azure.com/.default".to_owned()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("client_assertion", a.to_owned()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = format!("{}/{TENANT}/oauth2/v2.0/token", emu.endpoint());
        async move {
            let r = http.post(url).form(&f).send().await.expect("send");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let (s, b) = send(form(&assertion("api://AzureADTokenExchange", 600))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        claims(b["access_token"].as_str().expect("token"))["appidacr"],
        "2"
    );
    let (s, b) = send(form(&assertion("api://AzureADTokenExchange", -60))).await;
    assert_eq!(
        (s, b["error_codes"][0].as_u64()),
        (401, Some(700_024)),
        "{b}"
    );
    let (s, b) = send(form(&assertion("https://kubernetes.default.svc", 600))).await;
    assert_eq!(
        (s, b["error_codes"][0].as_u64()),
        (401, Some(700_212)),
        "{b}"
    );
    let (s, b) = send(form("not-a-jwt")).await;
    assert_eq!(s, 401, "{b}");
    emu.shutdown().await;
}

#[tokio::test]
async fn imds_managed_identity() {
    let emu = start().await;
    let http = client(&emu);
    let url = format!(
        "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/",
        emu.endpoint()
    );
    let r = http
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400, "no identity enabled yet");
    assert_eq!(
        r.json::<Value>().await.expect("json")["error_description"],
        "Identity not found"
    );
    let mi = emu.enable_managed_identity(None);
    let r = http.get(&url).send().await.expect("send");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error_description"],
        "Required metadata header not specified"
    );
    let r = http
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.expect("json");
    for k in ["expires_in", "expires_on", "not_before"] {
        assert!(
            b[k].as_str().is_some_and(|v| v.parse::<u64>().is_ok()),
            "{k} is a numeric string: {b}"
        );
    }
    assert_eq!(b["resource"], "https://management.azure.com/");
    assert_eq!(b["client_id"], mi);
    let token = b["access_token"].as_str().expect("token");
    let (status, _) = get_json(&http, &url_for_list(&emu), token).await;
    assert_eq!(status, 200, "IMDS token works against ARM");
    emu.shutdown().await;
}

fn url_for_list(emu: &azure_emulator::Emulator) -> String {
    url(
        emu,
        &format!("/subscriptions/{SUB}/providers/Microsoft.Attestation/attestationProviders"),
        "2021-06-01",
    )
}

#[tokio::test]
async fn arm_and_maa_reject_bad_tokens() {
    let emu = start().await;
    let http = client(&emu);
    let list = url_for_list(&emu);
    let r = http.get(&list).send().await.expect("send");
    assert_eq!(r.status(), 401);
    let www = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        www.starts_with("Bearer authorization_uri=") && www.contains("error=\"invalid_token\""),
        "{www}"
    );
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "AuthenticationFailed"
    );

    let expired = emu.mint_token(TENANT, CLIENT, ARM, -120).expect("mint");
    let (s, b) = get_json(&http, &list, &expired).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("ExpiredAuthenticationToken")),
        "{b}"
    );

    let maa_token = token(&emu, &http, MAA).await;
    let (s, b) = get_json(&http, &list, &maa_token).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationTokenAudience")),
        "{b}"
    );

    let arm_token = token(&emu, &http, ARM).await;
    let mut tampered = arm_token.clone();
    tampered.pop();
    tampered.push(if arm_token.ends_with('A') { 'B' } else { 'A' });
    let (s, b) = get_json(&http, &list, &tampered).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("InvalidAuthenticationToken")),
        "{b}"
    );

    // MAA data plane rejects an ARM token.
    emu.put_attestation_provider(&azure_emulator::ProviderSpec {
        id: provider_id("tokprov"),
        location: "eastus".into(),
        tags: std::collections::BTreeMap::default(),
        policy_signing_certificates: vec![],
    })
    .expect("provider");
    let (s, b) = get_json(
        &http,
        &format!(
            "{}/policies/AzureGuest?api-version=2022-08-01",
            emu.attest_uri("tokprov")
        ),
        &arm_token,
    )
    .await;
    assert_eq!(s, 401, "{b}");
    let (s, _) = get_json(
        &http,
        &format!(
            "{}/policies/AzureGuest?api-version=2022-08-01",
            emu.attest_uri("tokprov")
        ),
        &maa_token,
    )
    .await;
    assert_eq!(s, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn short_token_lifetime_expires() {
    let emu = start_with(EmulatorConfig {
        token_lifetime: Duration::from_secs(1),
        ..EmulatorConfig::default()
    })
    .await;
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;
    let (s, _) = get_json(&http, &url_for_list(&emu), &t).await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, b) = get_json(&http, &url_for_list(&emu), &t).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("ExpiredAuthenticationToken"))
    );
    emu.shutdown().await;
}
