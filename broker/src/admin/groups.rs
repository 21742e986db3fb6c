//! `/admin/api/v1/groups`: managed groups and their members. The rules are in
//! `identity::groups`.

use super::body::{self, present};
use super::caller::{Caller, GROUPS_WRITE, USERS_READ};
use super::paging::{self, Paging};
use super::problem::{Problem, internal};
use super::users::{UserPage, UserView, identity_problem};
use crate::identity::groups;
use crate::store::{GroupRecord, PageCursor, UserFilter};
use crate::web::AppState;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, put, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupView {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// How tokens show it in `groups`.
    pub claim: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The `ETag` is `"r<revision>"`.
    pub revision: i64,
}

impl From<&GroupRecord> for GroupView {
    fn from(g: &GroupRecord) -> Self {
        GroupView {
            id: g.id.clone(),
            name: g.name.clone(),
            description: g.description.clone(),
            claim: format!("{}/{}", crate::roles::MANAGED_GROUP_NAMESPACE, g.name),
            created_at: g.created_at,
            updated_at: g.updated_at,
            revision: g.revision,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupPage {
    pub items: Vec<GroupView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// 1 to 64 characters, no `/`; unique, case-insensitively.
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroup {
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

fn etag(group: &GroupRecord) -> String {
    format!("\"r{}\"", group.revision)
}

fn with_etag(status: StatusCode, group: &GroupRecord) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, etag(group)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(GroupView::from(group))
}

fn check_description(description: Option<&str>) -> Result<(), Problem> {
    match description {
        Some(d) if d.chars().count() > 1024 => Err(Problem::invalid_field(
            "description",
            "at most 1024 characters",
        )),
        _ => Ok(()),
    }
}

/// The built-in form of a group name, then the operator's `group_name_pattern`.
fn check_group_name(app: &AppState, name: &str) -> Result<(), Problem> {
    groups::check_group_name(name).map_err(|why| Problem::invalid_field("name", why))?;
    app.config
        .account_policy
        .check_group_name(name)
        .map_err(|why| Problem::invalid_field("name", why.to_string()))
}

async fn load_group(app: &AppState, id: &str) -> Result<GroupRecord, Problem> {
    app.store
        .get_group(id)
        .await
        .map_err(internal("reading a group failed"))?
        .ok_or_else(|| Problem::not_found("group"))
}

/// List managed groups, oldest first.
#[utoipa::path(
    tag = "groups",
    params(Paging),
    responses(
        (status = 200, body = GroupPage),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:read"]))
)]
#[get("/groups")]
pub async fn list_groups(
    req: HttpRequest,
    app: web::Data<AppState>,
    query: web::Query<Paging>,
) -> Result<HttpResponse, Problem> {
    Caller::authenticate(&req, &app)
        .await?
        .require(USERS_READ)?;
    let size = paging::page_size(query.page_size)?;
    let after = query.cursor.as_deref().map(paging::decode).transpose()?;
    let groups = app
        .store
        .list_groups_page(after.as_ref(), size + 1)
        .await
        .map_err(internal("listing groups failed"))?;
    let (groups, next_cursor) =
        paging::split(groups, size, |g| paging::encode(g.created_at, &g.id));
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(GroupPage {
            items: groups.iter().map(GroupView::from).collect(),
            next_cursor,
        }))
}

/// Create a managed group.
#[utoipa::path(
    tag = "groups",
    request_body = CreateGroup,
    responses(
        (status = 201, body = GroupView, headers(("ETag" = String))),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:groups:write"]))
)]
#[post("/groups")]
pub async fn create_group(
    req: HttpRequest,
    app: web::Data<AppState>,
    raw: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(GROUPS_WRITE)?;
    let new: CreateGroup = body::parse(&req, &raw)?;
    check_group_name(&app, &new.name)?;
    check_description(new.description.as_deref())?;
    let group = groups::create_group(
        &app.store,
        &new.name,
        new.description.as_deref(),
        &caller.actor(),
        app.clock.now(),
    )
    .await
    .map_err(identity_problem)?;
    let mut res = with_etag(StatusCode::CREATED, &group);
    if let Ok(location) = header::HeaderValue::from_str(&format!("groups/{}", group.id)) {
        res.headers_mut().insert(header::LOCATION, location);
    }
    Ok(res)
}

/// One managed group.
#[utoipa::path(
    tag = "groups",
    params(("id" = String, Path)),
    responses(
        (status = 200, body = GroupView, headers(("ETag" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:read"]))
)]
#[get("/groups/{id}")]
pub async fn get_group(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    Caller::authenticate(&req, &app)
        .await?
        .require(USERS_READ)?;
    let group = load_group(&app, &id).await?;
    Ok(with_etag(StatusCode::OK, &group))
}

/// Rename or re-describe a group. Needs `If-Match`. Role rules name groups by their
/// current name.
#[utoipa::path(
    tag = "groups",
    params(("id" = String, Path), ("If-Match" = String, Header)),
    request_body = UpdateGroup,
    responses(
        (status = 200, body = GroupView, headers(("ETag" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 428, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:groups:write"]))
)]
#[patch("/groups/{id}")]
pub async fn update_group(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    raw: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(GROUPS_WRITE)?;
    let changes: UpdateGroup = body::parse(&req, &raw)?;
    let expected = super::users::expected_revision(&req)?;
    let mut group = load_group(&app, &id).await?;
    if let Some(name) = changes.name {
        check_group_name(&app, &name)?;
        group.name = name;
    }
    if let Some(description) = changes.description {
        check_description(description.as_deref())?;
        group.description = description;
    }
    let now = app.clock.now();
    group.updated_at = now;
    let written = groups::update_group(&app.store, &group, expected, &caller.actor(), now)
        .await
        .map_err(identity_problem)?;
    Ok(with_etag(StatusCode::OK, &written))
}

/// Delete a group; its members lose it at their next token.
#[utoipa::path(
    tag = "groups",
    params(("id" = String, Path)),
    responses(
        (status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:groups:write"]))
)]
#[delete("/groups/{id}")]
pub async fn delete_group(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(GROUPS_WRITE)?;
    groups::delete_group(&app.store, &id, &caller.actor(), app.clock.now())
        .await
        .map_err(identity_problem)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The members of a group, oldest user first.
#[utoipa::path(
    tag = "groups",
    params(("id" = String, Path), Paging),
    responses(
        (status = 200, body = UserPage),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:users:read"]))
)]
#[get("/groups/{id}/members")]
pub async fn list_members(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<Paging>,
) -> Result<HttpResponse, Problem> {
    Caller::authenticate(&req, &app)
        .await?
        .require(USERS_READ)?;
    load_group(&app, &id).await?;
    let size = paging::page_size(query.page_size)?;
    let after: Option<PageCursor> = query.cursor.as_deref().map(paging::decode).transpose()?;
    let filter = UserFilter {
        group: Some(id.into_inner()),
        ..UserFilter::default()
    };
    let users = app
        .store
        .list_users_page(&filter, after.as_ref(), size + 1)
        .await
        .map_err(internal("listing members failed"))?;
    let (users, next_cursor) = paging::split(users, size, |u| paging::encode(u.created_at, &u.id));
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(UserPage {
            items: users.iter().map(UserView::from).collect(),
            next_cursor,
        }))
}

/// Add a member (idempotent).
#[utoipa::path(
    tag = "groups",
    params(("id" = String, Path), ("user_id" = String, Path)),
    responses(
        (status = 201, description = "added"),
        (status = 204, description = "already a member"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:groups:write"]))
)]
#[put("/groups/{id}/members/{user_id}")]
pub async fn add_member(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(GROUPS_WRITE)?;
    let (group_id, user_id) = path.into_inner();
    let added = groups::add_member(
        &app.store,
        &group_id,
        &user_id,
        &caller.actor(),
        app.clock.now(),
    )
    .await
    .map_err(identity_problem)?;
    Ok(match added {
        true => HttpResponse::Created().finish(),
        false => HttpResponse::NoContent().finish(),
    })
}

/// Remove a member (idempotent); the roles the group gave end at the next token.
#[utoipa::path(
    tag = "groups",
    params(("id" = String, Path), ("user_id" = String, Path)),
    responses(
        (status = 204),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:groups:write"]))
)]
#[delete("/groups/{id}/members/{user_id}")]
pub async fn remove_member(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(GROUPS_WRITE)?;
    let (group_id, user_id) = path.into_inner();
    groups::remove_member(
        &app.store,
        &group_id,
        &user_id,
        &caller.actor(),
        app.clock.now(),
    )
    .await
    .map_err(identity_problem)?;
    Ok(HttpResponse::NoContent().finish())
}
