//! Logins from the login request's own headers (a provider with the header capability:
//! Kerberos SPNEGO today, trusted reverse-proxy headers or client certificates later).
//!
//! `GET /login/{provider}` sends the browser to `GET /login/{provider}/header?req=…&csrf=…`,
//! whose URL carries the CSRF token bound to the pending login and the browser (as the
//! password form's POST does), and which also needs the browser-binding cookie. There
//! the provider reads the headers it declared and answers:
//!
//! - an identity: the login finishes as any other, and the provider's headers (the
//!   Kerberos mutual-authentication token) go with that response;
//! - a challenge (`401`, `WWW-Authenticate: Negotiate`): the browser gets it with the
//!   page of other ways to sign in (the password form of the same provider when it has
//!   one) as the body, so a browser with a ticket retries this URL with
//!   `Authorization: Negotiate …`, and one without simply shows the page;
//! - not possible: that page, without a challenge.
//!
//! A refusal of what the headers carried (a bad, replayed or foreign ticket, a realm not
//! allowed) shows the person one message whatever the reason, which is in the log, and
//! no new challenge (the browser would only send the same ticket again).

use super::{finish, password, provider};
use crate::flow::PendingLogin;
use crate::metrics::LoginOutcome;
use crate::providers::ProviderEntry;
use crate::sessions;
use crate::web::client_ip::client_ip;
use crate::web::{AppState, PageError, see_other};
use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use std::collections::BTreeMap;
use switchboard_plugin_api::{HeaderAnswer, HeaderRequest, ProviderError, ResponseHeader};

/// What the person sees for every refusal of a header login (a catalogue key).
const REFUSED: &str = "msg.ticket_refused";
const UNAVAILABLE: &str = "msg.unavailable";
/// Request headers never handed to a provider, whatever it declared.
const NEVER_PASSED: [&str; 2] = ["cookie", "proxy-authorization"];
/// Response headers a provider may set: the ones a challenge or its answer needs.
const MAY_SET: [&str; 1] = ["www-authenticate"];
/// Longer header values are not passed (a Kerberos ticket with a large PAC is a few KB).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Where a login through `entry` goes first: the header login, with its CSRF token.
pub(super) fn start(app: &AppState, p: &PendingLogin, entry: &ProviderEntry) -> HttpResponse {
    let csrf = sessions::csrf_token(&app.master, &p.id, &p.binding);
    see_other(&format!(
        "/login/{}/header?req={}&csrf={}",
        entry.id,
        urlencode(&p.id),
        urlencode(&csrf)
    ))
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[derive(Debug, Deserialize)]
pub(super) struct HeaderQuery {
    req: Option<String>,
    csrf: Option<String>,
}

/// GET `/login/{provider}/header?req=…&csrf=…`.
pub(super) async fn attempt(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<HeaderQuery>,
) -> Result<HttpResponse, PageError> {
    let p = PendingLogin::load(&app, &req, q.req.as_deref()).await?;
    let csrf_good = q
        .csrf
        .as_deref()
        .is_some_and(|t| sessions::check_csrf(&app.master, &p.id, &p.binding, t));
    if !csrf_good {
        tracing::warn!("header login with a missing or wrong CSRF token");
        return Err(PageError::sign_in(
            StatusCode::FORBIDDEN,
            "msg.form_expired_back",
        ));
    }
    let entry = provider(&app, &path)?;
    if !entry.has_header() {
        return Err(PageError::sign_in(
            StatusCode::NOT_FOUND,
            "msg.no_such_method",
        ));
    }
    let request = HeaderRequest::new(
        passed_headers(&req),
        client_ip(&req, &app.config.trusted_proxies).map(|ip| ip.to_string()),
    );
    match entry.read_headers(request).await {
        Ok(HeaderAnswer::Identity { identity, headers }) => {
            let mut res = finish::finish(&req, &app, p, entry, *identity).await?;
            add_headers(&mut res, entry, &headers);
            Ok(res)
        }
        Ok(HeaderAnswer::Challenge { status, headers }) => {
            let status = StatusCode::from_u16(status)
                .ok()
                .filter(|s| s.is_client_error())
                .unwrap_or(StatusCode::UNAUTHORIZED);
            let mut res = other_ways(&app, &p, entry, None, status)?;
            add_headers(&mut res, entry, &headers);
            Ok(res)
        }
        // Not possible here (or an answer of a newer plugin-api this broker does not
        // know): the other ways to sign in.
        Ok(_) => other_ways(&app, &p, entry, None, StatusCode::OK),
        Err(ProviderError::InvalidCredentials) => {
            tracing::info!(provider = %entry.id, "header login refused");
            app.metrics
                .login(&entry.id, LoginOutcome::InvalidCredentials);
            other_ways(&app, &p, entry, Some(REFUSED), StatusCode::FORBIDDEN)
        }
        Err(ProviderError::Denied { reason }) => {
            tracing::info!(provider = %entry.id, %reason, "header login denied");
            app.metrics.login(&entry.id, LoginOutcome::Failed);
            other_ways(&app, &p, entry, Some(REFUSED), StatusCode::FORBIDDEN)
        }
        Err(e) => {
            tracing::error!(provider = %entry.id, error = %e, "header login failed");
            app.metrics.login(&entry.id, LoginOutcome::Failed);
            other_ways(
                &app,
                &p,
                entry,
                Some(UNAVAILABLE),
                StatusCode::SERVICE_UNAVAILABLE,
            )
        }
    }
}

/// The request's headers a provider may see (the plugin host narrows them further to
/// what the plugin declared): never cookies, never oversized values.
fn passed_headers(req: &HttpRequest) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    for name in req.headers().keys() {
        let lower = name.as_str().to_ascii_lowercase();
        if NEVER_PASSED.contains(&lower.as_str()) {
            continue;
        }
        let mut values = req.headers().get_all(name);
        // A repeated header is not something a credential header may be.
        let (Some(value), None) = (values.next(), values.next()) else {
            continue;
        };
        if value.len() > MAX_HEADER_BYTES {
            continue;
        }
        if let Ok(value) = value.to_str() {
            headers.insert(lower, value.to_owned());
        }
    }
    headers
}

