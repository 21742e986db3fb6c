//! The login pages a [`PendingLogin`] walks through: choose a provider, then the
//! password form (`password`), the trip upstream and back (`redirect`) or a login from
//! the request's headers (`header`, e.g. Kerberos SPNEGO), the second factor when the
//! person has one (`second_factor`), and what happens after a
//! successful login (`finish`: a session and the code, or a link); and the local
//! provider's self-service pages that need no session (`reset`: forgotten passwords;
//! `register`: registration and email links).

mod finish;
mod header;
mod password;
mod redirect;
mod register;
mod reset;
mod second_factor;
mod throttle;

use crate::flow::PendingLogin;
use crate::providers::ProviderEntry;
use crate::web::{AppState, PageError, see_other};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(choose))
        .route("/login/{provider}", web::get().to(start_provider))
        .route("/login/{provider}", web::post().to(password::submit))
        .route("/second-factor", web::get().to(second_factor::form))
        .route("/second-factor", web::post().to(second_factor::submit))
        .route("/login/{provider}/header", web::get().to(header::attempt))
        .route("/callback/{provider}", web::get().to(redirect::callback))
        .route("/callback/{provider}", web::post().to(redirect::callback))
        .route(
            "/password/forgot/{provider}",
            web::get().to(reset::forgot_form),
        )
        .route(
            "/password/forgot/{provider}",
            web::post().to(reset::forgot_submit),
        )
        .route(
            "/password/reset/{provider}",
            web::get().to(reset::reset_form),
        )
        .route(
            "/password/reset/{provider}",
            web::post().to(reset::reset_submit),
        )
        .route("/register/{provider}", web::get().to(register::form))
        .route("/register/{provider}", web::post().to(register::submit))
        .route(
            "/register/{provider}/confirm",
            web::get().to(register::confirm_form),
        )
        .route(
            "/register/{provider}/confirm",
            web::post().to(register::confirm_submit),
        )
        .route("/email/verify", web::get().to(register::verify_form))
        .route("/email/verify", web::post().to(register::verify_submit))
        .route("/assets/style.css", web::get().to(style))
        .route("/assets/theme.css", web::get().to(theme_style))
        .route("/assets/logo.svg", web::get().to(logo))
        .route("/assets/logo.png", web::get().to(logo));
}

fn asset(
    content_type: &'static str,
    body: impl actix_web::body::MessageBody + 'static,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(body)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", crate::web::pages::STYLE_CSS)
}

/// The operator's style sheet (`[ui] theme_dir`/style.css), loaded after ours.
async fn theme_style(app: web::Data<AppState>) -> HttpResponse {
    match app.pages.theme_css() {
        Some(css) => asset("text/css; charset=utf-8", css.to_string()),
        None => HttpResponse::NotFound().finish(),
    }
}

/// The operator's logo, at the one path its kind has.
async fn logo(req: HttpRequest, app: web::Data<AppState>) -> HttpResponse {
    match app.pages.logo() {
        Some(logo) if logo.path == req.path() => asset(logo.content_type, logo.bytes.clone()),
        _ => HttpResponse::NotFound().finish(),
    }
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    req: Option<String>,
}

/// GET `/login?req=…`: the provider choice, or straight to the only provider.
async fn choose(
    req: HttpRequest,
    app: web::Data<AppState>,
    q: web::Query<LoginQuery>,
) -> Result<HttpResponse, PageError> {
    let p = PendingLogin::load(&app, &req, q.req.as_deref()).await?;
    let all = app.providers.all();
    let choose_account = p.request().is_some_and(|r| r.prompt.select_account);
    if let [only] = all
        && !choose_account
    {
        return Ok(see_other(&format!("/login/{}?req={}", only.id, p.id)));
    }
    let providers: Vec<_> = all
        .iter()
        .map(|e| minijinja::context! { id => &e.id, name => &e.name })
        .collect();
    Ok(app.pages.render(
        "choose.html",
        StatusCode::OK,
        minijinja::context! { client_name => p.heading(&app), providers, login_id => &p.id },
    ))
}

/// GET `/login/{provider}?req=…`: the password form, or off to the upstream.
async fn start_provider(
    req: HttpRequest,
    app: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<LoginQuery>,
) -> Result<HttpResponse, PageError> {
    let p = PendingLogin::load(&app, &req, q.req.as_deref()).await?;
    let entry = provider(&app, &path)?;
    if entry.has_header() {
        return Ok(header::start(&app, &p, entry));
    }
    if entry.has_password() {
        let hint = p.login_hint().unwrap_or_default().to_string();
        return Ok(password::page(&app, &p, entry, &hint, None, StatusCode::OK));
    }
    redirect::begin(&req, &app, &p, entry).await
}

fn provider<'a>(app: &'a AppState, id: &str) -> Result<&'a ProviderEntry, PageError> {
    app.providers
        .get(id)
        .ok_or_else(|| PageError::sign_in(StatusCode::NOT_FOUND, "msg.no_such_method"))
}
