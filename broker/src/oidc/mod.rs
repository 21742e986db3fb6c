//! The issuer's endpoints toward apps: discovery, JWKS, `/authorize`, `/token` (with
//! token exchange), userinfo, introspection, revocation, logout, and the device
//! authorization grant (`/device_authorization`, `/device`).

pub mod authorize;
pub mod backchannel;
pub mod clients;
pub mod device;
pub mod logout;
pub mod token;
pub mod token_exchange;
pub mod token_status;
pub mod userinfo;

use crate::config::{Config, SUPPORTED_GRANTS, SUPPORTED_SCOPES, SigningAlg};
use crate::web::AppState;
use actix_cors::Cors;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Mounts the issuer's endpoints. The ones a browser app calls from its own origin
/// (discovery, JWKS, `/token`, userinfo, `/revoke`) answer CORS for the origins
/// clients registered (`cors_origins`), never with credentials.
pub fn routes(config: &Config, cfg: &mut web::ServiceConfig) {
    let origins: Arc<BTreeSet<String>> = Arc::new(
        config
            .clients
            .values()
            .flat_map(|c| c.cors_origins.iter().cloned())
            .collect(),
    );
    let cors = move || {
        let origins = origins.clone();
        Cors::default()
            .allowed_origin_fn(move |origin, _| origin.to_str().is_ok_and(|o| origins.contains(o)))
            .allowed_methods(["GET", "POST"])
            .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::WWW_AUTHENTICATE])
            .max_age(600)
            // Other origins get no CORS headers (the browser refuses), while servers
            // that send an Origin still get their answer.
            .block_on_origin_mismatch(false)
    };
    cfg.service(
        web::resource("/.well-known/openid-configuration")
            .wrap(cors())
            .route(web::get().to(discovery)),
    )
    .service(
        web::resource("/.well-known/oauth-authorization-server")
            .wrap(cors())
            .route(web::get().to(oauth_metadata)),
    )
    .service(
        web::resource("/jwks")
            .wrap(cors())
            .route(web::get().to(jwks)),
    )
    .service(
        web::resource("/token")
            .wrap(cors())
            .route(web::post().to(token::token)),
    )
    .service(
        web::resource("/userinfo")
            .wrap(cors())
            .route(web::get().to(userinfo::userinfo_get))
            .route(web::post().to(userinfo::userinfo_post)),
    )
    .service(
        web::resource("/revoke")
            .wrap(cors())
            .route(web::post().to(token_status::revoke)),
    )
    .route("/authorize", web::get().to(authorize::authorize))
    .route("/authorize", web::post().to(authorize::authorize))
    .route("/introspect", web::post().to(token_status::introspect))
    .route(
        "/device_authorization",
        web::post().to(device::device_authorization),
    )
    .route("/device", web::get().to(device::show))
    .route("/device", web::post().to(device::submit))
    .route("/logout", web::get().to(logout::logout))
    .route("/logout", web::post().to(logout::logout));
}

async fn discovery(app: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(app.discovery.as_str().to_owned())
}

async fn oauth_metadata(app: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(app.oauth_metadata.as_str().to_owned())
}

async fn jwks(app: web::Data<AppState>) -> HttpResponse {
    match app.keyring.jwks() {
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
    }
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
        "device_authorization_endpoint": format!("{iss}/device_authorization"),
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
                "amr",
                "acr",
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
            "acr_values_supported".into(),
            serde_json::json!(crate::tokens::amr::ACR_VALUES),
        );
        o.insert(
            "amr_values_supported".into(),
            serde_json::json!(crate::tokens::amr::AMR_VALUES),
        );
        o.insert(
            "prompt_values_supported".into(),
            serde_json::json!(["none", "login", "select_account"]),
        );
    }
    (oidc.to_string(), oauth.to_string())
}
