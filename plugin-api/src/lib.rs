//! The one crate a Switchboard identity-provider plugin depends on.
//!
//! A provider turns "someone wants to log in" into a normalised [`Identity`]. It has
//! one or more capabilities, each its own trait:
//!
//! - [`RedirectLogin`]: send the browser upstream, then turn the callback into an
//!   identity (OpenID Connect, OAuth 2.0, SAML-like).
//! - [`PasswordLogin`]: check a username and password (local users, LDAP).
//! - [`RefreshIdentity`]: re-read the identity when an app refreshes its tokens, so a
//!   person removed or changed upstream is seen.
//! - [`HeaderLogin`] (ABI 1.1): log a person in from the login request's own headers
//!   (Kerberos SPNEGO's `Authorization: Negotiate`; later trusted reverse-proxy headers
//!   or client certificates), answering an identity, a challenge, or "not possible".
//!
//! The broker owns all per-login state (`state`, PKCE, nonce, the provider's own
//! `provider_state`) and hands it back at the callback, so a provider keeps no memory
//! between calls and a callback may reach another replica. Timeouts are the broker's
//! job. Every type crossing the trait is owned, serde-serialisable and
//! `#[non_exhaustive]`: the same values travel as JSON across the dynamic-plugin
//! boundary, where unknown fields are ignored and new fields have defaults.
//!
//! Providers are built by a [`ProviderFactory`] from their own config section.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroize;

pub mod abi;
pub mod claims;
#[cfg(feature = "export")]
pub mod export;
pub mod secret;

pub use claims::{ClaimPath, ClaimPathError};

/// Version of this crate, recorded by plugins for diagnostics.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a provider returns for a person who logged in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Identity {
    /// Id of the provider instance (from the broker's config), filled in by the broker
    /// if the provider leaves it empty.
    #[serde(default)]
    pub provider_id: String,
    /// Stable upstream subject: never an email or a renamable login.
    pub subject: String,
    /// Login name upstream.
    #[serde(default)]
    pub username: Option<String>,
    /// Email address, if any.
    #[serde(default)]
    pub email: Option<String>,
    /// True only if the upstream proved the person controls `email`.
    #[serde(default)]
    pub email_verified: bool,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Given name.
    #[serde(default)]
    pub given_name: Option<String>,
    /// Family name.
    #[serde(default)]
    pub family_name: Option<String>,
    /// Picture URL.
    #[serde(default)]
    pub picture: Option<String>,
    /// Upstream group names, un-namespaced (the broker prefixes them with the
    /// provider id).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Raw upstream claims, for claim-based role rules.
    #[serde(default)]
    pub claims: serde_json::Value,
    /// Opaque data the provider wants back at refresh (for example an upstream refresh
    /// token). The broker stores it encrypted.
    #[serde(default)]
    pub provider_data: Option<serde_json::Value>,
    /// When the person last authenticated upstream (Unix seconds), if the upstream
    /// said (an OIDC `auth_time`). A silent upstream SSO can be older than this login.
    #[serde(default)]
    pub auth_time: Option<i64>,
}

impl Identity {
    /// An identity with only its subject set.
    pub fn new(subject: impl Into<String>) -> Self {
        Identity {
            provider_id: String::new(),
            subject: subject.into(),
            username: None,
            email: None,
            email_verified: false,
            name: None,
            given_name: None,
            family_name: None,
            picture: None,
            groups: Vec::new(),
            claims: serde_json::Value::Null,
            provider_data: None,
            auth_time: None,
        }
    }

    /// Sets the login name.
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets the email and whether upstream verified it.
    pub fn with_email(mut self, email: impl Into<String>, verified: bool) -> Self {
        self.email = Some(email.into());
        self.email_verified = verified;
        self
    }

    /// Sets the display name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the upstream groups.
    pub fn with_groups(mut self, groups: Vec<String>) -> Self {
        self.groups = groups;
        self
    }
}

