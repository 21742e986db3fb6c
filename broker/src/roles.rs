//! Role rules and RBAC: which roles a user holds for a client, which rule (or default,
//! or direct grant) gave each one, and the permissions those roles carry.
//!
//! Everything here is pure. The caller brings the identity of the provider the user
//! logged in with (as the link stored it at the last login or refresh) and the user's
//! direct grants; the config brings the validated [`RolePolicy`]. The same function
//! answers token issuance and `broker roles explain`, so what the operator reads is
//! exactly what apps get.
//!
//! A top-level module so that `config` (which validates `[roles]` into a
//! [`RolePolicy`]) and `identity` (which feeds it stored identities and direct grants)
//! both use it without importing each other: it depends on `store` types only.

use crate::store::RoleGrantRecord;
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use switchboard_plugin_api::Identity;

/// Whether `name` may be a role name: letters, digits and `-_.:`, not empty. (A client
/// role is scoped by its rule's `client`, never by a separator inside the name.)
pub fn check_role_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err("a role name has 1 to 128 characters".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(format!(
            "role name {name:?} may use only letters, digits, '-', '_', '.' and ':'"
        ));
    }
    Ok(())
}

pub use switchboard_access::Permission;

/// Turns a domain into the form rules compare: lowercase ASCII (IDNA, so `BÜCHER.de`
/// and `xn--bcher-kva.de` are the same domain), without a trailing dot.
pub fn normalize_domain(domain: &str) -> Option<String> {
    let trimmed = domain.trim().trim_end_matches('.');
    if trimmed.is_empty() {
        return None;
    }
    let ascii = idna::domain_to_ascii_cow(trimmed.as_bytes(), idna::AsciiDenyList::URL).ok()?;
    (!ascii.is_empty() && !ascii.contains('@')).then(|| ascii.into_owned())
}

/// An email domain condition: exactly one domain, or (written `*.example.com`) any
/// subdomain of one, never the domain itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainPattern {
    Exact(String),
    Subdomains(String),
}

impl DomainPattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (subdomains, domain) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if domain.contains('*') {
            return Err(format!(
                "{text:?}: a wildcard is allowed only as a leading \"*.\""
            ));
        }
        if domain.contains('@') {
            return Err(format!("{text:?}: write the domain only, without '@'"));
        }
        let normalized =
            normalize_domain(domain).ok_or_else(|| format!("{text:?} is not a domain name"))?;
        Ok(if subdomains {
            DomainPattern::Subdomains(normalized)
        } else {
            DomainPattern::Exact(normalized)
        })
    }

    /// Whether the domain of `email` matches.
    pub fn matches_email(&self, email: &str) -> bool {
        let Some((_, domain)) = email.rsplit_once('@') else {
            return false;
        };
        let Some(domain) = normalize_domain(domain) else {
            return false;
        };
        match self {
            DomainPattern::Exact(d) => domain == *d,
            DomainPattern::Subdomains(d) => domain
                .strip_suffix(d.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DomainPattern::Exact(d) => f.write_str(d),
            DomainPattern::Subdomains(d) => write!(f, "*.{d}"),
        }
    }
}

/// How a claim's value is tested. Values compare as text: a string as itself, a number
/// or boolean as its JSON form; an array matches when one of its elements does.
#[derive(Debug, Clone)]
pub enum ClaimTest {
    Equals(String),
    OneOf(Vec<String>),
    /// Anchored: it must match the whole value.
    Regex(Regex),
}

impl ClaimTest {
    /// A regex test that must match the whole value.
    pub fn anchored_regex(pattern: &str) -> Result<Self, String> {
        Regex::new(&format!("^(?:{pattern})$"))
            .map(ClaimTest::Regex)
            .map_err(|e| format!("not a valid regex: {e}"))
    }

    fn accepts(&self, value: &str) -> bool {
        match self {
            ClaimTest::Equals(v) => v == value,
            ClaimTest::OneOf(vs) => vs.iter().any(|v| v == value),
            ClaimTest::Regex(r) => r.is_match(value),
        }
    }
}

