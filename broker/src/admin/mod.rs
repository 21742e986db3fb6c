//! The admin API, `/admin/api/v1`: JSON for programs that manage people. Every route
//! is a handler annotated for OpenAPI and mounted through `utoipa-actix-web`, so the
//! document served at `/admin/api/v1/openapi.json` is generated from the same list
//! the server routes by and cannot leave a route out. Every error, whoever raises it
//! (a handler, an extractor, an unknown path), leaves as an RFC 9457 problem.

mod audit;
mod body;
mod caller;
mod groups;
mod keys;
mod paging;
mod problem;
pub mod resources;
mod users;

pub use problem::{Problem, internal};
pub use users::identity_problem;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpResponse, ResponseError, get, web};
use std::net::SocketAddr;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::scope::Scope;

pub const PREFIX: &str = "/admin/api/v1";

/// The admin API's routes, for the server and for the OpenAPI document alike.
pub fn scope() -> Scope<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    utoipa_actix_web::scope(PREFIX)
        .app_data(
            web::QueryConfig::default()
                .error_handler(|e, _| Problem::bad_request(format!("query string: {e}")).into()),
        )
        .app_data(
            web::PathConfig::default()
                .error_handler(|e, _| Problem::bad_request(format!("path: {e}")).into()),
        )
        .service(users::list_users)
        .service(users::create_user)
        .service(users::get_user)
        .service(users::update_user)
        .service(users::delete_user)
        .service(users::set_password)
        .service(users::reset_mfa)
        .service(users::list_sessions)
        .service(users::end_sessions)
        .service(users::grant_role)
        .service(users::revoke_role)
        .service(groups::list_groups)
        .service(groups::create_group)
        .service(groups::get_group)
        .service(groups::update_group)
        .service(groups::delete_group)
        .service(groups::list_members)
        .service(groups::add_member)
        .service(groups::remove_member)
        .service(keys::list_keys)
        .service(keys::create_key)
        .service(keys::revoke_key)
        .service(resources::list_resource_grants)
        .service(resources::grant_resource_role)
        .service(resources::revoke_resource_role)
        .service(resources::list_user_resources)
        .service(audit::query_audit)
        .service(openapi_json)
        .default_service(web::to(|| async {
            Problem::new(StatusCode::NOT_FOUND, "no such admin API route").error_response()
        }))
        .wrap(from_fn(errors_as_problems))
}

/// The OpenAPI 3.1 document, built once from [`scope`].
pub fn openapi() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let (_, mut api) = actix_web::App::new()
            .into_utoipa_app()
            .service(scope())
            .split_for_parts();
        describe(&mut api);
        api.to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"the document failed to render: {e}\"}}"))
    })
}

fn describe(api: &mut OpenApi) {
    api.info = InfoBuilder::new()
        .title("Switchboard admin API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Manage people, their sessions, role grants, roles on resources and API keys, \
             and read the audit trail. Authenticate with a bearer access token of this broker whose grant has \
             the `permissions` scope and whose user's roles hold the operation's \
             permission (or, where `[admin] accept_api_keys` is on, with an API key \
             whose scopes hold it).",
        ))
        .build();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
}

/// The OpenAPI document of this API.
#[utoipa::path(
    tag = "meta",
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json"))
)]
#[get("/openapi.json")]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi())
}

/// With `[admin] listen`, the admin API and `/metrics` answer only there and nothing
/// else does: a request on the other listener finds no such route. The answer for a
/// request on the wrong listener, `None` when it is on its own (the request middleware's
/// gate, set only when there is an admin listener).
pub fn on_wrong_listener(req: &ServiceRequest, admin: SocketAddr) -> Option<HttpResponse> {
    let on_admin = req.app_config().local_addr().port() == admin.port();
    let path = req.path();
    let for_admin = path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|rest| rest.starts_with('/'))
        || path == "/metrics";
    match (on_admin == for_admin, for_admin) {
        (true, _) => None,
        (false, true) => Some(
            Problem::new(StatusCode::NOT_FOUND, "the admin API listens elsewhere").error_response(),
        ),
        (false, false) => Some(HttpResponse::NotFound().finish()),
    }
}

/// Turns any error response that is not yet a problem (an extractor's, a too large
/// body's, a wrong method's) into one, keeping its status.
async fn errors_as_problems(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?.map_into_boxed_body();
    let status = res.status();
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(problem::PROBLEM_JSON.as_bytes()));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return Ok(res);
    }
    let detail = res
        .response()
        .error()
        .map_or_else(|| status.to_string(), ToString::to_string);
    let problem = match status {
        // Never echo the inside of a failure.
        s if s.is_server_error() => Problem::internal(),
        s => Problem::new(s, detail),
    };
    Ok(res.into_response(problem.error_response()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed step should fail the test loudly
mod tests {
    use super::*;

    /// Every route attribute in the admin sources, as (method, path).
    fn declared_routes() -> Vec<(String, String)> {
        let sources = [
            include_str!("mod.rs"),
            include_str!("users.rs"),
            include_str!("audit.rs"),
            include_str!("groups.rs"),
            include_str!("keys.rs"),
            include_str!("resources.rs"),
        ];
        let attribute =
            regex::Regex::new(r#"(?m)^#\[(get|post|put|patch|delete)\("([^"]+)"\)\]"#).unwrap();
        sources
            .iter()
            .flat_map(|source| attribute.captures_iter(source))
            .map(|c| (c[1].to_string(), c[2].to_string()))
            .collect()
    }

    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_route() {
        let doc: serde_json::Value = serde_json::from_str(openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{doc}");
        let routes = declared_routes();
        assert!(routes.len() >= 12, "{routes:?}");
        for (method, path) in &routes {
            // OpenAPI writes path parameters as {id}, as actix does.
            let full = format!("{PREFIX}{path}");
            assert!(
                doc["paths"][&full][method].is_object(),
                "{method} {full} is routed but missing from the document"
            );
        }
        let documented: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|item| item.as_object().unwrap().len())
            .sum();
        assert_eq!(
            documented,
            routes.len(),
            "the document lists a route nobody serves"
        );
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    }
}
