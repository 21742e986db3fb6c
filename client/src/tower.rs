//! tower (for axum and any other `tower` stack on `http` 1): [`ProtectLayer`] checks
//! the bearer access token of every request outside the public paths and puts the
//! caller's [`Principal`] into the request's extensions; [`RequireLayer`] answers 403
//! unless the caller holds a permission.
//!
//! The answers are those of the actix-web middleware: 401 with `WWW-Authenticate:
//! Bearer` (plus `error="invalid_token"` when a token was presented), 403 with
//! `error="insufficient_scope"`, 503 with `Retry-After` when the broker cannot be
//! asked. Their bodies are empty (the body type's `Default`). API keys and
//! introspected routes are the actix-web middleware's only; this layer accepts JWT
//! access tokens.
//!
//! ```
//! use switchboard_client::tower::{ProtectLayer, RequireLayer};
//! use switchboard_client::{Issuer, Validator};
//! use tower_layer::Layer;
//!
//! let issuer = Issuer::new("https://login.example.com")?;
//! let protect = ProtectLayer::new(Validator::new(issuer, "reports-api")).public("/health");
//! let require = RequireLayer::new("reports:read");
//! // With axum: `Router::new().route(...).route_layer(require).layer(protect)`;
//! // handlers take `Extension<Principal>`.
//! # let _ = (protect, require);
//! # Ok::<(), switchboard_client::FetchError>(())
//! ```

use crate::error::TokenError;
use crate::principal::Principal;
use crate::validator::Validator;
use http::header::{CACHE_CONTROL, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Authenticates requests with a [`Validator`]: see the [module](self).
///
/// ```
/// use switchboard_client::tower::ProtectLayer;
/// use switchboard_client::{Issuer, Validator};
/// let validator = Validator::new(Issuer::new("https://login.example.com")?, "reports-api");
/// let layer = ProtectLayer::new(validator).public("/health").public("/docs");
/// # let _ = layer;
/// # Ok::<(), switchboard_client::FetchError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ProtectLayer {
    validator: Validator,
    public: Arc<Vec<String>>,
}

impl ProtectLayer {
    /// Protects every path with `validator`.
    ///
    /// ```
    /// use switchboard_client::{Issuer, Validator, tower::ProtectLayer};
    /// let layer = ProtectLayer::new(Validator::new(Issuer::new("https://login.example.com")?, "api"));
    /// # let _ = layer;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn new(validator: Validator) -> Self {
        ProtectLayer {
            validator,
            public: Arc::new(Vec::new()),
        }
    }

    /// Leaves `prefix` and the paths below it (segment-wise) open.
    ///
    /// ```
    /// use switchboard_client::{Issuer, Validator, tower::ProtectLayer};
    /// let validator = Validator::new(Issuer::new("https://login.example.com")?, "api");
    /// let layer = ProtectLayer::new(validator).public("/health"); // not /healthz
    /// # let _ = layer;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn public(mut self, prefix: &str) -> Self {
        Arc::make_mut(&mut self.public).push(prefix.to_string());
        self
    }
}

impl<S> Layer<S> for ProtectLayer {
    type Service = Protected<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Protected {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service a [`ProtectLayer`] wraps around another.
///
/// ```
/// use switchboard_client::tower::{ProtectLayer, Protected};
/// use switchboard_client::{Issuer, Validator};
/// use tower_layer::Layer;
/// let layer = ProtectLayer::new(Validator::new(Issuer::new("https://login.example.com")?, "api"));
/// let service: Protected<()> = layer.layer(());
/// # let _ = service;
/// # Ok::<(), switchboard_client::FetchError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Protected<S> {
    inner: S,
    layer: ProtectLayer,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Protected<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        // The service that was polled ready serves this request; a clone waits for
        // the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path();
        if self.layer.public.iter().any(|p| under(path, p)) {
            return Box::pin(inner.call(req));
        }
        let validator = self.layer.validator.clone();
        Box::pin(async move {
            let token = match bearer(req.headers()) {
                Ok(Some(token)) => token.to_string(),
                Ok(None) => return Ok(refusal(Refusal::Missing)),
                Err(e) => return Ok(refusal(Refusal::Invalid(&e))),
            };
            match validator.validate(&token).await {
                Ok(principal) => {
                    req.extensions_mut().insert(principal);
                    inner.call(req).await
                }
                Err(e) => Ok(refusal(Refusal::Invalid(&e))),
            }
        })
    }
}

