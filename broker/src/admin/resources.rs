//! `/admin/api/v1/resources/…` and `/users/{id}/resources`: roles held on one resource
//! instance, granted to users and managed groups. The rules are in
//! `identity::resources`.

use super::caller::{Caller, RESOURCES_READ, RESOURCES_WRITE};
use super::paging::{self, Paging};
use super::problem::{Problem, internal};
use super::users::identity_problem;
use crate::identity::resources;
use crate::store::{Holder, ResourceGrantCursor, ResourceGrantRecord, ResourceRef, UserResource};
use crate::web::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, put, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceGrantView {
    /// `user` or `group`.
    pub holder_kind: &'static str,
    pub holder_id: String,
    pub role: String,
    pub granted_at: i64,
    /// The audit actor who granted it.
    pub granted_by: String,
}

impl From<&ResourceGrantRecord> for ResourceGrantView {
    fn from(g: &ResourceGrantRecord) -> Self {
        ResourceGrantView {
            holder_kind: g.holder.kind(),
            holder_id: g.holder.id().to_string(),
            role: g.role.clone(),
            granted_at: g.granted_at,
            granted_by: g.granted_by.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceGrantPage {
    /// Groups' grants first, then users', each by holder id, then role.
    pub items: Vec<ResourceGrantView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResourceView {
    pub id: String,
    /// The roles held on it, directly or through managed groups; sorted.
    pub roles: Vec<String>,
}

impl From<UserResource> for UserResourceView {
    fn from(r: UserResource) -> Self {
        UserResourceView {
            id: r.id,
            roles: r.roles,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserResourcePage {
    /// By resource id.
    pub items: Vec<UserResourceView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OfType {
    /// The resource type to list (`list`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub resource_type: String,
    /// 1 to 200, default 25.
    pub page_size: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `user` or `group` in a path, as the holder it names.
fn holder(kind: &str, id: String) -> Result<Holder, Problem> {
    match kind {
        "user" => Ok(Holder::User(id)),
        "group" => Ok(Holder::Group(id)),
        _ => Err(Problem::invalid_field(
            "holder_kind",
            "a holder is a user or a group",
        )),
    }
}

/// The resource, holder and role a grant route's path names, each checked.
fn grant_target(
    path: web::Path<(String, String, String, String, String)>,
) -> Result<(ResourceRef, Holder, String), Problem> {
    let (resource_type, id, holder_kind, holder_id, role) = path.into_inner();
    Ok((
        resource(resource_type, id)?,
        holder(&holder_kind, holder_id)?,
        role,
    ))
}

fn resource(resource_type: String, id: String) -> Result<ResourceRef, Problem> {
    let resource = ResourceRef { resource_type, id };
    resources::check_resource(&resource).map_err(identity_problem)?;
    Ok(resource)
}

/// The grants on one resource.
#[utoipa::path(
    tag = "resources",
    params(("type" = String, Path), ("id" = String, Path), Paging),
    responses(
        (status = 200, body = ResourceGrantPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:resources:read"]))
)]
#[get("/resources/{type}/{id}/grants")]
pub async fn list_resource_grants(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String)>,
    query: web::Query<Paging>,
) -> Result<HttpResponse, Problem> {
    Caller::authenticate(&req, &app)
        .await?
        .require(RESOURCES_READ)?;
    let (resource_type, id) = path.into_inner();
    let resource = resource(resource_type, id)?;
    let size = paging::page_size(query.page_size)?;
    let after = match query.cursor.as_deref() {
        Some(cursor) => {
            let [kind, id, role] = paging::decode_parts::<3>(cursor)?;
            let holder = holder(&kind, id)
                .map_err(|_| Problem::invalid_field("cursor", "not a cursor of this API"))?;
            Some(ResourceGrantCursor { holder, role })
        }
        None => None,
    };
    let grants = app
        .store
        .list_resource_grants(&resource, after.as_ref(), size + 1)
        .await
        .map_err(internal("listing resource grants failed"))?;
    let (grants, next_cursor) = paging::split(grants, size, |g| {
        paging::encode_parts(&[g.holder.kind(), g.holder.id(), &g.role])
    });
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ResourceGrantPage {
            items: grants.iter().map(ResourceGrantView::from).collect(),
            next_cursor,
        }))
}

/// Grant a role on one resource to a user or a managed group (idempotent). The role
/// must have permissions in `[roles.permissions]`: they are what it allows there.
#[utoipa::path(
    tag = "resources",
    params(
        ("type" = String, Path), ("id" = String, Path),
        ("holder_kind" = String, Path, description = "`user` or `group`"),
        ("holder_id" = String, Path), ("role" = String, Path),
    ),
    responses(
        (status = 201, description = "granted"),
        (status = 204, description = "already held"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:resources:write"]))
)]
#[put("/resources/{type}/{id}/grants/{holder_kind}/{holder_id}/{role}")]
pub async fn grant_resource_role(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String, String, String, String)>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(RESOURCES_WRITE)?;
    let (resource, holder, role) = grant_target(path)?;
    let new = resources::grant_resource_role(
        &app.store,
        &app.config.roles,
        &resource,
        &holder,
        &role,
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

/// Revoke a role on one resource (idempotent).
#[utoipa::path(
    tag = "resources",
    params(
        ("type" = String, Path), ("id" = String, Path),
        ("holder_kind" = String, Path, description = "`user` or `group`"),
        ("holder_id" = String, Path), ("role" = String, Path),
    ),
    responses(
        (status = 204),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:resources:write"]))
)]
#[delete("/resources/{type}/{id}/grants/{holder_kind}/{holder_id}/{role}")]
pub async fn revoke_resource_role(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<(String, String, String, String, String)>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    caller.require(RESOURCES_WRITE)?;
    let (resource, holder, role) = grant_target(path)?;
    resources::revoke_resource_role(
        &app.store,
        &resource,
        &holder,
        &role,
        &caller.actor(),
        app.clock.now(),
    )
    .await
    .map_err(identity_problem)?;
    Ok(HttpResponse::NoContent().finish())
}

/// The resources of one type a user holds roles on, directly or through managed
/// groups.
#[utoipa::path(
    tag = "resources",
    params(("id" = String, Path), OfType),
    responses(
        (status = 200, body = UserResourcePage),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:resources:read"]))
)]
#[get("/users/{id}/resources")]
pub async fn list_user_resources(
    req: HttpRequest,
    app: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<OfType>,
) -> Result<HttpResponse, Problem> {
    Caller::authenticate(&req, &app)
        .await?
        .require(RESOURCES_READ)?;
    let exists = app
        .store
        .get_user(&id)
        .await
        .map_err(internal("reading a user failed"))?
        .is_some();
    if !exists {
        return Err(Problem::not_found("user"));
    }
    let page = user_resource_page(&app, &id, &query).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(page))
}

/// One page of a user's resources of the asked type: the admin API's listing and the
/// access API's are the same.
pub async fn user_resource_page(
    app: &AppState,
    user_id: &str,
    query: &OfType,
) -> Result<UserResourcePage, Problem> {
    // Any id will do: only the type is checked here.
    resource(query.resource_type.clone(), "-".to_string())?;
    let size = paging::page_size(query.page_size)?;
    let after = match query.cursor.as_deref() {
        Some(cursor) => {
            let [id] = paging::decode_parts::<1>(cursor)?;
            Some(id)
        }
        None => None,
    };
    let items: Vec<UserResource> = app
        .store
        .list_user_resources(user_id, &query.resource_type, after.as_deref(), size + 1)
        .await
        .map_err(internal("listing a user's resources failed"))?;
    let (items, next_cursor) = paging::split(items, size, |r| paging::encode_parts(&[&r.id]));
    Ok(UserResourcePage {
        items: items.into_iter().map(UserResourceView::from).collect(),
        next_cursor,
    })
}
