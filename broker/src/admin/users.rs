//! `/admin/api/v1/users`: people, their sessions and their direct role grants. The
//! rules (what a disable ends, what a delete takes, what is audited) live in
//! `identity`, shared with the CLI; these handlers read the request, check the caller
//! and shape the answer.

use super::body::{self, present};
use super::caller::{Caller, USERS_READ, USERS_WRITE};
use super::paging;
use super::problem::{Problem, internal};
use crate::config::AccountPolicy;
use crate::identity::policy::{MAX_EMAIL_LEN, MAX_USERNAME_LEN};
use crate::identity::{self, IdentityError, NewLocalUser};
use crate::store::{SessionRecord, UserFilter, UserRecord, UserStatus};
use crate::web::AppState;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, put, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A user as the API shows it. Never the password hash: only whether there is one.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub username: Option<String>,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub picture: Option<String>,
    /// Groups from the last login, namespaced by provider (`ldap/ops`).
    pub groups: Vec<String>,
    /// `active` or `disabled`.
    pub status: String,
    pub has_password: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_login_at: Option<i64>,
    /// Counts the writes to this user; the `ETag` is `"r<revision>"`.
    pub revision: i64,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        UserView {
            id: u.id.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            name: u.name.clone(),
            given_name: u.given_name.clone(),
            family_name: u.family_name.clone(),
            picture: u.picture.clone(),
            groups: u.groups.clone(),
            status: u.status.as_str().to_string(),
            has_password: u.password_hash.is_some(),
            created_at: u.created_at,
            updated_at: u.updated_at,
            last_login_at: u.last_login_at,
            revision: u.revision,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    pub provider: String,
    pub subject: String,
    pub linked_at: i64,
    pub last_login_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoleGrantView {
    pub role: String,
    /// Set for a role of one client only.
    pub client_id: Option<String>,
    pub granted_at: i64,
}

/// One user with what they hold.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserDetail {
    #[serde(flatten)]
    pub user: UserView,
    pub identities: Vec<IdentityView>,
    /// Global roles held now, as `broker roles explain` computes them (through the
    /// provider of the most recent login).
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub role_grants: Vec<RoleGrantView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListUsers {
    /// 1 to 200, default 25.
    pub page_size: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    pub email: Option<String>,
    pub username: Option<String>,
    /// `active` or `disabled`.
    pub status: Option<String>,
    /// Users with an identity of this provider.
    pub provider: Option<String>,
    /// Members of this managed group (its id).
    pub group: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    pub username: Option<String>,
    pub name: Option<String>,
    /// Without one, the person signs in through a linked provider, or after an
    /// administrator sets a password.
    pub password: Option<String>,
}

/// Fields to change; an absent field stays as it is, `null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    pub email_verified: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub given_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub family_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub picture: Option<Option<String>>,
    /// `active` or `disabled` (disabling ends every session and grant).
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPassword {
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The session's id as stored (a hash; never the cookie's value).
    pub id: String,
    pub provider: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    /// How the person authenticated (RFC 8176 `amr`: `pwd`, `fed`, `otp`, `mfa`).
    pub amr: Vec<String>,
}

