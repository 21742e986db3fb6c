//! actix-web: a middleware that authenticates every request outside the public
//! paths, the [`Principal`] extractor, and [`require`] for one permission.
//!
//! Not logged in (no or a bad token) is 401 with `WWW-Authenticate: Bearer` (plus
//! `error="invalid_token"` when a credential was presented); logged in without the
//! permission is 403 with `error="insufficient_scope"`; a broker that cannot be asked
//! (JWKS or introspection unreachable) is 503, never a 401.
//!
//! ```no_run
//! use actix_web::{App, HttpServer, web};
//! use switchboard_client::actix::{Protect, require};
//! use switchboard_client::{ClientSecret, Introspector, Issuer, Principal, Validator};
//!
//! async fn invoices(who: Principal) -> String { format!("hello {}", who.sub) }
//! async fn health() -> &'static str { "ok" }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let issuer = Issuer::new("https://login.example.com").map_err(std::io::Error::other)?;
//!     let protect = Protect::new(Validator::new(issuer.clone(), "https://api.example.com"))
//!         .introspector(Introspector::new(issuer, "invoices-api", ClientSecret::new("s3cret")))
//!         .public("/health")
//!         .api_keys("/reports")
//!         .introspect("/payments");
//!     HttpServer::new(move || {
//!         App::new()
//!             .wrap(protect.clone())
//!             .route("/health", web::get().to(health))
//!             .service(
//!                 web::resource("/invoices/approve")
//!                     .wrap(require("invoices:approve"))
//!                     .route(web::post().to(invoices)),
//!             )
//!     })
//!     .bind("127.0.0.1:8080")?
//!     .run()
//!     .await
//! }
//! ```

use crate::error::TokenError;
use crate::introspection::Introspector;
use crate::principal::Principal;
use crate::validator::Validator;
use actix_web::body::EitherBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// Why a request was refused, as an HTTP answer (RFC 6750).
///
/// ```
/// use actix_web::ResponseError;
/// use switchboard_client::actix::AuthError;
/// let missing = AuthError::Missing.error_response();
/// assert_eq!(missing.status(), 401);
/// let challenge = missing.headers().get("www-authenticate").and_then(|v| v.to_str().ok());
/// assert_eq!(challenge, Some("Bearer"));
/// let forbidden = AuthError::Forbidden("invoices:approve".into()).error_response();
/// assert_eq!(forbidden.status(), 403);
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credential was presented: 401 with `WWW-Authenticate: Bearer`.
    #[error("an access token is required")]
    Missing,
    /// The credential was refused: 401 `invalid_token`; or it could not be checked:
    /// 503.
    #[error("{0}")]
    Invalid(TokenError),
    /// The caller lacks the permission: 403 `insufficient_scope`.
    #[error("the permission {0} is required")]
    Forbidden(String),
    /// A route accepts API keys or wants introspection, but [`Protect`] has no
    /// [`Introspector`]: 500, logged.
    #[error("the API is misconfigured")]
    Misconfigured,
}

impl AuthError {
    /// `Ok` when `principal` holds `permission`, else [`AuthError::Forbidden`]: for
    /// checks inside a handler.
    ///
    /// ```
    /// # use switchboard_client::{Principal, actix::AuthError};
    /// let bob = Principal::new("user-bob");
    /// assert!(AuthError::require(&bob, "invoices:approve").is_err());
    /// ```
    pub fn require(principal: &Principal, permission: &str) -> Result<(), AuthError> {
        if principal.allows(permission) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(permission.to_string()))
        }
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        match self {
            AuthError::Missing => StatusCode::UNAUTHORIZED,
            AuthError::Invalid(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Invalid(_) => StatusCode::UNAUTHORIZED,
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (code, challenge) = match self {
            AuthError::Missing => ("unauthorized", Some("Bearer".to_string())),
            AuthError::Invalid(e) if e.is_unavailable() => ("temporarily_unavailable", None),
            AuthError::Invalid(_) => (
                "invalid_token",
                Some("Bearer error=\"invalid_token\"".to_string()),
            ),
            AuthError::Forbidden(permission) => (
                "insufficient_scope",
                Some(format!(
                    "Bearer error=\"insufficient_scope\", scope=\"{}\"",
                    permission.replace(['"', '\\'], "")
                )),
            ),
            AuthError::Misconfigured => ("server_error", None),
        };
        let mut response = HttpResponse::build(self.status_code());
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.insert_header((header::WWW_AUTHENTICATE, value));
        }
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        response.json(serde_json::json!({
            "error": code,
            "error_description": self.to_string(),
        }))
    }
}

