#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The client crate (`switchboard-client`) protecting an actix-web API, against the
//! real broker binary (issue 15): no token → 401; another app's token (wrong `aud`)
//! → 401; a token without the permission → 403; with it → 200; a public path → 200
//! without a token; an API key on a route that allows keys → 200 and on one that does
//! not → 401; a revoked token on an introspection route → 401 within the cache bound.

use actix_web::{App, HttpServer, web};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};
use switchboard_client::actix::{Protect, require};
use switchboard_client::{ClientSecret, Introspector, Issuer, Principal, Validator};
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, BOB, Broker, Browser, EDDSA_APP, ES256_APP, Landing, SECOND_APP,
    Setup, TestUser, WEB_APP,
};

/// The API's audience: the `aud` its tokens must name.
const API: &str = "https://invoices.example";
/// How long the API trusts an introspection answer.
const CACHE_BOUND: Duration = Duration::from_millis(1500);

const ROLES: &str = r#"
[roles]
admin_role = "admin"
default_roles = ["member"]

[roles.permissions]
admin = ["invoices:*"]
member = ["reports:read"]

[[roles.rules]]
role = "admin"
provider = "local"
group = "admins"
"#;

/// web-app and es256-app get tokens for the API; second-app is the API's own client
/// (it introspects the API's tokens); eddsa-app is another app, whose tokens name
/// the issuer.
fn setup() -> Setup {
    let both = "grants = [\"authorization_code\", \"refresh_token\", \"client_credentials\"]";
    Broker::setup()
        .extra(ROLES)
        .client(WEB_APP.id, &format!("audience = {API:?}"))
        .client(SECOND_APP.id, &format!("audience = {API:?}"))
        .client(ES256_APP.id, &format!("audience = {API:?}"))
        .client(ES256_APP.id, both)
        .client(EDDSA_APP.id, both)
}

async fn me(caller: Principal) -> String {
    caller.sub
}

/// Starts the example API (the README's "Protect an API") on a free loopback port,
/// in its own thread and actix system; returns its base URL.
fn start_api(broker: &Broker) -> String {
    let issuer = Issuer::new(broker.issuer()).unwrap();
    let protect = Protect::new(Validator::new(issuer.clone(), API))
        .introspector(
            Introspector::new(
                issuer,
                SECOND_APP.id,
                ClientSecret::new(SECOND_APP.secret.unwrap()),
            )
            .cache_for(CACHE_BOUND),
        )
        .public("/health")
        .api_keys("/reports")
        .introspect("/payments");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .wrap(protect.clone())
                    .route("/health", web::get().to(|| async { "ok" }))
                    .route("/me", web::get().to(me))
                    .service(
                        web::resource("/invoices/approve")
                            .wrap(require("invoices:approve"))
                            .route(web::post().to(|| async { "approved" })),
                    )
                    .service(
                        web::resource("/reports")
                            .wrap(require("reports:read"))
                            .route(web::get().to(me)),
                    )
                    .route("/payments", web::get().to(me))
            })
            .workers(1)
            .bind(("127.0.0.1", 0))
            .unwrap();
            tx.send(server.addrs()[0].port()).unwrap();
            server.run().await.unwrap();
        });
    });
    let port = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    format!("http://127.0.0.1:{port}")
}

struct Answer {
    status: StatusCode,
    challenge: Option<String>,
    body: String,
}

async fn call(method: reqwest::Method, url: &str, authorization: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let res = request.send().await.unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    Answer {
        status,
        challenge,
        body: res.text().await.unwrap(),
    }
}

