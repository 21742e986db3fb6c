//! Every login start writes a row (the pending login, or the trip upstream) before
//! anyone has authenticated, so one client address may start only so many a minute
//! (`login.max_starts_per_ip`); the counters live in the store, shared by replicas.

use crate::web::client_ip::client_ip;
use crate::web::{AppState, PageError};
use actix_web::HttpRequest;
use actix_web::http::StatusCode;

const WINDOW_SECS: i64 = 60;
const TOO_MANY: &str = "msg.too_many_starts";

/// Counts a login start against the client's address; refuses it past the limit.
pub async fn admit_start(app: &AppState, req: &HttpRequest) -> Result<(), PageError> {
    let Some(ip) = client_ip(req, &app.config.trusted_proxies) else {
        return Ok(());
    };
    let started = app
        .store
        .hit(&format!("start:{ip}"), WINDOW_SECS, app.clock.now())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "counting a login start failed");
            PageError::internal()
        })?;
    if started > app.config.login.max_starts_per_ip {
        tracing::warn!(%ip, "login starts from one address over the limit");
        return Err(PageError::sign_in(StatusCode::TOO_MANY_REQUESTS, TOO_MANY));
    }
    Ok(())
}
