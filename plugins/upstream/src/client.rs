//! The bounded HTTP client toward an upstream: one `reqwest` client per provider with
//! connect and total timeouts, redirects off, a cap on every response body, one
//! `User-Agent`, and TLS from [`crate::tls`]. It plugs into `oauth2` /
//! `openidconnect` as their async HTTP client ([`oauth2::AsyncHttpClient`]); for REST
//! calls of its own a provider sends a request built on [`UpstreamHttp::get`] through
//! [`UpstreamHttp::send`].

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use switchboard_plugin_api::ProviderError;
use url::Url;

/// The `User-Agent` sent upstream (GitHub's API refuses requests without one).
pub const USER_AGENT: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

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
    /// Connect 5 s, total 10 s, bodies up to 1 MiB (a large discovery document or
    /// JWKS is a few tens of KiB; one page of 100 GitHub teams about 250 KiB).
    fn default() -> Self {
        HttpLimits {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Why an outbound call failed before a usable response arrived. No variant holds a
/// URL query, a token or an upstream body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Connection refused, reset, TLS failure or timeout.
    #[error("upstream unreachable: {0}")]
    Transport(String),
    /// The upstream answered 5xx or 429 (to an OAuth request).
    #[error("upstream answered HTTP {0}")]
    Unavailable(u16),
    /// The body exceeded the size cap.
    #[error("upstream response larger than {0} bytes")]
    TooLarge(usize),
    /// The request could not be built, or the response not handed on.
    #[error("bad outbound request: {0}")]
    Request(String),
}

impl HttpError {
    /// The provider error this failure means: unreachable and overloaded upstreams are
    /// "unavailable", oversized answers break the protocol. `what` names the call.
    pub fn into_provider_error(self, what: &str) -> ProviderError {
        match self {
            HttpError::Transport(_) | HttpError::Unavailable(_) => {
                ProviderError::unavailable(format!("{what}: {self}"))
            }
            HttpError::TooLarge(_) | HttpError::Request(_) => {
                ProviderError::protocol(format!("{what}: {self}"))
            }
        }
    }
}

/// A response read whole within the size cap, whatever its status.
#[derive(Debug)]
#[non_exhaustive]
pub struct UpstreamResponse {
    /// The status, as the upstream sent it (redirects are not followed).
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body, at most [`HttpLimits::max_body_bytes`] long.
    pub body: Vec<u8>,
}

/// The HTTP client of one provider.
#[derive(Debug, Clone)]
pub struct UpstreamHttp {
    client: reqwest::Client,
    max_body_bytes: usize,
    error_member_is_failure: bool,
}

impl UpstreamHttp {
    /// Builds a client with the given limits.
    pub fn new(limits: HttpLimits) -> Result<Self, ProviderError> {
        let misconfigured = |e: &dyn std::fmt::Display| ProviderError::Misconfigured {
            detail: format!("cannot build the HTTP client: {e}"),
        };
        let tls = crate::tls::client_config().map_err(|e| misconfigured(&e))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| misconfigured(&e))?;
        Ok(UpstreamHttp {
            client,
            max_body_bytes: limits.max_body_bytes,
            error_member_is_failure: false,
        })
    }

    /// For upstreams that answer OAuth errors with HTTP 200 and an `error` member
    /// (GitHub's token endpoint does): such answers reach `oauth2` as HTTP 400, so it
    /// reads them as the error response they are. Applies to the
    /// [`AsyncHttpClient`] side only.
    pub fn error_member_is_failure(mut self) -> Self {
        self.error_member_is_failure = true;
        self
    }

    /// A GET request to `url` on this client, to add headers to and [`send`].
    ///
    /// [`send`]: UpstreamHttp::send
    pub fn get(&self, url: &Url) -> RequestBuilder {
        self.client.get(url.clone())
    }

    /// Sends a request built on this client and reads the whole response within the
    /// size cap. Every status is returned: what it means is the caller's business.
    pub async fn send(&self, request: RequestBuilder) -> Result<UpstreamResponse, HttpError> {
        let request = request
            .build()
            .map_err(|e| HttpError::Request(describe(&e)))?;
        self.read(request).await
    }

    /// Sends one request in the `oauth2` crate's shape. 5xx and 429 are
    /// [`HttpError::Unavailable`]; any other status is the caller's to read.
    pub async fn execute(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request =
            reqwest::Request::try_from(request).map_err(|e| HttpError::Request(describe(&e)))?;
        let UpstreamResponse {
            mut status,
            headers,
            body,
        } = self.read(request).await?;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(HttpError::Unavailable(status.as_u16()));
        }
        if self.error_member_is_failure && status.is_success() && has_error_member(&body) {
            status = StatusCode::BAD_REQUEST;
        }
        let mut builder = oauth2::http::Response::builder().status(status);
        for (name, value) in &headers {
            builder = builder.header(name, value);
        }
        builder
            .body(body)
            .map_err(|e| HttpError::Request(e.to_string()))
    }

    async fn read(&self, request: reqwest::Request) -> Result<UpstreamResponse, HttpError> {
        let mut response = self
            .client
            .execute(request)
            .await
            .map_err(|e| HttpError::Transport(describe(&e)))?;
        let cap = self.max_body_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > cap as u64)
        {
            return Err(HttpError::TooLarge(cap));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| HttpError::Transport(describe(&e)))?
        {
            if body.len() + chunk.len() > cap {
                return Err(HttpError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(UpstreamResponse {
            status: response.status(),
            headers: std::mem::take(response.headers_mut()),
            body,
        })
    }
}

/// True when a JSON body has a string `error` member.
fn has_error_member(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|v| v.get("error").is_some_and(serde_json::Value::is_string))
}