/// The caller of the request, as [`Protect`] authenticated it; 401 when there is
/// none. Take `Option<Principal>` on a public path that may be called either way.
impl FromRequest for Principal {
    type Error = AuthError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .ok_or(AuthError::Missing),
        )
    }
}

/// What a request presented.
#[derive(Debug, PartialEq, Eq)]
enum Presented<'a> {
    Bearer(&'a str),
    ApiKey(&'a str),
}

/// Reads `Authorization`: `Bearer TOKEN`, or an API key as `Token KEY` (or as a
/// bearer starting with `sbk_`, the broker's key prefix).
fn presented(value: Option<&HeaderValue>) -> Result<Option<Presented<'_>>, TokenError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| TokenError::Malformed)?;
    let (scheme, credential) = text.trim().split_once(' ').ok_or(TokenError::Malformed)?;
    let credential = credential.trim();
    if credential.is_empty() || credential.contains(char::is_whitespace) {
        return Err(TokenError::Malformed);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        if credential.starts_with("sbk_") {
            Ok(Some(Presented::ApiKey(credential)))
        } else {
            Ok(Some(Presented::Bearer(credential)))
        }
    } else if scheme.eq_ignore_ascii_case("token") {
        Ok(Some(Presented::ApiKey(credential)))
    } else {
        // Another scheme (Basic, say) is no credential of ours.
        Ok(None)
    }
}

/// Whether `path` is `prefix` or below it, segment-wise (`/reports` covers
/// `/reports/2026`, not `/reportsx`).
fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[derive(Debug, Clone)]
struct Policy {
    validator: Validator,
    introspector: Option<Introspector>,
    public: Vec<String>,
    api_keys: Vec<String>,
    introspect: Vec<String>,
}

impl Policy {
    async fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
        path: &str,
    ) -> Result<Principal, AuthError> {
        let presented = presented(authorization).map_err(AuthError::Invalid)?;
        match presented {
            None => Err(AuthError::Missing),
            Some(Presented::ApiKey(key)) => {
                if !self.api_keys.iter().any(|p| under(path, p)) {
                    return Err(AuthError::Invalid(TokenError::ApiKeyNotAccepted));
                }
                let introspector = self.introspector()?;
                introspector.api_key(key).await.map_err(AuthError::Invalid)
            }
            Some(Presented::Bearer(token)) => {
                let principal = self
                    .validator
                    .validate(token)
                    .await
                    .map_err(AuthError::Invalid)?;
                if self.introspect.iter().any(|p| under(path, p)) {
                    self.introspector()?
                        .active(token)
                        .await
                        .map_err(AuthError::Invalid)?;
                }
                Ok(principal)
            }
        }
    }

    fn introspector(&self) -> Result<&Introspector, AuthError> {
        self.introspector.as_ref().ok_or_else(|| {
            tracing::error!(
                "a route accepts API keys or introspects, but Protect has no introspector"
            );
            AuthError::Misconfigured
        })
    }
}

/// The middleware: every request outside the public paths must carry a valid access
/// token (`Authorization: Bearer …`); under the [`api_keys`](Protect::api_keys)
/// paths a person's API key (`Authorization: Token sbk_…`) is accepted too, verified
/// by introspection; under the [`introspect`](Protect::introspect) paths an access
/// token is also introspected, so a revocation counts within the introspector's cache
/// time rather than at the token's expiry. Paths are prefixes compared segment by
/// segment. The caller reaches handlers as a [`Principal`].
///
/// ```
/// use actix_web::{App, test, web};
/// use switchboard_client::actix::Protect;
/// use switchboard_client::{Issuer, Principal, Validator};
///
/// # actix_web::rt::System::new().block_on(async {
/// let issuer = Issuer::new("https://login.example.com")?;
/// let protect = Protect::new(Validator::new(issuer, "reports-api")).public("/health");
/// let app = test::init_service(
///     App::new()
///         .wrap(protect)
///         .route("/health", web::get().to(|| async { "ok" }))
///         .route("/reports", web::get().to(|who: Principal| async move { who.sub })),
/// )
/// .await;
/// let open = test::call_service(&app, test::TestRequest::get().uri("/health").to_request()).await;
/// assert_eq!(open.status(), 200);
/// let closed = test::call_service(&app, test::TestRequest::get().uri("/reports").to_request()).await;
/// assert_eq!(closed.status(), 401);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Protect {
    policy: Arc<Policy>,
}

