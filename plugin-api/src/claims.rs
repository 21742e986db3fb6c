//! Where a claim lives in an upstream's JSON: [`ClaimPath`], the one path type every
//! provider's config uses (`groups_claim = "realm_access.roles"`,
//! `subject = "data.user.id"`).
//!
//! A path is a top-level member name, or a dotted walk into nested objects in which a
//! numeric segment indexes an array (`emails.0.address`). A member named exactly like
//! the whole path wins over the walk, so names that hold dots (Auth0's
//! `https://example.com/roles`, `urn:acme.id`) are found as they are. `null` counts as
//! absent. A path is parsed once, at config load; in config it is a plain string.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// Why a configured claim path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimPathError {
    /// Nothing but whitespace.
    #[error("the claim path is empty")]
    Empty,
    /// `a..b`, `.a` or `a.`: a segment with no name (almost surely a typo).
    #[error("`{0}` has an empty path segment")]
    EmptySegment(String),
}

/// A claim name, or a dotted path into nested objects and arrays.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClaimPath(String);

impl ClaimPath {
    /// Parses a configured path: surrounding whitespace is dropped; an empty path and
    /// an empty segment are refused, except inside a URL-shaped name (`https://…`),
    /// which is only ever matched whole.
    pub fn parse(path: &str) -> Result<Self, ClaimPathError> {
        let path = path.trim();
        if path.is_empty() {
            return Err(ClaimPathError::Empty);
        }
        if path.split('.').any(str::is_empty) && !path.contains("://") {
            return Err(ClaimPathError::EmptySegment(path.to_owned()));
        }
        Ok(ClaimPath(path.to_owned()))
    }

    /// A path written in code (a provider's default such as `preferred_username`),
    /// taken as it is. No check is needed for safety: a malformed path simply finds
    /// nothing.
    pub fn named(name: impl Into<String>) -> Self {
        ClaimPath(name.into())
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The value at this path in `claims`, if `claims` is an object and the value is
    /// present and not null.
    pub fn find<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        self.lookup(claims.as_object()?)
    }

    /// The value at this path in a claims object, if present and not null.
    pub fn lookup<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let found = match claims.get(&self.0) {
            Some(whole) => Some(whole),
            None => {
                let mut segments = self.0.split('.');
                let first = claims.get(segments.next()?)?;
                segments.try_fold(first, |at, segment| match at {
                    Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
                    Value::Object(members) => members.get(segment),
                    _ => None,
                })
            }
        };
        found.filter(|v| !v.is_null())
    }

    /// The claim as a non-empty, trimmed string (numbers are written out).
    pub fn string(&self, claims: &Map<String, Value>) -> Option<String> {
        match self.lookup(claims)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The claim as a list of strings: an array of strings and numbers (other entries
    /// skipped), or one string as a one-element list. Empty entries and duplicates are
    /// dropped.
    pub fn strings(&self, claims: &Map<String, Value>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |s: &str| {
            let s = s.trim();
            if !s.is_empty() && !out.iter().any(|o| o == s) {
                out.push(s.to_owned());
            }
        };
        match self.lookup(claims) {
            Some(Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::String(s) => push(s),
                        Value::Number(n) => push(&n.to_string()),
                        _ => {}
                    }
                }
            }
            Some(Value::String(s)) => push(s),
            _ => {}
        }
        out
    }

    /// True only for a boolean `true` or the string `"true"` (any case).
    pub fn is_true(&self, claims: &Map<String, Value>) -> bool {
        match self.lookup(claims) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }
}

impl TryFrom<String> for ClaimPath {
    type Error = ClaimPathError;

    fn try_from(path: String) -> Result<Self, Self::Error> {
        ClaimPath::parse(&path)
    }
}

impl From<ClaimPath> for String {
    fn from(path: ClaimPath) -> String {
        path.0
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(raw: &str) -> ClaimPath {
        ClaimPath::parse(raw).unwrap()
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn dotted_paths_reach_nested_claims() {
        let c = claims(json!({
            "realm_access": {"roles": ["admin", "dev", 7, null, "admin"]},
            "https://example.com/roles": ["ns-role"],
            "profile": {"mail": "a@b.c"}
        }));
        assert_eq!(
            path("realm_access.roles").strings(&c),
            vec!["admin", "dev", "7"]
        );
        assert_eq!(
            path("https://example.com/roles").strings(&c),
            vec!["ns-role"]
        );
        assert_eq!(path("profile.mail").string(&c).as_deref(), Some("a@b.c"));
        assert_eq!(path("profile.missing").string(&c), None);
        assert_eq!(path("profile.mail.deeper").string(&c), None);
    }

    #[test]
    fn dotted_paths_walk_objects_and_array_indexes() {
        let user = json!({
            "data": {"user": {"id": 42, "handle": "ada"}},
            "emails": [{"address": "ada@example.com", "verified": true}],
            "urn:acme.id": "literal",
        });
        assert_eq!(path("data.user.id").find(&user), Some(&json!(42)));
        assert_eq!(
            path("emails.0.address").find(&user),
            Some(&json!("ada@example.com"))
        );
        assert_eq!(path("emails.1.address").find(&user), None);
        assert_eq!(path("emails.first").find(&user), None);
        assert_eq!(path("urn:acme.id").find(&user), Some(&json!("literal")));
        assert_eq!(path("data.user.id.deeper").find(&user), None);
        assert_eq!(path("data").find(&json!([{"data": 1}])), None);
    }

    #[test]
    fn null_counts_as_absent() {
        let c = json!({"groups": null, "a": {"b": null}});
        assert_eq!(path("groups").find(&c), None);
        assert_eq!(path("a.b").find(&c), None);
    }

    #[test]
    fn paths_with_empty_segments_are_refused() {
        for raw in ["", " ", ".id", "id.", "data..id", "a..b", ".a"] {
            assert!(ClaimPath::parse(raw).is_err(), "{raw:?}");
        }
        assert_eq!(ClaimPath::parse("  "), Err(ClaimPathError::Empty));
        assert_eq!(path(" groups ").as_str(), "groups");
    }

    #[test]
    fn a_single_string_group_claim_is_one_group() {
        let c = claims(json!({"groups": "staff"}));
        assert_eq!(path("groups").strings(&c), vec!["staff"]);
    }

    #[test]
    fn only_true_means_verified() {
        let p = path("email_verified");
        assert!(p.is_true(&claims(json!({"email_verified": true}))));
        assert!(p.is_true(&claims(json!({"email_verified": "true"}))));
        assert!(!p.is_true(&claims(json!({"email_verified": false}))));
        assert!(!p.is_true(&claims(json!({"email_verified": "yes"}))));
        assert!(!p.is_true(&claims(json!({"email_verified": 1}))));
        assert!(!p.is_true(&claims(json!({}))));
    }

    #[test]
    fn in_config_a_path_is_a_string_checked_when_read() {
        #[derive(Debug, Deserialize, Serialize)]
        struct Section {
            groups_claim: ClaimPath,
        }
        let section: Section =
            serde_json::from_value(json!({"groups_claim": "realm_access.roles"})).unwrap();
        assert_eq!(section.groups_claim, path("realm_access.roles"));
        assert_eq!(
            serde_json::to_value(&section).unwrap(),
            json!({"groups_claim": "realm_access.roles"})
        );
        let err = serde_json::from_value::<Section>(json!({"groups_claim": "a..b"})).unwrap_err();
        assert!(err.to_string().contains("empty path segment"), "{err}");
    }
}
