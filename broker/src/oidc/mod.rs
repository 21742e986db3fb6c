//! The issuer's endpoints toward apps: discovery, JWKS, `/authorize`, `/token`,
//! userinfo, introspection, revocation and logout.

pub mod authorize;
pub mod backchannel;
pub mod clients;
pub mod logout;
pub mod token;
pub mod token_status;
pub mod userinfo;

use crate::config::{Config, SUPPORTED_GRANTS, SUPPORTED_SCOPES, SigningAlg};
use crate::web::AppState;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::BTreeSet;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/openid-configuration",
        web::get().to(discovery),
    )
    .route(
        "/.well-known/oauth-authorization-server",
        web::get().to(oauth_metadata),
    )
    .route("/jwks", web::get().to(jwks))
    .route("/authorize", web::get().to(authorize::authorize))
    .route("/authorize", web::post().to(authorize::authorize))
    .route("/token", web::post().to(token::token))
    .route("/userinfo", web::get().to(userinfo::userinfo_get))
    .route("/userinfo", web::post().to(userinfo::userinfo_post))
    .route("/introspect", web::post().to(token_status::introspect))
    .route("/revoke", web::post().to(token_status::revoke))
    .route("/logout", web::get().to(logout::logout))
    .route("/logout", web::post().to(logout::logout));
    for path in [
        "/.well-known/openid-configuration",
        "/jwks",
        "/token",
        "/userinfo",
    ] {
        cfg.route(
            path,
            web::method(actix_web::http::Method::OPTIONS).to(preflight),
        );
    }
}

/// Adds CORS headers (no credentials) when the Origin is one a client registered.
fn with_cors(app: &AppState, req: &HttpRequest, mut res: HttpResponse) -> HttpResponse {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
    else {
        return res;
    };
    let allowed = app
        .config
        .clients
        .values()
        .any(|c| c.cors_origins.contains(origin));
    let h = res.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if allowed && let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    res
}

async fn preflight(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    let res = HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "Authorization, Content-Type",
        ))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish();
    with_cors(&app, &req, res)
}

async fn discovery(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    let res = HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(app.discovery.as_str().to_owned());
    with_cors(&app, &req, res)
}

async fn oauth_metadata(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    let res = HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(app.oauth_metadata.as_str().to_owned());
    with_cors(&app, &req, res)
}

async fn jwks(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    let res = match app.keyring.jwks() {
        Ok(body) => HttpResponse::Ok()
            .content_type("application/jwk-set+json")
            .insert_header((
                "Cache-Control",
                format!("public, max-age={}", app.config.tokens.jwks_cache_lifetime),
            ))
            .body(body.as_str().to_owned()),
        Err(e) => {
            tracing::error!(error = %e, "jwks unavailable");
            HttpResponse::ServiceUnavailable().finish()
        }
    };
    with_cors(&app, &req, res)
}

/// The discovery document (OIDC Discovery 1.0) and the RFC 8414 metadata, built from
/// the configured issuer only — never from the Host header.
pub fn metadata(config: &Config) -> (String, String) {
    let iss = &config.issuer;
    let mut algs: BTreeSet<SigningAlg> = config.clients.values().map(|c| c.id_token_alg).collect();
    algs.insert(config.tokens.default_alg);
    let algs: Vec<&str> = algs.into_iter().map(SigningAlg::as_str).collect();
    let oauth = serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{iss}/jwks"),
        "revocation_endpoint": format!("{iss}/revoke"),
        "introspection_endpoint": format!("{iss}/introspect"),
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": SUPPORTED_GRANTS,
        "scopes_supported": SUPPORTED_SCOPES,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
    });
    let mut oidc = oauth.clone();
    if let Some(o) = oidc.as_object_mut() {
        o.insert("userinfo_endpoint".into(), format!("{iss}/userinfo").into());
        o.insert(
            "end_session_endpoint".into(),
            format!("{iss}/logout").into(),
        );
        o.insert("backchannel_logout_supported".into(), true.into());
        o.insert("backchannel_logout_session_supported".into(), true.into());
        o.insert(
            "subject_types_supported".into(),
            serde_json::json!(["public"]),
        );
        o.insert(
            "id_token_signing_alg_values_supported".into(),
            serde_json::json!(algs),
        );
        o.insert("claims_parameter_supported".into(), false.into());
        o.insert(
            "claims_supported".into(),
            serde_json::json!([
                "iss",
                "sub",
                "aud",
                "azp",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "sid",
                "email",
                "email_verified",
                "name",
                "given_name",
                "family_name",
                "preferred_username",
                "picture",
                "groups",
                "roles",
                "permissions"
            ]),
        );
        o.insert(
            "prompt_values_supported".into(),
            serde_json::json!(["none", "login", "select_account"]),
        );
    }
    (oidc.to_string(), oauth.to_string())
}
