//! A logged-in native app: the current access token, refreshed before it expires,
//! and logout.

use super::store::{StoreError, TokenSet, TokenStore};
use super::token_request;
use crate::error::FetchError;
use crate::http;
use crate::introspection::unix_now;
use crate::issuer::{Issuer, Metadata};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use url::Url;

/// Why a session cannot give a token or log out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The broker could not be asked.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The login is over (refresh refused, or no refresh token): log in again. The
    /// stored tokens have been forgotten.
    #[error("the login has ended; log in again")]
    LoginRequired,
    /// The token endpoint refused for another reason.
    #[error("the token endpoint refused the refresh: {error}")]
    Token {
        /// The OAuth error code.
        error: String,
    },
    /// The tokens could not be stored or forgotten.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What logout did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Logout {
    /// The broker's RP-initiated logout URL (with `id_token_hint` and `client_id`):
    /// open it in the browser to end the broker's session cookie too.
    pub end_session_url: Option<Url>,
}

/// A login of a native app. Share it (`Arc<Session>`); concurrent callers of
/// [`access_token`](Session::access_token) share one refresh.
pub struct Session {
    issuer: Issuer,
    client_id: String,
    store: Arc<dyn TokenStore>,
    tokens: Mutex<TokenSet>,
    refresh_margin: Duration,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(crate) fn new(
        issuer: Issuer,
        client_id: String,
        store: Arc<dyn TokenStore>,
        tokens: TokenSet,
        refresh_margin: Duration,
    ) -> Self {
        Session {
            issuer,
            client_id,
            store,
            tokens: Mutex::new(tokens),
            refresh_margin,
        }
    }

    /// The current access token, refreshed first when it expires within the refresh
    /// margin (default 60 s).
    pub async fn access_token(&self) -> Result<String, SessionError> {
        let mut tokens = self.tokens.lock().await;
        let margin = i64::try_from(self.refresh_margin.as_secs()).unwrap_or(i64::MAX);
        if tokens.expires_at.saturating_sub(margin) <= unix_now() {
            self.refresh_locked(&mut tokens).await?;
        }
        Ok(tokens.access_token.clone())
    }

    /// Call when an API answered 401 to `rejected`: refreshes, unless another caller
    /// already did (then the newer token is returned without asking the broker).
    pub async fn after_unauthorized(&self, rejected: &str) -> Result<String, SessionError> {
        let mut tokens = self.tokens.lock().await;
        if tokens.access_token == rejected {
            self.refresh_locked(&mut tokens).await?;
        }
        Ok(tokens.access_token.clone())
    }

    /// Refreshes now.
    pub async fn refresh(&self) -> Result<String, SessionError> {
        let mut tokens = self.tokens.lock().await;
        self.refresh_locked(&mut tokens).await?;
        Ok(tokens.access_token.clone())
    }

    /// When the current access token expires (Unix seconds).
    pub async fn expires_at(&self) -> i64 {
        self.tokens.lock().await.expires_at
    }

    async fn refresh_locked(&self, tokens: &mut TokenSet) -> Result<(), SessionError> {
        let Some(refresh_token) = tokens.refresh_token.clone() else {
            self.store.clear()?;
            return Err(SessionError::LoginRequired);
        };
        let metadata = self.issuer.metadata().await?;
        let url = Metadata::endpoint(&metadata.token_endpoint, "token_endpoint")?;
        let reply = token_request(
            &self.issuer,
            url,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
                ("client_id", &self.client_id),
            ],
        )
        .await?;
        match reply {
            Ok(reply) => {
                let fresh = reply.into_tokens(Some(&*tokens));
                self.store.save(&fresh)?;
                *tokens = fresh;
                tracing::debug!(client_id = %self.client_id, "refreshed the access token");
                Ok(())
            }
            Err(error) if error == "invalid_grant" => {
                self.store.clear()?;
                Err(SessionError::LoginRequired)
            }
            Err(error) => Err(SessionError::Token { error }),
        }
    }

    /// Logs out: revokes the refresh token (which ends the whole login at the
    /// broker) and the access token, forgets the stored tokens, and returns the
    /// RP-initiated logout URL for the browser. The tokens are forgotten even when
    /// the broker cannot be reached; the error says so.
    pub async fn logout(self) -> Result<Logout, SessionError> {
        let tokens = self.tokens.into_inner();
        let cleared = self.store.clear();
        let metadata = self.issuer.metadata().await?;
        let url = Metadata::endpoint(&metadata.revocation_endpoint, "revocation_endpoint")?;
        let mut revoke = Vec::new();
        if let Some(refresh) = &tokens.refresh_token {
            revoke.push((refresh.as_str(), "refresh_token"));
        }
        revoke.push((tokens.access_token.as_str(), "access_token"));
        for (token, hint) in revoke {
            let request = self.issuer.http().post(url).form(&[
                ("token", token),
                ("token_type_hint", hint),
                ("client_id", self.client_id.as_str()),
            ]);
            let (status, _) = http::send(url, request).await?;
            if status != 200 {
                return Err(FetchError::Status {
                    url: url.to_string(),
                    status,
                }
                .into());
            }
        }
        cleared?;
        let end_session_url = metadata
            .end_session_endpoint
            .as_deref()
            .and_then(|e| Url::parse(e).ok())
            .map(|mut u| {
                {
                    let mut q = u.query_pairs_mut();
                    if let Some(id_token) = &tokens.id_token {
                        q.append_pair("id_token_hint", id_token);
                    }
                    q.append_pair("client_id", &self.client_id);
                }
                u
            });
        Ok(Logout { end_session_url })
    }
}
