//! `[roles]` and the broker's own provider keys, validated into typed values. Every
//! error names its key: a rule that can never work is refused at start, not
//! discovered in a token.

use super::raw::{RawClaim, RawProvider, RawRoleRule, RawRoles};
use super::{Client, ConfigError, ProviderSection, Validator};
use crate::roles::{
    ClaimTest, Condition, DomainPattern, Permission, RolePolicy, RoleRule, check_role_name,
};
use std::collections::BTreeMap;

/// Whether a provider's first login may create a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Registration {
    /// A first login creates the user.
    #[default]
    Open,
    /// Only users who already exist (already linked, or created by an operator) may
    /// log in.
    Closed,
}

/// How a provider's profile fields (names, email, username, picture) reach the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProfileSync {
    /// Taken when the user is created, then left to the user record.
    Import,
    /// Refreshed from upstream at every login and refresh.
    #[default]
    Force,
}

/// The broker's keys of a provider section (never passed to the provider).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderPolicy {
    pub registration: Registration,
    pub sync: ProfileSync,
    /// Its verified emails count for `email_domain` role conditions and for linking.
    pub trust_email: bool,
    /// A first login through it whose verified email is the verified email of an
    /// existing account links to that account instead of creating one.
    pub link_by_verified_email: bool,
    /// For a provider that cannot re-check a person at refresh: seconds since it last
    /// vouched for them (a login through it) after which refresh is refused and the
    /// app must send the person through login again.
    pub max_session_without_recheck: i64,
    /// Local provider only: seconds a password reset link works, when "forgot
    /// password" is on (`allow_password_reset`); `None` when it is off.
    pub password_reset: Option<i64>,
    /// Local provider only: self-service registration (`allow_registration`).
    pub signup: Option<Signup>,
    /// Local provider only: a person may change their password on /account.
    pub password_change: bool,
    /// Local provider only: a person may change their email on /account.
    pub email_change: bool,
    /// Seconds a confirmation link (registration, new email) works.
    pub confirmation_lifetime: i64,
}

/// How people register themselves with the local provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signup {
    /// Active at once, email unverified until its link is used; otherwise no account
    /// exists until the confirmation link is used.
    pub auto_activate: bool,
}

/// Default of `confirmation_lifetime`.
pub const DEFAULT_CONFIRMATION_LIFETIME: &str = "24h";

/// Default of `password_reset_lifetime`.
pub const DEFAULT_PASSWORD_RESET_LIFETIME: &str = "30m";

/// Default of `max_session_without_recheck`: a working day.
pub const DEFAULT_MAX_SESSION_WITHOUT_RECHECK: &str = "8h";

impl Default for ProviderPolicy {
    fn default() -> Self {
        ProviderPolicy {
            registration: Registration::default(),
            sync: ProfileSync::default(),
            trust_email: false,
            link_by_verified_email: false,
            max_session_without_recheck: 8 * 3600,
            password_reset: None,
            signup: None,
            password_change: false,
            email_change: false,
            confirmation_lifetime: 24 * 3600,
        }
    }
}

