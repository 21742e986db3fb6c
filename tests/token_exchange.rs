#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

//! Token exchange (RFC 8693) against the real broker: a client trades a person's
//! access token for a short-lived "widget token" for one audience it may exchange for;
//! the token works for that audience only and expires; asking for more scopes, a
//! client without the permission, and a revoked or foreign subject token are refused.

use serde_json::Value;
use std::time::Duration;
use switchboard_e2e::{
    ADMIN, Broker, Browser, EDDSA_APP, ES256_APP, SECOND_APP, Setup, TestClient, TokenReply,
    WEB_APP, jwt_claims,
};

const EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The audience WEB_APP may exchange for: the widget service, whose resource server
/// authenticates as ES256_APP.
const WIDGETS: &str = "https://widgets.example";

const ROLES: &str = r#"
[roles]
admin_role = "admin"
default_roles = ["member"]

[roles.permissions]
admin = ["admin:*"]
member = ["profile:read"]

[[roles.rules]]
role = "admin"
provider = "local"
group = "admins"
"#;

/// WEB_APP may exchange for [`WIDGETS`]; SECOND_APP for it too (to show a client
/// cannot exchange another client's token); ES256_APP is the widget service and
/// EDDSA_APP another resource server.
fn setup() -> Setup {
    let may_exchange = format!(
        "grants = [\"authorization_code\", \"refresh_token\", {EXCHANGE_GRANT:?}]\nexchange_audiences = [{WIDGETS:?}]"
    );
    Broker::setup()
        .client(WEB_APP.id, &may_exchange)
        .client(SECOND_APP.id, &may_exchange)
        .client(ES256_APP.id, &format!("audience = {WIDGETS:?}"))
        .client(EDDSA_APP.id, "audience = \"https://other.example\"")
        .extra(ROLES)
}

async fn exchange(
    broker: &Broker,
    client: &TestClient,
    subject: &str,
    extra: &[(&str, &str)],
) -> TokenReply {
    let mut form = vec![
        ("grant_type", EXCHANGE_GRANT),
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
    ];
    form.extend_from_slice(extra);
    broker.token_request(client, &form).await
}

/// ADMIN's tokens from a login to WEB_APP with `scope`.
async fn person_tokens(broker: &Broker, scope: &str) -> TokenReply {
    let browser = Browser::new(broker);
    let request = switchboard_e2e::AuthorizeRequest::new(WEB_APP).scope(scope);
    let response = browser.log_in(&request.url(broker), &ADMIN).await;
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    tokens
}

fn text<'a>(body: &'a Value, key: &str) -> &'a str {
    body[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {body}"))
}

#[tokio::test]
async fn an_exchanged_token_works_for_its_audience_only_and_expires() {
    let broker = setup()
        .tokens("exchange_token_lifetime = \"3s\"")
        .start()
        .await;
    let tokens = person_tokens(&broker, "openid profile roles permissions offline_access").await;
    let subject = text(&tokens.body, "access_token");
    let subject_claims = jwt_claims(subject);

    let widget = exchange(
        &broker,
        &WEB_APP,
        subject,
        &[("audience", WIDGETS), ("scope", "openid roles")],
    )
    .await;
    widget.assert_ok();
    assert_eq!(widget.body["issued_token_type"], ACCESS_TOKEN_TYPE);
    assert_eq!(widget.body["token_type"], "Bearer");
    assert_eq!(widget.body["scope"], "openid roles");
    assert_eq!(widget.body["expires_in"], 3);
    assert!(
        widget.body.get("refresh_token").is_none(),
        "{}",
        widget.body
    );
    assert!(widget.body.get("id_token").is_none(), "{}", widget.body);
    let token = text(&widget.body, "access_token");
    let claims = broker.verify_with_jwks(token).await;
    assert_eq!(claims["aud"], WIDGETS);
    assert_eq!(claims["sub"], ADMIN.id);
    assert_eq!(claims["client_id"], WEB_APP.id);
    assert_eq!(claims["act"]["sub"], WEB_APP.id);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3
    );
    // Down-scoped: roles kept, permissions gone (the scope was not asked for).
    assert_eq!(claims["roles"], subject_claims["roles"], "{claims}");
    assert!(claims.get("permissions").is_none(), "{claims}");
    assert!(
        subject_claims.get("permissions").is_some(),
        "{subject_claims}"
    );

    // The widget service sees it live; another resource server does not.
    let seen = broker.introspect(&ES256_APP, token).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["aud"], WIDGETS);
    assert_eq!(broker.introspect(&EDDSA_APP, token).await["active"], false);
    // An audience the client may not exchange for.
    exchange(
        &broker,
        &WEB_APP,
        subject,
        &[("audience", "https://other.example")],
    )
    .await
    .assert_error("invalid_target");
    // An exchanged token is not exchanged again.
    exchange(&broker, &WEB_APP, token, &[("audience", WIDGETS)])
        .await
        .assert_error("invalid_grant");

    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(
        broker.introspect(&ES256_APP, token).await["active"],
        false,
        "expired after 3 s"
    );
    // The subject token lives on.
    assert_eq!(broker.introspect(&WEB_APP, subject).await["active"], true);
}

