#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The TOTP second factor through the real broker binary: set up on the account page
//! (the test reads the key from the page and computes codes as an authenticator app
//! does), asked for after the password, refused when wrong, replayed or too often,
//! recovery codes that work once, a client that requires it, `acr_values` stepping up
//! a one-factor session, turning it off, an operator's reset, and `amr` / `acr` in the
//! ID tokens (refreshed ones too). One test drives headless Chromium and saves
//! screenshots of the set-up page and the code page.

use aws_lc_rs::hmac;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, BOB, Broker, Browser, Chrome, Landing, LoginForm, NATIVE_APP, Page,
    SECOND_APP, TestClient, TokenReply, WEB_APP, hidden_value, jwt_claims,
};

const ACR_PWD: &str = "urn:switchboard:acr:pwd";
const ACR_MFA: &str = "urn:switchboard:acr:mfa";
const STEP_SECS: i64 = 30;

/// An authenticator app: the key from the set-up page, and the last time step whose
/// code it handed out (the broker accepts each step once, and steps within one of now).
struct Authenticator {
    secret: Vec<u8>,
    last_step: Option<i64>,
}

fn now_step() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap() / STEP_SECS
}

/// RFC 6238 with SHA-1 and six digits, written here independently of the broker.
fn totp(secret: &[u8], step: i64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &u64::try_from(step).unwrap().to_be_bytes());
    let mac = mac.as_ref();
    let offset = usize::from(mac[19] & 0x0f);
    let word = u32::from_be_bytes([
        mac[offset] & 0x7f,
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]);
    format!("{:06}", word % 1_000_000)
}

impl Authenticator {
    fn from_key(text: &str) -> Self {
        let secret = data_encoding::BASE32_NOPAD
            .decode(text.trim().as_bytes())
            .unwrap_or_else(|e| panic!("the key {text:?} is base32: {e}"));
        assert_eq!(secret.len(), 20, "a 160-bit key");
        Authenticator {
            secret,
            last_step: None,
        }
    }