/// Adds the provider's response headers that it may set; others are dropped and logged.
fn add_headers(res: &mut HttpResponse, entry: &ProviderEntry, headers: &[ResponseHeader]) {
    for header in headers {
        let name = header.name.to_ascii_lowercase();
        let parsed = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&header.value),
        );
        match parsed {
            (Ok(name), Ok(value)) if MAY_SET.contains(&name.as_str()) => {
                res.headers_mut().append(name, value);
            }
            _ => {
                tracing::warn!(provider = %entry.id, header = %header.name, "provider asked for a response header it may not set; dropped");
            }
        }
    }
}

/// The page of other ways to sign in: this provider's password form when it has one,
/// else the list of providers.
fn other_ways(
    app: &AppState,
    p: &PendingLogin,
    entry: &ProviderEntry,
    error: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    if entry.has_password() {
        let hint = p.login_hint().unwrap_or_default().to_string();
        return Ok(password::page(app, p, entry, &hint, error, status));
    }
    if let Some(message) = error {
        return Err(PageError::sign_in(status, message));
    }
    let providers: Vec<_> = app
        .providers
        .all()
        .iter()
        .filter(|e| e.id != entry.id)
        .map(|e| minijinja::context! { id => &e.id, name => &e.name })
        .collect();
    Ok(app.pages.render(
        "choose.html",
        status,
        minijinja::context! { client_name => p.heading(app), providers, login_id => &p.id },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_never_reach_a_provider_and_repeated_headers_are_dropped() {
        let req = actix_web::test::TestRequest::get()
            .insert_header(("Authorization", "Negotiate abc"))
            .insert_header(("Cookie", "session=secret"))
            .append_header(("X-Remote-User", "ada"))
            .append_header(("X-Remote-User", "eve"))
            .to_http_request();
        let headers = passed_headers(&req);
        assert_eq!(
            headers.get("authorization").map(String::as_str),
            Some("Negotiate abc")
        );
        assert!(!headers.contains_key("cookie"));
        assert!(!headers.contains_key("x-remote-user"));
    }
}
