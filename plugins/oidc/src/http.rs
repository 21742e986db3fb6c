//! Outbound HTTP toward an upstream: one `reqwest` client per provider with connect and
//! request timeouts, redirects off (a discovery document or a 302 must not steer our
//! requests elsewhere), and a cap on the size of every response body. Plugs into
//! `openidconnect` / `oauth2` as their async HTTP client.

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use switchboard_plugin_api::ProviderError;

/// Limits of outbound calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpLimits {
    /// Time to open the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time for the whole exchange, body included.
    pub request_timeout: Duration,
    /// Largest response body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 512 * 1024,
        }
    }
}

/// Why an outbound call failed before a usable response arrived.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connection refused, reset, TLS failure or timeout.
    #[error("upstream unreachable: {0}")]
    Transport(String),
    /// The upstream answered 5xx or 429.
    #[error("upstream answered HTTP {0}")]
    Unavailable(u16),
    /// The body exceeded the size cap.
    #[error("upstream response larger than {0} bytes")]
    TooLarge(usize),
    /// The request could not be built.
    #[error("bad outbound request: {0}")]
    Request(String),
}

impl HttpError {
    /// The provider error this failure means: unreachable and overloaded upstreams are
    /// "unavailable", oversized answers break the protocol.
    pub fn into_provider_error(self, what: &str) -> ProviderError {
        match self {
            HttpError::Transport(_) | HttpError::Unavailable(_) => {
                ProviderError::UpstreamUnavailable {
                    detail: format!("{what}: {self}"),
                }
            }
            HttpError::TooLarge(_) | HttpError::Request(_) => ProviderError::UpstreamProtocol {
                detail: format!("{what}: {self}"),
            },
        }
    }
}

/// The HTTP client of one provider.
#[derive(Debug, Clone)]
pub struct UpstreamHttp {
    client: reqwest::Client,
    max_body_bytes: usize,
}

impl UpstreamHttp {
    /// Builds a client with the given limits.
    pub fn new(limits: HttpLimits) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Misconfigured {
                detail: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(UpstreamHttp {
            client,
            max_body_bytes: limits.max_body_bytes,
        })
    }

    /// Sends one request and reads the response within the size cap.
    pub async fn execute(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request =
            reqwest::Request::try_from(request).map_err(|e| HttpError::Request(e.to_string()))?;
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| HttpError::Transport(describe(&e)))?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(HttpError::Unavailable(status.as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.max_body_bytes as u64)
        {
            return Err(HttpError::TooLarge(self.max_body_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| HttpError::Transport(describe(&e)))?
        {
            if body.len() + chunk.len() > self.max_body_bytes {
                return Err(HttpError::TooLarge(self.max_body_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        let mut builder = openidconnect::http::Response::builder().status(status);
        for (name, value) in response.headers() {
            builder = builder.header(name, value);
        }
        builder
            .body(body)
            .map_err(|e| HttpError::Request(e.to_string()))
    }
}

/// A reqwest error in words, without the URL's query (which may carry a code).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    match e.url() {
        Some(url) => format!(
            "{kind} ({}://{}{})",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        ),
        None => kind.to_string(),
    }
}

impl<'c> AsyncHttpClient<'c> for UpstreamHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}
