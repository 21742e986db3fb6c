//! An operator's theme directory (`[ui] theme_dir`), read once at start-up:
//!
//! ```text
//! theme_dir/
//!   templates/<name>.html   replaces the built-in template of that name
//!   style.css               served at /assets/theme.css, after the built-in style.css
//!   logo.svg | logo.png     served at /assets/logo.svg | .png, shown on every page
//!   locales/<tag>.toml      adds a locale or overrides messages of one
//! ```
//!
//! Anything else in it, or anything unreadable, is an error naming the file: a theme
//! that does not load stops the start, it never shows a broken page.

use super::i18n::{self, Catalogue};
use std::path::{Path, PathBuf};

/// Largest logo accepted.
const MAX_LOGO_BYTES: u64 = 512 * 1024;
/// Largest template, style sheet or catalogue accepted.
const MAX_TEXT_BYTES: u64 = 512 * 1024;

/// A theme as read from its directory, not yet compiled.
#[derive(Debug, Default, Clone)]
pub struct Theme {
    /// `(template name, source, file)`.
    pub templates: Vec<(String, String, PathBuf)>,
    pub css: Option<String>,
    pub logo: Option<Logo>,
    /// `(locale, messages)`.
    pub locales: Vec<(String, Catalogue)>,
}

#[derive(Debug, Clone)]
pub struct Logo {
    /// `/assets/logo.svg` or `/assets/logo.png`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Why a theme did not load: the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", file.display())]
pub struct ThemeError {
    pub file: PathBuf,
    pub message: String,
}

impl ThemeError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        ThemeError {
            file: file.to_path_buf(),
            message: message.into(),
        }
    }
}

impl Theme {
    /// Reads `dir`; `known_templates` are the names a template may override.
    pub fn read(dir: &Path, known_templates: &[&str]) -> Result<Theme, ThemeError> {
        let meta = std::fs::metadata(dir)
            .map_err(|e| ThemeError::new(dir, format!("theme_dir cannot be read: {e}")))?;
        if !meta.is_dir() {
            return Err(ThemeError::new(dir, "theme_dir is not a directory"));
        }
        let mut theme = Theme::default();
        for path in entries(dir)? {
            let name = file_name(&path);
            match name.as_str() {
                "templates" => theme.templates = read_templates(&path, known_templates)?,
                "locales" => theme.locales = read_locales(&path)?,
                "style.css" => theme.css = Some(read_text(&path)?),
                "logo.svg" | "logo.png" => {
                    if theme.logo.is_some() {
                        return Err(ThemeError::new(
                            &path,
                            "a theme has one logo: logo.svg or logo.png, not both",
                        ));
                    }
                    theme.logo = Some(read_logo(&path)?);
                }
                _ => {
                    return Err(ThemeError::new(
                        &path,
                        "not part of a theme (templates/, locales/, style.css, logo.svg or logo.png)",
                    ));
                }
            }
        }
        Ok(theme)
    }
}

/// The entries of `dir`, sorted, without hidden ones.
fn entries(dir: &Path) -> Result<Vec<PathBuf>, ThemeError> {
    let read = std::fs::read_dir(dir).map_err(|e| ThemeError::new(dir, e.to_string()))?;
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| ThemeError::new(dir, e.to_string()))?;
        let path = entry.path();
        if !file_name(&path).starts_with('.') {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_bytes(path: &Path, max: u64) -> Result<Vec<u8>, ThemeError> {
    let meta = std::fs::metadata(path).map_err(|e| ThemeError::new(path, e.to_string()))?;
    if !meta.is_file() {
        return Err(ThemeError::new(path, "not a file"));
    }
    if meta.len() > max {
        return Err(ThemeError::new(path, format!("larger than {max} bytes")));
    }
    std::fs::read(path).map_err(|e| ThemeError::new(path, e.to_string()))
}

fn read_text(path: &Path) -> Result<String, ThemeError> {
    String::from_utf8(read_bytes(path, MAX_TEXT_BYTES)?)
        .map_err(|_| ThemeError::new(path, "not UTF-8 text"))
}

fn read_templates(
    dir: &Path,
    known: &[&str],
) -> Result<Vec<(String, String, PathBuf)>, ThemeError> {
    let mut out = Vec::new();
    for path in entries(dir)? {
        let name = file_name(&path);
        if !known.contains(&name.as_str()) {
            return Err(ThemeError::new(
                &path,
                format!(
                    "not a built-in template name (one of: {})",
                    known.join(", ")
                ),
            ));
        }
        let source = read_text(&path)?;
        out.push((name, source, path));
    }
    Ok(out)
}

fn read_locales(dir: &Path) -> Result<Vec<(String, Catalogue)>, ThemeError> {
    let mut out = Vec::new();
    for path in entries(dir)? {
        let name = file_name(&path);
        let tag = name.strip_suffix(".toml").unwrap_or_default();
        let valid_tag = !tag.is_empty()
            && tag.len() <= 35
            && tag.split('-').all(|p| {
                !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_alphanumeric())
            });
        if !valid_tag {
            return Err(ThemeError::new(
                &path,
                "a catalogue is named <language tag>.toml (en.toml, de.toml, pt-br.toml)",
            ));
        }
        let messages = i18n::parse_catalogue(&read_text(&path)?)
            .map_err(|e| ThemeError::new(&path, e.to_string()))?;
        out.push((tag.to_ascii_lowercase(), messages));
    }
    Ok(out)
}

fn read_logo(path: &Path) -> Result<Logo, ThemeError> {
    let bytes = read_bytes(path, MAX_LOGO_BYTES)?;
    if file_name(path).ends_with(".png") {
        if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(ThemeError::new(path, "not a PNG image"));
        }
        return Ok(Logo {
            path: "/assets/logo.png",
            content_type: "image/png",
            bytes,
        });
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| ThemeError::new(path, "not UTF-8 SVG"))?;
    if !text.contains("<svg") {
        return Err(ThemeError::new(path, "not an SVG image (no <svg> element)"));
    }
    Ok(Logo {
        path: "/assets/logo.svg",
        content_type: "image/svg+xml",
        bytes,
    })
}