impl From<&SessionRecord> for SessionView {
    fn from(s: &SessionRecord) -> Self {
        SessionView {
            id: s.id_hash.clone(),
            provider: s.provider_id.clone(),
            auth_time: s.auth_time,
            created_at: s.created_at,
            expires_at: s.expires_at,
            amr: s.amr.clone(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RoleTarget {
    /// Grant the role for this client only.
    pub client_id: Option<String>,
}

/// Maps the shared rules' errors to problems.
pub fn identity_problem(e: IdentityError) -> Problem {
    match e {
        IdentityError::NoSuchUser => Problem::not_found("user"),
        IdentityError::NoSuchGroup => Problem::not_found("group"),
        IdentityError::BadGroup(why) => Problem::invalid_field("name", why),
        IdentityError::Taken(what) => {
            Problem::conflict(format!("another account already uses {what}"))
        }
        IdentityError::Stale => Problem::new(
            StatusCode::PRECONDITION_FAILED,
            "the user was changed since it was read; read it again",
        ),
        IdentityError::BadRoleGrant(why) => Problem::invalid_field("role", why),
        IdentityError::BadInput { field, why } => Problem::invalid_field(field, why),
        other => internal("an admin operation failed")(other),
    }
}

fn etag(user: &UserRecord) -> String {
    format!("\"r{}\"", user.revision)
}

fn with_etag(status: StatusCode, user: &UserRecord, body: impl Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, etag(user)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// The revision an `If-Match` header names; a write without one could silently undo
/// a concurrent one, so it is refused (428).
pub fn expected_revision(req: &HttpRequest) -> Result<i64, Problem> {
    let Some(value) = req.headers().get(header::IF_MATCH) else {
        return Err(Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "send If-Match with the ETag of the user you read",
        ));
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().strip_prefix("\"r"))
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "If-Match does not name a revision of this user",
            )
        })
}

fn parse_status(field: &str, value: &str) -> Result<UserStatus, Problem> {
    UserStatus::parse(value)
        .ok_or_else(|| Problem::invalid_field(field, "use \"active\" or \"disabled\""))
}

/// The account policy's password rules; `inputs` are the user's other values.
fn check_password(policy: &AccountPolicy, password: &str, inputs: &[&str]) -> Result<(), Problem> {
    policy
        .check_password(password, inputs)
        .map_err(|why| Problem::invalid_field("password", why.to_string()))
}

fn check_username(policy: &AccountPolicy, username: Option<&str>) -> Result<(), Problem> {
    check_text("username", username, MAX_USERNAME_LEN)?;
    match username {
        Some(u) => policy
            .check_username(u)
            .map_err(|why| Problem::invalid_field("username", why.to_string())),
        None => Ok(()),
    }
}

/// argon2id off the async workers: it is slow on purpose.
async fn hash_password(password: String) -> Result<String, Problem> {
    web::block(move || switchboard_local::hash_password(&password))
        .await
        .map_err(internal("the password hashing task failed"))?
        .map_err(internal("hashing a password failed"))
}

fn check_text(field: &str, value: Option<&str>, max: usize) -> Result<(), Problem> {
    match value {
        Some(v) if v.trim().is_empty() => Err(Problem::invalid_field(field, "must not be empty")),
        Some(v) if v.chars().count() > max => Err(Problem::invalid_field(
            field,
            format!("at most {max} characters"),
        )),
        Some(v) if v.chars().any(char::is_control) => Err(Problem::invalid_field(
            field,
            "control characters are not allowed",
        )),
        _ => Ok(()),
    }
}

fn check_email(policy: &AccountPolicy, field: &str, email: Option<&str>) -> Result<(), Problem> {
    check_text(field, email, MAX_EMAIL_LEN)?;
    match email {
        Some(email) => policy
            .check_email(email)
            .map_err(|why| Problem::invalid_field(field, why.to_string())),
        None => Ok(()),
    }
}

async fn load_user(app: &AppState, id: &str) -> Result<UserRecord, Problem> {
    app.store
        .get_user(id)
        .await
        .map_err(internal("reading a user failed"))?
        .ok_or_else(|| Problem::not_found("user"))
}

/// List users, oldest first, a page at a time.
#[utoipa::path(
    tag = "users",
    params(ListUsers),
    responses(
        (status = 200, body = UserPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:read"]))
)]
#[get("/users")]
pub async fn list_users(
    req: HttpRequest,
    app: web::Data<AppState>,
    query: web::Query<ListUsers>,
) -> Result<HttpResponse, Problem> {
    Caller::authenticate(&req, &app)
        .await?
        .require(USERS_READ)?;
    let query = query.into_inner();
    let size = paging::page_size(query.page_size)?;
    let after = query.cursor.as_deref().map(paging::decode).transpose()?;
    let filter = UserFilter {
        email: query.email,
        username: query.username,
        status: match &query.status {
            None => None,
            Some(s) => Some(parse_status("status", s)?),
        },
        provider: query.provider,
        group: query.group,
    };
    let users = app
        .store
        .list_users_page(&filter, after.as_ref(), size + 1)
        .await
        .map_err(internal("listing users failed"))?;
    let (users, next_cursor) = paging::split(users, size, |u| paging::encode(u.created_at, &u.id));
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(UserPage {
            items: users.iter().map(UserView::from).collect(),
            next_cursor,
        }))
}

