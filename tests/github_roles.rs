//! A GitHub team becomes a role, seen in the app's tokens, through the whole broker.
//! github.com cannot be reached here, so GitHub is a small fake on loopback shaped like
//! its documented OAuth web flow and REST answers (the GitHub plugin's own tests cover
//! the API's corners: pagination, errors in 200 answers, outages). The same provider
//! built as a run-time plugin gives the same tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use serde_json::json;
use std::sync::{Arc, Mutex};
use switchboard_e2e::{
    AuthorizeRequest, Broker, Browser, PluginDir, TokenReply, WEB_APP, as_plugin_section,
    built_plugin, jwt_claims, jwt_stable_claims,
};
use switchboard_provider_testkit::server::{FakeRequest, FakeResponse, FakeServer};
use url::Url;

const CLIENT_ID: &str = "Iv1.fake";
const CLIENT_SECRET: &str = "fake-secret";

/// octocat: numeric id 583231, org `acme`, team `acme:core` (and whatever the test
/// leaves of them).
#[derive(Default)]
struct Octocat {
    teams: Vec<(&'static str, &'static str)>,
}

fn handle(state: &Arc<Mutex<Octocat>>, req: FakeRequest) -> FakeResponse {
    // GitHub refuses API calls without a User-Agent (browsers always send one).
    if req.path.starts_with("/api/") && req.header("user-agent").is_none_or(str::is_empty) {
        return FakeResponse::json(
            403,
            &json!({"message": "Please make sure your request has a User-Agent header"}),
        );
    }
    let octocat = state.lock().unwrap();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/login/oauth/authorize") => {
            // octocat is signed in at GitHub and has authorized the app already.
            let mut target = Url::parse(&req.query["redirect_uri"]).unwrap();
            target
                .query_pairs_mut()
                .append_pair("code", "gh-code")
                .append_pair("state", &req.query["state"]);
            FakeResponse::text(302, "").with_header("location", target.as_str())
        }
        ("POST", "/login/oauth/access_token") => {
            let form = req.form();
            let ok = form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
                && form.get("code").map(String::as_str) == Some("gh-code");
            if !ok {
                return FakeResponse::json(200, &json!({"error": "bad_verification_code"}));
            }
            FakeResponse::json(
                200,
                &json!({"access_token": "gho_octo", "token_type": "bearer", "scope": "read:org,user:email"}),
            )
        }
        ("GET", path) if path.starts_with("/api/v3/") => {
            if req
                .header("authorization")
                .is_none_or(|h| !h.ends_with("gho_octo"))
            {
                return FakeResponse::json(401, &json!({"message": "Bad credentials"}));
            }
            match &path["/api/v3".len()..] {
                "/user" => FakeResponse::json(200, &json!({
                    "login": "octocat", "id": 583231, "type": "User",
                    "name": "The Octocat", "email": null,
                })),
                "/user/emails" => FakeResponse::json(200, &json!([
                    {"email": "octocat@github.example", "primary": true, "verified": true, "visibility": "public"},
                ])),
                "/user/orgs" => FakeResponse::json(200, &json!([{"login": "acme", "id": 1}])),
                "/user/teams" => FakeResponse::json(
                    200,
                    &json!(octocat.teams.iter().map(|(org, team)| json!({
                        "id": 7, "slug": team, "name": team, "organization": {"login": org, "id": 1},
                    })).collect::<Vec<_>>()),
                ),
                _ => FakeResponse::json(404, &json!({"message": "Not Found"})),
            }
        }
        _ => FakeResponse::json(404, &json!({"message": "Not Found"})),
    }
}

/// The provider's own keys, and the role rules of these tests.
fn github_keys(origin: &str) -> String {
    format!(
        r#"client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
base_url = "{origin}"
allowed_orgs = ["acme"]"#
    )
}

const ROLE_RULES: &str = r#"[roles]
[[roles.rules]]
role = "core-dev"
provider = "github"
group = "acme:core"

[[roles.rules]]
role = "admin"
provider = "local"
group = "acme:core""#;