impl Protect {
    /// Protects everything with `validator`.
    ///
    /// ```
    /// use switchboard_client::{Issuer, Validator, actix::Protect};
    /// let issuer = Issuer::new("https://login.example.com")?;
    /// let protect = Protect::new(Validator::new(issuer, "https://api.example.com"));
    /// # let _ = protect;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn new(validator: Validator) -> Self {
        Protect {
            policy: Arc::new(Policy {
                validator,
                introspector: None,
                public: Vec::new(),
                api_keys: Vec::new(),
                introspect: Vec::new(),
            }),
        }
    }

    fn edit(self, change: impl FnOnce(&mut Policy)) -> Self {
        let mut policy = (*self.policy).clone();
        change(&mut policy);
        Protect {
            policy: Arc::new(policy),
        }
    }

    /// The introspector used for API keys and introspected routes.
    ///
    /// ```
    /// use switchboard_client::{ClientSecret, Introspector, Issuer, Validator, actix::Protect};
    /// let issuer = Issuer::new("https://login.example.com")?;
    /// let protect = Protect::new(Validator::new(issuer.clone(), "reports-api"))
    ///     .introspector(Introspector::new(issuer, "reports-api", ClientSecret::new("s3cret")));
    /// # let _ = protect;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn introspector(self, introspector: Introspector) -> Self {
        self.edit(|p| p.introspector = Some(introspector))
    }

    /// Leaves `prefix` (and the paths below it) open: no credential needed.
    ///
    /// ```
    /// use switchboard_client::{Issuer, Validator, actix::Protect};
    /// let validator = Validator::new(Issuer::new("https://login.example.com")?, "reports-api");
    /// // `/health` and `/docs/...` need no token; `/healthz` does.
    /// let protect = Protect::new(validator).public("/health").public("/docs");
    /// # let _ = protect;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn public(self, prefix: &str) -> Self {
        let prefix = prefix.to_string();
        self.edit(|p| p.public.push(prefix))
    }

    /// Accepts API keys below `prefix` (needs an [`introspector`](Protect::introspector)).
    ///
    /// ```
    /// use switchboard_client::{ClientSecret, Introspector, Issuer, Validator, actix::Protect};
    /// let issuer = Issuer::new("https://login.example.com")?;
    /// let protect = Protect::new(Validator::new(issuer.clone(), "reports-api"))
    ///     .introspector(Introspector::new(issuer, "reports-api", ClientSecret::new("s3cret")))
    ///     .api_keys("/reports/export");
    /// # let _ = protect;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn api_keys(self, prefix: &str) -> Self {
        let prefix = prefix.to_string();
        self.edit(|p| p.api_keys.push(prefix))
    }

    /// Introspects access tokens below `prefix` (needs an
    /// [`introspector`](Protect::introspector)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard_client::{ClientSecret, Introspector, Issuer, Validator, actix::Protect};
    /// let issuer = Issuer::new("https://login.example.com")?;
    /// let introspector = Introspector::new(issuer.clone(), "payments-api", ClientSecret::new("s3cret"))
    ///     .cache_for(Duration::from_secs(2));
    /// // A revoked token stops at /payments within 2 s, elsewhere at its expiry.
    /// let protect = Protect::new(Validator::new(issuer, "payments-api"))
    ///     .introspector(introspector)
    ///     .introspect("/payments");
    /// # let _ = protect;
    /// # Ok::<(), switchboard_client::FetchError>(())
    /// ```
    pub fn introspect(self, prefix: &str) -> Self {
        let prefix = prefix.to_string();
        self.edit(|p| p.introspect.push(prefix))
    }
}

