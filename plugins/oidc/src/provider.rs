//! The OpenID Connect provider: authorization URL, code exchange with PKCE, full ID
//! token validation, optional userinfo, claim mapping, rules, and refresh through the
//! upstream refresh token.

use crate::discovery::{Discovery, Metadata, Upstream};
use crate::settings::{OfflineAccess, OidcSettings, TokenEndpointAuth, UserinfoUse};
use async_trait::async_trait;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalClaims, AuthType, AuthorizationCode, Client, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdToken, IdTokenFields, IdTokenVerifier, LoginHint, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse, SubjectIdentifier, TokenResponse, UserInfoError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use switchboard_plugin_api::{
    BeginRequest, BeginResponse, Callback, Identity, Provider, ProviderError, RedirectLogin,
    RefreshIdentity, RefreshRequest,
};
use switchboard_upstream::{HttpError, UpstreamHttp, error_code};

/// Every claim beyond the standard ones, kept as raw JSON.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OtherClaims(HashMap<String, Value>);

impl AdditionalClaims for OtherClaims {}

type UpstreamIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type UpstreamTokenResponse = StandardTokenResponse<
    IdTokenFields<
        OtherClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;
type TokenError = RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>;
type UpstreamClient = Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    UpstreamTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Signature algorithms accepted on ID tokens: asymmetric only (an HMAC-signed ID
/// token could be minted by anyone holding the client secret).
const ASYMMETRIC_ALGS: &[CoreJwsSigningAlgorithm] = &[
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// The data the provider keeps with the identity for refresh.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ProviderData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

/// A generic OpenID Connect upstream (and the base of the Google and Microsoft presets).
pub struct OidcProvider {
    settings: Arc<OidcSettings>,
    http: UpstreamHttp,
    discovery: Discovery,
}

impl fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcProvider")
            .field("id", &self.settings.provider_id)
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    /// Builds the provider; nothing is fetched until the first login.
    pub fn new(settings: OidcSettings, dev_mode: bool) -> Result<Self, ProviderError> {
        let http = UpstreamHttp::new(settings.http)?;
        let settings = Arc::new(settings);
        let discovery = Discovery::new(settings.clone(), http.clone(), dev_mode);
        Ok(OidcProvider {
            settings,
            http,
            discovery,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    fn client(&self, metadata: &Metadata) -> UpstreamClient {
        let client: UpstreamClient = Client::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(
                self.settings.client_secret.expose().to_string(),
            )),
        );
        client.set_auth_type(match self.settings.token_endpoint_auth {
            TokenEndpointAuth::Basic => AuthType::BasicAuth,
            TokenEndpointAuth::Post => AuthType::RequestBody,
        })
    }

    fn verifier<'a>(&self, metadata: &'a Metadata) -> IdTokenVerifier<'a, CoreJsonWebKey> {
        let discovered: Vec<CoreJwsSigningAlgorithm> = metadata
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| ASYMMETRIC_ALGS.contains(a))
            .cloned()
            .collect();
        let algs = if discovered.is_empty() {
            vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]
        } else {
            discovered
        };
        let skew = chrono::Duration::from_std(self.settings.clock_skew)
            .unwrap_or_else(|_| chrono::Duration::seconds(60));
        IdTokenVerifier::new_public_client(
            ClientId::new(self.settings.client_id.clone()),
            metadata.issuer().clone(),
            metadata.jwks().clone(),
        )
        .require_issuer_match(self.settings.profile.exact_token_issuer())
        .set_allowed_algs(algs)
        // `exp` is compared with this clock: allow the configured skew.
        .set_time_fn(move || chrono::Utc::now() - skew)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > chrono::Utc::now() + skew {
                Err(format!("ID token issued in the future ({iat})"))
            } else {
                Ok(())
            }
        })
    }

    /// Verifies an ID token (signature, iss, aud, azp, exp, iat and, at login, nonce),
    /// refetching the JWKS once if it was signed with an unknown key.
    async fn verify_id_token(
        &self,
        upstream: Arc<Upstream>,
        id_token: &UpstreamIdToken,
        access_token: &AccessToken,
        nonce: Option<&str>,
    ) -> Result<Map<String, Value>, ProviderError> {
        let first = self.verify_with(&upstream, id_token, access_token, nonce);
        let claims = match first {
            Err(VerifyError::UnknownKey) => match self.discovery.refetch_keys(&upstream).await? {
                Some(fresh) => match self.verify_with(&fresh, id_token, access_token, nonce) {
                    Err(VerifyError::UnknownKey) => {
                        return Err(ProviderError::protocol(
                            "ID token signed with a key the upstream does not publish",
                        ));
                    }
                    other => other,
                },
                None => {
                    return Err(ProviderError::protocol(
                        "ID token signed with an unknown key (JWKS refetch throttled)",
                    ));
                }
            },
            other => other,
        }
        .map_err(|e| match e {
            VerifyError::UnknownKey => {
                ProviderError::protocol("ID token signed with an unknown key")
            }
            VerifyError::Invalid(detail) => {
                ProviderError::protocol(format!("ID token rejected: {detail}"))
            }
        })?;
        let issuer = upstream.metadata.issuer().as_str();
        self.settings
            .profile
            .accept_token_issuer(issuer, &claims)
            .map_err(|e| ProviderError::protocol(format!("ID token rejected: {e}")))?;
        Ok(claims)
    }

    fn verify_with(
        &self,
        upstream: &Upstream,
        id_token: &UpstreamIdToken,
        access_token: &AccessToken,
        nonce: Option<&str>,
    ) -> Result<Map<String, Value>, VerifyError> {
        let verifier = self.verifier(&upstream.metadata);
        let verified = match nonce {
            Some(expected) => id_token.claims(&verifier, &Nonce::new(expected.to_string())),
            // At refresh the ID token may repeat the login's nonce or carry none.
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        };
        let claims = verified.map_err(|e| match e {
            openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            ) => VerifyError::UnknownKey,
            other => VerifyError::Invalid(other.to_string()),
        })?;
        // azp: when present it must be us; several audiences need it.
        let audiences = claims.audiences();
        match claims.authorized_party() {
            Some(azp) if azp.as_str() != self.settings.client_id => {
                return Err(VerifyError::Invalid(format!(
                    "azp `{}` is not this client",
                    azp.as_str()
                )));
            }
            None if audiences.len() > 1 => {
                return Err(VerifyError::Invalid("several audiences but no azp".into()));
            }
            _ => {}
        }
        // at_hash, when present, binds the access token to this ID token.
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| VerifyError::Invalid(e.to_string()))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| VerifyError::Invalid(e.to_string()))?;
            let actual = AccessTokenHash::from_token(access_token, alg, key)
                .map_err(|e| VerifyError::Invalid(e.to_string()))?;
            if actual != *expected {
                return Err(VerifyError::Invalid(
                    "at_hash does not match the access token".into(),
                ));
            }
        }
        match serde_json::to_value(claims) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(VerifyError::Invalid("claims do not serialise".into())),
        }
    }

    /// Whether this login reads userinfo: always, never, or (`auto`) when the ID token
    /// lacks a claim a requested scope stands for and the upstream has the endpoint.
    fn wants_userinfo(&self, upstream: &Upstream, claims: &Map<String, Value>) -> bool {
        match self.settings.use_userinfo {
            UserinfoUse::Always => true,
            UserinfoUse::Never => false,
            UserinfoUse::Auto => {
                let mapping = &self.settings.claims;
                let requested = |scope: &str| self.settings.scopes.iter().any(|s| s == scope);
                let wanted = [
                    ("email", &mapping.email),
                    ("profile", &mapping.name),
                    ("profile", &mapping.username),
                    ("groups", &mapping.groups),
                ];
                let missing: Vec<&str> = wanted
                    .iter()
                    .filter(|(scope, path)| requested(scope) && path.lookup(claims).is_none())
                    .map(|(_, path)| path.as_str())
                    .collect();
                let has_endpoint = upstream.metadata.userinfo_endpoint().is_some();
                tracing::debug!(
                    provider = %self.settings.provider_id,
                    ?missing,
                    has_endpoint,
                    "claims the ID token lacks"
                );
                !missing.is_empty() && has_endpoint
            }
        }
    }

    /// Reads userinfo (JSON or signed JWT) and merges it under the ID token's
    /// protocol claims; its `sub` must be the ID token's.
    async fn merge_userinfo(
        &self,
        upstream: &Upstream,
        access_token: &AccessToken,
        mut claims: Map<String, Value>,
    ) -> Result<Map<String, Value>, ProviderError> {
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::protocol("the ID token has no `sub`"))?
            .to_string();
        let client = self.client(&upstream.metadata);
        let request = client
            .user_info(access_token.clone(), Some(SubjectIdentifier::new(sub)))
            .map_err(|_| {
                ProviderError::protocol(
                    "use_userinfo is set but the upstream has no userinfo_endpoint",
                )
            })?;
        let info: openidconnect::UserInfoClaims<OtherClaims, CoreGenderClaim> = request
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                UserInfoError::Request(http) => http.into_provider_error("userinfo"),
                UserInfoError::ClaimsVerification(v) => {
                    ProviderError::protocol(format!("userinfo rejected: {v}"))
                }
                UserInfoError::Response(status, _, msg) => ProviderError::protocol(format!(
                    "userinfo answered HTTP {}: {msg}",
                    status.as_u16()
                )),
                other => ProviderError::protocol(format!("userinfo: {other}")),
            })?;
        let Ok(Value::Object(extra)) = serde_json::to_value(&info) else {
            return Err(ProviderError::protocol("userinfo claims do not serialise"));
        };
        let mut from_userinfo = Vec::new();
        for (name, value) in extra {
            if !matches!(
                name.as_str(),
                "iss" | "aud" | "sub" | "exp" | "iat" | "nonce"
            ) {
                from_userinfo.push(name.clone());
                claims.insert(name, value);
            }
        }
        // Names only: the values are personal data.
        tracing::debug!(
            provider = %self.settings.provider_id,
            ?from_userinfo,
            "claims taken from userinfo over the ID token"
        );
        Ok(claims)
    }

    /// Claims → identity → preset hooks → rules.
    fn identity(
        &self,
        claims: &Map<String, Value>,
        refresh_token: Option<String>,
    ) -> Result<Identity, ProviderError> {
        let identity = self.settings.claims.identity(claims)?;
        let mut identity = self.settings.profile.finish(claims, identity)?;
        self.settings.rules.check(&identity)?;
        identity.auth_time = claims.get("auth_time").and_then(Value::as_i64);
        identity.provider_data = refresh_token.map(|t| {
            json!(ProviderData {
                refresh_token: Some(t)
            })
        });
        Ok(identity)
    }

    fn map_token_error(&self, e: TokenError, refreshing: bool) -> ProviderError {
        match e {
            RequestTokenError::Request(http) => http.into_provider_error("token endpoint"),
            RequestTokenError::ServerResponse(r) => {
                if refreshing && *r.error() == CoreErrorResponseType::InvalidGrant {
                    ProviderError::denied("session ended upstream")
                } else {
                    let code = serde_json::to_value(r.error())
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    ProviderError::protocol(format!(
                        "token endpoint refused the {}: {}",
                        if refreshing { "refresh" } else { "code" },
                        error_code(&code)
                    ))
                }
            }
            RequestTokenError::Parse(e, _) => ProviderError::protocol(format!(
                "token endpoint answer is not a token response: {e}"
            )),
            RequestTokenError::Other(e) => ProviderError::protocol(format!("token endpoint: {e}")),
        }
    }
}

