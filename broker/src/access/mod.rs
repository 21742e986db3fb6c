//! `/access/v1`: apps ask whether a person may do something to one resource, and
//! which resources of a type a person holds roles on. Resource roles never reach
//! tokens (there can be millions); this is where apps learn them.
//!
//! Who asks decides about whom: a person's access token asks about that person
//! (toward the app that holds it); a confidential client (its client-credentials
//! token, or its secret by HTTP Basic) asks about anyone, named by `sub`. Errors are
//! RFC 9457 problems, as in the admin API.

use crate::admin::resources::{OfType, user_resource_page};
use crate::admin::{Problem, identity_problem, internal};
use crate::identity::resources::{self, Asker, Decision};
use crate::oidc::clients::{authenticate, presented_credentials};
use crate::store::ResourceRef;
use crate::tokens::status::ActiveToken;
use crate::web::AppState;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/access/v1")
            .app_data(
                web::JsonConfig::default().error_handler(|e, _| {
                    Problem::bad_request(format!("request body: {e}")).into()
                }),
            )
            .app_data(
                web::QueryConfig::default().error_handler(|e, _| {
                    Problem::bad_request(format!("query string: {e}")).into()
                }),
            )
            .route("/check", web::post().to(check))
            .route("/resources", web::get().to(list_resources)),
    );
}

/// Who is asking.
#[derive(Debug)]
enum Caller {
    /// A person, through an app's access token.
    Person {
        user_id: String,
        client_id: String,
        provider_id: String,
    },
    /// A confidential client acting as itself.
    Client { client_id: String },
}

