//! What can go wrong, in the client's words.

/// The broker (its discovery document, JWKS, introspection, token or revocation
/// endpoint) could not be asked, or answered something unusable. Never the caller's
/// fault: an API answers 503, not 401.
///
/// ```
/// use switchboard_client::{FetchError, Issuer};
/// assert!(matches!(Issuer::new("not a url"), Err(FetchError::BadUrl { .. })));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Setup(String),
    /// A URL (the issuer's or one the discovery document named) is not usable.
    #[error("bad URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// No answer (refused, timed out, TLS failure).
    #[error("cannot reach {url}: {reason}")]
    Unreachable {
        /// Where the request went.
        url: String,
        /// What failed.
        reason: String,
    },
    /// An HTTP status other than the one expected.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// Where the request went.
        url: String,
        /// The status received.
        status: u16,
    },
    /// An answer over the size bound.
    #[error("{url} answered more than {max} bytes")]
    TooLarge {
        /// Where the request went.
        url: String,
        /// The bound.
        max: usize,
    },
    /// An answer that is not the JSON expected.
    #[error("{url} answered malformed JSON: {reason}")]
    Malformed {
        /// Where the request went.
        url: String,
        /// What did not parse.
        reason: String,
    },
    /// The discovery document names another issuer than the one configured.
    #[error("the discovery document names issuer {found:?}, not {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// What the document said.
        found: String,
    },
    /// The discovery document lacks an endpoint this feature needs.
    #[error("the discovery document has no {0}")]
    MissingEndpoint(&'static str),
}

/// Why a presented token or API key was refused (an API answers 401
/// `invalid_token`), or could not be checked ([`TokenError::Unavailable`]: 503).
///
/// The texts are safe to show a caller: they never contain the token.
///
/// ```
/// use switchboard_client::TokenError;
/// assert_eq!(TokenError::Expired.to_string(), "the token has expired");
/// assert!(!TokenError::Expired.is_unavailable());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWT, or claims of the wrong shape.
    #[error("the token is malformed")]
    Malformed,
    /// A JWT whose `typ` is not `at+jwt` (an ID token, say).
    #[error("the token is not an access token (typ at+jwt)")]
    WrongType,
    /// No key of the issuer's JWKS has the token's `kid`.
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    /// The token's `alg` is not the algorithm of the key it names.
    #[error("the token's algorithm does not match its key")]
    AlgorithmMismatch,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// Another issuer.
    #[error("the token is from another issuer")]
    WrongIssuer,
    /// Not issued for this API (`aud`).
    #[error("the token is not for this audience")]
    WrongAudience,
    /// Past `exp` (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// Before `nbf` (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A required claim is absent.
    #[error("the token lacks the claim {0}")]
    MissingClaim(&'static str),
    /// An ID token whose `nonce` is not the one this login sent (a replayed or
    /// injected token).
    #[error("the ID token's nonce is not this login's")]
    WrongNonce,
    /// Introspection answered `active: false`: revoked, expired, unknown.
    #[error("the token is not active")]
    Inactive,
    /// An API key where this route accepts none.
    #[error("API keys are not accepted here")]
    ApiKeyNotAccepted,
    /// The broker could not be asked; nothing is known about the token.
    #[error("the token cannot be checked now: {0}")]
    Unavailable(#[from] FetchError),
}

impl TokenError {
    /// Whether the failure is the broker's (answer 503), not the token's (401).
    ///
    /// ```
    /// use switchboard_client::{FetchError, TokenError};
    /// let down = TokenError::from(FetchError::MissingEndpoint("introspection_endpoint"));
    /// assert!(down.is_unavailable());
    /// assert!(!TokenError::WrongAudience.is_unavailable());
    /// ```
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TokenError::Unavailable(_))
    }
}
