#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

//! Ending and checking access: RP-initiated and back-channel logout, revocation,
//! introspection and the client-credentials grant.

use reqwest::StatusCode;
use std::time::{Duration, Instant};
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, Broker, Browser, Landing, NATIVE_APP, SECOND_APP, WEB_APP,
    backchannel_receiver, hidden_value, jwt_claims, jwt_header,
};
use tokio::sync::mpsc;

const SIGNED_OUT: &str = "https://web-app.example/signed-out";

async fn broker_with_logout(backchannel: Option<&str>) -> Broker {
    let mut setup = Broker::setup()
        .client(
            WEB_APP.id,
            &format!("post_logout_redirect_uris = [{SIGNED_OUT:?}]"),
        )
        .client(
            WEB_APP.id,
            "grants = [\"authorization_code\", \"refresh_token\", \"client_credentials\"]",
        )
        .client(WEB_APP.id, "audience = \"https://api.example\"")
        // The resource server that introspects WEB_APP's tokens.
        .client(SECOND_APP.id, "introspection = \"all\"");
    if let Some(uri) = backchannel {
        setup = setup.client(WEB_APP.id, &format!("backchannel_logout_uri = {uri:?}"));
    }
    setup.start().await
}

/// Whether the browser still has a session: `prompt=none` gets a code.
async fn has_session(broker: &Broker, browser: &Browser) -> bool {
    let request = AuthorizeRequest::new(SECOND_APP).param("prompt", "none");
    match browser.open(&request.url(broker)).await {
        Landing::Client(r) if r.error() == Some("login_required") => false,
        Landing::Client(r) => {
            r.code();
            true
        }
        other => panic!("prompt=none must answer the client, got {other:?}"),
    }
}

/// A login without `offline_access`: the grant lives and dies with the session.
async fn online_login(broker: &Broker, browser: &Browser) -> serde_json::Value {
    let request = AuthorizeRequest::new(WEB_APP).scope("openid profile email");
    let response = browser.log_in(&request.url(broker), &ADMIN).await;
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    tokens.body.clone()
}

fn logout_url(broker: &Broker, params: &[(&str, &str)]) -> url::Url {
    let mut url = broker.url("/logout");
    url.query_pairs_mut().extend_pairs(params);
    url
}

/// How soon a running server on SQLite sees what the CLI wrote to its file: the
/// watcher polls every 100 ms; the rest is slack for a loaded CI machine.
const CLI_CHANGE_SEEN_WITHIN: Duration = Duration::from_millis(1500);
#[tokio::test]
async fn logout_with_id_token_hint_ends_the_session_and_returns_to_the_app() {
    let broker = broker_with_logout(None).await;
    let browser = Browser::new(&broker);
    let online = online_login(&broker, &browser).await;
    // A second grant in the same session (SSO), this one offline.
    let request = AuthorizeRequest::new(WEB_APP).scope("openid offline_access");
    let code = match browser.open(&request.url(&broker)).await {
        Landing::Client(r) => r.code().to_string(),
        other => panic!("SSO expected, got {other:?}"),
    };
    let offline = broker.redeem(&WEB_APP, &code, request.verifier()).await;
    offline.assert_ok();
    assert!(has_session(&broker, &browser).await);

    let url = logout_url(
        &broker,
        &[
            ("id_token_hint", online["id_token"].as_str().unwrap()),
            ("post_logout_redirect_uri", SIGNED_OUT),
            ("state", "bye-123"),
        ],
    );
    let res = browser.get_raw(&url).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = res.headers()["location"].to_str().unwrap();
    assert_eq!(location, format!("{SIGNED_OUT}?state=bye-123"));

    assert!(
        !has_session(&broker, &browser).await,
        "the SSO session is gone"
    );
    let info = broker
        .userinfo(online["access_token"].as_str().unwrap())
        .await;
    assert_eq!(
        info.status,
        StatusCode::UNAUTHORIZED,
        "the online grant ended"
    );
    broker
        .refresh(&WEB_APP, offline.refresh_token())
        .await
        .assert_ok();
}

