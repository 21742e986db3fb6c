//! The OAuth 2.0 provider against a fake upstream on loopback: an authorization
//! endpoint that binds each code to the PKCE challenge and redirect URI it was issued
//! for, a token endpoint (code and refresh grants, rotating refresh tokens, client
//! authentication by form or HTTP Basic as configured, errors with HTTP 400 or, like
//! GitHub, 200), and a JSON user API behind bearer tokens. The provider is driven
//! in-process through its factory, the way the broker drives the loaded plugin.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use switchboard_oauth2::OAuth2Factory;
use switchboard_plugin_api::{
    BeginRequest, Identity, Provider, ProviderContext, ProviderError, ProviderFactory,
    RefreshRequest,
};
use switchboard_provider_testkit::server::{FakeRequest, FakeResponse, FakeServer};
use switchboard_provider_testkit::{LoginSecrets, callback, query_map, s256};

const CALLBACK: &str = "http://127.0.0.1:9/callback/acme";
const CLIENT_ID: &str = "acme client";
/// Odd characters on purpose: `client_secret_basic` must url-encode them.
const CLIENT_SECRET: &str = "s3cret:with/odd+chars";

/// How the fake wants the client to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    Post,
    Basic,
}

/// What a code was issued for.
#[derive(Clone)]
struct Issued {
    login: String,
    challenge: Option<String>,
    redirect_uri: String,
}

struct Upstream {
    users: HashMap<String, Value>,
    /// Who consents at the authorization endpoint; `None`: the person declines.
    next_login: Option<String>,
    client_auth: ClientAuth,
    codes: HashMap<String, Issued>,
    access_tokens: HashMap<String, String>,
    refresh_tokens: HashMap<String, String>,
    issued: u32,
    issue_refresh_tokens: bool,
    errors_with_200: bool,
    token_down: bool,
    api_down: bool,
    token_forms: Vec<BTreeMap<String, String>>,
}

struct Fake {
    server: FakeServer,
    state: Arc<Mutex<Upstream>>,
}

fn ada() -> Value {
    json!({
        "id": 1001, "login": "ada", "name": "Ada Lovelace",
        "email": "ada@acme.example", "email_confirmed": true,
        "teams": ["eng", "ops"], "plan": "pro",
    })
}

impl Fake {
    async fn start() -> Fake {
        let state = Arc::new(Mutex::new(Upstream {
            users: HashMap::from([
                ("ada".to_string(), ada()),
                (
                    "grace".to_string(),
                    json!({"data": {"user": {"uuid": "g-42", "handle": "grace",
                           "emails": [{"address": "grace@acme.example", "verified": false}]}}}),
                ),
                (
                    "ghost".to_string(),
                    json!({"login": "ghost", "name": "Nobody"}),
                ),
            ]),
            next_login: Some("ada".into()),
            client_auth: ClientAuth::Post,
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            refresh_tokens: HashMap::new(),
            issued: 0,
            issue_refresh_tokens: true,
            errors_with_200: false,
            token_down: false,
            api_down: false,
            token_forms: Vec::new(),
        }));
        let s = state.clone();
        let server = FakeServer::start(move |req| handle(&s, req)).await;
        Fake { server, state }
    }

    fn upstream(&self) -> MutexGuard<'_, Upstream> {
        self.state.lock().unwrap()
    }

    fn config(&self, extra: Value) -> Value {
        let origin = self.server.origin();
        let mut config = json!({
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authorize_url": format!("{origin}/oauth/authorize"),
            "token_url": format!("{origin}/oauth/token"),
            "userinfo_url": format!("{origin}/api/me"),
            "scopes": ["profile", "teams"],
            "claims": {"email_verified": "email_confirmed", "groups": "teams"},
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        config
    }

    fn provider(&self, extra: Value) -> Arc<dyn Provider> {
        OAuth2Factory
            .create(ProviderContext::new("acme", self.config(extra), false))
            .unwrap()
    }
}

fn handle(state: &Arc<Mutex<Upstream>>, req: FakeRequest) -> FakeResponse {
    let mut u = state.lock().unwrap();
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/oauth/authorize") => authorize(&mut u, &req),
        ("POST", "/oauth/token") => token(&mut u, &req),
        ("GET", "/api/me") => user_api(&u, &req),
        _ => FakeResponse::json(404, &json!({"message": "Not Found"})),
    }
}