/// A reqwest error in words, naming the origin but never the URL's path or query
/// (which may carry a code or a token).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body failed"
    } else if e.is_builder() {
        "request not built"
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
        None => kind.to_owned(),
    }
}

impl<'c> AsyncHttpClient<'c> for UpstreamHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.execute(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A loopback server that answers every connection with `reply` (raw HTTP) and
    /// records each request's head.
    struct Loopback {
        url: Url,
        heads: Arc<Mutex<Vec<String>>>,
    }

    impl Loopback {
        async fn start(reply: Vec<u8>) -> Loopback {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
            let heads = Arc::new(Mutex::new(Vec::new()));
            let seen = heads.clone();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n")
                        && stream.read(&mut byte).await.is_ok_and(|n| n == 1)
                    {
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    // Read the request body too, so closing never resets the connection.
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    let mut body = vec![0u8; length];
                    let _ = stream.read_exact(&mut body).await;
                    seen.lock().unwrap().push(head);
                    if reply.is_empty() {
                        // Never answer: the client's timeout must end the call.
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    let _ = stream.write_all(&reply).await;
                    let _ = stream.shutdown().await;
                }
            });
            Loopback { url, heads }
        }

        fn requests(&self) -> usize {
            self.heads.lock().unwrap().len()
        }

        fn head(&self) -> String {
            self.heads
                .lock()
                .unwrap()
                .first()
                .cloned()
                .unwrap_or_default()
        }
    }

    fn reply(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nconnection: close\r\n{headers}content-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        out.extend_from_slice(body);
        out
    }

    fn client(max_body_bytes: usize) -> UpstreamHttp {
        UpstreamHttp::new(HttpLimits {
            max_body_bytes,
            request_timeout: Duration::from_millis(500),
            ..HttpLimits::default()
        })
        .unwrap()
    }

    fn oauth_request(url: &Url) -> HttpRequest {
        oauth2::http::Request::builder()
            .method("POST")
            .uri(url.as_str())
            .body(b"grant_type=authorization_code".to_vec())
            .unwrap()
    }

    #[test]
    fn the_default_body_cap_is_one_mebibyte() {
        assert_eq!(HttpLimits::default().max_body_bytes, 1 << 20);
    }

    #[tokio::test]
    async fn a_body_within_the_cap_is_read_whole_with_one_user_agent() {
        let server = Loopback::start(reply("200 OK", "", b"{\"ok\":true}")).await;
        let http = client(1024);
        let response = http.send(http.get(&server.url)).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.body, b"{\"ok\":true}");
        let head = server.head().to_ascii_lowercase();
        assert!(
            head.contains(&format!("user-agent: {USER_AGENT}")),
            "{head}"
        );
        assert!(USER_AGENT.starts_with("switchboard/"));
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_by_length_or_while_streaming() {
        let body = vec![b'x'; 2048];
        let declared = Loopback::start(reply("200 OK", "", &body)).await;
        let http = client(1024);
        let err = http.send(http.get(&declared.url)).await.unwrap_err();
        assert!(matches!(err, HttpError::TooLarge(1024)), "{err:?}");

        // No length announced: the cap is enforced on the bytes as they arrive.
        let mut streamed = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        streamed.extend_from_slice(&body);
        let undeclared = Loopback::start(streamed).await;
        let err = http.send(http.get(&undeclared.url)).await.unwrap_err();
        assert!(matches!(err, HttpError::TooLarge(1024)), "{err:?}");
        let err = http
            .execute(oauth_request(&undeclared.url))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::TooLarge(1024)), "{err:?}");
        assert!(matches!(
            err.into_provider_error("token endpoint"),
            ProviderError::UpstreamProtocol { .. }
        ));
    }

    #[tokio::test]
    async fn redirects_are_handed_back_not_followed() {
        let target = Loopback::start(reply("200 OK", "", b"secret")).await;
        let redirecting = Loopback::start(reply(
            "302 Found",
            &format!("location: {}internal\r\n", target.url),
            b"",
        ))
        .await;
        let http = client(1024);
        let response = http.send(http.get(&redirecting.url)).await.unwrap();
        assert_eq!(response.status, StatusCode::FOUND);
        let response = http.execute(oauth_request(&redirecting.url)).await.unwrap();
        assert_eq!(response.status().as_u16(), 302);
        assert_eq!(target.requests(), 0, "the redirect target was never called");
    }

    #[tokio::test]
    async fn overloaded_and_failing_upstreams_are_unavailable_to_oauth() {
        for status in [
            "500 Internal Server Error",
            "503 Service Unavailable",
            "429 Too Many Requests",
        ] {
            let server = Loopback::start(reply(status, "", b"{}")).await;
            let err = client(1024)
                .execute(oauth_request(&server.url))
                .await
                .unwrap_err();
            assert!(
                matches!(err, HttpError::Unavailable(_)),
                "{status}: {err:?}"
            );
            assert!(matches!(
                err.into_provider_error("token endpoint"),
                ProviderError::UpstreamUnavailable { .. }
            ));
        }
        let refused = Loopback::start(reply(
            "400 Bad Request",
            "",
            b"{\"error\":\"invalid_grant\"}",
        ))
        .await;
        let response = client(1024)
            .execute(oauth_request(&refused.url))
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
    }

    #[tokio::test]
    async fn an_error_member_in_a_success_is_a_failure_only_where_asked() {
        let server = Loopback::start(reply(
            "200 OK",
            "",
            b"{\"error\":\"bad_verification_code\"}",
        ))
        .await;
        let plain = client(1024)
            .execute(oauth_request(&server.url))
            .await
            .unwrap();
        assert_eq!(plain.status().as_u16(), 200);
        let github = client(1024).error_member_is_failure();
        let response = github.execute(oauth_request(&server.url)).await.unwrap();
        assert_eq!(response.status().as_u16(), 400);
        assert!(has_error_member(br#"{"error":"bad_verification_code"}"#));
        assert!(!has_error_member(br#"{"access_token":"t","error":null}"#));
        assert!(!has_error_member(b"error=bad_verification_code"));
    }

    #[tokio::test]
    async fn a_silent_upstream_times_out_without_naming_the_path() {
        let server = Loopback::start(Vec::new()).await;
        let http = client(1024);
        let url = server.url.join("token?code=secret-code").unwrap();
        let err = http.send(http.get(&url)).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, HttpError::Transport(_)), "{err:?}");
        assert!(text.contains("timed out"), "{text}");
        assert!(
            !text.contains("secret-code") && !text.contains("/token"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn tls_runs_on_the_preconfigured_aws_lc_rs_config() {
        // Not a TLS server: the handshake fails as a transport error. Were no crypto
        // provider configured, building the client or connecting would panic instead.
        let server = Loopback::start(reply("200 OK", "", b"")).await;
        let port = server.url.port().unwrap();
        let url = Url::parse(&format!("https://localhost:{port}/")).unwrap();
        let http = client(1024);
        let err = http.send(http.get(&url)).await.unwrap_err();
        assert!(matches!(err, HttpError::Transport(_)), "{err:?}");
    }
}
