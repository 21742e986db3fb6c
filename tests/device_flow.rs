#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

//! The device authorization grant (RFC 8628) against the real broker: a device asks
//! for codes, a person signs in on the `/device` page (driven like the login form),
//! enters the user code and approves or denies, and the device polls `/token` —
//! `authorization_pending`, `slow_down` when it polls too fast, `access_denied`,
//! `expired_token`, and the tokens exactly once.

use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use switchboard_e2e::{
    ADMIN, Broker, Browser, NATIVE_APP, Page, Setup, TestClient, TestUser, TokenReply, WEB_APP,
    hidden_value, jwt_claims,
};
use url::Url;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// NATIVE_APP (a public client) may use the device grant; `device` lines go into a
/// `[device]` table.
fn setup(device: &[&str]) -> Setup {
    Broker::setup()
        .client(
            NATIVE_APP.id,
            &format!("grants = [\"authorization_code\", \"refresh_token\", {DEVICE_GRANT:?}]"),
        )
        .extra(&format!("[device]\n{}", device.join("\n")))
}

/// POST `/device_authorization` as `client`: the status and the JSON answer.
async fn start(broker: &Broker, client: &TestClient, scope: &str) -> (StatusCode, Value) {
    let mut req = broker.http().post(broker.url("/device_authorization"));
    let mut form = vec![("scope", scope)];
    match client.secret {
        Some(secret) => req = req.basic_auth(client.id, Some(secret)),
        None => form.push(("client_id", client.id)),
    }
    let res = req
        .form(&form)
        .send()
        .await
        .expect("POST /device_authorization");
    let status = res.status();
    (status, res.json().await.expect("a JSON answer"))
}

/// Starts a device authorization of NATIVE_APP that must succeed.
async fn started(broker: &Broker, scope: &str) -> Value {
    let (status, body) = start(broker, &NATIVE_APP, scope).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn poll(broker: &Broker, device_code: &str) -> TokenReply {
    broker
        .token_request(
            &NATIVE_APP,
            &[("grant_type", DEVICE_GRANT), ("device_code", device_code)],
        )
        .await
}

fn text<'a>(body: &'a Value, key: &str) -> &'a str {
    body[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {body}"))
}

/// Opens `url` (a `/device` address) in a browser that has no session, signs `user` in
/// through the login form, and returns the `/device` page the login comes back to.
async fn sign_in_at_device_page(browser: &Browser, url: &Url, user: &TestUser) -> Page {
    let form = browser.open(url).await.expect_form();
    let page = browser
        .submit(&form, user.username, user.password)
        .await
        .expect_page();
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.url.path(), "/device");
    assert!(
        page.body.contains("id=\"device-code-form\""),
        "{}",
        page.body
    );
    page
}

/// Posts the `/device` form of `page` with `fields` added to its CSRF token: the
/// status and the page answered.
async fn post_device(
    broker: &Broker,
    browser: &Browser,
    page: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let csrf = hidden_value(page, "csrf").expect("the device form has a CSRF token");
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    let res = browser.post_raw(&broker.url("/device"), &form).await;
    let status = res.status();
    (status, res.text().await.expect("a page"))
}

