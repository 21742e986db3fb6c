//! The LDAP provider: password login (search-then-bind or direct bind) and refresh.
//!
//! The person sees one message for a wrong password, an unknown user and a user outside
//! the required group ([`ProviderError::InvalidCredentials`]); the log says which.
//!
//! Refresh, as the service account, re-runs the user search with the login the person
//! typed (kept in `provider_data`), so whatever the operator's filter excludes is
//! excluded at refresh too, and the entry found must still carry the same id; then it
//! re-reads the groups and the Active Directory disabled bit. Someone who logged in by
//! an attribute that has since changed (their email, say) must log in again.

use crate::config::{GroupSearch, Settings, UserLookup};
use crate::connection::{
    BIND_REFUSED, Connector, LdapFailure, Search, SearchScope, ServiceConnection, Session,
};
use crate::entry::Entry;
use crate::escape::Values;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use switchboard_plugin_api::{
    Identity, Password, PasswordLogin, PasswordRequest, Provider, ProviderError, RefreshIdentity,
    RefreshRequest,
};

/// The Active Directory `userAccountControl` attribute and its ACCOUNTDISABLE bit.
const USER_ACCOUNT_CONTROL: &str = "userAccountControl";
const ACCOUNT_DISABLED: u32 = 0x2;

/// busy, unavailable, other, timeLimitExceeded, adminLimitExceeded.
const SERVER_TROUBLE: &[u32] = &[51, 52, 80, 3, 11];
/// noSuchObject.
const NO_SUCH_OBJECT: u32 = 32;

/// What the provider keeps in the identity for refresh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RefreshData {
    /// The entry's DN at login.
    dn: String,
    /// What the person typed as their login (trimmed), to search them again.
    login: String,
}

/// Why a login was refused; logged, never shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    EmptyUsername,
    EmptyPassword,
    UnknownUser,
    WrongPassword,
    WrongPasswordOrUnknownUser,
    NotInRequiredGroup,
    AccountDisabled,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::EmptyUsername => "empty username",
            Refusal::EmptyPassword => "empty password (refused before any bind)",
            Refusal::UnknownUser => "unknown user",
            Refusal::WrongPassword => "wrong password",
            Refusal::WrongPasswordOrUnknownUser => "wrong password or unknown user",
            Refusal::NotInRequiredGroup => "not in the required group",
            Refusal::AccountDisabled => "account disabled",
        }
    }
}

/// What the directory says about a person.
#[derive(Debug, Clone)]
struct Profile {
    dn: String,
    subject: String,
    username: Option<String>,
    email: Option<String>,
    name: Option<String>,
    disabled: bool,
    groups: Vec<String>,
}

/// Who reads entries and groups: the service account, or (direct bind without one) the
/// person's own connection.
enum Reader<'a> {
    Service(&'a ServiceConnection),
    Own(&'a mut Session),
}

impl Reader<'_> {
    async fn search(&mut self, search: Search<'_>) -> Result<Vec<Entry>, LdapFailure> {
        match self {
            Reader::Service(service) => service.search(search).await,
            Reader::Own(session) => session.search(search).await,
        }
    }
}

/// An LDAP / Active Directory provider instance.
pub struct LdapProvider {
    id: String,
    settings: Settings,
    connector: Arc<Connector>,
    service: Option<ServiceConnection>,
}

impl fmt::Debug for LdapProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapProvider")
            .field("id", &self.id)
            .field("url", &self.settings.url)
            .field(
                "mode",
                &match self.settings.lookup {
                    UserLookup::Search { .. } => "search",
                    UserLookup::Direct { .. } => "direct bind",
                },
            )
            .field("refresh", &self.service.is_some())
            .finish_non_exhaustive()
    }
}

impl Provider for LdapProvider {
    fn password(&self) -> Option<&dyn PasswordLogin> {
        Some(self)
    }

    /// Only with a service account: without one, nobody can re-read the person.
    fn refresh(&self) -> Option<&dyn RefreshIdentity> {
        if self.service.is_some() {
            Some(self)
        } else {
            None
        }
    }
}

impl LdapProvider {
    /// Builds the provider from validated settings. Opens no connection.
    pub(crate) fn new(id: String, settings: Settings) -> Self {
        let connector = Arc::new(Connector::new(
            settings.url.clone(),
            settings.start_tls,
            settings.tls.clone(),
            settings.connect_timeout,
            settings.operation_timeout,
        ));
        let service = settings.service_account.as_ref().map(|(dn, password)| {
            ServiceConnection::new(connector.clone(), dn.clone(), password.clone())
        });
        LdapProvider {
            id,
            settings,
            connector,
            service,
        }
    }

