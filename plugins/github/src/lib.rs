//! GitHub (and GitHub Enterprise Server) upstream provider for Switchboard: the OAuth
//! web flow with the `oauth2` crate (PKCE with the broker's challenge), then the REST
//! API: `/user`, `/user/emails` (the primary address, verified or not), `/user/orgs`
//! and `/user/teams` as groups `org` and `org:team`.
//!
//! The subject is GitHub's numeric user id, never the (renamable) login. The access
//! token is kept in `provider_data`: OAuth app tokens do not expire, so each broker
//! refresh re-reads the user, orgs and teams with it, and a person removed from the
//! allowed organization loses access. A revoked token ends the session.

pub mod api;

use api::{ApiError, PER_PAGE};
use async_trait::async_trait;
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_plugin_api::{
    BeginRequest, BeginResponse, Callback, Identity, Password, Provider, ProviderContext,
    ProviderError, ProviderFactory, RedirectLogin, RefreshIdentity, RefreshRequest, secret,
};
use switchboard_upstream::{HttpError, HttpLimits, UpstreamHttp, check_upstream_url, error_code};
use url::Url;

/// The `type` of this provider in config.
pub const PROVIDER_TYPE: &str = "github";

fn default_scopes() -> Vec<String> {
    vec!["read:user".into(), "user:email".into(), "read:org".into()]
}

/// The config section of a GitHub provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    /// OAuth app client id.
    pub client_id: String,
    /// Client secret, inline.
    #[serde(default)]
    pub client_secret: Option<Password>,
    /// File holding the client secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// GitHub Enterprise Server base URL (web at it, API at `{base}/api/v3`); default
    /// github.com.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Scopes (default `read:user user:email read:org`).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The person must belong to one of these organizations.
    #[serde(default)]
    pub allowed_orgs: Vec<String>,
    /// The person must belong to one of these teams (`org:team-slug`).
    #[serde(default)]
    pub allowed_teams: Vec<String>,
    /// Let logins whose primary email is unverified through (it stays unverified).
    #[serde(default)]
    pub insecure_skip_email_verified: bool,
}

/// Where GitHub lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `{web}/login/oauth/authorize`.
    pub authorize: Url,
    /// `{web}/login/oauth/access_token`.
    pub token: Url,
    /// REST API root (ends with `/`).
    pub api: Url,
}

impl Endpoints {
    /// github.com, or a GitHub Enterprise Server at `base_url`.
    pub fn new(base_url: Option<&str>, dev_mode: bool) -> Result<Self, String> {
        let (web, api) = match base_url {
            None => (
                "https://github.com".to_string(),
                "https://api.github.com/".to_string(),
            ),
            Some(raw) => {
                let url = check_upstream_url("base_url", raw, dev_mode)?;
                let base = url.as_str().trim_end_matches('/').to_string();
                (base.clone(), format!("{base}/api/v3/"))
            }
        };
        let parse = |s: String| Url::parse(&s).map_err(|e| format!("{s}: {e}"));
        Ok(Endpoints {
            authorize: parse(format!("{web}/login/oauth/authorize"))?,
            token: parse(format!("{web}/login/oauth/access_token"))?,
            api: parse(api)?,
        })
    }

    fn api_url(&self, path: &str) -> Result<Url, ProviderError> {
        self.api
            .join(path)
            .map_err(|e| ProviderError::Misconfigured {
                detail: format!("API URL {path}: {e}"),
            })
    }
}

/// Validated settings.
#[derive(Clone)]
pub struct GitHubSettings {
    provider_id: String,
    client_id: String,
    client_secret: Password,
    endpoints: Endpoints,
    scopes: Vec<String>,
    allowed_orgs: Vec<String>,
    allowed_teams: Vec<(String, String)>,
    insecure_skip_email_verified: bool,
}

impl fmt::Debug for GitHubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubSettings")
            .field("provider_id", &self.provider_id)
            .field("client_id", &self.client_id)
            .field("endpoints", &self.endpoints)
            .field("allowed_orgs", &self.allowed_orgs)
            .finish_non_exhaustive()
    }
}

fn parse_team(entry: &str) -> Result<(String, String), String> {
    match entry.trim().split_once(':') {
        Some((org, team)) if !org.is_empty() && !team.is_empty() && !team.contains(':') => {
            Ok((org.to_string(), team.to_string()))
        }
        _ => Err(format!("allowed_teams: `{entry}` is not `org:team-slug`")),
    }
}