#[tokio::test]
async fn asking_for_more_scopes_than_the_subject_token_has_is_refused() {
    let broker = setup().start().await;
    let tokens = person_tokens(&broker, "openid email").await;
    let subject = text(&tokens.body, "access_token");
    exchange(
        &broker,
        &WEB_APP,
        subject,
        &[("audience", WIDGETS), ("scope", "openid email profile")],
    )
    .await
    .assert_error("invalid_scope");
    let same = exchange(&broker, &WEB_APP, subject, &[("resource", WIDGETS)]).await;
    same.assert_ok();
    assert_eq!(
        same.body["scope"], "openid email",
        "all of the subject's by default"
    );
    assert_eq!(jwt_claims(text(&same.body, "access_token"))["aud"], WIDGETS);
}

#[tokio::test]
async fn a_client_without_the_permission_is_refused() {
    let broker = setup().start().await;
    let tokens = person_tokens(&broker, "openid").await;
    let subject = text(&tokens.body, "access_token");
    // No token-exchange grant at all.
    exchange(&broker, &ES256_APP, subject, &[("audience", WIDGETS)])
        .await
        .assert_error("unauthorized_client");
    // Allowed to exchange, but not tokens of another client's login.
    exchange(&broker, &SECOND_APP, subject, &[("audience", WIDGETS)])
        .await
        .assert_error("invalid_grant");
    // Missing pieces.
    exchange(&broker, &WEB_APP, subject, &[])
        .await
        .assert_error("invalid_request");
    broker
        .token_request(
            &WEB_APP,
            &[
                ("grant_type", EXCHANGE_GRANT),
                ("subject_token", subject),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                ),
                ("audience", WIDGETS),
            ],
        )
        .await
        .assert_error("invalid_request");
}

#[tokio::test]
async fn a_revoked_or_foreign_subject_token_is_refused() {
    let broker = setup().start().await;
    let tokens = person_tokens(&broker, "openid offline_access").await;
    let subject = text(&tokens.body, "access_token");
    let widget = exchange(&broker, &WEB_APP, subject, &[("audience", WIDGETS)]).await;
    widget.assert_ok();
    let widget_token = text(&widget.body, "access_token");

    // Ending the login (its refresh token) ends the widget token, and the subject
    // token can no longer be exchanged.
    broker
        .revoke(&WEB_APP, text(&tokens.body, "refresh_token"))
        .await;
    assert_eq!(
        broker.introspect(&ES256_APP, widget_token).await["active"],
        false
    );
    exchange(&broker, &WEB_APP, subject, &[("audience", WIDGETS)])
        .await
        .assert_error("invalid_grant");

    // A token this broker never issued: a JWT of the same shape, signed by nobody.
    let mut parts: Vec<String> = subject.split('.').map(str::to_string).collect();
    parts[2] = "c2lnbmVkLWJ5LW5vYm9keQ".to_string();
    exchange(
        &broker,
        &WEB_APP,
        &parts.join("."),
        &[("audience", WIDGETS)],
    )
    .await
    .assert_error("invalid_grant");
    exchange(&broker, &WEB_APP, "not-a-token", &[("audience", WIDGETS)])
        .await
        .assert_error("invalid_grant");

    // A revoked access token alone (its own revocation) is refused too.
    let fresh = person_tokens(&broker, "openid").await;
    let fresh_subject = text(&fresh.body, "access_token");
    broker.revoke(&WEB_APP, fresh_subject).await;
    exchange(&broker, &WEB_APP, fresh_subject, &[("audience", WIDGETS)])
        .await
        .assert_error("invalid_grant");
}

/// The widget service checks its tokens with the client crate, as any API would: the
/// exchanged token passes its `Validator` for the widget audience, not for another
/// API's, and stops passing once it expires; the person's own token (for the app)
/// never passes as a widget token.
#[tokio::test]
async fn the_client_crate_accepts_a_widget_token_for_its_audience_only_until_it_expires() {
    use switchboard_client::{Issuer, Validator};
    let broker = setup()
        .tokens("exchange_token_lifetime = \"2s\"")
        .start()
        .await;
    let tokens = person_tokens(&broker, "openid profile roles").await;
    let subject = text(&tokens.body, "access_token");
    let widget = exchange(&broker, &WEB_APP, subject, &[("audience", WIDGETS)]).await;
    widget.assert_ok();
    let token = text(&widget.body, "access_token");

    let issuer = Issuer::new(broker.issuer()).unwrap();
    let widgets = Validator::new(issuer.clone(), WIDGETS).leeway(Duration::ZERO);
    let principal = widgets.validate(token).await.unwrap();
    assert_eq!(principal.sub, ADMIN.id);
    assert!(
        widgets.validate(subject).await.is_err(),
        "the app's token is no widget token"
    );
    let other = Validator::new(issuer, "https://other.example");
    assert!(
        other.validate(token).await.is_err(),
        "another API refuses it"
    );

    // Past its two seconds (whole seconds: one more), it is refused everywhere.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        widgets.validate(token).await.is_err(),
        "expired for the API"
    );
    assert_eq!(
        broker.introspect(&ES256_APP, token).await["active"],
        false,
        "expired at the broker"
    );
}
