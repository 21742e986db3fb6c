//! Secrets in provider config: given inline, read from a file, or read from an
//! environment variable, exactly one of the three (`client_secret`,
//! `client_secret_file`, `client_secret_env`).

use crate::Password;
use std::path::Path;

/// Resolves the secret config key `key` from exactly one of its three forms. The file
/// form drops one trailing newline; an empty value is an error. Errors name the key and
/// never contain the secret.
pub fn resolve(
    key: &str,
    inline: Option<&Password>,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Password, String> {
    match (inline, file, env) {
        (Some(value), None, None) => {
            if value.expose().is_empty() {
                return Err(format!("{key} is empty"));
            }
            Ok(value.clone())
        }
        (None, Some(path), None) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{key}_file {}: {e}", path.display()))?;
            let value = Password::new(text.trim_end_matches(['\n', '\r']));
            drop(Password::new(text));
            if value.expose().is_empty() {
                return Err(format!("{key}_file {} is empty", path.display()));
            }
            Ok(value)
        }
        (None, None, Some(name)) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Password::new(v)),
            _ => Err(format!("{key}_env names {name}, which is unset or empty")),
        },
        (None, None, None) => Err(format!("set one of {key}, {key}_file, {key}_env")),
        _ => Err(format!("set only one of {key}, {key}_file, {key}_env")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_form_is_accepted() {
        let inline = Password::new("s3cret");
        assert_eq!(
            resolve("client_secret", Some(&inline), None, None)
                .unwrap()
                .expose(),
            "s3cret"
        );
        let none = resolve("client_secret", None, None, None).unwrap_err();
        assert!(none.contains("client_secret_file"), "{none}");
        let two = resolve("client_secret", Some(&inline), None, Some("X")).unwrap_err();
        assert!(two.contains("only one"), "{two}");
    }

    #[test]
    fn file_form_drops_the_trailing_newline_and_rejects_empty_files() {
        let dir = std::env::temp_dir().join(format!("sb-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, "from-file\n").unwrap();
        assert_eq!(
            resolve("client_secret", None, Some(&path), None)
                .unwrap()
                .expose(),
            "from-file"
        );
        std::fs::write(&path, "\n").unwrap();
        let err = resolve("client_secret", None, Some(&path), None).unwrap_err();
        assert!(err.contains("is empty"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_form_errors_name_the_variable_not_the_value() {
        let err = resolve(
            "client_secret",
            None,
            None,
            Some("SWITCHBOARD_TEST_SURELY_UNSET_VAR"),
        )
        .unwrap_err();
        assert!(err.contains("SWITCHBOARD_TEST_SURELY_UNSET_VAR"), "{err}");
    }
}