impl Validator {
    pub(super) fn provider_policy(
        &self,
        id: &str,
        raw: &RawProvider,
    ) -> Result<ProviderPolicy, ConfigError> {
        let key = |k: &str| format!("providers.{id}.{k}");
        let registration = match raw.registration.as_deref() {
            None | Some("open") => Registration::Open,
            Some("closed") => Registration::Closed,
            Some(other) => {
                return Err(self.err(
                    key("registration"),
                    format!("unknown value {other:?}; use \"open\" or \"closed\""),
                ));
            }
        };
        let sync = match raw.sync.as_deref() {
            None | Some("force") => ProfileSync::Force,
            Some("import") => ProfileSync::Import,
            Some(other) => {
                return Err(self.err(
                    key("sync"),
                    format!("unknown value {other:?}; use \"import\" or \"force\""),
                ));
            }
        };
        let trust_email = raw.trust_email.unwrap_or(false);
        let link_by_verified_email = raw.link_by_verified_email.unwrap_or(false);
        if link_by_verified_email && !trust_email {
            return Err(self.err(
                key("link_by_verified_email"),
                "needs trust_email = true: only emails verified by a provider trusted for email may link accounts",
            ));
        }
        let max_session_without_recheck = self.positive(
            &key("max_session_without_recheck"),
            raw.max_session_without_recheck.as_deref(),
            DEFAULT_MAX_SESSION_WITHOUT_RECHECK,
        )?;
        let lifetime = self.positive(
            &key("password_reset_lifetime"),
            raw.password_reset_lifetime.as_deref(),
            DEFAULT_PASSWORD_RESET_LIFETIME,
        )?;
        if lifetime > 24 * 3600 {
            return Err(self.err(key("password_reset_lifetime"), "at most 24h"));
        }
        let password_reset = match raw.allow_password_reset {
            Some(true) if raw.kind != "local" => {
                return Err(self.err(
                    key("allow_password_reset"),
                    "only the local provider keeps passwords the broker can reset",
                ));
            }
            Some(true) => Some(lifetime),
            _ => None,
        };
        let local = raw.kind == "local";
        let local_only = |k: &str, on: bool| {
            if on && !local {
                Err(self.err(
                    key(k),
                    "only the local provider keeps accounts people manage themselves",
                ))
            } else {
                Ok(on)
            }
        };
        let signup = local_only("allow_registration", raw.allow_registration == Some(true))?
            .then_some(Signup {
                auto_activate: raw.auto_activate.unwrap_or(false),
            });
        if raw.auto_activate.is_some() && signup.is_none() {
            return Err(self.err(key("auto_activate"), "needs allow_registration = true"));
        }
        let password_change = raw.allow_password_change.unwrap_or(local);
        local_only("allow_password_change", password_change)?;
        let email_change = local_only("allow_email_change", raw.allow_email_change == Some(true))?;
        let confirmation_lifetime = self.positive(
            &key("confirmation_lifetime"),
            raw.confirmation_lifetime.as_deref(),
            DEFAULT_CONFIRMATION_LIFETIME,
        )?;
        if confirmation_lifetime > 7 * 24 * 3600 {
            return Err(self.err(key("confirmation_lifetime"), "at most 7d"));
        }
        Ok(ProviderPolicy {
            registration,
            sync,
            trust_email,
            link_by_verified_email,
            max_session_without_recheck,
            password_reset,
            signup,
            password_change,
            email_change,
            confirmation_lifetime,
        })
    }

    pub(super) fn roles(
        &self,
        raw: &RawRoles,
        clients: &BTreeMap<String, Client>,
        providers: &[ProviderSection],
    ) -> Result<RolePolicy, ConfigError> {
        let email_trusted = providers
            .iter()
            .filter(|p| p.policy.trust_email)
            .map(|p| p.id.clone())
            .collect();
        let mut policy = RolePolicy {
            email_trusted,
            ..RolePolicy::default()
        };
        for (i, r) in raw.rules.iter().enumerate() {
            let rule = self.rule(i, r, clients, providers, &policy)?;
            policy.rules.push(rule);
        }
        for (i, role) in raw.default_roles.iter().enumerate() {
            check_role_name(role).map_err(|m| self.err(format!("roles.default_roles[{i}]"), m))?;
            if !policy.default_roles.contains(role) {
                policy.default_roles.push(role.clone());
            }
        }
        if let Some(admin) = &raw.admin_role {
            check_role_name(admin).map_err(|m| self.err("roles.admin_role", m))?;
            policy.admin_role = Some(admin.clone());
        }
        for (role, list) in &raw.permissions {
            let key = format!("roles.permissions.{role}");
            check_role_name(role).map_err(|m| self.err(&key, m))?;
            let mut parsed = Vec::with_capacity(list.len());
            for (j, p) in list.iter().enumerate() {
                parsed.push(
                    Permission::parse(p)
                        .map_err(|m| self.err(format!("{key}[{j}]"), m.to_string()))?,
                );
            }
            parsed.sort();
            parsed.dedup();
            policy.permissions.insert(role.clone(), parsed);
        }
        // A client role never shadows a global one: in a token, one name is one role.
        let global = policy.global_roles();
        for rule in &policy.rules {
            if let Some(client) = &rule.client
                && global.contains(rule.role.as_str())
            {
                return Err(self.err(
                    format!("roles.rules[{}].role", rule.index),
                    format!(
                        "{:?} is scoped to client {client:?} but is also a global role (a rule without client, default_roles or admin_role); a client role may not shadow a global one: rename it",
                        rule.role
                    ),
                ));
            }
        }
        Ok(policy)
    }