async fn get(url: &str, authorization: Option<&str>) -> Answer {
    call(reqwest::Method::GET, url, authorization).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Signs `user` in through web-app in `browser` with `scope`; the access and ID token.
async fn sign_in(
    broker: &Broker,
    browser: &Browser,
    user: &TestUser,
    scope: &str,
) -> (String, String) {
    let request = AuthorizeRequest::new(WEB_APP).scope(scope);
    let response = match browser.open(&request.url(broker)).await {
        Landing::LoginForm(form) => browser
            .submit(&form, user.username, user.password)
            .await
            .expect_client(),
        other => other.expect_client(),
    };
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    (
        tokens.access_token().to_string(),
        tokens.id_token().to_string(),
    )
}

async fn client_credentials(broker: &Broker, client: &switchboard_e2e::TestClient) -> String {
    let reply = broker
        .token_request(client, &[("grant_type", "client_credentials")])
        .await;
    reply.assert_ok();
    reply.access_token().to_string()
}

#[tokio::test]
async fn an_api_answers_401_403_and_200_as_the_caller_deserves() {
    let broker = setup().start().await;
    let api = start_api(&broker);

    // A public path needs nothing.
    let health = get(&format!("{api}/health"), None).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "ok")
    );

    // No token: 401 with a bare Bearer challenge (RFC 6750 §3.1: no error code).
    let none = get(&format!("{api}/me"), None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.challenge.as_deref(), Some("Bearer"));
    let garbage = get(&format!("{api}/me"), Some("Bearer not-a-jwt")).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        garbage.challenge.as_deref(),
        Some("Bearer error=\"invalid_token\"")
    );
    let body: Value = serde_json::from_str(&garbage.body).unwrap();
    assert_eq!(body["error"], "invalid_token");

    // Ann (admin) and Bob (member), logged in through web-app, whose tokens are for the API.
    let (ann, ann_id_token) = sign_in(
        &broker,
        &Browser::new(&broker),
        &ADMIN,
        "openid permissions",
    )
    .await;
    let (bob, _) = sign_in(&broker, &Browser::new(&broker), &BOB, "openid permissions").await;
    let approve = format!("{api}/invoices/approve");

    let ok = get(&format!("{api}/me"), Some(&bearer(&ann))).await;
    assert_eq!((ok.status, ok.body.as_str()), (StatusCode::OK, ADMIN.id));
    let approved = call(reqwest::Method::POST, &approve, Some(&bearer(&ann))).await;
    assert_eq!(
        (approved.status, approved.body.as_str()),
        (StatusCode::OK, "approved")
    );

    // Logged in without the permission: 403, not 401.
    let denied = call(reqwest::Method::POST, &approve, Some(&bearer(&bob))).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(
        denied.challenge.as_deref(),
        Some("Bearer error=\"insufficient_scope\", scope=\"invoices:approve\"")
    );
    // Not logged in on a guarded route: 401, not 403.
    let anonymous = call(reqwest::Method::POST, &approve, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // Another app's token (aud = the issuer, the broker's default) is refused...
    let other_app = client_credentials(&broker, &EDDSA_APP).await;
    let wrong_aud = get(&format!("{api}/me"), Some(&bearer(&other_app))).await;
    assert_eq!(wrong_aud.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_aud.challenge.as_deref(),
        Some("Bearer error=\"invalid_token\"")
    );
    // ... while a client of the API signing ES256 is verified with its key's algorithm.
    let es256 = client_credentials(&broker, &ES256_APP).await;
    let machine = get(&format!("{api}/me"), Some(&bearer(&es256))).await;
    assert_eq!(
        (machine.status, machine.body.as_str()),
        (StatusCode::OK, ES256_APP.id)
    );

    // An ID token is not an access token, even for a person the API would accept.
    let id_token = get(&format!("{api}/me"), Some(&bearer(&ann_id_token))).await;
    assert_eq!(id_token.status, StatusCode::UNAUTHORIZED);

    // A token whose signature was tampered with.
    let mut forged = ann.clone();
    forged.pop();
    forged.push(if ann.ends_with('A') { 'B' } else { 'A' });
    let tampered = get(&format!("{api}/me"), Some(&bearer(&forged))).await;
    assert_eq!(tampered.status, StatusCode::UNAUTHORIZED);
}

/// The value of the first `attribute="…"` after `marker` in `html`.
fn after(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find(['"', '<'])?;
    Some(html[start..start + end].to_string())
}

/// Makes an API key with `scopes` on the account page of `browser`: its secret.
async fn make_key(broker: &Broker, browser: &Browser, scopes: &[&str]) -> String {
    let page = browser
        .open(&broker.url("/account"))
        .await
        .expect_page()
        .body;
    let csrf = after(&page, "name=\"csrf\" value=\"").expect("a CSRF field on /account");
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("name", "ci job"),
        ("expires_in", "7"),
    ];
    fields.extend(scopes.iter().map(|s| ("scope", *s)));
    let res = browser
        .post_raw(&broker.url("/account/keys"), &fields)
        .await;
    let page = res.text().await.unwrap();
    let secret = after(&page, "<code id=\"new-key-secret\">")
        .unwrap_or_else(|| panic!("no new key on the page:\n{page}"));
    assert!(secret.starts_with("sbk_"), "{secret}");
    secret
}

#[tokio::test]
async fn api_keys_work_only_on_routes_that_accept_them() {
    let broker = setup().start().await;
    let api = start_api(&broker);
    let browser = Browser::new(&broker);
    sign_in(&broker, &browser, &BOB, "openid").await;
    let key = make_key(&broker, &browser, &["reports:read"]).await;

    let reports = format!("{api}/reports");
    let by_token_scheme = get(&reports, Some(&format!("Token {key}"))).await;
    assert_eq!(
        (by_token_scheme.status, by_token_scheme.body.as_str()),
        (StatusCode::OK, BOB.id)
    );
    let as_bearer = get(&reports, Some(&bearer(&key))).await;
    assert_eq!(as_bearer.status, StatusCode::OK);

    // Not on a route that does not accept keys.
    let elsewhere = get(&format!("{api}/me"), Some(&format!("Token {key}"))).await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        elsewhere.challenge.as_deref(),
        Some("Bearer error=\"invalid_token\"")
    );
    // An unknown key, where keys are accepted.
    let unknown = format!("sbk_{}", "A".repeat(43));
    let made_up = get(&reports, Some(&format!("Token {unknown}"))).await;
    assert_eq!(made_up.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_revoked_token_stops_on_an_introspected_route_within_the_cache_bound() {
    let broker = setup().start().await;
    let api = start_api(&broker);
    let (ann, _) = sign_in(&broker, &Browser::new(&broker), &ADMIN, "openid").await;
    let payments = format!("{api}/payments");
    assert_eq!(
        get(&payments, Some(&bearer(&ann))).await.status,
        StatusCode::OK
    );

    broker.revoke(&WEB_APP, &ann).await;
    let revoked_at = Instant::now();
    let stopped = loop {
        let answer = get(&payments, Some(&bearer(&ann))).await;
        if answer.status == StatusCode::UNAUTHORIZED {
            break revoked_at.elapsed();
        }
        assert_eq!(answer.status, StatusCode::OK);
        assert!(
            revoked_at.elapsed() < CACHE_BOUND + Duration::from_secs(1),
            "the revoked token still works after the cache bound"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        stopped <= CACHE_BOUND + Duration::from_millis(500),
        "{stopped:?}"
    );
    // A route that only verifies the signature cannot know (the price of JWTs,
    // bounded by the token's lifetime).
    assert_eq!(
        get(&format!("{api}/me"), Some(&bearer(&ann))).await.status,
        StatusCode::OK
    );
}
