//! `/admin/api/v1/audit`: what happened to accounts, who did it, a page at a time.

use super::caller::{AUDIT_READ, Caller};
use super::problem::{Problem, internal};
use crate::store::AuditFilter;
use crate::web::AppState;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// 1 to 200, default 25.
    pub page_size: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// The user the event is about.
    pub subject: Option<String>,
    /// Who did it: `user:ID`, `client:ID` or `cli`.
    pub actor: Option<String>,
    /// The event type, e.g. `user_disabled`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Unix time, inclusive.
    pub since: Option<i64>,
    /// Unix time, exclusive.
    pub until: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    /// Increases with every event recorded.
    pub seq: i64,
    /// The user the event is about.
    pub subject: String,
    /// Absent when the broker itself did it (a login linking by verified email).
    pub actor: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEventView>,
    pub next_cursor: Option<String>,
}

/// Query the audit trail, oldest first.
#[utoipa::path(
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = ["admin:audit:read"]))
)]
#[get("/audit")]
pub async fn query_audit(
    req: HttpRequest,
    app: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, Problem> {
    Caller::authenticate(&req, &app)
        .await?
        .require(AUDIT_READ)?;
    let query = query.into_inner();
    let size = super::paging::page_size(query.page_size)?;
    let after = match &query.cursor {
        None => None,
        Some(c) => Some(
            c.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or_else(|| Problem::invalid_field("cursor", "not a cursor of this API"))?,
        ),
    };
    let filter = AuditFilter {
        user_id: query.subject,
        actor: query.actor,
        kind: query.kind,
        since: query.since,
        until: query.until,
    };
    let events = app
        .store
        .query_audit(&filter, after, size + 1)
        .await
        .map_err(internal("querying the audit trail failed"))?;
    let (events, next_cursor) = super::paging::split(events, size, |(seq, _)| seq.to_string());
    let items = events
        .into_iter()
        .map(|(seq, e)| AuditEventView {
            seq,
            subject: e.user_id,
            actor: e.actor,
            kind: e.kind,
            detail: e.detail,
            at: e.at,
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(AuditPage { items, next_cursor }))
}