impl Caller {
    async fn authenticate(req: &HttpRequest, app: &AppState) -> Result<Caller, Problem> {
        let Some(authorization) = req.headers().get(header::AUTHORIZATION) else {
            return Err(Problem::unauthorized(""));
        };
        let is_basic = authorization
            .as_bytes()
            .get(..6)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"basic "));
        if is_basic {
            let client = presented_credentials(req, None, None)
                .and_then(|creds| authenticate(&app.config, &creds))
                .map_err(|_| Problem::unauthorized("client authentication failed"))?;
            return match client.is_public() {
                true => Err(Problem::unauthorized(
                    "a public client cannot ask about other people",
                )),
                false => Ok(Caller::Client {
                    client_id: client.id.clone(),
                }),
            };
        }
        let token = authorization
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer") && !token.is_empty())
            .map(|(_, token)| token.trim())
            .ok_or_else(|| Problem::unauthorized("expected a Bearer token or HTTP Basic"))?;
        let active = app
            .token_status()
            .live_access_token(token)
            .await
            .map_err(internal("checking an access API token failed"))?;
        let Some(ActiveToken::Access(live)) = active else {
            return Err(Problem::unauthorized(
                "the access token is invalid, expired or revoked",
            ));
        };
        match &live.person {
            Some(person) => Ok(Caller::Person {
                user_id: person.user.id.clone(),
                client_id: person.grant.client_id.clone(),
                provider_id: person.grant.provider_id.clone(),
            }),
            None => {
                let client_id = &live.claims.client_id;
                let confidential = app
                    .config
                    .clients
                    .get(client_id)
                    .is_some_and(|c| !c.is_public());
                match confidential {
                    true => Ok(Caller::Client {
                        client_id: client_id.clone(),
                    }),
                    false => Err(Problem::unauthorized("the client is no longer configured")),
                }
            }
        }
    }

    /// Whom a request is about: the person of the token (who may name only
    /// themselves), or the `sub` a client names.
    fn asker<'a>(&'a self, sub: Option<&'a str>) -> Result<Asker<'a>, Problem> {
        match self {
            Caller::Person {
                user_id,
                client_id,
                provider_id,
            } => match sub {
                Some(other) if other != user_id => Err(Problem::forbidden(
                    "a person's token asks only about that person".to_string(),
                )),
                _ => Ok(Asker {
                    user_id,
                    client_id: Some(client_id),
                    provider_id: Some(provider_id),
                }),
            },
            Caller::Client { client_id } => match sub {
                Some(sub) if !sub.is_empty() => Ok(Asker {
                    user_id: sub,
                    client_id: Some(client_id),
                    provider_id: None,
                }),
                _ => Err(Problem::invalid_field(
                    "sub",
                    "a client names the person it asks about",
                )),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckRequest {
    permission: String,
    resource: ResourceBody,
    sub: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceBody {
    #[serde(rename = "type")]
    resource_type: String,
    id: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
struct CheckAnswer {
    allowed: bool,
    /// `resource_role`, `global_role`, or why not: `no_grant`, `user_disabled`,
    /// `unknown_subject`.
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    /// The managed group a resource role comes through.
    #[serde(skip_serializing_if = "Option::is_none")]
    via_group: Option<String>,
}

impl From<Decision> for CheckAnswer {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::GlobalRole { role } => CheckAnswer {
                allowed: true,
                reason: "global_role",
                role: Some(role),
                via_group: None,
            },
            Decision::ResourceRole(held) => CheckAnswer {
                allowed: true,
                reason: "resource_role",
                role: Some(held.role),
                via_group: held.via_group,
            },
            Decision::Denied(denial) => CheckAnswer {
                allowed: false,
                reason: denial.code(),
                role: None,
                via_group: None,
            },
        }
    }
}

/// POST `/access/v1/check`: may this person do `permission` to this resource?
async fn check(
    req: HttpRequest,
    app: web::Data<AppState>,
    body: web::Json<CheckRequest>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    let body = body.into_inner();
    let asker = caller.asker(body.sub.as_deref())?;
    let resource = ResourceRef {
        resource_type: body.resource.resource_type,
        id: body.resource.id,
    };
    let decision = resources::decide(
        &app.store,
        &app.config.roles,
        asker,
        &body.permission,
        &resource,
    )
    .await
    .map_err(identity_problem)?;
    tracing::info!(
        user = %asker.user_id,
        client_id = ?asker.client_id,
        permission = %body.permission,
        resource_type = %resource.resource_type,
        decision = ?decision,
        "access check"
    );
    Ok(no_store(CheckAnswer::from(decision)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourcesQuery {
    #[serde(rename = "type")]
    resource_type: String,
    page_size: Option<u32>,
    cursor: Option<String>,
    sub: Option<String>,
}

/// GET `/access/v1/resources?type=`: the resources of a type the person holds roles
/// on, with the roles.
async fn list_resources(
    req: HttpRequest,
    app: web::Data<AppState>,
    query: web::Query<ResourcesQuery>,
) -> Result<HttpResponse, Problem> {
    let caller = Caller::authenticate(&req, &app).await?;
    let query = query.into_inner();
    let asker = caller.asker(query.sub.as_deref())?;
    let page = user_resource_page(
        &app,
        asker.user_id,
        &OfType {
            resource_type: query.resource_type,
            page_size: query.page_size,
            cursor: query.cursor,
        },
    )
    .await?;
    Ok(no_store(page))
}

fn no_store(body: impl Serialize) -> HttpResponse {
    HttpResponse::build(StatusCode::OK)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::resources::Denial;
    use crate::store::HeldResourceRole;

    #[test]
    fn answers_say_why() {
        let answer = |d| serde_json::to_value(CheckAnswer::from(d)).unwrap_or_default();
        assert_eq!(
            answer(Decision::ResourceRole(HeldResourceRole {
                role: "list-editor".into(),
                via_group: Some("editors".into()),
            })),
            serde_json::json!({"allowed": true, "reason": "resource_role",
                "role": "list-editor", "via_group": "editors"})
        );
        assert_eq!(
            answer(Decision::Denied(Denial::UserDisabled)),
            serde_json::json!({"allowed": false, "reason": "user_disabled"})
        );
    }

    #[test]
    fn a_person_asks_only_about_themselves_and_a_client_names_someone() {
        let person = Caller::Person {
            user_id: "u1".into(),
            client_id: "app".into(),
            provider_id: "local".into(),
        };
        assert_eq!(person.asker(None).map(|a| a.user_id).ok(), Some("u1"));
        assert_eq!(person.asker(Some("u1")).map(|a| a.user_id).ok(), Some("u1"));
        assert_eq!(
            person.asker(Some("u2")).map_err(|p| p.status).err(),
            Some(403)
        );
        let client = Caller::Client {
            client_id: "api".into(),
        };
        assert_eq!(client.asker(Some("u2")).map(|a| a.user_id).ok(), Some("u2"));
        assert_eq!(
            client.asker(None).map_err(|p| p.field).err(),
            Some(Some("sub".to_string()))
        );
    }
}
