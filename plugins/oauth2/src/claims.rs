//! Turning the user API's JSON into an [`Identity`] through the configured claim
//! paths. Strict where a wrong value would mislead (the subject, the groups), lenient
//! where a value is simply absent (no email, no name).

use serde_json::Value;
use switchboard_plugin_api::{ClaimPath, Identity};

/// Longest subject accepted, in bytes.
const MAX_SUBJECT: usize = 255;

/// Where each identity field is in the user API's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMap {
    /// The stable subject (string or integer).
    pub subject: ClaimPath,
    /// The login name.
    pub username: ClaimPath,
    /// The email address.
    pub email: ClaimPath,
    /// A boolean saying the email is verified; `None`: emails are unverified.
    pub email_verified: Option<ClaimPath>,
    /// The display name.
    pub name: ClaimPath,
    /// A list of group names; `None`: no groups.
    pub groups: Option<ClaimPath>,
}

/// Why the user API's answer cannot make an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The answer is not a JSON object.
    #[error("the user API answer is not a JSON object")]
    NotAnObject,
    /// No non-empty string or integer at the subject path.
    #[error("the user API answer has no usable subject at `{0}`")]
    NoSubject(String),
    /// The groups claim is there but is not a list of strings.
    #[error("the user API's `{0}` is not a list of strings")]
    BadGroups(String),
}

/// A non-empty string.
fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// A subject: a non-empty string, or an integer written in decimal. Floats and
/// booleans are refused: `1.0` and `1` must not become two people, nor one.
fn subject(value: Option<&Value>) -> Option<String> {
    let subject = match value? {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return None,
    };
    (!subject.trim().is_empty() && subject.len() <= MAX_SUBJECT).then_some(subject)
}

/// Group names in order, empty ones dropped, duplicates removed.
fn groups(path: &ClaimPath, value: Option<&Value>) -> Result<Vec<String>, ClaimError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let bad = || ClaimError::BadGroups(path.as_str().to_string());
    let mut groups: Vec<String> = Vec::new();
    for item in value.as_array().ok_or_else(bad)? {
        let name = item.as_str().ok_or_else(bad)?;
        if !name.is_empty() && !groups.iter().any(|g| g == name) {
            groups.push(name.to_string());
        }
    }
    Ok(groups)
}

impl ClaimMap {
    /// The identity in `user` (the user API's answer, kept whole as the raw claims).
    pub fn identity(&self, user: Value) -> Result<Identity, ClaimError> {
        if !user.is_object() {
            return Err(ClaimError::NotAnObject);
        }
        let subject = subject(self.subject.find(&user))
            .ok_or_else(|| ClaimError::NoSubject(self.subject.as_str().to_string()))?;
        let mut identity = Identity::new(subject);
        if let Some(username) = text(self.username.find(&user)) {
            identity = identity.with_username(username);
        }
        if let Some(email) = text(self.email.find(&user)) {
            let verified = self
                .email_verified
                .as_ref()
                .and_then(|p| p.find(&user))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            identity = identity.with_email(email, verified);
        }
        if let Some(name) = text(self.name.find(&user)) {
            identity = identity.with_name(name);
        }
        if let Some(path) = &self.groups {
            identity = identity.with_groups(groups(path, path.find(&user))?);
        }
        identity.claims = user;
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(raw: &str) -> ClaimPath {
        ClaimPath::parse(raw).unwrap()
    }

    fn defaults() -> ClaimMap {
        ClaimMap {
            subject: path("id"),
            username: path("login"),
            email: path("email"),
            email_verified: None,
            name: path("name"),
            groups: None,
        }
    }

    #[test]
    fn a_numeric_subject_becomes_its_decimal_string() {
        let identity = defaults()
            .identity(json!({"id": 583231, "login": "ada", "name": "Ada L"}))
            .unwrap();
        assert_eq!(identity.subject, "583231");
        assert_eq!(identity.username.as_deref(), Some("ada"));
        assert_eq!(identity.name.as_deref(), Some("Ada L"));
        assert_eq!(identity.claims["login"], "ada");
        let negative = defaults().identity(json!({"id": -7})).unwrap();
        assert_eq!(negative.subject, "-7");
    }

    #[test]
    fn a_missing_empty_float_or_boolean_subject_is_refused() {
        for user in [
            json!({"login": "ada"}),
            json!({"id": null}),
            json!({"id": ""}),
            json!({"id": 1.5}),
            json!({"id": true}),
            json!({"id": "x".repeat(MAX_SUBJECT + 1)}),
        ] {
            assert_eq!(
                defaults().identity(user.clone()),
                Err(ClaimError::NoSubject("id".into())),
                "{user}"
            );
        }
        assert_eq!(
            defaults().identity(json!([{"id": 1}])),
            Err(ClaimError::NotAnObject)
        );
    }

    #[test]
    fn emails_are_unverified_unless_a_configured_claim_says_true() {
        let user = json!({"id": "u1", "email": "ada@example.com", "email_confirmed": true});
        let identity = defaults().identity(user.clone()).unwrap();
        assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
        assert!(!identity.email_verified);

        let mut map = defaults();
        map.email_verified = Some(path("email_confirmed"));
        assert!(map.identity(user).unwrap().email_verified);
        let said_as_text = json!({"id": "u1", "email": "a@x.io", "email_confirmed": "true"});
        assert!(!map.identity(said_as_text).unwrap().email_verified);
        let no_email = map.identity(json!({"id": "u1", "email_confirmed": true}));
        assert_eq!(no_email.unwrap().email, None);
    }

    #[test]
    fn groups_are_a_deduplicated_list_of_strings_or_an_error() {
        let mut map = defaults();
        map.groups = Some(path("teams"));
        let identity = map
            .identity(json!({"id": 1, "teams": ["eng", "ops", "eng", ""]}))
            .unwrap();
        assert_eq!(identity.groups, vec!["eng", "ops"]);
        assert!(map.identity(json!({"id": 1})).unwrap().groups.is_empty());
        assert!(
            map.identity(json!({"id": 1, "teams": null}))
                .unwrap()
                .groups
                .is_empty()
        );
        for bad in [json!("eng"), json!([{"name": "eng"}]), json!({"eng": true})] {
            assert_eq!(
                map.identity(json!({"id": 1, "teams": bad})),
                Err(ClaimError::BadGroups("teams".into()))
            );
        }
        let ungrouped = defaults().identity(json!({"id": 1, "teams": ["eng"]}));
        assert!(ungrouped.unwrap().groups.is_empty());
    }

    #[test]
    fn dotted_paths_map_nested_objects_and_array_entries() {
        let user = json!({
            "data": {"user": {"id": 42, "handle": "ada"}},
            "emails": [{"address": "ada@example.com", "verified": true}],
        });
        let map = ClaimMap {
            subject: path("data.user.id"),
            username: path("data.user.handle"),
            email: path("emails.0.address"),
            email_verified: Some(path("emails.0.verified")),
            name: path("name"),
            groups: None,
        };
        let identity = map.identity(user).unwrap();
        assert_eq!(identity.subject, "42");
        assert_eq!(identity.username.as_deref(), Some("ada"));
        assert!(identity.email_verified);
    }
}