impl fmt::Display for ClaimTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimTest::Equals(v) => write!(f, "equals {v:?}"),
            ClaimTest::OneOf(vs) => write!(f, "is one of {vs:?}"),
            ClaimTest::Regex(r) => {
                let shown = r
                    .as_str()
                    .strip_prefix("^(?:")
                    .and_then(|s| s.strip_suffix(")$"))
                    .unwrap_or(r.as_str());
                write!(f, "matches /{shown}/ (whole value)")
            }
        }
    }
}

/// One condition of a rule. Group and claim conditions are always about the rule's
/// provider (config load makes sure it names one).
#[derive(Debug, Clone)]
pub enum Condition {
    /// The upstream group, exactly as the provider names it (LDAP DN, `org:team`, ...).
    Group(String),
    /// The verified email of a provider trusted for email.
    EmailDomain(DomainPattern),
    /// A claim of the upstream identity, by dotted path (`org.team`).
    Claim { path: String, test: ClaimTest },
    /// A managed group (one the broker holds), by name, case-insensitively; whatever
    /// provider the login went through.
    ManagedGroup(String),
    /// The client itself, acting with client credentials (a machine caller).
    MachineClient(String),
}

/// One `[[roles.rules]]` entry.
#[derive(Debug, Clone)]
pub struct RoleRule {
    /// Position in the config (`roles.rules[index]`).
    pub index: usize,
    pub role: String,
    /// Set for a client-scoped role: only that client sees it.
    pub client: Option<String>,
    /// The rule applies only to logins through this provider.
    pub provider: Option<String>,
    /// Any condition suffices instead of all of them.
    pub any: bool,
    pub conditions: Vec<Condition>,
}

/// The validated `[roles]` section.
#[derive(Debug, Clone, Default)]
pub struct RolePolicy {
    /// The role that administers Switchboard itself.
    pub admin_role: Option<String>,
    /// Global roles every user holds.
    pub default_roles: Vec<String>,
    /// Role → permissions.
    pub permissions: BTreeMap<String, Vec<Permission>>,
    pub rules: Vec<RoleRule>,
    /// Providers whose verified emails email-domain conditions believe.
    pub email_trusted: BTreeSet<String>,
}

impl RolePolicy {
    /// Role names that some rule scopes to a client, with those clients.
    pub fn client_scoped_roles(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for rule in &self.rules {
            if let Some(c) = &rule.client {
                out.entry(rule.role.as_str())
                    .or_default()
                    .insert(c.as_str());
            }
        }
        out
    }

    /// Role names that are global: named by a rule without `client`, by
    /// `default_roles`, or by `admin_role`.
    pub fn global_roles(&self) -> BTreeSet<&str> {
        let mut out: BTreeSet<&str> = self
            .rules
            .iter()
            .filter(|r| r.client.is_none())
            .map(|r| r.role.as_str())
            .collect();
        out.extend(self.default_roles.iter().map(String::as_str));
        out.extend(self.admin_role.as_deref());
        out
    }
}

/// The namespace of managed groups in the `groups` claim (`managed/ops`); no provider
/// may take it as its id.
pub const MANAGED_GROUP_NAMESPACE: &str = "managed";

/// What the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The identity of the provider the user logged in with (its `provider_id` set);
    /// `None` when there is none (a user who never logged in).
    pub identity: Option<&'a Identity>,
    /// The user's direct role grants.
    pub direct: &'a [RoleGrantRecord],
    /// The names of the managed groups the user is a member of.
    pub managed_groups: &'a [String],
    /// Set when the subject is a client acting as itself (client credentials), not a
    /// person: only `client_id` conditions can hold, and default roles do not apply.
    pub machine_client: Option<&'a str>,
}

/// The roles and permissions a user holds toward one client (or toward none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Global roles and the client's own, sorted.
    pub roles: Vec<String>,
    /// Permissions of those roles, sorted.
    pub permissions: Vec<String>,
    /// Whether the roles include the admin role.
    pub admin: bool,
}

impl Access {
    /// Whether one of the permissions allows `wanted` (wildcards match segment-wise).
    pub fn allows(&self, wanted: &str) -> bool {
        switchboard_access::allows_any(&self.permissions, wanted)
    }
}