fn authorize(u: &mut Upstream, req: &FakeRequest) -> FakeResponse {
    let q = &req.query;
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("response_type").map(String::as_str) != Some("code")
    {
        return FakeResponse::text(400, "unknown client or response type");
    }
    if q.contains_key("code_challenge") && q["code_challenge_method"] != "S256" {
        return FakeResponse::text(400, "only S256");
    }
    let mut target = url::Url::parse(&q["redirect_uri"]).unwrap();
    match u.next_login.clone() {
        None => {
            target
                .query_pairs_mut()
                .append_pair("error", "access_denied")
                .append_pair("error_description", "The user denied the request")
                .append_pair("state", &q["state"]);
        }
        Some(login) => {
            let code = format!("code-{}", u.codes.len() + 1);
            u.codes.insert(
                code.clone(),
                Issued {
                    login,
                    challenge: q.get("code_challenge").cloned(),
                    redirect_uri: q["redirect_uri"].clone(),
                },
            );
            target
                .query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &q["state"]);
        }
    }
    FakeResponse::text(302, "").with_header("location", target.as_str())
}

/// The client id and secret sent as RFC 6749 section 2.3.1 HTTP Basic credentials.
fn basic_credentials(req: &FakeRequest) -> Option<(String, String)> {
    let encoded = req.header("authorization")?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

fn token(u: &mut Upstream, req: &FakeRequest) -> FakeResponse {
    if u.token_down {
        return FakeResponse::text(500, &format!("stack trace... {CLIENT_SECRET}"));
    }
    let form = req.form();
    u.token_forms.push(form.clone());
    let error_status = if u.errors_with_200 { 200 } else { 400 };
    let refuse = |status: u16, error: &str, description: String| {
        FakeResponse::json(
            status,
            &json!({"error": error, "error_description": description}),
        )
    };
    let credentials = match u.client_auth {
        ClientAuth::Post if req.header("authorization").is_none() => form
            .get("client_id")
            .cloned()
            .zip(form.get("client_secret").cloned()),
        ClientAuth::Basic if !form.contains_key("client_secret") => basic_credentials(req),
        _ => None,
    };
    match credentials {
        Some((id, secret)) if id == CLIENT_ID && secret == CLIENT_SECRET => {}
        // Upstreams do echo what they got; the provider must not pass it on.
        Some((_, secret)) => {
            return refuse(401, "invalid_client", format!("bad secret `{secret}`"));
        }
        None => return refuse(401, "invalid_client", "wrong client authentication".into()),
    }
    let login = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(issued) = form.get("code").and_then(|c| u.codes.remove(c)) else {
                return refuse(error_status, "invalid_grant", "unknown code".into());
            };
            if form.get("redirect_uri") != Some(&issued.redirect_uri) {
                return refuse(
                    error_status,
                    "invalid_grant",
                    "redirect_uri mismatch".into(),
                );
            }
            if let Some(challenge) = issued.challenge {
                let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                if s256(&verifier) != challenge {
                    return refuse(error_status, "invalid_grant", "PKCE failed".into());
                }
            }
            issued.login
        }
        Some("refresh_token") => {
            // Rotation: a refresh token is good once.
            let Some(login) = form
                .get("refresh_token")
                .and_then(|t| u.refresh_tokens.remove(t))
            else {
                return refuse(
                    error_status,
                    "invalid_grant",
                    "unknown refresh token".into(),
                );
            };
            login
        }
        _ => return refuse(error_status, "unsupported_grant_type", String::new()),
    };
    u.issued += 1;
    let access_token = format!("at-{}", u.issued);
    u.access_tokens.insert(access_token.clone(), login.clone());
    let mut answer =
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 3600});
    if u.issue_refresh_tokens {
        let refresh_token = format!("rt-{}", u.issued);
        u.refresh_tokens.insert(refresh_token.clone(), login);
        answer["refresh_token"] = json!(refresh_token);
    }
    FakeResponse::json(200, &answer)
}

