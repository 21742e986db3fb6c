//! Protocol edges, through the real binary: one redirect-URI comparison at
//! `/authorize` and `/token` (exact string, only the loopback port may vary for a
//! native client), and PKCE required per client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use reqwest::StatusCode;
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, Broker, Browser, Landing, NATIVE_APP, Page, SECOND_APP, TestClient,
    WEB_APP, workspace_root,
};

fn assert_error_page(landing: Landing, what: &str) {
    let page: Page = match landing {
        Landing::Page(p) => p,
        Landing::Client(r) => panic!("{what}: redirected to the client: {}", r.url),
        Landing::LoginForm(_) => panic!("{what}: accepted (the login form is shown)"),
    };
    assert_eq!(
        page.status,
        StatusCode::BAD_REQUEST,
        "{what}: {}",
        page.body
    );
    assert!(
        page.header("location").is_none(),
        "{what}: an error page never redirects"
    );
    assert!(
        page.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{what}: an HTML page"
    );
}

// ---------------------------------------------------------------------------------
// Item 9: redirect_uri is one exact string comparison.

/// A confidential client registered with URIs that URL parsing would rewrite: an
/// explicit default port, and an origin without a path.
const EXACT_APP: TestClient = TestClient {
    id: "exact-app",
    secret: Some("exact-app-secret"),
    redirect_uri: "https://exact.example:443/callback",
    registered_redirect_uri: "https://exact.example:443/callback",
    alg: "RS256",
    cors_origin: None,
};

const EXACT_APP_NO_PATH: &str = "https://exact.example";

fn exact_app_section() -> String {
    format!(
        "[clients.{}]\nsecret = {:?}\nredirect_uris = [{:?}, {:?}]",
        EXACT_APP.id,
        EXACT_APP.secret.unwrap_or_default(),
        EXACT_APP.registered_redirect_uri,
        EXACT_APP_NO_PATH
    )
}

async fn broker_with_exact_app() -> Broker {
    Broker::setup().extra(&exact_app_section()).start().await
}

#[tokio::test]
async fn redirect_uri_spellings_that_are_not_registered_get_an_error_page() {
    let broker = broker_with_exact_app().await;
    let browser = Browser::new(&broker);
    // SECOND_APP is registered as https://second.example/callback.
    for variant in [
        "https://second.example:443/callback",
        "https://SECOND.EXAMPLE/callback",
        "https://Second.example/callback",
        "HTTPS://second.example/callback",
        "https://second.example/./callback",
        "https://second.example/x/../callback",
        "https://second.example/%63allback",
    ] {
        let url = AuthorizeRequest::new(SECOND_APP)
            .param("redirect_uri", variant)
            .url(&broker);
        assert_error_page(browser.open(&url).await, variant);
    }
    // exact-app is registered with :443 and as an origin without a path.
    for variant in ["https://exact.example/callback", "https://exact.example/"] {
        let url = AuthorizeRequest::new(EXACT_APP)
            .param("redirect_uri", variant)
            .url(&broker);
        assert_error_page(browser.open(&url).await, variant);
    }
    // A native client's loopback redirect may change its port, and nothing else.
    for variant in [
        "http://127.0.0.1:49152/./callback",
        "http://127.0.0.1:49152/callback/",
        "http://localhost:49152/callback",
        "HTTP://127.0.0.1:49152/callback",
        "http://127.0.0.1:49152:80/callback",
        "http://user@127.0.0.1:49152/callback",
    ] {
        let url = AuthorizeRequest::new(NATIVE_APP)
            .param("redirect_uri", variant)
            .url(&broker);
        assert_error_page(browser.open(&url).await, variant);
    }
}