/// Why a provider could not produce an identity. The broker shows the person a short,
/// safe message for each variant and logs the detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderError {
    /// Wrong username or password, or unknown user: the person sees the same message.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The person authenticated but may not log in; `reason` is shown to them.
    #[error("access denied: {reason}")]
    Denied {
        /// Shown to the person, e.g. "not in group allowed_to_login".
        reason: String,
    },
    /// The upstream could not be reached or answered with a server error.
    #[error("upstream unavailable: {detail}")]
    UpstreamUnavailable {
        /// For the log only.
        detail: String,
    },
    /// The upstream answered something that breaks the protocol (bad signature, wrong
    /// issuer, missing claim).
    #[error("upstream protocol error: {detail}")]
    UpstreamProtocol {
        /// For the log only.
        detail: String,
    },
    /// The provider's configuration is wrong.
    #[error("misconfigured: {detail}")]
    Misconfigured {
        /// Names the bad key where possible.
        detail: String,
    },
    /// The provider does not have the capability that was called.
    #[error("capability not supported: {capability}")]
    Unsupported {
        /// `redirect`, `password` or `refresh`.
        capability: String,
    },
}

impl ProviderError {
    /// The person may not log in; `reason` is shown to them.
    pub fn denied(reason: impl Into<String>) -> Self {
        ProviderError::Denied {
            reason: reason.into(),
        }
    }

    /// The upstream answered something that breaks the protocol; `detail` is logged.
    pub fn protocol(detail: impl Into<String>) -> Self {
        ProviderError::UpstreamProtocol {
            detail: detail.into(),
        }
    }

    /// The upstream could not be reached, timed out or is overloaded; `detail` is
    /// logged.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ProviderError::UpstreamUnavailable {
            detail: detail.into(),
        }
    }
}

/// A password that never prints and is wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The password's text, for hashing or binding only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A username and password to check.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PasswordRequest {
    /// What the person typed as their login.
    pub username: String,
    /// What the person typed as their password.
    pub password: Password,
}

impl PasswordRequest {
    /// Builds a request.
    pub fn new(username: impl Into<String>, password: Password) -> Self {
        PasswordRequest {
            username: username.into(),
            password,
        }
    }
}

/// Everything a redirect provider needs to send the browser upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BeginRequest {
    /// Absolute URL of this provider's callback at the broker.
    pub callback_url: String,
    /// Opaque `state` chosen by the broker; send it upstream unchanged.
    pub state: String,
    /// Nonce chosen by the broker; send it upstream and expect it in the ID token.
    pub nonce: String,
    /// S256 PKCE challenge chosen by the broker.
    pub pkce_challenge: String,
    /// Hint about who is logging in, if the app sent one.
    #[serde(default)]
    pub login_hint: Option<String>,
    /// What the app asked of the person: forward it upstream where the protocol
    /// has it, so a silent upstream SSO cannot satisfy a forced re-login.
    #[serde(default)]
    pub prompt: LoginPrompt,
    /// The oldest authentication the app accepts, in seconds (OIDC `max_age`).
    #[serde(default)]
    pub max_age: Option<i64>,
}

/// The `prompt` values a login carries upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoginPrompt {
    /// Authenticate again, whatever session the upstream has.
    #[serde(default)]
    pub login: bool,
    /// Let the person choose another upstream account.
    #[serde(default)]
    pub select_account: bool,
}

impl LoginPrompt {
    /// A prompt that forces a fresh authentication, or one that lets the person
    /// choose an account.
    pub fn new(login: bool, select_account: bool) -> Self {
        LoginPrompt {
            login,
            select_account,
        }
    }

    /// The OIDC `prompt` parameter value, if any.
    pub fn as_param(&self) -> Option<String> {
        let values: Vec<&str> = [
            (self.login, "login"),
            (self.select_account, "select_account"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, v)| *v)
        .collect();
        (!values.is_empty()).then(|| values.join(" "))
    }
}

impl BeginRequest {
    /// Sets the login hint.
    pub fn with_login_hint(mut self, hint: Option<String>) -> Self {
        self.login_hint = hint;
        self
    }

    /// Sets what the app asked of the person and how old an authentication may be.
    pub fn with_freshness(mut self, prompt: LoginPrompt, max_age: Option<i64>) -> Self {
        self.prompt = prompt;
        self.max_age = max_age;
        self
    }

