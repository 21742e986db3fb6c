//! `/admin/api/v1/users/{id}/keys`: a person's API keys, listed, made (the secret is
//! in the answer once, and nowhere else ever) and revoked. The rules (scopes within
//! the person's permissions, bounded expiry and count, audit) live in
//! `identity::api_keys`, shared with the account page.

use super::body;
use super::caller::{Caller, KEYS_WRITE, USERS_READ};
use super::problem::{Problem, internal};
use super::users::identity_problem;
use crate::identity::api_keys::{self, KeyRequestError, NewApiKey};
use crate::store::ApiKeyRecord;
use crate::web::AppState;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An API key as the API shows it: never its secret or the secret's hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// The permissions the key was made with; at use it holds those the person's
    /// permissions still allow.
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Recorded at most every five minutes.
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Who made it: `user:ID`.
    pub created_by: String,
    /// `active`, `revoked` or `expired`.
    pub status: String,
}

impl ApiKeyView {
    fn new(key: &ApiKeyRecord, now: i64) -> Self {
        let status = match (key.revoked_at, key.expires_at <= now) {
            (Some(_), _) => "revoked",
            (None, true) => "expired",
            (None, false) => "active",
        };
        ApiKeyView {
            id: key.id.clone(),
            name: key.name.clone(),
            scopes: key.scopes.clone(),
            created_at: key.created_at,
            expires_at: key.expires_at,
            last_used_at: key.last_used_at,
            revoked_at: key.revoked_at,
            created_by: key.created_by.clone(),
            status: status.to_string(),
        }
    }
}

/// A key just made, with its secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKeyView {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// `sbk_…`: give it to the program that will use it; it cannot be read again.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1 to 100 characters, to recognise the key by.
    pub name: String,
    /// Permissions the person holds now (a subset of `permissions` in their user view).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Seconds until the key expires: 1 to `api_keys.max_lifetime`.
    pub expires_in: i64,
}

fn request_problem(e: KeyRequestError) -> Problem {
    let field = match e {
        KeyRequestError::Name => "name",
        KeyRequestError::Lifetime { .. } => "expires_in",
        KeyRequestError::Scope(_) => "scopes",
        KeyRequestError::TooMany(_) => return Problem::conflict(e.to_string()),
    };
    Problem::invalid_field(field, e.to_string())
}

/// A user's API keys, oldest first (revoked and expired ones until they are purged).
#[utoipa::path(
    tag = "keys",
    params(("id" = String, Path, description = "the user's id (`sub`)")),
    responses(
        (status = 200, body = Vec<ApiKeyView>),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:read"]))
)]
#[get("/users/{id}/keys")]
pub async fn list_keys(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    Caller::authenticate(&req, &app)
        .await?
        .require(USERS_READ)?;
    let keys = api_keys::list_api_keys(&app.store, &id)
        .await
        .map_err(identity_problem)?;
    let now = app.clock.now();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(
            keys.iter()
                .map(|k| ApiKeyView::new(k, now))
                .collect::<Vec<_>>(),
        ))
}

/// Make an API key for a user; the answer holds its secret, once.
#[utoipa::path(
    tag = "keys",
    params(("id" = String, Path)),
    request_body = CreateKey,
    responses(
        (status = 201, body = CreatedKeyView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:keys:write"]))
)]
#[post("/users/{id}/keys")]
pub async fn create_key(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(KEYS_WRITE)?;
    let new: CreateKey = body::parse(&req, &raw)?;
    let now = app.clock.now();
    let created = api_keys::create_api_key(
        &app.store,
        &app.config,
        &id,
        &NewApiKey {
            name: &new.name,
            scopes: &new.scopes,
            lifetime: new.expires_in,
        },
        &caller.actor(),
        now,
    )
    .await
    .map_err(|e| match e {
        crate::identity::IdentityError::Disabled => {
            Problem::conflict("the user is disabled; enable them first")
        }
        other => identity_problem(other),
    })?
    .map_err(request_problem)?;
    tracing::info!(user = %id, key_id = %created.key.id, actor = %caller.actor(), "API key created");
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::LOCATION,
            format!("users/{}/keys/{}", created.key.user_id, created.key.id),
        ))
        .json(CreatedKeyView {
            key: ApiKeyView::new(&created.key, now),
            secret: created.secret.expose().to_string(),
        }))
}

/// Revoke a user's API key, at once.
#[utoipa::path(
    tag = "keys",
    params(("id" = String, Path), ("key_id" = String, Path)),
    responses(
        (status = 204, description = "revoked"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:keys:write"]))
)]
#[delete("/users/{id}/keys/{key_id}")]
pub async fn revoke_key(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(KEYS_WRITE)?;
    let (id, key_id) = path.into_inner();
    let keys = api_keys::list_api_keys(&app.store, &id)
        .await
        .map_err(identity_problem)?;
    if !keys.iter().any(|k| k.id == key_id) {
        return Err(Problem::not_found("API key"));
    }
    let revoked =
        api_keys::revoke_api_key(&app.store, &id, &key_id, &caller.actor(), app.clock.now())
            .await
            .map_err(internal("revoking an API key failed"))?;
    if revoked {
        tracing::info!(user = %id, key_id = %key_id, actor = %caller.actor(), "API key revoked");
    }
    // Revoking a revoked key changes nothing and says so the same way.
    Ok(HttpResponse::build(StatusCode::NO_CONTENT).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_view_says_whether_it_is_live_and_never_holds_its_hash() {
        let key = ApiKeyRecord {
            id: "k1".into(),
            user_id: "u1".into(),
            name: "ci".into(),
            secret_hash: "ab12".into(),
            scopes: vec!["reports:read".into()],
            created_at: 10,
            expires_at: 20,
            last_used_at: None,
            revoked_at: None,
            created_by: "user:u1".into(),
        };
        assert_eq!(ApiKeyView::new(&key, 19).status, "active");
        assert_eq!(ApiKeyView::new(&key, 20).status, "expired");
        let revoked = ApiKeyRecord {
            revoked_at: Some(15),
            ..key.clone()
        };
        assert_eq!(ApiKeyView::new(&revoked, 16).status, "revoked");
        let json = serde_json::to_string(&ApiKeyView::new(&key, 0)).unwrap_or_default();
        assert!(!json.contains("ab12"), "{json}");
    }

    #[test]
    fn request_faults_name_their_field() {
        assert_eq!(
            request_problem(KeyRequestError::Lifetime { max: 5 })
                .field
                .as_deref(),
            Some("expires_in")
        );
        assert_eq!(request_problem(KeyRequestError::TooMany(3)).status, 409);
    }
}
