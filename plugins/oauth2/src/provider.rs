//! The provider: the authorization-code flow (with the broker's state and PKCE), the
//! token exchange, the user API read, and refresh.

use crate::config::{OAuth2Settings, TokenAuth};
use crate::http::{ApiError, UpstreamHttp};
use async_trait::async_trait;
use oauth2::basic::{BasicClient, BasicErrorResponse, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::fmt;
use switchboard_plugin_api::{
    BeginRequest, BeginResponse, Callback, Identity, Password, Provider, ProviderError,
    RedirectLogin, RefreshIdentity, RefreshRequest,
};

/// Longest authorization code accepted from the callback.
const MAX_CODE: usize = 2048;

/// What the provider keeps in `provider_data` (the broker stores it encrypted): the
/// refresh token when the upstream issued one, otherwise the access token.
///
/// A refresh token is the better thing to keep: each broker refresh trades it for a
/// fresh access token, so a person whose grant was revoked upstream is seen at once,
/// and no long-lived bearer credential for the user API sits in the store. Without
/// one, the access token is kept so a refresh can still re-read the user API; once
/// it expires upstream the refresh is denied and the person logs in again.
#[derive(Default, Serialize, Deserialize)]
struct ProviderData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<Password>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<Password>,
}

impl ProviderData {
    /// What to keep from a token response.
    fn from_token(token: &BasicTokenResponse) -> Self {
        match token.refresh_token() {
            Some(refresh) => ProviderData {
                refresh_token: Some(Password::new(refresh.secret().as_str())),
                access_token: None,
            },
            None => ProviderData {
                refresh_token: None,
                access_token: Some(Password::new(token.access_token().secret().as_str())),
            },
        }
    }

    fn to_value(&self) -> Value {
        json!(self)
    }
}

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Which grant a token request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    Code,
    Refresh,
}

/// A configurable plain OAuth 2.0 provider.
pub struct OAuth2Provider {
    settings: OAuth2Settings,
    client: Client,
    http: UpstreamHttp,
}

impl fmt::Debug for OAuth2Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2Provider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// An upstream error code, if it looks like one; upstream text never goes further.
/// (The built-in providers share this as `switchboard_upstream::error_code`; this
/// example plugin keeps its own copy on purpose, see [`crate::http`].)
fn safe_code(raw: &str) -> &str {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok { raw } else { "unknown_error" }
}

fn api_error(e: ApiError) -> ProviderError {
    match e {
        ApiError::Unavailable(_) => ProviderError::unavailable(e.to_string()),
        other => ProviderError::protocol(other.to_string()),
    }
}

impl OAuth2Provider {
    /// Builds the provider.
    pub fn new(settings: OAuth2Settings) -> Result<Self, ProviderError> {
        let http = UpstreamHttp::new().map_err(|detail| ProviderError::Misconfigured { detail })?;
        let auth_type = match settings.token_auth {
            TokenAuth::ClientSecretPost => AuthType::RequestBody,
            TokenAuth::ClientSecretBasic => AuthType::BasicAuth,
        };
        let client = BasicClient::new(ClientId::new(settings.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                settings.client_secret.expose().to_string(),
            ))
            .set_auth_uri(AuthUrl::from_url(settings.authorize_url.clone()))
            .set_token_uri(TokenUrl::from_url(settings.token_url.clone()))
            .set_auth_type(auth_type);
        Ok(OAuth2Provider {
            settings,
            client,
            http,
        })
    }

    fn provider_id(&self) -> &str {
        &self.settings.provider_id
    }

    fn token_error(
        &self,
        e: RequestTokenError<ApiError, BasicErrorResponse>,
        grant: Grant,
    ) -> ProviderError {
        match e {
            RequestTokenError::Request(api) => api_error(api),
            RequestTokenError::ServerResponse(r) => {
                let code = r.error().to_string();
                let code = safe_code(&code);
                tracing::info!(provider = %self.provider_id(), ?grant, error = code, "the token endpoint refused the grant");
                if grant == Grant::Refresh && *r.error() == BasicErrorResponseType::InvalidGrant {
                    return ProviderError::denied("session ended upstream");
                }
                ProviderError::protocol(format!("the token endpoint refused the grant: {code}"))
            }
            // The body may hold tokens: only the path of the bad member is told.
            RequestTokenError::Parse(e, _) => ProviderError::protocol(format!(
                "the token response does not parse (at `{}`)",
                e.path()
            )),
            RequestTokenError::Other(e) => ProviderError::protocol(format!("token endpoint: {e}")),
        }
    }

    /// Reads the user API with `access_token` and maps it to an identity.
    async fn read_identity(&self, access_token: &str) -> Result<Identity, ApiError> {
        let user = self
            .http
            .user(&self.settings.userinfo_url, access_token)
            .await?;
        self.settings
            .claims
            .identity(user)
            .map_err(|e| ApiError::Protocol(e.to_string()))
    }

    /// At refresh, a refused access token means the person's grant is gone.
    async fn reread_identity(&self, access_token: &str) -> Result<Identity, ProviderError> {
        self.read_identity(access_token)
            .await
            .map_err(|e| match e {
                ApiError::Refused(status) => {
                    tracing::info!(provider = %self.provider_id(), status, "the user API refused the token at refresh");
                    ProviderError::denied("session ended upstream")
                }
                other => api_error(other),
            })
    }
}

impl Provider for OAuth2Provider {
    fn redirect(&self) -> Option<&dyn RedirectLogin> {
        Some(self)
    }

    fn refresh(&self) -> Option<&dyn RefreshIdentity> {
        Some(self)
    }
}

