#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Pages, themes and languages (issue 14) against the real broker binary: an
//! operator's theme directory (a logo, a colour override, one overridden template and
//! a catalogue of its own) changes the login pages without a rebuild; `Accept-Language`
//! and the app's `ui_locales` pick German, the latter for every page of that login; a
//! broken template stops the start naming the file; and headless Chromium loads the
//! themed page under its Content-Security-Policy, shows the logo, and signs in through
//! to the app's redirect (screenshots under target/screenshots/).

use reqwest::header::{ACCEPT_LANGUAGE, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use std::path::Path;
use switchboard_e2e::{ADMIN, AuthorizeRequest, Broker, Chrome, NATIVE_APP, WEB_APP, hidden_value};
use url::Url;

const LOGO: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="48" viewBox="0 0 200 48"><rect width="200" height="48" rx="8" fill="#7a1f5c"/><circle cx="24" cy="24" r="12" fill="#ffd166"/><text x="116" y="31" font-family="sans-serif" font-size="20" font-weight="bold" fill="#fff" text-anchor="middle">ACME Corp</text></svg>"##;
const COLOURS: &str = ":root{--accent:#7a1f5c;--page-bg:#fbeff6;--focus:#7a1f5c}\n";

/// A theme in `dir`: logo, colours, password.html with one more line (the built-in
/// one plus an operator's note from the theme's own catalogues).
fn write_theme(dir: &Path) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::create_dir_all(dir.join("locales")).unwrap();
    std::fs::write(dir.join("logo.svg"), LOGO).unwrap();
    std::fs::write(dir.join("style.css"), COLOURS).unwrap();
    let builtin = std::fs::read_to_string(
        switchboard_e2e::workspace_root().join("broker/templates/password.html"),
    )
    .unwrap();
    // One more line at the end of the content block (the last `endblock`).
    let end = builtin.rfind("{% endblock %}").expect("a content block");
    let themed = format!(
        "{}<p class=\"muted\" id=\"operator-note\">{{{{ t(\"acme.note\") }}}}</p>\n{}",
        &builtin[..end],
        &builtin[end..]
    );
    assert_ne!(themed, builtin);
    std::fs::write(dir.join("templates/password.html"), themed).unwrap();
    std::fs::write(
        dir.join("locales/en.toml"),
        "[acme]\nnote = \"ACME staff only\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("locales/de.toml"),
        "[acme]\nnote = \"Nur für ACME-Personal\"\n",
    )
    .unwrap();
}

async fn themed_broker(theme: &Path) -> Broker {
    Broker::setup()
        .extra(&format!(
            "[ui]\ntheme_dir = {:?}\n",
            theme.display().to_string()
        ))
        .start()
        .await
}

/// A cookie-keeping client that sends `accept_language` (if any) and stops at the
/// app's redirect URI.
fn client(accept_language: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(l) = accept_language {
        headers.insert(ACCEPT_LANGUAGE, l.parse().unwrap());
    }
    reqwest::Client::builder()
        .cookie_store(true)
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::custom(|a| {
            if a.url().port() == Some(9) {
                a.stop()
            } else {
                a.follow()
            }
        }))
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

struct Page {
    url: Url,
    status: reqwest::StatusCode,
    csp: Option<String>,
    body: String,
}

async fn get(http: &reqwest::Client, url: Url) -> Page {
    page(http.get(url).send().await.unwrap()).await
}

async fn page(res: reqwest::Response) -> Page {
    Page {
        url: res.url().clone(),
        status: res.status(),
        csp: res
            .headers()
            .get(CONTENT_SECURITY_POLICY)
            .map(|v| v.to_str().unwrap().to_string()),
        body: res.text().await.unwrap(),
    }
}

