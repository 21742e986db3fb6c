//! The SSO session: single sign-on across clients, what each `prompt` value and
//! `max_age` do with it, what survives a restart, and what disabling a user ends.

use openidconnect::Nonce;
use reqwest::StatusCode;
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, BOB, Broker, Browser, Landing, RelyingParty, SECOND_APP, WEB_APP,
    jwt_claims, jwt_header,
};

/// A browser that has logged in as `ADMIN` for `WEB_APP`, and the ID token it got.
async fn logged_in(broker: &Broker) -> (Browser, String) {
    let browser = Browser::new(broker);
    let tokens = broker.sign_in(&browser, &WEB_APP, &ADMIN).await;
    (browser, tokens.id_token().to_string())
}

/// Opens `/authorize` for `request` and expects a code without any login page.
async fn code_without_login(
    broker: &Broker,
    browser: &Browser,
    request: &AuthorizeRequest,
) -> String {
    match browser.open(&request.url(broker)).await {
        Landing::Client(response) => response.code().to_string(),
        Landing::LoginForm(_) => panic!("SSO expected, but the login form was shown"),
        Landing::Page(p) => panic!("SSO expected, got a page {}:\n{}", p.status, p.body),
    }
}

#[tokio::test]
async fn second_client_gets_a_code_without_a_new_login() {
    let broker = Broker::start().await;
    let (browser, first_id_token) = logged_in(&broker).await;

    let request = AuthorizeRequest::new(SECOND_APP);
    let code = code_without_login(&broker, &browser, &request).await;
    let tokens = broker.redeem(&SECOND_APP, &code, request.verifier()).await;
    tokens.assert_ok();

    let rp = RelyingParty::discover(&broker, &SECOND_APP).await;
    let id_token: openidconnect::core::CoreIdToken =
        tokens.id_token().parse().expect("an ID token");
    let claims = id_token
        .claims(
            &rp.client.id_token_verifier(),
            &Nonce::new(request.nonce.clone()),
        )
        .expect("the second client's ID token verifies, for that client");
    let first = jwt_claims(&first_id_token);
    assert_eq!(claims.subject().as_str(), first["sub"], "the same person");
    assert_eq!(
        claims.auth_time().map(|t| t.timestamp()),
        first["auth_time"].as_i64(),
        "auth_time is the original login, kept across SSO"
    );
    assert_eq!(
        jwt_claims(tokens.id_token())["sid"],
        first["sid"],
        "both ID tokens name the same session"
    );
}

#[tokio::test]
async fn prompt_none_without_a_session_returns_login_required() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).param("prompt", "none");
    let response = browser.open(&request.url(&broker)).await.expect_client();
    response.assert_error("login_required");
    assert_eq!(response.state(), Some(request.state.as_str()));
}

#[tokio::test]
async fn prompt_none_with_a_session_returns_a_code_without_a_form() {
    let broker = Broker::start().await;
    let (browser, _) = logged_in(&broker).await;
    let request = AuthorizeRequest::new(WEB_APP).param("prompt", "none");
    let code = code_without_login(&broker, &browser, &request).await;
    broker
        .redeem(&WEB_APP, &code, request.verifier())
        .await
        .assert_ok();
}

#[tokio::test]
async fn prompt_login_and_max_age_zero_show_the_form_despite_a_session() {
    let broker = Broker::start().await;
    let (browser, first_id_token) = logged_in(&broker).await;

    let forced = AuthorizeRequest::new(WEB_APP).param("prompt", "login");
    browser.open(&forced.url(&broker)).await.expect_form();

    let zero = AuthorizeRequest::new(WEB_APP).param("max_age", "0");
    let form = browser.open(&zero.url(&broker)).await.expect_form();
    // A login a second later gives a later auth_time.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let response = browser
        .submit(&form, ADMIN.username, ADMIN.password)
        .await
        .expect_client();
    let tokens = broker
        .redeem(&WEB_APP, response.code(), zero.verifier())
        .await;
    assert!(
        jwt_claims(tokens.id_token())["auth_time"].as_i64()
            > jwt_claims(&first_id_token)["auth_time"].as_i64(),
        "a forced login is a new authentication"
    );

    // A generous max_age is satisfied by the session.
    let generous = AuthorizeRequest::new(WEB_APP).param("max_age", "3600");
    code_without_login(&broker, &browser, &generous).await;
}