    fn refuse(&self, login: &str, why: Refusal) -> ProviderError {
        tracing::info!(
            provider = %self.id,
            username = login,
            reason = why.as_str(),
            "LDAP login refused"
        );
        ProviderError::InvalidCredentials
    }

    /// Maps a failure of the directory (not of the person's credentials).
    fn upstream(&self, failure: LdapFailure) -> ProviderError {
        let detail = failure.to_string();
        match failure {
            LdapFailure::Timeout { .. } | LdapFailure::Connection { .. } => {
                tracing::warn!(provider = %self.id, url = %self.settings.url, error = %detail, "LDAP server unavailable");
                ProviderError::UpstreamUnavailable { detail }
            }
            LdapFailure::Result { rc, .. } if SERVER_TROUBLE.contains(&rc) => {
                tracing::warn!(provider = %self.id, error = %detail, "LDAP server in trouble");
                ProviderError::UpstreamUnavailable { detail }
            }
            LdapFailure::ServiceBindRefused { .. } => {
                tracing::error!(provider = %self.id, error = %detail, "LDAP service account cannot bind; check bind_dn and its password");
                ProviderError::Misconfigured { detail }
            }
            LdapFailure::Result { .. } | LdapFailure::Protocol { .. } => {
                tracing::error!(provider = %self.id, error = %detail, "LDAP operation failed");
                ProviderError::UpstreamProtocol { detail }
            }
        }
    }

    fn entry_attributes(&self) -> Vec<&str> {
        let a = &self.settings.attributes;
        vec![
            a.id.as_str(),
            a.username.as_str(),
            a.email.as_str(),
            a.name.as_str(),
            USER_ACCOUNT_CONTROL,
        ]
    }

    /// Finds the person's entry with the configured user search. `Ok(None)`: no entry.
    async fn search_user(
        &self,
        service: &ServiceConnection,
        base_dn: &str,
        filter: &str,
        scope: SearchScope,
    ) -> Result<Option<Entry>, ProviderError> {
        let attributes = self.entry_attributes();
        let mut entries = service
            .search(Search {
                base: base_dn,
                scope,
                filter,
                attributes: &attributes,
                size_limit: 2,
            })
            .await
            .map_err(|e| self.upstream(e))?;
        match entries.len() {
            0 => Ok(None),
            1 => Ok(entries.pop()),
            n => {
                tracing::error!(
                    provider = %self.id,
                    filter,
                    entries = n,
                    "LDAP user search matched more than one entry; refusing to pick one (make user_search.filter unique)"
                );
                Err(ProviderError::UpstreamProtocol {
                    detail: "the user search matched more than one entry".into(),
                })
            }
        }
    }

    /// Reads one entry by DN. `Ok(None)`: it does not exist.
    async fn read_entry(
        &self,
        reader: &mut Reader<'_>,
        dn: &str,
    ) -> Result<Option<Entry>, ProviderError> {
        let attributes = self.entry_attributes();
        let result = reader
            .search(Search {
                base: dn,
                scope: SearchScope::Base,
                filter: "(objectClass=*)",
                attributes: &attributes,
                size_limit: 2,
            })
            .await;
        match result {
            Ok(mut entries) if entries.len() <= 1 => Ok(entries.pop()),
            Ok(_) => Err(ProviderError::UpstreamProtocol {
                detail: "a base search returned several entries".into(),
            }),
            Err(LdapFailure::Result { rc, .. }) if rc == NO_SUCH_OBJECT => Ok(None),
            Err(e) => Err(self.upstream(e)),
        }
    }

