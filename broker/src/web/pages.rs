//! HTML pages: templates embedded in the binary, rendered with autoescaping, sent with
//! `Cache-Control: no-store`; and [`PageError`], the one error a page handler returns.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use minijinja::{AutoEscape, Environment};
use serde::Serialize;

#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
}

pub const STYLE_CSS: &str = include_str!("../../templates/style.css");

impl Pages {
    pub fn new() -> Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        // Everything is escaped, whatever the file name: provider reasons and
        // login_hint are attacker-controlled.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.add_template("layout.html", include_str!("../../templates/layout.html"))?;
        env.add_template("error.html", include_str!("../../templates/error.html"))?;
        env.add_template("choose.html", include_str!("../../templates/choose.html"))?;
        env.add_template(
            "password.html",
            include_str!("../../templates/password.html"),
        )?;
        env.add_template("logout.html", include_str!("../../templates/logout.html"))?;
        env.add_template("account.html", include_str!("../../templates/account.html"))?;
        env.add_template("device.html", include_str!("../../templates/device.html"))?;
        env.add_template("forgot.html", include_str!("../../templates/forgot.html"))?;
        env.add_template("reset.html", include_str!("../../templates/reset.html"))?;
        env.add_template(
            "register.html",
            include_str!("../../templates/register.html"),
        )?;
        env.add_template(
            "verify_email.html",
            include_str!("../../templates/verify_email.html"),
        )?;
        env.add_template(
            "account_credentials.html",
            include_str!("../../templates/account_credentials.html"),
        )?;
        env.add_template("totp.html", include_str!("../../templates/totp.html"))?;
        env.add_template(
            "account_mfa.html",
            include_str!("../../templates/account_mfa.html"),
        )?;
        env.add_template(
            "mfa_enrol.html",
            include_str!("../../templates/mfa_enrol.html"),
        )?;
        Ok(Pages { env })
    }

    pub fn render<S: Serialize>(&self, name: &str, status: StatusCode, ctx: S) -> HttpResponse {
        match self.env.get_template(name).and_then(|t| t.render(ctx)) {
            Ok(body) => html(status, body),
            Err(e) => {
                tracing::error!(template = name, error = %e, "template failed");
                html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<!doctype html><p>Internal error</p>".to_string(),
                )
            }
        }
    }

    /// The page for `error`, naming the request id so a person can quote it.
    pub fn error_page(&self, error: &PageError, request_id: Option<&str>) -> HttpResponse {
        self.render(
            "error.html",
            error.status,
            minijinja::context! {
                title => &error.title,
                message => &error.message,
                back => &error.back,
                request_id,
            },
        )
    }
}

/// Why a page request failed, in words safe to show: a status, a title, a message and
/// maybe a way back. Handlers return it; the request middleware renders the page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{title}: {message}")]
pub struct PageError {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
    pub back: Option<WayBack>,
}

/// A link off an error page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WayBack {
    /// Element id, for tests and styling.
    pub id: &'static str,
    pub url: String,
    pub label: &'static str,
}

pub const TRY_AGAIN: &str = "Something went wrong. Try again.";

impl PageError {
    pub fn new(status: StatusCode, title: impl Into<String>, message: impl Into<String>) -> Self {
        PageError {
            status,
            title: title.into(),
            message: message.into(),
            back: None,
        }
    }

    /// A sign-in request that cannot go on.
    pub fn sign_in(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "Sign-in request refused", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::sign_in(StatusCode::BAD_REQUEST, message)
    }

    /// A fault of ours: the cause goes to the log, never to the page.
    pub fn internal() -> Self {
        Self::sign_in(StatusCode::INTERNAL_SERVER_ERROR, TRY_AGAIN)
    }

    pub fn malformed() -> Self {
        Self::bad_request("The request is malformed.")
    }

    /// Adds a link back to the application, carrying an OAuth error for it.
    pub fn back_to_app(mut self, url: impl Into<String>) -> Self {
        self.back = Some(WayBack {
            id: "return-to-app",
            url: url.into(),
            label: "Return to the application",
        });
        self
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    /// Plain text, for a response that never passed the middleware (which renders the
    /// real page in its place).
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status)
            .content_type("text/plain; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body(format!("{}\n\n{}\n", self.title, self.message))
    }
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses_and_escapes_input() {
        let pages = Pages::new().unwrap();
        let res = pages.render(
            "password.html",
            StatusCode::OK,
            minijinja::context! {
                client_name => "App", provider_name => "Local", provider_id => "local",
                login_id => "r", csrf => "c", username => "<script>x</script>",
                error => "<b>bad</b>",
            },
        );
        assert_eq!(res.status(), StatusCode::OK);
        let body = actix_web::body::to_bytes(res.into_body());
        let body = futures_lite_block_on(body);
        assert!(!body.contains("<script>x"), "{body}");
        assert!(body.contains("&lt;script&gt;"));
        assert!(!body.contains("<b>bad"));
    }

    #[test]
    fn the_device_page_renders_each_stage_escaped() {
        let pages = Pages::new().unwrap();
        for stage in ["enter", "confirm", "approved", "denied"] {
            let res = pages.render(
                "device.html",
                StatusCode::OK,
                minijinja::context! {
                    stage, csrf => "c", user_code => "BCDF-GHJK", error => "<i>bad</i>",
                    client_name => "<b>TV</b>", client_id => "tv", scopes => ["openid", "<x>"],
                },
            );
            let body = futures_lite_block_on(actix_web::body::to_bytes(res.into_body()));
            assert!(
                !body.contains("<b>TV") && !body.contains("<x>") && !body.contains("<i>bad"),
                "{body}"
            );
            assert!(
                body.contains(&format!(
                    "id=\"device-{}\"",
                    match stage {
                        "enter" => "code-form",
                        "confirm" => "decision-form",
                        other => other,
                    }
                )),
                "{stage}: {body}"
            );
        }
    }

    #[test]
    fn an_error_page_shows_its_message_and_way_back_escaped() {
        let pages = Pages::new().unwrap();
        let error = PageError::bad_request("<i>no</i>").back_to_app("https://app/cb?error=x&a=<b>");
        let res = pages.error_page(&error, Some("req-1"));
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let body = futures_lite_block_on(actix_web::body::to_bytes(res.into_body()));
        assert!(body.contains("&lt;i&gt;no"), "{body}");
        assert!(body.contains("id=\"return-to-app\""), "{body}");
        assert!(!body.contains("a=<b>"), "{body}");
        assert!(body.contains("req-1"), "{body}");
    }

    fn futures_lite_block_on<
        F: std::future::Future<Output = Result<actix_web::web::Bytes, E>>,
        E: std::fmt::Debug,
    >(
        f: F,
    ) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        String::from_utf8(rt.block_on(f).unwrap().to_vec()).unwrap()
    }
}
