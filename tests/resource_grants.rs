//! Roles on one resource through the real binary (issue 13): an admin grants them to a
//! user or a managed group, an app asks `/access/v1/check` with a person's token or as
//! a confidential client naming `sub`, and lists the person's resources; a group's
//! grant ends with the membership, a disabled person may do nothing, and every wrong
//! caller or input gets a clear problem.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_e2e::{ADMIN, AuthorizeRequest, BOB, Broker, Browser, TestUser, WEB_APP};

const ROLES: &str = r#"
[roles]
admin_role = "admin"

[roles.permissions]
admin = ["admin:*"]
list-viewer = ["lists:read"]
list-editor = ["lists:read", "lists:write"]
list-auditor = ["lists:read"]

[[roles.rules]]
role = "admin"
provider = "local"
group = "admins"

[[roles.rules]]
role = "list-auditor"
managed_group = "auditors"
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

async fn token(broker: &Broker, user: &TestUser, scope: &str) -> String {
    let request = AuthorizeRequest::new(WEB_APP).scope(scope);
    let response = Browser::new(broker)
        .log_in(&request.url(broker), user)
        .await;
    broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await
        .access_token()
        .to_string()
}

/// How a test authenticates a call.
#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

async fn call(
    broker: &Broker,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = broker.http().request(method, broker.url(path));
    req = match auth {
        Auth::None => req,
        Auth::Bearer(t) => req.bearer_auth(t),
        Auth::Basic(id, secret) => req.basic_auth(id, Some(secret)),
    };
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    let body = match text.is_empty() {
        true => Value::Null,
        false => serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}")),
    };
    (status, body)
}

async fn admin(broker: &Broker, token: &str, method: Method, path: &str) -> (StatusCode, Value) {
    call(
        broker,
        method,
        &format!("/admin/api/v1{path}"),
        Auth::Bearer(token),
        None,
    )
    .await
}

async fn check(broker: &Broker, auth: Auth<'_>, body: Value) -> (StatusCode, Value) {
    call(broker, Method::POST, "/access/v1/check", auth, Some(body)).await
}

fn ask(permission: &str, list: &str) -> Value {
    json!({ "permission": permission, "resource": { "type": "list", "id": list } })
}

