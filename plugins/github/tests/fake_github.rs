//! The GitHub provider against a fake GitHub Enterprise on loopback, shaped like
//! GitHub's documented responses: the OAuth web flow (`/login/oauth/authorize`,
//! `/login/oauth/access_token` answering errors with HTTP 200, PKCE S256), and the REST
//! API under `/api/v3` (`/user`, `/user/emails`, `/user/orgs`, `/user/teams`) with
//! Link-header pagination and a required `User-Agent`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use switchboard_github::GitHubFactory;
use switchboard_plugin_api::{
    BeginRequest, Identity, Provider, ProviderContext, ProviderError, ProviderFactory,
    RefreshRequest,
};
use switchboard_provider_testkit::server::{FakeRequest, FakeResponse, FakeServer};
use switchboard_provider_testkit::{LoginSecrets, callback, query_map, s256};

const CALLBACK: &str = "http://127.0.0.1:9/callback/github";
const CLIENT_ID: &str = "Iv1.fake";
const CLIENT_SECRET: &str = "fake-secret";
/// The fake pages lists by this many items, whatever per_page asks.
const PAGE: usize = 2;

#[derive(Clone)]
struct FakeUser {
    id: u64,
    login: String,
    emails: Vec<Value>,
    orgs: Vec<String>,
    teams: Vec<(String, String)>,
}

#[derive(Default)]
struct GitHub {
    origin: String,
    users: HashMap<String, FakeUser>,
    codes: HashMap<String, (String, String)>, // code -> (login, challenge)
    tokens: HashMap<String, String>,          // token -> login
    issued: u32,
    api_down: bool,
    foreign_next_link: bool,
}

struct Fake {
    server: FakeServer,
    state: Arc<Mutex<GitHub>>,
}

impl Fake {
    async fn start() -> Fake {
        let state = Arc::new(Mutex::new(GitHub::default()));
        let s = state.clone();
        let server = FakeServer::start(move |req| handle(&s, req)).await;
        {
            let mut g = state.lock().unwrap();
            g.origin = server.origin();
            g.users.insert(
                "octocat".into(),
                FakeUser {
                    id: 583231,
                    login: "octocat".into(),
                    emails: vec![
                        json!({"email": "octo@alt.example", "primary": false, "verified": true, "visibility": null}),
                        json!({"email": "octocat@github.example", "primary": true, "verified": true, "visibility": "public"}),
                    ],
                    orgs: vec!["acme".into(), "widgets".into(), "gadgets".into()],
                    teams: vec![
                        ("acme".into(), "core".into()),
                        ("acme".into(), "ops".into()),
                        ("widgets".into(), "design".into()),
                    ],
                },
            );
            g.users.insert(
                "newbie".into(),
                FakeUser {
                    id: 99,
                    login: "newbie".into(),
                    emails: vec![json!({"email": "newbie@example.com", "primary": true, "verified": false, "visibility": "private"})],
                    orgs: vec!["acme".into()],
                    teams: vec![],
                },
            );
        }
        Fake { server, state }
    }

