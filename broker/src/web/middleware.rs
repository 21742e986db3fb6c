//! The one middleware around every request ([`RequestContext`]): a request id in the
//! span and the response, its count and latency in the metrics, security headers
//! (HSTS too when the issuer is https), the request's language (from
//! `Accept-Language`, see [`super::i18n`]), a page error rendered as the page (with
//! that request id), and an optional gate that answers a request itself (the admin
//! listener check).
//!
//! One layer instead of a stack of `from_fn` layers: everything it needs (pages,
//! metrics, the id source) is captured when the server is built, so a request pays for
//! one boxed future and no `app_data` lookups.

use super::pages::{PageError, Pages};
use crate::metrics::Metrics;
use actix_web::HttpResponse;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

/// Answers a request before it reaches the routes, or lets it through (`None`).
pub type Gate = Box<dyn Fn(&ServiceRequest) -> Option<HttpResponse>>;

/// Request ids: unique per request, for correlating a response (or an error page) with
/// the log. Not a secret and no capability — nothing is ever authorised by one — so
/// they need not come from the CSPRNG per request (a syscall and most of this layer's
/// cost): each is 8 random bytes drawn once per process followed by a per-process
/// counter run through a keyed bijection of `u64`. Unique within a process by
/// construction (the counter never repeats, the mixing is invertible), across
/// processes and replicas by the 64-bit random prefix; the mixing keeps the raw
/// request count from being read off consecutive ids. Same form as before: 16 bytes,
/// base64url, 22 characters.
#[derive(Debug)]
pub struct RequestIds {
    prefix: [u8; 8],
    key: [u64; 2],
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> Result<Self, crate::secrets::SecretsError> {
        let bytes = crate::secrets::random_bytes::<24>()?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&bytes[..8]);
        Ok(RequestIds {
            prefix,
            key: [word(8), word(16)],
            next: AtomicU64::new(0),
        })
    }

    /// The next id, as a header value (its text is the id).
    pub fn next_id(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&self.prefix);
        raw[8..].copy_from_slice(&mix(n ^ self.key[0], self.key[1]).to_be_bytes());
        let mut text = [0u8; 22];
        match URL_SAFE_NO_PAD.encode_slice(raw, &mut text) {
            // base64url is always a valid header value.
            Ok(22) => HeaderValue::from_bytes(&text).unwrap_or(HeaderValue::from_static("-")),
            _ => HeaderValue::from_static("-"),
        }
    }
}

/// A bijection of `u64` (the splitmix64 finalizer after adding `key`): distinct
/// inputs give distinct outputs.
fn mix(x: u64, key: u64) -> u64 {
    let mut z = x.wrapping_add(key);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The security headers every response carries; HSTS as well when `https`.
/// A response that set its own Content-Security-Policy keeps it.
pub fn security_headers(h: &mut HeaderMap, https: bool) {
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(super::pages::CONTENT_SECURITY_POLICY),
        );
    }
    if https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
}

struct Shared {
    pages: Arc<Pages>,
    metrics: Arc<Metrics>,
    ids: Arc<RequestIds>,
    https: bool,
    gate: Option<Gate>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("https", &self.https)
            .field("gate", &self.gate.is_some())
            .finish_non_exhaustive()
    }
}

/// The middleware (see the module documentation). Built once per worker.
#[derive(Clone, Debug)]
pub struct RequestContext(Rc<Shared>);

impl RequestContext {
    /// `gate`, when set, may answer a request before the routes do (that answer gets
    /// the same id, headers and metrics).
    pub fn new(
        pages: Arc<Pages>,
        metrics: Arc<Metrics>,
        ids: Arc<RequestIds>,
        https: bool,
        gate: Option<Gate>,
    ) -> Self {
        RequestContext(Rc::new(Shared {
            pages,
            metrics,
            ids,
            https,
            gate,
        }))
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestContext
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RequestContextService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestContextService {
            service,
            shared: self.0.clone(),
        }))
    }
}

