//! The admin API through the real binary (issue 13): who may call it, users created,
//! paged, updated without lost writes, disabled and deleted (with what they held), the
//! audit trail, and one problem format for every error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, BOB, Broker, Browser, TestUser, WEB_APP, free_port,
};

const ROLES: &str = r#"
[roles]
admin_role = "admin"

[roles.permissions]
admin = ["admin:*"]
auditor = ["admin:audit:read", "admin:users:read"]
approver = ["invoices:approve"]
provisioner = ["admin:users:*"]

[[roles.rules]]
role = "admin"
provider = "local"
group = "admins"

[[roles.rules]]
role = "approver"
managed_group = "approvers"

[[roles.rules]]
role = "provisioner"
client_id = "web-app"
"#;

async fn broker() -> Broker {
    Broker::setup()
        .client(
            WEB_APP.id,
            "grants = [\"authorization_code\", \"refresh_token\", \"client_credentials\"]",
        )
        .extra(ROLES)
        .start()
        .await
}

/// An access token of `user` for WEB_APP with `scope`.
async fn token(broker: &Broker, user: &TestUser, scope: &str) -> String {
    let request = AuthorizeRequest::new(WEB_APP).scope(scope);
    let response = Browser::new(broker)
        .log_in(&request.url(broker), user)
        .await;
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    tokens.access_token().to_string()
}

async fn admin_token(broker: &Broker) -> String {
    token(broker, &ADMIN, "openid permissions").await
}

struct Reply {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Reply {
    fn etag(&self) -> String {
        self.headers["etag"].to_str().unwrap().to_string()
    }

    /// Panics unless this is an RFC 9457 problem with `status`.
    fn assert_problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{}",
            self.body
        );
        assert_eq!(self.body["status"], status, "{}", self.body);
        assert!(self.body["title"].is_string(), "{}", self.body);
        &self.body
    }
}

async fn call(
    broker: &Broker,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    if_match: Option<&str>,
) -> Reply {
    let mut req = broker
        .http()
        .request(method, broker.url(&format!("/admin/api/v1{path}")));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(tag) = if_match {
        req = req.header("if-match", tag);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status} non-JSON: {text}"))
    };
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(broker: &Broker, path: &str, token: &str) -> Reply {
    call(broker, Method::GET, path, Some(token), None, None).await
}

async fn create(broker: &Broker, token: &str, body: Value) -> Reply {
    call(
        broker,
        Method::POST,
        "/users",
        Some(token),
        Some(body),
        None,
    )
    .await
}

