//! Login for desktop and command-line apps (a public client, RFC 8252): the system
//! browser logs in at the broker and comes back to a loopback listener on a random
//! port; PKCE S256, `state` and `nonce` are checked; the tokens are kept in a
//! [`TokenStore`] (a 0600 file by default) and a [`Session`] refreshes them shortly
//! before they expire, and logs out by revoking them. Without a browser,
//! [`NativeLogin::device_login`] uses the device authorization grant (RFC 8628).
//!
//! ```no_run
//! use switchboard_client::Issuer;
//! use switchboard_client::native::{FileStore, NativeLogin};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let issuer = Issuer::new("http://127.0.0.1:5556")?;
//! let login = NativeLogin::new(issuer, "example-cli", FileStore::for_app("example-cli")?);
//! let session = login.session().await?; // the stored login, or a new one in the browser
//! let token = session.access_token().await?; // refreshed when close to expiry
//! // ... call an API with `Authorization: Bearer {token}` ...
//! session.logout().await?;
//! # Ok(()) }
//! ```

mod device;
mod loopback;
mod session;
mod store;

pub use device::DevicePrompt;

pub use session::{Logout, Session, SessionError};
pub use store::{FileStore, MemoryStore, StoreError, TokenSet, TokenStore};

use crate::error::{FetchError, TokenError};
use crate::http;
use crate::introspection::unix_now;
use crate::issuer::{Issuer, Metadata};
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// How the login URL reaches the person.
///
/// ```
/// use std::sync::Arc;
/// use switchboard_client::Issuer;
/// use switchboard_client::native::{MemoryStore, NativeLogin, OpenWith};
/// let issuer = Issuer::new("http://127.0.0.1:5556")?;
/// // A GUI app shows the URL in its own window instead of a browser tab.
/// let login = NativeLogin::new(issuer, "example-cli", MemoryStore::default())
///     .open_with(OpenWith::Custom(Arc::new(|url| println!("open {url}"))));
/// # let _ = login;
/// # Ok::<(), switchboard_client::FetchError>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub enum OpenWith {
    /// The system browser (`webbrowser`); the URL is also printed to stderr in case
    /// no browser opens.
    SystemBrowser,
    /// Printed to stderr only (a machine without a display).
    Print,
    /// Handed to a function (a GUI, or a test driving a headless browser).
    Custom(Arc<dyn Fn(&Url) + Send + Sync>),
}

impl fmt::Debug for OpenWith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenWith::SystemBrowser => "SystemBrowser",
            OpenWith::Print => "Print",
            OpenWith::Custom(_) => "Custom",
        })
    }
}

impl OpenWith {
    pub(crate) fn open(&self, url: &Url) {
        match self {
            OpenWith::SystemBrowser => {
                eprintln!("Opening the browser to log in. If it does not open, visit:\n{url}");
                if let Err(e) = webbrowser::open(url.as_str()) {
                    tracing::warn!(error = %e, "cannot open the system browser");
                }
            }
            OpenWith::Print => eprintln!("To log in, visit:\n{url}"),
            OpenWith::Custom(open) => open(url),
        }
    }
}

/// Why a login failed.
///
/// ```no_run
/// use switchboard_client::Issuer;
/// use switchboard_client::native::{LoginError, MemoryStore, NativeLogin};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", MemoryStore::default());
/// match login.login().await {
///     Ok(_session) => println!("logged in"),
///     Err(LoginError::TimedOut) => eprintln!("nobody logged in within the timeout"),
///     Err(LoginError::Refused { error }) => eprintln!("the broker said {error}"),
///     Err(e) => return Err(e.into()),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The broker could not be asked.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The loopback listener could not be opened or read.
    #[error("loopback listener: {0}")]
    Listener(String),
    /// Nobody came back within the login timeout.
    #[error("the login was not completed in time")]
    TimedOut,
    /// The broker sent the browser back with an error (`access_denied`, ...).
    #[error("the login was refused: {error}")]
    Refused {
        /// The OAuth error code.
        error: String,
    },
    /// The answer names another issuer (RFC 9207 `iss`): a mix-up, refused.
    #[error("the login answer came from another issuer")]
    WrongIssuer,
    /// `/token` refused the code.
    #[error("the token endpoint refused the code: {error}")]
    Token {
        /// The OAuth error code.
        error: String,
    },
    /// The ID token did not verify (signature, `iss`, `aud`, `exp`, `nonce`).
    #[error("the ID token is invalid: {0}")]
    IdToken(TokenError),
    /// The tokens could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A native login against one issuer as one public client.
///
/// ```no_run
/// use std::time::Duration;
/// use switchboard_client::Issuer;
/// use switchboard_client::native::{FileStore, NativeLogin, OpenWith};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let login = NativeLogin::new(
///     Issuer::new("http://127.0.0.1:5556")?,
///     "example-cli",
///     FileStore::for_app("example-cli")?,
/// )
/// .scopes(["openid", "offline_access", "reports"])
/// .open_with(OpenWith::Print)
/// .timeout(Duration::from_secs(120));
/// let session = login.session().await?;
/// println!("token expires at {}", session.expires_at().await);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct NativeLogin {
    issuer: Issuer,
    client_id: String,
    scopes: Vec<String>,
    open: OpenWith,
    timeout: Duration,
    store: Arc<dyn TokenStore>,
    refresh_margin: Duration,
    device_prompt: Option<DevicePromptFn>,
}