#[tokio::test]
async fn logout_without_a_hint_asks_for_confirmation_first() {
    let broker = broker_with_logout(None).await;
    let browser = Browser::new(&broker);
    online_login(&broker, &browser).await;

    let page = browser.get_raw(&broker.url("/logout")).await;
    assert_eq!(page.status(), StatusCode::OK);
    let body = page.text().await.unwrap();
    assert!(body.contains("confirm-logout"), "{body}");
    assert!(
        has_session(&broker, &browser).await,
        "nothing ends without a confirmation"
    );

    // A cross-site POST without the page's CSRF token is not a confirmation.
    let forged = browser
        .post_raw(
            &broker.url("/logout"),
            &[("confirm", "yes"), ("csrf", "forged")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::OK);
    assert!(has_session(&broker, &browser).await);

    let csrf = hidden_value(&body, "csrf").expect("a csrf field");
    let confirmed = browser
        .post_raw(
            &broker.url("/logout"),
            &[("confirm", "yes"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    assert!(confirmed.text().await.unwrap().contains("signed-out"));
    assert!(!has_session(&broker, &browser).await);
}

#[tokio::test]
async fn an_unregistered_post_logout_redirect_uri_is_refused_without_redirect() {
    let broker = broker_with_logout(None).await;
    let browser = Browser::new(&broker);
    let online = online_login(&broker, &browser).await;
    for target in [
        "https://evil.example/",
        "https://web-app.example/signed-out/x",
        // Spellings that parse to the registered URI are still not it.
        "https://WEB-APP.example/signed-out",
        "https://web-app.example:443/signed-out",
        "https://web-app.example/./signed-out",
    ] {
        let url = logout_url(
            &broker,
            &[
                ("id_token_hint", online["id_token"].as_str().unwrap()),
                ("post_logout_redirect_uri", target),
            ],
        );
        let res = browser.get_raw(&url).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{target}");
        assert!(
            res.headers().get("location").is_none(),
            "never an open redirect"
        );
    }
    // Without proof of the client, even a registered URI is refused.
    let url = logout_url(&broker, &[("post_logout_redirect_uri", SIGNED_OUT)]);
    assert_eq!(
        browser.get_raw(&url).await.status(),
        StatusCode::BAD_REQUEST
    );
    // With client_id it is honoured.
    let url = logout_url(
        &broker,
        &[
            ("client_id", WEB_APP.id),
            ("post_logout_redirect_uri", SIGNED_OUT),
        ],
    );
    let res = browser.get_raw(&url).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a session still needs confirming"
    );
    assert!(has_session(&broker, &browser).await);
}

/// The app's back-channel endpoint on loopback: its URI and the bodies it gets.
async fn receiver() -> (String, mpsc::UnboundedReceiver<String>) {
    backchannel_receiver().await
}

#[tokio::test]
async fn back_channel_receiver_gets_a_logout_token_it_can_verify() {
    let (uri, mut bodies) = receiver().await;
    let broker = broker_with_logout(Some(&uri)).await;
    let browser = Browser::new(&broker);
    let online = online_login(&broker, &browser).await;
    let id_claims = jwt_claims(online["id_token"].as_str().unwrap());

    let url = logout_url(
        &broker,
        &[("id_token_hint", online["id_token"].as_str().unwrap())],
    );
    assert_eq!(browser.get_raw(&url).await.status(), StatusCode::OK);

    let body = tokio::time::timeout(Duration::from_secs(10), bodies.recv())
        .await
        .expect("a logout token within 10 s")
        .expect("a body");
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.to_string())
        .expect("a logout_token field");

    assert_eq!(jwt_header(&token)["typ"], "logout+jwt");
    let claims = broker.verify_with_jwks(&token).await;
    assert_eq!(claims["iss"], broker.issuer());
    assert_eq!(claims["aud"], WEB_APP.id);
    assert_eq!(claims["sub"], id_claims["sub"]);
    assert_eq!(
        claims["sid"], id_claims["sid"],
        "names the session that ended"
    );
    assert!(
        claims.get("nonce").is_none(),
        "a logout token never has a nonce"
    );
    assert!(
        claims["events"]
            .get("http://schemas.openid.net/event/backchannel-logout")
            .is_some()
    );
}

#[tokio::test]
async fn a_back_channel_receiver_that_never_answers_does_not_stall_logout() {
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}/backchannel", silent.local_addr().unwrap());
    let broker = broker_with_logout(Some(&uri)).await;
    let browser = Browser::new(&broker);
    let online = online_login(&broker, &browser).await;
    let started = Instant::now();
    let url = logout_url(
        &broker,
        &[
            ("id_token_hint", online["id_token"].as_str().unwrap()),
            ("post_logout_redirect_uri", SIGNED_OUT),
        ],
    );
    assert_eq!(browser.get_raw(&url).await.status(), StatusCode::SEE_OTHER);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "logout took {:?}",
        started.elapsed()
    );
    assert!(!has_session(&broker, &browser).await);
    drop(silent);
}