/// Create a user of the local provider.
#[utoipa::path(
    tag = "users",
    request_body = CreateUser,
    responses(
        (status = 201, body = UserView, headers(("ETag" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:write"]))
)]
#[post("/users")]
pub async fn create_user(
    req: HttpRequest,
    app: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(USERS_WRITE)?;
    let new: CreateUser = body::parse(&req, &raw)?;
    let policy = &app.config.account_policy;
    check_email(policy, "email", Some(&new.email))?;
    check_username(policy, new.username.as_deref())?;
    check_text("name", new.name.as_deref(), 256)?;
    let hash = match new.password {
        None => None,
        Some(password) => {
            let inputs = [
                new.email.as_str(),
                new.username.as_deref().unwrap_or_default(),
                new.name.as_deref().unwrap_or_default(),
            ];
            check_password(policy, &password, &inputs)?;
            Some(hash_password(password).await?)
        }
    };
    let user = identity::add_local_user(
        &app.store,
        &NewLocalUser {
            email: &new.email,
            username: new.username.as_deref(),
            name: new.name.as_deref(),
            password_hash: hash.as_deref(),
        },
        &caller.actor(),
        app.clock.now(),
    )
    .await
    .map_err(identity_problem)?;
    tracing::info!(user = %user.id, actor = %caller.actor(), "user created");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("users/{}", user.id)))
        .insert_header((header::ETAG, etag(&user)))
        .json(UserView::from(&user)))
}