/// Answers 403 unless the caller (set by [`ProtectLayer`], which must run first)
/// holds a permission.
///
/// ```
/// use switchboard_client::tower::RequireLayer;
/// let approvers = RequireLayer::new("invoices:approve");
/// # let _ = approvers;
/// ```
#[derive(Debug, Clone)]
pub struct RequireLayer {
    permission: Arc<str>,
}

impl RequireLayer {
    /// Requires `permission` (`admin:*` held allows `admin:users`). A text that is
    /// not a permission allows nobody.
    ///
    /// ```
    /// let layer = switchboard_client::tower::RequireLayer::new("reports:read");
    /// # let _ = layer;
    /// ```
    pub fn new(permission: &str) -> Self {
        RequireLayer {
            permission: Arc::from(permission),
        }
    }
}

impl<S> Layer<S> for RequireLayer {
    type Service = Required<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Required {
            inner,
            permission: Arc::clone(&self.permission),
        }
    }
}

/// The service a [`RequireLayer`] wraps around another.
///
/// ```
/// use switchboard_client::tower::{RequireLayer, Required};
/// use tower_layer::Layer;
/// let service: Required<()> = RequireLayer::new("reports:read").layer(());
/// # let _ = service;
/// ```
#[derive(Debug, Clone)]
pub struct Required<S> {
    inner: S,
    permission: Arc<str>,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Required<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResB: Default + Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let refused = match req.extensions().get::<Principal>() {
            None => Some(refusal(Refusal::Missing)),
            Some(p) if !p.allows(&self.permission) => {
                Some(refusal(Refusal::Forbidden(&self.permission)))
            }
            Some(_) => None,
        };
        match refused {
            Some(answer) => Box::pin(std::future::ready(Ok(answer))),
            None => Box::pin(self.inner.call(req)),
        }
    }
}

enum Refusal<'a> {
    Missing,
    Invalid(&'a TokenError),
    Forbidden(&'a str),
}

/// The empty-bodied answer to a refused request.
fn refusal<B: Default>(why: Refusal<'_>) -> Response<B> {
    let (status, challenge) = match why {
        Refusal::Missing => (StatusCode::UNAUTHORIZED, Some("Bearer".to_string())),
        Refusal::Invalid(e) if e.is_unavailable() => (StatusCode::SERVICE_UNAVAILABLE, None),
        Refusal::Invalid(_) => (
            StatusCode::UNAUTHORIZED,
            Some("Bearer error=\"invalid_token\"".to_string()),
        ),
        Refusal::Forbidden(permission) => (
            StatusCode::FORBIDDEN,
            Some(format!(
                "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                permission.replace(['"', '\\'], "")
            )),
        ),
    };
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
        headers.insert(WWW_AUTHENTICATE, value);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The bearer token of `Authorization`, `None` without one (or with another scheme).
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, TokenError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| TokenError::Malformed)?;
    let (scheme, token) = text.trim().split_once(' ').ok_or(TokenError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(TokenError::Malformed);
    }
    Ok(Some(token))
}

