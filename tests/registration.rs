#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Self-service accounts of the local provider against the real broker binary:
//! registration (confirmed by mail, or active at once), the account policy, and a
//! person changing their own password and email — mails over real SMTP to a sink on
//! loopback, links followed as a person would.

use reqwest::StatusCode;
use std::time::Duration;
use switchboard_e2e::{
    AuthorizeRequest, Broker, Browser, Landing, SmtpSink, WEB_APP, hidden_value, jwt_claims,
};

const MAIL_WAIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "lantern-orbit-ferry";

/// A broker whose local provider takes registrations, mailing to `sink`.
async fn broker(sink: &SmtpSink, extra_env: &[(&str, &str)], policy: &str) -> Broker {
    let mut setup = Broker::setup()
        .env("BROKER_PROVIDERS__LOCAL__ALLOW_REGISTRATION", "true")
        .env("BROKER_PROVIDERS__LOCAL__ALLOW_EMAIL_CHANGE", "true")
        .extra(&format!(
            "[email]\nsmtp_url = \"smtp+plain://127.0.0.1:{}\"\nfrom = \"Switchboard <id@example.com>\"\nretry_delay = \"1s\"\n{policy}",
            sink.port()
        ));
    for (k, v) in extra_env {
        setup = setup.env(k, v);
    }
    setup.start().await
}

fn offline_request() -> AuthorizeRequest {
    AuthorizeRequest::new(WEB_APP).scope("openid email profile offline_access")
}

/// Opens the registration form and posts it with `fields` (the CSRF token added).
async fn register(
    broker: &Broker,
    browser: &Browser,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let form = browser.get_raw(&broker.url("/register/local")).await;
    assert_eq!(form.status(), StatusCode::OK);
    let html = form.text().await.unwrap();
    let csrf = hidden_value(&html, "csrf").expect("the form has a CSRF token");
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    let res = browser.post_raw(&broker.url("/register/local"), &all).await;
    (res.status(), res.text().await.unwrap())
}

/// The token of the one link starting with `prefix` in the last mail to `to`.
async fn mailed_token(sink: &SmtpSink, count: usize, to: &str, prefix: &str) -> String {
    let mails = sink.wait_for(count, MAIL_WAIT).await;
    let mail = mails
        .iter()
        .rev()
        .find(|m| m.to == vec![to.to_string()])
        .unwrap_or_else(|| panic!("no mail to {to}: {mails:?}"));
    let link = mail
        .link(prefix)
        .unwrap_or_else(|| panic!("no link {prefix} in {}", mail.decoded()));
    link[prefix.len()..].to_string()
}

/// Whether `login` / `password` signs in (the app gets a code).
async fn signs_in(broker: &Broker, login: &str, password: &str) -> bool {
    let browser = Browser::new(broker);
    let form = browser
        .open(&offline_request().url(broker))
        .await
        .expect_form();
    matches!(
        browser.submit(&form, login, password).await,
        Landing::Client(_)
    )
}

