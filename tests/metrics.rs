//! Prometheus metrics through the real binary (issue 16): `/metrics` counts requests by
//! route template and status, logins by provider and outcome, token requests by grant
//! and result, tokens signed, provider calls, store calls and token-status cache
//! lookups; with `[admin] listen` it answers only there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use switchboard_e2e::{ADMIN, AuthorizeRequest, Broker, Browser, WEB_APP, free_port};

async fn scrape(http: &reqwest::Client, url: String) -> String {
    let res = http.get(url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        res.headers()
    );
    res.text().await.unwrap()
}

#[tokio::test]
async fn logins_token_requests_and_routes_are_counted() {
    let broker = Broker::setup()
        .client(
            WEB_APP.id,
            "grants = [\"authorization_code\", \"refresh_token\", \"client_credentials\"]",
        )
        .start()
        .await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP);
    let form = browser.open(&request.url(&broker)).await.expect_form();
    browser
        .submit(&form, ADMIN.username, "wrong password")
        .await;
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    // The first answer is read from the store and kept, the second one is the kept one.
    broker.userinfo(tokens.access_token()).await;
    broker.userinfo(tokens.access_token()).await;
    broker
        .token_request(&WEB_APP, &[("grant_type", "client_credentials")])
        .await
        .assert_ok();
    broker
        .token_request(&WEB_APP, &[("grant_type", "password")])
        .await;
    broker
        .http()
        .get(broker.url("/no/such/path/123"))
        .send()
        .await
        .unwrap();

    let text = scrape(broker.http(), broker.url("/metrics").to_string()).await;
    for line in [
        r#"switchboard_logins_total{provider="local",outcome="success"} 1"#,
        r#"switchboard_logins_total{provider="local",outcome="invalid_credentials"} 1"#,
        r#"switchboard_token_requests_total{grant_type="authorization_code",result="issued"} 1"#,
        r#"switchboard_token_requests_total{grant_type="client_credentials",result="issued"} 1"#,
        r#"switchboard_token_requests_total{grant_type="other",result="unsupported_grant_type"} 1"#,
        r#"switchboard_http_requests_total{method="POST",route="/token",status="200"} 2"#,
        r#"switchboard_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"switchboard_provider_calls_total{provider="local",step="authenticate",outcome="answered"} 2"#,
        r#"switchboard_tokens_signed_total{kind="id_token",alg="RS256"} 1"#,
        r#"switchboard_tokens_signed_total{kind="access_token",alg="RS256"} 2"#,
        r#"switchboard_store_call_duration_seconds_count{operation="redeem_code"} 1"#,
        r#"switchboard_cache_lookups_total{cache="token_status",result="hit"} 1"#,
        r#"switchboard_cache_lookups_total{cache="token_status",result="miss"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(
        text.contains(r#"switchboard_http_request_duration_seconds_count{route="/token"} 3"#),
        "{text}"
    );
    assert!(
        !text.contains("/no/such/path"),
        "raw paths never become labels"
    );
}

#[tokio::test]
async fn with_an_admin_listener_metrics_answer_only_there() {
    let port = free_port();
    let broker = Broker::setup()
        .extra(&format!("[admin]\nlisten = \"127.0.0.1:{port}\""))
        .start()
        .await;
    let public = broker
        .http()
        .get(broker.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    for _ in 0..50 {
        if http.get(&url).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let text = scrape(&http, url).await;
    assert!(text.contains("switchboard_http_requests_total"), "{text}");
}