/// One condition, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The condition as written, e.g. `group "cn=ops,dc=x"`.
    pub condition: String,
    pub held: bool,
    /// Why it held or not.
    pub why: String,
}

/// What became of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its role is given.
    Matched,
    /// Its conditions do not hold.
    NotMatched,
    /// Its conditions hold, but its role belongs to another client (or, with no client
    /// asked about, to a client).
    OtherClient,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOutcome {
    pub index: usize,
    pub role: String,
    pub client: Option<String>,
    pub any: bool,
    pub verdict: Verdict,
    pub checks: Vec<Check>,
}

/// Where a direct grant went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectOutcome {
    pub role: String,
    pub client: Option<String>,
    /// False for a grant scoped to another client.
    pub applies: bool,
}

/// Everything `broker roles explain` prints, and the resulting access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub provider: Option<String>,
    pub client: Option<String>,
    pub defaults: Vec<String>,
    pub rules: Vec<RuleOutcome>,
    pub direct: Vec<DirectOutcome>,
    pub access: Access,
}

/// The roles and permissions of `subject` toward `client`.
pub fn access(policy: &RolePolicy, subject: &Subject<'_>, client: Option<&str>) -> Access {
    explain(policy, subject, client).access
}

/// Checks every rule against `subject` and says why each matched or not.
pub fn explain(policy: &RolePolicy, subject: &Subject<'_>, client: Option<&str>) -> Explanation {
    let mut roles: BTreeSet<String> = match subject.machine_client {
        // Default roles are every person's; a machine holds what rules give it.
        Some(_) => BTreeSet::new(),
        None => policy.default_roles.iter().cloned().collect(),
    };
    let mut outcomes = Vec::with_capacity(policy.rules.len());
    for rule in &policy.rules {
        let (held, checks) = check_rule(policy, rule, subject);
        let for_this_client = rule.client.as_deref().is_none_or(|c| Some(c) == client);
        let verdict = match (held, for_this_client) {
            (false, _) => Verdict::NotMatched,
            (true, true) => Verdict::Matched,
            (true, false) => Verdict::OtherClient,
        };
        if verdict == Verdict::Matched {
            roles.insert(rule.role.clone());
        }
        outcomes.push(RuleOutcome {
            index: rule.index,
            role: rule.role.clone(),
            client: rule.client.clone(),
            any: rule.any,
            verdict,
            checks,
        });
    }
    let mut direct = Vec::with_capacity(subject.direct.len());
    for grant in subject.direct {
        let applies = grant.client_id.as_deref().is_none_or(|c| Some(c) == client);
        if applies {
            roles.insert(grant.role.clone());
        }
        direct.push(DirectOutcome {
            role: grant.role.clone(),
            client: grant.client_id.clone(),
            applies,
        });
    }
    let permissions: BTreeSet<String> = roles
        .iter()
        .filter_map(|r| policy.permissions.get(r))
        .flatten()
        .map(|p| p.as_str().to_string())
        .collect();
    let admin = policy
        .admin_role
        .as_ref()
        .is_some_and(|a| roles.contains(a));
    Explanation {
        provider: subject.identity.map(|i| i.provider_id.clone()),
        client: client.map(str::to_string),
        defaults: policy.default_roles.clone(),
        rules: outcomes,
        direct,
        access: Access {
            roles: roles.into_iter().collect(),
            permissions: permissions.into_iter().collect(),
            admin,
        },
    }
}

fn check_rule(policy: &RolePolicy, rule: &RoleRule, subject: &Subject<'_>) -> (bool, Vec<Check>) {
    let identity = subject.identity;
    let mut checks = Vec::with_capacity(rule.conditions.len() + 1);
    let mut provider_ok = true;
    if let Some(wanted) = &rule.provider {
        let (held, why) = match identity {
            None => (false, "the user has no login identity".to_string()),
            Some(i) if i.provider_id == *wanted => (true, format!("logged in through {wanted}")),
            Some(i) => (false, format!("logged in through {}", i.provider_id)),
        };
        provider_ok = held;
        checks.push(Check {
            condition: format!("provider {wanted:?}"),
            held,
            why,
        });
    }
    let mut results = Vec::with_capacity(rule.conditions.len());
    for condition in &rule.conditions {
        let check = check_condition(policy, rule, condition, subject);
        results.push(check.held);
        checks.push(check);
    }
    let conditions_ok = if results.is_empty() {
        true
    } else if rule.any {
        results.iter().any(|h| *h)
    } else {
        results.iter().all(|h| *h)
    };
    (provider_ok && conditions_ok, checks)
}