    /// Builds a request.
    pub fn new(
        callback_url: impl Into<String>,
        state: impl Into<String>,
        nonce: impl Into<String>,
        pkce_challenge: impl Into<String>,
    ) -> Self {
        BeginRequest {
            callback_url: callback_url.into(),
            state: state.into(),
            nonce: nonce.into(),
            pkce_challenge: pkce_challenge.into(),
            login_hint: None,
            prompt: LoginPrompt::default(),
            max_age: None,
        }
    }
}

/// Where to send the browser, and what the provider wants back at the callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BeginResponse {
    /// The upstream authorization URL.
    pub url: String,
    /// Kept by the broker and returned in [`Callback::provider_state`].
    #[serde(default)]
    pub provider_state: serde_json::Value,
}

impl BeginResponse {
    /// Builds a response.
    pub fn new(url: impl Into<String>, provider_state: serde_json::Value) -> Self {
        BeginResponse {
            url: url.into(),
            provider_state,
        }
    }
}

/// The upstream's answer, as it reached the broker's callback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Callback {
    /// `GET` or `POST`.
    pub method: String,
    /// Query (GET) or form (POST) parameters.
    pub params: BTreeMap<String, String>,
    /// What [`BeginResponse::provider_state`] held.
    #[serde(default)]
    pub provider_state: serde_json::Value,
    /// The callback URL used at begin.
    pub callback_url: String,
    /// The nonce sent at begin.
    pub nonce: String,
    /// The PKCE verifier behind the challenge sent at begin.
    pub pkce_verifier: String,
}

impl Callback {
    /// Builds a callback (the broker does this; tests of providers too).
    pub fn new(
        method: impl Into<String>,
        params: BTreeMap<String, String>,
        provider_state: serde_json::Value,
        callback_url: impl Into<String>,
        nonce: impl Into<String>,
        pkce_verifier: impl Into<String>,
    ) -> Self {
        Callback {
            method: method.into(),
            params,
            provider_state,
            callback_url: callback_url.into(),
            nonce: nonce.into(),
            pkce_verifier: pkce_verifier.into(),
        }
    }
}

/// An identity to re-read at refresh time.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RefreshRequest {
    /// The identity as last stored, including its `provider_data`.
    pub identity: Identity,
}

impl RefreshRequest {
    /// Builds a request.
    pub fn new(identity: Identity) -> Self {
        RefreshRequest { identity }
    }
}

/// Which capabilities a provider has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Implements [`RedirectLogin`].
    #[serde(default)]
    pub redirect: bool,
    /// Implements [`PasswordLogin`].
    #[serde(default)]
    pub password: bool,
    /// Implements [`RefreshIdentity`].
    #[serde(default)]
    pub refresh: bool,
    /// Implements [`HeaderLogin`] (ABI 1.1; absent, so false, from a 1.0 plugin).
    #[serde(default)]
    pub header: bool,
}

/// Sends the browser upstream and turns the callback into an identity.
#[async_trait]
pub trait RedirectLogin: Send + Sync {
    /// Builds the upstream authorization URL.
    async fn begin(&self, request: BeginRequest) -> Result<BeginResponse, ProviderError>;
    /// Validates the upstream answer and returns who logged in.
    async fn complete(&self, callback: Callback) -> Result<Identity, ProviderError>;
}

/// Checks a username and password.
#[async_trait]
pub trait PasswordLogin: Send + Sync {
    /// Returns the identity, or [`ProviderError::InvalidCredentials`] for a wrong
    /// password and an unknown user alike.
    async fn authenticate(&self, request: PasswordRequest) -> Result<Identity, ProviderError>;
}

/// Re-reads an identity when an app refreshes its tokens.
#[async_trait]
pub trait RefreshIdentity: Send + Sync {
    /// Returns the current identity (with updated `provider_data`), or
    /// [`ProviderError::Denied`] when the person may no longer log in.
    async fn refresh(&self, request: RefreshRequest) -> Result<Identity, ProviderError>;
}

/// A header a [`HeaderAnswer`] asks the broker to send back to the browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResponseHeader {
    /// The header's name, e.g. `WWW-Authenticate`.
    pub name: String,
    /// Its value, e.g. `Negotiate` or `Negotiate <base64 token>`.
    pub value: String,
}

