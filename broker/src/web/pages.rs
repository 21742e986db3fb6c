//! HTML pages: templates rendered with autoescaping, sent with `Cache-Control:
//! no-store` and a strict Content-Security-Policy; and [`PageError`], the one error a
//! page handler returns.
//!
//! **Templates** are built in (`broker/templates/*.html`, listed in [`TEMPLATES`]);
//! an operator's theme (`[ui] theme_dir`, see [`super::theme`]) may replace any of
//! them, add a style sheet served after the built-in one, and a logo. Overrides are
//! compiled and rendered once with a representative context at start-up, so a broken
//! one stops the start naming its file.
//!
//! **Text** comes from the message catalogues ([`super::i18n`]): a template never
//! holds a sentence, it calls `t`:
//!
//! ```text
//! {{ t("password.title") }}                     a key of broker/locales/*.toml
//! {{ t("password.heading", client=client_name) }}  with a {client} placeholder
//! {{ t(error) }}                                 a message the handler passed: a
//!                                                msg.* key string or a Text
//! ```
//!
//! Converting an English template: replace each sentence by `{{ t("<template>.<name>")
//! }}`, add the key to `locales/en.toml` and `locales/de.toml` (same key, under the
//! template's table), and make handlers pass `msg.*` keys or [`Text`] instead of
//! sentences. The test `every_key_in_a_template_or_the_code_is_in_every_catalogue`
//! reads every file in `broker/templates` and every `"msg.…"` literal in the broker's
//! source, so a new template or message is checked as soon as it uses keys.
//!
//! **Language**: [`Pages::render`] takes it from the request (see [`super::i18n`]) and
//! gives templates `lang` (`<html lang>`); handlers do not pass it.

use super::i18n::{self, Catalogues, Text};
use super::theme::{Logo, Theme, ThemeError};
use crate::config::UiSettings;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use minijinja::value::{Kwargs, Value};
use minijinja::{AutoEscape, Environment, State};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Pages {
    env: Environment<'static>,
    catalogues: Arc<Catalogues>,
    theme_css: Option<String>,
    logo: Option<Logo>,
}

pub const STYLE_CSS: &str = include_str!("../../templates/style.css");

/// Every built-in template, by name. A new page adds its file here.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../templates/layout.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("choose.html", include_str!("../../templates/choose.html")),
    (
        "password.html",
        include_str!("../../templates/password.html"),
    ),
    ("logout.html", include_str!("../../templates/logout.html")),
    ("account.html", include_str!("../../templates/account.html")),
    ("device.html", include_str!("../../templates/device.html")),
    ("forgot.html", include_str!("../../templates/forgot.html")),
    ("reset.html", include_str!("../../templates/reset.html")),
    (
        "register.html",
        include_str!("../../templates/register.html"),
    ),
    (
        "verify_email.html",
        include_str!("../../templates/verify_email.html"),
    ),
    (
        "account_credentials.html",
        include_str!("../../templates/account_credentials.html"),
    ),
    ("totp.html", include_str!("../../templates/totp.html")),
    (
        "account_mfa.html",
        include_str!("../../templates/account_mfa.html"),
    ),
    (
        "mfa_enrol.html",
        include_str!("../../templates/mfa_enrol.html"),
    ),
];

/// The policy of every page: nothing but our own style sheets and images; no script,
/// no inline style, no framing. `form-action` is left out on purpose: Chromium
/// applies it to the redirect after a form post, and the login forms answer with a
/// 303 to the application's redirect URI on another origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'";

/// Why the pages could not be set up: a theme file, or a built-in (a bug).
#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    #[error("theme: {0}")]
    Theme(#[from] ThemeError),
    #[error("{0}")]
    Locale(String),
    #[error("built-in templates: {0}")]
    BuiltIn(String),
}

impl Pages {
    /// The built-in pages, in English unless a request asks for another language.
    pub fn new() -> Result<Self, PagesError> {
        Self::build(Theme::default(), i18n::ENGLISH)
    }

