#![allow(clippy::unwrap_used, clippy::expect_used)]

//! API keys through the real binary (issue 13): a key made on the account page
//! introspects active with its scopes for any confidential client, and inactive after
//! revocation, after its expiry, and once its user is disabled or deleted; keys are
//! refused at `/token`, `/userinfo` and (unless configured) the admin API; the admin
//! API makes, lists and revokes them; a client holding a key may revoke it; and
//! unknown keys from one address are throttled.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, BOB, Broker, Browser, Landing, SECOND_APP, Setup, TestClient,
    TestUser, WEB_APP,
};

const ROLES: &str = r#"
[roles]
admin_role = "admin"
default_roles = ["member"]

[roles.permissions]
admin = ["admin:*"]
member = ["reports:read"]

[[roles.rules]]
role = "admin"
provider = "local"
group = "admins"
"#;

const FEW_FAILURES: &str = r#"
[api_keys]
max_lifetime = "30d"
max_failures_per_ip = 3
failure_window = "1m"
"#;

fn setup() -> Setup {
    Broker::setup().extra(ROLES)
}

/// Signs `user` in through WEB_APP in `browser` (which keeps the SSO session: a second
/// call needs no password) and returns the access token, with `scope`.
async fn sign_in(broker: &Broker, browser: &Browser, user: &TestUser, scope: &str) -> String {
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
    tokens.access_token().to_string()
}

async fn account_body(broker: &Broker, browser: &Browser) -> String {
    browser
        .open(&broker.url("/account"))
        .await
        .expect_page()
        .body
}

/// The value of the first `attribute="…"` after `marker` in `html`.
fn after(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find(['"', '<'])?;
    Some(html[start..start + end].to_string())
}

fn csrf_of(html: &str) -> String {
    after(html, "name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field on the account page:\n{html}"))
}

/// Makes a key on the account page of `browser`: the status and the page answered.
async fn make_key_on_page(
    broker: &Broker,
    browser: &Browser,
    name: &str,
    expires_in: &str,
    scopes: &[&str],
) -> (StatusCode, String) {
    let csrf = csrf_of(&account_body(broker, browser).await);
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("name", name),
        ("expires_in", expires_in),
    ];
    fields.extend(scopes.iter().map(|s| ("scope", *s)));
    let res = browser
        .post_raw(&broker.url("/account/keys"), &fields)
        .await;
    let status = res.status();
    (status, res.text().await.unwrap())
}

/// The secret a page shows once.
fn secret_on(page: &str) -> String {
    let secret = after(page, "<code id=\"new-key-secret\">")
        .unwrap_or_else(|| panic!("no new key on the page:\n{page}"));
    assert!(secret.starts_with("sbk_"), "{secret}");
    secret
}

/// The id of the first key with a revoke button on the page.
fn key_id_on(page: &str) -> String {
    after(page, "id=\"revoke-").unwrap_or_else(|| panic!("no revocable key:\n{page}"))
}

