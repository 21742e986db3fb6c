//! A validated authorization request: what an app asked for at `/authorize`, parsed
//! once at the edge (see `oidc::authorize`), trusted from here on.

use super::error::{AuthorizationReply, OAuthError};
use crate::config::Config;
use crate::store::UnixTime;
use serde::{Deserialize, Serialize};

/// What `prompt` asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub select_account: bool,
}

/// A validated authorization request. Only this type reaches the login flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// `sub` of a valid `id_token_hint`.
    pub hinted_subject: Option<String>,
    pub provider_hint: Option<String>,
    /// The one `resource` (RFC 8707) asked for, already checked against the client.
    /// Rows stored before it existed read as none.
    #[serde(default)]
    pub resource: Option<String>,
    /// `acr_values` named this issuer's MFA level (`urn:switchboard:acr:mfa`): the
    /// sign-in needs a second factor. Other values are voluntary and ignored.
    #[serde(default)]
    pub acr_mfa: bool,
    /// `ui_locales` as asked (space-separated BCP 47 tags): the language of every
    /// page of this login. Rows stored before it existed read as none.
    #[serde(default)]
    pub ui_locales: Option<String>,
}

impl AuthorizationRequest {
    pub fn reply(&self, config: &Config) -> Result<AuthorizationReply, OAuthError> {
        let redirect_uri = url::Url::parse(&self.redirect_uri)
            .map_err(|_| OAuthError::invalid_request("stored redirect_uri is invalid"))?;
        Ok(AuthorizationReply {
            redirect_uri,
            state: self.state.clone(),
            issuer: config.issuer.clone(),
        })
    }

    /// Whether this sign-in needs a second factor: the app asked for it (`acr_values`)
    /// or the client always does (`require_mfa`).
    pub fn needs_mfa(&self, config: &Config) -> bool {
        self.acr_mfa
            || config
                .clients
                .get(&self.client_id)
                .is_some_and(|c| c.require_mfa)
    }

    /// True when a session's authentication is too old for this request.
    pub fn needs_fresh_login(&self, auth_time: UnixTime, now: UnixTime) -> bool {
        self.prompt.login
            || self.prompt.select_account
            || self.max_age.is_some_and(|m| m == 0 || now - auth_time > m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_login_rules() {
        let mut r = AuthorizationRequest {
            client_id: "c".into(),
            redirect_uri: "https://a/cb".into(),
            state: None,
            nonce: None,
            scopes: vec![],
            code_challenge: None,
            prompt: Prompt::default(),
            max_age: None,
            login_hint: None,
            hinted_subject: None,
            provider_hint: None,
            resource: None,
            acr_mfa: false,
            ui_locales: None,
        };
        assert!(!r.needs_fresh_login(100, 200));
        r.max_age = Some(150);
        assert!(!r.needs_fresh_login(100, 200));
        r.max_age = Some(50);
        assert!(r.needs_fresh_login(100, 200));
        r.max_age = Some(0);
        assert!(r.needs_fresh_login(200, 200));
        r.max_age = None;
        r.prompt.login = true;
        assert!(r.needs_fresh_login(200, 200));
    }
}
