//! Resource indicators (RFC 8707, issue 12 item 12): the `resource` an app asks for is
//! the `aud` of its access tokens, kept with the grant across refreshes, never one the
//! client may not have, and never turned to another resource at `/token`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::Value;
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, Broker, Browser, SECOND_APP, TestClient, TokenReply, WEB_APP,
    jwt_claims,
};

const INVOICES: &str = "https://invoices.example";
const REPORTS: &str = "https://reports.example";
const ELSEWHERE: &str = "https://elsewhere.example";

async fn broker() -> Broker {
    Broker::setup()
        .client(
            WEB_APP.id,
            "grants = [\"authorization_code\", \"refresh_token\", \"client_credentials\"]",
        )
        .client(
            WEB_APP.id,
            &format!("resources = [{INVOICES:?}, {REPORTS:?}]"),
        )
        // The invoices API, as a resource server that introspects its own audience.
        .client(SECOND_APP.id, &format!("audience = {INVOICES:?}"))
        .start()
        .await
}

fn aud(reply: &TokenReply) -> Value {
    jwt_claims(reply.access_token())["aud"].clone()
}

/// Signs ADMIN in for WEB_APP with `resource` at /authorize, redeeming the code
/// with `extra` fields; the /token reply.
async fn sign_in(broker: &Broker, resource: Option<&str>, extra: &[(&str, &str)]) -> TokenReply {
    let mut request = AuthorizeRequest::new(WEB_APP).scope("openid profile offline_access");
    if let Some(resource) = resource {
        request = request.param("resource", resource);
    }
    let response = Browser::new(broker)
        .log_in(&request.url(broker), &ADMIN)
        .await;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", response.code()),
        ("redirect_uri", WEB_APP.redirect_uri),
        ("code_verifier", request.verifier().unwrap()),
    ];
    form.extend_from_slice(extra);
    broker.token_request(&WEB_APP, &form).await
}

async fn refresh(broker: &Broker, token: &str, extra: &[(&str, &str)]) -> TokenReply {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    form.extend_from_slice(extra);
    broker.token_request(&WEB_APP, &form).await
}

async fn introspect(broker: &Broker, client: &TestClient, token: &str) -> Value {
    let res = broker
        .http()
        .post(broker.url("/introspect"))
        .basic_auth(client.id, client.secret)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_resource_asked_at_authorize_is_the_audience_for_the_whole_grant() {
    let broker = broker().await;
    let tokens = sign_in(&broker, Some(INVOICES), &[]).await;
    tokens.assert_ok();
    assert_eq!(aud(&tokens), INVOICES);
    // The API it names can introspect it under its `own_audience` policy.
    let seen = introspect(&broker, &SECOND_APP, tokens.access_token()).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["aud"], INVOICES, "{seen}");

    let refreshed = refresh(&broker, tokens.refresh_token(), &[]).await;
    refreshed.assert_ok();
    assert_eq!(aud(&refreshed), INVOICES, "kept with the grant");

    // Naming it again is fine; naming another resource of the client is not.
    let again = refresh(
        &broker,
        refreshed.refresh_token(),
        &[("resource", INVOICES)],
    )
    .await;
    again.assert_ok();
    assert_eq!(aud(&again), INVOICES);
    refresh(&broker, again.refresh_token(), &[("resource", REPORTS)])
        .await
        .assert_error("invalid_target");
}

#[tokio::test]
async fn a_grant_without_a_resource_gets_the_default_audience_or_one_named_at_token() {
    let broker = broker().await;
    let tokens = sign_in(&broker, None, &[]).await;
    tokens.assert_ok();
    assert_eq!(aud(&tokens), broker.issuer(), "the default audience");
    let reports = refresh(&broker, tokens.refresh_token(), &[("resource", REPORTS)]).await;
    reports.assert_ok();
    assert_eq!(aud(&reports), REPORTS);
    // Not remembered: the next plain refresh is back to the default.
    let plain = refresh(&broker, reports.refresh_token(), &[]).await;
    plain.assert_ok();
    assert_eq!(aud(&plain), broker.issuer());
    refresh(&broker, plain.refresh_token(), &[("resource", ELSEWHERE)])
        .await
        .assert_error("invalid_target");

    let at_redeem = sign_in(&broker, None, &[("resource", REPORTS)]).await;
    at_redeem.assert_ok();
    assert_eq!(aud(&at_redeem), REPORTS);
}

#[tokio::test]
async fn a_code_authorized_for_one_resource_cannot_be_redeemed_for_another() {
    let broker = broker().await;
    sign_in(&broker, Some(INVOICES), &[("resource", REPORTS)])
        .await
        .assert_error("invalid_target");
    sign_in(&broker, Some(INVOICES), &[("resource", ELSEWHERE)])
        .await
        .assert_error("invalid_target");
}

#[tokio::test]
async fn authorize_refuses_a_resource_the_client_may_not_have_and_a_repeated_one() {
    let broker = broker().await;
    let browser = Browser::new(&broker);
    let refused = browser
        .open(
            &AuthorizeRequest::new(WEB_APP)
                .param("resource", ELSEWHERE)
                .url(&broker),
        )
        .await
        .expect_client();
    assert_eq!(refused.error(), Some("invalid_target"), "{}", refused.url);

    let mut url = AuthorizeRequest::new(WEB_APP)
        .param("resource", INVOICES)
        .url(&broker);
    url.query_pairs_mut().append_pair("resource", REPORTS);
    let repeated = browser.open(&url).await.expect_client();
    assert_eq!(
        repeated.error(),
        Some("invalid_request"),
        "{}",
        repeated.url
    );
}

#[tokio::test]
async fn client_credentials_take_a_resource_too() {
    let broker = broker().await;
    let token = broker
        .token_request(
            &WEB_APP,
            &[("grant_type", "client_credentials"), ("resource", REPORTS)],
        )
        .await;
    token.assert_ok();
    assert_eq!(aud(&token), REPORTS);
    broker
        .token_request(
            &WEB_APP,
            &[
                ("grant_type", "client_credentials"),
                ("resource", ELSEWHERE),
            ],
        )
        .await
        .assert_error("invalid_target");
    let plain = broker
        .token_request(&WEB_APP, &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(aud(&plain), broker.issuer());
}
