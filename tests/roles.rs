//! Role rules and RBAC as apps see them: roles and permissions in the ID token, the
//! access token, userinfo and introspection; client-scoped roles only for their client;
//! direct grants taking effect at the next refresh; `broker roles explain`; and the
//! user model around it (closed registration, disabled users refused everywhere).

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchboard_e2e::{
    ADMIN, AuthorizeRequest, BOB, Broker, Browser, Landing, SECOND_APP, TestClient, TestUser,
    TokenReply, WEB_APP, jwt_claims,
};

/// A second local provider, trusted for email, with one static user of its own.
const CARLA: TestUser = TestUser {
    id: "user-carla",
    username: "carla",
    email: "carla@Corp.Example",
    name: "Carla Corp",
    password: "password",
    hash: ADMIN.hash,
    groups: &["finance"],
};

fn corp_provider(extra_lines: &str) -> String {
    format!(
        r#"[providers.corp]
type = "local"
name = "Corporate login"
trust_email = true
{extra_lines}

[[providers.corp.static_users]]
id = "{id}"
email = "{email}"
username = "{username}"
name = "{name}"
hash = "{hash}"
groups = ["finance"]
"#,
        id = CARLA.id,
        email = CARLA.email,
        username = CARLA.username,
        name = CARLA.name,
        hash = CARLA.hash,
    )
}

const ROLES: &str = r#"
[roles]
admin_role = "admin"
default_roles = ["member"]

[roles.permissions]
admin = ["admin:*"]
member = ["profile:read"]
editor = ["docs:write"]
auditor = ["audit:read"]

[[roles.rules]]
role = "admin"
provider = "local"
group = "admins"

[[roles.rules]]
role = "editor"
client = "web-app"
provider = "local"
group = "admins"

[[roles.rules]]
role = "corp-staff"
email_domain = "corp.example"

[[roles.rules]]
role = "example-staff"
email_domain = "example.com"

[[roles.rules]]
role = "finance"
provider = "corp"
group = "finance"
"#;

const ALL_SCOPES: &str = "openid profile email groups roles permissions offline_access";

async fn roles_broker() -> Broker {
    Broker::setup()
        .extra(ROLES)
        .extra(&corp_provider(""))
        .start()
        .await
}