async fn post_as(
    broker: &Broker,
    path: &str,
    client: (&str, Option<&str>),
    form: &[(&str, &str)],
) -> (StatusCode, serde_json::Value) {
    let mut req = broker.http().post(broker.url(path));
    let mut fields = form.to_vec();
    match client.1 {
        Some(secret) => req = req.basic_auth(client.0, Some(secret)),
        None => fields.push(("client_id", client.0)),
    }
    let res = req.form(&fields).send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

fn web_app() -> (&'static str, Option<&'static str>) {
    (WEB_APP.id, WEB_APP.secret)
}

#[tokio::test]
async fn revoked_refresh_token_is_inactive_and_refuses_refresh() {
    let broker = broker_with_logout(None).await;
    let browser = Browser::new(&broker);
    let tokens = broker.sign_in(&browser, &WEB_APP, &ADMIN).await;

    let (status, _) = post_as(
        &broker,
        "/revoke",
        web_app(),
        &[
            ("token", tokens.refresh_token()),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    for token in [tokens.refresh_token(), tokens.access_token()] {
        let (status, body) = post_as(&broker, "/introspect", web_app(), &[("token", token)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({ "active": false }), "no detail");
    }
    broker
        .refresh(&WEB_APP, tokens.refresh_token())
        .await
        .assert_error("invalid_grant");
    assert_eq!(
        broker.userinfo(tokens.access_token()).await.status,
        StatusCode::UNAUTHORIZED,
        "the family's access tokens die with it"
    );
}

#[tokio::test]
async fn revocation_of_another_clients_or_unknown_token_is_a_quiet_no_op() {
    let broker = broker_with_logout(None).await;
    let browser = Browser::new(&broker);
    let tokens = broker.sign_in(&browser, &WEB_APP, &ADMIN).await;
    let second = (SECOND_APP.id, SECOND_APP.secret);
    let (status, _) = post_as(
        &broker,
        "/revoke",
        second,
        &[("token", tokens.refresh_token())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post_as(&broker, "/revoke", web_app(), &[("token", "no-such-token")]).await;
    assert_eq!(status, StatusCode::OK);
    broker
        .refresh(&WEB_APP, tokens.refresh_token())
        .await
        .assert_ok();
    let (status, body) = post_as(
        &broker,
        "/revoke",
        (WEB_APP.id, Some("wrong-secret")),
        &[("token", tokens.refresh_token())],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn introspection_of_a_live_token_gives_the_standard_fields() {
    let broker = broker_with_logout(None).await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid email groups");
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.assert_ok();

    let (status, body) = post_as(
        &broker,
        "/introspect",
        (SECOND_APP.id, SECOND_APP.secret),
        &[("token", tokens.access_token())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active"], true);
    assert_eq!(body["sub"], ADMIN.id);
    assert_eq!(body["client_id"], WEB_APP.id);
    assert_eq!(body["aud"], "https://api.example");
    assert_eq!(body["iss"], broker.issuer());
    assert_eq!(body["scope"], "openid email groups");
    assert_eq!(body["groups"], serde_json::json!(["local/admins"]));
    assert!(body["exp"].as_i64().unwrap() > body["iat"].as_i64().unwrap());

    // A public client cannot introspect; a wrong secret cannot either.
    let (status, _) = post_as(
        &broker,
        "/introspect",
        (NATIVE_APP.id, None),
        &[("token", "x")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = post_as(
        &broker,
        "/introspect",
        (WEB_APP.id, Some("nope")),
        &[("token", tokens.access_token())],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tokens_of_a_disabled_user_are_inactive() {
    let broker = broker_with_logout(None).await;
    let carol = broker
        .user_command(&["add", "--email", "carol@example.com"], "carol-pass\n")
        .trim()
        .to_string();
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid offline_access");
    let tokens = broker
        .sign_in_with_password(&browser, &request, "carol@example.com", "carol-pass")
        .await;
    let (_, live) = post_as(
        &broker,
        "/introspect",
        web_app(),
        &[("token", tokens.access_token())],
    )
    .await;
    assert_eq!(live["active"], true);

    // The CLI writes the file behind the server's back: seen within its poll.
    assert!(
        broker
            .user_command_output(&["disable", &carol], "")
            .status
            .success()
    );
    let disabled = Instant::now();
    for token in [tokens.access_token(), tokens.refresh_token()] {
        loop {
            let (_, body) = post_as(&broker, "/introspect", web_app(), &[("token", token)]).await;
            if body == serde_json::json!({ "active": false }) {
                break;
            }
            assert!(disabled.elapsed() < CLI_CHANGE_SEEN_WITHIN, "{body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn client_credentials_token_is_for_the_client_itself() {
    let broker = broker_with_logout(None).await;
    let (status, body) = post_as(
        &broker,
        "/token",
        web_app(),
        &[("grant_type", "client_credentials"), ("scope", "email")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.get("id_token").is_none(),
        "no ID token: nobody logged in"
    );
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["scope"], "email");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(jwt_header(token)["typ"], "at+jwt");
    let claims = broker.verify_with_jwks(token).await;
    assert_eq!(claims["sub"], WEB_APP.id);
    assert_eq!(claims["client_id"], WEB_APP.id);
    assert_eq!(claims["aud"], "https://api.example");
    assert_eq!(claims["scope"], "email");
    assert!(claims.get("gid").is_none());

    // Beyond the client's allowed scopes, or a person's scope: refused.
    let (_, body) = post_as(
        &broker,
        "/token",
        web_app(),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "offline_access"),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_scope");
    // Not a person: userinfo refuses it.
    assert_eq!(
        broker.userinfo(token).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Clients not allowed the grant, and public clients, are refused.
    let (_, body) = post_as(
        &broker,
        "/token",
        (SECOND_APP.id, SECOND_APP.secret),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(body["error"], "unauthorized_client");
    let (_, body) = post_as(
        &broker,
        "/token",
        (NATIVE_APP.id, None),
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(body["error"], "unauthorized_client");
}

#[tokio::test]
async fn discovery_lists_the_logout_revocation_and_introspection_endpoints() {
    let broker = broker_with_logout(None).await;
    let doc: serde_json::Value = broker
        .http()
        .get(broker.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let iss = broker.issuer();
    assert_eq!(doc["end_session_endpoint"], format!("{iss}/logout"));
    assert_eq!(doc["revocation_endpoint"], format!("{iss}/revoke"));
    assert_eq!(doc["introspection_endpoint"], format!("{iss}/introspect"));
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["backchannel_logout_session_supported"], true);
    let grants = doc["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&serde_json::json!("client_credentials")));
}

/// What a broker learnt about a live token is kept for up to `status_cache_lifetime`,
/// but a write to its SQLite file by another process — the CLI disabling the user —
/// is seen within the file watcher's poll (100 ms), far inside a 60 s lifetime. The
/// README states this bound.
#[tokio::test]
async fn a_change_the_cli_writes_reaches_the_running_server_long_before_the_cache_lifetime() {
    let broker = Broker::setup()
        .tokens("status_cache_lifetime = \"60s\"")
        .start()
        .await;
    let tokens = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &ADMIN)
        .await;
    let access = tokens.access_token();
    // Twice: the second answer comes from the cache.
    assert_eq!(broker.userinfo(access).await.status, StatusCode::OK);
    assert_eq!(broker.userinfo(access).await.status, StatusCode::OK);

    assert!(
        broker
            .user_command_output(&["disable", ADMIN.id], "")
            .status
            .success()
    );
    let disabled = Instant::now();
    while broker.userinfo(access).await.status == StatusCode::OK {
        assert!(
            disabled.elapsed() < CLI_CHANGE_SEEN_WITHIN,
            "the disabled user's token still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(broker.introspect(&WEB_APP, access).await["active"], false);
}
