//! The permission grammar of Switchboard, in one place.
//!
//! A permission is `:`-separated segments such as `invoices:approve`. A granted
//! permission may be a pattern: a `*` segment stands for any one segment, and a final
//! `*` for one or more (`admin:*` allows `admin:users` and `admin:users:delete`, not
//! `admin`). The broker (config validation, `roles explain`, API-key scopes, access
//! checks) and the client crate (an API's `require("invoices:approve")`) both match
//! with this crate, so an operator and an app can never read `admin:*` differently.
//!
//! ```
//! use switchboard_access::{Permission, allows_any};
//!
//! let granted = Permission::parse("admin:*")?;
//! assert!(granted.allows("admin:users:delete"));
//! assert!(!granted.allows("admin"));
//! assert!(allows_any(["reports:read", "invoices:*"], "invoices:approve"));
//! # Ok::<(), switchboard_access::PermissionError>(())
//! ```

use std::fmt;
use std::str::FromStr;

/// The longest permission accepted, in bytes.
///
/// ```
/// use switchboard_access::{MAX_PERMISSION_LEN, Permission, PermissionError};
/// let long = "a".repeat(MAX_PERMISSION_LEN + 1);
/// assert_eq!(Permission::parse(&long), Err(PermissionError::Length));
/// ```
pub const MAX_PERMISSION_LEN: usize = 256;

/// Why a text is not a permission.
///
/// ```
/// use switchboard_access::{Permission, PermissionError};
/// assert!(matches!(Permission::parse("a::b"), Err(PermissionError::EmptySegment(_))));
/// assert!(matches!(Permission::parse("admin*"), Err(PermissionError::PartialWildcard(_))));
/// assert!(matches!(Permission::parse("a b"), Err(PermissionError::Whitespace(_))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PermissionError {
    /// Empty, or longer than [`MAX_PERMISSION_LEN`].
    #[error("a permission has 1 to 256 characters")]
    Length,
    /// `a::b`, `:a` or `a:`.
    #[error("permission {0:?} has an empty segment")]
    EmptySegment(String),
    /// `admin*` or `a:b*:c`: a wildcard that is not a whole segment.
    #[error("permission {0:?}: '*' must be a whole segment, as in \"admin:*\"")]
    PartialWildcard(String),
    /// Whitespace or control characters.
    #[error("permission {0:?} contains spaces or control characters")]
    Whitespace(String),
}

/// A permission such as `users:read`, or a pattern such as `admin:*`: segments
/// separated by `:`, where a `*` segment stands for any one segment, and a final `*`
/// for one or more.
///
/// ```
/// use switchboard_access::Permission;
/// let granted: Permission = "admin:*".parse()?;
/// assert!(granted.allows("admin:users"));
/// assert_eq!(granted.to_string(), "admin:*");
/// # Ok::<(), switchboard_access::PermissionError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission(String);

impl Permission {
    /// Checks the grammar.
    ///
    /// ```
    /// use switchboard_access::Permission;
    /// assert!(Permission::parse("users:*:read").is_ok());
    /// assert!(Permission::parse("users*").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, PermissionError> {
        if text.is_empty() || text.len() > MAX_PERMISSION_LEN {
            return Err(PermissionError::Length);
        }
        for segment in text.split(':') {
            if segment.is_empty() {
                return Err(PermissionError::EmptySegment(text.to_string()));
            }
            if segment != "*" && segment.contains('*') {
                return Err(PermissionError::PartialWildcard(text.to_string()));
            }
            if segment.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(PermissionError::Whitespace(text.to_string()));
            }
        }
        Ok(Permission(text.to_string()))
    }

    /// The permission as written.
    ///
    /// ```
    /// use switchboard_access::Permission;
    /// assert_eq!(Permission::parse("invoices:approve")?.as_str(), "invoices:approve");
    /// # Ok::<(), switchboard_access::PermissionError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether it has a `*` segment (a pattern rather than one exact permission).
    ///
    /// ```
    /// use switchboard_access::Permission;
    /// assert!(Permission::parse("admin:*")?.is_pattern());
    /// assert!(!Permission::parse("admin:users")?.is_pattern());
    /// # Ok::<(), switchboard_access::PermissionError>(())
    /// ```
    pub fn is_pattern(&self) -> bool {
        self.0.split(':').any(|s| s == "*")
    }

    /// Whether holding this permission allows `wanted`, compared segment by segment.
    ///
    /// ```
    /// use switchboard_access::Permission;
    /// let p = Permission::parse("users:*:read")?;
    /// assert!(p.allows("users:42:read"));
    /// assert!(!p.allows("users:42:write"));
    /// # Ok::<(), switchboard_access::PermissionError>(())
    /// ```
    pub fn allows(&self, wanted: &str) -> bool {
        let granted: Vec<&str> = self.0.split(':').collect();
        let wanted: Vec<&str> = wanted.split(':').collect();
        let last = granted.len() - 1;
        for (i, g) in granted.iter().enumerate() {
            if *g == "*" && i == last {
                return wanted.len() > i;
            }
            match wanted.get(i) {
                Some(w) if *g == "*" || g == w => {}
                _ => return false,
            }
        }
        wanted.len() == granted.len()
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Permission {
    type Err = PermissionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::parse(s)
    }
}

/// Whether any of the `granted` permissions allows `wanted`. A granted text that is
/// not a valid permission allows nothing.
///
/// ```
/// assert!(switchboard_access::allows_any(["admin:*"], "admin:users"));
/// assert!(!switchboard_access::allows_any(["admin*"], "admin:users"));
/// ```
pub fn allows_any<I, S>(granted: I, wanted: &str) -> bool
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    granted
        .into_iter()
        .filter_map(|g| Permission::parse(g.as_ref()).ok())
        .any(|g| g.allows(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_segment_wise() {
        let cases = [
            ("admin:*", "admin:users", true),
            ("admin:*", "admin:users:delete", true),
            ("admin:*", "admin", false),
            ("admin:*", "administrator:x", false),
            ("admin:*", "adminx", false),
            ("users:*:read", "users:42:read", true),
            ("users:*:read", "users:42:write", false),
            ("users:*:read", "users:42:read:all", false),
            ("users:read", "users:read", true),
            ("users:read", "users:read:all", false),
            ("users:read", "users", false),
            ("*", "anything", true),
            ("*", "a:b:c", true),
        ];
        for (granted, wanted, expected) in cases {
            let p = Permission::parse(granted).unwrap_or_else(|e| panic!("{granted}: {e}"));
            assert_eq!(p.allows(wanted), expected, "{granted} allows {wanted}");
        }
    }

    #[test]
    fn malformed_permissions_are_refused_and_allow_nothing() {
        for bad in [
            "",
            "a::b",
            "admin*",
            "a:b*:c",
            "has space",
            ":x",
            "x:",
            "a\tb",
        ] {
            assert!(Permission::parse(bad).is_err(), "{bad:?}");
            assert!(!allows_any([bad], "admin:users"), "{bad:?}");
        }
        assert_eq!(
            Permission::parse(&"a".repeat(MAX_PERMISSION_LEN + 1)),
            Err(PermissionError::Length)
        );
    }

    #[test]
    fn patterns_are_told_from_exact_permissions() {
        assert!(Permission::parse("admin:*").is_ok_and(|p| p.is_pattern()));
        assert!(Permission::parse("a:*:b").is_ok_and(|p| p.is_pattern()));
        assert!(Permission::parse("a:b").is_ok_and(|p| !p.is_pattern()));
    }
}
