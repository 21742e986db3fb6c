//! Role rules over a real directory: LDAP groups and a verified LDAP email become
//! roles in the app's tokens, and a group removed in the directory takes its role
//! away at the next refresh. The directory is a real OpenLDAP `slapd` (the LDAP
//! plugin's own test harness).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

#[path = "../plugins/ldap/tests/support/mod.rs"]
mod slapd;

use switchboard_e2e::{AuthorizeRequest, Broker, Browser, WEB_APP, jwt_claims};

fn config(url: &str) -> String {
    format!(
        r#"[providers.corp]
type = "ldap"
name = "Corporate directory"
trust_email = true
email_verified = true
url = "{url}"
bind_dn = "{service}"
bind_password = "{password}"
user_search = {{ base_dn = "{people}", filter = "(uid={{username}})" }}
group_search = {{ base_dn = "{groups}", filter = "(member={{dn}})", name_attribute = "cn" }}
required_group = "allowed_to_login"
operation_timeout = "3s"

[roles]
default_roles = ["member"]

[roles.permissions]
engineer = ["code:*"]
writer = ["api:write"]

[[roles.rules]]
role = "engineer"
provider = "corp"
group = "engineering"

[[roles.rules]]
role = "writer"
provider = "corp"
group = "API_PERM_write"

[[roles.rules]]
role = "org-member"
email_domain = "example.org"

[[roles.rules]]
role = "local-admin"
provider = "local"
group = "engineering"
"#,
        service = slapd::SERVICE_DN,
        password = slapd::SERVICE_PW,
        people = slapd::PEOPLE,
        groups = slapd::GROUPS,
    )
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap_or_else(|_| panic!("a list of strings: {v}"))
}

#[tokio::test]
async fn ldap_groups_give_roles_and_a_group_removed_upstream_loses_its_role_at_refresh() {
    let Some(directory) = slapd::Slapd::start() else {
        eprintln!("SKIPPED: slapd is not installed (scripts/test installs it)");
        return;
    };
    let broker = Broker::setup()
        .extra(&config(&directory.url()))
        .start()
        .await;
    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP)
        .scope("openid email groups roles permissions offline_access")
        .param("provider", "corp");
    let form = browser.open(&request.url(&broker)).await.expect_form();
    let code = browser
        .submit(&form, "ada", slapd::ADA.password)
        .await
        .expect_client()
        .code()
        .to_string();
    let tokens = broker.redeem(&WEB_APP, &code, request.verifier()).await;
    tokens.assert_ok();

    let claims = jwt_claims(tokens.id_token());
    assert_eq!(
        strings(&claims["roles"]),
        vec!["engineer", "member", "org-member", "writer"],
        "LDAP groups and the verified LDAP email; never the local provider's rule: {claims}"
    );
    assert_eq!(
        strings(&jwt_claims(tokens.access_token())["permissions"]),
        vec!["api:write", "code:*"]
    );

    directory
        .admin()
        .await
        .remove_member("engineering", "ada")
        .await;
    let refreshed = broker.refresh(&WEB_APP, tokens.refresh_token()).await;
    refreshed.assert_ok();
    for claims in [
        jwt_claims(refreshed.id_token()),
        jwt_claims(refreshed.access_token()),
    ] {
        assert_eq!(
            strings(&claims["roles"]),
            vec!["member", "org-member", "writer"],
            "the role of the removed group is gone: {claims}"
        );
        assert_eq!(strings(&claims["permissions"]), vec!["api:write"]);
    }
    let info = broker.userinfo(refreshed.access_token()).await;
    let info: serde_json::Value = serde_json::from_str(&info.body).unwrap();
    assert_eq!(
        strings(&info["roles"]),
        vec!["member", "org-member", "writer"]
    );

    let sub = claims["sub"].as_str().unwrap().to_string();
    let config_path = broker.config_path().display().to_string();
    let out = broker.cli(&["roles", "explain", "--config", &config_path, &sub]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "login provider: corp",
        "roles.rules[0] role engineer: not matched",
        "groups are corp/API_PERM_read",
        "roles.rules[1] role writer: MATCHED",
        "ada@example.org is verified and in the domain",
        "roles.rules[3] role local-admin: not matched",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