fn user_api(u: &Upstream, req: &FakeRequest) -> FakeResponse {
    if u.api_down {
        return FakeResponse::json(503, &json!({"message": "maintenance"}));
    }
    if req.header("user-agent").is_none_or(str::is_empty)
        || req
            .header("accept")
            .is_none_or(|a| !a.contains("application/json"))
    {
        return FakeResponse::json(400, &json!({"message": "User-Agent and Accept required"}));
    }
    let user = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .and_then(|t| u.access_tokens.get(t))
        .and_then(|login| u.users.get(login));
    match user {
        Some(user) => FakeResponse::json(200, user),
        None => FakeResponse::json(401, &json!({"message": "Bad credentials"})),
    }
}

/// begin → the fake's authorization redirect → complete, as `who` (`None`: the person
/// declines at the upstream).
async fn login(
    fake: &Fake,
    provider: &dyn Provider,
    who: Option<&str>,
) -> Result<Identity, ProviderError> {
    login_with(fake, provider, who, &LoginSecrets::new()).await
}

/// [`login`] with the broker's state and PKCE pair given.
async fn login_with(
    fake: &Fake,
    provider: &dyn Provider,
    who: Option<&str>,
    secrets: &LoginSecrets,
) -> Result<Identity, ProviderError> {
    fake.upstream().next_login = who.map(str::to_string);
    let begin = provider
        .redirect()
        .unwrap()
        .begin(BeginRequest::new(
            CALLBACK,
            &secrets.state,
            &secrets.nonce,
            &secrets.challenge,
        ))
        .await?;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser.get(&begin.url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 302);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(CALLBACK));
    let params = query_map(&location);
    assert_eq!(params["state"], secrets.state);
    provider
        .redirect()
        .unwrap()
        .complete(callback(params, begin.provider_state, CALLBACK, secrets))
        .await
}

/// complete() with made-up callback parameters.
async fn complete_with(
    provider: &dyn Provider,
    params: &[(&str, &str)],
) -> Result<Identity, ProviderError> {
    let params: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    provider
        .redirect()
        .unwrap()
        .complete(callback(
            params,
            Value::Null,
            CALLBACK,
            &LoginSecrets::new(),
        ))
        .await
}

async fn refresh(provider: &dyn Provider, identity: &Identity) -> Result<Identity, ProviderError> {
    provider
        .refresh()
        .unwrap()
        .refresh(RefreshRequest::new(identity.clone()))
        .await
}

fn denied(result: Result<Identity, ProviderError>) -> String {
    match result {
        Err(ProviderError::Denied { reason }) => reason,
        other => panic!("expected Denied, got {other:?}"),
    }
}

fn protocol(result: Result<Identity, ProviderError>) -> String {
    match result {
        Err(ProviderError::UpstreamProtocol { detail }) => detail,
        other => panic!("expected UpstreamProtocol, got {other:?}"),
    }
}

fn unavailable(result: Result<Identity, ProviderError>) -> String {
    match result {
        Err(ProviderError::UpstreamUnavailable { detail }) => detail,
        other => panic!("expected UpstreamUnavailable, got {other:?}"),
    }
}

fn misconfigured(result: Result<Arc<dyn Provider>, ProviderError>) -> String {
    match result {
        Err(ProviderError::Misconfigured { detail }) => detail,
        Err(other) => panic!("expected Misconfigured, got {other:?}"),
        Ok(provider) => panic!("expected Misconfigured, got {provider:?}"),
    }
}

fn a_closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn the_factory_answers_to_oauth2() {
    assert_eq!(OAuth2Factory.provider_type(), "oauth2");
}