    async fn find_groups(
        &self,
        reader: &mut Reader<'_>,
        groups: &GroupSearch,
        dn: &str,
        username: &str,
    ) -> Result<Vec<String>, ProviderError> {
        let filter = groups.filter.render(Values { username, dn });
        let attributes = [groups.name_attribute.as_str()];
        let entries = reader
            .search(Search {
                base: &groups.base_dn,
                scope: groups.scope,
                filter: &filter,
                attributes: &attributes,
                size_limit: 0,
            })
            .await
            .map_err(|e| self.upstream(e))?;
        let mut names = BTreeSet::new();
        for entry in entries {
            match entry.first_text(&groups.name_attribute) {
                Some(name) => {
                    names.insert(name);
                }
                None => tracing::debug!(
                    provider = %self.id,
                    group = %entry.dn,
                    attribute = %groups.name_attribute,
                    "LDAP group without a name attribute skipped"
                ),
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Reads everything the identity needs from the person's entry and groups.
    async fn profile(
        &self,
        reader: &mut Reader<'_>,
        entry: Entry,
        login: &str,
    ) -> Result<Profile, ProviderError> {
        let a = &self.settings.attributes;
        let ids = entry.values(&a.id);
        let raw_id = match ids {
            [one] => one,
            [] => {
                tracing::error!(provider = %self.id, dn = %entry.dn, attribute = %a.id, "LDAP entry has no id attribute (is id_attribute right, and readable?)");
                return Err(ProviderError::UpstreamProtocol {
                    detail: format!("the entry has no {}", a.id),
                });
            }
            _ => {
                return Err(ProviderError::UpstreamProtocol {
                    detail: format!("the entry has several values of {}", a.id),
                });
            }
        };
        let subject = a
            .id_format
            .render(raw_id)
            .map_err(|e| ProviderError::UpstreamProtocol {
                detail: format!("{}: {e}", a.id),
            })?;
        let username = entry.first_text(&a.username);
        let disabled = entry
            .first_text(USER_ACCOUNT_CONTROL)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .is_some_and(|flags| flags & i64::from(ACCOUNT_DISABLED) != 0);
        let groups = match &self.settings.groups {
            Some(g) => {
                self.find_groups(reader, g, &entry.dn, username.as_deref().unwrap_or(login))
                    .await?
            }
            None => Vec::new(),
        };
        Ok(Profile {
            subject,
            username,
            email: entry.first_text(&a.email),
            name: entry.first_text(&a.name),
            disabled,
            groups,
            dn: entry.dn,
        })
    }

    fn in_required_group(&self, profile: &Profile) -> bool {
        match &self.settings.required_group {
            None => true,
            Some(required) => {
                let required = required.to_lowercase();
                profile.groups.iter().any(|g| g.to_lowercase() == required)
            }
        }
    }

    fn identity(&self, profile: Profile, login: &str) -> Identity {
        let groups = match &self.settings.group_prefix {
            None => profile.groups,
            Some(prefix) => {
                let prefix = prefix.to_lowercase();
                profile
                    .groups
                    .into_iter()
                    .filter(|g| g.to_lowercase().starts_with(&prefix))
                    .collect()
            }
        };
        let data = RefreshData {
            dn: profile.dn.clone(),
            login: login.to_owned(),
        };
        let mut identity = Identity::new(profile.subject).with_groups(groups);
        identity.provider_id = self.id.clone();
        identity.username = Some(profile.username.unwrap_or_else(|| login.to_owned()));
        identity.email_verified = profile.email.is_some() && self.settings.email_verified;
        identity.email = profile.email;
        identity.name = profile.name;
        identity.claims = serde_json::json!({ "dn": profile.dn });
        identity.provider_data = serde_json::to_value(data).ok();
        identity
    }

    /// Opens a connection of the person's own and binds as `dn`.
    async fn bind_as(
        &self,
        dn: &str,
        password: &Password,
        login: &str,
        refusal: Refusal,
    ) -> Result<Session, ProviderError> {
        let mut session = self.connector.open().await.map_err(|e| self.upstream(e))?;
        match session.bind(dn, password).await {
            Ok(()) => Ok(session),
            Err(LdapFailure::Result { rc, text, .. }) if BIND_REFUSED.contains(&rc) => {
                tracing::debug!(provider = %self.id, rc, text = %text, "LDAP bind refused");
                session.close().await;
                Err(self.refuse(login, refusal))
            }
            Err(e) => {
                session.close().await;
                Err(self.upstream(e))
            }
        }
    }

    async fn login_by_search(
        &self,
        service: &ServiceConnection,
        login: &str,
        password: &Password,
    ) -> Result<Profile, ProviderError> {
        let UserLookup::Search {
            base_dn,
            filter,
            scope,
        } = &self.settings.lookup
        else {
            return Err(ProviderError::Misconfigured {
                detail: "search login without user_search".into(),
            });
        };
        let filter = filter.render(Values {
            username: login,
            dn: "",
        });
        let Some(entry) = self.search_user(service, base_dn, &filter, *scope).await? else {
            return Err(self.refuse(login, Refusal::UnknownUser));
        };
        let session = self
            .bind_as(&entry.dn, password, login, Refusal::WrongPassword)
            .await?;
        session.close().await;
        self.profile(&mut Reader::Service(service), entry, login)
            .await
    }

    async fn login_by_dn(
        &self,
        dn: &str,
        login: &str,
        password: &Password,
    ) -> Result<Profile, ProviderError> {
        let mut session = self
            .bind_as(dn, password, login, Refusal::WrongPasswordOrUnknownUser)
            .await?;
        let result = async {
            let mut reader = match &self.service {
                Some(service) => Reader::Service(service),
                None => Reader::Own(&mut session),
            };
            let Some(entry) = self.read_entry(&mut reader, dn).await? else {
                tracing::error!(provider = %self.id, dn, "bound as the user but cannot read the entry; check the directory's access rules");
                return Err(ProviderError::UpstreamProtocol {
                    detail: "cannot read the entry of the user who just bound".into(),
                });
            };
            self.profile(&mut reader, entry, login).await
        }
        .await;
        session.close().await;
        result
    }

    /// Re-reads the person as the service account: `Ok(None)` when they are gone.
    async fn reread(
        &self,
        service: &ServiceConnection,
        data: &RefreshData,
    ) -> Result<Option<Entry>, ProviderError> {
        match &self.settings.lookup {
            UserLookup::Search {
                base_dn,
                filter,
                scope,
            } => {
                // The user filter again, so whatever it excludes (disabled accounts, a
                // removed objectClass) is excluded now too.
                let filter = filter.render(Values {
                    username: &data.login,
                    dn: "",
                });
                self.search_user(service, base_dn, &filter, *scope).await
            }
            UserLookup::Direct { template } => {
                let dn = template.render(Values {
                    username: &data.login,
                    dn: "",
                });
                self.read_entry(&mut Reader::Service(service), &dn).await
            }
        }
    }

    fn deny(&self, subject: &str, reason: &str) -> ProviderError {
        tracing::info!(provider = %self.id, subject, reason, "LDAP refresh denied");
        ProviderError::Denied {
            reason: reason.to_owned(),
        }
    }
}

#[async_trait]
impl PasswordLogin for LdapProvider {
    async fn authenticate(&self, request: PasswordRequest) -> Result<Identity, ProviderError> {
        let login = request.username.trim();
        if login.is_empty() {
            return Err(self.refuse(login, Refusal::EmptyUsername));
        }
        // An empty password is an unauthenticated bind, which many servers accept.
        if request.password.expose().is_empty() {
            return Err(self.refuse(login, Refusal::EmptyPassword));
        }
        let profile = match (&self.settings.lookup, &self.service) {
            (UserLookup::Search { .. }, Some(service)) => {
                self.login_by_search(service, login, &request.password)
                    .await?
            }
            (UserLookup::Search { .. }, None) => {
                return Err(ProviderError::Misconfigured {
                    detail: format!("providers.{}: user_search needs a service account", self.id),
                });
            }
            (UserLookup::Direct { template }, _) => {
                let dn = template.render(Values {
                    username: login,
                    dn: "",
                });
                self.login_by_dn(&dn, login, &request.password).await?
            }
        };
        if profile.disabled {
            return Err(self.refuse(login, Refusal::AccountDisabled));
        }
        if !self.in_required_group(&profile) {
            return Err(self.refuse(login, Refusal::NotInRequiredGroup));
        }
        tracing::info!(provider = %self.id, username = login, dn = %profile.dn, groups = profile.groups.len(), "LDAP login");
        Ok(self.identity(profile, login))
    }
}

#[async_trait]
impl RefreshIdentity for LdapProvider {
    async fn refresh(&self, request: RefreshRequest) -> Result<Identity, ProviderError> {
        let Some(service) = &self.service else {
            return Err(ProviderError::Unsupported {
                capability: "refresh".into(),
            });
        };
        let previous = request.identity;
        let data: RefreshData = match previous.provider_data.clone().map(serde_json::from_value) {
            Some(Ok(data)) => data,
            _ => {
                return Err(self.deny(
                    &previous.subject,
                    "the directory account cannot be re-checked; sign in again",
                ));
            }
        };
        let Some(entry) = self.reread(service, &data).await? else {
            return Err(self.deny(&previous.subject, "the directory account no longer exists"));
        };
        let profile = self
            .profile(&mut Reader::Service(service), entry, &data.login)
            .await?;
        if profile.subject != previous.subject {
            tracing::warn!(provider = %self.id, old = %previous.subject, new = %profile.subject, "LDAP login now belongs to another entry");
            return Err(self.deny(&previous.subject, "the directory account no longer exists"));
        }
        if profile.disabled {
            return Err(self.deny(&previous.subject, "account disabled"));
        }
        if !self.in_required_group(&profile) {
            return Err(self.deny(
                &previous.subject,
                "no longer a member of the group required to log in",
            ));
        }
        Ok(self.identity(profile, &data.login))
    }
}