/// Shows a device login's code and page to the person.
///
/// ```
/// use std::sync::Arc;
/// use switchboard_client::native::{DevicePrompt, DevicePromptFn};
/// let show: DevicePromptFn = Arc::new(|p: &DevicePrompt| {
///     println!("Visit {} and enter {}", p.verification_uri, p.user_code);
/// });
/// # let _ = show;
/// ```
pub type DevicePromptFn = Arc<dyn Fn(&DevicePrompt) + Send + Sync>;

impl NativeLogin {
    /// Logs in as `client_id` (a public client with the loopback redirect URI
    /// `http://127.0.0.1/callback` registered), asking for `openid offline_access`,
    /// keeping tokens in `store`; opens the system browser; waits 5 minutes at most.
    ///
    /// ```
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{MemoryStore, NativeLogin};
    /// let login = NativeLogin::new(
    ///     Issuer::new("http://127.0.0.1:5556")?,
    ///     "example-cli",
    ///     MemoryStore::default(),
    /// );
    /// # let _ = login;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn new(
        issuer: Issuer,
        client_id: impl Into<String>,
        store: impl TokenStore + 'static,
    ) -> Self {
        NativeLogin {
            issuer,
            client_id: client_id.into(),
            scopes: vec!["openid".into(), "offline_access".into()],
            open: OpenWith::SystemBrowser,
            timeout: Duration::from_secs(300),
            store: Arc::new(store),
            refresh_margin: Duration::from_secs(60),
            device_prompt: None,
        }
    }

    /// How a [device login](NativeLogin::device_login) shows its code and page
    /// (default: printed to stderr).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{MemoryStore, NativeLogin, DevicePrompt};
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", MemoryStore::default())
    ///     .on_device_prompt(Arc::new(|p: &DevicePrompt| {
    ///         eprintln!("On your phone, open {} and enter {}", p.verification_uri, p.user_code);
    ///     }));
    /// # let _ = login;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn on_device_prompt(mut self, show: DevicePromptFn) -> Self {
        self.device_prompt = Some(show);
        self
    }

    /// The scopes asked for (`openid` is added when missing: the ID token proves the
    /// login and serves logout).
    ///
    /// ```
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{MemoryStore, NativeLogin};
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", MemoryStore::default())
    ///     .scopes(["offline_access", "permissions"]); // asks for openid offline_access permissions
    /// # let _ = login;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        if !self.scopes.iter().any(|s| s == "openid") {
            self.scopes.insert(0, "openid".into());
        }
        self
    }

    /// How the login URL is opened (default: the system browser).
    ///
    /// ```
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{MemoryStore, NativeLogin, OpenWith};
    /// // On a server without a display: print the URL, open it elsewhere.
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", MemoryStore::default())
    ///     .open_with(OpenWith::Print);
    /// # let _ = login;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn open_with(mut self, open: OpenWith) -> Self {
        self.open = open;
        self
    }

    /// How long to wait for the browser to come back (default 5 minutes); for a
    /// device login, the longest it polls.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{MemoryStore, NativeLogin};
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", MemoryStore::default())
    ///     .timeout(Duration::from_secs(60));
    /// # let _ = login;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long before expiry a session refreshes its access token (default 60 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{MemoryStore, NativeLogin};
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", MemoryStore::default())
    ///     .refresh_margin(Duration::from_secs(10));
    /// # let _ = login;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The stored login if there is one, else a new login in the browser.
    ///
    /// ```no_run
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{FileStore, NativeLogin};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", FileStore::for_app("example-cli")?);
    /// let session = login.session().await?; // no browser when tokens are stored
    /// let token = session.access_token().await?;
    /// # let _ = token;
    /// # Ok(()) }
    /// ```
    pub async fn session(&self) -> Result<Session, LoginError> {
        if let Some(tokens) = self.store.load()? {
            return Ok(self.session_of(tokens));
        }
        self.login().await
    }

    /// A new login in the browser; the tokens are stored.
    ///
    /// ```no_run
    /// use switchboard_client::Issuer;
    /// use switchboard_client::native::{MemoryStore, NativeLogin};
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", MemoryStore::default());
    /// let session = login.login().await?; // opens the browser, waits for the redirect
    /// # let _ = session;
    /// # Ok(()) }
    /// ```
    pub async fn login(&self) -> Result<Session, LoginError> {
        let metadata = self.issuer.metadata().await?;
        let authorize =
            Metadata::endpoint(&metadata.authorization_endpoint, "authorization_endpoint")?;
        let listener = loopback::Listener::bind()
            .await
            .map_err(|e| LoginError::Listener(e.to_string()))?;
        let redirect_uri = listener.redirect_uri();
        let state = random_token();
        let nonce = random_token();
        let verifier = random_token();
        let challenge =
            URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
        let mut url = Url::parse(authorize).map_err(|e| FetchError::BadUrl {
            url: authorize.to_string(),
            reason: e.to_string(),
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &self.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        self.open.open(&url);
        let answer = tokio::time::timeout(self.timeout, listener.wait_for(&state))
            .await
            .map_err(|_| LoginError::TimedOut)?
            .map_err(|e| LoginError::Listener(e.to_string()))?;
        // RFC 9207: an issuer that says it sends `iss` must have sent this one.
        let iss_ok = match &answer.iss {
            Some(iss) => iss == self.issuer.url(),
            None => !metadata.authorization_response_iss_parameter_supported,
        };
        if !iss_ok {
            return Err(LoginError::WrongIssuer);
        }
        let code = match (answer.code, answer.error) {
            (_, Some(error)) => return Err(LoginError::Refused { error }),
            (Some(code), None) => code,
            (None, None) => {
                return Err(LoginError::Refused {
                    error: "no code".into(),
                });
            }
        };
        let token_endpoint = Metadata::endpoint(&metadata.token_endpoint, "token_endpoint")?;
        let reply = token_request(
            &self.issuer,
            token_endpoint,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect_uri),
                ("client_id", &self.client_id),
                ("code_verifier", &verifier),
            ],
        )
        .await?
        .map_err(|error| LoginError::Token { error })?;
        let id_token = reply
            .id_token
            .as_deref()
            .ok_or(LoginError::IdToken(TokenError::MissingClaim("id_token")))?;
        verify_id_token(&self.issuer, &self.client_id, id_token, Some(&nonce))
            .await
            .map_err(LoginError::IdToken)?;
        let tokens = reply.into_tokens(None);
        self.store.save(&tokens)?;
        Ok(self.session_of(tokens))
    }

    fn session_of(&self, tokens: TokenSet) -> Session {
        Session::new(
            self.issuer.clone(),
            self.client_id.clone(),
            Arc::clone(&self.store),
            tokens,
            self.refresh_margin,
        )
    }
}