/// Logs `user` in through `provider` for `client` with `scope`, redeems the code.
async fn tokens_for(
    broker: &Broker,
    browser: &Browser,
    client: TestClient,
    user: &TestUser,
    provider: &str,
    scope: &str,
) -> TokenReply {
    let request = AuthorizeRequest::new(client)
        .scope(scope)
        .param("provider", provider);
    let response = browser.log_in(&request.url(broker), user).await;
    let tokens = broker
        .redeem(&client, response.code(), request.verifier())
        .await;
    tokens.assert_ok();
    tokens
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

async fn userinfo_json(broker: &Broker, access_token: &str) -> Value {
    let reply = broker.userinfo(access_token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap_or_else(|_| panic!("userinfo: {}", reply.body))
}

async fn introspect(broker: &Broker, client: &TestClient, token: &str) -> Value {
    let res = broker
        .http()
        .post(broker.url("/introspect"))
        .basic_auth(client.id, client.secret)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST /introspect: {e}"));
    assert_eq!(res.status(), StatusCode::OK);
    res.json()
        .await
        .unwrap_or_else(|e| panic!("introspection is JSON: {e}"))
}

#[tokio::test]
async fn group_roles_and_permissions_reach_id_token_access_token_userinfo_and_introspection() {
    let broker = roles_broker().await;
    let browser = Browser::new(&broker);
    let tokens = tokens_for(&broker, &browser, WEB_APP, &ADMIN, "local", ALL_SCOPES).await;

    let roles = vec!["admin", "editor", "member"];
    let permissions = vec!["admin:*", "docs:write", "profile:read"];
    let id = jwt_claims(tokens.id_token());
    assert_eq!(strings(&id["roles"]), roles, "{id}");
    assert_eq!(strings(&id["permissions"]), permissions, "{id}");
    assert_eq!(strings(&id["groups"]), vec!["local/admins"]);

    let access = jwt_claims(tokens.access_token());
    assert_eq!(strings(&access["roles"]), roles, "{access}");
    assert_eq!(strings(&access["permissions"]), permissions);
    assert_eq!(strings(&access["groups"]), vec!["local/admins"]);

    let info = userinfo_json(&broker, tokens.access_token()).await;
    assert_eq!(strings(&info["roles"]), roles, "{info}");
    assert_eq!(strings(&info["permissions"]), permissions);

    let status = introspect(&broker, &WEB_APP, tokens.access_token()).await;
    assert_eq!(status["active"], true);
    assert_eq!(strings(&status["roles"]), roles, "{status}");
    let status = introspect(&broker, &WEB_APP, tokens.refresh_token()).await;
    assert_eq!(strings(&status["roles"]), roles, "{status}");

    // An email in example.com, but the local provider is not trusted for email.
    assert!(!strings(&id["roles"]).contains(&"example-staff".to_string()));

    // A user without the group holds only the default role.
    let bob = tokens_for(
        &broker,
        &Browser::new(&broker),
        WEB_APP,
        &BOB,
        "local",
        ALL_SCOPES,
    )
    .await;
    let id = jwt_claims(bob.id_token());
    assert_eq!(strings(&id["roles"]), vec!["member"]);
    assert_eq!(strings(&id["permissions"]), vec!["profile:read"]);
}

#[tokio::test]
async fn a_client_role_is_seen_only_by_its_client() {
    let broker = roles_broker().await;
    let browser = Browser::new(&broker);
    let web = tokens_for(&broker, &browser, WEB_APP, &ADMIN, "local", ALL_SCOPES).await;
    assert!(strings(&jwt_claims(web.id_token())["roles"]).contains(&"editor".to_string()));

    // The same person, by single sign-on, at another client.
    let request = AuthorizeRequest::new(SECOND_APP).scope(ALL_SCOPES);
    let code = match browser.open(&request.url(&broker)).await {
        Landing::Client(r) => r.code().to_string(),
        _ => panic!("single sign-on expected"),
    };
    let second = broker.redeem(&SECOND_APP, &code, request.verifier()).await;
    second.assert_ok();
    for claims in [
        jwt_claims(second.id_token()),
        jwt_claims(second.access_token()),
        userinfo_json(&broker, second.access_token()).await,
    ] {
        assert_eq!(
            strings(&claims["roles"]),
            vec!["admin", "member"],
            "{claims}"
        );
        assert_eq!(
            strings(&claims["permissions"]),
            vec!["admin:*", "profile:read"],
            "{claims}"
        );
    }
}

#[tokio::test]
async fn roles_and_permissions_come_only_with_their_scopes() {
    let broker = roles_broker().await;
    let browser = Browser::new(&broker);
    let tokens = tokens_for(
        &broker,
        &browser,
        WEB_APP,
        &ADMIN,
        "local",
        "openid profile roles",
    )
    .await;
    let id = jwt_claims(tokens.id_token());
    assert!(id.get("roles").is_some(), "{id}");
    assert!(id.get("permissions").is_none(), "{id}");
    assert!(id.get("groups").is_none(), "{id}");

    let none = tokens_for(
        &broker,
        &Browser::new(&broker),
        WEB_APP,
        &ADMIN,
        "local",
        "openid profile",
    )
    .await;
    for claims in [
        jwt_claims(none.id_token()),
        jwt_claims(none.access_token()),
        userinfo_json(&broker, none.access_token()).await,
    ] {
        assert!(claims.get("roles").is_none(), "{claims}");
        assert!(claims.get("permissions").is_none(), "{claims}");
    }

    let discovery: Value = broker
        .http()
        .get(broker.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("discovery: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("discovery is JSON: {e}"));
    for name in ["roles", "permissions"] {
        assert!(strings(&discovery["scopes_supported"]).contains(&name.to_string()));
        assert!(strings(&discovery["claims_supported"]).contains(&name.to_string()));
    }
}

#[tokio::test]
async fn a_verified_email_domain_of_a_trusted_provider_gives_its_role() {
    let broker = roles_broker().await;
    let tokens = tokens_for(
        &broker,
        &Browser::new(&broker),
        WEB_APP,
        &CARLA,
        "corp",
        ALL_SCOPES,
    )
    .await;
    let id = jwt_claims(tokens.id_token());
    assert_eq!(
        strings(&id["roles"]),
        vec!["corp-staff", "finance", "member"],
        "the domain matches after lowercasing; groups are the corp provider's: {id}"
    );
    assert_eq!(strings(&id["groups"]), vec!["corp/finance"]);
}

#[tokio::test]
async fn direct_grants_change_roles_at_the_next_refresh_and_explain_says_why() {
    let broker = roles_broker().await;
    let tokens = tokens_for(
        &broker,
        &Browser::new(&broker),
        WEB_APP,
        &BOB,
        "local",
        ALL_SCOPES,
    )
    .await;
    assert_eq!(
        strings(&jwt_claims(tokens.id_token())["roles"]),
        vec!["member"]
    );

    broker.user_command(&["grant-role", BOB.id, "auditor"], "");
    broker.user_command(
        &["grant-role", BOB.id, "reviewer", "--client", "second-app"],
        "",
    );
    let listed = broker.user_command(&["roles", BOB.id], "");
    assert!(listed.contains("auditor\tglobal"), "{listed}");
    assert!(listed.contains("reviewer\tclient second-app"), "{listed}");

    let refreshed = broker.refresh(&WEB_APP, tokens.refresh_token()).await;
    refreshed.assert_ok();
    for claims in [
        jwt_claims(refreshed.id_token()),
        jwt_claims(refreshed.access_token()),
        userinfo_json(&broker, refreshed.access_token()).await,
    ] {
        assert_eq!(
            strings(&claims["roles"]),
            vec!["auditor", "member"],
            "the grant is there, the other client's is not: {claims}"
        );
        assert_eq!(
            strings(&claims["permissions"]),
            vec!["audit:read", "profile:read"]
        );
    }

    let config = broker.config_path().display().to_string();
    let out = broker.cli(&[
        "roles", "explain", "--config", &config, BOB.id, "--client", "web-app",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "login provider: local",
        "roles.rules[0] role admin: not matched",
        "local lists no groups",
        "roles.rules[3] role example-staff: not matched",
        "local is not trusted for email",
        "direct grant auditor: given",
        "direct grant reviewer (client second-app): not given: another client",
        "roles: auditor, member",
        "permissions: audit:read, profile:read",
        "admin: no",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    tokens_for(
        &broker,
        &Browser::new(&broker),
        WEB_APP,
        &ADMIN,
        "local",
        "openid",
    )
    .await;
    let admin = broker.cli(&["roles", "explain", "--config", &config, ADMIN.id]);
    let admin_text = String::from_utf8_lossy(&admin.stdout).to_string();
    assert!(
        admin_text.contains("roles.rules[0] role admin: MATCHED"),
        "{admin_text}"
    );
    assert!(
        admin_text.contains(
            "role editor (client web-app): conditions hold, but the role is for client web-app"
        ),
        "{admin_text}"
    );
    assert!(admin_text.contains("admin: yes"), "{admin_text}");
    let unknown = broker.cli(&["roles", "explain", "--config", &config, "nobody"]);
    assert!(!unknown.status.success());

    broker.user_command(&["revoke-role", BOB.id, "auditor"], "");
    let again = broker.refresh(&WEB_APP, refreshed.refresh_token()).await;
    again.assert_ok();
    assert_eq!(
        strings(&jwt_claims(again.id_token())["roles"]),
        vec!["member"],
        "a revoked grant is gone at the next refresh"
    );
}

#[tokio::test]
async fn role_grants_that_would_mix_global_and_client_roles_are_refused() {
    let broker = roles_broker().await;
    tokens_for(
        &broker,
        &Browser::new(&broker),
        WEB_APP,
        &BOB,
        "local",
        ALL_SCOPES,
    )
    .await;
    let config = broker.config_path().display().to_string();
    for args in [
        vec!["grant-role", BOB.id, "editor"],
        vec!["grant-role", BOB.id, "admin", "--client", "web-app"],
        vec!["grant-role", BOB.id, "x", "--client", "no-such-app"],
        vec!["grant-role", "no-such-user", "auditor"],
    ] {
        let mut full = vec!["user", "--config", &config];
        full.extend(args.iter().copied());
        let out = broker.cli(&full);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            !String::from_utf8_lossy(&out.stderr).is_empty(),
            "{args:?} says why"
        );
    }
}

#[tokio::test]
async fn closed_registration_refuses_a_new_person_with_a_clear_message() {
    let broker = Broker::setup()
        .extra(&corp_provider("registration = \"closed\""))
        .start()
        .await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).param("provider", "corp");
    let form = browser.open(&request.url(&broker)).await.expect_form();
    let page = browser
        .submit(&form, CARLA.username, CARLA.password)
        .await
        .expect_page();
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.body.contains("You have no account here") && page.body.contains("Corporate login"),
        "{}",
        page.body
    );
    let listed = broker.user_command(&["list"], "");
    assert!(!listed.contains(CARLA.id), "no user was created: {listed}");

    // Someone an operator created may log in through it.
    let dave = broker
        .user_command(&["add", "--email", "dave@example.com"], "dave-password\n")
        .trim()
        .to_string();
    let request = AuthorizeRequest::new(WEB_APP).param("provider", "corp");
    let form = browser.open(&request.url(&broker)).await.expect_form();
    let response = browser
        .submit(&form, "dave@example.com", "dave-password")
        .await
        .expect_client();
    let tokens = broker
        .redeem(&WEB_APP, response.code(), request.verifier())
        .await;
    assert_eq!(jwt_claims(tokens.id_token())["sub"], dave.as_str());

    // Registration stays open on the other provider.
    let open = tokens_for(
        &broker,
        &Browser::new(&broker),
        WEB_APP,
        &BOB,
        "local",
        "openid",
    )
    .await;
    assert_eq!(jwt_claims(open.id_token())["sub"], BOB.id);
}

#[tokio::test]
async fn a_disabled_user_is_refused_at_login_sso_refresh_userinfo_and_introspection() {
    let broker = roles_broker().await;
    let browser = Browser::new(&broker);
    let tokens = tokens_for(&broker, &browser, WEB_APP, &BOB, "local", ALL_SCOPES).await;
    assert_eq!(
        introspect(&broker, &WEB_APP, tokens.access_token()).await["active"],
        true
    );

    broker.user_command(&["disable", BOB.id], "");

    // SSO reuse: the session is gone, the login form comes back.
    let request = AuthorizeRequest::new(SECOND_APP).param("provider", "local");
    let form = browser.open(&request.url(&broker)).await.expect_form();
    broker
        .refresh(&WEB_APP, tokens.refresh_token())
        .await
        .assert_error("invalid_grant");
    broker
        .userinfo(tokens.access_token())
        .await
        .assert_invalid_token();
    for token in [tokens.access_token(), tokens.refresh_token()] {
        assert_eq!(
            introspect(&broker, &WEB_APP, token).await,
            json!({ "active": false })
        );
    }
    // Login.
    let page = browser
        .submit(&form, BOB.username, BOB.password)
        .await
        .expect_page();
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.body.contains("This account is disabled"),
        "{}",
        page.body
    );

    // Enabled again, they log in (old tokens stay dead).
    broker.user_command(&["enable", BOB.id], "");
    tokens_for(&broker, &browser, WEB_APP, &BOB, "local", "openid").await;
    broker
        .refresh(&WEB_APP, tokens.refresh_token())
        .await
        .assert_error("invalid_grant");
}

#[tokio::test]
async fn a_bad_role_rule_stops_the_broker_at_start_naming_the_key() {
    let broker = roles_broker().await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let text = std::fs::read_to_string(broker.config_path())
        .unwrap_or_else(|e| panic!("read config: {e}"));
    for (rule, key) in [
        (
            "role = \"x\"\nprovider = \"corp\"\nclaim = { path = \"team\", regex = \"(\" }",
            "roles.rules[5].claim.regex",
        ),
        (
            "role = \"x\"\nprovider = \"github\"",
            "roles.rules[5].provider",
        ),
        ("role = \"x\"\ngroup = \"admins\"", "roles.rules[5].group"),
        (
            "role = \"member\"\nclient = \"web-app\"\nprovider = \"local\"",
            "roles.rules[5].role",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, format!("{text}\n[[roles.rules]]\n{rule}\n"))
            .unwrap_or_else(|e| panic!("write config: {e}"));
        let out = broker.cli(&["check-config", &path.display().to_string()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{rule} was accepted");
        assert!(stderr.contains(key), "expected {key} in: {stderr}");
    }
}

/// A provider that links first logins to existing accounts by verified email, with
/// three static users: one whose email is Carla's, a second one claiming the same
/// email, and one with Dave's email.
const PARTNER: &str = r#"
[providers.partner]
type = "local"
name = "Partner login"
trust_email = true
link_by_verified_email = true

[[providers.partner.static_users]]
id = "partner-carla"
email = "carla@corp.example"
username = "carla-p"
hash = "HASH"

[[providers.partner.static_users]]
id = "partner-eve"
email = "carla@corp.example"
username = "eve-p"
hash = "HASH"

[[providers.partner.static_users]]
id = "partner-dave"
email = "dave@example.com"
username = "dave-p"
hash = "HASH"
"#;

fn partner_user(id: &'static str, username: &'static str) -> TestUser {
    TestUser {
        id,
        username,
        email: "",
        name: "",
        password: "password",
        hash: ADMIN.hash,
        groups: &[],
    }
}

#[tokio::test]
async fn a_verified_email_links_two_providers_to_one_sub_and_nothing_else_links() {
    let broker = Broker::setup()
        .extra(&corp_provider(""))
        .extra(&PARTNER.replace("HASH", ADMIN.hash))
        .start()
        .await;
    let carla = tokens_for(
        &broker,
        &Browser::new(&broker),
        WEB_APP,
        &CARLA,
        "corp",
        "openid email",
    )
    .await;
    assert_eq!(jwt_claims(carla.id_token())["sub"], CARLA.id);

    let linked = tokens_for(
        &broker,
        &Browser::new(&broker),
        WEB_APP,
        &partner_user("partner-carla", "carla-p"),
        "partner",
        "openid email",
    )
    .await;
    assert_eq!(
        jwt_claims(linked.id_token())["sub"],
        CARLA.id,
        "the second provider reaches the same account"
    );
    let audit = broker.user_command(&["audit", CARLA.id], "");
    assert!(
        audit.contains("identity_linked") && audit.contains("\"provider\":\"partner\""),
        "{audit}"
    );

    // A second partner identity claiming the same email never takes the account: it
    // is someone else, with an account of their own whose email apps see unverified.
    let eve = tokens_for(
        &broker,
        &Browser::new(&broker),
        WEB_APP,
        &partner_user("partner-eve", "eve-p"),
        "partner",
        "openid email",
    )
    .await;
    let eve = jwt_claims(eve.id_token());
    assert_eq!(eve["sub"], "partner-eve");
    assert_eq!(eve["email"], "carla@corp.example");
    assert_eq!(eve["email_verified"], false, "Carla verified it first");

    // An account whose email no provider trusted for email vouched for is never
    // linked to.
    let dave = broker
        .user_command(&["add", "--email", "dave@example.com"], "dave-password\n")
        .trim()
        .to_string();
    let partner_dave = tokens_for(
        &broker,
        &Browser::new(&broker),
        WEB_APP,
        &partner_user("partner-dave", "dave-p"),
        "partner",
        "openid email",
    )
    .await;
    let partner_dave = jwt_claims(partner_dave.id_token());
    assert_eq!(partner_dave["sub"], "partner-dave");
    assert_ne!(partner_dave["sub"], dave.as_str());
    assert_eq!(partner_dave["email_verified"], false);
    let audit = broker.user_command(&["audit", &dave], "");
    assert!(!audit.contains("identity_linked"), "{audit}");
}