fn check_condition(
    policy: &RolePolicy,
    rule: &RoleRule,
    condition: &Condition,
    subject: &Subject<'_>,
) -> Check {
    let identity = subject.identity;
    let provider = rule.provider.as_deref().unwrap_or_default();
    let (condition_text, result) = match condition {
        Condition::Group(group) => (
            format!("group {:?}", format!("{provider}/{group}")),
            group_held(provider, group, identity),
        ),
        Condition::EmailDomain(pattern) => (
            format!("email_domain {:?}", pattern.to_string()),
            email_held(policy, pattern, identity),
        ),
        Condition::Claim { path, test } => (
            format!("claim {path:?} {test}"),
            claim_held(provider, path, test, identity),
        ),
        Condition::ManagedGroup(name) => (
            format!("managed_group {name:?}"),
            managed_group_held(name, subject.managed_groups),
        ),
        Condition::MachineClient(id) => (
            format!("client_id {id:?}"),
            match subject.machine_client {
                Some(c) if c == id => (true, "the client acting as itself".to_string()),
                Some(c) => (false, format!("client {c} acting as itself")),
                None => (false, "a person, not a client".to_string()),
            },
        ),
    };
    let (held, why) = result;
    Check {
        condition: condition_text,
        held,
        why,
    }
}

fn managed_group_held(name: &str, groups: &[String]) -> (bool, String) {
    if groups.iter().any(|g| g.eq_ignore_ascii_case(name)) {
        (true, "a member".to_string())
    } else if groups.is_empty() {
        (false, "a member of no managed group".to_string())
    } else {
        (false, format!("a member of {}", groups.join(", ")))
    }
}

fn group_held(provider: &str, group: &str, identity: Option<&Identity>) -> (bool, String) {
    let Some(identity) = identity.filter(|i| i.provider_id == provider) else {
        return (false, format!("no identity of {provider} at this login"));
    };
    if identity.groups.iter().any(|g| g == group) {
        (true, format!("{provider} lists the group"))
    } else if identity.groups.is_empty() {
        (false, format!("{provider} lists no groups"))
    } else {
        let shown: Vec<String> = identity
            .groups
            .iter()
            .map(|g| format!("{provider}/{g}"))
            .collect();
        (false, format!("groups are {}", shown.join(", ")))
    }
}

fn email_held(
    policy: &RolePolicy,
    pattern: &DomainPattern,
    identity: Option<&Identity>,
) -> (bool, String) {
    let Some(identity) = identity else {
        return (false, "the user has no login identity".into());
    };
    let Some(email) = &identity.email else {
        return (false, format!("{} sent no email", identity.provider_id));
    };
    if !policy.email_trusted.contains(&identity.provider_id) {
        return (
            false,
            format!(
                "{} is not trusted for email (trust_email is off)",
                identity.provider_id
            ),
        );
    }
    if !identity.email_verified {
        return (false, format!("{email} is not verified"));
    }
    if pattern.matches_email(email) {
        (true, format!("{email} is verified and in the domain"))
    } else {
        (false, format!("{email} is not in the domain"))
    }
}

/// The value at a dotted path. A key that itself contains dots (as in namespaced
/// claims like `https://example.com/roles`) can be named whole.
pub fn claim_at<'v>(value: &'v serde_json::Value, path: &str) -> Option<&'v serde_json::Value> {
    let object = value.as_object()?;
    if let Some(v) = object.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    claim_at(object.get(head)?, rest)
}

