#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A person's whole self-service journey in a real browser (headless Chromium through
//! chromedriver) against the real broker, with the mails going over real SMTP to a
//! sink on loopback: create an account, confirm it from the mail, sign in to the app,
//! set up an authenticator app (TOTP), sign out and in again with password and code,
//! change the password on the account page, forget it, reset it from the mail — and
//! the app's old refresh tokens are refused. Every page is saved as a screenshot under
//! target/screenshots/.

use std::time::Duration;
use switchboard_e2e::totp::Authenticator;
use switchboard_e2e::{AuthorizeRequest, Broker, Chrome, SmtpSink, WEB_APP, jwt_claims};
use url::Url;

const MAIL_WAIT: Duration = Duration::from_secs(15);
const USERNAME: &str = "robin";
const EMAIL: &str = "robin@example.com";
const FIRST_PASSWORD: &str = "lantern-orbit-ferry";
const SECOND_PASSWORD: &str = "meadow-quartz-harbour";
const THIRD_PASSWORD: &str = "copper-willow-summit";

/// The link starting with `prefix` in mail number `n` (1-based) of the sink, sent to
/// the person.
async fn link_in_mail(sink: &SmtpSink, n: usize, prefix: &str) -> Url {
    let mails = sink.wait_for(n, MAIL_WAIT).await;
    let mail = &mails[n - 1];
    assert_eq!(mail.to, vec![EMAIL.to_string()]);
    let link = mail
        .link(prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in {}", mail.decoded()));
    Url::parse(&link).unwrap()
}

/// On the broker's password form: types `login` and `password` and presses "Sign in".
async fn password_form(chrome: &Chrome, login: &str, password: &str) {
    chrome.wait_for_id("username").await.send_keys(login).await;
    chrome
        .wait_for_id("password")
        .await
        .send_keys(password)
        .await;
    chrome.wait_for("button[type=submit]").await.click().await;
}

/// On the second-factor page: types the app's next code and presses "Verify".
async fn second_factor(chrome: &Chrome, app: &mut Authenticator) {
    chrome
        .wait_for_id("code")
        .await
        .send_keys(&app.next_code().await)
        .await;
    chrome.wait_for_id("verify-code").await.click().await;
}

/// Waits until the browser lands at the app's redirect URI and returns the code.
async fn code_at_the_app(chrome: &Chrome) -> String {
    let landed = chrome
        .wait_for_url("the app's redirect URI", |u| {
            u.as_str().starts_with(WEB_APP.redirect_uri)
        })
        .await;
    landed
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code at {landed}"))
}

#[tokio::test]
async fn a_person_registers_confirms_signs_in_changes_and_resets_their_password() {
    let Some(chrome) = Chrome::start("self_service_browser").await else {
        return;
    };
    let sink = SmtpSink::start().await;
    let broker = Broker::setup()
        .env("BROKER_PROVIDERS__LOCAL__ALLOW_REGISTRATION", "true")
        .env("BROKER_PROVIDERS__LOCAL__ALLOW_PASSWORD_RESET", "true")
        .extra(&format!(
            "[email]\nsmtp_url = \"smtp+plain://127.0.0.1:{}\"\nfrom = \"Switchboard <id@example.com>\"\nretry_delay = \"1s\"",
            sink.port()
        ))
        .start()
        .await;
    let journey = async {
        // 1. The app sends the person to the broker; they choose "Create an account".
        let request = AuthorizeRequest::new(WEB_APP).scope("openid email profile offline_access");
        chrome.open(&request.url(&broker)).await;
        chrome.wait_for_id("register").await.click().await;
        chrome.wait_for_id("email").await;
        chrome.screenshot("self_service_register").await;
        chrome
            .wait_for_id("username")
            .await
            .send_keys(USERNAME)
            .await;
        chrome.wait_for_id("email").await.send_keys(EMAIL).await;
        chrome
            .wait_for_id("name")
            .await
            .send_keys("Robin Example")
            .await;
        chrome
            .wait_for_id("password")
            .await
            .send_keys(FIRST_PASSWORD)
            .await;
        chrome.wait_for("button[type=submit]").await.click().await;
        chrome.wait_for_id("register-sent").await;
        chrome.screenshot("self_service_register_sent").await;

        // 2. The mail's link, then the button on the page it opens.
        let confirm = format!("{}/register/local/confirm?token=", broker.issuer());
        chrome.open(&link_in_mail(&sink, 1, &confirm).await).await;
        chrome
            .wait_for_id("confirm-registration")
            .await
            .click()
            .await;
        chrome.wait_for_id("register-confirmed").await;
        chrome.screenshot("self_service_register_confirmed").await;

        // 3. Signing in to the app with the new account.
        let request = AuthorizeRequest::new(WEB_APP).scope("openid email profile offline_access");
        chrome.open(&request.url(&broker)).await;
        password_form(&chrome, USERNAME, FIRST_PASSWORD).await;
        let code = code_at_the_app(&chrome).await;
        let tokens = broker.redeem(&WEB_APP, &code, request.verifier()).await;
        let claims = jwt_claims(tokens.id_token());
        assert_eq!(claims["preferred_username"], USERNAME);
        assert_eq!(claims["email"], EMAIL);
        assert_eq!(claims["email_verified"], true);
        let first_refresh = tokens.refresh_token().to_string();

        // 4. An authenticator app, set up on the account page: the key from the
        //    page, a code from it, and the recovery codes shown once.
        chrome.open(&broker.url("/account")).await;
        chrome.wait_for_id("enrol-mfa").await.click().await;
        let key = chrome.wait_for_id("totp-secret").await.text().await;
        chrome.wait_for_id("qr-code").await;
        chrome.screenshot("self_service_mfa_enrol").await;
        let mut authenticator = Authenticator::from_key(&key);
        chrome
            .wait_for_id("code")
            .await
            .send_keys(&authenticator.next_code().await)
            .await;
        chrome.wait_for_id("confirm-mfa").await.click().await;
        chrome.wait_for_id("recovery-codes").await;
        chrome.screenshot("self_service_mfa_recovery_codes").await;

        // 5. Signing out, then in with the password and a code from the app.
        let mut logout = broker.url("/logout");
        logout
            .query_pairs_mut()
            .append_pair("id_token_hint", tokens.id_token());
        chrome.open(&logout).await;
        chrome.wait_for("main").await;
        let request = AuthorizeRequest::new(WEB_APP).scope("openid email profile offline_access");
        chrome.open(&request.url(&broker)).await;
        password_form(&chrome, USERNAME, FIRST_PASSWORD).await;
        chrome.wait_for_id("verify-code").await;
        chrome.screenshot("self_service_mfa_code").await;
        second_factor(&chrome, &mut authenticator).await;
        let code = code_at_the_app(&chrome).await;
        let tokens = broker.redeem(&WEB_APP, &code, request.verifier()).await;
        let claims = jwt_claims(tokens.id_token());
        let amr: Vec<&str> = claims["amr"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert!(amr.contains(&"otp") && amr.contains(&"mfa"), "{amr:?}");
        assert_eq!(claims["acr"], "urn:switchboard:acr:mfa");
        broker
            .refresh(&WEB_APP, tokens.refresh_token())
            .await
            .assert_ok();

        // 6. The account page: a new password (no current one needed right after
        //    signing in, but given here as a person would).
        chrome.open(&broker.url("/account")).await;
        chrome
            .wait_for_id("current-password")
            .await
            .send_keys(FIRST_PASSWORD)
            .await;
        chrome
            .wait_for_id("new-password")
            .await
            .send_keys(SECOND_PASSWORD)
            .await;
        chrome.screenshot("self_service_account").await;
        chrome.wait_for_id("change-password").await.click().await;
        chrome.wait_for_id("credentials-notice").await;
        chrome.screenshot("self_service_password_changed").await;
        broker
            .refresh(&WEB_APP, &first_refresh)
            .await
            .assert_error("invalid_grant");

        // 7. Signed in again later, with the new password (and a code).
        let request = AuthorizeRequest::new(WEB_APP)
            .scope("openid email offline_access")
            .param("prompt", "login");
        chrome.open(&request.url(&broker)).await;
        password_form(&chrome, EMAIL, SECOND_PASSWORD).await;
        second_factor(&chrome, &mut authenticator).await;
        let code = code_at_the_app(&chrome).await;
        let tokens = broker.redeem(&WEB_APP, &code, request.verifier()).await;
        let second_refresh = tokens.refresh_token().to_string();

        // 8. Forgotten: "Forgot your password?" under the form, the mail, a new one.
        let request = AuthorizeRequest::new(WEB_APP).param("prompt", "login");
        chrome.open(&request.url(&broker)).await;
        chrome.wait_for_id("forgot-password").await.click().await;
        chrome.wait_for_id("login").await.send_keys(EMAIL).await;
        chrome.screenshot("self_service_forgot").await;
        chrome.wait_for("button[type=submit]").await.click().await;
        chrome.wait_for_id("reset-sent").await;
        let reset = format!("{}/password/reset/local?token=", broker.issuer());
        chrome.open(&link_in_mail(&sink, 2, &reset).await).await;
        chrome
            .wait_for_id("password")
            .await
            .send_keys(THIRD_PASSWORD)
            .await;
        chrome.screenshot("self_service_reset").await;
        chrome.wait_for("button[type=submit]").await.click().await;
        chrome.wait_for_id("reset-done").await;
        chrome.screenshot("self_service_reset_done").await;
        broker
            .refresh(&WEB_APP, &second_refresh)
            .await
            .assert_error("invalid_grant");

        // 9. And in to the app once more with the newest password (the app still asks
        //    for a code: a reset does not remove the second factor).
        let request = AuthorizeRequest::new(WEB_APP);
        chrome.open(&request.url(&broker)).await;
        password_form(&chrome, USERNAME, THIRD_PASSWORD).await;
        second_factor(&chrome, &mut authenticator).await;
        let code = code_at_the_app(&chrome).await;
        broker
            .redeem(&WEB_APP, &code, request.verifier())
            .await
            .assert_ok();
    };
    // Each code works once: later sign-ins may wait for the app's next step (30 s).
    tokio::time::timeout(Duration::from_secs(240), journey)
        .await
        .expect("the journey finishes within four minutes");
    chrome.close().await;
}