#[tokio::test]
async fn prompt_none_combined_with_another_value_is_invalid_request() {
    let broker = Broker::start().await;
    let (browser, _) = logged_in(&broker).await;
    let request = AuthorizeRequest::new(WEB_APP).param("prompt", "none login");
    browser
        .open(&request.url(&broker))
        .await
        .expect_client()
        .assert_error("invalid_request");
}

#[tokio::test]
async fn prompt_consent_is_consent_required() {
    let broker = Broker::start().await;
    let (browser, _) = logged_in(&broker).await;
    let request = AuthorizeRequest::new(WEB_APP).param("prompt", "consent");
    browser
        .open(&request.url(&broker))
        .await
        .expect_client()
        .assert_error("consent_required");
}

#[tokio::test]
async fn prompt_select_account_shows_the_provider_choice() {
    let broker = Broker::start().await;
    let (browser, _) = logged_in(&broker).await;
    let request = AuthorizeRequest::new(WEB_APP).param("prompt", "select_account");
    let page = browser.open(&request.url(&broker)).await.expect_page();
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("/login/local?req="),
        "a choice of providers:\n{}",
        page.body
    );
}

#[tokio::test]
async fn id_token_hint_for_another_user_under_prompt_none_is_login_required() {
    let broker = Broker::start().await;
    let (browser, admin_id_token) = logged_in(&broker).await;
    let bob_id_token = broker
        .sign_in(&Browser::new(&broker), &WEB_APP, &BOB)
        .await
        .id_token()
        .to_string();

    let other = AuthorizeRequest::new(WEB_APP)
        .param("prompt", "none")
        .param("id_token_hint", &bob_id_token);
    browser
        .open(&other.url(&broker))
        .await
        .expect_client()
        .assert_error("login_required");

    let same = AuthorizeRequest::new(WEB_APP)
        .param("prompt", "none")
        .param("id_token_hint", &admin_id_token);
    code_without_login(&broker, &browser, &same).await;
}

#[tokio::test]
async fn restart_keeps_sessions_refresh_tokens_and_signing_keys() {
    let mut broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid profile email offline_access");
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    let old_id_token = tokens.id_token().to_string();
    let old_kid = jwt_header(&old_id_token)["kid"]
        .as_str()
        .expect("a kid")
        .to_string();

    broker.stop();
    broker.restart().await;

    let sso = AuthorizeRequest::new(WEB_APP);
    let code = code_without_login(&broker, &browser, &sso).await;
    broker
        .redeem(&WEB_APP, &code, sso.verifier())
        .await
        .assert_ok();

    let refreshed = broker.refresh(&WEB_APP, tokens.refresh_token()).await;
    refreshed.assert_ok();
    assert_eq!(
        jwt_header(refreshed.id_token())["kid"].as_str(),
        Some(old_kid.as_str()),
        "the same key signs after the restart"
    );
    assert_eq!(
        broker.userinfo(tokens.access_token()).await.status,
        StatusCode::OK
    );

    let rp = RelyingParty::discover(&broker, &WEB_APP).await;
    let id_token: openidconnect::core::CoreIdToken = old_id_token.parse().expect("an ID token");
    id_token
        .claims(
            &rp.client.id_token_verifier(),
            &Nonce::new(request.nonce.clone()),
        )
        .expect("an ID token from before the restart verifies against the new /jwks");
}