enum VerifyError {
    UnknownKey,
    Invalid(String),
}

impl Provider for OidcProvider {
    fn redirect(&self) -> Option<&dyn RedirectLogin> {
        Some(self)
    }

    fn refresh(&self) -> Option<&dyn RefreshIdentity> {
        (self.settings.offline_access != OfflineAccess::Off).then_some(self as &dyn RefreshIdentity)
    }
}

/// A well-formed S256 challenge: 43 base64url characters.
fn is_s256_challenge(c: &str) -> bool {
    c.len() == 43
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[async_trait]
impl RedirectLogin for OidcProvider {
    async fn begin(&self, request: BeginRequest) -> Result<BeginResponse, ProviderError> {
        if !is_s256_challenge(&request.pkce_challenge) {
            return Err(ProviderError::Misconfigured {
                detail: "the broker's PKCE challenge is not an S256 challenge".into(),
            });
        }
        let redirect = RedirectUrl::new(request.callback_url.clone()).map_err(|e| {
            ProviderError::Misconfigured {
                detail: format!("callback URL: {e}"),
            }
        })?;
        let challenge: PkceCodeChallenge = serde_json::from_value(json!({
            "code_challenge": request.pkce_challenge,
            "code_challenge_method": "S256",
        }))
        .map_err(|e| ProviderError::Misconfigured {
            detail: format!("PKCE challenge: {e}"),
        })?;
        let upstream = self.discovery.upstream().await?;
        let client = self.client(&upstream.metadata);
        let state = request.state.clone();
        let nonce = request.nonce.clone();
        let mut auth = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_redirect_uri(Cow::Owned(redirect))
            .set_pkce_challenge(challenge)
            .add_scopes(self.settings.scopes.iter().cloned().map(Scope::new));
        match &self.settings.offline_access {
            OfflineAccess::Off => {}
            OfflineAccess::Scope => auth = auth.add_scope(Scope::new("offline_access".into())),
            OfflineAccess::Params(params) => {
                for (name, value) in params {
                    auth = auth.add_extra_param(name.clone(), value.clone());
                }
            }
        }
        // The app's demand (a forced re-login, an account choice) joins the configured
        // prompt (e.g. `consent`, which offline access needs).
        let mut prompt: Vec<String> = Vec::new();
        for value in [request.prompt.as_param(), self.settings.prompt.clone()]
            .into_iter()
            .flatten()
        {
            for word in value.split(' ').filter(|w| !w.is_empty()) {
                if !prompt.iter().any(|p| p == word) {
                    prompt.push(word.to_string());
                }
            }
        }
        if !prompt.is_empty() {
            auth = auth.add_extra_param("prompt", prompt.join(" "));
        }
        if let Some(max_age) = request.max_age.filter(|m| *m >= 0) {
            auth = auth.add_extra_param("max_age", max_age.to_string());
        }
        for (name, value) in self.settings.profile.authorization_params() {
            auth = auth.add_extra_param(name, value);
        }
        if let Some(hint) = request
            .login_hint
            .filter(|h| !h.is_empty() && h.len() <= 256)
        {
            auth = auth.set_login_hint(LoginHint::new(hint));
        }
        let (url, _, _) = auth.url();
        Ok(BeginResponse::new(url.to_string(), Value::Null))
    }

    async fn complete(&self, callback: Callback) -> Result<Identity, ProviderError> {
        let params = &callback.params;
        if let Some(error) = params.get("error") {
            return Err(ProviderError::denied(format!(
                "the sign-in provider refused the login ({})",
                error_code(error)
            )));
        }
        let upstream = self.discovery.upstream().await?;
        let issuer = upstream.metadata.issuer().as_str();
        match params.get("iss") {
            Some(iss) if !self.settings.profile.accept_response_issuer(issuer, iss) => {
                return Err(ProviderError::protocol(format!(
                    "authorization response from issuer `{iss}`, expected `{issuer}` (mix-up)"
                )));
            }
            None if upstream
                .metadata
                .additional_metadata()
                .authorization_response_iss_parameter_supported
                == Some(true) =>
            {
                return Err(ProviderError::protocol(
                    "authorization response lacks the `iss` parameter the upstream promises",
                ));
            }
            _ => {}
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty() && c.len() <= 4096)
            .ok_or_else(|| ProviderError::protocol("authorization response has no code"))?;
        let redirect = RedirectUrl::new(callback.callback_url.clone())
            .map_err(|e| ProviderError::protocol(format!("callback URL: {e}")))?;
        let client = self.client(&upstream.metadata);
        let token: UpstreamTokenResponse = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|e| ProviderError::protocol(format!("token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(callback.pkce_verifier.clone()))
            .set_redirect_uri(Cow::Owned(redirect))
            .request_async(&self.http)
            .await
            .map_err(|e| self.map_token_error(e, false))?;
        let id_token = token
            .id_token()
            .ok_or_else(|| ProviderError::protocol("token response has no id_token"))?;
        let mut claims = self
            .verify_id_token(
                upstream.clone(),
                id_token,
                token.access_token(),
                Some(&callback.nonce),
            )
            .await?;
        if self.wants_userinfo(&upstream, &claims) {
            claims = self
                .merge_userinfo(&upstream, token.access_token(), claims)
                .await?;
        }
        let refresh_token = token.refresh_token().map(|t| t.secret().clone());
        let identity = self.identity(&claims, refresh_token)?;
        tracing::debug!(provider = %self.settings.provider_id, groups = identity.groups.len(), "upstream login verified");
        Ok(identity)
    }
}

#[async_trait]
impl RefreshIdentity for OidcProvider {
    async fn refresh(&self, request: RefreshRequest) -> Result<Identity, ProviderError> {
        let previous = request.identity;
        let data: ProviderData = previous
            .provider_data
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let Some(refresh_token) = data.refresh_token else {
            return Err(ProviderError::denied(
                "session ended upstream (no upstream refresh token was granted)",
            ));
        };
        let upstream = self.discovery.upstream().await?;
        let client = self.client(&upstream.metadata);
        let token: UpstreamTokenResponse = client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.clone()))
            .map_err(|e| ProviderError::protocol(format!("token endpoint: {e}")))?
            .request_async(&self.http)
            .await
            .map_err(|e| self.map_token_error(e, true))?;
        let mut claims = match token.id_token() {
            Some(id_token) => {
                self.verify_id_token(upstream.clone(), id_token, token.access_token(), None)
                    .await?
            }
            None => match &previous.claims {
                Value::Object(map) => {
                    let mut map = map.clone();
                    map.insert("sub".into(), Value::String(upstream_sub(&previous)?));
                    map
                }
                _ => {
                    return Err(ProviderError::protocol(
                        "stored identity has no claims to refresh",
                    ));
                }
            },
        };
        if self.wants_userinfo(&upstream, &claims) {
            claims = self
                .merge_userinfo(&upstream, token.access_token(), claims)
                .await?;
        }
        let rotated = token
            .refresh_token()
            .map(|t| t.secret().clone())
            .unwrap_or(refresh_token);
        let identity = self.identity(&claims, Some(rotated))?;
        if identity.subject != previous.subject {
            return Err(ProviderError::protocol("refresh returned another subject"));
        }
        Ok(identity)
    }
}

/// The upstream `sub` of a stored identity: its `sub` claim when kept, else the subject.
fn upstream_sub(identity: &Identity) -> Result<String, ProviderError> {
    Ok(identity
        .claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or(&identity.subject)
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_s256_shaped_challenges_are_sent() {
        assert!(is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!is_s256_challenge("short"));
        assert!(!is_s256_challenge(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"
        ));
    }
}
