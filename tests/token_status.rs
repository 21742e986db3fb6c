#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

//! What `/introspect` (RFC 7662) and `/revoke` (RFC 7009) say and do about each kind
//! of token: a rotated refresh token is dead and a live one reports its own expiry;
//! `token_type_hint` only orders the search; every access token can be revoked,
//! client-credentials ones included; and a client sees only the tokens it may see.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_e2e::{
    ADMIN, Broker, Browser, EDDSA_APP, ES256_APP, SECOND_APP, Setup, TestClient, TokenReply,
    WEB_APP, jwt_claims,
};

/// The audience of WEB_APP's access tokens in these tests.
const API: &str = "https://api.example";

/// WEB_APP may also act as itself, and its access tokens are for [`API`].
fn setup() -> Setup {
    Broker::setup()
        .client(
            WEB_APP.id,
            "grants = [\"authorization_code\", \"refresh_token\", \"client_credentials\"]",
        )
        .client(WEB_APP.id, &format!("audience = {API:?}"))
}

/// POSTs `form` to `path` as `client` (Basic authentication; `client_id` in the form
/// for a public client) and returns the status and the JSON body (`Null` if none).
async fn post_as(
    broker: &Broker,
    path: &str,
    client: &TestClient,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = broker.http().post(broker.url(path));
    let mut fields = form.to_vec();
    match client.secret {
        Some(secret) => req = req.basic_auth(client.id, Some(secret)),
        None => fields.push(("client_id", client.id)),
    }
    let res = req.form(&fields).send().await.expect("POST");
    let status = res.status();
    let text = res.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// What `/introspect` answers `client` about `token`, with an optional hint.
async fn introspect(
    broker: &Broker,
    client: &TestClient,
    token: &str,
    hint: Option<&str>,
) -> Value {
    let mut form = vec![("token", token)];
    if let Some(h) = hint {
        form.push(("token_type_hint", h));
    }
    let (status, body) = post_as(broker, "/introspect", client, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// `/revoke` as `client`; RFC 7009 answers 200 whether or not anything was revoked.
async fn revoke(broker: &Broker, client: &TestClient, token: &str, hint: Option<&str>) {
    let mut form = vec![("token", token)];
    if let Some(h) = hint {
        form.push(("token_type_hint", h));
    }
    let (status, body) = post_as(broker, "/revoke", client, &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A client-credentials access token of WEB_APP.
async fn client_token(broker: &Broker) -> String {
    let (status, body) = post_as(
        broker,
        "/token",
        &WEB_APP,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

fn inactive() -> Value {
    json!({ "active": false })
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn assert_active(body: &Value, token_type: &str) {
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["token_type"], token_type, "{body}");
}

async fn refreshed(broker: &Broker, refresh_token: &str) -> TokenReply {
    let next = broker.refresh(&WEB_APP, refresh_token).await;
    next.assert_ok();
    next
}

// ---- 1. a refresh token's own status ----

#[tokio::test]
async fn a_rotated_refresh_token_introspects_inactive() {
    let broker = setup().start().await;
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let first = tokens.refresh_token();
    assert_active(
        &introspect(&broker, &WEB_APP, first, None).await,
        "refresh_token",
    );

    let next = refreshed(&broker, first).await;
    assert_eq!(
        introspect(&broker, &WEB_APP, first, None).await,
        inactive(),
        "a used refresh token is dead"
    );
    assert_eq!(
        introspect(&broker, &WEB_APP, first, Some("refresh_token")).await,
        inactive()
    );
    assert_active(
        &introspect(&broker, &WEB_APP, next.refresh_token(), None).await,
        "refresh_token",
    );
}

#[tokio::test]
async fn a_rotated_refresh_token_is_inactive_within_the_reuse_grace_too() {
    let broker = setup()
        .tokens("refresh_reuse_grace = \"30s\"")
        .start()
        .await;
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let next = refreshed(&broker, tokens.refresh_token()).await;
    assert_eq!(
        introspect(&broker, &WEB_APP, tokens.refresh_token(), None).await,
        inactive(),
        "the grace is an allowance for a retry, not a second life"
    );
    assert_active(
        &introspect(&broker, &WEB_APP, next.refresh_token(), None).await,
        "refresh_token",
    );
}

#[tokio::test]
async fn an_active_refresh_token_reports_its_own_issue_and_expiry_times() {
    // Each refresh token lives an hour of idleness; the grant lives 30 days.
    let broker = setup()
        .tokens("refresh_token_idle_lifetime = \"1h\"")
        .tokens("refresh_token_absolute_lifetime = \"30d\"")
        .start()
        .await;
    let before = unix_now();
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let first = introspect(&broker, &WEB_APP, tokens.refresh_token(), None).await;
    assert_active(&first, "refresh_token");
    let (iat, exp) = (
        first["iat"].as_i64().unwrap(),
        first["exp"].as_i64().unwrap(),
    );
    assert!(iat >= before && iat <= unix_now(), "{first}");
    assert_eq!(
        exp - iat,
        3600,
        "the token's idle expiry, not the grant's: {first}"
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let next = refreshed(&broker, tokens.refresh_token()).await;
    let second = introspect(&broker, &WEB_APP, next.refresh_token(), None).await;
    assert_active(&second, "refresh_token");
    let (iat2, exp2) = (
        second["iat"].as_i64().unwrap(),
        second["exp"].as_i64().unwrap(),
    );
    assert!(iat2 > iat, "the successor was issued later: {second}");
    assert_eq!(exp2 - iat2, 3600, "{second}");
}

// ---- 2. the hint orders the search, it does not end it ----

#[tokio::test]
async fn introspection_finds_a_token_whatever_the_hint() {
    let broker = setup().start().await;
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let (access, refresh) = (tokens.access_token(), tokens.refresh_token());
    for hint in [
        None,
        Some("access_token"),
        Some("refresh_token"),
        Some("id_token"),
    ] {
        let body = introspect(&broker, &WEB_APP, access, hint).await;
        assert_active(&body, "Bearer");
        assert_eq!(body["sub"], ADMIN.id, "hint {hint:?}");
        let body = introspect(&broker, &WEB_APP, refresh, hint).await;
        assert_active(&body, "refresh_token");
        assert_eq!(body["sub"], ADMIN.id, "hint {hint:?}");
    }
}

#[tokio::test]
async fn revoking_an_access_token_with_a_refresh_token_hint_still_revokes_it() {
    let broker = setup().start().await;
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    assert_eq!(
        broker.userinfo(tokens.access_token()).await.status,
        StatusCode::OK
    );

    revoke(
        &broker,
        &WEB_APP,
        tokens.access_token(),
        Some("refresh_token"),
    )
    .await;

    broker
        .userinfo(tokens.access_token())
        .await
        .assert_invalid_token();
    assert_eq!(
        introspect(&broker, &WEB_APP, tokens.access_token(), None).await,
        inactive()
    );
    // A person's access token ends its grant, as it always did: the family goes too.
    broker
        .refresh(&WEB_APP, tokens.refresh_token())
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn revoking_a_refresh_token_with_an_access_token_hint_still_ends_its_grant() {
    let broker = setup().start().await;
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    revoke(
        &broker,
        &WEB_APP,
        tokens.refresh_token(),
        Some("access_token"),
    )
    .await;
    broker
        .refresh(&WEB_APP, tokens.refresh_token())
        .await
        .assert_error("invalid_grant");
    broker
        .userinfo(tokens.access_token())
        .await
        .assert_invalid_token();
}

#[tokio::test]
async fn a_client_credentials_token_is_found_with_a_refresh_token_hint() {
    let broker = setup().start().await;
    let token = client_token(&broker).await;
    assert_active(
        &introspect(&broker, &WEB_APP, &token, Some("refresh_token")).await,
        "Bearer",
    );
    revoke(&broker, &WEB_APP, &token, Some("refresh_token")).await;
    assert_eq!(
        introspect(&broker, &WEB_APP, &token, None).await,
        inactive()
    );
}

// ---- 3. every access token can be revoked ----

#[tokio::test]
async fn a_revoked_client_credentials_token_is_inactive_for_every_introspector() {
    // ES256_APP is a resource server of the API the tokens are for.
    let broker = setup()
        .client(ES256_APP.id, &format!("audience = {API:?}"))
        .start()
        .await;
    let token = client_token(&broker).await;
    let other = client_token(&broker).await;
    assert_active(&introspect(&broker, &WEB_APP, &token, None).await, "Bearer");
    assert_active(
        &introspect(&broker, &ES256_APP, &token, None).await,
        "Bearer",
    );

    revoke(&broker, &WEB_APP, &token, None).await;

    assert_eq!(
        introspect(&broker, &WEB_APP, &token, None).await,
        inactive()
    );
    assert_eq!(
        introspect(&broker, &ES256_APP, &token, None).await,
        inactive(),
        "the resource server learns of it at its next introspection"
    );
    assert_active(&introspect(&broker, &WEB_APP, &other, None).await, "Bearer");
    // Revoking twice is as quiet as revoking once.
    revoke(&broker, &WEB_APP, &token, None).await;
}

#[tokio::test]
async fn a_revoked_client_credentials_token_stays_revoked_after_a_restart() {
    let mut broker = setup().start().await;
    let token = client_token(&broker).await;
    revoke(&broker, &WEB_APP, &token, None).await;
    broker.restart().await;
    assert_eq!(
        introspect(&broker, &WEB_APP, &token, None).await,
        inactive(),
        "the deny-list is in the store, not in one process's memory"
    );
}

#[tokio::test]
async fn only_its_own_client_can_revoke_an_access_token() {
    let broker = setup().start().await;
    let token = client_token(&broker).await;
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;

    for t in [token.as_str(), tokens.access_token()] {
        for hint in [None, Some("access_token"), Some("refresh_token")] {
            revoke(&broker, &SECOND_APP, t, hint).await;
        }
        assert_eq!(
            introspect(&broker, &WEB_APP, t, None).await["active"],
            true,
            "another client's revocation changed nothing"
        );
    }
    assert_eq!(
        broker.userinfo(tokens.access_token()).await.status,
        StatusCode::OK
    );
    broker
        .refresh(&WEB_APP, tokens.refresh_token())
        .await
        .assert_ok();
}

// ---- 4. who may look at which token ----

#[tokio::test]
async fn only_its_own_client_may_introspect_a_refresh_token() {
    let broker = setup().start().await;
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let refresh = tokens.refresh_token();

    for client in [&SECOND_APP, &ES256_APP] {
        for hint in [None, Some("refresh_token"), Some("access_token")] {
            assert_eq!(
                introspect(&broker, client, refresh, hint).await,
                inactive(),
                "{} must learn nothing of another client's refresh token",
                client.id
            );
        }
        revoke(&broker, client, refresh, None).await;
    }
    assert_active(
        &introspect(&broker, &WEB_APP, refresh, None).await,
        "refresh_token",
    );
    broker.refresh(&WEB_APP, refresh).await.assert_ok();
}

#[tokio::test]
async fn by_default_a_client_introspects_only_access_tokens_meant_for_it() {
    // ES256_APP is a resource server of the same API (its own tokens are for it too);
    // SECOND_APP has the default policy and nothing to do with the API.
    let broker = setup()
        .client(ES256_APP.id, &format!("audience = {API:?}"))
        .start()
        .await;
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let client_token = client_token(&broker).await;

    for token in [tokens.access_token(), client_token.as_str()] {
        assert_eq!(
            introspect(&broker, &SECOND_APP, token, None).await,
            inactive(),
            "not for SECOND_APP: it learns nothing"
        );
        for allowed in [&WEB_APP, &ES256_APP] {
            let body = introspect(&broker, allowed, token, None).await;
            assert_active(&body, "Bearer");
            assert_eq!(body["aud"], API, "{}", allowed.id);
        }
    }
}

#[tokio::test]
async fn a_client_trusted_with_all_sees_every_access_token_but_no_refresh_token() {
    let broker = setup()
        .client(EDDSA_APP.id, "introspection = \"all\"")
        .client(SECOND_APP.id, "introspection = \"own_audience\"")
        .start()
        .await;
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let client_token = client_token(&broker).await;
    for token in [tokens.access_token(), client_token.as_str()] {
        assert_active(
            &introspect(&broker, &EDDSA_APP, token, None).await,
            "Bearer",
        );
        assert_eq!(
            introspect(&broker, &SECOND_APP, token, None).await,
            inactive()
        );
    }
    for hint in [None, Some("refresh_token")] {
        assert_eq!(
            introspect(&broker, &EDDSA_APP, tokens.refresh_token(), hint).await,
            inactive(),
            "refresh tokens are their own client's only"
        );
    }
}

#[tokio::test]
async fn a_client_named_as_the_audience_may_introspect() {
    // WEB_APP's tokens are addressed to SECOND_APP by its client id.
    let broker = Broker::setup()
        .client(WEB_APP.id, &format!("audience = {:?}", SECOND_APP.id))
        .start()
        .await;
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let body = introspect(&broker, &SECOND_APP, tokens.access_token(), None).await;
    assert_active(&body, "Bearer");
    assert_eq!(body["aud"], SECOND_APP.id);
    assert_eq!(
        introspect(&broker, &ES256_APP, tokens.access_token(), None).await,
        inactive()
    );
}

#[tokio::test]
async fn an_unknown_introspection_policy_stops_the_broker_and_names_the_key() {
    let log = Broker::setup()
        .client(SECOND_APP.id, "introspection = \"everything\"")
        .start_refused()
        .await;
    assert!(
        log.contains("clients.second-app.introspection"),
        "the key is named: {log}"
    );
    assert!(
        log.contains("own_audience") && log.contains("\"all\""),
        "the allowed values are named: {log}"
    );
}

/// A refresh may ask for less than was granted (RFC 6749 §6): that access token has
/// only the narrower scope (userinfo then refuses what it lacks), while the grant and
/// the rotated refresh token keep everything, so the next plain refresh gets it all.
#[tokio::test]
async fn a_narrower_refresh_scope_narrows_that_access_token_only() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let tokens = broker.sign_in(&browser, &WEB_APP, &ADMIN).await;

    let narrow = broker
        .token_request(
            &WEB_APP,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens.refresh_token()),
                ("scope", "profile"),
            ],
        )
        .await;
    narrow.assert_ok();
    assert_eq!(narrow.body["scope"], "profile", "{}", narrow.body);
    assert!(
        narrow.body.get("id_token").is_none(),
        "no openid, no ID token"
    );
    assert_eq!(jwt_claims(narrow.access_token())["scope"], "profile");
    let info = broker.userinfo(narrow.access_token()).await;
    assert_eq!(info.status, StatusCode::FORBIDDEN, "userinfo needs openid");

    let full = broker.refresh(&WEB_APP, narrow.refresh_token()).await;
    full.assert_ok();
    assert_eq!(
        full.body["scope"], "openid profile email offline_access",
        "{}",
        full.body
    );
    assert_eq!(jwt_claims(full.id_token())["email"], ADMIN.email);

    let wider = broker
        .token_request(
            &WEB_APP,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", full.refresh_token()),
                ("scope", "openid groups"),
            ],
        )
        .await;
    wider.assert_error("invalid_scope");
}