#[tokio::test]
async fn a_registration_becomes_an_account_only_when_its_mailed_link_is_used() {
    let sink = SmtpSink::start().await;
    let broker = broker(&sink, &[], "").await;
    let browser = Browser::new(&broker);
    let (status, page) = register(
        &broker,
        &browser,
        &[
            ("username", "newbie"),
            ("email", "newbie@example.com"),
            ("name", "New Bie"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("register-sent"), "{page}");
    let prefix = format!("{}/register/local/confirm?token=", broker.issuer());
    let token = mailed_token(&sink, 1, "newbie@example.com", &prefix).await;
    assert!(!broker.log().contains(&token), "the link is never logged");
    assert!(
        !signs_in(&broker, "newbie", PASSWORD).await,
        "no sign-in before the link is used"
    );

    // Opening the link spends nothing (mail scanners open links); the button does.
    let confirm_page = broker.url(&format!("/register/local/confirm?token={token}"));
    for _ in 0..2 {
        let res = browser.get_raw(&confirm_page).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.text().await.unwrap().contains("confirm-registration"));
    }
    let confirm = broker.url("/register/local/confirm");
    let res = browser.post_raw(&confirm, &[("token", &token)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("register-confirmed"));
    let res = browser.post_raw(&confirm, &[("token", &token)]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "the link works once");
    assert!(res.text().await.unwrap().contains("register-failed"));

    let tokens = broker
        .sign_in_with_password(
            &Browser::new(&broker),
            &offline_request(),
            "newbie",
            PASSWORD,
        )
        .await;
    let claims = jwt_claims(tokens.body["id_token"].as_str().unwrap());
    assert_eq!(claims["email"], "newbie@example.com");
    assert_eq!(
        claims["email_verified"], true,
        "the link proved the address"
    );
    assert_eq!(claims["name"], "New Bie");
    assert!(signs_in(&broker, "newbie@example.com", PASSWORD).await);
    let listed = broker.user_command(&["list"], "");
    assert!(listed.contains("newbie@example.com"), "{listed}");
}

#[tokio::test]
async fn registering_a_taken_address_answers_the_same_and_tells_its_owner_instead() {
    let sink = SmtpSink::start().await;
    let broker = broker(&sink, &[], "").await;
    broker.user_command(
        &["add", "--email", "owner@example.com"],
        &format!("{PASSWORD}\n"),
    );
    let fields = |username: &'static str, email: &'static str| {
        [
            ("username", username),
            ("email", email),
            ("password", "quartz-meadow-lamp"),
        ]
    };
    let (status, taken) = register(
        &broker,
        &Browser::new(&broker),
        &fields("intruder", "owner@example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, fresh) = register(
        &broker,
        &Browser::new(&broker),
        &fields("someone", "someone@example.com"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        taken.replace("owner@example.com", "X"),
        fresh.replace("someone@example.com", "X"),
        "the page never tells whether an address has an account"
    );
    let mails = sink.wait_for(2, MAIL_WAIT).await;
    let to_owner = mails
        .iter()
        .find(|m| m.to == vec!["owner@example.com".to_string()])
        .unwrap();
    assert!(
        to_owner
            .data
            .contains("Subject: You already have an account"),
        "{}",
        to_owner.data
    );
    assert!(
        !to_owner.decoded().contains("token="),
        "the owner gets no link that would create an account: {}",
        to_owner.decoded()
    );
    assert!(!signs_in(&broker, "intruder", "quartz-meadow-lamp").await);
}

#[tokio::test]
async fn the_account_policy_refuses_bad_usernames_common_passwords_and_taken_usernames() {
    let sink = SmtpSink::start().await;
    let policy = "[account_policy]\nusername_pattern = \"[a-z][a-z0-9]{2,15}\"\nemail_pattern = \".*@example\\\\.com\"\nmin_password_length = 10";
    let broker = broker(&sink, &[], policy).await;
    broker.user_command(
        &[
            "add",
            "--email",
            "taken@example.com",
            "--username",
            "takenname",
        ],
        &format!("{PASSWORD}\n"),
    );
    let browser = Browser::new(&broker);
    for (username, email, password, status, says) in [
        (
            "Bad Name",
            "a@example.com",
            PASSWORD,
            StatusCode::BAD_REQUEST,
            "username is not allowed",
        ),
        (
            "goodname",
            "a@example.org",
            PASSWORD,
            StatusCode::BAD_REQUEST,
            "not accepted here",
        ),
        (
            "goodname",
            "not-an-address",
            PASSWORD,
            StatusCode::BAD_REQUEST,
            "Not an email address",
        ),
        (
            "goodname",
            "a@example.com",
            "password123",
            StatusCode::BAD_REQUEST,
            "too common",
        ),
        (
            "goodname",
            "a@example.com",
            "goodname",
            StatusCode::BAD_REQUEST,
            "10 to",
        ),
        (
            "goodname",
            "a@example.com",
            "qwertyuiopasdf",
            StatusCode::BAD_REQUEST,
            "too common",
        ),
        (
            "takenname",
            "b@example.com",
            PASSWORD,
            StatusCode::CONFLICT,
            "username is taken",
        ),
    ] {
        let (got, page) = register(
            &broker,
            &browser,
            &[
                ("username", username),
                ("email", email),
                ("password", password),
            ],
        )
        .await;
        assert_eq!(got, status, "{username} {email} {password}: {page}");
        assert!(page.contains("register-error"), "{page}");
        assert!(page.contains(says), "{username} {email} {password}: {page}");
        assert!(
            !page.contains(password) || password == username,
            "the password is not echoed"
        );
    }
    // A forged form (no CSRF token of this browser) is refused.
    let res = Browser::new(&broker)
        .post_raw(
            &broker.url("/register/local"),
            &[
                ("csrf", "forged"),
                ("username", "goodname"),
                ("email", "g@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sink.mails().is_empty(), "no refused registration sent mail");
}

#[tokio::test]
async fn registrations_from_one_address_are_throttled() {
    let sink = SmtpSink::start().await;
    let broker = broker(&sink, &[], "").await;
    let browser = Browser::new(&broker);
    let mut statuses = Vec::new();
    for i in 0..11 {
        let username = format!("bulk{i}");
        let (status, _) = register(
            &broker,
            &browser,
            &[
                ("username", &username),
                ("email", "x@example.com"),
                ("password", "short"),
            ],
        )
        .await;
        statuses.push(status);
    }
    assert!(
        statuses[..10].iter().all(|s| *s == StatusCode::BAD_REQUEST),
        "{statuses:?}"
    );
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn auto_activated_accounts_sign_in_at_once_and_verify_their_address_by_link() {
    let sink = SmtpSink::start().await;
    let broker = broker(
        &sink,
        &[("BROKER_PROVIDERS__LOCAL__AUTO_ACTIVATE", "true")],
        "",
    )
    .await;
    let (status, page) = register(
        &broker,
        &Browser::new(&broker),
        &[
            ("username", "quick"),
            ("email", "quick@example.com"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("register-ready"), "{page}");
    let tokens = broker
        .sign_in_with_password(
            &Browser::new(&broker),
            &offline_request(),
            "quick",
            PASSWORD,
        )
        .await;
    let claims = jwt_claims(tokens.body["id_token"].as_str().unwrap());
    assert_eq!(claims["email_verified"], false, "not proven yet");

    let prefix = format!("{}/email/verify?token=", broker.issuer());
    let token = mailed_token(&sink, 1, "quick@example.com", &prefix).await;
    let browser = Browser::new(&broker);
    let res = browser
        .post_raw(&broker.url("/email/verify"), &[("token", &token)])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("email-verified"));
    let tokens = broker
        .sign_in_with_password(
            &Browser::new(&broker),
            &offline_request(),
            "quick",
            PASSWORD,
        )
        .await;
    let claims = jwt_claims(tokens.body["id_token"].as_str().unwrap());
    assert_eq!(claims["email_verified"], true);
}

#[tokio::test]
async fn registration_is_off_unless_configured() {
    let broker = Broker::start().await;
    for path in ["/register/local", "/register/local/confirm?token=x"] {
        let res = broker.http().get(broker.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

/// A user added by the operator (password `PASSWORD`), signed in in a browser of
/// their own: that browser and its account page's CSRF token.
async fn account_of_new_user(broker: &Broker, email: &str) -> (Browser, String) {
    broker.user_command(&["add", "--email", email], &format!("{PASSWORD}\n"));
    let browser = Browser::new(broker);
    broker
        .sign_in_with_password(&browser, &offline_request(), email, PASSWORD)
        .await;
    let csrf = account_csrf(broker, &browser).await;
    (browser, csrf)
}

/// The account page's CSRF token for a signed-in browser.
async fn account_csrf(broker: &Broker, browser: &Browser) -> String {
    let res = browser.get_raw(&broker.url("/account")).await;
    assert_eq!(res.status(), StatusCode::OK);
    hidden_value(&res.text().await.unwrap(), "csrf").expect("the account page has forms")
}

#[tokio::test]
async fn a_password_change_needs_the_current_one_and_ends_every_other_sign_in() {
    let sink = SmtpSink::start().await;
    let broker = broker(&sink, &[], "").await;
    broker.user_command(
        &["add", "--email", "pat@example.com"],
        &format!("{PASSWORD}\n"),
    );
    let elsewhere = broker
        .sign_in_with_password(
            &Browser::new(&broker),
            &offline_request(),
            "pat@example.com",
            PASSWORD,
        )
        .await;
    let old_refresh = elsewhere.body["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let here = Browser::new(&broker);
    broker
        .sign_in_with_password(&here, &offline_request(), "pat@example.com", PASSWORD)
        .await;
    let csrf = account_csrf(&broker, &here).await;
    let change = broker.url("/account/password");
    let new_password = "meadow-quartz-lantern";

    // Within five minutes of signing in no current password is needed, but a
    // wrong one given is still refused.
    let res = here
        .post_raw(
            &change,
            &[
                ("csrf", &csrf),
                ("current_password", "wrong-password-1"),
                ("new_password", new_password),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("credentials-error"));
    let res = here
        .post_raw(
            &change,
            &[
                ("csrf", &csrf),
                ("current_password", PASSWORD),
                ("new_password", "password1"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "the policy applies");
    let res = here
        .post_raw(
            &change,
            &[("csrf", "forged"), ("new_password", new_password)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "CSRF is checked");
    let res = here
        .post_raw(
            &change,
            &[
                ("csrf", &csrf),
                ("current_password", PASSWORD),
                ("new_password", new_password),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], "/account?done=password#password");

    broker
        .refresh(&WEB_APP, &old_refresh)
        .await
        .assert_error("invalid_grant");
    let page = here.get_raw(&broker.url("/account?done=password")).await;
    assert_eq!(
        page.status(),
        StatusCode::OK,
        "this browser stays signed in"
    );
    assert!(page.text().await.unwrap().contains("credentials-notice"));
    assert!(!signs_in(&broker, "pat@example.com", PASSWORD).await);
    assert!(signs_in(&broker, "pat@example.com", new_password).await);
}

#[tokio::test]
async fn wrong_current_passwords_are_throttled() {
    let sink = SmtpSink::start().await;
    let broker = broker(&sink, &[], "").await;
    let (here, csrf) = account_of_new_user(&broker, "tim@example.com").await;
    let change = broker.url("/account/password");
    for _ in 0..5 {
        let res = here
            .post_raw(
                &change,
                &[
                    ("csrf", &csrf),
                    ("current_password", "not-my-password"),
                    ("new_password", "meadow-quartz-lantern"),
                ],
            )
            .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
    }
    let res = here
        .post_raw(
            &change,
            &[
                ("csrf", &csrf),
                ("current_password", PASSWORD),
                ("new_password", "meadow-quartz-lantern"),
            ],
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits after five wrong ones"
    );
    assert!(signs_in(&broker, "tim@example.com", PASSWORD).await);
}

#[tokio::test]
async fn a_new_email_counts_only_when_the_link_to_it_is_used() {
    let sink = SmtpSink::start().await;
    let broker = broker(&sink, &[], "").await;
    let (here, csrf) = account_of_new_user(&broker, "old@example.com").await;
    let res = here
        .post_raw(
            &broker.url("/account/email"),
            &[("csrf", &csrf), ("email", "new@example.com")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let prefix = format!("{}/email/verify?token=", broker.issuer());
    let token = mailed_token(&sink, 1, "new@example.com", &prefix).await;
    let page = here
        .get_raw(&broker.url("/account"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("old@example.com"),
        "unchanged until the link is used"
    );
    assert!(signs_in(&broker, "old@example.com", PASSWORD).await);

    let other_browser = Browser::new(&broker);
    let res = other_browser
        .get_raw(&broker.url(&format!("/email/verify?token={token}")))
        .await;
    assert!(res.text().await.unwrap().contains("verify-email"));
    let res = other_browser
        .post_raw(&broker.url("/email/verify"), &[("token", &token)])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = other_browser
        .post_raw(&broker.url("/email/verify"), &[("token", &token)])
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "the link works once");

    let mails = sink.wait_for(2, MAIL_WAIT).await;
    let notice = mails
        .iter()
        .find(|m| m.to == vec!["old@example.com".to_string()])
        .expect("the old address is told");
    assert!(notice.data.contains("Subject: Your email address changed"));
    let tokens = broker
        .sign_in_with_password(
            &Browser::new(&broker),
            &offline_request(),
            "new@example.com",
            PASSWORD,
        )
        .await;
    let claims = jwt_claims(tokens.body["id_token"].as_str().unwrap());
    assert_eq!(claims["email"], "new@example.com");
    assert_eq!(claims["email_verified"], true);
    assert!(!signs_in(&broker, "old@example.com", PASSWORD).await);
}

/// The demo's example app, as config/broker.toml registers it.
const DEMO_APP: switchboard_e2e::TestClient = switchboard_e2e::TestClient {
    id: "example-app",
    secret: Some("example-secret"),
    redirect_uri: "http://127.0.0.1:5555/callback",
    registered_redirect_uri: "http://127.0.0.1:5555/callback",
    alg: "RS256",
    cors_origin: None,
};

/// Kills the broker it holds when dropped.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The README's quick start as shipped: `broker serve --config config/broker.toml`
/// (only the port moved, by the environment), with no mail server: a person
/// registers, opens the confirmation link from the mail file in data/mail, and signs
/// in to the example app.
#[tokio::test]
async fn the_demo_config_takes_a_registration_confirmed_from_its_mail_file() {
    let dir = tempfile::tempdir().unwrap();
    let port = switchboard_e2e::free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let child = std::process::Command::new(switchboard_e2e::broker_binary())
        .arg("serve")
        .arg("--config")
        .arg(switchboard_e2e::workspace_root().join("config/broker.toml"))
        .env("BROKER_ISSUER", &issuer)
        .env("BROKER_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _running = Running(child);
    let base = url::Url::parse(&format!("{issuer}/")).unwrap();
    let browser = Browser::at(&issuer, base.clone());
    let started = std::time::Instant::now();
    let healthz = base.join("healthz").unwrap();
    while !reqwest::get(healthz.clone())
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the demo broker did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let form = browser.get_raw(&base.join("register/local").unwrap()).await;
    let csrf = hidden_value(&form.text().await.unwrap(), "csrf").unwrap();
    let res = browser
        .post_raw(
            &base.join("register/local").unwrap(),
            &[
                ("csrf", csrf.as_str()),
                ("username", "visitor"),
                ("email", "visitor@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert!(res.text().await.unwrap().contains("register-sent"));

    let prefix = format!("{issuer}/register/local/confirm?token=");
    let mail_dir = dir.path().join("data/mail");
    let token = loop {
        let found = std::fs::read_dir(&mail_dir).ok().and_then(|entries| {
            entries.filter_map(Result::ok).find_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let at = text.find(&prefix)?;
                let rest = &text[at + prefix.len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                    .unwrap_or(rest.len());
                Some(rest[..end].to_string())
            })
        });
        if let Some(token) = found {
            break token;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no mail file in {}",
            mail_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let res = browser
        .post_raw(
            &base.join("register/local/confirm").unwrap(),
            &[("token", &token)],
        )
        .await;
    assert!(res.text().await.unwrap().contains("register-confirmed"));

    let request = AuthorizeRequest::new(DEMO_APP);
    let form = browser.open(&request.url_at(&base)).await.expect_form();
    let landing = browser.submit(&form, "visitor", PASSWORD).await;
    assert!(
        matches!(landing, Landing::Client(_)),
        "signed in to the example app"
    );
}