impl GitHubConfig {
    /// Validates the section; errors name the key.
    pub fn into_settings(self, context: &ProviderContext) -> Result<GitHubSettings, ProviderError> {
        let bad = |detail: String| ProviderError::Misconfigured {
            detail: format!("providers.{}.{detail}", context.id),
        };
        let client_secret = secret::resolve(
            "client_secret",
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
            self.client_secret_env.as_deref(),
        )
        .map_err(bad)?;
        if self.client_id.trim().is_empty() {
            return Err(bad("client_id is empty".into()));
        }
        let endpoints = Endpoints::new(self.base_url.as_deref(), context.dev_mode).map_err(bad)?;
        for scope in &self.scopes {
            if scope.is_empty() || scope.contains(char::is_whitespace) {
                return Err(bad(format!("scopes: `{scope}` is not a single scope")));
            }
        }
        if self
            .allowed_orgs
            .iter()
            .any(|o| o.trim().is_empty() || o.contains(':'))
        {
            return Err(bad("allowed_orgs: entries are organization logins".into()));
        }
        let allowed_teams = self
            .allowed_teams
            .iter()
            .map(|t| parse_team(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        Ok(GitHubSettings {
            provider_id: context.id.clone(),
            client_id: self.client_id,
            client_secret,
            endpoints,
            scopes: self.scopes,
            allowed_orgs: self
                .allowed_orgs
                .iter()
                .map(|o| o.trim().to_string())
                .collect(),
            allowed_teams,
            insecure_skip_email_verified: self.insecure_skip_email_verified,
        })
    }
}

#[derive(Debug, Deserialize)]
struct User {
    id: u64,
    login: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
}

/// One entry of `/user/emails`.
#[derive(Debug, Clone, Deserialize)]
pub struct EmailEntry {
    /// The address.
    pub email: String,
    /// Whether it is the primary address.
    #[serde(default)]
    pub primary: bool,
    /// Whether GitHub verified it.
    #[serde(default)]
    pub verified: bool,
}

#[derive(Debug, Deserialize)]
struct Org {
    login: String,
}

#[derive(Debug, Deserialize)]
struct Team {
    slug: String,
    organization: Org,
}

/// The primary address and whether it is verified.
pub fn primary_email(entries: &[EmailEntry]) -> Option<(String, bool)> {
    entries
        .iter()
        .find(|e| e.primary)
        .map(|e| (e.email.clone(), e.verified))
}

/// Groups from orgs and teams: `org` and `org:team-slug`, deduplicated, in order.
pub fn group_names(orgs: &[String], teams: &[(String, String)]) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    let names = orgs
        .iter()
        .cloned()
        .chain(teams.iter().map(|(org, team)| format!("{org}:{team}")));
    for name in names {
        if !groups.iter().any(|g| g.eq_ignore_ascii_case(&name)) {
            groups.push(name);
        }
    }
    groups
}

impl GitHubSettings {
    /// Checks org and team membership: each non-empty list must be satisfied.
    pub fn check_membership(&self, groups: &[String]) -> Result<(), ProviderError> {
        let member = |name: &str| groups.iter().any(|g| g.eq_ignore_ascii_case(name));
        if !self.allowed_orgs.is_empty() && !self.allowed_orgs.iter().any(|o| member(o)) {
            return Err(ProviderError::denied(format!(
                "membership in one of these GitHub organizations is required: {}",
                self.allowed_orgs.join(", ")
            )));
        }
        if !self.allowed_teams.is_empty()
            && !self
                .allowed_teams
                .iter()
                .any(|(o, t)| member(&format!("{o}:{t}")))
        {
            let names: Vec<String> = self
                .allowed_teams
                .iter()
                .map(|(o, t)| format!("{o}:{t}"))
                .collect();
            return Err(ProviderError::denied(format!(
                "membership in one of these GitHub teams is required: {}",
                names.join(", ")
            )));
        }
        Ok(())
    }
}

/// What the provider keeps for refresh.
#[derive(Debug, Serialize, Deserialize)]
struct ProviderData {
    access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

type GhClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The GitHub provider.
pub struct GitHubProvider {
    settings: Arc<GitHubSettings>,
    http: UpstreamHttp,
}

impl fmt::Debug for GitHubProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubProvider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn api_error(e: ApiError) -> ProviderError {
    match e {
        ApiError::Unavailable(_) => ProviderError::unavailable(e.to_string()),
        ApiError::TooManyPages(_) => ProviderError::denied(
            "too many GitHub organizations or teams to read; ask an administrator",
        ),
        other => ProviderError::protocol(other.to_string()),
    }
}

impl GitHubProvider {
    /// Builds the provider.
    pub fn new(settings: GitHubSettings) -> Result<Self, ProviderError> {
        // GitHub's token endpoint answers errors with 200 and an `error` member.
        let http = UpstreamHttp::new(HttpLimits::default())?.error_member_is_failure();
        Ok(GitHubProvider {
            settings: Arc::new(settings),
            http,
        })
    }