impl ResponseHeader {
    /// Builds a header.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        ResponseHeader {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// The login request's headers a [`HeaderLogin`] provider reads: only those its plugin
/// declares (see `abi::DescriptorV1_1::header_names`), lowercase names.
#[derive(Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HeaderRequest {
    /// Header name (lowercase) → value, for the declared headers the request carried.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The client's address as the broker sees it (after its trusted proxies), for a
    /// provider that trusts headers only from certain peers.
    #[serde(default)]
    pub client_ip: Option<String>,
}

impl fmt::Debug for HeaderRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are credentials (tickets, assertions): names only.
        f.debug_struct("HeaderRequest")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("client_ip", &self.client_ip)
            .finish()
    }
}

impl HeaderRequest {
    /// Builds a request.
    pub fn new(headers: BTreeMap<String, String>, client_ip: Option<String>) -> Self {
        HeaderRequest { headers, client_ip }
    }

    /// The value of header `name` (any case), if the request carried it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What a [`HeaderLogin`] provider makes of the request's headers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum HeaderAnswer {
    /// The headers prove who this is. `headers` go back with the broker's next
    /// response (Kerberos: the mutual-authentication token).
    Identity {
        /// Who logged in.
        identity: Box<Identity>,
        /// Sent back to the browser.
        #[serde(default)]
        headers: Vec<ResponseHeader>,
    },
    /// Ask the browser for the headers: the broker answers `status` with these headers
    /// and, as the body, its page of other ways to sign in (so a browser that cannot
    /// answer the challenge simply shows that page).
    Challenge {
        /// The HTTP status, e.g. 401.
        status: u16,
        /// E.g. `WWW-Authenticate: Negotiate`.
        headers: Vec<ResponseHeader>,
    },
    /// No header login here: the broker shows its other options.
    NotPossible,
}

/// Logs a person in from the login request's headers. A refusal of what the headers
/// carried (a bad, replayed or foreign ticket) is [`ProviderError::InvalidCredentials`]
/// or [`ProviderError::Denied`]; the broker shows the person one message for all of
/// them, and the provider logs the reason.
#[async_trait]
pub trait HeaderLogin: Send + Sync {
    /// Reads the headers.
    async fn read_headers(&self, request: HeaderRequest) -> Result<HeaderAnswer, ProviderError>;
}

/// An identity provider instance. Implement the capability traits it has and return
/// them from the matching accessor.
pub trait Provider: Send + Sync + fmt::Debug {
    /// The redirect capability, if any.
    fn redirect(&self) -> Option<&dyn RedirectLogin> {
        None
    }
    /// The password capability, if any.
    fn password(&self) -> Option<&dyn PasswordLogin> {
        None
    }
    /// The refresh capability, if any.
    fn refresh(&self) -> Option<&dyn RefreshIdentity> {
        None
    }
    /// The header-login capability (ABI 1.1), if any.
    fn header(&self) -> Option<&dyn HeaderLogin> {
        None
    }
    /// Which capabilities this provider has, derived from the accessors.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            redirect: self.redirect().is_some(),
            password: self.password().is_some(),
            refresh: self.refresh().is_some(),
            header: self.header().is_some(),
        }
    }
}

/// What a factory gets to build one provider instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProviderContext {
    /// The provider's id in the config (also its callback path segment).
    pub id: String,
    /// The provider's own config section, without the broker's keys (`type`, `name`).
    pub config: serde_json::Value,
    /// True when the broker runs in development mode.
    #[serde(default)]
    pub dev_mode: bool,
}

impl ProviderContext {
    /// Builds a context.
    pub fn new(id: impl Into<String>, config: serde_json::Value, dev_mode: bool) -> Self {
        ProviderContext {
            id: id.into(),
            config,
            dev_mode,
        }
    }

    /// Deserialises the config section, naming the provider in the error.
    pub fn parse_config<T: serde::de::DeserializeOwned>(&self) -> Result<T, ProviderError> {
        serde_json::from_value(self.config.clone()).map_err(|e| ProviderError::Misconfigured {
            detail: format!("providers.{}: {e}", self.id),
        })
    }
}

