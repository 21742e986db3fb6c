//! From verified upstream claims to an [`Identity`]: the mapping of claims (by
//! [`ClaimPath`], so nested claims are reached by dotted path) to identity fields,
//! and the rules every login passes (email verification, allowed email domains,
//! allowed groups).

use serde_json::{Map, Value};
use switchboard_plugin_api::{ClaimPath, Identity, ProviderError};

/// Which claims give the identity's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimMapping {
    /// Login name (default `preferred_username`).
    pub username: ClaimPath,
    /// Email address (default `email`).
    pub email: ClaimPath,
    /// Whether upstream verified the email (default `email_verified`).
    pub email_verified: ClaimPath,
    /// Display name (default `name`).
    pub name: ClaimPath,
    /// Group names (default `groups`).
    pub groups: ClaimPath,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            username: ClaimPath::named("preferred_username"),
            email: ClaimPath::named("email"),
            email_verified: ClaimPath::named("email_verified"),
            name: ClaimPath::named("name"),
            groups: ClaimPath::named("groups"),
        }
    }
}

/// Protocol claims that say nothing about the person; they are not kept in
/// [`Identity::claims`].
const PROTOCOL_CLAIMS: &[&str] = &[
    "nonce",
    "at_hash",
    "c_hash",
    "s_hash",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "sid",
    "aud",
    "azp",
];

impl ClaimMapping {
    /// Builds the identity for `claims`, whose `sub` becomes the subject. The email
    /// counts as verified only if the verification claim is `true`.
    pub fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, ProviderError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ProviderError::protocol("the ID token has no `sub`"))?;
        let mut identity = Identity::new(subject);
        identity.username = self.username.string(claims);
        identity.email = self.email.string(claims).filter(|e| e.contains('@'));
        identity.email_verified = identity.email.is_some() && self.email_verified.is_true(claims);
        identity.name = self.name.string(claims);
        let standard = |name: &str| ClaimPath::named(name).string(claims);
        identity.given_name = standard("given_name");
        identity.family_name = standard("family_name");
        identity.picture = standard("picture");
        identity.groups = self.groups.strings(claims);
        let kept: Map<String, Value> = claims
            .iter()
            .filter(|(k, _)| !PROTOCOL_CLAIMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        identity.claims = Value::Object(kept);
        Ok(identity)
    }
}

/// What to do with an email that upstream did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnverifiedEmail {
    /// Refuse the login (the default for generic OIDC).
    Deny,
    /// Let the login through with `email_verified = false`
    /// (`insecure_skip_email_verified`, or upstreams whose email is never proof).
    KeepUnverified,
}

/// The rules every login and refresh passes after mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginRules {
    /// Unverified email handling.
    pub unverified_email: UnverifiedEmail,
    /// When non-empty, the person needs at least one of these groups.
    pub allowed_groups: Vec<String>,
    /// When non-empty, the person needs a verified email in one of these domains
    /// (lowercase, exact match: `example.com` does not admit `sub.example.com`).
    pub allowed_email_domains: Vec<String>,
}

impl Default for LoginRules {
    fn default() -> Self {
        LoginRules {
            unverified_email: UnverifiedEmail::Deny,
            allowed_groups: Vec::new(),
            allowed_email_domains: Vec::new(),
        }
    }
}