fn ask_about(sub: &str, permission: &str, list: &str) -> Value {
    let mut body = ask(permission, list);
    body["sub"] = json!(sub);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_allows_its_list_and_a_groups_grant_ends_with_the_membership() {
    let broker = broker().await;
    let admin_token = token(&broker, &ADMIN, "openid permissions").await;
    let bob = token(&broker, &BOB, "openid").await;

    let (status, _) = admin(
        &broker,
        &admin_token,
        Method::PUT,
        "/resources/list/42/grants/user/user-bob/list-viewer",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = admin(
        &broker,
        &admin_token,
        Method::PUT,
        "/resources/list/42/grants/user/user-bob/list-viewer",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "granting twice changes nothing"
    );

    let (status, answer) = check(&broker, Auth::Bearer(&bob), ask("lists:read", "42")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer,
        json!({"allowed": true, "reason": "resource_role", "role": "list-viewer"})
    );
    let (_, answer) = check(&broker, Auth::Bearer(&bob), ask("lists:read", "43")).await;
    assert_eq!(answer, json!({"allowed": false, "reason": "no_grant"}));
    let (_, answer) = check(&broker, Auth::Bearer(&bob), ask("lists:write", "42")).await;
    assert_eq!(answer["allowed"], false, "a viewer does not write");

    // Through a managed group.
    let (status, group) = call(
        &broker,
        Method::POST,
        "/admin/api/v1/groups",
        Auth::Bearer(&admin_token),
        Some(json!({"name": "editors"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let group_id = group["id"].as_str().unwrap().to_string();
    let (status, _) = admin(
        &broker,
        &admin_token,
        Method::PUT,
        &format!("/groups/{group_id}/members/user-bob"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = admin(
        &broker,
        &admin_token,
        Method::PUT,
        &format!("/resources/list/43/grants/group/{group_id}/list-editor"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, answer) = check(&broker, Auth::Bearer(&bob), ask("lists:write", "43")).await;
    assert_eq!(
        answer,
        json!({"allowed": true, "reason": "resource_role", "role": "list-editor", "via_group": "editors"})
    );

    // The app lists Bob's lists with his roles on each.
    let (status, page) = call(
        &broker,
        Method::GET,
        "/access/v1/resources?type=list",
        Auth::Bearer(&bob),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        page,
        json!({"items": [
            {"id": "42", "roles": ["list-viewer"]},
            {"id": "43", "roles": ["list-editor"]},
        ], "next_cursor": null})
    );
    let (_, first) = call(
        &broker,
        Method::GET,
        "/access/v1/resources?type=list&page_size=1",
        Auth::Bearer(&bob),
        None,
    )
    .await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = call(
        &broker,
        Method::GET,
        &format!("/access/v1/resources?type=list&page_size=1&cursor={cursor}"),
        Auth::Bearer(&bob),
        None,
    )
    .await;
    assert_eq!(second["items"][0]["id"], "43", "{second}");
    assert_eq!(second["next_cursor"], Value::Null);

    // The membership ends: so does the group's grant.
    let (status, _) = admin(
        &broker,
        &admin_token,
        Method::DELETE,
        &format!("/groups/{group_id}/members/user-bob"),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, answer) = check(&broker, Auth::Bearer(&bob), ask("lists:write", "43")).await;
    assert_eq!(answer, json!({"allowed": false, "reason": "no_grant"}));

    // The admin sees who holds what, and the audit trail has it.
    let (status, grants) = admin(
        &broker,
        &admin_token,
        Method::GET,
        "/resources/list/43/grants",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(grants["items"][0]["holder_kind"], "group", "{grants}");
    assert_eq!(
        grants["items"][0]["granted_by"], "user:user-admin",
        "{grants}"
    );
    let (_, resources) = admin(
        &broker,
        &admin_token,
        Method::GET,
        "/users/user-bob/resources?type=list",
    )
    .await;
    assert_eq!(
        resources["items"],
        json!([{"id": "42", "roles": ["list-viewer"]}])
    );
    let (_, audit) = admin(
        &broker,
        &admin_token,
        Method::GET,
        "/audit?type=resource_role_granted",
    )
    .await;
    assert_eq!(audit["items"].as_array().unwrap().len(), 2, "{audit}");

    // Revoked: denied at once.
    let (status, _) = admin(
        &broker,
        &admin_token,
        Method::DELETE,
        "/resources/list/42/grants/user/user-bob/list-viewer",
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, answer) = check(&broker, Auth::Bearer(&bob), ask("lists:read", "42")).await;
    assert_eq!(answer["allowed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confidential_clients_name_the_person_and_a_disabled_person_may_do_nothing() {
    let broker = broker().await;
    let admin_token = token(&broker, &ADMIN, "openid permissions").await;
    // Bob's user exists from his first login on.
    token(&broker, &BOB, "openid").await;
    let (status, _) = admin(
        &broker,
        &admin_token,
        Method::PUT,
        "/resources/list/7/grants/user/user-bob/list-editor",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let client = Auth::Basic(WEB_APP.id, WEB_APP.secret.unwrap());

    let (status, answer) = check(&broker, client, ask_about("user-bob", "lists:write", "7")).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["allowed"], true);
    let (_, answer) = check(&broker, client, ask_about("user-admin", "lists:write", "7")).await;
    assert_eq!(answer, json!({"allowed": false, "reason": "no_grant"}));
    let (_, answer) = check(&broker, client, ask_about("nobody", "lists:read", "7")).await;
    assert_eq!(
        answer,
        json!({"allowed": false, "reason": "unknown_subject"})
    );
    let (status, problem) = check(&broker, client, ask("lists:read", "7")).await;
    assert_eq!(
        (status.as_u16(), problem["field"].as_str()),
        (422, Some("sub")),
        "{problem}"
    );

    // The same client with a client-credentials token.
    let machine = broker
        .token_request(&WEB_APP, &[("grant_type", "client_credentials")])
        .await;
    let machine = machine.access_token().to_string();
    let (_, answer) = check(
        &broker,
        Auth::Bearer(&machine),
        ask_about("user-bob", "lists:read", "7"),
    )
    .await;
    assert_eq!(answer["allowed"], true, "{answer}");
    let (_, page) = call(
        &broker,
        Method::GET,
        "/access/v1/resources?type=list&sub=user-bob",
        Auth::Bearer(&machine),
        None,
    )
    .await;
    assert_eq!(
        page["items"],
        json!([{"id": "7", "roles": ["list-editor"]}])
    );

    // A global role allows a permission everywhere.
    let (_, group) = call(
        &broker,
        Method::POST,
        "/admin/api/v1/groups",
        Auth::Bearer(&admin_token),
        Some(json!({"name": "auditors"})),
    )
    .await;
    let group_id = group["id"].as_str().unwrap();
    admin(
        &broker,
        &admin_token,
        Method::PUT,
        &format!("/groups/{group_id}/members/user-admin"),
    )
    .await;
    let (_, answer) = check(
        &broker,
        client,
        ask_about("user-admin", "lists:read", "999"),
    )
    .await;
    assert_eq!(
        answer,
        json!({"allowed": true, "reason": "global_role", "role": "list-auditor"})
    );

    // Disabled: nothing, whatever grants remain.
    let (_, user) = admin(&broker, &admin_token, Method::GET, "/users/user-bob").await;
    let revision = user["revision"].as_i64().unwrap();
    let res = broker
        .http()
        .patch(broker.url("/admin/api/v1/users/user-bob"))
        .bearer_auth(&admin_token)
        .header("if-match", format!("\"r{revision}\""))
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "{}",
        res.text().await.unwrap()
    );
    let (_, answer) = check(&broker, client, ask_about("user-bob", "lists:write", "7")).await;
    assert_eq!(answer, json!({"allowed": false, "reason": "user_disabled"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_callers_and_bad_input_get_problems_and_change_nothing() {
    let broker = broker().await;
    let admin_token = token(&broker, &ADMIN, "openid permissions").await;
    let bob = token(&broker, &BOB, "openid permissions").await;

    // Who may ask.
    let (status, _) = check(&broker, Auth::None, ask("lists:read", "1")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = check(&broker, Auth::Bearer("not-a-token"), ask("lists:read", "1")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = check(
        &broker,
        Auth::Basic(WEB_APP.id, "wrong-secret"),
        ask_about("user-bob", "lists:read", "1"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, problem) = check(
        &broker,
        Auth::Bearer(&bob),
        ask_about("user-admin", "lists:read", "1"),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a person asks only about themselves: {problem}"
    );

    // What they may ask.
    for (body, field) in [
        (ask("lists:*", "1"), "permission"),
        (
            json!({"permission": "lists:read", "resource": {"type": "List", "id": "1"}}),
            "type",
        ),
        (
            json!({"permission": "lists:read", "resource": {"type": "list", "id": ""}}),
            "id",
        ),
    ] {
        let (status, problem) = check(&broker, Auth::Bearer(&bob), body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(problem["field"], field, "{problem}");
    }
    let (status, problem) = check(
        &broker,
        Auth::Bearer(&bob),
        json!({"permission": "lists:read", "resource": {"type": "list", "id": "1"}, "extra": 1}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused: {problem}"
    );

    // Granting: only with the permission, only roles that mean something, only to
    // someone who exists.
    let (status, _) = admin(
        &broker,
        &bob,
        Method::PUT,
        "/resources/list/1/grants/user/user-bob/list-editor",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for (path, status, field) in [
        (
            "/resources/list/1/grants/user/user-bob/no-such-role",
            422,
            Some("role"),
        ),
        (
            "/resources/list/1/grants/team/user-bob/list-editor",
            422,
            Some("holder_kind"),
        ),
        (
            "/resources/LIST/1/grants/user/user-bob/list-editor",
            422,
            Some("type"),
        ),
        ("/resources/list/1/grants/user/ghost/list-editor", 404, None),
        (
            "/resources/list/1/grants/group/ghost/list-editor",
            404,
            None,
        ),
    ] {
        let (got, problem) = admin(&broker, &admin_token, Method::PUT, path).await;
        assert_eq!(got.as_u16(), status, "{path}: {problem}");
        assert_eq!(problem["field"].as_str(), field, "{path}: {problem}");
    }
    let (status, problem) = admin(
        &broker,
        &admin_token,
        Method::GET,
        "/resources/list/1/grants?cursor=garbage",
    )
    .await;
    assert_eq!(
        (status.as_u16(), problem["field"].as_str()),
        (422, Some("cursor")),
        "{problem}"
    );
    let (status, _) = admin(
        &broker,
        &admin_token,
        Method::GET,
        "/users/ghost/resources?type=list",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, grants) = admin(
        &broker,
        &admin_token,
        Method::GET,
        "/resources/list/1/grants",
    )
    .await;
    assert_eq!(grants["items"], json!([]), "nothing was written");
}
