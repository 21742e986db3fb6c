//! Role rules over a real upstream OpenID Provider (npm `oidc-provider`): its `groups`
//! claim, a nested claim matched by an anchored regex, and its verified email become
//! roles in the app's tokens; when upstream changes them, the roles follow at the
//! next refresh. The broker's own provider keys (`trust_email`) sit in the provider
//! section beside the provider's options without the provider ever seeing them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use reqwest::StatusCode;
use serde_json::json;
use switchboard_e2e::{AuthorizeRequest, Broker, Browser, WEB_APP, free_port, jwt_claims};
use switchboard_provider_testkit::browser::{Browser as UpstreamBrowser, Choice};
use switchboard_provider_testkit::peer::{OidcPeer, PeerOptions};
use switchboard_provider_testkit::require_peer;
use url::Url;

const ROLES: &str = r#"
[roles]
default_roles = ["member"]

[roles.permissions]
sso-admin = ["admin:*"]
platform = ["deploy:*"]

[[roles.rules]]
role = "sso-admin"
provider = "corp"
group = "admins"

[[roles.rules]]
role = "platform"
provider = "corp"
claim = { path = "org.team", regex = "platform(-[a-z]+)?" }

[[roles.rules]]
role = "example-staff"
email_domain = "example.com"

[[roles.rules]]
role = "local-admin"
provider = "local"
group = "admins"
"#;

fn section(peer: &OidcPeer) -> String {
    format!(
        r#"[providers.corp]
type = "oidc"
name = "Corporate SSO"
trust_email = true
issuer = "{}"
client_id = "switchboard"
client_secret = "switchboard-secret"
scopes = ["openid", "profile", "email", "groups"]
offline_access = true"#,
        peer.issuer
    )
}

/// Follows the broker's redirects until the browser is sent upstream.
async fn upstream_url(broker: &Broker, browser: &Browser, request: &AuthorizeRequest) -> Url {
    let mut url = request.url(broker);
    for _ in 0..4 {
        let res = browser.get_raw(&url).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "at {url}");
        let location = res.headers()["location"].to_str().unwrap().to_string();
        url = url.join(&location).unwrap();
        if !url.as_str().starts_with(&broker.url("/").to_string()) {
            return url;
        }
    }
    panic!("the broker never sent the browser upstream (last: {url})");
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    serde_json::from_value(v.clone()).unwrap_or_else(|_| panic!("a list of strings: {v}"))
}

#[tokio::test]
async fn oidc_groups_claims_and_verified_email_give_roles_that_follow_upstream_at_refresh() {
    require_peer!();
    let port = free_port();
    let mut options = PeerOptions::new(&format!("http://127.0.0.1:{port}/callback/corp"));
    options.accounts = json!({
        "alice": { "groups": ["staff", "admins"], "org": { "team": "platform-eu" } },
    });
    let peer = OidcPeer::start(&options)
        .await
        .unwrap_or_else(|e| panic!("peer: {e}"));
    let broker = Broker::setup()
        .port(port)
        .extra(&section(&peer))
        .extra(ROLES)
        .start()
        .await;

    let browser = Browser::new(&broker);
    let request = AuthorizeRequest::new(WEB_APP)
        .scope("openid email groups roles permissions offline_access")
        .param("provider", "corp");
    let upstream = upstream_url(&broker, &browser, &request).await;
    let callback = UpstreamBrowser::new()
        .authorize(
            upstream.as_str(),
            "alice",
            broker.url("/callback/corp").as_str(),
            Choice::Approve,
        )
        .await
        .unwrap_or_else(|e| panic!("upstream login: {e}"))
        .url;
    let res = browser.get_raw(&callback).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let location = Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| panic!("no code in {location}"));
    let tokens = broker.redeem(&WEB_APP, &code, request.verifier()).await;
    tokens.assert_ok();

    let id = jwt_claims(tokens.id_token());
    assert_eq!(
        strings(&id["roles"]),
        vec!["example-staff", "member", "platform", "sso-admin"],
        "never the local provider's admins rule: {id}"
    );
    assert_eq!(
        strings(&jwt_claims(tokens.access_token())["permissions"]),
        vec!["admin:*", "deploy:*"]
    );

    // Upstream changes: alice leaves admins and moves to another team.
    peer.set_claims(
        "alice",
        json!({ "groups": ["staff"], "org": { "team": "platformer" } }),
    )
    .await;
    let refreshed = broker.refresh(&WEB_APP, tokens.refresh_token()).await;
    refreshed.assert_ok();
    for claims in [
        jwt_claims(refreshed.id_token()),
        jwt_claims(refreshed.access_token()),
    ] {
        assert_eq!(
            strings(&claims["roles"]),
            vec!["example-staff", "member"],
            "the anchored regex refuses \"platformer\", the group is gone: {claims}"
        );
        assert_eq!(strings(&claims["groups"]), vec!["corp/staff"]);
    }
}