#[derive(Debug)]
pub struct RequestContextService<S> {
    service: S,
    shared: Rc<Shared>,
}

type Answer<B> = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>;

impl<S, B> Service<ServiceRequest> for RequestContextService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Answer<B>>>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = std::time::Instant::now();
        let shared = self.shared.clone();
        let id = shared.ids.next_id();
        let span = tracing::info_span!(
            "request",
            request_id = %id.to_str().unwrap_or("-"),
            method = %req.method(),
            path = %req.path(),
        );
        let gated = shared.gate.as_ref().and_then(|gate| gate(&req));
        let inner = match gated {
            Some(answer) => {
                let (req, _) = req.into_parts();
                let res = ServiceResponse::new(req, answer).map_into_right_body();
                return Box::pin(
                    async move { Ok(finish(&shared, res, id, started)) }.instrument(span),
                );
            }
            None => {
                let locale = req
                    .headers()
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| shared.pages.catalogues().from_accept_language(h));
                (span.in_scope(|| self.service.call(req)), locale)
            }
        };
        let (inner, locale) = inner;
        let handled = async move {
            let res = inner.await?;
            let res = render_page_error(&shared.pages, res, id.to_str().unwrap_or("-"));
            Ok(finish(&shared, res, id, started))
        }
        .instrument(span);
        Box::pin(super::i18n::with_locale(locale, handled))
    }
}

/// Headers, metrics and the log line of an answered request.
fn finish<B>(
    shared: &Shared,
    mut res: ServiceResponse<B>,
    id: HeaderValue,
    started: std::time::Instant,
) -> ServiceResponse<B> {
    let h = res.headers_mut();
    h.insert(header::HeaderName::from_static("x-request-id"), id);
    security_headers(h, shared.https);
    let elapsed = started.elapsed();
    let status = res.status().as_u16();
    shared.metrics.observe_request(
        res.request().method().as_str(),
        res.request().match_pattern().as_deref(),
        status,
        elapsed,
    );
    tracing::info!(status, elapsed_ms = elapsed.as_millis() as u64, "served");
    res
}

/// A handler that failed with a [`PageError`] gets the full page, which needs the
/// templates and the request id that only this layer has together.
fn render_page_error<B>(
    pages: &Pages,
    res: ServiceResponse<B>,
    request_id: &str,
) -> ServiceResponse<EitherBody<B>> {
    let page = res
        .response()
        .error()
        .and_then(|e| e.as_error::<PageError>())
        .cloned();
    match page {
        Some(page) => {
            let rendered = pages.error_page(&page, Some(request_id));
            res.into_response(rendered).map_into_right_body()
        }
        None => res.map_into_left_body(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed step should fail the test loudly
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn request_ids_are_unique_base64url_and_differ_between_processes() {
        let ids = RequestIds::new().unwrap();
        let seen: HashSet<String> = (0..10_000)
            .map(|_| ids.next_id().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(seen.len(), 10_000);
        for id in &seen {
            assert_eq!(id.len(), 22, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{id}"
            );
        }
        // Another process (another random prefix and key) starts elsewhere.
        let other = RequestIds::new().unwrap();
        let first = other.next_id().to_str().unwrap().to_owned();
        assert!(!seen.contains(&first));
        assert_ne!(first[..11], seen.iter().next().unwrap()[..11]);
    }

    #[test]
    fn security_headers_keep_a_page_policy_and_add_hsts_on_https() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'"),
        );
        security_headers(&mut h, false);
        assert_eq!(
            h.get(header::CONTENT_SECURITY_POLICY).unwrap(),
            "default-src 'self'"
        );
        assert_eq!(h.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
        assert!(h.get(header::STRICT_TRANSPORT_SECURITY).is_none());
        security_headers(&mut h, true);
        assert_eq!(
            h.get(header::STRICT_TRANSPORT_SECURITY).unwrap(),
            "max-age=31536000; includeSubDomains"
        );
    }
}
