//! The htpasswd file: one `username:hash` per line, read and validated as a whole.
//!
//! Blank lines and lines starting with `#` are ignored. A file with any bad line is
//! refused entirely, so a half-edited file never logs anyone in by accident. Errors
//! name the line number and never quote the line, which may hold a hash or, by
//! mistake, a password.

use crate::hashes::{HashProblem, StoredHash};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Read;
use std::path::Path;

/// Files larger than this are refused: a user list is small, and a path pointing at
/// the wrong file (a device, a log) must not be read without end.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why the file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be opened or read.
    #[error("cannot read the file: {0}")]
    Read(#[from] std::io::Error),
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("the file is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
    /// A line is not UTF-8.
    #[error("line {line}: not valid UTF-8")]
    NotUtf8 {
        /// 1-based line number.
        line: usize,
    },
    /// A line is not `username:hash`.
    #[error("line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A line's hash has a refused scheme or a bad shape.
    #[error("line {line}: {problem}")]
    Hash {
        /// 1-based line number.
        line: usize,
        /// What is wrong with the hash.
        problem: HashProblem,
    },
    /// A username appears twice.
    #[error("line {line}: user {user:?} is already defined on line {first}")]
    Duplicate {
        /// 1-based line number of the second definition.
        line: usize,
        /// 1-based line number of the first definition.
        first: usize,
        /// The username.
        user: String,
    },
}

/// The users of one htpasswd file, with their validated hashes.
#[derive(Debug)]
pub struct UserFile {
    /// username → (line number, hash).
    users: HashMap<String, (usize, StoredHash)>,
    /// The user on the first line, whose hash the timing dummy copies.
    first: Option<String>,
}

impl UserFile {
    /// Reads and validates the file at `path` (blocking: call off the async workers).
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)?
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(LoadError::TooLarge);
        }
        Self::parse(&bytes)
    }

    /// Validates the file's content.
    pub fn parse(bytes: &[u8]) -> Result<Self, LoadError> {
        // Editors on some systems start the file with a byte-order mark.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut users: HashMap<String, (usize, StoredHash)> = HashMap::new();
        let mut first = None;
        for (index, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let line = index + 1;
            let text = std::str::from_utf8(raw)
                .map_err(|_| LoadError::NotUtf8 { line })?
                .trim();
            if text.is_empty() || text.starts_with('#') {
                continue;
            }
            let malformed = |reason| LoadError::Malformed { line, reason };
            let (user, hash) = text
                .split_once(':')
                .ok_or(malformed("expected `username:hash`"))?;
            if user.is_empty() {
                return Err(malformed("the username is empty"));
            }
            if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(malformed(
                    "the username contains a space or control character",
                ));
            }
            let hash =
                StoredHash::parse(hash).map_err(|problem| LoadError::Hash { line, problem })?;
            match users.entry(user.to_owned()) {
                Entry::Occupied(seen) => {
                    return Err(LoadError::Duplicate {
                        line,
                        first: seen.get().0,
                        user: user.to_owned(),
                    });
                }
                Entry::Vacant(slot) => {
                    first.get_or_insert_with(|| user.to_owned());
                    slot.insert((line, hash));
                }
            }
        }
        Ok(UserFile { users, first })
    }

    /// The hash of `username`, matched exactly (usernames are case-sensitive).
    pub fn hash_of(&self, username: &str) -> Option<&StoredHash> {
        self.users.get(username).map(|(_, hash)| hash)
    }

    /// True if `username` is in the file.
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// How many users the file has.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// The hash on the first user line, if any.
    pub fn first_hash(&self) -> Option<&StoredHash> {
        self.first.as_deref().and_then(|user| self.hash_of(user))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::hashes::tests::{argon2_hash, bcrypt_hash};

    fn line_of(err: &LoadError) -> Option<usize> {
        match err {
            LoadError::NotUtf8 { line }
            | LoadError::Malformed { line, .. }
            | LoadError::Hash { line, .. }
            | LoadError::Duplicate { line, .. } => Some(*line),
            _ => None,
        }
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_accepted() {
        let text = format!(
            "\u{feff}# team accounts\r\n\r\n  \nalice:{}\r\n  # indented comment\nbob:{}\n",
            bcrypt_hash("a"),
            argon2_hash("b")
        );
        let file = UserFile::parse(text.as_bytes()).unwrap();
        assert_eq!(file.len(), 2);
        assert!(file.hash_of("alice").unwrap().verify("a"));
        assert!(file.hash_of("bob").unwrap().verify("b"));
        assert!(file.hash_of("Alice").is_none());
        assert!(file.first_hash().unwrap().verify("a"));
    }

    #[test]
    fn an_empty_file_has_no_users() {
        let file = UserFile::parse(b"# nobody yet\n").unwrap();
        assert_eq!(file.len(), 0);
        assert!(file.first_hash().is_none());
    }

    #[test]
    fn bad_lines_are_refused_by_line_number_without_quoting_them() {
        let good = bcrypt_hash("a");
        for (bad, line) in [
            ("hunter2".to_owned(), 3),
            (format!(":{good}"), 3),
            (format!("al ice:{good}"), 3),
            ("carol:hunter2".to_owned(), 3),
            ("carol:$apr1$Xy7$hunter2hunter2hunter2".to_owned(), 3),
            (format!("carol:{}", &good[..20]), 3),
        ] {
            let text = format!("alice:{good}\n# comment\n{bad}\n");
            let err = UserFile::parse(text.as_bytes()).unwrap_err();
            assert_eq!(line_of(&err), Some(line), "{bad}: {err}");
            let shown = err.to_string();
            assert!(shown.starts_with("line 3: "), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains(&good[7..20]), "{shown}");
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_is_refused() {
        let err = UserFile::parse(b"# ok\nal\xffice:x\n").unwrap_err();
        assert_eq!(line_of(&err), Some(2));
    }

    #[test]
    fn a_duplicate_user_is_refused_naming_both_lines() {
        let text = format!(
            "alice:{}\nbob:{}\nalice:{}\n",
            bcrypt_hash("a"),
            bcrypt_hash("b"),
            bcrypt_hash("c")
        );
        let err = UserFile::parse(text.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                LoadError::Duplicate {
                    line: 3,
                    first: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("\"alice\""), "{err}");
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert!(matches!(UserFile::load(&path), Err(LoadError::TooLarge)));
    }
}
