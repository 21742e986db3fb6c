//! Outbound HTTP toward the upstream: one bounded client (connect 5 s, total 10 s, no
//! redirects, a 1 MiB body cap, TLS through rustls on aws-lc-rs) for the token
//! endpoint (through `oauth2`) and the user API.
//!
//! This is the standalone example plugin's own copy, on purpose: the built-in
//! providers share `switchboard_upstream`'s client, but this crate shows a plugin
//! that depends on `switchboard-plugin-api` and ordinary crates only, so an author
//! can copy it whole. Keep its limits in step with `switchboard_upstream`.

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Largest response body accepted.
const MAX_BODY: usize = 1024 * 1024;

/// The `User-Agent` sent upstream (some APIs refuse requests without one).
pub const USER_AGENT: &str = concat!("switchboard-oauth2/", env!("CARGO_PKG_VERSION"));

/// Why a call failed. No variant holds a token or an upstream body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Unreachable, timed out, 5xx, or rate limited.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// 401 or 403 from the user API: the access token is not (or no longer) good.
    #[error("the user API refused the access token (HTTP {0})")]
    Refused(u16),
    /// Anything else that breaks the protocol.
    #[error("{0}")]
    Protocol(String),
}

/// The bounded HTTP client.
#[derive(Debug, Clone)]
pub struct UpstreamHttp {
    client: reqwest::Client,
}

impl UpstreamHttp {
    /// Builds the client.
    pub fn new() -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config()?)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(UpstreamHttp { client })
    }

    /// Status, headers and body (at most [`MAX_BODY`] bytes).
    async fn read(
        mut response: reqwest::Response,
    ) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>), ApiError> {
        let status = response.status();
        let headers = response.headers().clone();
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY as u64)
        {
            return Err(ApiError::Protocol("response too large".into()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ApiError::Unavailable(transport(&e)))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ApiError::Protocol("response too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    /// One token-endpoint request. 5xx and 429 are unavailability; an `error` member in
    /// a 2xx answer (GitHub does this) becomes a 400 so `oauth2` reads it as the error
    /// response it is.
    async fn oauth(&self, request: HttpRequest) -> Result<HttpResponse, ApiError> {
        let request = reqwest::Request::try_from(request)
            .map_err(|e| ApiError::Protocol(format!("bad token request: {e}")))?;
        let response = self
            .client
            .execute(request)
            .await
            .map_err(|e| ApiError::Unavailable(transport(&e)))?;
        let (status, headers, body) = Self::read(response).await?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ApiError::Unavailable(format!(
                "token endpoint: HTTP {}",
                status.as_u16()
            )));
        }
        let mut status = status;
        if status.is_success() && has_error_member(&body) {
            status = reqwest::StatusCode::BAD_REQUEST;
        }
        let mut builder = oauth2::http::Response::builder().status(status);
        for (name, value) in &headers {
            builder = builder.header(name, value);
        }
        builder
            .body(body)
            .map_err(|e| ApiError::Protocol(e.to_string()))
    }

    /// GETs the user API with `token` as a bearer token; the answer must be JSON.
    pub async fn user(&self, url: &Url, token: &str) -> Result<Value, ApiError> {
        let response = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(transport(&e)))?;
        let (status, _, body) = Self::read(response).await?;
        match status.as_u16() {
            200 => {}
            s @ (401 | 403) => return Err(ApiError::Refused(s)),
            429 => return Err(ApiError::Unavailable("user API: rate limited".into())),
            s if s >= 500 => return Err(ApiError::Unavailable(format!("user API: HTTP {s}"))),
            s => return Err(ApiError::Protocol(format!("user API: HTTP {s}"))),
        }
        // The serde message names a position, never the body's text.
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Protocol(format!("user API answer is not JSON: {e}")))
    }
}

/// TLS with the aws-lc-rs crypto provider named explicitly (reqwest 0.12 could only
/// pick ring itself), trusting Mozilla's roots and the system's store.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// True when a JSON body has a string `error` member.
fn has_error_member(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|v| v.get("error").is_some_and(Value::is_string))
}

fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}

impl<'c> AsyncHttpClient<'c> for UpstreamHttp {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, ApiError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.oauth(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_members_are_found_only_as_strings() {
        assert!(has_error_member(br#"{"error":"bad_verification_code"}"#));
        assert!(!has_error_member(br#"{"access_token":"t","error":null}"#));
        assert!(!has_error_member(b"error=bad_verification_code"));
    }
}