#[tokio::test]
async fn disabled_user_loses_session_codes_refresh_tokens_and_userinfo() {
    let broker = Broker::start().await;
    let carol_id = broker
        .user_command(
            &["add", "--email", "carol@example.com", "--username", "carol"],
            "carol-password\n",
        )
        .trim()
        .to_string();
    assert!(!carol_id.is_empty());
    let listed = broker.user_command(&["list"], "");
    assert!(
        listed.contains(&carol_id) && listed.contains("carol@example.com"),
        "{listed}"
    );

    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid email offline_access");
    let tokens = broker
        .sign_in_with_password(&browser, &request, "carol", "carol-password")
        .await;
    assert_eq!(
        jwt_claims(tokens.id_token())["sub"],
        carol_id.as_str(),
        "sub is the user id"
    );
    let unredeemed = AuthorizeRequest::new(SECOND_APP);
    let pending_code = code_without_login(&broker, &browser, &unredeemed).await;

    broker.user_command(&["disable", &carol_id], "");

    let after = browser
        .open(&AuthorizeRequest::new(WEB_APP).url(&broker))
        .await;
    let form = after.expect_form();
    broker
        .redeem(&SECOND_APP, &pending_code, unredeemed.verifier())
        .await
        .assert_error("invalid_grant");
    broker
        .refresh(&WEB_APP, tokens.refresh_token())
        .await
        .assert_error("invalid_grant");
    broker
        .userinfo(tokens.access_token())
        .await
        .assert_invalid_token();

    let refused = browser.submit(&form, "carol", "carol-password").await;
    assert!(
        !matches!(refused, Landing::Client(_)),
        "a disabled user cannot log in again"
    );
}

#[tokio::test]
async fn every_login_gets_a_new_session_id_and_the_old_one_stops_working() {
    let broker = Broker::start().await;
    let (browser, _) = logged_in(&broker).await;
    let old = browser.cookie("sb_session").expect("a session cookie");

    let forced = AuthorizeRequest::new(WEB_APP).param("prompt", "login");
    browser.log_in(&forced.url(&broker), &ADMIN).await;
    let new = browser.cookie("sb_session").expect("a session cookie");
    assert_ne!(new, old, "re-authentication replaces the session id");

    let replay = Browser::new(&broker);
    replay.add_cookie(&format!("sb_session={old}"));
    replay
        .open(&AuthorizeRequest::new(WEB_APP).url(&broker))
        .await
        .expect_form();

    let forged = Browser::new(&broker);
    forged.add_cookie("sb_session=made-up.value");
    forged
        .open(&AuthorizeRequest::new(WEB_APP).url(&broker))
        .await
        .expect_form();

    // The new cookie still gives SSO.
    code_without_login(&broker, &browser, &AuthorizeRequest::new(SECOND_APP)).await;
}

#[tokio::test]
async fn setting_a_password_ends_sessions_and_refresh_tokens() {
    let broker = Broker::start().await;
    let dave_id = broker
        .user_command(&["add", "--email", "dave@example.com"], "old-password\n")
        .trim()
        .to_string();
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).scope("openid offline_access");
    let tokens = broker
        .sign_in_with_password(&browser, &request, "dave@example.com", "old-password")
        .await;

    broker.user_command(&["set-password", &dave_id], "new-password\n");

    broker
        .refresh(&WEB_APP, tokens.refresh_token())
        .await
        .assert_error("invalid_grant");
    let form = browser
        .open(&AuthorizeRequest::new(WEB_APP).url(&broker))
        .await
        .expect_form();
    let old = browser
        .submit(&form, "dave@example.com", "old-password")
        .await
        .expect_form();
    assert_eq!(
        old.page.status,
        StatusCode::UNAUTHORIZED,
        "the old password is gone"
    );
    let response = browser
        .submit(&old, "dave@example.com", "new-password")
        .await
        .expect_client();
    assert!(!response.code().is_empty());
}