    fn provider(&self, extra: Value) -> Arc<dyn Provider> {
        let mut config = json!({
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "base_url": self.server.origin(),
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        GitHubFactory
            .create(ProviderContext::new("github", config, false))
            .unwrap()
    }

    fn leave_org(&self, login: &str, org: &str) {
        let mut g = self.state.lock().unwrap();
        let user = g.users.get_mut(login).unwrap();
        user.orgs.retain(|o| o != org);
        user.teams.retain(|(o, _)| o != org);
    }

    fn revoke_tokens(&self) {
        self.state.lock().unwrap().tokens.clear();
    }
}

fn page(req: &FakeRequest, origin: &str, items: Vec<Value>) -> FakeResponse {
    page_linking(req, origin, items, false)
}

fn page_linking(req: &FakeRequest, origin: &str, items: Vec<Value>, foreign: bool) -> FakeResponse {
    let n: usize = req
        .query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1);
    let pages = items.len().div_ceil(PAGE).max(1);
    let slice: Vec<Value> = items.into_iter().skip((n - 1) * PAGE).take(PAGE).collect();
    let mut response = FakeResponse::json(200, &Value::Array(slice));
    if n < pages {
        let host = if foreign {
            "http://attacker.example"
        } else {
            origin
        };
        let base = format!("{host}{}?per_page=100", req.path);
        response = response.with_header(
            "link",
            &format!(
                "<{base}&page={}>; rel=\"next\", <{base}&page={pages}>; rel=\"last\"",
                n + 1
            ),
        );
    }
    response
}

fn handle(state: &Arc<Mutex<GitHub>>, req: FakeRequest) -> FakeResponse {
    let mut g = state.lock().unwrap();
    if req.header("user-agent").is_none_or(str::is_empty) {
        return FakeResponse::json(
            403,
            &json!({"message": "Request forbidden by administrative rules. Please make sure your request has a User-Agent header"}),
        );
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/login/oauth/authorize") => {
            let q = &req.query;
            if q.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
                return FakeResponse::text(404, "unknown client");
            }
            let login = q.get("login").cloned().unwrap_or_else(|| "octocat".into());
            let code = format!("code-{}", g.codes.len() + 1);
            g.codes.insert(
                code.clone(),
                (login, q.get("code_challenge").cloned().unwrap_or_default()),
            );
            let mut target = url::Url::parse(&q["redirect_uri"]).unwrap();
            target
                .query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &q["state"]);
            FakeResponse::text(302, "").with_header("location", target.as_str())
        }
        ("POST", "/login/oauth/access_token") => {
            let form = req.form();
            let json_wanted = req.header("accept").is_some_and(|a| a.contains("json"));
            let answer = |v: Value| {
                if json_wanted {
                    FakeResponse::json(200, &v)
                } else {
                    let body: String =
                        url::form_urlencoded::Serializer::new(String::new())
                            .extend_pairs(v.as_object().unwrap().iter().map(|(k, v)| {
                                (k.clone(), v.as_str().unwrap_or_default().to_string())
                            }))
                            .finish();
                    FakeResponse::text(200, &body)
                        .with_header("content-type", "application/x-www-form-urlencoded")
                }
            };
            if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
                || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
            {
                return answer(
                    json!({"error": "incorrect_client_credentials", "error_description": "The client_id and/or client_secret passed are incorrect."}),
                );
            }
            let Some((login, challenge)) = form.get("code").and_then(|c| g.codes.remove(c)) else {
                return answer(
                    json!({"error": "bad_verification_code", "error_description": "The code passed is incorrect or expired."}),
                );
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if s256(&verifier) != challenge {
                return answer(
                    json!({"error": "bad_verification_code", "error_description": "PKCE verification failed."}),
                );
            }
            g.issued += 1;
            let token = format!("gho_fake{}", g.issued);
            g.tokens.insert(token.clone(), login);
            answer(
                json!({"access_token": token, "token_type": "bearer", "scope": "read:org,read:user,user:email"}),
            )
        }
        ("GET", path) if path.starts_with("/api/v3/") => {
            if g.api_down {
                return FakeResponse::json(502, &json!({"message": "Server Error"}));
            }
            let token = req.header("authorization").and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("token "))
            });
            let Some(user) = token
                .and_then(|t| g.tokens.get(t))
                .and_then(|l| g.users.get(l))
                .cloned()
            else {
                return FakeResponse::json(
                    401,
                    &json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
                );
            };
            let origin = g.origin.clone();
            match &path["/api/v3".len()..] {
                "/user" => FakeResponse::json(200, &json!({
                    "login": user.login, "id": user.id, "node_id": "MDQ6VXNlcjE=",
                    "avatar_url": format!("https://avatars.example/u/{}", user.id),
                    "html_url": format!("{origin}/{}", user.login), "type": "User",
                    "name": format!("The {}", user.login), "email": null,
                })),
                "/user/emails" => page(&req, &origin, user.emails.clone()),
                "/user/orgs" => page_linking(
                    &req,
                    &origin,
                    user.orgs.iter().enumerate().map(|(i, o)| json!({"login": o, "id": i + 1, "url": format!("{origin}/api/v3/orgs/{o}")})).collect(),
                    g.foreign_next_link,
                ),
                "/user/teams" => page(
                    &req,
                    &origin,
                    user.teams.iter().enumerate().map(|(i, (o, t))| json!({
                        "id": i + 1, "name": t.to_uppercase(), "slug": t, "privacy": "closed",
                        "organization": {"login": o, "id": 1},
                    })).collect(),
                ),
                _ => FakeResponse::json(404, &json!({"message": "Not Found"})),
            }
        }
        _ => FakeResponse::json(404, &json!({"message": "Not Found"})),
    }
}