/// From the signed-in `/device` page: enter `user_code`, check the request shown, and
/// decide (`approve` or `deny`). Returns the page of the outcome.
async fn decide(
    broker: &Broker,
    browser: &Browser,
    page: &Page,
    user_code: &str,
    decision: &str,
) -> String {
    let (status, confirm) =
        post_device(broker, browser, &page.body, &[("user_code", user_code)]).await;
    assert_eq!(status, StatusCode::OK, "{confirm}");
    assert!(confirm.contains("id=\"device-client\""), "{confirm}");
    assert!(
        confirm.contains(NATIVE_APP.id),
        "the app that asks is named: {confirm}"
    );
    assert!(
        confirm.contains("offline_access"),
        "the scopes are shown: {confirm}"
    );
    let (status, outcome) = post_device(
        broker,
        browser,
        &confirm,
        &[("user_code", user_code), ("decision", decision)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    outcome
}

#[tokio::test]
async fn a_device_login_completes_through_the_device_page_and_redeems_once() {
    let broker = setup(&["interval = \"1s\""]).start().await;
    let discovery: Value = broker
        .http()
        .get(broker.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        discovery["device_authorization_endpoint"],
        format!("{}/device_authorization", broker.issuer())
    );
    assert!(
        discovery["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == DEVICE_GRANT)
    );

    let body = started(&broker, "openid profile offline_access").await;
    let device_code = text(&body, "device_code");
    let user_code = text(&body, "user_code");
    assert_eq!(user_code.len(), 9, "XXXX-XXXX: {user_code}");
    assert_eq!(
        text(&body, "verification_uri"),
        format!("{}/device", broker.issuer())
    );
    assert_eq!(body["interval"], 1);
    assert_eq!(body["expires_in"], 600);
    poll(&broker, device_code)
        .await
        .assert_error("authorization_pending");

    // The person follows verification_uri_complete, signs in, and lands on the page
    // with the code filled in; they type it in lower case without the dash.
    let browser = Browser::new(&broker);
    let complete = Url::parse(text(&body, "verification_uri_complete")).unwrap();
    let page = sign_in_at_device_page(&browser, &complete, &ADMIN).await;
    assert_eq!(
        hidden_value(&page.body, "user_code").as_deref(),
        Some(user_code)
    );
    let typed = user_code.replace('-', "").to_lowercase();
    let outcome = decide(&broker, &browser, &page, &typed, "approve").await;
    assert!(outcome.contains("id=\"device-approved\""), "{outcome}");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let tokens = poll(&broker, device_code).await;
    tokens.assert_ok();
    let access = text(&tokens.body, "access_token");
    let id_claims = jwt_claims(text(&tokens.body, "id_token"));
    assert_eq!(id_claims["sub"], ADMIN.id);
    assert_eq!(id_claims["aud"], NATIVE_APP.id);
    assert_eq!(tokens.body["scope"], "openid profile offline_access");
    let info = broker.userinfo(access).await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.body);
    let info: Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(info["sub"], ADMIN.id);
    let refreshed = broker
        .refresh(&NATIVE_APP, text(&tokens.body, "refresh_token"))
        .await;
    refreshed.assert_ok();

    // Redeemed once: the same code again, at any pace, gets nothing.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    poll(&broker, device_code)
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn concurrent_polls_of_an_approved_code_get_the_tokens_once() {
    let broker = setup(&[]).start().await;
    let body = started(&broker, "openid offline_access").await;
    let device_code = text(&body, "device_code").to_string();
    let browser = Browser::new(&broker);
    let page = sign_in_at_device_page(&browser, &broker.url("/device"), &ADMIN).await;
    let outcome = decide(
        &broker,
        &browser,
        &page,
        text(&body, "user_code"),
        "approve",
    )
    .await;
    assert!(outcome.contains("id=\"device-approved\""), "{outcome}");

    // Eight polls at once, each on its own task and connection.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let http = broker.http().clone();
            let url = broker.url("/token");
            let device_code = device_code.clone();
            tokio::spawn(async move {
                http.post(url)
                    .form(&[
                        ("grant_type", DEVICE_GRANT),
                        ("device_code", device_code.as_str()),
                        ("client_id", NATIVE_APP.id),
                    ])
                    .send()
                    .await
                    .expect("POST /token")
            })
        })
        .collect();
    let mut issued = 0;
    let mut refused = 0;
    for task in tasks {
        let res = task.await.unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        match status {
            StatusCode::OK => issued += 1,
            _ if body["error"] == "invalid_grant" => refused += 1,
            _ => panic!("unexpected answer {status}: {body}"),
        }
    }
    assert_eq!((issued, refused), (1, 7));
}

#[tokio::test]
async fn polling_faster_than_the_interval_gets_slow_down_and_a_longer_interval() {
    let broker = setup(&[]).start().await;
    let body = started(&broker, "openid").await;
    assert_eq!(body["interval"], 5, "the default interval");
    let device_code = text(&body, "device_code");
    poll(&broker, device_code)
        .await
        .assert_error("authorization_pending");
    let fast = poll(&broker, device_code).await;
    fast.assert_error("slow_down");
    assert!(
        text(&fast.body, "error_description").contains("10 seconds"),
        "the interval grew by 5 s: {}",
        fast.body
    );
    let faster = poll(&broker, device_code).await;
    faster.assert_error("slow_down");
    assert!(
        text(&faster.body, "error_description").contains("15 seconds"),
        "{}",
        faster.body
    );
}

#[tokio::test]
async fn an_unused_code_expires() {
    let broker = setup(&["code_lifetime = \"2s\"", "interval = \"1s\""])
        .start()
        .await;
    let body = started(&broker, "openid").await;
    assert_eq!(body["expires_in"], 2);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    poll(&broker, text(&body, "device_code"))
        .await
        .assert_error("expired_token");

    // Nor can a person approve it any more.
    let browser = Browser::new(&broker);
    let page = sign_in_at_device_page(&browser, &broker.url("/device"), &ADMIN).await;
    let (status, refused) = post_device(
        &broker,
        &browser,
        &page.body,
        &[("user_code", text(&body, "user_code"))],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(refused.contains("id=\"device-error\""), "{refused}");
}

#[tokio::test]
async fn a_denied_request_answers_access_denied() {
    let broker = setup(&["interval = \"1s\""]).start().await;
    let body = started(&broker, "openid offline_access").await;
    let browser = Browser::new(&broker);
    let page = sign_in_at_device_page(&browser, &broker.url("/device"), &ADMIN).await;
    let outcome = decide(&broker, &browser, &page, text(&body, "user_code"), "deny").await;
    assert!(outcome.contains("id=\"device-denied\""), "{outcome}");
    poll(&broker, text(&body, "device_code"))
        .await
        .assert_error("access_denied");
}

#[tokio::test]
async fn wrong_user_codes_are_counted_and_then_every_code_is_refused() {
    let broker = setup(&["user_code_tries = 3"]).start().await;
    let body = started(&broker, "openid").await;
    let browser = Browser::new(&broker);
    let page = sign_in_at_device_page(&browser, &broker.url("/device"), &ADMIN).await;

    // Without the CSRF token the form does nothing.
    let res = browser
        .post_raw(
            &broker.url("/device"),
            &[
                ("user_code", text(&body, "user_code")),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    for wrong in ["BCDF-GHJK", "not a code", "ZZZZ-ZZZZ"] {
        let (status, refused) =
            post_device(&broker, &browser, &page.body, &[("user_code", wrong)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{wrong}");
        assert!(refused.contains("id=\"device-error\""), "{refused}");
    }
    let (status, throttled) = post_device(
        &broker,
        &browser,
        &page.body,
        &[("user_code", text(&body, "user_code"))],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right code: {throttled}"
    );
    poll(&broker, text(&body, "device_code"))
        .await
        .assert_error("authorization_pending");
}

#[tokio::test]
async fn only_clients_allowed_the_grant_get_codes_and_poll() {
    let broker = setup(&[]).start().await;
    let (status, refused) = start(&broker, &WEB_APP, "openid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"], "unauthorized_client");
    let (status, scope) = start(&broker, &NATIVE_APP, "openid permissions").await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the test client may have every scope: {scope}"
    );

    // Another client cannot poll NATIVE_APP's code.
    let body = started(&broker, "openid").await;
    let other = broker
        .token_request(
            &WEB_APP,
            &[
                ("grant_type", DEVICE_GRANT),
                ("device_code", text(&body, "device_code")),
            ],
        )
        .await;
    other.assert_error("unauthorized_client");
    poll(&broker, "no-such-code")
        .await
        .assert_error("invalid_grant");
}
