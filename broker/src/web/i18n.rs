//! Message catalogues and the language of a page.
//!
//! **Catalogues.** One TOML file per locale: English (`broker/locales/en.toml`) and
//! German (`de.toml`) are built in; a theme may add a locale or override keys with
//! `locales/<tag>.toml`. Nested tables flatten to dotted keys (`[password] title`
//! is `password.title`). A key missing from a locale falls back to English; a key
//! missing from English is shown as it is — so a plain English sentence where a key
//! belongs still reads, it is just not translated. Values are plain text with
//! `{name}` placeholders; the page escapes the result.
//!
//! **Which language.** A tokio task-local holds the locale of the request being
//! served: the request middleware ([`super::middleware`]) sets it from
//! `Accept-Language` (q-values honoured, `de-CH` matches `de`), and a handler that
//! knows better overrides it with [`prefer_ui_locales`] — the login flow does, from the
//! authorization request's `ui_locales`, which it keeps with the pending login so
//! every page of that login speaks the same language. Neither matching: the configured
//! `[ui] default_locale`. [`super::Pages::render`] reads it, so handlers call
//! `render(name, status, ctx)` as before and pass no language.
//!
//! **Text chosen in Rust** (a page error, a message a handler passes to a template) is
//! a [`Text`]: a key (`msg.…`) and its arguments. `PageError::new(status,
//! "msg.title.account", Text::new("msg.no_account").arg("provider", name))`; in a
//! template `{{ t(error) }}` translates it, whether `error` is a [`Text`] or a string.

use crate::identity::policy::PolicyViolation;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// The locale every catalogue falls back to.
pub const ENGLISH: &str = "en";

/// The built-in catalogues, `(locale, TOML)`.
pub const BUILT_IN: [(&str, &str); 2] = [
    ("en", include_str!("../../locales/en.toml")),
    ("de", include_str!("../../locales/de.toml")),
];

/// One locale's messages, by dotted key.
pub type Catalogue = HashMap<String, String>;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CatalogueError(String);

/// Parses a catalogue file's text.
pub fn parse_catalogue(text: &str) -> Result<Catalogue, CatalogueError> {
    use figment::Figment;
    use figment::providers::{Format, Toml};
    let tree: serde_json::Map<String, serde_json::Value> = Figment::from(Toml::string(text))
        .extract()
        .map_err(|e| CatalogueError(e.to_string()))?;
    let mut out = Catalogue::new();
    flatten("", &tree, &mut out)?;
    Ok(out)
}

fn flatten(
    prefix: &str,
    tree: &serde_json::Map<String, serde_json::Value>,
    out: &mut Catalogue,
) -> Result<(), CatalogueError> {
    for (k, v) in tree {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            serde_json::Value::String(s) => {
                out.insert(key, s.clone());
            }
            serde_json::Value::Object(inner) => flatten(&key, inner, out)?,
            _ => {
                return Err(CatalogueError(format!("{key}: a message must be a string")));
            }
        }
    }
    Ok(())
}

/// Every catalogue the broker speaks, with English always present.
#[derive(Debug, Clone)]
pub struct Catalogues {
    by_locale: BTreeMap<String, Catalogue>,
    default_locale: String,
}

/// The built-in English catalogue, for text outside any page (logs, plain answers).
static BUILT_IN_ENGLISH: LazyLock<Catalogue> =
    LazyLock::new(|| parse_catalogue(BUILT_IN[0].1).unwrap_or_default());