/// The GitHub provider linked into the broker.
fn linked_section(origin: &str) -> String {
    format!(
        "[providers.github]\ntype = \"github\"\n{}\n\n{ROLE_RULES}",
        github_keys(origin)
    )
}

async fn start_github(state: &Arc<Mutex<Octocat>>) -> FakeServer {
    let s = state.clone();
    FakeServer::start(move |req| handle(&s, req)).await
}

/// app → broker → GitHub → broker callback → app, then the code redeemed.
async fn log_in_with_github(broker: &Broker) -> TokenReply {
    let browser = Browser::new(broker);
    let request = AuthorizeRequest::new(WEB_APP)
        .scope("openid email groups roles offline_access")
        .param("provider", "github");
    let back = browser
        .follow_redirects_to(&request.url(broker), WEB_APP.redirect_uri)
        .await;
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| panic!("no code in {back}"));
    let tokens = broker.redeem(&WEB_APP, &code, request.verifier()).await;
    tokens.assert_ok();
    tokens
}

#[tokio::test]
async fn a_github_team_becomes_a_role_in_the_apps_tokens_and_leaves_with_the_team() {
    let state = Arc::new(Mutex::new(Octocat {
        teams: vec![("acme", "core")],
    }));
    let github = start_github(&state).await;
    let broker = Broker::setup()
        .extra(&linked_section(&github.origin()))
        .start()
        .await;

    let tokens = log_in_with_github(&broker).await;
    let id = jwt_claims(tokens.id_token());
    let access = jwt_claims(tokens.access_token());
    for claims in [&id, &access] {
        assert_eq!(claims["roles"], json!(["core-dev"]), "{claims}");
    }
    let groups = id["groups"].as_array().unwrap();
    assert!(groups.contains(&json!("github/acme:core")), "{groups:?}");
    assert!(groups.contains(&json!("github/acme")), "{groups:?}");
    assert_eq!(id["email"], "octocat@github.example");

    // octocat leaves the team: the role is gone at the next refresh (the rule for
    // the same group name under another provider never matched).
    state.lock().unwrap().teams.clear();
    let refreshed = broker.refresh(&WEB_APP, tokens.refresh_token()).await;
    refreshed.assert_ok();
    let roles = jwt_claims(refreshed.id_token())["roles"].clone();
    assert!(
        roles.as_array().is_none_or(|r| r.is_empty()),
        "the role left with the team: {roles}"
    );
}

#[tokio::test]
async fn the_github_provider_built_as_a_plugin_gives_the_same_tokens_as_linked_in() {
    let state = Arc::new(Mutex::new(Octocat {
        teams: vec![("acme", "core")],
    }));
    let github = start_github(&state).await;
    let dir = PluginDir::new();
    let library = dir.install("libgithub.so", &built_plugin("switchboard_github"));

    // One broker (same data, keys and port), first with the provider linked in, then
    // restarted with the same provider id served from the plugin.
    let linked = linked_section(&github.origin());
    let mut broker = Broker::setup().extra(&linked).start().await;
    let before = log_in_with_github(&broker).await;
    broker
        .restart_with_config(|config| {
            config.replace(&linked, &as_plugin_section(&linked, &library))
        })
        .await;
    assert!(broker.log().contains("plugin loaded"), "{}", broker.log());
    let after = log_in_with_github(&broker).await;

    assert_eq!(
        jwt_stable_claims(before.id_token()),
        jwt_stable_claims(after.id_token())
    );
    assert_eq!(
        jwt_stable_claims(before.access_token()),
        jwt_stable_claims(after.access_token())
    );
    assert_eq!(jwt_claims(after.id_token())["roles"], json!(["core-dev"]));

    // Refresh goes through the loaded provider too: the team left, the role leaves.
    state.lock().unwrap().teams.clear();
    let refreshed = broker.refresh(&WEB_APP, after.refresh_token()).await;
    refreshed.assert_ok();
    let roles = jwt_claims(refreshed.id_token())["roles"].clone();
    assert!(roles.as_array().is_none_or(|r| r.is_empty()), "{roles}");
}