#[tokio::test]
async fn login_maps_the_user_api_to_an_identity_with_pkce_and_form_client_auth() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));
    let capabilities = provider.capabilities();
    assert!(capabilities.redirect && capabilities.refresh && !capabilities.password);

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
    assert!(
        begin
            .url
            .starts_with(&format!("{}/oauth/authorize?", fake.server.origin()))
    );
    let q = query_map(&url::Url::parse(&begin.url).unwrap());
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], CALLBACK);
    assert_eq!(q["scope"], "profile teams");
    assert_eq!(q["state"], secrets.state);
    assert_eq!(q["code_challenge"], secrets.challenge);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(begin.provider_state, Value::Null);

    let identity = login_with(&fake, provider.as_ref(), Some("ada"), &secrets)
        .await
        .unwrap();
    assert_eq!(identity.subject, "1001", "the numeric id as a string");
    assert_eq!(identity.username.as_deref(), Some("ada"));
    assert_eq!(identity.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(identity.email.as_deref(), Some("ada@acme.example"));
    assert!(identity.email_verified);
    assert_eq!(identity.groups, vec!["eng", "ops"], "un-namespaced");
    assert_eq!(identity.claims, ada(), "the raw user JSON");
    assert_eq!(
        identity.provider_data,
        Some(json!({"refresh_token": "rt-1"}))
    );

    let forms = fake.upstream().token_forms.clone();
    let form = forms.last().unwrap();
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(
        form["code_verifier"], secrets.verifier,
        "the broker's verifier"
    );
    assert_eq!(form["client_id"], CLIENT_ID);
}

#[tokio::test]
async fn client_secret_basic_sends_the_secret_only_in_the_authorization_header() {
    let fake = Fake::start().await;
    fake.upstream().client_auth = ClientAuth::Basic;
    let post = fake.provider(json!({}));
    let detail = protocol(login(&fake, post.as_ref(), Some("ada")).await);
    assert!(detail.contains("invalid_client"), "{detail}");

    let basic = fake.provider(json!({"token_auth": "client_secret_basic"}));
    let identity = login(&fake, basic.as_ref(), Some("ada")).await.unwrap();
    assert_eq!(identity.subject, "1001");
    let forms = fake.upstream().token_forms.clone();
    assert!(!forms.last().unwrap().contains_key("client_secret"));
}

#[tokio::test]
async fn without_pkce_no_challenge_or_verifier_is_sent() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({"pkce": false, "scopes": []}));
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
    assert!(!q.contains_key("code_challenge") && !q.contains_key("code_challenge_method"));
    assert!(!q.contains_key("scope"), "no scopes configured: no scope");

    login(&fake, provider.as_ref(), Some("ada")).await.unwrap();
    let forms = fake.upstream().token_forms.clone();
    assert!(!forms.last().unwrap().contains_key("code_verifier"));
}

#[tokio::test]
async fn a_verifier_that_does_not_match_the_challenge_is_refused_upstream() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));
    fake.upstream().next_login = Some("ada".into());
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
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = browser.get(&begin.url).send().await.unwrap();
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let other = LoginSecrets::new();
    let result = provider
        .redirect()
        .unwrap()
        .complete(callback(
            query_map(&location),
            Value::Null,
            CALLBACK,
            &other,
        ))
        .await;
    assert!(protocol(result).contains("invalid_grant"));
}

#[tokio::test]
async fn nested_user_json_is_read_through_dotted_claim_paths() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({"claims": {
        "subject": "data.user.uuid",
        "username": "data.user.handle",
        "email": "data.user.emails.0.address",
        "email_verified": "data.user.emails.0.verified",
    }}));
    let identity = login(&fake, provider.as_ref(), Some("grace"))
        .await
        .unwrap();
    assert_eq!(identity.subject, "g-42");
    assert_eq!(identity.username.as_deref(), Some("grace"));
    assert_eq!(identity.email.as_deref(), Some("grace@acme.example"));
    assert!(!identity.email_verified);
    assert!(identity.groups.is_empty());
}