/// POSTs `form` to `path` as a confidential `client` (Basic authentication).
async fn post_as(
    broker: &Broker,
    path: &str,
    client: &TestClient,
    form: &[(&str, &str)],
) -> (StatusCode, Value) {
    let res = broker
        .http()
        .post(broker.url(path))
        .basic_auth(client.id, client.secret)
        .form(form)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn introspect(broker: &Broker, client: &TestClient, token: &str) -> (StatusCode, Value) {
    post_as(broker, "/introspect", client, &[("token", token)]).await
}

/// Introspects as SECOND_APP, a confidential client the key was never shown to.
async fn introspected(broker: &Broker, token: &str) -> Value {
    let (status, body) = introspect(broker, &SECOND_APP, token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn inactive() -> Value {
    json!({ "active": false })
}

/// Calls the admin API with `authorization` as the whole header value.
async fn admin(
    broker: &Broker,
    method: Method,
    path: &str,
    authorization: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = broker
        .http()
        .request(method, broker.url(&format!("/admin/api/v1{path}")))
        .header("authorization", authorization);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_key_made_on_the_account_page_is_active_with_its_scopes_until_revoked() {
    let broker = setup().start().await;
    let browser = Browser::new(&broker);
    sign_in(&broker, &browser, &ADMIN, "openid").await;

    let page = account_body(&broker, &browser).await;
    assert!(page.contains("id=\"create-key\""), "{page}");
    assert!(page.contains("value=\"reports:read\""), "{page}");
    assert!(page.contains("value=\"admin:*\""), "{page}");

    let (status, page) = make_key_on_page(
        &broker,
        &browser,
        "deploy script",
        "3600",
        &["reports:read", "admin:users:read"],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let secret = secret_on(&page);
    assert_eq!(secret.len(), 4 + 43, "sbk_ and 256 bits in base64url");
    // Shown once: the page read again lists the key, never its secret.
    let again = account_body(&broker, &browser).await;
    assert!(again.contains("deploy script"), "{again}");
    assert!(!again.contains(&secret));
    assert!(
        !broker.log().contains(&secret[4..]),
        "the secret reached the log"
    );

    let body = introspected(&broker, &secret).await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["token_type"], "api_key");
    assert_eq!(body["sub"], ADMIN.id);
    assert_eq!(body["scope"], "admin:users:read reports:read");
    assert_eq!(
        body["permissions"],
        json!(["admin:users:read", "reports:read"])
    );
    let (iat, exp) = (body["iat"].as_i64().unwrap(), body["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 3600);

    // A permission the person does not hold cannot be put on a key.
    let bob_browser = Browser::new(&broker);
    sign_in(&broker, &bob_browser, &BOB, "openid").await;
    let (status, page) =
        make_key_on_page(&broker, &bob_browser, "too much", "3600", &["admin:*"]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page.contains("id=\"key-error\""), "{page}");

    // Revoking needs the session's CSRF token, then takes effect at once.
    let id = key_id_on(&again);
    let forged = browser
        .post_raw(
            &broker.url(&format!("/account/keys/{id}/revoke")),
            &[("csrf", "forged")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(introspected(&broker, &secret).await["active"], true);
    let revoked = browser
        .post_raw(
            &broker.url(&format!("/account/keys/{id}/revoke")),
            &[("csrf", &csrf_of(&again))],
        )
        .await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    assert_eq!(introspected(&broker, &secret).await, inactive());
    let after_revoke = account_body(&broker, &browser).await;
    assert!(after_revoke.contains("revoked"), "{after_revoke}");

    // Both writes are in the audit trail, by the person.
    let token = sign_in(&broker, &browser, &ADMIN, "openid permissions").await;
    let (status, audit) = admin(
        &broker,
        Method::GET,
        &format!("/audit?subject={}", ADMIN.id),
        &format!("Bearer {token}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let kinds: Vec<(&str, &str)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap(),
                e["actor"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let me = format!("user:{}", ADMIN.id);
    assert!(
        kinds.contains(&("api_key_created", me.as_str())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("api_key_revoked", me.as_str())),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_key_is_inactive_after_its_expiry() {
    let broker = setup().start().await;
    let browser = Browser::new(&broker);
    sign_in(&broker, &browser, &BOB, "openid").await;
    let (status, page) = make_key_on_page(&broker, &browser, "short", "2", &["reports:read"]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let secret = secret_on(&page);
    assert_eq!(introspected(&broker, &secret).await["active"], true);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(introspected(&broker, &secret).await, inactive());

    // Past the configured maximum is refused.
    let (status, page) = make_key_on_page(&broker, &browser, "long", "99999999", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
}

#[tokio::test]
async fn disabling_or_deleting_the_user_ends_their_keys() {
    let broker = setup().start().await;
    let admin_browser = Browser::new(&broker);
    let token = sign_in(&broker, &admin_browser, &ADMIN, "openid permissions").await;
    let bearer = format!("Bearer {token}");
    let browser = Browser::new(&broker);
    sign_in(&broker, &browser, &BOB, "openid").await;
    let (_, page) = make_key_on_page(&broker, &browser, "bob's", "3600", &["reports:read"]).await;
    let secret = secret_on(&page);
    assert_eq!(introspected(&broker, &secret).await["active"], true);

    broker.user_command(&["disable", BOB.id], "");
    assert_eq!(introspected(&broker, &secret).await, inactive());
    // Disabling revoked the key: enabling the person does not bring it back.
    broker.user_command(&["enable", BOB.id], "");
    assert_eq!(introspected(&broker, &secret).await, inactive());

    // The admin API makes another for Bob; deleting Bob ends it.
    let (status, made) = admin(
        &broker,
        Method::POST,
        &format!("/users/{}/keys", BOB.id),
        &bearer,
        Some(json!({ "name": "ci", "scopes": ["reports:read"], "expires_in": 600 })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let second = made["secret"].as_str().unwrap().to_string();
    assert_eq!(introspected(&broker, &second).await["active"], true);
    let (status, _) = admin(
        &broker,
        Method::DELETE,
        &format!("/users/{}", BOB.id),
        &bearer,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(introspected(&broker, &second).await, inactive());
}

#[tokio::test]
async fn keys_are_refused_at_token_userinfo_and_by_default_at_the_admin_api() {
    let broker = setup().start().await;
    let browser = Browser::new(&broker);
    sign_in(&broker, &browser, &ADMIN, "openid").await;
    let (_, page) = make_key_on_page(&broker, &browser, "k", "3600", &["admin:*"]).await;
    let secret = secret_on(&page);

    broker.userinfo(&secret).await.assert_invalid_token();
    broker
        .refresh(&WEB_APP, &secret)
        .await
        .assert_error("invalid_grant");
    broker
        .token_request(
            &WEB_APP,
            &[
                ("grant_type", "authorization_code"),
                ("code", &secret),
                ("redirect_uri", WEB_APP.redirect_uri),
                ("code_verifier", &"v".repeat(43)),
            ],
        )
        .await
        .assert_error("invalid_grant");
    for scheme in ["Token", "Bearer"] {
        let (status, body) = admin(
            &broker,
            Method::GET,
            "/users",
            &format!("{scheme} {secret}"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("API keys"),
            "{body}"
        );
    }
    // None of that spent or ended the key.
    assert_eq!(introspected(&broker, &secret).await["active"], true);
}

#[tokio::test]
async fn where_allowed_the_admin_api_takes_a_key_with_its_scopes_and_manages_keys() {
    let broker = setup()
        .extra("[admin]\naccept_api_keys = true\n")
        .start()
        .await;
    let browser = Browser::new(&broker);
    let token = sign_in(&broker, &browser, &ADMIN, "openid permissions").await;
    let bearer = format!("Bearer {token}");

    let (status, made) = admin(
        &broker,
        Method::POST,
        &format!("/users/{}/keys", ADMIN.id),
        &bearer,
        Some(json!({ "name": "reader", "scopes": ["admin:users:read"], "expires_in": 3600 })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["status"], "active");
    assert_eq!(made["created_by"], format!("user:{}", ADMIN.id));
    let secret = made["secret"].as_str().unwrap().to_string();
    let key_id = made["id"].as_str().unwrap().to_string();
    let with_key = format!("Token {secret}");

    let (status, users) = admin(&broker, Method::GET, "/users", &with_key, None).await;
    assert_eq!(status, StatusCode::OK, "{users}");
    let (status, refused) = admin(
        &broker,
        Method::POST,
        "/users",
        &with_key,
        Some(json!({ "email": "x@example.com" })),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "beyond the key's scopes: {refused}"
    );

    // Listed without a secret; bad requests name their field.
    let (status, listed) = admin(
        &broker,
        Method::GET,
        &format!("/users/{}/keys", ADMIN.id),
        &with_key,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed[0]["id"], key_id.as_str());
    assert!(listed[0].get("secret").is_none(), "{listed}");
    assert!(!listed.to_string().contains(&secret));
    let (status, bad) = admin(
        &broker,
        Method::POST,
        &format!("/users/{}/keys", ADMIN.id),
        &bearer,
        Some(json!({ "name": "x", "scopes": ["billing:pay"], "expires_in": 60 })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "not held: {bad}");
    assert_eq!(bad["field"], "scopes");
    let (status, bad) = admin(
        &broker,
        Method::POST,
        &format!("/users/{}/keys", ADMIN.id),
        &bearer,
        Some(json!({ "name": "x", "scopes": [], "expires_in": 0 })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert_eq!(bad["field"], "expires_in");

    // A key cannot revoke keys without admin:keys:write.
    let path = format!("/users/{}/keys/{key_id}", ADMIN.id);
    let (status, _) = admin(&broker, Method::DELETE, &path, &with_key, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = admin(&broker, Method::DELETE, &path, &bearer, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = admin(&broker, Method::GET, "/users", &with_key, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(introspected(&broker, &secret).await, inactive());
    let (status, _) = admin(
        &broker,
        Method::DELETE,
        &format!("/users/{}/keys/nope", ADMIN.id),
        &bearer,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_client_holding_a_key_revokes_it() {
    let broker = setup().start().await;
    let browser = Browser::new(&broker);
    sign_in(&broker, &browser, &BOB, "openid").await;
    let (_, page) = make_key_on_page(&broker, &browser, "leaked", "3600", &[]).await;
    let secret = secret_on(&page);
    let body = introspected(&broker, &secret).await;
    assert_eq!(body["active"], true, "{body}");
    assert!(
        body.get("scope").is_some_and(|s| s == ""),
        "no scopes: {body}"
    );

    let (status, _) = post_as(&broker, "/revoke", &SECOND_APP, &[("token", &secret)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(introspected(&broker, &secret).await, inactive());
    assert_eq!(introspect(&broker, &WEB_APP, &secret).await.1, inactive());
}

#[tokio::test]
async fn unknown_keys_from_one_address_are_throttled() {
    let broker = setup()
        .extra(FEW_FAILURES)
        .extra("[admin]\naccept_api_keys = true\n")
        .start()
        .await;
    let browser = Browser::new(&broker);
    sign_in(&broker, &browser, &BOB, "openid").await;
    let (_, page) = make_key_on_page(&broker, &browser, "good", "3600", &[]).await;
    let secret = secret_on(&page);
    assert_eq!(introspected(&broker, &secret).await["active"], true);

    for i in 0..3 {
        let guess = format!("sbk_guess{i}");
        assert_eq!(introspected(&broker, &guess).await, inactive());
    }
    // Past the bound even a good key is refused from this address, at both doors.
    let (status, body) = introspect(&broker, &SECOND_APP, &secret).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"], "slow_down");
    let (status, body) = admin(
        &broker,
        Method::GET,
        "/users",
        &format!("Token {secret}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // Both say how long to wait: the failure window.
    let introspection = broker
        .http()
        .post(broker.url("/introspect"))
        .basic_auth(SECOND_APP.id, SECOND_APP.secret)
        .form(&[("token", secret.as_str())])
        .send()
        .await
        .unwrap();
    let admin_api = broker
        .http()
        .get(broker.url("/admin/api/v1/users"))
        .header("authorization", format!("Token {secret}"))
        .send()
        .await
        .unwrap();
    for res in [introspection, admin_api] {
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()["retry-after"], "60");
    }
    // Access tokens are not keys: they are not throttled.
    let token = sign_in(&broker, &browser, &BOB, "openid").await;
    let (status, body) = introspect(&broker, &WEB_APP, &token).await;
    assert_eq!(
        (status, &body["active"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
}

#[tokio::test]
async fn the_cli_makes_lists_and_revokes_keys_with_the_same_rules() {
    let broker = setup().start().await;
    let browser = Browser::new(&broker);
    sign_in(&broker, &browser, &BOB, "openid").await;
    let config = broker.config_path().to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["key"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", &config]);
        let out = broker.cli(&all);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, out, err) = run(&[
        "create",
        BOB.id,
        "--name",
        "deploy",
        "--scope",
        "reports:read",
        "--expires-in",
        "1h",
    ]);
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let (id, secret) = (lines.next().unwrap(), lines.next().unwrap());
    assert!(secret.starts_with("sbk_"), "{out}");
    let active = introspected(&broker, secret).await;
    assert_eq!(
        (active["active"].as_bool(), active["scope"].as_str()),
        (Some(true), Some("reports:read")),
        "{active}"
    );

    // The same rules as the account page and the admin API.
    let (ok, _, err) = run(&[
        "create",
        BOB.id,
        "--name",
        "x",
        "--scope",
        "admin:*",
        "--expires-in",
        "1h",
    ]);
    assert!(
        !ok && err.contains("admin:*"),
        "a scope Bob does not hold: {err}"
    );
    let (ok, _, err) = run(&[
        "create",
        BOB.id,
        "--name",
        "x",
        "--scope",
        "reports:read",
        "--expires-in",
        "999d",
    ]);
    assert!(!ok && err.contains("expiry"), "{err}");
    let (ok, _, err) = run(&[
        "create",
        BOB.id,
        "--name",
        "x",
        "--scope",
        "reports:read",
        "--expires-in",
        "soon",
    ]);
    assert!(!ok && err.contains("soon"), "{err}");
    let (ok, _, err) = run(&[
        "create",
        "ghost",
        "--name",
        "x",
        "--scope",
        "reports:read",
        "--expires-in",
        "1h",
    ]);
    assert!(!ok && err.contains("no such user"), "{err}");

    let (_, listed, _) = run(&["list", BOB.id]);
    assert!(
        listed.starts_with(&format!("{id}\tactive\t")) && listed.ends_with("deploy\treports:read"),
        "{listed}"
    );
    let (ok, _, err) = run(&["revoke", BOB.id, id]);
    assert!(ok, "{err}");
    assert_eq!(introspected(&broker, secret).await, inactive());
    let (ok, _, err) = run(&["revoke", BOB.id, id]);
    assert!(!ok && err.contains("no live key"), "{err}");
    let (_, listed, _) = run(&["list", BOB.id]);
    assert!(listed.contains("\trevoked\t"), "{listed}");
}