impl<S, B> Transform<S, ServiceRequest> for Protect
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = ProtectService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ProtectService {
            service: Rc::new(service),
            policy: Arc::clone(&self.policy),
        }))
    }
}

/// The service [`Protect`] wraps around an app or scope (made by actix-web from
/// [`Protect`]; you do not build one yourself).
///
/// ```
/// use actix_web::{App, web};
/// use switchboard_client::{Issuer, Validator, actix::Protect};
/// let protect = Protect::new(Validator::new(Issuer::new("https://login.example.com")?, "api"));
/// // `wrap` turns `protect` into a `ProtectService` around each worker's app.
/// let app = App::new().wrap(protect).route("/", web::get().to(|| async { "hi" }));
/// # let _ = app;
/// # Ok::<(), switchboard_client::FetchError>(())
/// ```
#[derive(Debug)]
pub struct ProtectService<S> {
    service: Rc<S>,
    policy: Arc<Policy>,
}

impl<S, B> Service<ServiceRequest> for ProtectService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let path = req.path().to_string();
            if policy.public.iter().any(|p| under(&path, p)) {
                return service
                    .call(req)
                    .await
                    .map(ServiceResponse::map_into_left_body);
            }
            let authorization = req.headers().get(header::AUTHORIZATION).cloned();
            match policy.authenticate(authorization.as_ref(), &path).await {
                Ok(principal) => {
                    req.extensions_mut().insert(principal);
                    service
                        .call(req)
                        .await
                        .map(ServiceResponse::map_into_left_body)
                }
                Err(refused) => {
                    match &refused {
                        AuthError::Invalid(e) if e.is_unavailable() => {
                            tracing::warn!(path = %path, error = %e, "cannot check a credential");
                        }
                        _ => tracing::debug!(path = %path, reason = %refused, "request refused"),
                    }
                    let response = refused.error_response();
                    Ok(req.into_response(response).map_into_right_body())
                }
            }
        })
    }
}

/// A middleware for one resource or scope, inside [`Protect`]: the caller must hold
/// `permission` (403 `insufficient_scope` otherwise, 401 when nobody is logged in).
/// A `permission` that is not valid grammar allows nobody (and is logged).
///
/// ```
/// use actix_web::{App, web};
/// use switchboard_client::actix::require;
///
/// let app = App::new().service(
///     web::resource("/invoices/{id}/approve")
///         .wrap(require("invoices:approve"))
///         .route(web::post().to(|| async { "approved" })),
/// );
/// ```
pub fn require(permission: &str) -> Require {
    Require {
        permission: Arc::from(permission),
        valid: switchboard_access::Permission::parse(permission).is_ok(),
    }
}

/// The middleware [`require`] returns: 403 `insufficient_scope` unless the caller
/// (set by [`Protect`], which must wrap it) holds the permission.
///
/// ```
/// use actix_web::{App, web};
/// use switchboard_client::actix::{Require, require};
/// let approve: Require = require("invoices:approve");
/// let app = App::new().service(
///     web::resource("/invoices/approve")
///         .wrap(approve)
///         .route(web::post().to(|| async { "approved" })),
/// );
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct Require {
    permission: Arc<str>,
    valid: bool,
}

impl<S, B> Transform<S, ServiceRequest> for Require
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RequireService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        if !self.valid {
            tracing::error!(permission = %self.permission, "require() names an invalid permission: nobody is allowed");
        }
        ready(Ok(RequireService {
            service: Rc::new(service),
            permission: Arc::clone(&self.permission),
            valid: self.valid,
        }))
    }
}

/// The service [`require`] wraps around a resource or scope (made by actix-web from
/// [`Require`]).
///
/// ```
/// use actix_web::{App, web};
/// use switchboard_client::actix::require;
/// // `wrap` turns the `Require` into a `RequireService` around the scope.
/// let app = App::new().service(web::scope("/admin").wrap(require("admin:*")));
/// # let _ = app;
/// ```
#[derive(Debug)]
pub struct RequireService<S> {
    service: Rc<S>,
    permission: Arc<str>,
    valid: bool,
}

