//! Microsoft.Attestation/attestationProviders over ARM.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn provider_crud_lists_and_name_rules() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;
    let id = provider_id("myprov1");
    let u = url(&emu, &id, "2021-06-01");
    let body = json!({"location": "eastus", "tags": {"owner": "operator"}, "properties": {}});
    let r = http
        .put(&u)
        .bearer_auth(&t)
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 201);
    assert!(
        r.headers()
            .contains_key("x-ms-ratelimit-remaining-subscription-writes")
    );
    assert!(
        r.headers().contains_key("x-ms-request-id")
            && r.headers().contains_key("x-ms-correlation-request-id")
    );
    let created: Value = r.json().await.expect("json");
    assert_eq!(created["id"], id);
    assert_eq!(
        created["type"],
        "Microsoft.Attestation/attestationProviders"
    );
    assert_eq!(
        created["properties"]["attestUri"],
        emu.attest_uri("myprov1")
    );
    assert_eq!(created["properties"]["trustModel"], "AAD");
    assert_eq!(created["properties"]["status"], "Ready");
    assert_eq!(created["properties"]["publicNetworkAccess"], "Enabled");
    assert_eq!(created["tags"]["owner"], "operator");

    let r = http
        .put(&u)
        .bearer_auth(&t)
        .json(&body)
        .send()
        .await
        .expect("put again");
    assert_eq!(r.status(), 200, "update is 200");
    // Case-insensitive ids.
    let (s, got) = get_json(
        &http,
        &url(
            &emu,
            &id.to_ascii_uppercase()
                .replace("/SUBSCRIPTIONS/", "/subscriptions/"),
            "2021-06-01",
        ),
        &t,
    )
    .await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["name"], "myprov1");

    let r = http
        .patch(&u)
        .bearer_auth(&t)
        .json(&json!({"tags": {"a": "b"}, "properties": {"publicNetworkAccess": "Disabled"}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let patched: Value = r.json().await.expect("json");
    assert_eq!(patched["tags"], json!({"a": "b"}));
    assert_eq!(patched["properties"]["publicNetworkAccess"], "Disabled");

    let (s, list) = get_json(&http, &url(&emu, &format!("/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Attestation/attestationProviders"), "2021-06-01"), &t).await;
    assert_eq!((s, list["value"].as_array().map(Vec::len)), (200, Some(1)));
    let (s, list) = get_json(
        &http,
        &url(
            &emu,
            &format!("/subscriptions/{SUB}/providers/Microsoft.Attestation/attestationProviders"),
            "2021-06-01",
        ),
        &t,
    )
    .await;
    assert_eq!((s, list["value"].as_array().map(Vec::len)), (200, Some(1)));

    let r = http
        .delete(&u)
        .bearer_auth(&t)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 200);
    let r = http
        .delete(&u)
        .bearer_auth(&t)
        .send()
        .await
        .expect("delete again");
    assert_eq!(r.status(), 204);
    let (s, b) = get_json(&http, &u, &t).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("ResourceNotFound"))
    );

    for bad in ["ab", "bad_name", "x234567890123456789012345"] {
        let r = http
            .put(url(&emu, &provider_id(bad), "2021-06-01"))
            .bearer_auth(&t)
            .json(&body)
            .send()
            .await
            .expect("put");
        assert_eq!(r.status(), 400, "{bad}");
    }
    let r = http
        .put(&u)
        .bearer_auth(&t)
        .json(&json!({"properties": {}}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "LocationRequired"
    );
    let r = http
        .put(&u)
        .bearer_auth(&t)
        .json(&json!({"location": "eastus"}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "InvalidRequestContent"
    );
    let r = http
        .put(&u)
        .bearer_auth(&t)
        .json(&json!({"location": "eastus", "properties": {"publicNetworkAccess": "Sometimes"}}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400, "unknown enum value");
    let r = http
        .put(&u)
        .bearer_auth(&t)
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 415);
    emu.shutdown().await;
}

#[tokio::test]
async fn api_version_is_required_and_checked() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;
    let id = provider_id("myprov2");
    let r = http
        .get(format!("{}{id}", emu.endpoint()))
        .bearer_auth(&t)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "MissingApiVersionParameter"
    );
    let (s, b) = get_json(&http, &url(&emu, &id, "2019-01-01"), &t).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("NoRegisteredProviderFound")),
        "{b}"
    );
    let (s, b) = get_json(&http, &url(&emu, &id, "latest"), &t).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (400, Some("InvalidApiVersionParameter")),
        "{b}"
    );
    let (s, _) = get_json(&http, &url(&emu, &id, "2020-10-01"), &t).await;
    assert_eq!(s, 404, "older stable version accepted");
    emu.shutdown().await;
}

#[tokio::test]
async fn isolated_provider_and_deleted_by_accident() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;
    let signer =
        azure_emulator::signing::PolicySigner::generate(42, "policy root").expect("signer");
    let id = provider_id("isoprov");
    let body = json!({"location": "eastus", "properties": {"policySigningCertificates": signer.policy_signing_certificates()}});
    let r = http
        .put(url(&emu, &id, "2021-06-01"))
        .bearer_auth(&t)
        .json(&body)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<Value>().await.expect("json")["properties"]["trustModel"],
        "Isolated"
    );
    let bad = json!({"location": "eastus", "properties": {"policySigningCertificates": {"keys": [{"kty": "RSA", "x5c": ["bm90IGEgY2VydA=="]}]}}});
    let r = http
        .put(url(&emu, &provider_id("isoprov2"), "2021-06-01"))
        .bearer_auth(&t)
        .json(&bad)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), 400);
    assert!(emu.delete_attestation_provider(&id));
    let (s, _) = get_json(&http, &url(&emu, &id, "2021-06-01"), &t).await;
    assert_eq!(s, 404);
    emu.shutdown().await;
}