/// Whether `path` is `prefix` or below it, segment-wise.
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::Issuer;
    use crate::fake_issuer::{FakeIssuer, SigningKey};
    use crate::introspection::unix_now;
    use serde_json::json;
    use std::convert::Infallible;

    /// The app behind the layers: answers the caller's `sub`, or "anonymous".
    #[derive(Clone)]
    struct Echo;

    impl Service<Request<String>> for Echo {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: Request<String>) -> Self::Future {
            let who = req
                .extensions()
                .get::<Principal>()
                .map_or("anonymous".to_string(), |p| p.sub.clone());
            std::future::ready(Ok(Response::new(who)))
        }
    }

    async fn send<S>(service: &mut S, path: &str, token: Option<&str>) -> Response<String>
    where
        S: Service<Request<String>, Response = Response<String>, Error = Infallible>,
    {
        let mut req = Request::builder().uri(path);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .unwrap();
        service
            .call(req.body(String::new()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn protects_with_401_403_and_lets_public_paths_and_holders_through() {
        let key = SigningKey::p256("k1");
        let fake = FakeIssuer::start(&[&key]).await;
        let validator = Validator::new(Issuer::new(&fake.url).unwrap(), "reports-api");
        let claims = |aud: &str, permissions: &[&str]| {
            json!({"iss": fake.url, "sub": "user-ann", "aud": aud, "client_id": "web",
                   "iat": unix_now(), "exp": unix_now() + 300, "permissions": permissions})
        };
        let reader = key.sign("at+jwt", &claims("reports-api", &["reports:*"]));
        let other = key.sign("at+jwt", &claims("reports-api", &["invoices:read"]));
        let elsewhere = key.sign("at+jwt", &claims("another-api", &["reports:*"]));
        let id_token = key.sign("JWT", &claims("reports-api", &["reports:*"]));
        let mut app = ProtectLayer::new(validator)
            .public("/health")
            .layer(RequireLayer::new("reports:read").layer(Echo));
        let mut open = ProtectLayer::new(Validator::new(
            Issuer::new(&fake.url).unwrap(),
            "reports-api",
        ))
        .public("/health")
        .layer(Echo);

        let ok = send(&mut app, "/reports", Some(&reader)).await;
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.body(), "user-ann");

        let none = send(&mut app, "/reports", None).await;
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(none.headers()[WWW_AUTHENTICATE], "Bearer");

        for bad in [elsewhere.as_str(), id_token.as_str(), "not-a-jwt"] {
            let refused = send(&mut app, "/reports", Some(bad)).await;
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                refused.headers()[WWW_AUTHENTICATE],
                "Bearer error=\"invalid_token\""
            );
        }

        let forbidden = send(&mut app, "/reports", Some(&other)).await;
        assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            forbidden.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"insufficient_scope\", scope=\"reports:read\""
        );

        // Public: no token needed below /health, but /healthz is not below it.
        let health = send(&mut open, "/health/live", None).await;
        assert_eq!(health.status(), StatusCode::OK);
        assert_eq!(health.body(), "anonymous");
        let healthz = send(&mut open, "/healthz", None).await;
        assert_eq!(healthz.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_503_not_401() {
        let key = SigningKey::p256("k1");
        // A port nothing listens on: the JWKS cannot be fetched.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let issuer = format!("http://127.0.0.1:{port}");
        let token = key.sign(
            "at+jwt",
            &json!({"iss": issuer, "sub": "u", "aud": "api", "exp": unix_now() + 60}),
        );
        let mut app =
            ProtectLayer::new(Validator::new(Issuer::new(&issuer).unwrap(), "api")).layer(Echo);
        let down = send(&mut app, "/x", Some(&token)).await;
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.headers()[RETRY_AFTER], "5");
    }

    #[test]
    fn reads_only_bearer_credentials() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers).unwrap(), None);
        headers.insert("authorization", HeaderValue::from_static("Basic dTpw"));
        assert_eq!(bearer(&headers).unwrap(), None);
        headers.insert("authorization", HeaderValue::from_static("bearer abc"));
        assert_eq!(bearer(&headers).unwrap(), Some("abc"));
        headers.insert("authorization", HeaderValue::from_static("Bearer a b"));
        assert!(bearer(&headers).is_err());
    }
}