impl fmt::Debug for NativeLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeLogin")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("open", &self.open)
            .field("timeout", &self.timeout)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// 256 random bits, base64url.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // aws-lc-rs's system RNG does not fail on supported platforms; a failure leaves
    // zeros, which the time-and-address fallback below makes unique anyway.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        let fallback = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        bytes.copy_from_slice(digest::digest(&digest::SHA256, fallback.as_bytes()).as_ref());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What `/token` answers.
#[derive(Deserialize)]
pub(crate) struct TokenReply {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

impl TokenReply {
    /// The token set; what the reply leaves out (a refresh without a new ID token or
    /// refresh token) is kept from `previous`.
    pub(crate) fn into_tokens(self, previous: Option<&TokenSet>) -> TokenSet {
        TokenSet {
            access_token: self.access_token,
            refresh_token: self
                .refresh_token
                .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
            id_token: self
                .id_token
                .or_else(|| previous.and_then(|p| p.id_token.clone())),
            expires_at: unix_now() + self.expires_in.unwrap_or(300).max(0),
            scope: self
                .scope
                .or_else(|| previous.and_then(|p| p.scope.clone())),
        }
    }
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

/// POSTs `form` to the token endpoint: the reply, or the OAuth error code.
pub(crate) async fn token_request(
    issuer: &Issuer,
    url: &str,
    form: &[(&str, &str)],
) -> Result<Result<TokenReply, String>, FetchError> {
    let (status, body) = http::send(url, issuer.http().post(url).form(form)).await?;
    if status == 200 {
        return http::parse_json(url, &body).map(Ok);
    }
    match serde_json::from_slice::<OAuthError>(&body) {
        Ok(e) if (400..500).contains(&status) => Ok(Err(e.error)),
        _ => Err(FetchError::Status {
            url: url.to_string(),
            status,
        }),
    }
}

#[derive(Deserialize)]
struct IdClaims {
    #[serde(default)]
    nonce: Option<String>,
}

/// Checks an ID token: a key of the issuer with its own algorithm, `iss`, `aud` =
/// the client, `exp` (60 s leeway), and the `nonce` of this login.
pub(crate) async fn verify_id_token(
    issuer: &Issuer,
    client_id: &str,
    id_token: &str,
    nonce: Option<&str>,
) -> Result<(), TokenError> {
    let header = decode_header(id_token).map_err(|_| TokenError::Malformed)?;
    let key = issuer.key(header.kid.as_deref()).await?;
    if header.alg != key.alg {
        return Err(TokenError::AlgorithmMismatch);
    }
    let mut validation = Validation::new(key.alg);
    validation.set_issuer(&[issuer.url()]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let claims = decode::<IdClaims>(id_token, &key.key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            jsonwebtoken::errors::ErrorKind::InvalidAudience => TokenError::WrongAudience,
            _ => TokenError::Malformed,
        })?
        .claims;
    if let Some(nonce) = nonce
        && claims.nonce.as_deref() != Some(nonce)
    {
        return Err(TokenError::WrongNonce);
    }
    Ok(())
}