impl<S, B> Service<ServiceRequest> for RequireService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let verdict = match req.extensions().get::<Principal>() {
            None => Err(AuthError::Missing),
            Some(p) if self.valid && p.allows(&self.permission) => Ok(()),
            Some(_) => Err(AuthError::Forbidden(self.permission.to_string())),
        };
        match verdict {
            Ok(()) => {
                let service = Rc::clone(&self.service);
                Box::pin(async move {
                    service
                        .call(req)
                        .await
                        .map(ServiceResponse::map_into_left_body)
                })
            }
            Err(refused) => {
                let response = refused.error_response();
                Box::pin(ready(Ok(req.into_response(response).map_into_right_body())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::Issuer;
    use actix_web::test as server;
    use actix_web::{App, web};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// A JWT-shaped access token (its signature is never reached in these tests).
    fn token_shape() -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"at+jwt","kid":"k"}"#);
        format!("{header}.e30.c2ln")
    }

    #[actix_web::test]
    async fn public_paths_missing_credentials_and_an_unreachable_broker_answer_apart() {
        // Nothing listens on port 9: the JWKS cannot be fetched.
        let issuer = Issuer::new("http://127.0.0.1:9").unwrap_or_else(|e| panic!("{e}"));
        let protect = Protect::new(Validator::new(issuer, "https://api.example"))
            .public("/open")
            .api_keys("/keys");
        let app = server::init_service(
            App::new()
                .wrap(protect)
                .route("/x", web::get().to(|| async { "x" }))
                .route("/keys", web::get().to(|| async { "k" }))
                .route(
                    "/open",
                    web::get().to(|p: Option<Principal>| async move { p.is_some().to_string() }),
                ),
        )
        .await;
        let call = |uri: &str, auth: Option<String>| {
            let mut req = server::TestRequest::get().uri(uri);
            if let Some(a) = auth {
                req = req.insert_header((header::AUTHORIZATION, a));
            }
            req.to_request()
        };
        let open = server::call_service(&app, call("/open", None)).await;
        assert_eq!(open.status(), StatusCode::OK);
        assert_eq!(server::read_body(open).await, "false");

        let none = server::call_service(&app, call("/x", None)).await;
        assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            none.headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        let basic = server::call_service(&app, call("/x", Some("Basic dXNlcjpwYXNz".into()))).await;
        assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);

        // The broker cannot be asked: 503 (try again), never a 401 that logs people out.
        let down =
            server::call_service(&app, call("/x", Some(format!("Bearer {}", token_shape())))).await;
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(down.headers().contains_key(header::RETRY_AFTER));

        // Keys where keys are allowed, but no introspector configured: 500, not a pass.
        let keys = server::call_service(&app, call("/keys", Some("Token sbk_x".into()))).await;
        assert_eq!(keys.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let elsewhere = server::call_service(&app, call("/x", Some("Token sbk_x".into()))).await;
        assert_eq!(elsewhere.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn prefixes_cover_their_own_segments_only() {
        assert!(under("/reports", "/reports"));
        assert!(under("/reports/2026", "/reports"));
        assert!(under("/reports/2026", "/reports/"));
        assert!(!under("/reportsx", "/reports"));
        assert!(!under("/", "/reports"));
        assert!(under("/anything", "/"));
    }

    #[test]
    fn authorization_headers_are_read_strictly() {
        let h =
            |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("x"));
        assert_eq!(presented(None).ok(), Some(None));
        assert_eq!(
            presented(Some(&h("Bearer abc"))).ok(),
            Some(Some(Presented::Bearer("abc")))
        );
        assert_eq!(
            presented(Some(&h("bearer abc"))).ok(),
            Some(Some(Presented::Bearer("abc")))
        );
        assert_eq!(
            presented(Some(&h("Token sbk_x"))).ok(),
            Some(Some(Presented::ApiKey("sbk_x")))
        );
        assert_eq!(
            presented(Some(&h("Bearer sbk_x"))).ok(),
            Some(Some(Presented::ApiKey("sbk_x")))
        );
        assert_eq!(presented(Some(&h("Basic dXNlcjpwYXNz"))).ok(), Some(None));
        assert!(presented(Some(&h("Bearer"))).is_err());
        assert!(presented(Some(&h("Bearer a b"))).is_err());
    }
}