    fn client(&self) -> GhClient {
        BasicClient::new(ClientId::new(self.settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                self.settings.client_secret.expose().to_string(),
            ))
            .set_auth_uri(AuthUrl::from_url(self.settings.endpoints.authorize.clone()))
            .set_token_uri(TokenUrl::from_url(self.settings.endpoints.token.clone()))
            .set_auth_type(AuthType::RequestBody)
    }

    fn token_error(
        &self,
        e: RequestTokenError<HttpError, oauth2::basic::BasicErrorResponse>,
        refreshing: bool,
    ) -> ProviderError {
        match e {
            RequestTokenError::Request(http) => api_error(http.into()),
            RequestTokenError::ServerResponse(r) => {
                if refreshing && *r.error() == BasicErrorResponseType::InvalidGrant {
                    return ProviderError::denied("session ended upstream");
                }
                let code = r.error().to_string();
                ProviderError::protocol(format!(
                    "GitHub token endpoint refused: {}",
                    error_code(&code)
                ))
            }
            RequestTokenError::Parse(e, _) => {
                ProviderError::protocol(format!("GitHub token response: {e}"))
            }
            RequestTokenError::Other(e) => {
                ProviderError::protocol(format!("GitHub token endpoint: {e}"))
            }
        }
    }

    /// Reads the person with `token` and builds the identity (filters applied).
    async fn read_identity(&self, token: &str) -> Result<Identity, ApiError> {
        let endpoints = &self.settings.endpoints;
        let url = |path: &str| {
            endpoints
                .api_url(path)
                .map_err(|e| ApiError::Protocol(e.to_string()))
        };
        let (user, _): (User, _) = api::get(&self.http, &url("user")?, token, "user").await?;
        let emails: Vec<EmailEntry> = match api::get_all(
            &self.http,
            &endpoints.api,
            &url(&format!("user/emails?per_page={PER_PAGE}"))?,
            token,
            "emails",
        )
        .await
        {
            Ok(list) => list,
            // Without the email scope (or for a GitHub App without the permission)
            // there is no email, which is not a false claim.
            Err(ApiError::Forbidden(..)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let orgs: Vec<Org> = api::get_all(
            &self.http,
            &endpoints.api,
            &url(&format!("user/orgs?per_page={PER_PAGE}"))?,
            token,
            "organizations",
        )
        .await?;
        let teams: Vec<Team> = match api::get_all(
            &self.http,
            &endpoints.api,
            &url(&format!("user/teams?per_page={PER_PAGE}"))?,
            token,
            "teams",
        )
        .await
        {
            Ok(list) => list,
            Err(ApiError::Forbidden(..)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let org_names: Vec<String> = orgs.into_iter().map(|o| o.login).collect();
        let team_names: Vec<(String, String)> = teams
            .into_iter()
            .map(|t| (t.organization.login, t.slug))
            .collect();
        let mut identity = Identity::new(user.id.to_string()).with_username(&user.login);
        identity.name = user.name.clone().filter(|n| !n.is_empty());
        identity.picture = user.avatar_url.clone();
        if let Some((email, verified)) = primary_email(&emails) {
            identity = identity.with_email(email, verified);
        }
        identity.groups = group_names(&org_names, &team_names);
        identity.claims = json!({
            "id": user.id,
            "login": user.login,
            "name": user.name,
            "html_url": user.html_url,
        });
        Ok(identity)
    }

    fn check(&self, identity: &Identity) -> Result<(), ProviderError> {
        if identity.email.is_some()
            && !identity.email_verified
            && !self.settings.insecure_skip_email_verified
        {
            return Err(ProviderError::denied(
                "your primary GitHub email address is not verified",
            ));
        }
        self.settings.check_membership(&identity.groups)
    }

    async fn refresh_access_token(
        &self,
        refresh_token: &str,
    ) -> Result<BasicTokenResponse, ProviderError> {
        self.client()
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| self.token_error(e, true))
    }
}

impl Provider for GitHubProvider {
    fn redirect(&self) -> Option<&dyn RedirectLogin> {
        Some(self)
    }

    fn refresh(&self) -> Option<&dyn RefreshIdentity> {
        Some(self)
    }
}

#[async_trait]
impl RedirectLogin for GitHubProvider {
    async fn begin(&self, request: BeginRequest) -> Result<BeginResponse, ProviderError> {
        let misconfigured = |detail: String| ProviderError::Misconfigured { detail };
        let redirect = RedirectUrl::new(request.callback_url.clone())
            .map_err(|e| misconfigured(format!("callback URL: {e}")))?;
        let challenge: PkceCodeChallenge = serde_json::from_value(json!({
            "code_challenge": request.pkce_challenge,
            "code_challenge_method": "S256",
        }))
        .map_err(|e| misconfigured(format!("PKCE challenge: {e}")))?;
        if request.pkce_challenge.len() != 43 {
            return Err(misconfigured(
                "the broker's PKCE challenge is not an S256 challenge".into(),
            ));
        }
        let state = request.state.clone();
        let client = self.client();
        let mut auth = client
            .authorize_url(move || CsrfToken::new(state))
            .set_redirect_uri(Cow::Owned(redirect))
            .set_pkce_challenge(challenge)
            .add_scopes(self.settings.scopes.iter().cloned().map(Scope::new));
        if let Some(hint) = request
            .login_hint
            .filter(|h| !h.is_empty() && h.len() <= 100)
        {
            auth = auth.add_extra_param("login", hint);
        }
        let (url, _) = auth.url();
        Ok(BeginResponse::new(url.to_string(), Value::Null))
    }

    async fn complete(&self, callback: Callback) -> Result<Identity, ProviderError> {
        let params = &callback.params;
        if let Some(error) = params.get("error") {
            return Err(ProviderError::denied(format!(
                "GitHub refused the login ({})",
                error_code(error)
            )));
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty() && c.len() <= 1024)
            .ok_or_else(|| ProviderError::protocol("GitHub's answer has no code"))?;
        let redirect = RedirectUrl::new(callback.callback_url.clone())
            .map_err(|e| ProviderError::protocol(format!("callback URL: {e}")))?;
        let token = self
            .client()
            .exchange_code(AuthorizationCode::new(code.clone()))
            .set_pkce_verifier(PkceCodeVerifier::new(callback.pkce_verifier.clone()))
            .set_redirect_uri(Cow::Owned(redirect))
            .request_async(&self.http)
            .await
            .map_err(|e| self.token_error(e, false))?;
        let access_token = token.access_token().secret().clone();
        let mut identity = self.read_identity(&access_token).await.map_err(api_error)?;
        self.check(&identity)?;
        identity.provider_data = Some(json!(ProviderData {
            access_token,
            refresh_token: token.refresh_token().map(|t| t.secret().clone()),
        }));
        tracing::debug!(provider = %self.settings.provider_id, groups = identity.groups.len(), "GitHub login verified");
        Ok(identity)
    }
}

#[async_trait]
impl RefreshIdentity for GitHubProvider {
    async fn refresh(&self, request: RefreshRequest) -> Result<Identity, ProviderError> {
        let previous = request.identity;
        let Some(mut data) = previous
            .provider_data
            .clone()
            .and_then(|v| serde_json::from_value::<ProviderData>(v).ok())
        else {
            return Err(ProviderError::denied(
                "session ended upstream (no GitHub token kept)",
            ));
        };
        let identity = match self.read_identity(&data.access_token).await {
            Ok(identity) => identity,
            // GitHub App user tokens expire; OAuth app tokens only get revoked.
            Err(ApiError::Unauthorized) => {
                let Some(refresh_token) = data.refresh_token.clone() else {
                    return Err(ProviderError::denied("session ended upstream"));
                };
                let token = self.refresh_access_token(&refresh_token).await?;
                data.access_token = token.access_token().secret().clone();
                if let Some(rotated) = token.refresh_token() {
                    data.refresh_token = Some(rotated.secret().clone());
                }
                self.read_identity(&data.access_token)
                    .await
                    .map_err(|e| match e {
                        ApiError::Unauthorized => ProviderError::denied("session ended upstream"),
                        other => api_error(other),
                    })?
            }
            Err(e) => return Err(api_error(e)),
        };
        if identity.subject != previous.subject {
            return Err(ProviderError::protocol(
                "the GitHub token now belongs to another user",
            ));
        }
        self.check(&identity)?;
        let mut identity = identity;
        identity.provider_data = Some(json!(data));
        Ok(identity)
    }
}

/// Builds GitHub providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct GitHubFactory;

impl ProviderFactory for GitHubFactory {
    fn provider_type(&self) -> &str {
        PROVIDER_TYPE
    }

    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let config: GitHubConfig = context.parse_config()?;
        let settings = config.into_settings(&context)?;
        Ok(Arc::new(GitHubProvider::new(settings)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(config: Value) -> Result<GitHubSettings, ProviderError> {
        let ctx = ProviderContext::new("gh", config, false);
        ctx.parse_config::<GitHubConfig>()?.into_settings(&ctx)
    }

    fn minimal() -> Value {
        json!({"client_id": "Iv1.abc", "client_secret": "s"})
    }

    #[test]
    fn github_com_and_enterprise_endpoints() {
        let s = settings(minimal()).unwrap();
        assert_eq!(
            s.endpoints.authorize.as_str(),
            "https://github.com/login/oauth/authorize"
        );
        assert_eq!(
            s.endpoints.token.as_str(),
            "https://github.com/login/oauth/access_token"
        );
        assert_eq!(s.endpoints.api.as_str(), "https://api.github.com/");
        let mut c = minimal();
        c["base_url"] = json!("https://ghe.example.com/");
        let s = settings(c).unwrap();
        assert_eq!(
            s.endpoints.authorize.as_str(),
            "https://ghe.example.com/login/oauth/authorize"
        );
        assert_eq!(s.endpoints.api.as_str(), "https://ghe.example.com/api/v3/");
        assert_eq!(
            s.endpoints
                .api_url("user/orgs?per_page=100")
                .unwrap()
                .as_str(),
            "https://ghe.example.com/api/v3/user/orgs?per_page=100"
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        for (key, value) in [
            ("base_url", json!("http://ghe.example.com")),
            ("allowed_teams", json!(["justateam"])),
            ("allowed_orgs", json!(["acme:core"])),
            ("scopes", json!(["read:user user:email"])),
            ("base_urll", json!("x")),
        ] {
            let mut c = minimal();
            c[key] = value;
            assert!(
                matches!(settings(c), Err(ProviderError::Misconfigured { ref detail }) if detail.contains(key)),
                "{key}"
            );
        }
        let mut c = minimal();
        c.as_object_mut().unwrap().remove("client_secret");
        assert!(settings(c).is_err());
    }

    #[test]
    fn groups_are_orgs_and_org_colon_team() {
        let groups = group_names(
            &["acme".into(), "widgets".into()],
            &[
                ("acme".into(), "core".into()),
                ("acme".into(), "ops".into()),
            ],
        );
        assert_eq!(groups, vec!["acme", "widgets", "acme:core", "acme:ops"]);
        assert_eq!(group_names(&["A".into(), "a".into()], &[]), vec!["A"]);
    }

    #[test]
    fn membership_needs_every_configured_list() {
        let mut c = minimal();
        c["allowed_orgs"] = json!(["Acme"]);
        c["allowed_teams"] = json!(["acme:core"]);
        let s = settings(c).unwrap();
        s.check_membership(&["acme".into(), "acme:core".into()])
            .unwrap();
        let err = s.check_membership(&["widgets".into()]).unwrap_err();
        assert!(
            matches!(&err, ProviderError::Denied { reason } if reason.contains("organizations") && reason.contains("Acme"))
        );
        let err = s
            .check_membership(&["acme".into(), "acme:ops".into()])
            .unwrap_err();
        assert!(matches!(&err, ProviderError::Denied { reason } if reason.contains("acme:core")));
        settings(minimal()).unwrap().check_membership(&[]).unwrap();
    }

    #[test]
    fn the_primary_email_is_chosen_with_its_verification() {
        let entries = vec![
            EmailEntry {
                email: "other@x.io".into(),
                primary: false,
                verified: true,
            },
            EmailEntry {
                email: "main@x.io".into(),
                primary: true,
                verified: false,
            },
        ];
        assert_eq!(primary_email(&entries), Some(("main@x.io".into(), false)));
        assert_eq!(primary_email(&[]), None);
    }

    #[test]
    fn settings_never_print_the_secret() {
        let shown = format!("{:?}", settings(minimal()).unwrap());
        assert!(!shown.contains("\"s\""), "{shown}");
    }
}

#[cfg(feature = "cdylib")]
switchboard_plugin_api::export_plugin! {
    name: "github",
    factory: GitHubFactory,
    capabilities: [redirect, refresh],
}
