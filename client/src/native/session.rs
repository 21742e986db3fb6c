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
///
/// ```no_run
/// use switchboard_client::Issuer;
/// use switchboard_client::native::{FileStore, NativeLogin, SessionError};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", FileStore::for_app("example-cli")?);
/// let session = login.session().await?;
/// let token = match session.access_token().await {
///     Ok(token) => token,
///     // The login ended at the broker (logged out, revoked): log in again.
///     Err(SessionError::LoginRequired) => login.login().await?.access_token().await?,
///     Err(e) => return Err(e.into()),
/// };
/// # let _ = token;
/// # Ok(()) }
/// ```
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
///
/// ```no_run
/// use switchboard_client::Issuer;
/// use switchboard_client::native::{FileStore, NativeLogin};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", FileStore::for_app("example-cli")?);
/// let session = login.session().await?;
/// let done = session.logout().await?;
/// if let Some(url) = done.end_session_url {
///     eprintln!("To end the browser's session too, open {url}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Logout {
    /// The broker's RP-initiated logout URL (with `id_token_hint` and `client_id`):
    /// open it in the browser to end the broker's session cookie too.
    pub end_session_url: Option<Url>,
}

/// A login of a native app. Share it (`Arc<Session>`); concurrent callers of
/// [`access_token`](Session::access_token) share one refresh.
///
/// ```no_run
/// use std::sync::Arc;
/// use switchboard_client::Issuer;
/// use switchboard_client::native::{FileStore, NativeLogin};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", FileStore::for_app("example-cli")?);
/// let session = login.session().await?;
/// let session = Arc::new(session);
/// let token = session.access_token().await?;
/// let answer = reqwest::Client::new()
///     .get("https://api.example.com/reports")
///     .bearer_auth(&token)
///     .send()
///     .await?;
/// if answer.status() == 401 {
///     let fresh = session.after_unauthorized(&token).await?;
///     # let _ = fresh;
/// }
/// # Ok(()) }
/// ```
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
    ///
    /// ```no_run
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{FileStore, NativeLogin};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", FileStore::for_app("example-cli")?);
    /// let session = login.session().await?;
    /// let token = session.access_token().await?;
    /// println!("Authorization: Bearer {token}");
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{FileStore, NativeLogin};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", FileStore::for_app("example-cli")?);
    /// let session = login.session().await?;
    /// let token = session.access_token().await?;
    /// // ... the API answered 401 to `token` (revoked signing key, say) ...
    /// let fresh = session.after_unauthorized(&token).await?;
    /// # let _ = fresh;
    /// # Ok(()) }
    /// ```
    pub async fn after_unauthorized(&self, rejected: &str) -> Result<String, SessionError> {
        let mut tokens = self.tokens.lock().await;
        if tokens.access_token == rejected {
            self.refresh_locked(&mut tokens).await?;
        }
        Ok(tokens.access_token.clone())
    }

    /// Refreshes now.
    ///
    /// ```no_run
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{FileStore, NativeLogin};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", FileStore::for_app("example-cli")?);
    /// let session = login.session().await?;
    /// // New roles were granted: get a token that carries them.
    /// let token = session.refresh().await?;
    /// # let _ = token;
    /// # Ok(()) }
    /// ```
    pub async fn refresh(&self) -> Result<String, SessionError> {
        let mut tokens = self.tokens.lock().await;
        self.refresh_locked(&mut tokens).await?;
        Ok(tokens.access_token.clone())
    }

    /// When the current access token expires (Unix seconds).
    ///
    /// ```no_run
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{FileStore, NativeLogin};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", FileStore::for_app("example-cli")?);
    /// let session = login.session().await?;
    /// println!("the token is good until {}", session.expires_at().await);
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{FileStore, NativeLogin};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", FileStore::for_app("example-cli")?);
    /// let session = login.session().await?;
    /// let done = session.logout().await?;
    /// # let _ = done;
    /// # Ok(()) }
    /// ```
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
