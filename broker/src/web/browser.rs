//! What the browser's cookies say: its SSO session, and the binding value that ties a
//! pending login (and its CSRF tokens) to the browser that started it.

use super::AppState;
use super::pages::PageError;
use crate::sessions;
use crate::store::SessionRecord;
use actix_web::HttpRequest;
use actix_web::cookie::Cookie;

/// The live SSO session of this browser, if any.
pub async fn session(
    req: &HttpRequest,
    app: &AppState,
) -> Result<Option<SessionRecord>, PageError> {
    let cookie = req.cookie(app.cookies.session_name());
    sessions::current(
        &app.store,
        &app.master,
        cookie.as_ref().map(|c| c.value()),
        app.clock.now(),
    )
    .await
    .map(|active| active.map(|a| a.record))
    .map_err(|e| {
        tracing::error!(error = %e, "reading the session failed");
        PageError::internal()
    })
}

/// This browser's binding value, if its cookie is present and genuine.
pub fn binding(req: &HttpRequest, app: &AppState) -> Option<String> {
    req.cookie(app.cookies.binding_name())
        .and_then(|c| sessions::read_binding(&app.master, c.value()))
}

/// This browser's binding value, and the cookie to set when it had none.
pub fn ensure_binding(
    req: &HttpRequest,
    app: &AppState,
) -> Result<(String, Option<Cookie<'static>>), PageError> {
    if let Some(existing) = binding(req, app) {
        return Ok((existing, None));
    }
    let (cookie_value, id) = sessions::new_binding(&app.master).map_err(|e| {
        tracing::error!(error = %e, "making a browser binding failed");
        PageError::internal()
    })?;
    Ok((id, Some(app.cookies.binding_cookie(cookie_value))))
}
