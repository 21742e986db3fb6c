//! What Switchboard's upstream providers (generic OIDC, and Google and Microsoft on
//! it; GitHub) share when they talk to an identity provider over HTTP:
//!
//! - [`UpstreamHttp`]: the one bounded `reqwest` client — connect and total timeouts,
//!   redirects never followed (a discovery document or a 302 must not steer our
//!   requests elsewhere: SSRF), every response body capped at
//!   [`HttpLimits::max_body_bytes`] (1 MiB by default), one `User-Agent`
//!   (`switchboard/<version>`), TLS through rustls with the aws-lc-rs provider. It is
//!   the `oauth2` / `openidconnect` crates' async HTTP client.
//! - [`error_code`]: an upstream's `error` code reduced to a short safe token, the only
//!   upstream text that may reach a log line or a page.
//! - [`check_upstream_url`] and [`is_loopback_host`]: the `https`-unless-loopback rule
//!   for configured upstream URLs.
//!
//! This crate depends on `plugin-api` only, never on the broker, so it links into
//! the broker and into a provider built as a plugin alike.

pub mod client;
pub mod codes;
pub mod endpoint;
pub mod tls;

pub use client::{HttpError, HttpLimits, USER_AGENT, UpstreamHttp, UpstreamResponse};
pub use codes::error_code;
pub use endpoint::{check_upstream_url, is_loopback_host};
/// The `reqwest` this client is built on, for callers that add headers to a request.
pub use reqwest;
