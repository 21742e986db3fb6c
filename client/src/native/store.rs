//! Where a native app keeps its tokens between runs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use zeroize::Zeroize;

/// The tokens of one login: secrets, never printed (`Debug` redacts them), zeroized
/// when dropped.
///
/// ```
/// use switchboard_client::native::{MemoryStore, TokenSet, TokenStore};
/// let tokens: TokenSet = serde_json::from_str(
///     r#"{"access_token": "at", "refresh_token": "rt", "expires_at": 1700000000}"#,
/// )?;
/// assert!(!format!("{tokens:?}").contains("\"at\""), "Debug redacts the tokens");
/// let store = MemoryStore::default();
/// store.save(&tokens)?;
/// assert_eq!(store.load()?.map(|t| t.expires_at), Some(1700000000));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenSet {
    /// The current access token.
    pub access_token: String,
    /// The refresh token, when `offline_access` was granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The ID token of the login (kept for RP-initiated logout's `id_token_hint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// When the access token expires (Unix seconds).
    pub expires_at: i64,
    /// The granted scopes, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"***")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "***"))
            .field("id_token", &self.id_token.as_ref().map(|_| "***"))
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

impl Drop for TokenSet {
    fn drop(&mut self) {
        self.access_token.zeroize();
        self.refresh_token.zeroize();
        self.id_token.zeroize();
    }
}

/// Why tokens could not be loaded or kept.
///
/// ```
/// use std::os::unix::fs::PermissionsExt;
/// use switchboard_client::native::{FileStore, StoreError, TokenStore};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("tokens.json");
/// std::fs::write(&path, r#"{"access_token": "at", "expires_at": 1700000000}"#)?;
/// std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
/// assert!(matches!(FileStore::new(&path).load(), Err(StoreError::Permissions { mode: 0o644, .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, writing or removing the file failed.
    #[error("token file {path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The file may be read by others (its mode has group or other bits): refused,
    /// as ssh refuses such a key.
    #[error(
        "token file {path} is readable by others (mode {mode:o}); chmod 600 it or log in again"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The file is not a token set.
    #[error("token file {path} is not a token set")]
    Malformed {
        /// The file.
        path: PathBuf,
    },
    /// No place to keep tokens was found (neither `XDG_CONFIG_HOME` nor `HOME`).
    #[error("no configuration directory: set XDG_CONFIG_HOME or HOME")]
    NoConfigDir,
}

/// Keeps one token set. Implement it to keep tokens elsewhere (the OS keyring, say).
///
/// ```
/// use std::sync::Mutex;
/// use switchboard_client::native::{StoreError, TokenSet, TokenStore};
///
/// /// Keeps the tokens in a slot of the app's own state.
/// #[derive(Debug, Default)]
/// struct AppState(Mutex<Option<TokenSet>>);
///
/// impl TokenStore for AppState {
///     fn load(&self) -> Result<Option<TokenSet>, StoreError> {
///         Ok(self.0.lock().ok().and_then(|t| t.clone()))
///     }
///     fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
///         *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(tokens.clone());
///         Ok(())
///     }
///     fn clear(&self) -> Result<(), StoreError> {
///         *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
///         Ok(())
///     }
/// }
/// assert!(AppState::default().load()?.is_none());
/// # Ok::<(), StoreError>(())
/// ```
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The stored tokens, if any.
    fn load(&self) -> Result<Option<TokenSet>, StoreError>;
    /// Replaces the stored tokens.
    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError>;
    /// Forgets them.
    fn clear(&self) -> Result<(), StoreError>;
}