    /// The code of a step the broker has not seen yet: the step after the last one
    /// used (waiting for the clock when that is more than one step ahead of now).
    async fn next_code(&mut self) -> String {
        loop {
            let now = now_step();
            let step = self.last_step.map_or(now, |l| (l + 1).max(now));
            if step <= now + 1 {
                self.last_step = Some(step);
                return totp(&self.secret, step);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The code of the last step used: a replay.
    fn last_code(&self) -> String {
        totp(&self.secret, self.last_step.unwrap())
    }

    /// A six-digit code no step near now has.
    fn wrong_code(&self) -> String {
        let near: Vec<String> = (now_step() - 3..=now_step() + 3)
            .map(|s| totp(&self.secret, s))
            .collect();
        (0..1_000_000)
            .map(|n| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
            .find(|c| !near.contains(c))
            .unwrap()
    }
}

/// The text of the element with `id`, up to its first tag.
fn text_of(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let start = at + html[at..].find('>')? + 1;
    let end = start + html[start..].find('<')?;
    Some(html[start..end].trim().to_string())
}

/// The recovery codes listed on a page.
fn recovery_codes(html: &str) -> Vec<String> {
    let Some(at) = html.find("id=\"recovery-codes\"") else {
        return Vec::new();
    };
    let list = &html[at..at + html[at..].find("</ul>").unwrap()];
    list.split("<code>")
        .skip(1)
        .map(|c| c[..c.find("</code>").unwrap()].to_string())
        .collect()
}

async fn account(broker: &Broker, browser: &Browser) -> Page {
    browser.open(&broker.url("/account")).await.expect_page()
}

async fn account_csrf(broker: &Broker, browser: &Browser) -> String {
    let page = account(broker, browser).await;
    hidden_value(&page.body, "csrf")
        .unwrap_or_else(|| panic!("no CSRF field on the account page:\n{}", page.body))
}

async fn post(
    browser: &Browser,
    broker: &Broker,
    path: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let res = browser.post_raw(&broker.url(path), fields).await;
    (res.status(), res.text().await.unwrap())
}

/// Sets up the second factor on the account page of `browser` (signed in, recently):
/// the authenticator and the ten recovery codes.
async fn enrol(broker: &Broker, browser: &Browser) -> (Authenticator, Vec<String>) {
    let csrf = account_csrf(broker, browser).await;
    let (status, page) = post(browser, broker, "/account/mfa/enrol", &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<svg"), "an inline SVG QR code:\n{page}");
    assert!(!page.contains("<script"), "no script on the set-up page");
    let key = text_of(&page, "totp-secret").expect("the key as text");
    let mut app = Authenticator::from_key(&key);
    let csrf = hidden_value(&page, "csrf").unwrap();
    let code = app.next_code().await;
    let (status, page) = post(
        browser,
        broker,
        "/account/mfa/confirm",
        &[("csrf", &csrf), ("code", &code)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"mfa-enrolled\""), "{page}");
    let codes = recovery_codes(&page);
    assert_eq!(codes.len(), 10, "{page}");
    (app, codes)
}

/// Opens `request` in `browser` and gives Bob's password: whatever comes next.
async fn password_step(broker: &Broker, browser: &Browser, request: &AuthorizeRequest) -> Landing {
    let form = browser.open(&request.url(broker)).await.expect_form();
    assert!(
        form.page.body.contains("id=\"password\""),
        "the password form first"
    );
    browser.submit(&form, BOB.username, BOB.password).await
}

/// The second-factor form; panics on anything else.
fn code_form(landing: Landing) -> LoginForm {
    let form = landing.expect_form();
    assert_eq!(form.action.path(), "/second-factor", "{}", form.page.body);
    assert!(form.page.body.contains("autocomplete=\"one-time-code\""));
    form
}

async fn give_code(browser: &Browser, form: &LoginForm, code: &str) -> Landing {
    browser
        .post_form(
            form,
            &[("req", &form.req), ("csrf", &form.csrf), ("code", code)],
        )
        .await
}

/// The code's tokens, and the ID token's claims.
async fn redeem(
    broker: &Broker,
    request: &AuthorizeRequest,
    landing: Landing,
) -> (TokenReply, Value) {
    let response = landing.expect_client();
    let tokens = broker
        .redeem(&request.client, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    let claims = broker.verify_with_jwks(tokens.id_token()).await;
    (tokens, claims)
}

fn amr(claims: &Value) -> Vec<&str> {
    claims["amr"]
        .as_array()
        .unwrap_or_else(|| panic!("no amr in {claims}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn offline(client: TestClient) -> AuthorizeRequest {
    AuthorizeRequest::new(client).scope("openid profile offline_access")
}

/// Bob, signed in to WEB_APP with his password (no second factor yet) in a browser.
async fn bob_signed_in(broker: &Broker) -> (Browser, Value) {
    let browser = Browser::new(broker);
    let request = offline(WEB_APP);
    let landing = password_step(broker, &browser, &request).await;
    let (_, claims) = redeem(broker, &request, landing).await;
    (browser, claims)
}

#[tokio::test]
async fn a_second_factor_set_up_on_the_account_page_is_asked_for_after_the_password() {
    let broker = Broker::start().await;
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
        discovery["acr_values_supported"],
        serde_json::json!([ACR_PWD, ACR_MFA])
    );
    let claims_supported = discovery["claims_supported"].as_array().unwrap();
    assert!(claims_supported.contains(&"amr".into()) && claims_supported.contains(&"acr".into()));

    // With the password alone: one factor.
    let (browser, claims) = bob_signed_in(&broker).await;
    assert_eq!(amr(&claims), ["pwd"]);
    assert_eq!(claims["acr"], ACR_PWD);

    // Set-up: a wrong confirmation code leaves it off.
    let page = account(&broker, &browser).await;
    assert!(page.body.contains("id=\"enrol-mfa\""), "{}", page.body);
    let csrf = hidden_value(&page.body, "csrf").unwrap();
    let (_, setup) = post(&browser, &broker, "/account/mfa/enrol", &[("csrf", &csrf)]).await;
    let app = Authenticator::from_key(&text_of(&setup, "totp-secret").unwrap());
    let (status, again) = post(
        &browser,
        &broker,
        "/account/mfa/confirm",
        &[("csrf", &csrf), ("code", &app.wrong_code())],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(again.contains("id=\"mfa-error\""), "{again}");
    assert_eq!(
        text_of(&again, "totp-secret"),
        text_of(&setup, "totp-secret"),
        "the same key is shown again"
    );
    assert!(
        account(&broker, &browser)
            .await
            .body
            .contains("id=\"enrol-mfa\""),
        "still off"
    );
    let (mut app, codes) = enrol(&broker, &browser).await;
    let page = account(&broker, &browser).await;
    assert_eq!(
        text_of(&page.body, "recovery-codes-left").as_deref(),
        Some("10")
    );

    // Signed out (a new browser), the password is not enough any more.
    let request = offline(WEB_APP);
    let fresh = Browser::new(&broker);
    let form = code_form(password_step(&broker, &fresh, &request).await);
    // The confirmation's code was used: replaying it is refused.
    let refused = give_code(&fresh, &form, &app.last_code()).await;
    let refused = match refused {
        Landing::LoginForm(f) => f.page,
        other => panic!("expected the code form again, got {other:?}"),
    };
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body.contains("id=\"login-error\""));
    let code = app.next_code().await;
    let (tokens, claims) = redeem(&broker, &request, give_code(&fresh, &form, &code).await).await;
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
    assert_eq!(claims["acr"], ACR_MFA);
    assert_eq!(claims["sub"], BOB.id);
    // A refreshed ID token says the same.
    let refreshed = broker.refresh(&WEB_APP, tokens.refresh_token()).await;
    let refreshed_claims = broker.verify_with_jwks(refreshed.id_token()).await;
    assert_eq!(amr(&refreshed_claims), ["pwd", "otp", "mfa"]);
    assert_eq!(refreshed_claims["acr"], ACR_MFA);

    // The same code in another login: a replay, refused.
    let other = Browser::new(&broker);
    let request = offline(WEB_APP);
    let form = code_form(password_step(&broker, &other, &request).await);
    let replay = give_code(&other, &form, &code).await.expect_form();
    assert_eq!(replay.page.status, StatusCode::UNAUTHORIZED);
    // A recovery code instead (typed in capitals, without dashes): works, once.
    let typed = codes[0].replace('-', "").to_uppercase();
    let (_, claims) = redeem(&broker, &request, give_code(&other, &form, &typed).await).await;
    assert_eq!(amr(&claims), ["pwd", "mfa"]);
    assert_eq!(claims["acr"], ACR_MFA);
    let third = Browser::new(&broker);
    let form = code_form(password_step(&broker, &third, &offline(WEB_APP)).await);
    let used = give_code(&third, &form, &codes[0]).await.expect_form();
    assert_eq!(
        used.page.status,
        StatusCode::UNAUTHORIZED,
        "a recovery code works once"
    );
    let page = account(&broker, &other).await;
    assert_eq!(
        text_of(&page.body, "recovery-codes-left").as_deref(),
        Some("9")
    );

    let log = broker.log();
    let key = data_encoding::BASE32_NOPAD.encode(&app.secret);
    assert!(!log.contains(&key), "the key is never logged");
    assert!(
        !log.contains(&code) && !log.contains(&codes[1]),
        "codes are never logged"
    );
}

#[tokio::test]
async fn the_code_page_needs_the_first_factor_in_the_same_browser() {
    let broker = Broker::start().await;
    let (browser, _) = bob_signed_in(&broker).await;
    let (mut app, _) = enrol(&broker, &browser).await;

    // No pending login, or one whose first factor has not passed: no code page.
    let res = browser.get_raw(&broker.url("/second-factor")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let fresh = Browser::new(&broker);
    let request = offline(WEB_APP);
    let password_form = fresh.open(&request.url(&broker)).await.expect_form();
    let res = fresh
        .get_raw(&broker.url(&format!("/second-factor?req={}", password_form.req)))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = fresh
        .post_raw(
            &broker.url("/second-factor"),
            &[
                ("req", password_form.req.as_str()),
                ("csrf", password_form.csrf.as_str()),
                ("code", "123456"),
            ],
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "a code never stands in for the password"
    );

    // The code page of one browser is not another's, and needs its CSRF token.
    let form = code_form(
        fresh
            .submit(&password_form, BOB.username, BOB.password)
            .await,
    );
    let stranger = Browser::new(&broker);
    let res = stranger
        .get_raw(&broker.url(&format!("/second-factor?req={}", form.req)))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let forged = fresh
        .post_form(
            &form,
            &[("req", &form.req), ("csrf", "forged"), ("code", "123456")],
        )
        .await
        .expect_page();
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let code = app.next_code().await;
    let (_, claims) = redeem(&broker, &request, give_code(&fresh, &form, &code).await).await;
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
}

#[tokio::test]
async fn wrong_codes_are_refused_five_end_the_login_and_the_person_is_throttled() {
    let broker = Broker::start().await;
    let (browser, _) = bob_signed_in(&broker).await;
    let (mut app, _) = enrol(&broker, &browser).await;

    let attacker = Browser::new(&broker);
    let form = code_form(password_step(&broker, &attacker, &offline(WEB_APP)).await);
    let wrong = app.wrong_code();
    for attempt in 1..5 {
        let page = give_code(&attacker, &form, &wrong).await.expect_form();
        assert_eq!(
            page.page.status,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let ended = give_code(&attacker, &form, &wrong).await.expect_page();
    assert_eq!(ended.status, StatusCode::FORBIDDEN, "{}", ended.body);
    assert!(
        ended.body.contains("Too many wrong codes"),
        "{}",
        ended.body
    );
    // The login is over: even the right code does nothing on it.
    let right = app.next_code().await;
    let over = give_code(&attacker, &form, &right).await.expect_page();
    assert_eq!(over.status, StatusCode::BAD_REQUEST);

    // A new login gets past the password, but the person's codes are throttled for
    // the window: the right code is refused too.
    let again = Browser::new(&broker);
    let form = code_form(password_step(&broker, &again, &offline(WEB_APP)).await);
    let throttled = give_code(&again, &form, &right).await.expect_form();
    assert_eq!(throttled.page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.page.body.contains("Too many attempts"));
}

#[tokio::test]
async fn a_client_that_requires_mfa_sends_a_person_without_it_to_set_it_up_then_steps_up() {
    let broker = Broker::setup()
        .client(SECOND_APP.id, "require_mfa = true")
        .start()
        .await;
    // Bob has no second factor: signed in, but sent to set one up, with no code.
    let browser = Browser::new(&broker);
    let request = offline(SECOND_APP);
    let page = password_step(&broker, &browser, &request)
        .await
        .expect_page();
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("id=\"set-up-mfa\""), "{}", page.body);
    let (mut app, _) = enrol(&broker, &browser).await;

    // Back to the app: the one-factor session steps up with a code alone.
    let request = offline(SECOND_APP);
    let form = code_form(browser.open(&request.url(&broker)).await);
    let code = app.next_code().await;
    let (tokens, claims) = redeem(&broker, &request, give_code(&browser, &form, &code).await).await;
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
    assert_eq!(claims["acr"], ACR_MFA);
    let refreshed = broker.refresh(&SECOND_APP, tokens.refresh_token()).await;
    assert_eq!(
        broker.verify_with_jwks(refreshed.id_token()).await["acr"],
        ACR_MFA
    );
    // The stepped-up session serves both apps without another question.
    for client in [SECOND_APP, WEB_APP] {
        let request = offline(client);
        let landing = browser.open(&request.url(&broker)).await;
        let (_, claims) = redeem(&broker, &request, landing).await;
        assert_eq!(amr(&claims), ["pwd", "otp", "mfa"], "{}", client.id);
    }
    // In a new browser, the client's sign-in asks for the code after the password.
    let fresh = Browser::new(&broker);
    let request = offline(SECOND_APP);
    let form = code_form(password_step(&broker, &fresh, &request).await);
    let code = app.next_code().await;
    let (_, claims) = redeem(&broker, &request, give_code(&fresh, &form, &code).await).await;
    assert_eq!(claims["acr"], ACR_MFA);
}

#[tokio::test]
async fn acr_values_asking_for_mfa_step_up_a_one_factor_session() {
    let broker = Broker::start().await;
    let (browser, claims) = bob_signed_in(&broker).await;
    assert_eq!(claims["acr"], ACR_PWD);
    let (mut app, _) = enrol(&broker, &browser).await;

    // The session is still the one-factor sign-in: it answers a plain request…
    let plain = offline(WEB_APP);
    let (_, claims) = redeem(&broker, &plain, browser.open(&plain.url(&broker)).await).await;
    assert_eq!(amr(&claims), ["pwd"]);
    // …but not one asking for MFA silently…
    let silent = offline(WEB_APP)
        .param("acr_values", ACR_MFA)
        .param("prompt", "none");
    browser
        .open(&silent.url(&broker))
        .await
        .expect_client()
        .assert_error("interaction_required");
    // …and asks for the second factor alone (no password) for one that may ask.
    let asking = offline(WEB_APP).param("acr_values", &format!("{ACR_PWD} {ACR_MFA}"));
    let form = code_form(browser.open(&asking.url(&broker)).await);
    let code = app.next_code().await;
    let (_, claims) = redeem(&broker, &asking, give_code(&browser, &form, &code).await).await;
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
    assert_eq!(claims["acr"], ACR_MFA);
    // Now the session has it: the silent request is answered.
    let silent = offline(WEB_APP)
        .param("acr_values", ACR_MFA)
        .param("prompt", "none");
    let (_, claims) = redeem(&broker, &silent, browser.open(&silent.url(&broker)).await).await;
    assert_eq!(claims["acr"], ACR_MFA);
    // max_age still forces a fresh sign-in: password, then the code.
    let fresh = offline(WEB_APP).param("max_age", "0");
    let form = code_form(password_step(&broker, &browser, &fresh).await);
    let code = app.next_code().await;
    let (_, claims) = redeem(&broker, &fresh, give_code(&browser, &form, &code).await).await;
    assert_eq!(claims["acr"], ACR_MFA);
}

#[tokio::test]
async fn turning_it_off_needs_a_code_and_new_recovery_codes_replace_the_old() {
    let broker = Broker::start().await;
    let (browser, _) = bob_signed_in(&broker).await;
    let (app, old_codes) = enrol(&broker, &browser).await;

    // New recovery codes (a recent sign-in is enough): the old ones stop working.
    let csrf = account_csrf(&broker, &browser).await;
    let (status, page) = post(
        &browser,
        &broker,
        "/account/mfa/recovery-codes",
        &[("csrf", &csrf)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let new_codes = recovery_codes(&page);
    assert_eq!(new_codes.len(), 10);
    assert!(new_codes.iter().all(|c| !old_codes.contains(c)));

    // Turning off with a wrong code or an old recovery code is refused.
    for wrong in [app.wrong_code(), old_codes[0].clone()] {
        let (status, page) = post(
            &browser,
            &broker,
            "/account/mfa/disable",
            &[("csrf", &csrf), ("code", &wrong)],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
    }
    assert!(
        account(&broker, &browser)
            .await
            .body
            .contains("id=\"disable-mfa\""),
        "still on"
    );
    // A new recovery code turns it off.
    let res = browser
        .post_raw(
            &broker.url("/account/mfa/disable"),
            &[("csrf", csrf.as_str()), ("code", new_codes[0].as_str())],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(
        account(&broker, &browser)
            .await
            .body
            .contains("id=\"enrol-mfa\"")
    );
    // And the password alone signs in again.
    let (_, claims) = bob_signed_in(&broker).await;
    assert_eq!(amr(&claims), ["pwd"]);
    assert_eq!(claims["acr"], ACR_PWD);
    // A form without its CSRF token changes nothing.
    let (status, _) = post(
        &browser,
        &broker,
        "/account/mfa/enrol",
        &[("csrf", "forged")],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_operator_resets_a_lost_second_factor() {
    let broker = Broker::setup()
        .extra(
            "[roles]\nadmin_role = \"admin\"\n[roles.permissions]\nadmin = [\"admin:*\"]\n\
             [[roles.rules]]\nrole = \"admin\"\nprovider = \"local\"\ngroup = \"admins\"",
        )
        .start()
        .await;
    let (browser, _) = bob_signed_in(&broker).await;
    enrol(&broker, &browser).await;
    let request = AuthorizeRequest::new(WEB_APP).scope("openid permissions");
    let response = Browser::new(&broker)
        .log_in(&request.url(&broker), &ADMIN)
        .await;
    let admin = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await
        .access_token()
        .to_string();
    let reset = |who: &str| {
        broker
            .http()
            .delete(broker.url(&format!("/admin/api/v1/users/{who}/mfa")))
            .bearer_auth(&admin)
            .send()
    };
    assert_eq!(
        reset(BOB.id).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        reset(BOB.id).await.unwrap().status(),
        StatusCode::NOT_FOUND,
        "nothing left"
    );
    assert_eq!(
        reset("nobody").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let (_, claims) = bob_signed_in(&broker).await;
    assert_eq!(amr(&claims), ["pwd"], "the password alone again");
    let audit: Value = broker
        .http()
        .get(broker.url(&format!(
            "/admin/api/v1/audit?subject={}&type=mfa_removed",
            BOB.id
        )))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(audit.to_string().contains("user:user-admin"), "{audit}");
}

/// A stand-in for a native app's loopback listener: answers every request with a
/// small page, so the browser lands somewhere real. Its port.
async fn loopback_app() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf).await;
            let body = "<!doctype html><p id=\"app\">Back at the app</p>";
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(reply.as_bytes()).await;
        }
    });
    port
}

#[tokio::test]
async fn in_a_real_browser_a_person_sets_up_totp_and_signs_in_with_a_code() {
    let Some(chrome) = Chrome::start("mfa").await else {
        return;
    };
    let broker = Broker::start().await;
    let port = loopback_app().await;
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let at_app = |u: &url::Url| u.port() == Some(port) && u.path() == "/callback";
    let first = AuthorizeRequest::new(NATIVE_APP).param("redirect_uri", &redirect_uri);
    chrome.open(&first.url(&broker)).await;
    chrome.sign_in(&BOB).await;
    chrome.wait_for_url("the app", at_app).await;
    chrome.open(&broker.url("/account")).await;
    chrome.wait_for_id("enrol-mfa").await.click().await;
    let key = chrome.wait_for_id("totp-secret").await.text().await;
    chrome.wait_for("#qr-code svg").await;
    let shot = chrome.screenshot("mfa_enrol").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 0);
    let mut app = Authenticator::from_key(&key);
    let code = app.next_code().await;
    chrome.wait_for_id("code").await.send_keys(&code).await;
    chrome.wait_for_id("confirm-mfa").await.click().await;
    chrome.wait_for_id("mfa-enrolled").await;
    let codes = chrome.wait_for_id("recovery-codes").await.text().await;
    assert_eq!(
        codes.lines().filter(|l| !l.trim().is_empty()).count(),
        10,
        "{codes}"
    );
    chrome.screenshot("mfa_recovery_codes").await;

    // A new sign-in (prompt=login) asks for the code after the password.
    let again = AuthorizeRequest::new(NATIVE_APP)
        .param("redirect_uri", &redirect_uri)
        .param("prompt", "login");
    chrome.open(&again.url(&broker)).await;
    chrome.sign_in(&BOB).await;
    chrome.wait_for_id("verify-code").await;
    let shot = chrome.screenshot("mfa_code").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 0);
    let code = app.next_code().await;
    chrome.wait_for_id("code").await.send_keys(&code).await;
    chrome.wait_for_id("verify-code").await.click().await;
    let landed = chrome.wait_for_url("the app", at_app).await;
    chrome.close().await;
    let code = landed
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.to_string())
        .expect("a code for the app");
    let tokens = broker
        .token_request(
            &NATIVE_APP,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", again.verifier().unwrap()),
            ],
        )
        .await;
    let claims = jwt_claims(tokens.id_token());
    assert_eq!(amr(&claims), ["pwd", "otp", "mfa"]);
    assert_eq!(claims["acr"], ACR_MFA);
}