/// The domain of an email address, lowercase.
pub fn email_domain(email: &str) -> Option<String> {
    let (_, domain) = email.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

impl LoginRules {
    /// Checks `identity`; `Denied` names the requirement it misses.
    pub fn check(&self, identity: &Identity) -> Result<(), ProviderError> {
        if identity.email.is_some()
            && !identity.email_verified
            && self.unverified_email == UnverifiedEmail::Deny
        {
            return Err(ProviderError::denied(
                "your email address is not verified by the sign-in provider",
            ));
        }
        if !self.allowed_email_domains.is_empty() {
            let domain = identity
                .email
                .as_deref()
                .filter(|_| identity.email_verified)
                .and_then(email_domain);
            if !domain.is_some_and(|d| self.allowed_email_domains.contains(&d)) {
                return Err(ProviderError::denied(format!(
                    "a verified email address in one of these domains is required: {}",
                    self.allowed_email_domains.join(", ")
                )));
            }
        }
        if !self.allowed_groups.is_empty()
            && !identity
                .groups
                .iter()
                .any(|g| self.allowed_groups.contains(g))
        {
            return Err(ProviderError::denied(format!(
                "membership in one of these groups is required: {}",
                self.allowed_groups.join(", ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn mapping_uses_sub_as_subject_and_never_the_email() {
        let c = claims(json!({
            "sub": "u-1", "email": "ada@example.com", "email_verified": true,
            "preferred_username": "ada", "name": "Ada", "groups": ["eng"],
            "nonce": "n", "exp": 1, "picture": "https://p/x.png"
        }));
        let id = ClaimMapping::default().identity(&c).unwrap();
        assert_eq!(id.subject, "u-1");
        assert_eq!(id.email.as_deref(), Some("ada@example.com"));
        assert!(id.email_verified);
        assert_eq!(id.username.as_deref(), Some("ada"));
        assert_eq!(id.groups, vec!["eng"]);
        assert_eq!(id.picture.as_deref(), Some("https://p/x.png"));
        assert!(
            id.claims.get("nonce").is_none(),
            "protocol claims are dropped"
        );
        assert_eq!(id.claims["email"], "ada@example.com");
    }

    #[test]
    fn missing_sub_is_a_protocol_error() {
        let err = ClaimMapping::default()
            .identity(&claims(json!({"email": "a@b.c"})))
            .unwrap_err();
        assert!(matches!(err, ProviderError::UpstreamProtocol { .. }));
    }

    #[test]
    fn email_without_verification_claim_is_unverified() {
        let id = ClaimMapping::default()
            .identity(&claims(json!({"sub": "1", "email": "a@b.c"})))
            .unwrap();
        assert!(!id.email_verified);
    }

    fn person(email: Option<(&str, bool)>, groups: &[&str]) -> Identity {
        let mut id = Identity::new("1").with_groups(groups.iter().map(|s| s.to_string()).collect());
        if let Some((e, v)) = email {
            id = id.with_email(e, v);
        }
        id
    }

    #[test]
    fn unverified_email_is_denied_unless_the_operator_skips_the_check() {
        let rules = LoginRules::default();
        let err = rules
            .check(&person(Some(("a@b.c", false)), &[]))
            .unwrap_err();
        assert!(
            matches!(err, ProviderError::Denied { ref reason } if reason.contains("not verified"))
        );
        let lax = LoginRules {
            unverified_email: UnverifiedEmail::KeepUnverified,
            ..LoginRules::default()
        };
        lax.check(&person(Some(("a@b.c", false)), &[])).unwrap();
        rules.check(&person(None, &[])).unwrap();
    }

    #[test]
    fn email_domain_filter_needs_a_verified_email_in_an_exact_domain() {
        let rules = LoginRules {
            unverified_email: UnverifiedEmail::KeepUnverified,
            allowed_email_domains: vec!["example.com".into()],
            ..LoginRules::default()
        };
        rules
            .check(&person(Some(("ada@Example.COM", true)), &[]))
            .unwrap();
        for bad in [
            person(Some(("ada@example.com", false)), &[]),
            person(Some(("ada@sub.example.com", true)), &[]),
            person(Some(("ada@example.com.evil.io", true)), &[]),
            person(None, &[]),
        ] {
            let err = rules.check(&bad).unwrap_err();
            assert!(
                matches!(err, ProviderError::Denied { ref reason } if reason.contains("example.com")),
                "{bad:?} -> {err:?}"
            );
        }
    }

    #[test]
    fn group_filter_needs_one_allowed_group_and_names_them() {
        let rules = LoginRules {
            allowed_groups: vec!["admins".into(), "ops".into()],
            ..LoginRules::default()
        };
        rules.check(&person(None, &["users", "ops"])).unwrap();
        let err = rules.check(&person(None, &["users"])).unwrap_err();
        assert_eq!(
            err,
            ProviderError::Denied {
                reason: "membership in one of these groups is required: admins, ops".into()
            }
        );
    }

    #[test]
    fn email_domain_is_lowercased() {
        assert_eq!(
            email_domain("A@Example.Com").as_deref(),
            Some("example.com")
        );
        assert_eq!(email_domain("nodomain@"), None);
        assert_eq!(email_domain("plain"), None);
    }
}