/// A scalar claim value as rules compare it.
fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn claim_held(
    provider: &str,
    path: &str,
    test: &ClaimTest,
    identity: Option<&Identity>,
) -> (bool, String) {
    let Some(identity) = identity.filter(|i| i.provider_id == provider) else {
        return (false, format!("no identity of {provider} at this login"));
    };
    let Some(value) = claim_at(&identity.claims, path) else {
        return (false, format!("{provider} sent no claim {path:?}"));
    };
    let candidates: Vec<String> = match value {
        serde_json::Value::Array(items) => items.iter().filter_map(scalar_text).collect(),
        other => scalar_text(other).into_iter().collect(),
    };
    match candidates.iter().find(|c| test.accepts(c)) {
        Some(hit) => (true, format!("value {hit:?}")),
        None if candidates.is_empty() => (false, format!("value {value} is not comparable")),
        None => (false, format!("value is {value}")),
    }
}

impl fmt::Display for Explanation {
    /// The human-readable report of `broker roles explain`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = |held: bool| if held { "yes" } else { "no " };
        writeln!(
            f,
            "login provider: {}",
            self.provider
                .as_deref()
                .unwrap_or("(none: no linked identity)")
        )?;
        writeln!(
            f,
            "client: {}",
            self.client
                .as_deref()
                .unwrap_or("(none: client-scoped roles are not given)")
        )?;
        if self.defaults.is_empty() {
            writeln!(f, "default roles: (none)")?;
        } else {
            writeln!(f, "default roles: {}", self.defaults.join(", "))?;
        }
        for r in &self.rules {
            let scope = r
                .client
                .as_deref()
                .map(|c| format!(" (client {c})"))
                .unwrap_or_default();
            let verdict = match r.verdict {
                Verdict::Matched => "MATCHED".to_string(),
                Verdict::NotMatched => "not matched".to_string(),
                Verdict::OtherClient => format!(
                    "conditions hold, but the role is for client {}",
                    r.client.as_deref().unwrap_or("?")
                ),
            };
            let combine = if r.any { " [any condition]" } else { "" };
            writeln!(
                f,
                "roles.rules[{}] role {}{scope}{combine}: {verdict}",
                r.index, r.role
            )?;
            for c in &r.checks {
                writeln!(f, "    {} {}: {}", mark(c.held), c.condition, c.why)?;
            }
        }
        if self.direct.is_empty() {
            writeln!(f, "direct grants: (none)")?;
        }
        for d in &self.direct {
            let scope = d
                .client
                .as_deref()
                .map(|c| format!(" (client {c})"))
                .unwrap_or_default();
            let applies = if d.applies {
                "given"
            } else {
                "not given: another client"
            };
            writeln!(f, "direct grant {}{scope}: {applies}", d.role)?;
        }
        writeln!(f, "roles: {}", self.access.roles.join(", "))?;
        writeln!(f, "permissions: {}", self.access.permissions.join(", "))?;
        write!(f, "admin: {}", if self.access.admin { "yes" } else { "no" })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity(provider: &str) -> Identity {
        let mut i = Identity::new("s1");
        i.provider_id = provider.into();
        i
    }

    fn rule(role: &str, provider: Option<&str>, conditions: Vec<Condition>) -> RoleRule {
        RoleRule {
            index: 0,
            role: role.into(),
            client: None,
            provider: provider.map(str::to_string),
            any: false,
            conditions,
        }
    }