/// begin → the fake's authorize redirect → complete.
async fn login(provider: &dyn Provider, who: &str) -> Result<Identity, ProviderError> {
    let secrets = LoginSecrets::new();
    let mut begin_request =
        BeginRequest::new(CALLBACK, &secrets.state, &secrets.nonce, &secrets.challenge);
    begin_request.login_hint = Some(who.to_string());
    let begin = provider.redirect().unwrap().begin(begin_request).await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("test-browser")
        .build()
        .unwrap();
    let response = client.get(&begin.url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(CALLBACK));
    let params: BTreeMap<String, String> = query_map(&location);
    assert_eq!(params["state"], secrets.state);
    provider
        .redirect()
        .unwrap()
        .complete(callback(params, begin.provider_state, CALLBACK, &secrets))
        .await
}

fn denied(result: Result<Identity, ProviderError>) -> String {
    match result {
        Err(ProviderError::Denied { reason }) => reason,
        other => panic!("expected Denied, got {other:?}"),
    }
}

#[tokio::test]
async fn web_flow_gives_numeric_subject_primary_email_and_paginated_groups() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));

    let secrets = LoginSecrets::new();
    let begin = provider
        .redirect()
        .unwrap()
        .begin(BeginRequest::new(
            CALLBACK,
            &secrets.state,
            &secrets.nonce,
            &secrets.challenge,
        ))
        .await
        .unwrap();
    let q = query_map(&url::Url::parse(&begin.url).unwrap());
    assert!(
        begin
            .url
            .starts_with(&format!("{}/login/oauth/authorize?", fake.server.origin()))
    );
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], CALLBACK);
    assert_eq!(q["state"], secrets.state);
    assert_eq!(q["scope"], "read:user user:email read:org");
    assert_eq!(q["code_challenge"], secrets.challenge);
    assert_eq!(q["code_challenge_method"], "S256");

    let identity = login(provider.as_ref(), "octocat").await.unwrap();
    assert_eq!(
        identity.subject, "583231",
        "the numeric id, never the login"
    );
    assert_eq!(identity.username.as_deref(), Some("octocat"));
    assert_eq!(identity.name.as_deref(), Some("The octocat"));
    assert_eq!(identity.email.as_deref(), Some("octocat@github.example"));
    assert!(identity.email_verified);
    assert_eq!(
        identity.groups,
        vec![
            "acme",
            "widgets",
            "gadgets",
            "acme:core",
            "acme:ops",
            "widgets:design"
        ],
        "orgs and teams across pages"
    );
    assert_eq!(identity.claims["login"], "octocat");
    assert!(
        identity.provider_data.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .starts_with("gho_")
    );
}

#[tokio::test]
async fn an_unverified_primary_email_is_denied_unless_skipped() {
    let fake = Fake::start().await;
    let reason = denied(login(fake.provider(json!({})).as_ref(), "newbie").await);
    assert!(reason.contains("not verified"), "{reason}");
    let lax = fake.provider(json!({ "insecure_skip_email_verified": true }));
    let identity = login(lax.as_ref(), "newbie").await.unwrap();
    assert_eq!(identity.email.as_deref(), Some("newbie@example.com"));
    assert!(!identity.email_verified);
}