/// Tokens in a JSON file readable by its owner only (mode 0600, in a 0700 directory
/// it creates), replaced atomically (written beside it, then renamed).
///
/// ```no_run
/// use switchboard_client::native::{FileStore, TokenStore};
/// let store = FileStore::for_app("invoice-cli")?; // ~/.config/invoice-cli/tokens.json
/// let saved = store.load()?;
/// # Ok::<(), switchboard_client::native::StoreError>(())
/// ```
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// Tokens in the file `path`.
    ///
    /// ```
    /// use switchboard_client::native::{FileStore, TokenStore};
    /// let dir = tempfile::tempdir()?;
    /// let store = FileStore::new(dir.path().join("cli").join("tokens.json"));
    /// assert!(store.load()?.is_none(), "nothing stored yet");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    /// Tokens in `$XDG_CONFIG_HOME/APP/tokens.json`, or `~/.config/APP/tokens.json`.
    ///
    /// ```no_run
    /// use switchboard_client::native::FileStore;
    /// let store = FileStore::for_app("invoice-cli")?;
    /// println!("tokens kept in {}", store.path().display());
    /// # Ok::<(), switchboard_client::native::StoreError>(())
    /// ```
    pub fn for_app(app: &str) -> Result<Self, StoreError> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".config"))
            })
            .ok_or(StoreError::NoConfigDir)?;
        Ok(FileStore::new(base.join(app).join("tokens.json")))
    }

    /// The file.
    ///
    /// ```
    /// use switchboard_client::native::FileStore;
    /// let store = FileStore::new("/tmp/cli/tokens.json");
    /// assert_eq!(store.path(), std::path::Path::new("/tmp/cli/tokens.json"));
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, e: &std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }
}

impl TokenStore for FileStore {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        let metadata = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&e)),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(StoreError::Permissions {
                    path: self.path.clone(),
                    mode,
                });
            }
        }
        if metadata.len() > 1024 * 1024 {
            return Err(StoreError::Malformed {
                path: self.path.clone(),
            });
        }
        let text = zeroize::Zeroizing::new(std::fs::read(&self.path).map_err(|e| self.io(&e))?);
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|_| StoreError::Malformed {
                path: self.path.clone(),
            })
    }

    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        use std::io::Write;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|e| self.io(&e))?;
        }
        let mut temp = self.path.clone().into_os_string();
        temp.push(format!(".tmp-{}", std::process::id()));
        let temp = PathBuf::from(temp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let body =
            zeroize::Zeroizing::new(serde_json::to_vec(tokens).map_err(|e| StoreError::Io {
                path: self.path.clone(),
                reason: e.to_string(),
            })?);
        let written = (|| {
            let mut file = options.open(&temp)?;
            // An existing file keeps its mode on open: set it.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            file.write_all(&body)?;
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(self.io(&e));
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StoreError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(&e)),
        }
    }
}

/// Tokens in memory only: the login lasts as long as the process.
///
/// ```
/// use switchboard_client::Issuer;
/// use switchboard_client::native::{MemoryStore, NativeLogin};
/// let login = NativeLogin::new(Issuer::new("http://127.0.0.1:5556")?, "example-cli", MemoryStore::default());
/// # let _ = login;
/// # Ok::<(), switchboard_client::FetchError>(())
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    tokens: Mutex<Option<TokenSet>>,
}

impl TokenStore for MemoryStore {
    fn load(&self) -> Result<Option<TokenSet>, StoreError> {
        Ok(self.tokens.lock().ok().and_then(|t| t.clone()))
    }

    fn save(&self, tokens: &TokenSet) -> Result<(), StoreError> {
        if let Ok(mut slot) = self.tokens.lock() {
            *slot = Some(tokens.clone());
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StoreError> {
        if let Ok(mut slot) = self.tokens.lock() {
            *slot = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> TokenSet {
        TokenSet {
            access_token: "secret-access".into(),
            refresh_token: Some("secret-refresh".into()),
            id_token: None,
            expires_at: 42,
            scope: Some("openid".into()),
        }
    }

    #[test]
    fn the_file_is_written_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FileStore::new(dir.path().join("app").join("tokens.json"));
        assert!(matches!(store.load(), Ok(None)));
        store.save(&tokens()).unwrap_or_else(|e| panic!("{e}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| {
                std::fs::metadata(p)
                    .map(|m| m.permissions().mode() & 0o777)
                    .ok()
            };
            assert_eq!(mode(store.path()), Some(0o600));
            assert_eq!(mode(&dir.path().join("app")), Some(0o700));
        }
        assert_eq!(store.load().ok().flatten(), Some(tokens()));
        store.clear().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(store.load(), Ok(None)));
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = FileStore::new(dir.path().join("tokens.json"));
        store.save(&tokens()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            store.load(),
            Err(StoreError::Permissions { mode: 0o644, .. })
        ));
        // Saving again makes it private.
        store.save(&tokens()).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(store.load(), Ok(Some(_))));
    }

    #[test]
    fn debug_never_shows_a_token() {
        let text = format!("{:?}", tokens());
        assert!(!text.contains("secret"), "{text}");
    }
}