/// One user, with linked identities, roles and direct grants.
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path, description = "the user's id (`sub`)")),
    responses(
        (status = 200, body = UserDetail, headers(("ETag" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:read"]))
)]
#[get("/users/{id}")]
pub async fn get_user(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    Caller::authenticate(&req, &app)
        .await?
        .require(USERS_READ)?;
    let user = load_user(&app, &id).await?;
    let links = app
        .store
        .list_user_identities(&user.id)
        .await
        .map_err(internal("reading identities failed"))?;
    let grants = app
        .store
        .list_role_grants(&user.id)
        .await
        .map_err(internal("reading role grants failed"))?;
    let latest = links.iter().max_by_key(|l| l.updated_at);
    let access = identity::access_for(
        &app.store,
        &app.config.roles,
        &user.id,
        latest.map_or("", |l| l.provider_id.as_str()),
        None,
    )
    .await
    .map_err(internal("computing roles failed"))?;
    let detail = UserDetail {
        user: UserView::from(&user),
        identities: links
            .iter()
            .map(|l| IdentityView {
                provider: l.provider_id.clone(),
                subject: l.subject.clone(),
                linked_at: l.created_at,
                last_login_at: l.updated_at,
            })
            .collect(),
        roles: access.roles,
        permissions: access.permissions,
        role_grants: grants
            .into_iter()
            .map(|g| RoleGrantView {
                role: g.role,
                client_id: g.client_id,
                granted_at: g.granted_at,
            })
            .collect(),
    };
    Ok(with_etag(StatusCode::OK, &user, detail))
}

/// Change profile fields or the status of a user. Needs `If-Match`.
#[utoipa::path(
    tag = "users",
    params(
        ("id" = String, Path),
        ("If-Match" = String, Header, description = "the ETag of the user as read"),
    ),
    request_body = UpdateUser,
    responses(
        (status = 200, body = UserView, headers(("ETag" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 428, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:write"]))
)]
#[patch("/users/{id}")]
pub async fn update_user(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(USERS_WRITE)?;
    let changes: UpdateUser = body::parse(&req, &raw)?;
    let expected = expected_revision(&req)?;
    let before = load_user(&app, &id).await?;
    if before.revision != expected {
        return Err(identity_problem(IdentityError::Stale));
    }
    let mut user = before.clone();
    let policy = &app.config.account_policy;
    if let Some(username) = changes.username {
        check_username(policy, username.as_deref())?;
        user.username = username;
    }
    if let Some(email) = changes.email {
        check_email(policy, "email", email.as_deref())?;
        if email != user.email {
            // A new address is unverified unless the same request vouches for it.
            user.email_verified = false;
        }
        user.email = email;
    }
    if let Some(verified) = changes.email_verified {
        if verified && user.email.is_none() {
            return Err(Problem::invalid_field(
                "email_verified",
                "there is no email to verify",
            ));
        }
        user.email_verified = verified;
    }
    for (field, change, slot) in [
        ("name", changes.name, &mut user.name),
        ("given_name", changes.given_name, &mut user.given_name),
        ("family_name", changes.family_name, &mut user.family_name),
        ("picture", changes.picture, &mut user.picture),
    ] {
        if let Some(value) = change {
            check_text(field, value.as_deref(), 2048)?;
            *slot = value;
        }
    }
    if let Some(status) = &changes.status {
        user.status = parse_status("status", status)?;
    }
    let now = app.clock.now();
    user.updated_at = now;
    let written = identity::update_user(&app.store, &before, &user, &caller.actor(), now)
        .await
        .map_err(identity_problem)?;
    Ok(with_etag(
        StatusCode::OK,
        &written,
        UserView::from(&written),
    ))
}

/// Delete a user: sessions, grants, refresh tokens, links and role grants go with
/// them; the audit trail stays.
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path)),
    responses(
        (status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:write"]))
)]
#[delete("/users/{id}")]
pub async fn delete_user(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(USERS_WRITE)?;
    if caller.user_id.as_deref() == Some(id.as_str()) {
        return Err(Problem::conflict(
            "an administrator cannot delete themselves",
        ));
    }
    identity::delete_user(&app.store, &id, &caller.actor(), app.clock.now())
        .await
        .map_err(identity_problem)?;
    tracing::info!(user = %id, actor = %caller.actor(), "user deleted");
    Ok(HttpResponse::NoContent().finish())
}

/// Set a user's password; every session and grant of theirs ends.
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path)),
    request_body = SetPassword,
    responses(
        (status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:write"]))
)]
#[put("/users/{id}/password")]
pub async fn set_password(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(USERS_WRITE)?;
    let body: SetPassword = body::parse(&req, &raw)?;
    let user = load_user(&app, &id).await?;
    let inputs = [
        user.email.as_deref().unwrap_or_default(),
        user.username.as_deref().unwrap_or_default(),
        user.name.as_deref().unwrap_or_default(),
    ];
    check_password(&app.config.account_policy, &body.password, &inputs)?;
    let hash = hash_password(body.password).await?;
    identity::set_password(&app.store, &id, &hash, &caller.actor(), app.clock.now())
        .await
        .map_err(identity_problem)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Reset a user's second factor (a lost phone and no recovery code left): the
/// authenticator and every recovery code are removed, audited as `mfa_removed`. The
/// person signs in with their password alone until they set up a new one. 404 when the
/// user has no second factor.
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path)),
    responses(
        (status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:write"]))
)]
#[delete("/users/{id}/mfa")]
pub async fn reset_mfa(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(USERS_WRITE)?;
    load_user(&app, &id).await?;
    let removed = identity::mfa::remove(&app.store, &id, &caller.actor(), app.clock.now())
        .await
        .map_err(internal("resetting the second factor failed"))?;
    if !removed {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "the user has no second factor",
        ));
    }
    tracing::info!(user = %id.as_str(), actor = %caller.actor(), "second factor reset");
    Ok(HttpResponse::NoContent().finish())
}