#[tokio::test]
async fn declined_consent_is_denied_with_a_short_reason() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));
    let reason = denied(login(&fake, provider.as_ref(), None).await);
    assert_eq!(reason, "the login was cancelled or refused upstream");

    let other = complete_with(
        provider.as_ref(),
        &[
            ("error", "invalid_scope"),
            ("error_description", "<b>no</b>"),
        ],
    )
    .await;
    let detail = protocol(other);
    assert!(
        detail.contains("invalid_scope") && !detail.contains("<b>"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_callback_without_a_code_is_a_protocol_error() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));
    protocol(complete_with(provider.as_ref(), &[("state", "s")]).await);
    protocol(complete_with(provider.as_ref(), &[("code", "")]).await);
}

#[tokio::test]
async fn a_forged_code_is_a_protocol_error_whether_refused_with_400_or_200() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));
    let detail = protocol(complete_with(provider.as_ref(), &[("code", "forged")]).await);
    assert!(detail.contains("invalid_grant"), "{detail}");

    fake.upstream().errors_with_200 = true;
    let detail = protocol(complete_with(provider.as_ref(), &[("code", "forged")]).await);
    assert!(detail.contains("invalid_grant"), "{detail}");
}

#[tokio::test]
async fn a_failing_or_unreachable_token_endpoint_is_unavailable() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));
    let identity = login(&fake, provider.as_ref(), Some("ada")).await.unwrap();

    fake.upstream().token_down = true;
    let detail = unavailable(login(&fake, provider.as_ref(), Some("ada")).await);
    assert!(detail.contains("500"), "{detail}");
    unavailable(refresh(provider.as_ref(), &identity).await);

    let port = a_closed_port();
    let down = fake.provider(json!({"token_url": format!("http://127.0.0.1:{port}/oauth/token")}));
    unavailable(complete_with(down.as_ref(), &[("code", "c")]).await);
}

#[tokio::test]
async fn a_failing_or_unreachable_user_api_is_unavailable() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));
    fake.upstream().api_down = true;
    unavailable(login(&fake, provider.as_ref(), Some("ada")).await);
    fake.upstream().api_down = false;

    let port = a_closed_port();
    let down = fake.provider(json!({"userinfo_url": format!("http://[::1]:{port}/me")}));
    unavailable(login(&fake, down.as_ref(), Some("ada")).await);
}

#[tokio::test]
async fn a_user_without_a_subject_is_a_protocol_error() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));
    let detail = protocol(login(&fake, provider.as_ref(), Some("ghost")).await);
    assert!(detail.contains("`id`"), "{detail}");

    let elsewhere = fake.provider(json!({"claims": {"subject": "uuid"}}));
    protocol(login(&fake, elsewhere.as_ref(), Some("ada")).await);
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_a_user_removed_upstream_is_denied() {
    let fake = Fake::start().await;
    let provider = fake.provider(json!({}));
    let first = login(&fake, provider.as_ref(), Some("ada")).await.unwrap();
    assert_eq!(first.provider_data, Some(json!({"refresh_token": "rt-1"})));

    fake.upstream().users.get_mut("ada").unwrap()["teams"] = json!(["eng"]);
    let second = refresh(provider.as_ref(), &first).await.unwrap();
    assert_eq!(second.subject, first.subject);
    assert_eq!(second.groups, vec!["eng"], "groups re-read upstream");
    assert_eq!(
        second.provider_data,
        Some(json!({"refresh_token": "rt-2"})),
        "the rotated refresh token is kept"
    );

    let reason = denied(refresh(provider.as_ref(), &first).await);
    assert_eq!(
        reason, "session ended upstream",
        "a rotated-out refresh token"
    );

    fake.upstream().users.remove("ada");
    let reason = denied(refresh(provider.as_ref(), &second).await);
    assert_eq!(reason, "session ended upstream", "the user API answers 401");
}