    fn rule(
        &self,
        i: usize,
        r: &RawRoleRule,
        clients: &BTreeMap<String, Client>,
        providers: &[ProviderSection],
        policy: &RolePolicy,
    ) -> Result<RoleRule, ConfigError> {
        let key = |k: &str| format!("roles.rules[{i}].{k}");
        check_role_name(&r.role).map_err(|m| self.err(key("role"), m))?;
        if let Some(client) = &r.client
            && !clients.contains_key(client)
        {
            let known: Vec<&str> = clients.keys().map(String::as_str).collect();
            return Err(self.err(
                key("client"),
                format!(
                    "unknown client {client:?} (configured: {})",
                    known.join(", ")
                ),
            ));
        }
        if let Some(provider) = &r.provider
            && !providers.iter().any(|p| p.id == *provider)
        {
            let known: Vec<&str> = providers.iter().map(|p| p.id.as_str()).collect();
            return Err(self.err(
                key("provider"),
                format!(
                    "unknown provider {provider:?} (configured: {})",
                    known.join(", ")
                ),
            ));
        }
        let mut conditions = Vec::new();
        if let Some(group) = &r.group {
            if r.provider.is_none() {
                return Err(self.err(
                    key("group"),
                    "a group condition must name its provider (add provider = \"...\"): groups of different providers are different groups",
                ));
            }
            if group.is_empty() {
                return Err(self.err(key("group"), "empty group name"));
            }
            conditions.push(Condition::Group(group.clone()));
        }
        if let Some(id) = &r.client_id {
            let machine = clients
                .get(id)
                .is_some_and(|c| c.allows_grant("client_credentials") && !c.is_public());
            if !machine {
                return Err(self.err(
                    key("client_id"),
                    format!(
                        "{id:?} is not a confidential client with the client_credentials grant"
                    ),
                ));
            }
            if r.provider.is_some() || r.group.is_some() || r.managed_group.is_some() {
                return Err(self.err(
                    key("client_id"),
                    "a client acting as itself never logs in: a client_id condition cannot stand with provider, group or managed_group",
                ));
            }
            conditions.push(Condition::MachineClient(id.clone()));
        }
        if let Some(name) = &r.managed_group {
            if name.trim().is_empty() {
                return Err(self.err(key("managed_group"), "empty group name"));
            }
            conditions.push(Condition::ManagedGroup(name.clone()));
        }
        if let Some(domain) = &r.email_domain {
            let pattern =
                DomainPattern::parse(domain).map_err(|m| self.err(key("email_domain"), m))?;
            match &r.provider {
                Some(p) if !policy.email_trusted.contains(p) => {
                    return Err(self.err(
                        key("email_domain"),
                        format!(
                            "provider {p:?} is not trusted for email, so this condition never holds: set trust_email = true in [providers.{p}] if its verified emails can be believed"
                        ),
                    ));
                }
                None if policy.email_trusted.is_empty() => {
                    return Err(self.err(
                        key("email_domain"),
                        "no provider is trusted for email, so this condition never holds: set trust_email = true on the providers whose verified emails can be believed",
                    ));
                }
                _ => {}
            }
            conditions.push(Condition::EmailDomain(pattern));
        }
        if let Some(claim) = &r.claim {
            if r.provider.is_none() {
                return Err(self.err(
                    key("claim"),
                    "a claim condition must name its provider (add provider = \"...\")",
                ));
            }
            conditions.push(self.claim(i, claim)?);
        }
        if conditions.is_empty() && r.provider.is_none() {
            return Err(self.err(
                format!("roles.rules[{i}]"),
                "a rule needs a condition (provider, group, managed_group, client_id, email_domain or claim); give a role to everyone with default_roles",
            ));
        }
        Ok(RoleRule {
            index: i,
            role: r.role.clone(),
            client: r.client.clone(),
            provider: r.provider.clone(),
            any: r.any,
            conditions,
        })
    }

    fn claim(&self, i: usize, c: &RawClaim) -> Result<Condition, ConfigError> {
        let key = |k: &str| format!("roles.rules[{i}].claim.{k}");
        if c.path.is_empty() || c.path.split('.').any(str::is_empty) {
            return Err(self.err(key("path"), "a dotted path to the claim, like \"org.team\""));
        }
        let scalar = |k: &str, v: &serde_json::Value| match v {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Number(n) => Ok(n.to_string()),
            serde_json::Value::Bool(b) => Ok(b.to_string()),
            _ => Err(self.err(key(k), "must be a string, number or boolean")),
        };
        let test = match (&c.equals, &c.one_of, &c.regex) {
            (Some(v), None, None) => ClaimTest::Equals(scalar("equals", v)?),
            (None, Some(list), None) => {
                if list.is_empty() {
                    return Err(self.err(key("one_of"), "list at least one value"));
                }
                let mut values = Vec::with_capacity(list.len());
                for v in list {
                    values.push(scalar("one_of", v)?);
                }
                ClaimTest::OneOf(values)
            }
            (None, None, Some(pattern)) => {
                ClaimTest::anchored_regex(pattern).map_err(|m| self.err(key("regex"), m))?
            }
            _ => {
                return Err(self.err(
                    format!("roles.rules[{i}].claim"),
                    "set exactly one of equals, one_of or regex",
                ));
            }
        };
        Ok(Condition::Claim {
            path: c.path.clone(),
            test,
        })
    }
}
