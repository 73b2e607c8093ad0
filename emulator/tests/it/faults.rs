//! Scripted faults and the request log.

use std::time::Duration;

use azure_emulator::{Fault, FaultAction, PathMatch};
use serde_json::Value;

use crate::common::*;

#[tokio::test]
async fn throttle_fault_with_retry_after_and_request_log() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;
    let mid = seed_vm(&emu, "faultvm");
    let u = url(&emu, &mid, "2025-01-13");
    let id = emu
        .add_fault(Fault::on(Some("GET"), "/machines/faultvm", FaultAction::throttle(3)).times(1))
        .expect("fault");
    let r = http.get(&u).bearer_auth(&t).send().await.expect("send");
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("3")
    );
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["code"],
        "TooManyRequests"
    );
    let (s, _) = get_json(&http, &u, &t).await;
    assert_eq!(s, 200, "count exhausted");
    assert_eq!(emu.fault_hits(id), Some(1));

    emu.add_fault(Fault::on(None, "/machines/faultvm", FaultAction::throttle_until(3)).times(1))
        .expect("fault");
    let r = http.get(&u).bearer_auth(&t).send().await.expect("send");
    assert_eq!(r.status(), 429);
    let date = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let when = httpdate::parse_http_date(&date).expect("HTTP-date");
    assert!(
        when > std::time::SystemTime::now() + Duration::from_secs(2),
        "{date}"
    );

    emu.add_fault(Fault {
        method: Some("PUT".into()),
        path: PathMatch::Regex("/extensions/[a-z]+$".into()),
        skip: 0,
        count: Some(1),
        action: FaultAction::status(503, "ServiceUnavailable", "try later"),
    })
    .expect("fault");
    let r = http
        .put(url(
            &emu,
            &format!("{mid}/extensions/guestattestation"),
            "2025-01-13",
        ))
        .bearer_auth(&t)
        .json(&guest_attestation_body())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"]["message"],
        "try later"
    );

    let log = emu.requests();
    let throttled: Vec<_> = log.iter().filter(|r| r.status == Some(429)).collect();
    assert_eq!(throttled.len(), 2);
    assert_eq!(throttled[0].principal.as_deref(), Some(CLIENT));
    assert_eq!(throttled[0].api_version.as_deref(), Some("2025-01-13"));
    assert_eq!(throttled[0].subscription.as_deref(), Some(SUB));
    assert_eq!(throttled[0].fault.as_deref(), Some("status:429"));
    let token_req = log
        .iter()
        .find(|r| r.path.ends_with("/oauth2/v2.0/token"))
        .expect("token request logged");
    assert_eq!(token_req.principal.as_deref(), Some(CLIENT));
    assert!(log.iter().all(|r| !r.query.contains(SECRET)));
    emu.clear_requests();
    assert!(emu.requests().is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn reset_delay_truncate_and_malformed() {
    let emu = start().await;
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;
    let mid = seed_vm(&emu, "netvm");
    let u = url(&emu, &mid, "2025-01-13");

    emu.add_fault(Fault::on(None, "/machines/netvm", FaultAction::Reset).times(1))
        .expect("fault");
    let err = http
        .get(&u)
        .bearer_auth(&t)
        .send()
        .await
        .expect_err("connection reset");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );
    let (s, _) = get_json(&http, &u, &t).await;
    assert_eq!(s, 200, "next request on a new connection works");
    assert!(
        emu.requests()
            .iter()
            .any(|r| r.fault.as_deref() == Some("reset") && r.status.is_none())
    );

    emu.add_fault(
        Fault::on(
            None,
            "/machines/netvm",
            FaultAction::delay(Duration::from_millis(1500)),
        )
        .times(1),
    )
    .expect("fault");
    let err = http
        .get(&u)
        .bearer_auth(&t)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("timeout");
    assert!(err.is_timeout(), "{err:?}");

    emu.add_fault(Fault::on(None, "/machines/netvm", FaultAction::Truncate).times(1))
        .expect("fault");
    let r = http.get(&u).bearer_auth(&t).send().await.expect("send");
    assert_eq!(r.status(), 200);
    assert!(
        r.json::<Value>().await.is_err(),
        "truncated JSON does not parse"
    );

    emu.add_fault(Fault::on(None, "/machines/netvm", FaultAction::Malformed).times(1))
        .expect("fault");
    let r = http.get(&u).bearer_auth(&t).send().await.expect("send");
    assert!(
        r.json::<Value>().await.is_err(),
        "malformed JSON does not parse"
    );

    emu.add_fault(Fault::on(None, "/machines/netvm", FaultAction::Hang).times(1))
        .expect("fault");
    let err = http
        .get(&u)
        .bearer_auth(&t)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .expect_err("hang");
    assert!(err.is_timeout());
    emu.shutdown().await;
}

#[tokio::test]
async fn server_side_throttling() {
    let emu = start().await;
    emu.set_throttle_config(azure_emulator::ThrottleConfig {
        enabled: true,
        reads_per_sec: 1.0,
        read_burst: 2.0,
        ..Default::default()
    });
    let http = client(&emu);
    let t = token(&emu, &http, ARM).await;
    let mid = seed_vm(&emu, "tbvm");
    let u = url(&emu, &mid, "2025-01-13");
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = http.get(&u).bearer_auth(&t).send().await.expect("send");
        statuses.push(r.status().as_u16());
        remaining.push(
            r.headers()
                .get("x-ms-ratelimit-remaining-subscription-reads")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
        );
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            assert_eq!(
                r.json::<Value>().await.expect("json")["error"]["code"],
                "SubscriptionRequestsThrottled"
            );
        }
    }
    assert_eq!(statuses, vec![200, 200, 429], "{remaining:?}");
    assert_eq!(remaining[0], "1");
    emu.shutdown().await;
}