/// Builds providers of one `type` from their config sections.
pub trait ProviderFactory: Send + Sync {
    /// The `type` value in config this factory answers to.
    fn provider_type(&self) -> &str;
    /// Builds one instance; errors name the offending config key.
    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_as_json_and_ignores_unknown_fields() {
        let id = Identity::new("42")
            .with_username("ada")
            .with_email("ada@example.com", true)
            .with_groups(vec!["eng".into()]);
        let mut json = serde_json::to_value(&id).unwrap();
        json["some_future_field"] = serde_json::json!(1);
        let back: Identity = serde_json::from_value(json).unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn missing_optional_fields_default() {
        let id: Identity = serde_json::from_str(r#"{"subject":"x"}"#).unwrap();
        assert_eq!(id.subject, "x");
        assert!(!id.email_verified);
        assert!(id.groups.is_empty());
        assert_eq!(id.auth_time, None);
    }

    /// A broker of before sends no prompt or max_age; a plugin of before ignores
    /// them: both directions still read.
    #[test]
    fn begin_requests_with_and_without_freshness_read_both_ways() {
        let old = r#"{"callback_url":"https://b/cb","state":"s","nonce":"n","pkce_challenge":"c"}"#;
        let read: BeginRequest = serde_json::from_str(old).unwrap();
        assert_eq!(read.prompt, LoginPrompt::default());
        assert_eq!(read.max_age, None);
        let new = BeginRequest::new("https://b/cb", "s", "n", "c")
            .with_freshness(LoginPrompt::new(true, false), Some(0));
        let json = serde_json::to_value(&new).unwrap();
        assert_eq!(json["prompt"]["login"], true);
        assert_eq!(json["max_age"], 0);
        assert_eq!(new.prompt.as_param().as_deref(), Some("login"));
        assert_eq!(
            LoginPrompt::new(true, true).as_param().as_deref(),
            Some("login select_account")
        );
        assert_eq!(LoginPrompt::default().as_param(), None);
    }

    #[test]
    fn header_answers_cross_as_tagged_json_and_requests_never_print_values() {
        let answer = HeaderAnswer::Challenge {
            status: 401,
            headers: vec![ResponseHeader::new("WWW-Authenticate", "Negotiate")],
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["outcome"], "challenge");
        assert_eq!(
            serde_json::from_value::<HeaderAnswer>(json).unwrap(),
            answer
        );
        let none: HeaderAnswer = serde_json::from_str(r#"{"outcome":"not_possible"}"#).unwrap();
        assert_eq!(none, HeaderAnswer::NotPossible);
        let request = HeaderRequest::new(
            [("authorization".to_owned(), "Negotiate c2VjcmV0".to_owned())].into(),
            None,
        );
        assert_eq!(request.header("Authorization"), Some("Negotiate c2VjcmV0"));
        assert!(!format!("{request:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn password_never_prints() {
        let req = PasswordRequest::new("ada", Password::new("hunter2"));
        let shown = format!("{req:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
    }

    #[test]
    fn errors_cross_as_tagged_json() {
        let e = ProviderError::Denied {
            reason: "not in group".into(),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"kind":"denied","reason":"not in group"}"#);
        let back: ProviderError = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn constructors_build_the_variants_whose_wire_form_is_unchanged() {
        let cases = [
            (
                ProviderError::denied("not in group"),
                r#"{"kind":"denied","reason":"not in group"}"#,
            ),
            (
                ProviderError::protocol("bad signature"),
                r#"{"kind":"upstream_protocol","detail":"bad signature"}"#,
            ),
            (
                ProviderError::unavailable(String::from("timed out")),
                r#"{"kind":"upstream_unavailable","detail":"timed out"}"#,
            ),
        ];
        for (error, wire) in cases {
            assert_eq!(serde_json::to_string(&error).unwrap(), wire);
            assert_eq!(serde_json::from_str::<ProviderError>(wire).unwrap(), error);
        }
    }

    #[derive(Debug)]
    struct PasswordOnly;

    #[async_trait]
    impl PasswordLogin for PasswordOnly {
        async fn authenticate(&self, r: PasswordRequest) -> Result<Identity, ProviderError> {
            Ok(Identity::new(r.username))
        }
    }

    impl Provider for PasswordOnly {
        fn password(&self) -> Option<&dyn PasswordLogin> {
            Some(self)
        }
    }

    #[test]
    fn capabilities_follow_the_accessors() {
        let caps = PasswordOnly.capabilities();
        assert!(caps.password);
        assert!(!caps.redirect);
        assert!(!caps.refresh);
    }
}