    fn policy(rules: Vec<RoleRule>) -> RolePolicy {
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(index, r)| RoleRule { index, ..r })
            .collect();
        RolePolicy {
            rules,
            email_trusted: ["corp".to_string(), "ldap".to_string()].into(),
            ..RolePolicy::default()
        }
    }

    fn roles_of(policy: &RolePolicy, identity: &Identity, client: Option<&str>) -> Vec<String> {
        let subject = Subject {
            identity: Some(identity),
            direct: &[],
            managed_groups: &[],
            machine_client: None,
        };
        access(policy, &subject, client).roles
    }

    fn group(g: &str) -> Condition {
        Condition::Group(g.into())
    }

    fn domain(d: &str) -> Condition {
        Condition::EmailDomain(DomainPattern::parse(d).unwrap())
    }

    fn claim(path: &str, test: ClaimTest) -> Condition {
        Condition::Claim {
            path: path.into(),
            test,
        }
    }

    #[test]
    fn group_conditions_match_exactly_and_only_for_their_provider() {
        let p = policy(vec![
            rule("ops", Some("ldap"), vec![group("cn=ops,ou=groups,dc=x")]),
            rule("gh-admin", Some("github"), vec![group("admins")]),
        ]);
        let mut ldap = identity("ldap").with_groups(vec!["cn=ops,ou=groups,dc=x".into()]);
        assert_eq!(roles_of(&p, &ldap, None), vec!["ops"]);
        ldap.groups = vec!["cn=OPS,ou=groups,dc=x".into()];
        assert!(
            roles_of(&p, &ldap, None).is_empty(),
            "exact, not case-folded"
        );
        let ldap_admins = identity("ldap").with_groups(vec!["admins".into()]);
        assert!(
            roles_of(&p, &ldap_admins, None).is_empty(),
            "an LDAP group admins is not the GitHub org admins"
        );
        let github = identity("github").with_groups(vec!["admins".into()]);
        assert_eq!(roles_of(&p, &github, None), vec!["gh-admin"]);
    }

    #[test]
    fn provider_alone_matches_every_login_through_it() {
        let p = policy(vec![rule("partner", Some("corp"), vec![])]);
        assert_eq!(roles_of(&p, &identity("corp"), None), vec!["partner"]);
        assert!(roles_of(&p, &identity("ldap"), None).is_empty());
        let nobody = Subject {
            identity: None,
            direct: &[],
            managed_groups: &[],
            machine_client: None,
        };
        assert!(access(&p, &nobody, None).roles.is_empty());
    }

    #[test]
    fn email_domains_need_a_verified_email_from_a_trusted_provider() {
        let p = policy(vec![rule("staff", None, vec![domain("example.com")])]);
        let cases: &[(&str, &str, bool, bool)] = &[
            ("corp", "a@example.com", true, true),
            ("corp", "A@EXAMPLE.COM", true, true),
            ("corp", "a@example.com.", true, true),
            ("corp", "a@example.com", false, false),
            ("github", "a@example.com", true, false),
            ("corp", "a@sub.example.com", true, false),
            ("corp", "a@notexample.com", true, false),
            ("corp", "a@example.com.evil.io", true, false),
            ("corp", "example.com", true, false),
        ];
        for (provider, email, verified, expected) in cases {
            let id = identity(provider).with_email(*email, *verified);
            assert_eq!(
                !roles_of(&p, &id, None).is_empty(),
                *expected,
                "{provider} {email} verified={verified}"
            );
        }
    }

    #[test]
    fn subdomains_match_only_with_an_explicit_wildcard() {
        let p = policy(vec![rule("staff", None, vec![domain("*.example.com")])]);
        for (email, expected) in [
            ("a@eu.example.com", true),
            ("a@x.eu.example.com", true),
            ("a@example.com", false),
            ("a@badexample.com", false),
        ] {
            let id = identity("corp").with_email(email, true);
            assert_eq!(!roles_of(&p, &id, None).is_empty(), expected, "{email}");
        }
    }

    #[test]
    fn email_domains_compare_after_idna() {
        let p = policy(vec![rule("de", None, vec![domain("Bücher.de")])]);
        assert_eq!(
            DomainPattern::parse("Bücher.de").unwrap(),
            DomainPattern::Exact("xn--bcher-kva.de".into())
        );
        for email in ["a@bücher.de", "a@BÜCHER.DE", "a@xn--bcher-kva.de"] {
            let id = identity("corp").with_email(email, true);
            assert_eq!(roles_of(&p, &id, None), vec!["de"], "{email}");
        }
        let id = identity("corp").with_email("a@bucher.de", true);
        assert!(roles_of(&p, &id, None).is_empty());
    }

    #[test]
    fn bad_domain_patterns_are_refused() {
        for bad in [
            "",
            "*",
            "a.*.com",
            "@example.com",
            "*example.com",
            "ex ample.com",
        ] {
            assert!(DomainPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn claims_match_by_equals_one_of_and_anchored_regex_on_nested_paths() {
        let claims = json!({
            "org": { "team": "platform", "level": 3, "tags": ["a", "b"] },
            "https://example.com/roles": ["writer"],
            "active": true,
        });
        let cases: Vec<(Condition, bool)> = vec![
            (
                claim("org.team", ClaimTest::Equals("platform".into())),
                true,
            ),
            (
                claim("org.team", ClaimTest::Equals("Platform".into())),
                false,
            ),
            (claim("org.level", ClaimTest::Equals("3".into())), true),
            (claim("active", ClaimTest::Equals("true".into())), true),
            (
                claim(
                    "org.team",
                    ClaimTest::OneOf(vec!["infra".into(), "platform".into()]),
                ),
                true,
            ),
            (claim("org.tags", ClaimTest::Equals("b".into())), true),
            (
                claim(
                    "https://example.com/roles",
                    ClaimTest::Equals("writer".into()),
                ),
                true,
            ),
            (
                claim("org.team", ClaimTest::anchored_regex("plat.*").unwrap()),
                true,
            ),
            (
                claim("org.team", ClaimTest::anchored_regex("plat").unwrap()),
                false,
            ),
            (
                claim("org.team", ClaimTest::anchored_regex("form").unwrap()),
                false,
            ),
            (
                claim("org.team", ClaimTest::anchored_regex("x|platform").unwrap()),
                true,
            ),
            (claim("org", ClaimTest::Equals("platform".into())), false),
            (claim("org.missing", ClaimTest::Equals("x".into())), false),
        ];
        for (i, (condition, expected)) in cases.into_iter().enumerate() {
            let shown = format!("{condition:?}");
            let p = policy(vec![rule("r", Some("corp"), vec![condition])]);
            let mut id = identity("corp");
            id.claims = claims.clone();
            assert_eq!(
                !roles_of(&p, &id, None).is_empty(),
                expected,
                "case {i}: {shown}"
            );
            let mut other = identity("ldap");
            other.claims = claims.clone();
            assert!(
                roles_of(&p, &other, None).is_empty(),
                "claims of another provider never match"
            );
        }
    }

    #[test]
    fn all_conditions_must_hold_unless_any_is_set() {
        let conditions = vec![group("eng"), domain("example.com")];
        let all = policy(vec![rule("r", Some("corp"), conditions.clone())]);
        let any = policy(vec![RoleRule {
            any: true,
            ..rule("r", Some("corp"), conditions)
        }]);
        let only_group = identity("corp").with_groups(vec!["eng".into()]);
        let both = only_group.clone().with_email("a@example.com", true);
        let neither = identity("corp");
        assert!(roles_of(&all, &only_group, None).is_empty());
        assert_eq!(roles_of(&all, &both, None), vec!["r"]);
        assert_eq!(roles_of(&any, &only_group, None), vec!["r"]);
        assert!(roles_of(&any, &neither, None).is_empty());
        let elsewhere = identity("ldap")
            .with_groups(vec!["eng".into()])
            .with_email("a@example.com", true);
        assert!(
            roles_of(&any, &elsewhere, None).is_empty(),
            "the provider holds even with any = true"
        );
    }

    #[test]
    fn client_roles_reach_only_their_client() {
        let p = policy(vec![
            RoleRule {
                client: Some("billing".into()),
                ..rule("approver", Some("corp"), vec![])
            },
            rule("employee", Some("corp"), vec![]),
        ]);
        let id = identity("corp");
        assert_eq!(
            roles_of(&p, &id, Some("billing")),
            vec!["approver", "employee"]
        );
        assert_eq!(roles_of(&p, &id, Some("wiki")), vec!["employee"]);
        assert_eq!(roles_of(&p, &id, None), vec!["employee"]);
        let e = explain(
            &p,
            &Subject {
                identity: Some(&id),
                direct: &[],
                managed_groups: &[],
                machine_client: None,
            },
            Some("wiki"),
        );
        assert_eq!(e.rules[0].verdict, Verdict::OtherClient);
    }

    #[test]
    fn defaults_direct_grants_and_permissions_combine() {
        let mut p = policy(vec![rule("ops", Some("ldap"), vec![group("ops")])]);
        p.default_roles = vec!["member".into()];
        p.admin_role = Some("admin".into());
        p.permissions = [
            (
                "member".to_string(),
                vec![Permission::parse("profile:read").unwrap()],
            ),
            (
                "ops".to_string(),
                vec![
                    Permission::parse("servers:*").unwrap(),
                    Permission::parse("profile:read").unwrap(),
                ],
            ),
            ("admin".to_string(), vec![Permission::parse("*").unwrap()]),
        ]
        .into();
        let direct = vec![
            RoleGrantRecord {
                user_id: "u".into(),
                role: "admin".into(),
                client_id: None,
                granted_at: 1,
            },
            RoleGrantRecord {
                user_id: "u".into(),
                role: "auditor".into(),
                client_id: Some("billing".into()),
                granted_at: 1,
            },
        ];
        let id = identity("ldap").with_groups(vec!["ops".into()]);
        let subject = Subject {
            identity: Some(&id),
            direct: &direct,
            managed_groups: &[],
            machine_client: None,
        };
        let a = access(&p, &subject, Some("wiki"));
        assert_eq!(a.roles, vec!["admin", "member", "ops"]);
        assert_eq!(a.permissions, vec!["*", "profile:read", "servers:*"]);
        assert!(a.admin);
        assert!(a.allows("anything:at:all"));
        let billing = access(&p, &subject, Some("billing"));
        assert!(billing.roles.contains(&"auditor".to_string()));
        let no_grants = access(
            &p,
            &Subject {
                identity: Some(&id),
                direct: &[],
                managed_groups: &[],
                machine_client: None,
            },
            None,
        );
        assert!(!no_grants.admin);
        assert!(no_grants.allows("servers:restart"));
        assert!(!no_grants.allows("users:delete"));
    }

    #[test]
    fn permission_wildcards_match_segment_wise() {
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
            assert_eq!(
                Permission::parse(granted).unwrap().allows(wanted),
                expected,
                "{granted} allows {wanted}"
            );
        }
        for bad in ["", "a::b", "admin*", "a:b*:c", "has space", ":x"] {
            assert!(Permission::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn role_names_are_checked() {
        assert!(check_role_name("billing.approver-2:x").is_ok());
        for bad in ["", "has space", "a/b", "é"] {
            assert!(check_role_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn explanation_says_why_each_rule_matched_or_not() {
        let p = policy(vec![
            rule("ops", Some("ldap"), vec![group("ops")]),
            rule("staff", None, vec![domain("example.com")]),
        ]);
        let id = identity("ldap")
            .with_groups(vec!["dev".into()])
            .with_email("a@example.com", false);
        let e = explain(
            &p,
            &Subject {
                identity: Some(&id),
                direct: &[],
                managed_groups: &[],
                machine_client: None,
            },
            None,
        );
        let text = e.to_string();
        assert!(
            text.contains("roles.rules[0] role ops: not matched"),
            "{text}"
        );
        assert!(text.contains("groups are ldap/dev"), "{text}");
        assert!(text.contains("a@example.com is not verified"), "{text}");
        assert!(e.access.roles.is_empty());
    }
}

#[cfg(test)]
mod machine_tests {
    use super::*;

    #[test]
    fn a_client_id_rule_gives_a_machine_its_role_and_nothing_else() {
        let policy = RolePolicy {
            default_roles: vec!["member".into()],
            permissions: [(
                "provisioner".to_string(),
                vec![Permission::parse("admin:users:*").unwrap()],
            )]
            .into(),
            rules: vec![RoleRule {
                index: 0,
                role: "provisioner".into(),
                client: None,
                provider: None,
                any: false,
                conditions: vec![Condition::MachineClient("ops-bot".into())],
            }],
            ..RolePolicy::default()
        };
        let machine = |id| Subject {
            identity: None,
            direct: &[],
            managed_groups: &[],
            machine_client: Some(id),
        };
        let bot = access(&policy, &machine("ops-bot"), Some("ops-bot"));
        assert_eq!(bot.roles, ["provisioner"]);
        assert!(bot.allows("admin:users:write"));
        assert!(
            access(&policy, &machine("other"), Some("other"))
                .roles
                .is_empty()
        );
        let person = Subject {
            machine_client: None,
            ..machine("ops-bot")
        };
        assert_eq!(access(&policy, &person, Some("ops-bot")).roles, ["member"]);
    }
}