/// Posts the password form of `login` (a login page) with a wrong password.
async fn wrong_password(http: &reqwest::Client, broker: &Broker, login: &Page) -> Page {
    let req = hidden_value(&login.body, "req").expect("the form names its login");
    let csrf = hidden_value(&login.body, "csrf").expect("the form has a CSRF token");
    let res = http
        .post(broker.url("/login/local"))
        .form(&[
            ("req", req.as_str()),
            ("csrf", csrf.as_str()),
            ("username", ADMIN.username),
            ("password", "not the password"),
        ])
        .send()
        .await
        .unwrap();
    page(res).await
}

#[tokio::test]
async fn a_theme_brands_the_pages_and_the_language_follows_the_browser_or_the_app() {
    let theme = tempfile::tempdir().unwrap();
    write_theme(theme.path());
    let broker = themed_broker(theme.path()).await;

    // English by default: the operator's logo, colours, template and message.
    let english = client(None);
    let login = get(&english, AuthorizeRequest::new(WEB_APP).url(&broker)).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_eq!(login.url.path(), "/login/local");
    assert!(login.body.contains("<html lang=\"en\">"), "{}", login.body);
    assert!(
        login
            .body
            .contains("<img class=\"logo\" id=\"logo\" src=\"/assets/logo.svg\""),
        "{}",
        login.body
    );
    assert!(login.body.contains("href=\"/assets/theme.css\""));
    assert!(login.body.contains("ACME staff only"), "{}", login.body);
    assert!(
        login
            .body
            .contains("<label for=\"username\">Username or email</label>")
    );
    let csp = login.csp.expect("a login page has a CSP");
    assert!(csp.contains("default-src 'none'") && !csp.contains("unsafe-inline"));

    let logo = english
        .get(broker.url("/assets/logo.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(logo.status(), 200);
    assert_eq!(logo.headers()[CONTENT_TYPE], "image/svg+xml");
    assert_eq!(logo.text().await.unwrap(), LOGO);
    let css = english
        .get(broker.url("/assets/theme.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200);
    assert_eq!(css.text().await.unwrap(), COLOURS);
    // The built-in sheet names the colours the theme overrides.
    let base = english
        .get(broker.url("/assets/style.css"))
        .send()
        .await
        .unwrap();
    let base = base.text().await.unwrap();
    assert!(
        base.contains("--accent:") && base.contains("var(--accent)"),
        "{base}"
    );
    // No PNG logo in this theme.
    let png = english
        .get(broker.url("/assets/logo.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(png.status(), 404);

    // Accept-Language: German (q-values honoured), the theme's German note too.
    let german = client(Some("fr;q=0.9, de-DE;q=0.8, en;q=0.5"));
    let login = get(&german, AuthorizeRequest::new(WEB_APP).url(&broker)).await;
    assert!(login.body.contains("<html lang=\"de\">"), "{}", login.body);
    assert!(
        login.body.contains("Benutzername oder E-Mail"),
        "{}",
        login.body
    );
    assert!(
        login.body.contains("Nur für ACME-Personal"),
        "{}",
        login.body
    );
    assert!(!login.body.contains("Username or email"));
    let refused = wrong_password(&german, &broker, &login).await;
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .body
            .contains("Benutzername oder Passwort ist falsch."),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("role=\"alert\""));
    assert!(refused.body.contains("aria-describedby=\"login-error\""));

    // ui_locales=de on /authorize: German for every page of that login, though the
    // browser asks for English.
    let asks_english = client(Some("en"));
    let request = AuthorizeRequest::new(WEB_APP).param("ui_locales", "fr-CA de en");
    let login = get(&asks_english, request.url(&broker)).await;
    assert!(login.body.contains("<html lang=\"de\">"), "{}", login.body);
    assert!(login.body.contains("Passwort"), "{}", login.body);
    let refused = wrong_password(&asks_english, &broker, &login).await;
    assert!(
        refused.body.contains("<html lang=\"de\">"),
        "{}",
        refused.body
    );
    assert!(
        refused
            .body
            .contains("Benutzername oder Passwort ist falsch."),
        "{}",
        refused.body
    );
    // Another login of the same browser without ui_locales: English again.
    let login = get(&asks_english, AuthorizeRequest::new(WEB_APP).url(&broker)).await;
    assert!(login.body.contains("<html lang=\"en\">"), "{}", login.body);

    // An error page before any login (unknown client) follows ui_locales as well.
    let mut unknown = broker.url("/authorize");
    unknown
        .query_pairs_mut()
        .append_pair("client_id", "nobody")
        .append_pair("ui_locales", "de");
    let error = get(&asks_english, unknown).await;
    assert_eq!(error.status, 400);
    assert!(
        error
            .body
            .contains("Die Anwendung ist bei diesem Anmeldedienst nicht registriert."),
        "{}",
        error.body
    );
    assert!(error.csp.is_some());
}

#[tokio::test]
async fn a_broken_theme_template_stops_the_start_naming_the_file() {
    let theme = tempfile::tempdir().unwrap();
    write_theme(theme.path());
    let broken = theme.path().join("templates/password.html");
    std::fs::write(
        &broken,
        "{% extends \"layout.html\" %}{% block content %}{% if %}{% endblock %}",
    )
    .unwrap();
    let log = Broker::setup()
        .extra(&format!(
            "[ui]\ntheme_dir = {:?}\n",
            theme.path().display().to_string()
        ))
        .start_refused()
        .await;
    assert!(log.contains(&broken.display().to_string()), "{log}");

    // A template name the broker does not have is refused too, and check-config
    // reports what start-up would.
    std::fs::write(&broken, "ok").unwrap();
    let stray = theme.path().join("templates/pasword.html");
    std::fs::write(&stray, "typo").unwrap();
    let config = theme.path().with_extension("toml");
    let log = Broker::setup()
        .extra(&format!(
            "[ui]\ntheme_dir = {:?}\n",
            theme.path().display().to_string()
        ))
        .start_refused()
        .await;
    assert!(log.contains(&stray.display().to_string()), "{log}");
    assert!(log.contains("not a built-in template"), "{log}");
    let shipped =
        std::fs::read_to_string(switchboard_e2e::workspace_root().join("config/broker.toml"))
            .unwrap();
    std::fs::write(
        &config,
        format!(
            "{shipped}\n[ui]\ntheme_dir = {:?}\n",
            theme.path().display().to_string()
        ),
    )
    .unwrap();
    let out = switchboard_e2e::check_config(&config, &[]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains(&stray.display().to_string()), "{said}");
    std::fs::remove_file(&stray).unwrap();
    let out = switchboard_e2e::check_config(&config, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&config);
}

/// The app's redirect URI: a loopback listener answering every request with a page.
async fn app_listener() -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let body = "<!doctype html><p id=\"app\">You are back at the app</p>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    (port, task)
}

/// A real browser: the themed page renders under its CSP with the logo loaded, and the
/// sign-in goes through to the app's redirect on another origin (a CSP `form-action
/// 'self'` would stop Chromium there).
#[tokio::test]
async fn chromium_shows_the_themed_page_and_signs_in_through_it() {
    let Some(chrome) = Chrome::start("ui_theme").await else {
        return;
    };
    let theme = tempfile::tempdir().unwrap();
    write_theme(theme.path());
    let broker = themed_broker(theme.path()).await;
    let (port, app) = app_listener().await;
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");

    for (name, request) in [
        (
            "ui_theme_login",
            AuthorizeRequest::new(NATIVE_APP).param("redirect_uri", &redirect_uri),
        ),
        (
            "ui_theme_login_de",
            AuthorizeRequest::new(NATIVE_APP)
                .param("redirect_uri", &redirect_uri)
                .param("ui_locales", "de")
                .param("prompt", "login"),
        ),
    ] {
        chrome.open(&request.url(&broker)).await;
        chrome.wait_for_id("password").await;
        let logo = chrome.wait_for_id("logo").await;
        let width = logo.property_json("naturalWidth").await;
        assert_eq!(
            width,
            serde_json::json!(200),
            "the logo loaded under the page's CSP"
        );
        let note = chrome.wait_for_id("operator-note").await.text().await;
        let heading = chrome.wait_for("h1").await.text().await;
        if name.ends_with("_de") {
            assert_eq!(note, "Nur für ACME-Personal");
            assert!(heading.starts_with("Anmelden"), "{heading}");
        } else {
            assert_eq!(note, "ACME staff only");
            assert!(heading.starts_with("Sign in to"), "{heading}");
        }
        let shot = chrome.screenshot(name).await;
        assert!(std::fs::metadata(&shot).unwrap().len() > 1000);
        chrome.sign_in(&ADMIN).await;
        let landed = chrome
            .wait_for_url("the app's redirect URI", |u| u.port() == Some(port))
            .await;
        assert_eq!(landed.path(), "/callback");
        let params: std::collections::HashMap<_, _> = landed.query_pairs().into_owned().collect();
        assert!(params.contains_key("code"), "{landed}");
        assert_eq!(params.get("state"), Some(&request.state), "{landed}");
        let shown = chrome.wait_for_id("app").await.text().await;
        assert_eq!(shown, "You are back at the app");
    }
    chrome.close().await;
    app.abort();
}

/// Posts the registration form of `form` (the page of `/register/local`).
async fn register(
    http: &reqwest::Client,
    broker: &Broker,
    form: &Page,
    username: &str,
    email: &str,
) -> Page {
    let csrf = hidden_value(&form.body, "csrf").expect("the form has a CSRF token");
    let res = http
        .post(broker.url("/register/local"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", username),
            ("email", email),
            ("password", "lantern-orbit-ferry"),
        ])
        .send()
        .await
        .unwrap();
    page(res).await
}

/// The self-service pages speak German too: the registration form, a refusal from
/// the account policy, and the page after an account is made.
#[tokio::test]
async fn the_registration_pages_follow_the_browser_language() {
    let broker = Broker::setup()
        .env("BROKER_PROVIDERS__LOCAL__ALLOW_REGISTRATION", "true")
        .env("BROKER_PROVIDERS__LOCAL__AUTO_ACTIVATE", "true")
        .start()
        .await;

    let german = client(Some("de-DE, en;q=0.5"));
    let form = get(&german, broker.url("/register/local")).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("<html lang=\"de\">"), "{}", form.body);
    assert!(form.body.contains("<title>Konto anlegen"), "{}", form.body);
    assert!(
        form.body
            .contains(">Passwort (mindestens 8 Zeichen)</label>"),
        "{}",
        form.body
    );
    assert!(!form.body.contains("Create an account"), "{}", form.body);
    assert!(!form.body.contains("Username"), "{}", form.body);

    let refused = register(&german, &broker, &form, "hanna", "not-an-address").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("id=\"register-error\" role=\"alert\">Das ist keine E-Mail-Adresse.</p>"),
        "{}",
        refused.body
    );
    assert!(!refused.body.contains("Not an email address"));

    let made = register(&german, &broker, &refused, "hanna", "hanna@example.com").await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert!(made.body.contains("Ihr Konto ist bereit"), "{}", made.body);
    assert!(
        made.body
            .contains("id=\"register-ready\" role=\"status\">Sie können sich jetzt anmelden."),
        "{}",
        made.body
    );

    // The same refusal in English for a browser that asks for nothing else.
    let english = client(None);
    let form = get(&english, broker.url("/register/local")).await;
    assert!(form.body.contains("<html lang=\"en\">"), "{}", form.body);
    assert!(
        form.body.contains("<h1>Create an account</h1>"),
        "{}",
        form.body
    );
    let refused = register(&english, &broker, &form, "hanna2", "not-an-address").await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains(">Not an email address.</p>"),
        "{}",
        refused.body
    );
}