#[tokio::test]
async fn people_outside_the_allowed_orgs_and_teams_are_denied() {
    let fake = Fake::start().await;
    let lax = json!({ "insecure_skip_email_verified": true });
    let mut only_widgets = lax.clone();
    only_widgets["allowed_orgs"] = json!(["widgets"]);
    let provider = fake.provider(only_widgets);
    let reason = denied(login(provider.as_ref(), "newbie").await);
    assert_eq!(
        reason,
        "membership in one of these GitHub organizations is required: widgets"
    );
    login(provider.as_ref(), "octocat").await.unwrap();

    let mut team = lax;
    team["allowed_teams"] = json!(["acme:ops"]);
    let provider = fake.provider(team);
    let reason = denied(login(provider.as_ref(), "newbie").await);
    assert!(reason.contains("acme:ops"), "{reason}");
    login(provider.as_ref(), "octocat").await.unwrap();
}

#[tokio::test]
async fn refresh_rereads_orgs_and_a_removed_member_loses_access() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({ "allowed_orgs": ["gadgets"] }));
    let identity = login(provider.as_ref(), "octocat").await.unwrap();
    let refresher = provider.refresh().unwrap();
    let refreshed = refresher
        .refresh(RefreshRequest::new(identity.clone()))
        .await
        .unwrap();
    assert_eq!(refreshed.subject, identity.subject);
    assert_eq!(refreshed.groups, identity.groups);

    fake.leave_org("octocat", "gadgets");
    let reason = denied(
        refresher
            .refresh(RefreshRequest::new(refreshed.clone()))
            .await,
    );
    assert!(reason.contains("gadgets"), "{reason}");

    fake.revoke_tokens();
    let reason = denied(refresher.refresh(RefreshRequest::new(refreshed)).await);
    assert_eq!(reason, "session ended upstream");
}

#[tokio::test]
async fn token_endpoint_errors_in_200_answers_are_refused() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));
    let secrets = LoginSecrets::new();
    let params = BTreeMap::from([
        ("code".to_string(), "never-issued".to_string()),
        ("state".to_string(), secrets.state.clone()),
    ]);
    let err = provider
        .redirect()
        .unwrap()
        .complete(callback(params, Value::Null, CALLBACK, &secrets))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::UpstreamProtocol { detail } if detail.contains("bad_verification_code")),
        "{err:?}"
    );

    let denied_params = BTreeMap::from([
        ("error".to_string(), "access_denied".to_string()),
        (
            "error_description".to_string(),
            "The user has denied your application access.".to_string(),
        ),
        ("state".to_string(), secrets.state.clone()),
    ]);
    let reason = denied(
        provider
            .redirect()
            .unwrap()
            .complete(callback(denied_params, Value::Null, CALLBACK, &secrets))
            .await,
    );
    assert_eq!(reason, "GitHub refused the login (access_denied)");
}

#[tokio::test]
async fn api_outage_and_unreachable_github_are_unavailable() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));
    let identity = login(provider.as_ref(), "octocat").await.unwrap();
    fake.state.lock().unwrap().api_down = true;
    let err = provider
        .refresh()
        .unwrap()
        .refresh(RefreshRequest::new(identity))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::UpstreamUnavailable { .. }),
        "{err:?}"
    );

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let down = GitHubFactory
        .create(ProviderContext::new(
            "github",
            json!({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "base_url": format!("http://127.0.0.1:{port}")}),
            false,
        ))
        .unwrap();
    let secrets = LoginSecrets::new();
    let params = BTreeMap::from([("code".to_string(), "c".to_string())]);
    let err = down
        .redirect()
        .unwrap()
        .complete(callback(params, Value::Null, CALLBACK, &secrets))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::UpstreamUnavailable { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn pagination_never_follows_a_link_off_the_api_with_the_token() {
    let fake = Fake::start().await;
    fake.state.lock().unwrap().foreign_next_link = true;
    let err = login(fake.provider(json!({})).as_ref(), "octocat")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::UpstreamProtocol { detail } if detail.contains("leaves the API")),
        "{err:?}"
    );
}