#[tokio::test]
async fn without_a_refresh_token_refresh_rereads_the_user_api_with_the_access_token() {
    let fake = Fake::start().await;
    fake.upstream().issue_refresh_tokens = false;
    let provider = fake.provider(json!({}));
    let identity = login(&fake, provider.as_ref(), Some("ada")).await.unwrap();
    assert_eq!(
        identity.provider_data,
        Some(json!({"access_token": "at-1"}))
    );

    fake.upstream().users.get_mut("ada").unwrap()["name"] = json!("Countess Lovelace");
    let refreshed = refresh(provider.as_ref(), &identity).await.unwrap();
    assert_eq!(refreshed.name.as_deref(), Some("Countess Lovelace"));
    assert_eq!(refreshed.provider_data, identity.provider_data);
    assert_eq!(fake.upstream().token_forms.len(), 1, "no token request");

    fake.upstream().api_down = true;
    unavailable(refresh(provider.as_ref(), &identity).await);
    fake.upstream().api_down = false;

    fake.upstream().access_tokens.clear();
    assert_eq!(
        denied(refresh(provider.as_ref(), &identity).await),
        "session ended upstream"
    );

    let mut nothing_kept = identity.clone();
    nothing_kept.provider_data = None;
    denied(refresh(provider.as_ref(), &nothing_kept).await);
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let fake = Fake::start().await;
    let create = |config: Value| OAuth2Factory.create(ProviderContext::new("acme", config, false));

    let detail = misconfigured(create(
        fake.config(json!({"authorize_url": "http://acme.example/oauth/authorize"})),
    ));
    assert!(detail.contains("providers.acme.authorize_url"), "{detail}");

    let mut no_secret = fake.config(json!({}));
    no_secret.as_object_mut().unwrap().remove("client_secret");
    let detail = misconfigured(create(no_secret));
    assert!(detail.contains("providers.acme.client_secret"), "{detail}");

    let detail = misconfigured(create(fake.config(json!({"client_secrte": "x"}))));
    assert!(
        detail.contains("providers.acme") && detail.contains("client_secrte"),
        "{detail}"
    );

    let mut unset_env = fake.config(json!({
        "client_secret_env": "SWITCHBOARD_TEST_SURELY_UNSET_OAUTH2_SECRET",
    }));
    unset_env.as_object_mut().unwrap().remove("client_secret");
    let detail = misconfigured(create(unset_env));
    assert!(
        detail.contains("providers.acme.client_secret_env")
            && detail.contains("SWITCHBOARD_TEST_SURELY_UNSET_OAUTH2_SECRET"),
        "{detail}"
    );

    let detail = misconfigured(create(fake.config(json!({"claims": {"groups": "teams."}}))));
    assert!(detail.contains("providers.acme.claims.groups"), "{detail}");
}

#[tokio::test]
async fn no_error_text_contains_the_client_secret() {
    let fake = Fake::start().await;
    let mut errors: Vec<ProviderError> = Vec::new();

    // Config errors with the secret given inline.
    for extra in [
        json!({"token_url": "http://acme.example/token"}),
        json!({"client_secret_file": "/nonexistent"}),
        json!({"claims": {"subject": ""}}),
        json!({"token_auth": "tls_client_auth"}),
    ] {
        let result = OAuth2Factory.create(ProviderContext::new("acme", fake.config(extra), false));
        errors.push(result.unwrap_err());
    }

    // The upstream echoes the wrong secret it got, and puts the right one in a 500 body.
    let wrong_secret = "wrong-secret-value";
    let wrong = fake.provider(json!({"client_secret": wrong_secret}));
    errors.push(login(&fake, wrong.as_ref(), Some("ada")).await.unwrap_err());
    let provider = fake.provider(json!({}));
    errors.push(
        complete_with(provider.as_ref(), &[("code", "forged")])
            .await
            .unwrap_err(),
    );
    fake.upstream().token_down = true;
    errors.push(
        login(&fake, provider.as_ref(), Some("ada"))
            .await
            .unwrap_err(),
    );

    for error in &errors {
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(
                !shown.contains(CLIENT_SECRET) && !shown.contains(wrong_secret),
                "{shown}"
            );
        }
    }
    let shown = format!("{provider:?}");
    assert!(!shown.contains(CLIENT_SECRET), "{shown}");
}