    /// The pages `[ui]` asks for: the theme read and checked, the default locale.
    pub fn load(ui: &UiSettings) -> Result<Self, PagesError> {
        let names: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
        let theme = match &ui.theme_dir {
            Some(dir) => Theme::read(dir, &names)?,
            None => Theme::default(),
        };
        Self::build(theme, &ui.default_locale)
    }

    fn build(theme: Theme, default_locale: &str) -> Result<Self, PagesError> {
        let Theme {
            templates,
            css,
            logo,
            locales,
        } = theme;
        let catalogues = Catalogues::new(locales, default_locale)
            .map_err(|e| PagesError::Locale(e.to_string()))?;
        let catalogues = Arc::new(catalogues);
        let mut env = Environment::new();
        // Everything is escaped, whatever the file name: provider reasons and
        // login_hint are attacker-controlled.
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| PagesError::BuiltIn(format!("{name}: {e}")))?;
        }
        let mut files = BTreeMap::new();
        for (name, source, file) in templates {
            env.add_template_owned(name.clone(), source)
                .map_err(|e| ThemeError::new(&file, template_error(&e)))?;
            files.insert(name, file);
        }
        let t_catalogues = catalogues.clone();
        env.add_function(
            "t",
            move |state: &State,
                  value: Value,
                  kwargs: Kwargs|
                  -> Result<String, minijinja::Error> {
                translate(&t_catalogues, state, &value, &kwargs)
            },
        );
        env.add_global(
            "theme",
            Value::from_serialize(ThemeView {
                css: css.is_some(),
                logo: logo.as_ref().and_then(|l| l.path.rsplit('.').next()),
            }),
        );
        let pages = Pages {
            env,
            catalogues,
            theme_css: css,
            logo,
        };
        pages.check(&files)?;
        Ok(pages)
    }

    /// Renders every template with representative contexts in every locale, so a
    /// theme's template that fails does so now, naming its file.
    fn check(&self, files: &BTreeMap<String, std::path::PathBuf>) -> Result<(), PagesError> {
        for (name, _) in TEMPLATES {
            'template: for ctx in sample_contexts() {
                for locale in self.catalogues.locales() {
                    let ctx = minijinja::context! { lang => locale, ..ctx.clone() };
                    let rendered = self.env.get_template(name).and_then(|t| t.render(ctx));
                    if let Err(e) = rendered {
                        let failed = e.name().unwrap_or(name);
                        match files.get(failed).or_else(|| files.get(*name)) {
                            Some(file) => {
                                return Err(ThemeError::new(file, template_error(&e)).into());
                            }
                            // A built-in page the sample data does not fit (a new page's
                            // variable missing from `sample_contexts`): the unit test
                            // `every_built_in_template_renders_with_the_sample_data`
                            // fails on it; the running broker renders it with real data.
                            None => {
                                tracing::warn!(template = name, error = %e, "a built-in template does not render with the sample data");
                                break 'template;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub fn catalogues(&self) -> &Catalogues {
        &self.catalogues
    }

    /// The theme's style sheet, served after the built-in one.
    pub fn theme_css(&self) -> Option<&str> {
        self.theme_css.as_deref()
    }

    pub fn logo(&self) -> Option<&Logo> {
        self.logo.as_ref()
    }

    /// The language of this request: the one chosen for it if there is a catalogue,
    /// else the default.
    pub fn locale(&self) -> String {
        i18n::current_locale()
            .filter(|l| self.catalogues.get(l).is_some())
            .unwrap_or_else(|| self.catalogues.default_locale().to_string())
    }

    /// `text` in this request's language.
    pub fn text(&self, text: &Text) -> String {
        self.catalogues
            .format(&self.locale(), &text.key, &text.args)
    }

    /// Renders template `name` with `ctx` (plus `lang`, the request's language).
    pub fn render<S: Serialize>(&self, name: &str, status: StatusCode, ctx: S) -> HttpResponse {
        let ctx = minijinja::context! { lang => self.locale(), ..Value::from_serialize(ctx) };
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

#[derive(Serialize)]
struct ThemeView {
    css: bool,
    /// The logo's kind (`svg`, `png`): it is at `/assets/logo.<kind>`.
    logo: Option<&'static str>,
}

/// A template error with its line, for the operator.
fn template_error(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("line {line}: {e}"),
        None => e.to_string(),
    }
}

/// The template function `t(key_or_text, name=value, …)`.
fn translate(
    catalogues: &Catalogues,
    state: &State,
    value: &Value,
    kwargs: &Kwargs,
) -> Result<String, minijinja::Error> {
    let lang = state
        .lookup("lang")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| catalogues.default_locale().to_string());
    let mut args = BTreeMap::new();
    let names: Vec<String> = kwargs.args().map(str::to_string).collect();
    for name in names {
        let v: Value = kwargs.get(&name)?;
        args.insert(name, value_text(&v));
    }
    kwargs.assert_all_used()?;
    if value.is_undefined() || value.is_none() {
        return Ok(String::new());
    }
    if let Some(key) = value.as_str() {
        return Ok(catalogues.format(&lang, key, &args));
    }
    // A `Text`: {key, args}.
    let key = value.get_attr("key")?;
    let Some(key) = key.as_str() else {
        return Ok(value_text(value));
    };
    let own = value.get_attr("args")?;
    if let Ok(names) = own.try_iter() {
        for name in names {
            let v = own.get_item(&name)?;
            args.insert(value_text(&name), value_text(&v));
        }
    }
    Ok(catalogues.format(&lang, key, &args))
}

fn value_text(v: &Value) -> String {
    if v.is_undefined() || v.is_none() {
        String::new()
    } else {
        v.to_string()
    }
}

/// Contexts that walk every branch of the built-in templates: one with every flag
/// on, one with every flag off, and each device stage.
fn sample_contexts() -> Vec<Value> {
    let mut out = Vec::new();
    for (on, stage) in [
        (true, "enter"),
        (false, "enter"),
        (true, "confirm"),
        (true, "approved"),
        (false, "denied"),
    ] {
        let text = Text::new("msg.try_again");
        out.push(minijinja::context! {
            signed_in => on, recent => on, confirm => on, sent => on, done => on,
            forgot => on, other_providers => on, stage,
            client_name => "Example app", provider_name => "Example", provider_id => "local",
            login_id => "req", csrf => "csrf", username => "ada", token => "token",
            min_length => 12, minutes => 30, user_code => "BCDF-GHJK",
            error => if on { Some(text.clone()) } else { None },
            key_error => if on { Some("msg.key_choose_expiry") } else { None },
            title => "msg.title.sign_in_refused", message => text.clone(),
            back => on.then(|| minijinja::context! { id => "return-to-app", url => "https://app.example/cb", label => "msg.return_to_app" }),
            request_id => "req-1",
            params => vec![("client_id", "app")],
            scopes => vec!["openid", "email"],
            providers => vec![minijinja::context! { id => "local", name => "Local" }],
            linked => vec![minijinja::context! { provider_id => "local", provider_name => "Local", subject => "ada" }],
            linkable => vec![minijinja::context! { id => "github", name => "GitHub" }],
            created_key_name => if on { Some("ci") } else { None },
            created_key_secret => if on { Some("sk_secret") } else { None },
            keys => vec![minijinja::context! {
                id => "k1", name => "ci", scopes => if on { "admin:read" } else { "" }, created => "2026-01-01 00:00 UTC",
                expires => "2027-01-01 00:00 UTC", last_used => if on { Some("2026-06-01 00:00 UTC") } else { None },
                status => if on { "active" } else { "revoked" },
            }],
            permissions => vec!["admin:read"],
            lifetimes => vec![minijinja::context! { seconds => 86_400, label => Text::new("msg.lifetime.one_day") }],
            default_lifetime => 86_400,
            mfa => minijinja::context! { enrolled => on, recovery_codes_left => 7 },
            recovery_codes => if on { vec!["aaaa-bbbb"] } else { Vec::new() },
            enrolled_now => on, secret => "KEY", verify => on, email => "ada@example.com",
            hours => 24, email_verified => on, offer_email_change => on,
            offer_password_change => on, min_password_length => 8,
            credentials_notice => on.then_some("msg.password_changed"),
            credentials_error => on.then(|| text.clone()),
        });
    }
    out
}

/// Why a page request failed, in words safe to show: a status, a title, a message and
/// maybe a way back. Handlers return it; the request middleware renders the page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{title}: {message}")]
pub struct PageError {
    pub status: StatusCode,
    pub title: Text,
    pub message: Text,
    pub back: Option<WayBack>,
}

/// A link off an error page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WayBack {
    /// Element id, for tests and styling.
    pub id: &'static str,
    pub url: String,
    /// A catalogue key.
    pub label: &'static str,
}

pub const TRY_AGAIN: &str = "msg.try_again";

impl PageError {
    /// `title` and `message` are catalogue keys (`msg.…`) or [`Text`]s.
    pub fn new(status: StatusCode, title: impl Into<Text>, message: impl Into<Text>) -> Self {
        PageError {
            status,
            title: title.into(),
            message: message.into(),
            back: None,
        }
    }

    /// A sign-in request that cannot go on.
    pub fn sign_in(status: StatusCode, message: impl Into<Text>) -> Self {
        Self::new(status, "msg.title.sign_in_refused", message)
    }

    pub fn bad_request(message: impl Into<Text>) -> Self {
        Self::sign_in(StatusCode::BAD_REQUEST, message)
    }

    /// A fault of ours: the cause goes to the log, never to the page.
    pub fn internal() -> Self {
        Self::sign_in(StatusCode::INTERNAL_SERVER_ERROR, TRY_AGAIN)
    }

    pub fn malformed() -> Self {
        Self::bad_request("msg.malformed")
    }

    /// Adds a link back to the application, carrying an OAuth error for it.
    pub fn back_to_app(mut self, url: impl Into<String>) -> Self {
        self.back = Some(WayBack {
            id: "return-to-app",
            url: url.into(),
            label: "msg.return_to_app",
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
        .insert_header(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
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

    fn body_of(res: HttpResponse) -> String {
        futures_lite_block_on(actix_web::body::to_bytes(res.into_body()))
    }

    #[test]
    fn every_built_in_template_renders_with_the_sample_data() {
        let pages = Pages::new().unwrap();
        for (name, _) in TEMPLATES {
            for ctx in sample_contexts() {
                for locale in pages.catalogues.locales() {
                    let ctx = minijinja::context! { lang => locale, ..ctx.clone() };
                    let rendered = pages.env.get_template(name).and_then(|t| t.render(ctx));
                    assert!(rendered.is_ok(), "{name} in {locale}: {rendered:?}");
                }
            }
        }
    }

    /// Every `t("key")` in every file of broker/templates (read from the directory, so
    /// a new template is covered once it uses keys) and every `"msg.…"` literal in
    /// the broker's source is in every built-in catalogue.
    #[test]
    fn every_key_in_a_template_or_the_code_is_in_every_catalogue() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let t_call = regex::Regex::new(r#"\bt\(\s*"([^"]+)""#).unwrap();
        let msg = regex::Regex::new(r#""(msg\.[a-z0-9_.]+)""#).unwrap();
        let mut used = Vec::new();
        let mut templates = 0;
        for entry in std::fs::read_dir(root.join("templates")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "html") {
                templates += 1;
                let text = std::fs::read_to_string(&path).unwrap();
                for c in t_call.captures_iter(&text) {
                    used.push((path.display().to_string(), c[1].to_string()));
                }
            }
        }
        assert!(templates >= TEMPLATES.len(), "{templates}");
        let mut stack = vec![root.join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for c in msg.captures_iter(&text) {
                        used.push((path.display().to_string(), c[1].to_string()));
                    }
                }
            }
        }
        assert!(used.len() > 100, "{}", used.len());
        let catalogues = Catalogues::new(Vec::new(), "en").unwrap();
        let mut missing = Vec::new();
        for (locale, _) in i18n::BUILT_IN {
            let c = catalogues.get(locale).unwrap();
            for (file, key) in &used {
                if !c.contains_key(key) {
                    missing.push(format!("{locale}: {key} (used in {file})"));
                }
            }
        }
        assert!(missing.is_empty(), "{missing:#?}");
    }

    /// German has every English key with the same placeholders, and no key English
    /// lacks (a typo would silently fall back to English).
    #[test]
    fn every_catalogue_has_the_english_keys_and_placeholders() {
        let catalogues = Catalogues::new(Vec::new(), "en").unwrap();
        let en = catalogues.get("en").unwrap();
        let placeholder = regex::Regex::new(r"\{([a-z_]+)\}").unwrap();
        let names = |s: &str| {
            let mut v: Vec<String> = placeholder
                .captures_iter(s)
                .map(|c| c[1].to_string())
                .collect();
            v.sort();
            v
        };
        for (locale, _) in i18n::BUILT_IN {
            let c = catalogues.get(locale).unwrap();
            for (key, text) in en {
                let other = c.get(key).unwrap_or_else(|| panic!("{locale} lacks {key}"));
                assert_eq!(names(text), names(other), "{locale} {key}");
            }
            for key in c.keys() {
                assert!(en.contains_key(key), "{locale} has {key}, English does not");
            }
        }
    }

    #[test]
    fn a_page_speaks_the_request_language_and_says_so() {
        let pages = Pages::new().unwrap();
        let ctx = || {
            minijinja::context! {
                client_name => "App", provider_name => "Local", provider_id => "local",
                login_id => "r", csrf => "c", username => "", error => "msg.bad_credentials",
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let german = rt.block_on(i18n::with_locale(Some("de".into()), async {
            pages.render("password.html", StatusCode::OK, ctx())
        }));
        let german = body_of(german);
        assert!(german.contains("<html lang=\"de\">"), "{german}");
        assert!(german.contains("Anmelden – App"), "{german}");
        assert!(
            german.contains("Benutzername oder Passwort ist falsch."),
            "{german}"
        );
        assert!(
            german.contains("aria-describedby=\"login-error\""),
            "{german}"
        );
        let english = body_of(pages.render("password.html", StatusCode::OK, ctx()));
        assert!(english.contains("<html lang=\"en\">"), "{english}");
        assert!(english.contains("Sign in to App"), "{english}");
        assert!(english.contains("Wrong username or password."), "{english}");
        // An unknown locale is the default one.
        let unknown = rt.block_on(i18n::with_locale(Some("xx".into()), async {
            pages.render("password.html", StatusCode::OK, ctx())
        }));
        assert!(body_of(unknown).contains("<html lang=\"en\">"));
    }

    #[test]
    fn every_page_carries_the_content_security_policy() {
        let pages = Pages::new().unwrap();
        let mut responses = vec![pages.error_page(&PageError::internal(), None)];
        for (name, _) in TEMPLATES {
            responses.push(pages.render(name, StatusCode::OK, minijinja::context! {}));
        }
        for res in responses {
            let csp = res
                .headers()
                .get("content-security-policy")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            assert_eq!(csp, CONTENT_SECURITY_POLICY);
            assert!(!csp.contains("unsafe-inline") && !csp.contains("form-action"));
            assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
            let body = body_of(res);
            assert!(
                !body.contains("<script") && !body.contains("style="),
                "{body}"
            );
        }
    }

    /// Every form field of the built-in pages has a label.
    #[test]
    fn every_input_has_a_label() {
        let pages = Pages::new().unwrap();
        let input = regex::Regex::new(r#"<(input|select)\b[^>]*>"#).unwrap();
        let id = regex::Regex::new(r#"id="([^"]+)""#).unwrap();
        for (name, _) in TEMPLATES {
            for ctx in sample_contexts() {
                let body = body_of(pages.render(name, StatusCode::OK, ctx));
                for m in input.find_iter(&body) {
                    let tag = m.as_str();
                    if tag.contains("type=\"hidden\"") {
                        continue;
                    }
                    let labelled = match id.captures(tag) {
                        Some(id) => body.contains(&format!("for=\"{}\"", &id[1])),
                        // No id: the input must sit inside its <label>.
                        None => body[..m.start()]
                            .rfind("<label")
                            .is_some_and(|open| !body[open..m.start()].contains("</label>")),
                    };
                    assert!(labelled, "{name}: {tag}");
                }
            }
        }
    }

    fn theme_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        dir
    }

    fn load(dir: &std::path::Path) -> Result<Pages, PagesError> {
        Pages::load(&UiSettings {
            theme_dir: Some(dir.to_path_buf()),
            default_locale: "en".into(),
        })
    }

    #[test]
    fn a_theme_overrides_templates_adds_css_logo_and_messages() {
        let dir = theme_dir();
        std::fs::write(
            dir.path().join("templates/choose.html"),
            "{% extends \"layout.html\" %}{% block content %}<p id=\"custom\">{{ t(\"choose.title\") }}</p>{% endblock %}",
        )
        .unwrap();
        std::fs::write(dir.path().join("style.css"), ":root{--accent:#005f3d}").unwrap();
        std::fs::write(
            dir.path().join("logo.svg"),
            "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("locales")).unwrap();
        std::fs::write(
            dir.path().join("locales/en.toml"),
            "[choose]\ntitle = \"Pick one\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("locales/fr.toml"),
            "[choose]\ntitle = \"Choisissez\"\n",
        )
        .unwrap();
        let pages = load(dir.path()).unwrap();
        assert_eq!(pages.theme_css(), Some(":root{--accent:#005f3d}"));
        assert_eq!(pages.logo().unwrap().path, "/assets/logo.svg");
        let body = body_of(pages.render("choose.html", StatusCode::OK, minijinja::context! {}));
        assert!(body.contains("<p id=\"custom\">Pick one</p>"), "{body}");
        assert!(body.contains("href=\"/assets/theme.css\""), "{body}");
        assert!(body.contains("src=\"/assets/logo.svg\""), "{body}");
        assert_eq!(
            pages.catalogues().from_accept_language("fr-FR").as_deref(),
            Some("fr")
        );
        // Without a theme: no theme sheet, no logo.
        let plain = body_of(Pages::new().unwrap().render(
            "choose.html",
            StatusCode::OK,
            minijinja::context! {},
        ));
        assert!(
            !plain.contains("theme.css") && !plain.contains("logo"),
            "{plain}"
        );
    }

    #[test]
    fn a_broken_theme_is_an_error_naming_the_file() {
        let cases: Vec<(&str, &str, &[u8], &str)> = vec![
            (
                "templates/password.html",
                "templates/password.html",
                b"{% if %}",
                "line 1",
            ),
            (
                "templates/nope.html",
                "templates/nope.html",
                b"x",
                "not a built-in template",
            ),
            (
                "templates/choose.html",
                "templates/choose.html",
                b"{{ nothing_here() }}",
                "choose.html",
            ),
            (
                "templates/layout.html",
                "templates/layout.html",
                b"{{ 1 | no_such_filter }}",
                "layout.html",
            ),
            ("logo.png", "logo.png", b"not a png", "not a PNG"),
            ("logo.svg", "logo.svg", b"hello", "not an SVG"),
            ("style.css", "style.css", b"\xff\xfe", "not UTF-8"),
            ("locales/de.toml", "locales/de.toml", b"[a\n", "de.toml"),
            ("favicon.ico", "favicon.ico", b"x", "not part of a theme"),
        ];
        for (file, named, content, says) in cases {
            let dir = theme_dir();
            std::fs::create_dir_all(dir.path().join("locales")).unwrap();
            std::fs::write(dir.path().join(file), content).unwrap();
            let e = load(dir.path()).unwrap_err().to_string();
            assert!(
                e.contains(&dir.path().join(named).display().to_string()),
                "{file}: {e}"
            );
            assert!(e.contains(says), "{file}: {e}");
        }
        let e = load(std::path::Path::new("/nonexistent/theme"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/theme"), "{e}");
        let e = Pages::load(&UiSettings {
            theme_dir: None,
            default_locale: "fr".into(),
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("default_locale"), "{e}");
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