impl Catalogues {
    /// The built-in catalogues; `extra` (a theme's) add locales or override keys.
    pub fn new(
        extra: Vec<(String, Catalogue)>,
        default_locale: &str,
    ) -> Result<Self, CatalogueError> {
        let mut by_locale = BTreeMap::new();
        for (locale, text) in BUILT_IN {
            let parsed = parse_catalogue(text)
                .map_err(|e| CatalogueError(format!("built-in {locale}: {e}")))?;
            by_locale.insert(locale.to_string(), parsed);
        }
        for (locale, messages) in extra {
            by_locale
                .entry(locale.to_ascii_lowercase())
                .or_insert_with(Catalogue::new)
                .extend(messages);
        }
        let asked = default_locale.to_ascii_lowercase();
        let primary = asked.split('-').next().unwrap_or_default().to_string();
        let default_locale = if by_locale.contains_key(&asked) {
            asked
        } else {
            primary
        };
        if !by_locale.contains_key(&default_locale) {
            return Err(CatalogueError(format!(
                "ui.default_locale: no catalogue for {default_locale:?} (there are: {})",
                by_locale.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(Catalogues {
            by_locale,
            default_locale,
        })
    }

    pub fn default_locale(&self) -> &str {
        &self.default_locale
    }

    pub fn locales(&self) -> impl Iterator<Item = &str> {
        self.by_locale.keys().map(String::as_str)
    }

    pub fn get(&self, locale: &str) -> Option<&Catalogue> {
        self.by_locale.get(locale)
    }

    /// The message for `key` in `locale`, else in English, else `key` itself.
    pub fn message<'a>(&'a self, locale: &str, key: &'a str) -> &'a str {
        self.by_locale
            .get(locale)
            .and_then(|c| c.get(key))
            .or_else(|| self.by_locale.get(ENGLISH).and_then(|c| c.get(key)))
            .map_or(key, String::as_str)
    }

    /// `key` in `locale` with its `{name}` placeholders filled.
    pub fn format(&self, locale: &str, key: &str, args: &BTreeMap<String, String>) -> String {
        fill(self.message(locale, key), args)
    }

    /// The supported locale a language tag asks for: itself, else its language
    /// (`de-CH` → `de`).
    pub fn supported(&self, tag: &str) -> Option<String> {
        let tag = tag.trim().to_ascii_lowercase();
        if tag.is_empty() || tag == "*" {
            return None;
        }
        if self.by_locale.contains_key(&tag) {
            return Some(tag);
        }
        let primary = tag.split('-').next().unwrap_or_default();
        self.by_locale
            .contains_key(primary)
            .then(|| primary.to_string())
    }

    /// The best supported locale of an `Accept-Language` header, if any.
    pub fn from_accept_language(&self, header: &str) -> Option<String> {
        let mut ranges: Vec<(u16, usize, &str)> = Vec::new();
        for (i, item) in header.split(',').enumerate().take(32) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim();
            let mut q = 1000u16;
            for p in parts {
                if let Some(v) = p.trim().strip_prefix("q=") {
                    q = parse_q(v).unwrap_or(0);
                }
            }
            if q > 0 && !tag.is_empty() {
                ranges.push((q, i, tag));
            }
        }
        // Highest q first; equal q keeps the header's order.
        ranges.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        ranges
            .into_iter()
            .find_map(|(_, _, tag)| self.supported(tag))
    }

    /// The first supported locale of a space-separated `ui_locales`.
    pub fn from_ui_locales(&self, ui_locales: &str) -> Option<String> {
        ui_locales
            .split(' ')
            .filter(|s| !s.is_empty())
            .take(16)
            .find_map(|tag| self.supported(tag))
    }
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let v = v.trim();
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let frac_value: u16 = format!("{frac:0<3}").parse().ok()?;
    match whole {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// `{name}` placeholders replaced by their arguments; unknown ones stay as written.
pub fn fill(template: &str, args: &BTreeMap<String, String>) -> String {
    if args.is_empty() || !template.contains('{') {
        return template.to_string();
    }
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if args.contains_key(&after[..close]) => {
                out.push_str(&args[&after[..close]]);
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text for a person, chosen in Rust code: a catalogue key and its arguments. A
/// string that is no key shows as written (so plain English still works).
/// Serialised as `{"key": …, "args": {…}}`, which the template function `t`
/// translates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Text {
    pub key: String,
    pub args: BTreeMap<String, String>,
}

impl Text {
    pub fn new(key: impl Into<String>) -> Self {
        Text {
            key: key.into(),
            args: BTreeMap::new(),
        }
    }

    pub fn arg(mut self, name: &str, value: impl ToString) -> Self {
        self.args.insert(name.to_string(), value.to_string());
        self
    }

    /// In English (from the built-in catalogue), for logs and plain-text answers.
    pub fn english(&self) -> String {
        let template = BUILT_IN_ENGLISH
            .get(&self.key)
            .map_or(self.key.as_str(), String::as_str);
        fill(template, &self.args)
    }
}

impl From<&str> for Text {
    fn from(key: &str) -> Self {
        Text::new(key)
    }
}

impl From<String> for Text {
    fn from(key: String) -> Self {
        Text::new(key)
    }
}

impl From<&String> for Text {
    fn from(key: &String) -> Self {
        Text::new(key.clone())
    }
}

/// A value that breaks the account policy, as the page says it.
impl From<&PolicyViolation> for Text {
    fn from(why: &PolicyViolation) -> Self {
        let (key, args) = why.message();
        args.into_iter()
            .fold(Text::new(key), |text, (name, value)| text.arg(name, value))
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.english())
    }
}

tokio::task_local! {
    /// The locale of the request this task serves; `None`: the default.
    static LOCALE: RefCell<Option<String>>;
}

/// Runs `f` (a request) with `locale` as its language.
pub async fn with_locale<F: std::future::Future>(locale: Option<String>, f: F) -> F::Output {
    LOCALE.scope(RefCell::new(locale), f).await
}

/// The current request's locale, if one was chosen.
pub fn current_locale() -> Option<String> {
    LOCALE.try_with(|l| l.borrow().clone()).ok().flatten()
}

/// Sets the current request's locale (no effect outside a request).
pub fn set_locale(locale: String) {
    let _ = LOCALE.try_with(|l| *l.borrow_mut() = Some(locale));
}

/// A login's `ui_locales` (space-separated BCP 47 tags): the first one with a
/// catalogue becomes this request's language; none: the choice stays as it was.
pub fn prefer_ui_locales(catalogues: &Catalogues, ui_locales: Option<&str>) {
    if let Some(locale) = ui_locales.and_then(|u| catalogues.from_ui_locales(u)) {
        set_locale(locale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every policy violation has a message, and in English it says what the
    /// `Display` text (logs, API problems) says, as a sentence.
    #[test]
    fn policy_violations_read_in_english_as_their_display_text() {
        use PolicyViolation as P;
        for why in [
            P::PasswordLength { min: 10 },
            P::CommonPassword,
            P::PasswordPattern,
            P::UsernameForm,
            P::UsernamePattern,
            P::EmailForm,
            P::EmailPattern,
            P::GroupNamePattern,
        ] {
            let text = Text::from(&why);
            assert!(BUILT_IN_ENGLISH.contains_key(&text.key), "{}", text.key);
            let display = why.to_string();
            let mut chars = display.chars();
            let first = chars.next().unwrap().to_uppercase().to_string();
            assert_eq!(text.english(), format!("{first}{}.", chars.as_str()));
        }
        let de = catalogues();
        let args = Text::from(&P::PasswordLength { min: 10 }).args;
        assert_eq!(
            de.format("de", "msg.policy.password_length", &args),
            "Ein Passwort hat 10 bis 1024 Zeichen."
        );
    }

    fn catalogues() -> Catalogues {
        Catalogues::new(Vec::new(), "en").unwrap()
    }

    #[test]
    fn accept_language_honours_q_values_and_skips_unsupported_tags() {
        let c = catalogues();
        assert_eq!(c.from_accept_language("de").as_deref(), Some("de"));
        assert_eq!(c.from_accept_language("de-CH").as_deref(), Some("de"));
        assert_eq!(
            c.from_accept_language("fr-FR, fr;q=0.9, de;q=0.8, en;q=0.7")
                .as_deref(),
            Some("de")
        );
        assert_eq!(
            c.from_accept_language("en;q=0.5, de;q=0.9").as_deref(),
            Some("de")
        );
        assert_eq!(
            c.from_accept_language("de;q=0.5, en").as_deref(),
            Some("en")
        );
        assert_eq!(
            c.from_accept_language("de;q=0, en;q=0.1").as_deref(),
            Some("en")
        );
        assert_eq!(c.from_accept_language("fr, ja"), None);
        assert_eq!(c.from_accept_language("*"), None);
        assert_eq!(c.from_accept_language("de;q=2"), None);
        assert_eq!(c.from_accept_language(""), None);
    }

    #[test]
    fn ui_locales_takes_the_first_supported_tag() {
        let c = catalogues();
        assert_eq!(c.from_ui_locales("fr-CA de en").as_deref(), Some("de"));
        assert_eq!(c.from_ui_locales("en de").as_deref(), Some("en"));
        assert_eq!(c.from_ui_locales("DE-at").as_deref(), Some("de"));
        assert_eq!(c.from_ui_locales("fr ja"), None);
    }

    #[test]
    fn a_missing_key_falls_back_to_english_then_to_itself() {
        let extra = vec![(
            "xx".to_string(),
            Catalogue::from([("layout.sign_in".to_string(), "Xx".to_string())]),
        )];
        let c = Catalogues::new(extra, "xx").unwrap();
        assert_eq!(c.message("xx", "layout.sign_in"), "Xx");
        assert_eq!(c.message("xx", "password.submit"), "Sign in");
        assert_eq!(c.message("de", "password.submit"), "Anmelden");
        assert_eq!(c.message("de", "Plain English."), "Plain English.");
    }

    #[test]
    fn placeholders_are_filled_and_unknown_ones_kept() {
        let args = BTreeMap::from([("client".to_string(), "App {x}".to_string())]);
        assert_eq!(fill("Sign in to {client}", &args), "Sign in to App {x}");
        assert_eq!(fill("{other} {client}", &args), "{other} App {x}");
        assert_eq!(fill("a { b", &args), "a { b");
        assert_eq!(
            Text::new("msg.password_too_short").arg("min", 12).english(),
            "Choose a password of at least 12 characters."
        );
    }

    #[test]
    fn a_default_locale_without_a_catalogue_is_refused() {
        let e = Catalogues::new(Vec::new(), "fr").unwrap_err();
        assert!(e.to_string().contains("ui.default_locale"), "{e}");
    }

    #[test]
    fn a_catalogue_with_a_non_string_message_is_refused() {
        assert!(parse_catalogue("[a]\nb = 1\n").is_err());
        assert!(parse_catalogue("a = \"x\"\n[b\n").is_err());
    }

    #[tokio::test]
    async fn the_request_locale_is_scoped_and_overridable() {
        let c = catalogues();
        assert_eq!(current_locale(), None);
        with_locale(Some("en".into()), async {
            assert_eq!(current_locale().as_deref(), Some("en"));
            prefer_ui_locales(&c, Some("fr de"));
            assert_eq!(current_locale().as_deref(), Some("de"));
            prefer_ui_locales(&c, Some("fr"));
            assert_eq!(current_locale().as_deref(), Some("de"));
        })
        .await;
    }
}