#[async_trait]
impl RedirectLogin for OAuth2Provider {
    async fn begin(&self, request: BeginRequest) -> Result<BeginResponse, ProviderError> {
        let misconfigured = |detail: String| ProviderError::Misconfigured { detail };
        let redirect = RedirectUrl::new(request.callback_url.clone())
            .map_err(|e| misconfigured(format!("callback URL: {e}")))?;
        let state = request.state.clone();
        let mut auth = self
            .client
            .authorize_url(move || CsrfToken::new(state))
            .set_redirect_uri(Cow::Owned(redirect))
            .add_scopes(self.settings.scopes.iter().cloned().map(Scope::new));
        if self.settings.pkce {
            if request.pkce_challenge.len() != 43 {
                return Err(misconfigured(
                    "the broker's PKCE challenge is not an S256 challenge".into(),
                ));
            }
            // `oauth2` builds challenges from verifiers only; this one is the broker's.
            let challenge: PkceCodeChallenge = serde_json::from_value(json!({
                "code_challenge": request.pkce_challenge,
                "code_challenge_method": "S256",
            }))
            .map_err(|e| misconfigured(format!("PKCE challenge: {e}")))?;
            auth = auth.set_pkce_challenge(challenge);
        }
        let (url, _) = auth.url();
        // The broker keeps state and PKCE: nothing of the provider's own to carry.
        Ok(BeginResponse::new(url.to_string(), Value::Null))
    }

    async fn complete(&self, callback: Callback) -> Result<Identity, ProviderError> {
        let params = &callback.params;
        if let Some(error) = params.get("error") {
            let code = safe_code(error);
            tracing::info!(provider = %self.provider_id(), error = code, "the upstream refused the authorization");
            return Err(match code {
                "access_denied" => {
                    ProviderError::denied("the login was cancelled or refused upstream")
                }
                "temporarily_unavailable" | "server_error" => ProviderError::unavailable(format!(
                    "the authorization endpoint answered {code}"
                )),
                _ => ProviderError::protocol(format!("the authorization endpoint answered {code}")),
            });
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty() && c.len() <= MAX_CODE)
            .ok_or_else(|| ProviderError::protocol("the callback has no authorization code"))?;
        let redirect = RedirectUrl::new(callback.callback_url.clone())
            .map_err(|e| ProviderError::protocol(format!("callback URL: {e}")))?;
        let mut exchange = self
            .client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .set_redirect_uri(Cow::Owned(redirect));
        if self.settings.pkce {
            exchange =
                exchange.set_pkce_verifier(PkceCodeVerifier::new(callback.pkce_verifier.clone()));
        }
        let token = exchange
            .request_async(&self.http)
            .await
            .map_err(|e| self.token_error(e, Grant::Code))?;
        let mut identity = self
            .read_identity(token.access_token().secret())
            .await
            .map_err(api_error)?;
        let data = ProviderData::from_token(&token);
        tracing::info!(
            provider = %self.provider_id(),
            subject = %identity.subject,
            groups = identity.groups.len(),
            refresh_token = data.refresh_token.is_some(),
            "login verified"
        );
        identity.provider_data = Some(data.to_value());
        Ok(identity)
    }
}

#[async_trait]
impl RefreshIdentity for OAuth2Provider {
    async fn refresh(&self, request: RefreshRequest) -> Result<Identity, ProviderError> {
        let previous = request.identity;
        let data = previous
            .provider_data
            .clone()
            .and_then(|v| serde_json::from_value::<ProviderData>(v).ok())
            .unwrap_or_default();
        let (mut identity, kept) = match data {
            ProviderData {
                refresh_token: Some(refresh_token),
                ..
            } => {
                let token = self
                    .client
                    .exchange_refresh_token(&RefreshToken::new(refresh_token.expose().to_string()))
                    .request_async(&self.http)
                    .await
                    .map_err(|e| self.token_error(e, Grant::Refresh))?;
                let identity = self.reread_identity(token.access_token().secret()).await?;
                // Keep the rotated refresh token if the upstream rotates, else the old.
                let refresh_token = token
                    .refresh_token()
                    .map(|t| Password::new(t.secret().as_str()))
                    .unwrap_or(refresh_token);
                let kept = ProviderData {
                    refresh_token: Some(refresh_token),
                    access_token: None,
                };
                (identity, kept)
            }
            ProviderData {
                access_token: Some(access_token),
                ..
            } => {
                let identity = self.reread_identity(access_token.expose()).await?;
                let kept = ProviderData {
                    refresh_token: None,
                    access_token: Some(access_token),
                };
                (identity, kept)
            }
            _ => {
                return Err(ProviderError::denied(
                    "session ended upstream (no upstream token kept)",
                ));
            }
        };
        if identity.subject != previous.subject {
            return Err(ProviderError::protocol(
                "the upstream token now belongs to another user",
            ));
        }
        tracing::debug!(provider = %self.provider_id(), subject = %identity.subject, groups = identity.groups.len(), "identity re-read");
        identity.provider_data = Some(kept.to_value());
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_error_codes_pass_only_when_they_look_like_codes() {
        assert_eq!(safe_code("access_denied"), "access_denied");
        assert_eq!(safe_code("<script>"), "unknown_error");
        assert_eq!(safe_code(""), "unknown_error");
        assert_eq!(safe_code(&"a".repeat(65)), "unknown_error");
    }

    #[test]
    fn provider_data_keeps_one_token_and_reads_back() {
        let kept = ProviderData {
            refresh_token: Some(Password::new("rt-1")),
            access_token: None,
        };
        assert_eq!(kept.to_value(), json!({"refresh_token": "rt-1"}));
        let back: ProviderData =
            serde_json::from_value(json!({"access_token": "at-1", "x": 1})).unwrap();
        assert!(back.refresh_token.is_none());
        assert_eq!(back.access_token.unwrap().expose(), "at-1");
    }
}
