//! The one HTTP client of the crate: rustls with the aws-lc-rs provider, redirects
//! never followed, every call bounded in time and in the size of the answer.

use crate::error::FetchError;
use rustls::{ClientConfig, RootCertStore};
use serde::de::DeserializeOwned;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

/// The largest answer read from the broker.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

static ROOTS: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    // An unreadable system store is not fatal: the bundled roots remain.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    Arc::new(roots)
});

/// A client with a 5 s connect and 10 s overall timeout that never follows redirects
/// (an answer that redirects is an error, never a request elsewhere).
pub(crate) fn default_client() -> Result<reqwest::Client, FetchError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Setup(e.to_string()))?
        .with_root_certificates(ROOTS.clone())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("switchboard-client/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Setup(e.to_string()))
}

/// Sends `request` and reads the whole answer, at most [`MAX_BODY_BYTES`]: the status
/// and the body.
pub(crate) async fn send(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<(u16, Vec<u8>), FetchError> {
    let unreachable = |e: reqwest::Error| FetchError::Unreachable {
        url: url.to_string(),
        reason: describe(&e),
    };
    let mut response = request.send().await.map_err(unreachable)?;
    let status = response.status().as_u16();
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        max: MAX_BODY_BYTES,
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// [`send`], expecting 200 and JSON.
pub(crate) async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, FetchError> {
    let (status, body) = send(url, http.get(url)).await?;
    if status != 200 {
        return Err(FetchError::Status {
            url: url.to_string(),
            status,
        });
    }
    parse_json(url, &body)
}

pub(crate) fn parse_json<T: DeserializeOwned>(url: &str, body: &[u8]) -> Result<T, FetchError> {
    serde_json::from_slice(body).map_err(|e| FetchError::Malformed {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

/// The error without the URL's query (it may carry a token).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirected"
    } else {
        "request failed"
    };
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