#[tokio::test]
async fn anonymous_callers_get_401_and_callers_without_the_permission_403() {
    let broker = broker().await;
    let anonymous = call(&broker, Method::GET, "/users", None, None, None).await;
    anonymous.assert_problem(401);
    assert!(
        anonymous.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let forged = call(
        &broker,
        Method::GET,
        "/users",
        Some("not.a.jwt"),
        None,
        None,
    )
    .await;
    forged.assert_problem(401);
    assert!(
        forged.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    let bob = token(&broker, &BOB, "openid permissions").await;
    let refused = get(&broker, "/users", &bob).await;
    refused.assert_problem(403);
    assert!(
        refused.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    // The admin's token without the permissions scope was not given that power.
    let narrow = token(&broker, &ADMIN, "openid profile").await;
    get(&broker, "/users", &narrow).await.assert_problem(403);

    let admin = admin_token(&broker).await;
    assert_eq!(get(&broker, "/users", &admin).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_created_user_signs_in_and_a_granted_role_reaches_their_token() {
    let broker = broker().await;
    let admin = admin_token(&broker).await;
    let created = create(
        &broker,
        &admin,
        json!({ "email": "carol@example.com", "username": "carol", "password": "correct horse" }),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert_eq!(created.body["has_password"], true);
    assert!(created.body.get("password").is_none());
    assert_eq!(created.etag(), "\"r1\"");

    let granted = call(
        &broker,
        Method::PUT,
        &format!("/users/{id}/roles/admin"),
        Some(&admin),
        None,
        None,
    )
    .await;
    assert_eq!(granted.status, StatusCode::CREATED);
    let again = call(
        &broker,
        Method::PUT,
        &format!("/users/{id}/roles/admin"),
        Some(&admin),
        None,
        None,
    )
    .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT, "idempotent");

    let request = AuthorizeRequest::new(WEB_APP).scope("openid roles permissions");
    let tokens = broker
        .sign_in_with_password(&Browser::new(&broker), &request, "carol", "correct horse")
        .await;
    let claims = switchboard_e2e::jwt_claims(tokens.access_token());
    assert_eq!(claims["sub"], id.as_str());
    assert!(
        claims["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "admin"),
        "{claims}"
    );

    let detail = get(&broker, &format!("/users/{id}"), &admin).await;
    assert_eq!(detail.status, StatusCode::OK);
    assert_eq!(detail.body["role_grants"][0]["role"], "admin");
    assert_eq!(detail.body["identities"][0]["provider"], "local");

    // The audit trail names the administrator who acted.
    let audit = get(&broker, &format!("/audit?subject={id}"), &admin).await;
    let kinds: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["user_created", "role_granted"], "{}", audit.body);
    assert_eq!(
        audit.body["items"][0]["actor"],
        format!("user:{}", ADMIN.id)
    );
}

#[tokio::test]
async fn paging_walks_every_user_once_while_users_are_added() {
    let broker = broker().await;
    let admin = admin_token(&broker).await;
    // Every user that exists when the walk starts, the static admin included.
    let mut expected = BTreeSet::from([ADMIN.id.to_string()]);
    for i in 0..120 {
        let created = create(
            &broker,
            &admin,
            json!({ "email": format!("user{i}@example.com") }),
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        expected.insert(created.body["id"].as_str().unwrap().to_string());
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut added = 0;
    loop {
        let path = match &cursor {
            None => "/users?page_size=25".to_string(),
            Some(c) => format!("/users?page_size=25&cursor={c}"),
        };
        let page = get(&broker, &path, &admin).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for user in page.body["items"].as_array().unwrap() {
            seen.push(user["id"].as_str().unwrap().to_string());
        }
        // Someone adds users during the walk: they come after, never in between.
        for _ in 0..2 {
            let created = create(
                &broker,
                &admin,
                json!({ "email": format!("late{added}@example.com") }),
            )
            .await;
            assert_eq!(created.status, StatusCode::CREATED);
            added += 1;
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(seen.len() < 1000, "the walk never ends");
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    let missing: Vec<_> = expected.difference(&unique).collect();
    assert!(missing.is_empty(), "no gaps: {missing:?}");
    // Users added during the walk come after the pages already read (some or all of
    // them on later pages), never in place of one.

    get(&broker, "/users?page_size=0", &admin)
        .await
        .assert_problem(422);
    get(&broker, "/users?page_size=201", &admin)
        .await
        .assert_problem(422);
    let bad = get(&broker, "/users?cursor=garbage", &admin).await;
    assert_eq!(bad.assert_problem(422)["field"], "cursor");
    get(&broker, "/users?pagesize=3", &admin)
        .await
        .assert_problem(400);
    let filtered = get(&broker, "/users?email=USER7@example.com", &admin).await;
    assert_eq!(filtered.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_stale_write_gets_412_and_no_write_without_if_match() {
    let broker = broker().await;
    let admin = admin_token(&broker).await;
    let created = create(&broker, &admin, json!({ "email": "dan@example.com" })).await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let path = format!("/users/{id}");
    let read = get(&broker, &path, &admin).await;
    let tag = read.etag();

    let first = call(
        &broker,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({ "name": "Dan" })),
        Some(&tag),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_ne!(first.etag(), tag);
    let second = call(
        &broker,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({ "name": "Daniel" })),
        Some(&tag),
    )
    .await;
    second.assert_problem(412);
    call(
        &broker,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({ "name": "Daniel" })),
        None,
    )
    .await
    .assert_problem(428);
    assert_eq!(get(&broker, &path, &admin).await.body["name"], "Dan");

    // Bad bodies name the field and change nothing.
    let unknown = call(
        &broker,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({ "nickname": "D" })),
        Some(&first.etag()),
    )
    .await;
    assert!(
        unknown.assert_problem(400)["detail"]
            .as_str()
            .unwrap()
            .contains("nickname")
    );
    let wrong_type = call(
        &broker,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({ "email_verified": "yes" })),
        Some(&first.etag()),
    )
    .await;
    assert_eq!(wrong_type.assert_problem(400)["field"], "email_verified");
    let taken = call(
        &broker,
        Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({ "email": "admin@example.com", "email_verified": true })),
        Some(&first.etag()),
    )
    .await;
    // The static admin is in the store once they logged in, their email verified:
    // a second verified owner is refused (an unverified copy would be a mere claim).
    taken.assert_problem(409);
}

#[tokio::test]
async fn disabling_and_deleting_end_what_the_user_held() {
    let broker = broker().await;
    let admin = admin_token(&broker).await;
    for (action, password) in [("disable", "first password"), ("delete", "second password")] {
        let email = format!("{action}@example.com");
        let created = create(
            &broker,
            &admin,
            json!({ "email": email, "password": password }),
        )
        .await;
        let id = created.body["id"].as_str().unwrap().to_string();
        let request = AuthorizeRequest::new(WEB_APP).scope("openid offline_access");
        let tokens = broker
            .sign_in_with_password(&Browser::new(&broker), &request, &email, password)
            .await;
        let sessions = get(&broker, &format!("/users/{id}/sessions"), &admin).await;
        assert_eq!(
            sessions.body.as_array().unwrap().len(),
            1,
            "{}",
            sessions.body
        );

        let path = format!("/users/{id}");
        let done = match action {
            "disable" => {
                let tag = get(&broker, &path, &admin).await.etag();
                call(
                    &broker,
                    Method::PATCH,
                    &path,
                    Some(&admin),
                    Some(json!({ "status": "disabled" })),
                    Some(&tag),
                )
                .await
            }
            _ => call(&broker, Method::DELETE, &path, Some(&admin), None, None).await,
        };
        assert!(done.status.is_success(), "{action}: {}", done.body);
        broker
            .refresh(&WEB_APP, tokens.refresh_token())
            .await
            .assert_error("invalid_grant");
        broker
            .userinfo(tokens.access_token())
            .await
            .assert_invalid_token();
        if action == "delete" {
            get(&broker, &path, &admin).await.assert_problem(404);
            let audit = get(
                &broker,
                &format!("/audit?subject={id}&type=user_deleted"),
                &admin,
            )
            .await;
            assert_eq!(audit.body["items"].as_array().unwrap().len(), 1);
        }
    }
}

#[tokio::test]
async fn every_error_is_a_problem() {
    let broker = broker().await;
    let admin = admin_token(&broker).await;
    get(&broker, "/nowhere", &admin).await.assert_problem(404);
    get(&broker, "/users/no-such-user", &admin)
        .await
        .assert_problem(404);
    let missing_email = create(&broker, &admin, json!({ "username": "x" })).await;
    missing_email.assert_problem(400);
    let bad_email = create(&broker, &admin, json!({ "email": "nope" })).await;
    assert_eq!(bad_email.assert_problem(422)["field"], "email");
    let short = create(
        &broker,
        &admin,
        json!({ "email": "p@example.com", "password": "short" }),
    )
    .await;
    assert_eq!(short.assert_problem(422)["field"], "password");
    let huge = "x".repeat(2 * 1024 * 1024);
    let too_large = create(&broker, &admin, json!({ "email": huge })).await;
    assert_eq!(too_large.status.as_u16(), 413);
    too_large.assert_problem(413);
    let text = broker
        .http()
        .post(broker.url("/admin/api/v1/users"))
        .bearer_auth(&admin)
        .body("email=a@b.c")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status().as_u16(), 415);
    let bad_role = call(
        &broker,
        Method::PUT,
        &format!("/users/{}/roles/bad%20name", ADMIN.id),
        Some(&admin),
        None,
        None,
    )
    .await;
    bad_role.assert_problem(422);
}

#[tokio::test]
async fn the_openapi_document_is_served_and_names_every_route() {
    let broker = broker().await;
    let res = broker
        .http()
        .get(broker.url("/admin/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/admin/api/v1/users",
        "/admin/api/v1/users/{id}",
        "/admin/api/v1/users/{id}/password",
        "/admin/api/v1/users/{id}/sessions",
        "/admin/api/v1/users/{id}/roles/{role}",
        "/admin/api/v1/audit",
        "/admin/api/v1/groups",
        "/admin/api/v1/groups/{id}/members/{user_id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}

#[tokio::test]
async fn a_managed_group_gives_its_role_until_the_membership_ends() {
    let broker = broker().await;
    let admin = admin_token(&broker).await;
    // Bob is a user of the broker once he has signed in.
    token(&broker, &BOB, "openid").await;

    let created = call(
        &broker,
        Method::POST,
        "/groups",
        Some(&admin),
        Some(json!({ "name": "Approvers", "description": "may approve invoices" })),
        None,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["claim"], "managed/Approvers");
    let group = created.body["id"].as_str().unwrap().to_string();
    call(
        &broker,
        Method::POST,
        "/groups",
        Some(&admin),
        Some(json!({ "name": "APPROVERS" })),
        None,
    )
    .await
    .assert_problem(409);
    let bad = call(
        &broker,
        Method::POST,
        "/groups",
        Some(&admin),
        Some(json!({ "name": "a/b" })),
        None,
    )
    .await;
    assert_eq!(bad.assert_problem(422)["field"], "name");

    let member = format!("/groups/{group}/members/{}", BOB.id);
    let added = call(&broker, Method::PUT, &member, Some(&admin), None, None).await;
    assert_eq!(added.status, StatusCode::CREATED);
    let again = call(&broker, Method::PUT, &member, Some(&admin), None, None).await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    call(
        &broker,
        Method::PUT,
        &format!("/groups/{group}/members/nobody"),
        Some(&admin),
        None,
        None,
    )
    .await
    .assert_problem(404);
    let members = get(&broker, &format!("/groups/{group}/members"), &admin).await;
    assert_eq!(members.body["items"][0]["id"], BOB.id);

    let claims = |t: &str| switchboard_e2e::jwt_claims(t);
    let bobs = token(&broker, &BOB, "openid roles permissions groups").await;
    let c = claims(&bobs);
    assert!(
        c["roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "approver"),
        "{c}"
    );
    assert!(
        c["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "managed/Approvers"),
        "{c}"
    );

    let info = broker.userinfo(&bobs).await;
    assert!(info.body.contains("managed/Approvers"), "{}", info.body);
    let without = broker
        .userinfo(&token(&broker, &BOB, "openid profile").await)
        .await;
    assert!(!without.body.contains("managed/"), "{}", without.body);

    // A stale rename is refused; a fresh one keeps the rule working (names match
    // case-insensitively, and the rule names the group's current name).
    let tag = get(&broker, &format!("/groups/{group}"), &admin)
        .await
        .etag();
    let renamed = call(
        &broker,
        Method::PATCH,
        &format!("/groups/{group}"),
        Some(&admin),
        Some(json!({ "description": null })),
        Some(&tag),
    )
    .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    call(
        &broker,
        Method::PATCH,
        &format!("/groups/{group}"),
        Some(&admin),
        Some(json!({ "name": "Other" })),
        Some(&tag),
    )
    .await
    .assert_problem(412);

    let removed = call(&broker, Method::DELETE, &member, Some(&admin), None, None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let after = claims(&token(&broker, &BOB, "openid roles groups").await);
    assert!(
        !after["roles"]
            .as_array()
            .map(|r| r.iter().any(|r| r == "approver"))
            .unwrap_or(false),
        "{after}"
    );
    assert!(
        !after["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "managed/Approvers"),
        "{after}"
    );

    let audit = get(&broker, &format!("/audit?subject={}", BOB.id), &admin).await;
    let kinds: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["group_member_added", "group_member_removed"]);

    let deleted = call(
        &broker,
        Method::DELETE,
        &format!("/groups/{group}"),
        Some(&admin),
        None,
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    get(&broker, &format!("/groups/{group}"), &admin)
        .await
        .assert_problem(404);
    // Bob (no admin role) may not manage groups.
    let bob_admin = token(&broker, &BOB, "openid permissions").await;
    call(
        &broker,
        Method::POST,
        "/groups",
        Some(&bob_admin),
        Some(json!({ "name": "mine" })),
        None,
    )
    .await
    .assert_problem(403);
}

#[tokio::test]
async fn a_machine_caller_holds_what_client_id_rules_give_it() {
    let broker = broker().await;
    let machine = |scope: &'static str| {
        let broker = &broker;
        async move {
            let reply = broker
                .token_request(
                    &WEB_APP,
                    &[("grant_type", "client_credentials"), ("scope", scope)],
                )
                .await;
            reply.access_token().to_string()
        }
    };
    let token = machine("roles permissions").await;
    let claims = switchboard_e2e::jwt_claims(&token);
    assert_eq!(claims["roles"], json!(["provisioner"]), "{claims}");
    assert_eq!(claims["permissions"], json!(["admin:users:*"]), "{claims}");

    assert_eq!(get(&broker, "/users", &token).await.status, StatusCode::OK);
    let created = create(&broker, &token, json!({ "email": "svc@example.com" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    // Users, not groups: admin:users:* does not reach admin:groups:write.
    call(
        &broker,
        Method::POST,
        "/groups",
        Some(&token),
        Some(json!({ "name": "bots" })),
        None,
    )
    .await
    .assert_problem(403);
    // Without the permissions scope the token was not given that power.
    let plain = machine("roles").await;
    get(&broker, "/users", &plain).await.assert_problem(403);

    let admin = admin_token(&broker).await;
    let id = created.body["id"].as_str().unwrap();
    let audit = get(&broker, &format!("/audit?subject={id}"), &admin).await;
    assert_eq!(audit.body["items"][0]["actor"], "client:web-app");
}

#[tokio::test]
async fn with_its_own_listener_the_admin_api_answers_only_there() {
    let port = free_port();
    let broker = Broker::setup()
        .client(
            WEB_APP.id,
            "grants = [\"authorization_code\", \"refresh_token\", \"client_credentials\"]",
        )
        .extra(ROLES)
        .extra(&format!("[admin]\nlisten = \"127.0.0.1:{port}\""))
        .start()
        .await;
    let admin = admin_token(&broker).await;
    // The public listener has no admin API.
    let public = get(&broker, "/users", &admin).await;
    public.assert_problem(404);

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut listed = None;
    for _ in 0..50 {
        match http
            .get(format!("{base}/admin/api/v1/users"))
            .bearer_auth(&admin)
            .send()
            .await
        {
            Ok(res) => {
                listed = Some(res.status());
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert_eq!(listed, Some(StatusCode::OK));
    // And the admin listener has nothing else.
    let discovery = http
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(discovery.status(), StatusCode::NOT_FOUND);
}

/// The schema the OpenAPI document gives for `method path` answering `status`, made
/// self-contained (its `$ref`s point into the document's components).
fn documented_schema(doc: &Value, method: &str, path: &str, status: u16) -> Value {
    let content = &doc["paths"][path][method]["responses"][status.to_string()]["content"];
    let (_, media) = content
        .as_object()
        .and_then(|c| c.iter().next())
        .unwrap_or_else(|| panic!("{method} {path} documents no body for {status}"));
    let mut schema = media["schema"].clone();
    schema
        .as_object_mut()
        .expect("a schema object")
        .insert("components".into(), doc["components"].clone());
    schema
}

fn assert_documented(doc: &Value, method: &str, path: &str, reply: &Reply) {
    let schema = documented_schema(doc, method, path, reply.status.as_u16());
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{method} {path}: the document's schema is invalid: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&reply.body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {} does not match its documented schema: {errors:?}\n{}",
        reply.status,
        reply.body
    );
}

#[tokio::test]
async fn real_answers_match_the_documents_schemas() {
    let broker = broker().await;
    let admin = admin_token(&broker).await;
    let doc: Value = broker
        .http()
        .get(broker.url("/admin/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let p = |path: &str| format!("/admin/api/v1{path}");

    let created = create(
        &broker,
        &admin,
        json!({ "email": "eve@example.com", "username": "eve", "name": "Eve" }),
    )
    .await;
    assert_documented(&doc, "post", &p("/users"), &created);
    let id = created.body["id"].as_str().unwrap().to_string();
    let conflict = create(
        &broker,
        &admin,
        json!({ "email": "x@example.com", "username": "eve" }),
    )
    .await;
    assert_documented(&doc, "post", &p("/users"), &conflict);

    assert_documented(
        &doc,
        "get",
        &p("/users"),
        &get(&broker, "/users?page_size=1", &admin).await,
    );
    let detail = get(&broker, &format!("/users/{id}"), &admin).await;
    assert_documented(&doc, "get", &p("/users/{id}"), &detail);
    assert_documented(
        &doc,
        "get",
        &p("/users/{id}"),
        &get(&broker, "/users/nobody", &admin).await,
    );
    let patched = call(
        &broker,
        Method::PATCH,
        &format!("/users/{id}"),
        Some(&admin),
        Some(json!({ "name": null, "status": "active" })),
        Some(&detail.etag()),
    )
    .await;
    assert_documented(&doc, "patch", &p("/users/{id}"), &patched);
    let stale = call(
        &broker,
        Method::PATCH,
        &format!("/users/{id}"),
        Some(&admin),
        Some(json!({ "name": "E" })),
        Some(&detail.etag()),
    )
    .await;
    assert_documented(&doc, "patch", &p("/users/{id}"), &stale);
    assert_documented(
        &doc,
        "get",
        &p("/users/{id}/sessions"),
        &get(&broker, &format!("/users/{}/sessions", ADMIN.id), &admin).await,
    );

    let group = call(
        &broker,
        Method::POST,
        "/groups",
        Some(&admin),
        Some(json!({ "name": "readers" })),
        None,
    )
    .await;
    assert_documented(&doc, "post", &p("/groups"), &group);
    let gid = group.body["id"].as_str().unwrap();
    assert_documented(
        &doc,
        "get",
        &p("/groups"),
        &get(&broker, "/groups", &admin).await,
    );
    assert_documented(
        &doc,
        "get",
        &p("/groups/{id}"),
        &get(&broker, &format!("/groups/{gid}"), &admin).await,
    );
    assert_documented(
        &doc,
        "get",
        &p("/groups/{id}/members"),
        &get(&broker, &format!("/groups/{gid}/members"), &admin).await,
    );
    assert_documented(
        &doc,
        "get",
        &p("/audit"),
        &get(&broker, "/audit", &admin).await,
    );
    let bad_page = get(&broker, "/audit?page_size=0", &admin).await;
    assert_documented(&doc, "get", &p("/audit"), &bad_page);
}

#[tokio::test]
async fn the_cli_manages_the_same_groups_and_is_audited_as_cli() {
    let broker = broker().await;
    let admin = admin_token(&broker).await;
    token(&broker, &BOB, "openid").await;
    let config = broker.config_path().to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["group"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", &config]);
        let out = broker.cli(&all);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, id, err) = run(&["add", "night-shift", "--description", "on call"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["add", "NIGHT-SHIFT"]);
    assert!(!ok && err.contains("group name"), "{err}");
    let (ok, _, err) = run(&["add-member", &id, BOB.id]);
    assert!(ok, "{err}");
    let (_, members, _) = run(&["members", &id]);
    assert!(members.starts_with(BOB.id), "{members}");
    let (_, listed, _) = run(&["list"]);
    assert!(listed.contains("night-shift"), "{listed}");

    let seen = get(&broker, &format!("/groups/{id}/members"), &admin).await;
    assert_eq!(seen.body["items"][0]["id"], BOB.id);
    let audit = get(&broker, &format!("/audit?subject={}", BOB.id), &admin).await;
    assert_eq!(audit.body["items"][0]["actor"], "cli");

    let (ok, _, _) = run(&["remove-member", &id, BOB.id]);
    assert!(ok);
    let (ok, _, err) = run(&["delete", &id]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["delete", &id]);
    assert!(!ok && err.contains("no such group"), "{err}");
}