#[tokio::test]
async fn a_redirect_uri_registered_with_its_default_port_works_through_token() {
    let broker = broker_with_exact_app().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(EXACT_APP);
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    assert_eq!(response.url.host_str(), Some("exact.example"));
    assert_eq!(response.url.path(), "/callback");
    broker
        .redeem(&EXACT_APP, response.code(), request.verifier())
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_redirect_uri_registered_without_a_path_works_through_token() {
    let broker = broker_with_exact_app().await;
    let browser = Browser::new(&broker);
    let client = TestClient {
        redirect_uri: EXACT_APP_NO_PATH,
        ..EXACT_APP
    };
    let request = AuthorizeRequest::new(client);
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    assert_eq!(response.url.host_str(), Some("exact.example"));
    broker
        .redeem(&client, response.code(), request.verifier())
        .await
        .assert_ok();
}

/// `/token` compares the very string `/authorize` accepted: another spelling of the
/// same address is another redirect URI.
#[tokio::test]
async fn token_compares_the_redirect_uri_string_authorize_accepted() {
    let broker = broker_with_exact_app().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(EXACT_APP);
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    let respelled = TestClient {
        redirect_uri: "https://exact.example/callback",
        ..EXACT_APP
    };
    broker
        .redeem(&respelled, &code, request.verifier())
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn a_native_loopback_redirect_on_another_port_works_through_token() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let client = TestClient {
        redirect_uri: "http://127.0.0.1:61000/callback",
        ..NATIVE_APP
    };
    let request = AuthorizeRequest::new(client);
    let response = browser.log_in(&request.url(&broker), &ADMIN).await;
    assert_eq!(response.url.port(), Some(61000));
    let other_port = TestClient {
        redirect_uri: "http://127.0.0.1:61001/callback",
        ..NATIVE_APP
    };
    // The port is free at /authorize; at /token it is the one /authorize saw.
    broker
        .redeem(&other_port, response.code(), request.verifier())
        .await
        .assert_error("invalid_grant");
    let request = AuthorizeRequest::new(client);
    let response = browser.open(&request.url(&broker)).await.expect_client();
    broker
        .redeem(&client, response.code(), request.verifier())
        .await
        .assert_ok();
}

// ---------------------------------------------------------------------------------
// Item 10: require_pkce per client.

#[tokio::test]
async fn a_confidential_client_without_pkce_is_refused_by_default() {
    let broker = Broker::start().await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).without_pkce();
    let response = browser.open(&request.url(&broker)).await.expect_client();
    response.assert_error("invalid_request");
    assert_eq!(response.state(), Some(request.state.as_str()));
    assert!(
        response
            .param("error_description")
            .is_some_and(|d| d.contains("PKCE")),
        "the description says what is missing: {}",
        response.url
    );
}

#[tokio::test]
async fn a_confidential_client_may_turn_pkce_off() {
    let broker = Broker::setup()
        .client(WEB_APP.id, "require_pkce = false")
        .start()
        .await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).without_pkce();
    let code = browser
        .log_in(&request.url(&broker), &ADMIN)
        .await
        .code()
        .to_string();
    broker.redeem(&WEB_APP, &code, None).await.assert_ok();
    // Off means optional, not forbidden: a client that sends PKCE is still held to it.
    let request = AuthorizeRequest::new(WEB_APP);
    let code = browser
        .open(&request.url(&broker))
        .await
        .expect_client()
        .code()
        .to_string();
    broker
        .redeem(&WEB_APP, &code, None)
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn a_public_client_cannot_turn_pkce_off() {
    let log = Broker::setup()
        .client(NATIVE_APP.id, "require_pkce = false")
        .start_refused()
        .await;
    assert!(
        log.contains("clients.native-cli.require_pkce: a public client always uses PKCE"),
        "the error names the key and why: {log}"
    );
}

#[test]
fn shipped_configs_set_and_document_require_pkce() {
    let demo = std::fs::read_to_string(workspace_root().join("config/broker.toml"))
        .expect("read config/broker.toml");
    for client in ["example-app", "example-cli"] {
        let section = toml_section(&demo, &format!("[clients.{client}]"));
        assert!(
            section.contains("\nrequire_pkce = true"),
            "config/broker.toml sets require_pkce for {client} explicitly:\n{section}"
        );
    }
    let full = std::fs::read_to_string(workspace_root().join("config/full.toml"))
        .expect("read config/full.toml");
    assert!(
        toml_section(&full, "[clients.example-app]").contains("\nrequire_pkce = "),
        "config/full.toml documents require_pkce"
    );
    let readme =
        std::fs::read_to_string(workspace_root().join("README.md")).expect("read README.md");
    assert!(
        readme.contains("require_pkce"),
        "README documents require_pkce"
    );
}

/// The text of a TOML table, from its header to the next header.
fn toml_section(text: &str, header: &str) -> String {
    let start = text
        .find(header)
        .unwrap_or_else(|| panic!("no {header} in the file"));
    let rest = &text[start + header.len()..];
    let end = rest.find("\n[").unwrap_or(rest.len());
    rest[..end].to_string()
}

