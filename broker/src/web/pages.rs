//! HTML pages: templates embedded in the binary, rendered with autoescaping, sent with
//! `Cache-Control: no-store`.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
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

    pub fn error(
        &self,
        status: StatusCode,
        title: &str,
        message: &str,
        request_id: Option<&str>,
    ) -> HttpResponse {
        self.render(
            "error.html",
            status,
            minijinja::context! { title, message, request_id },
        )
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
                request_id => "r", csrf => "c", username => "<script>x</script>",
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