/// A user's live browser sessions.
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = Vec<SessionView>),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:read"]))
)]
#[get("/users/{id}/sessions")]
pub async fn list_sessions(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    Caller::authenticate(&req, &app)
        .await?
        .require(USERS_READ)?;
    load_user(&app, &id).await?;
    let sessions = app
        .store
        .list_user_sessions(&id, app.clock.now())
        .await
        .map_err(internal("listing sessions failed"))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(sessions.iter().map(SessionView::from).collect::<Vec<_>>()))
}

/// End every session and grant of a user.
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path)),
    responses(
        (status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:write"]))
)]
#[delete("/users/{id}/sessions")]
pub async fn end_sessions(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(USERS_WRITE)?;
    identity::end_sessions(&app.store, &id, &caller.actor(), app.clock.now())
        .await
        .map_err(identity_problem)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Grant a role directly (idempotent: granting a held role changes nothing).
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path), ("role" = String, Path), RoleTarget),
    responses(
        (status = 201, description = "granted"),
        (status = 204, description = "already held"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:write"]))
)]
#[put("/users/{id}/roles/{role}")]
pub async fn grant_role(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
    target: web::Query<RoleTarget>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(USERS_WRITE)?;
    let (id, role) = path.into_inner();
    let new = identity::grant_role(
        &app.store,
        &app.config,
        &id,
        &role,
        target.client_id.as_deref(),
        &caller.actor(),
        app.clock.now(),
    )
    .await
    .map_err(identity_problem)?;
    Ok(match new {
        true => HttpResponse::Created().finish(),
        false => HttpResponse::NoContent().finish(),
    })
}

/// Revoke a direct role grant (idempotent).
#[utoipa::path(
    tag = "users",
    params(("id" = String, Path), ("role" = String, Path), RoleTarget),
    responses(
        (status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:write"]))
)]
#[delete("/users/{id}/roles/{role}")]
pub async fn revoke_role(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
    target: web::Query<RoleTarget>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(USERS_WRITE)?;
    let (id, role) = path.into_inner();
    identity::revoke_role(
        &app.store,
        &id,
        &role,
        target.client_id.as_deref(),
        &caller.actor(),
        app.clock.now(),
    )
    .await
    .map_err(identity_problem)?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn if_match_is_required_and_must_name_a_revision() {
        let with = |v: &str| {
            expected_revision(
                &TestRequest::default()
                    .insert_header(("if-match", v))
                    .to_http_request(),
            )
        };
        assert_eq!(with("\"r7\"").unwrap(), 7);
        assert_eq!(with("*").unwrap_err().status, 412);
        assert_eq!(
            expected_revision(&TestRequest::default().to_http_request())
                .unwrap_err()
                .status,
            428
        );
    }

    #[test]
    fn field_checks_name_the_field() {
        let policy = AccountPolicy::default();
        assert_eq!(
            check_email(&policy, "email", Some("no-at-sign"))
                .unwrap_err()
                .field
                .as_deref(),
            Some("email")
        );
        assert!(check_email(&policy, "email", Some("a@b.example")).is_ok());
        assert_eq!(
            check_password(&policy, "short", &[]).unwrap_err().status,
            422
        );
        assert_eq!(
            check_password(&policy, "password1", &[])
                .unwrap_err()
                .field
                .as_deref(),
            Some("password"),
            "a common password is refused"
        );
        assert!(check_username(&policy, Some(" padded")).is_err());
        assert!(check_text("name", Some("a\u{7}b"), 10).is_err());
        assert!(check_text("name", Some(" "), 10).is_err());
    }
}
