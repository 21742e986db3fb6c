//! The end of every successful sign-in: a grant and its one-time authorization code,
//! and the browser sent back to the client with it.

use super::error::OAuthError;
use super::request::AuthorizationRequest;
use crate::secrets;
use crate::store::{CodeRecord, GrantRecord, SessionRecord};
use crate::web::AppState;
use actix_web::HttpResponse;

/// Creates the grant and its one-time code and redirects the browser to the client.
pub async fn issue_code(
    app: &AppState,
    request: &AuthorizationRequest,
    session: &SessionRecord,
    session_id_hash: &str,
) -> Result<HttpResponse, OAuthError> {
    let reply = request.reply(&app.config)?;
    let client = app
        .config
        .clients
        .get(&request.client_id)
        .ok_or_else(|| OAuthError::invalid_request("client no longer exists"))?;
    let now = app.clock.now();
    let code = secrets::random_token().map_err(|_| OAuthError::server_error())?;
    let grant = GrantRecord {
        id: secrets::random_id().map_err(|_| OAuthError::server_error())?,
        user_id: session.user_id.clone(),
        client_id: client.id.clone(),
        session_id_hash: Some(session_id_hash.to_string()),
        scopes: request.scopes.clone(),
        auth_time: session.auth_time,
        provider_id: session.provider_id.clone(),
        created_at: now,
        expires_at: now + client.lifetimes.refresh_token_absolute,
        revoked_at: None,
        resource: request.resource.clone(),
        amr: session.amr.clone(),
    };
    let code_record = CodeRecord {
        code_hash: secrets::hash_secret(&code),
        grant_id: grant.id.clone(),
        client_id: client.id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        nonce: request.nonce.clone(),
        created_at: now,
        expires_at: now + app.config.tokens.code_lifetime,
    };
    app.store
        .create_grant_with_code(&grant, &code_record)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "storing code failed");
            OAuthError::server_error()
        })?;
    tracing::info!(client_id = %client.id, grant = %grant.id, "issued authorization code");
    Ok(reply.code(&code))
}
