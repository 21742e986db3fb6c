//! The app side of Switchboard, the identity federation broker: what an API or a native app
//! needs to use the broker's tokens correctly.
//!
//! - [`Validator`]: checks the broker's JWT access tokens locally (RFC 9068: `typ`,
//!   `iss`, `aud`, `exp`/`nbf`, the algorithm of the key, never of the token), with the
//!   discovery document and JWKS cached. Returns the caller as a [`Principal`].
//! - [`Introspector`]: asks the broker (RFC 7662) about API keys and about access
//!   tokens where a revocation must count at once, caching answers for a short bound.
//! - [`actix`] (feature `actix`): a middleware with public paths, the [`Principal`]
//!   extractor and [`actix::require`]: 401 vs 403 done right.
//! - [`native`] (feature `native`): login for desktop and CLI apps (loopback redirect,
//!   PKCE, a 0600 token file, a session that refreshes and logs out).
//! - [`tower`] (feature `axum`): the same 401/403 for axum as tower layers.
//!
//! Permissions match with the grammar of `switchboard-access`, the same crate the
//! broker uses: `admin:*` means the same to both.
//!
//! ```no_run
//! use switchboard_client::{Issuer, Validator};
//!
//! # async fn run(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let validator = Validator::new(Issuer::new("https://login.example.com")?, "https://api.example.com");
//! let caller = validator.validate(token).await?;
//! assert!(caller.allows("invoices:approve"));
//! # Ok(()) }
//! ```

mod error;
#[cfg(test)]
mod fake_issuer;
mod http;
mod introspection;
mod issuer;
mod principal;
mod validator;

#[cfg(feature = "actix")]
pub mod actix;
#[cfg(feature = "native")]
pub mod native;
#[cfg(feature = "axum")]
pub mod tower;

pub use error::{FetchError, TokenError};
pub use introspection::{ClientSecret, Introspector};
pub use issuer::{Issuer, IssuerOptions, Metadata};
pub use principal::{Credential, Principal};
pub use switchboard_access::{Permission, PermissionError};
pub use validator::Validator;
