#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Forgot / reset password of a local account against the real broker binary, with
//! the mails going over real SMTP to a sink on loopback.

use std::time::Duration;
use switchboard_e2e::{AuthorizeRequest, Broker, Browser, Landing, SmtpSink, WEB_APP};

const ANN: &str = "ann@example.com";
const OLD_PASSWORD: &str = "ann-password-1";
const NEW_PASSWORD: &str = "ann-new-password-2";
const MAIL_WAIT: Duration = Duration::from_secs(15);

async fn broker_with_reset(sink: &SmtpSink, lifetime: &str) -> Broker {
    let broker = Broker::setup()
        .env("BROKER_PROVIDERS__LOCAL__ALLOW_PASSWORD_RESET", "true")
        .env("BROKER_PROVIDERS__LOCAL__PASSWORD_RESET_LIFETIME", lifetime)
        .extra(&format!(
            "[email]\nsmtp_url = \"smtp+plain://127.0.0.1:{}\"\nfrom = \"Switchboard <id@example.com>\"\nretry_delay = \"1s\"",
            sink.port()
        ))
        .start()
        .await;
    broker.user_command(&["add", "--email", ANN], &format!("{OLD_PASSWORD}\n"));
    broker
}

async fn forgot(broker: &Broker, login: &str) -> (reqwest::StatusCode, String) {
    let res = broker
        .http()
        .post(broker.url("/password/forgot/local"))
        .form(&[("login", login)])
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn reset(broker: &Broker, token: &str, password: &str) -> (reqwest::StatusCode, String) {
    let res = broker
        .http()
        .post(broker.url("/password/reset/local"))
        .form(&[("token", token), ("password", password)])
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

fn offline_request() -> AuthorizeRequest {
    AuthorizeRequest::new(WEB_APP).scope("openid email offline_access")
}

/// The token of the reset link in the one mail the sink has, checked to go to Ann.
async fn mailed_token(broker: &Broker, sink: &SmtpSink) -> String {
    let mails = sink.wait_for(1, MAIL_WAIT).await;
    let mail = mails.last().unwrap();
    assert_eq!(mail.to, vec![ANN.to_string()]);
    assert!(
        mail.data.contains("Subject: Reset your password"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("text/html"), "an HTML part too");
    let prefix = format!("{}/password/reset/local?token=", broker.issuer());
    let link = mail.link(&prefix).expect("the mail has the reset link");
    link[prefix.len()..].to_string()
}

#[tokio::test]
async fn a_mailed_link_resets_the_password_once_and_ends_the_old_tokens() {
    let sink = SmtpSink::start().await;
    let broker = broker_with_reset(&sink, "30m").await;
    let browser = Browser::new(&broker);
    let before = broker
        .sign_in_with_password(&browser, &offline_request(), ANN, OLD_PASSWORD)
        .await;
    let old_refresh = before.body["refresh_token"].as_str().unwrap().to_string();

    // An unknown account gets the same page and no mail.
    let (status, unknown_page) = forgot(&broker, "nobody@example.com").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let (status, known_page) = forgot(&broker, ANN).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(
        unknown_page, known_page,
        "the answer never tells who has an account"
    );
    assert!(known_page.contains("reset-sent"));
    let token = mailed_token(&broker, &sink).await;
    // Give a stray mail for the unknown address time to show up, then check none did.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.mails().len(), 1, "no mail for an unknown account");
    assert!(!broker.log().contains(&token), "the token is never logged");
    // The outbox kept the mail sealed: no file of the store (database, WAL) holds the
    // link in the clear, though SQLite keeps deleted rows' bytes around.
    for entry in std::fs::read_dir(broker.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "{} holds the link's token",
            path.display()
        );
    }

    // The link opens the form; a too short password is refused without spending it.
    let page = broker
        .http()
        .get(broker.url(&format!("/password/reset/local?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(page.text().await.unwrap().contains("name=\"password\""));
    let (status, body) = reset(&broker, &token, "short").await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert!(body.contains("at least 8 characters"), "{body}");

    let (status, body) = reset(&broker, &token, NEW_PASSWORD).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert!(body.contains("reset-done"));

    // The old refresh token is dead.
    broker
        .refresh(&WEB_APP, &old_refresh)
        .await
        .assert_error("invalid_grant");
    // The link worked once.
    let (status, body) = reset(&broker, &token, "ann-third-password").await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert!(body.contains("reset-error"), "{body}");

    // The new password signs in, the old one does not.
    let fresh = Browser::new(&broker);
    broker
        .sign_in_with_password(&fresh, &offline_request(), ANN, NEW_PASSWORD)
        .await;
    let other = Browser::new(&broker);
    let form = other
        .open(&offline_request().url(&broker))
        .await
        .expect_form();
    let landing = other.submit(&form, ANN, OLD_PASSWORD).await;
    assert!(
        !matches!(landing, Landing::Client(_)),
        "the old password is refused"
    );
    let audit = broker.user_command(&["list"], "");
    assert!(audit.contains(ANN));
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let sink = SmtpSink::start().await;
    let broker = broker_with_reset(&sink, "1s").await;
    let (status, _) = forgot(&broker, ANN).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let token = mailed_token(&broker, &sink).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = reset(&broker, &token, NEW_PASSWORD).await;
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert!(body.contains("reset-error"), "{body}");
    // The old password still works.
    let browser = Browser::new(&broker);
    broker
        .sign_in_with_password(&browser, &offline_request(), ANN, OLD_PASSWORD)
        .await;
}

#[tokio::test]
async fn forgot_password_is_off_unless_configured() {
    let broker = Broker::start().await;
    let res = broker
        .http()
        .post(broker.url("/password/forgot/local"))
        .form(&[("login", ANN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn one_account_gets_at_most_five_reset_mails_an_hour_and_the_page_never_says_so() {
    let sink = SmtpSink::start().await;
    let broker = broker_with_reset(&sink, "30m").await;
    let mut pages = Vec::new();
    for _ in 0..7 {
        let (status, page) = forgot(&broker, ANN).await;
        assert_eq!(status, reqwest::StatusCode::OK);
        pages.push(page);
    }
    assert!(
        pages.windows(2).all(|w| w[0] == w[1]),
        "the same page every time"
    );
    sink.wait_for(5, MAIL_WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.mails().len(), 5, "no mail past the limit");
}
