//! LDAP through the broker: app → login page → the LDAP provider's password form →
//! tokens carrying the directory's groups; a group removed in the directory is gone at
//! the next refresh, and a user deleted there loses the refresh token. The directory is
//! a real OpenLDAP `slapd` (the LDAP plugin's own test harness).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

#[path = "../plugins/ldap/tests/support/mod.rs"]
mod slapd;

use reqwest::StatusCode;
use switchboard_e2e::{
    AuthorizeRequest, Broker, Browser, Landing, PluginDir, WEB_APP, as_plugin_section,
    built_plugin, jwt_claims,
};

fn ldap_section(url: &str) -> String {
    format!(
        r#"[providers.corp]
type = "ldap"
name = "Corporate directory"
url = "{url}"
bind_dn = "{service}"
bind_password = "{password}"
user_search = {{ base_dn = "{people}", filter = "(uid={{username}})" }}
group_search = {{ base_dn = "{groups}", filter = "(member={{dn}})", name_attribute = "cn" }}
required_group = "allowed_to_login"
operation_timeout = "3s""#,
        service = slapd::SERVICE_DN,
        password = slapd::SERVICE_PW,
        people = slapd::PEOPLE,
        groups = slapd::GROUPS,
    )
}

async fn broker_with(slapd: &slapd::Slapd) -> Broker {
    Broker::setup()
        .extra(&ldap_section(&slapd.url()))
        .start()
        .await
}

/// Logs in through the LDAP provider (chosen with the `provider` hint).
async fn ldap_login(
    broker: &Broker,
    browser: &Browser,
    user: &str,
    password: &str,
) -> (AuthorizeRequest, Landing) {
    let request = AuthorizeRequest::new(WEB_APP)
        .scope("openid profile email groups offline_access")
        .param("provider", "corp");
    let form = browser.open(&request.url(broker)).await.expect_form();
    assert!(
        form.action.path().ends_with("/login/corp"),
        "the LDAP provider's form: {}",
        form.action
    );
    let landing = browser.submit(&form, user, password).await;
    (request, landing)
}

#[tokio::test]
async fn ldap_user_gets_tokens_with_directory_groups_and_refresh_sees_changes() {
    let Some(directory) = slapd::Slapd::start() else {
        eprintln!("SKIPPED: slapd is not installed (scripts/test installs it)");
        return;
    };
    let broker = broker_with(&directory).await;
    groups_reach_tokens_and_refresh_follows_the_directory(&broker, &directory).await;
}

/// ada logs in and her directory groups reach the tokens; a group removed in the
/// directory is gone at the next refresh; once ada is deleted, refresh is refused.
async fn groups_reach_tokens_and_refresh_follows_the_directory(
    broker: &Broker,
    directory: &slapd::Slapd,
) {
    let browser = Browser::new(broker);
    let (request, landing) = ldap_login(broker, &browser, "ada", slapd::ADA.password).await;
    let code = landing.expect_client().code().to_string();
    let tokens = broker.redeem(&WEB_APP, &code, request.verifier()).await;
    tokens.assert_ok();

    let claims = jwt_claims(tokens.id_token());
    let groups: Vec<String> = serde_json::from_value(claims["groups"].clone()).unwrap();
    for g in [
        "corp/allowed_to_login",
        "corp/engineering",
        "corp/API_PERM_read",
    ] {
        assert!(groups.contains(&g.to_string()), "{g} in {groups:?}");
    }
    assert_eq!(claims["email"], slapd::ADA.mail);
    assert_ne!(
        claims["sub"], "ada",
        "sub is Switchboard's id, never the login"
    );

    // The directory changes: ada leaves engineering.
    directory
        .admin()
        .await
        .remove_member("engineering", "ada")
        .await;
    let refreshed = broker.refresh(&WEB_APP, tokens.refresh_token()).await;
    refreshed.assert_ok();
    let groups = jwt_claims(refreshed.id_token())["groups"].clone();
    assert!(
        !groups
            .as_array()
            .unwrap()
            .contains(&"corp/engineering".into()),
        "removed group is gone after refresh: {groups}"
    );

    // ada is deleted: the next refresh is refused and the family is revoked.
    directory.admin().await.delete_user("ada").await;
    broker
        .refresh(&WEB_APP, refreshed.refresh_token())
        .await
        .assert_error("invalid_grant");
    assert_eq!(
        broker.userinfo(refreshed.access_token()).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn wrong_password_unknown_user_and_outsiders_see_the_same_message() {
    let Some(directory) = slapd::Slapd::start() else {
        eprintln!("SKIPPED: slapd is not installed (scripts/test installs it)");
        return;
    };
    let broker = broker_with(&directory).await;
    let mut messages = Vec::new();
    for (user, password) in [
        ("ada", "wrong"),
        ("nobody", "whatever"),
        ("eve", slapd::EVE.password), // outside allowed_to_login
        ("*)(uid=*", "x"),
        ("ada", ""),
    ] {
        let browser = Browser::new(&broker);
        let (_, landing) = ldap_login(&broker, &browser, user, password).await;
        let page = match landing {
            Landing::LoginForm(f) => f.page,
            other => panic!("{user}: expected the form again, got {other:?}"),
        };
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{user}");
        let message = page
            .body
            .split("id=\"login-error\"")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap_or_default()
            .to_string();
        messages.push(message);
    }
    assert!(messages.iter().all(|m| m == &messages[0]), "{messages:?}");
}

#[tokio::test]
async fn a_stopped_directory_fails_its_logins_clearly_and_local_logins_keep_working() {
    let Some(mut directory) = slapd::Slapd::start() else {
        eprintln!("SKIPPED: slapd is not installed (scripts/test installs it)");
        return;
    };
    let broker = broker_with(&directory).await;
    directory.stop();
    let browser = Browser::new(&broker);
    let (_, landing) = ldap_login(&broker, &browser, "ada", slapd::ADA.password).await;
    match landing {
        Landing::LoginForm(f) => {
            assert_eq!(f.page.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(f.page.body.contains("unavailable"), "{}", f.page.body);
        }
        other => panic!("expected the form with an error, got {other:?}"),
    }
    // The local provider is unaffected.
    let local = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP).param("provider", "local");
    local
        .log_in(&request.url(&broker), &switchboard_e2e::ADMIN)
        .await
        .code();

    directory.restart();
    let again = Browser::new(&broker);
    let (_, landing) = ldap_login(&broker, &again, "ada", slapd::ADA.password).await;
    landing.expect_client().code();
}

#[tokio::test]
async fn the_ldap_provider_built_as_a_plugin_logs_in_and_sees_directory_changes() {
    let Some(directory) = slapd::Slapd::start() else {
        eprintln!("SKIPPED: slapd is not installed (scripts/test installs it)");
        return;
    };
    let plugins = PluginDir::new();
    let library = plugins.install("libldap.so", &built_plugin("switchboard_ldap"));
    let broker = Broker::setup()
        .extra(&as_plugin_section(
            &ldap_section(&directory.url()),
            &library,
        ))
        .start()
        .await;
    assert!(broker.log().contains("plugin loaded"), "{}", broker.log());

    // A wrong password through the plugin is the ordinary refusal.
    let (_, landing) = ldap_login(&broker, &Browser::new(&broker), "ada", "wrong").await;
    let Landing::LoginForm(form) = landing else {
        panic!("expected the form again")
    };
    assert_eq!(form.page.status, StatusCode::UNAUTHORIZED);

    groups_reach_tokens_and_refresh_follows_the_directory(&broker, &directory).await;
}
