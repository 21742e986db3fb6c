//! Connections to the directory: opening one (TCP, `ldaps://` or StartTLS) within the
//! connect timeout, operations each bounded by the operation timeout, and the service
//! account's connection, reused across logins and reopened when it breaks.
//!
//! A person's own bind always happens on a fresh connection of its own: a bind changes
//! who a connection acts as, so it must never touch the shared service connection.

use crate::entry::Entry;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchOptions};
use rustls::ClientConfig;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use switchboard_plugin_api::Password;
use tokio::sync::Mutex;
use tokio::time::timeout;

/// LDAP result code `sizeLimitExceeded`.
const SIZE_LIMIT_EXCEEDED: u32 = 4;

/// Result codes of a refused bind that mean "not these credentials" rather than "the
/// server has a problem": invalidCredentials, inappropriateAuthentication,
/// insufficientAccessRights, unwillingToPerform, noSuchObject, invalidDNSyntax.
pub const BIND_REFUSED: &[u32] = &[49, 48, 50, 53, 32, 34];

/// Why an operation on the directory failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdapFailure {
    /// The server did not answer in time.
    #[error("{op}: no answer within {after:?}")]
    Timeout {
        /// What was attempted.
        op: &'static str,
        /// The timeout that ran out.
        after: Duration,
    },
    /// The connection could not be opened (TCP, TLS, StartTLS) or broke.
    #[error("{op}: {detail}")]
    Connection {
        /// What was attempted.
        op: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// The server answered with an error result code.
    #[error("{op}: result code {rc} ({text})")]
    Result {
        /// What was attempted.
        op: &'static str,
        /// The LDAP result code.
        rc: u32,
        /// The server's diagnostic message.
        text: String,
    },
    /// The server refused the service account's bind.
    #[error("service account bind refused: result code {rc} ({text})")]
    ServiceBindRefused {
        /// The LDAP result code.
        rc: u32,
        /// The server's diagnostic message.
        text: String,
    },
    /// The server sent something that is not valid LDAP.
    #[error("{op}: {detail}")]
    Protocol {
        /// What was attempted.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl LdapFailure {
    fn classify(op: &'static str, error: LdapError) -> Self {
        match error {
            LdapError::LdapResult { result } => LdapFailure::Result {
                op,
                rc: result.rc,
                text: result.text,
            },
            LdapError::Io { .. }
            | LdapError::OpSend { .. }
            | LdapError::ResultRecv { .. }
            | LdapError::IdScrubSend { .. }
            | LdapError::MiscSend { .. }
            | LdapError::EndOfStream
            | LdapError::Rustls { .. }
            | LdapError::DNSName { .. }
            | LdapError::Timeout { .. } => LdapFailure::Connection {
                op,
                detail: error.to_string(),
            },
            other => LdapFailure::Protocol {
                op,
                detail: other.to_string(),
            },
        }
    }

    /// Whether the connection the operation ran on is broken.
    fn broke_connection(&self) -> bool {
        matches!(
            self,
            LdapFailure::Connection { .. } | LdapFailure::Timeout { .. }
        )
    }
}

/// Search scope, as the config names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchScope {
    /// The base entry only.
    Base,
    /// The base's immediate children.
    One,
    /// The base and everything below it.
    Sub,
}

impl From<SearchScope> for Scope {
    fn from(scope: SearchScope) -> Self {
        match scope {
            SearchScope::Base => Scope::Base,
            SearchScope::One => Scope::OneLevel,
            SearchScope::Sub => Scope::Subtree,
        }
    }
}

/// One search to run.
#[derive(Debug, Clone, Copy)]
pub struct Search<'a> {
    /// Base DN.
    pub base: &'a str,
    /// Scope.
    pub scope: SearchScope,
    /// Filter, already rendered and escaped.
    pub filter: &'a str,
    /// Attributes to return.
    pub attributes: &'a [&'a str],
    /// Stop after this many entries (0: no limit). A search that hits the limit returns
    /// the entries it has; the caller decides whether that is an error.
    pub size_limit: i32,
}

/// Where and how to connect.
pub struct Connector {
    url: String,
    start_tls: bool,
    tls: Option<Arc<ClientConfig>>,
    connect_timeout: Duration,
    operation_timeout: Duration,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("url", &self.url)
            .field("start_tls", &self.start_tls)
            .field("tls", &self.tls.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl Connector {
    /// `tls` is required for `ldaps://` and StartTLS.
    pub fn new(
        url: String,
        start_tls: bool,
        tls: Option<Arc<ClientConfig>>,
        connect_timeout: Duration,
        operation_timeout: Duration,
    ) -> Self {
        Connector {
            url,
            start_tls,
            tls,
            connect_timeout,
            operation_timeout,
        }
    }

    /// Opens a connection, with TLS or StartTLS as configured, within the connect
    /// timeout. A failed StartTLS is an error: there is no fallback to plain text.
    pub async fn open(&self) -> Result<Session, LdapFailure> {
        let mut settings = LdapConnSettings::new().set_starttls(self.start_tls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = timeout(
            self.connect_timeout,
            LdapConnAsync::with_settings(settings, &self.url),
        )
        .await
        .map_err(|_| LdapFailure::Timeout {
            op: "connect",
            after: self.connect_timeout,
        })?
        .map_err(|e| match LdapFailure::classify("connect", e) {
            // Whatever broke while connecting (a StartTLS refusal included), the
            // connection is unusable.
            LdapFailure::Result { rc, text, .. } => LdapFailure::Connection {
                op: "connect",
                detail: format!("StartTLS refused: result code {rc} ({text})"),
            },
            other => other,
        })?;
        let url = self.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(url = %url, error = %e, "LDAP connection ended");
            }
        });
        Ok(Session {
            ldap,
            operation_timeout: self.operation_timeout,
        })
    }
}

/// An open connection. Dropping every handle to it closes it.
pub struct Session {
    ldap: Ldap,
    operation_timeout: Duration,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// A simple bind. A refused bind is [`LdapFailure::Result`] with the server's code.
    pub async fn bind(&mut self, dn: &str, password: &Password) -> Result<(), LdapFailure> {
        let op = "bind";
        let result = timeout(
            self.operation_timeout,
            self.ldap.simple_bind(dn, password.expose()),
        )
        .await
        .map_err(|_| LdapFailure::Timeout {
            op,
            after: self.operation_timeout,
        })?
        .map_err(|e| LdapFailure::classify(op, e))?;
        if result.rc == 0 {
            Ok(())
        } else {
            Err(LdapFailure::Result {
                op,
                rc: result.rc,
                text: result.text,
            })
        }
    }

    /// Runs one search and parses its entries.
    pub async fn search(&mut self, search: Search<'_>) -> Result<Vec<Entry>, LdapFailure> {
        let op = "search";
        let limit_secs = i32::try_from(self.operation_timeout.as_secs().max(1)).unwrap_or(i32::MAX);
        self.ldap.with_search_options(
            SearchOptions::new()
                .sizelimit(search.size_limit)
                .timelimit(limit_secs),
        );
        let ldap3::SearchResult(raw, result) = timeout(
            self.operation_timeout,
            self.ldap.search(
                search.base,
                search.scope.into(),
                search.filter,
                search.attributes.to_vec(),
            ),
        )
        .await
        .map_err(|_| LdapFailure::Timeout {
            op,
            after: self.operation_timeout,
        })?
        .map_err(|e| LdapFailure::classify(op, e))?;
        let limited = search.size_limit > 0 && result.rc == SIZE_LIMIT_EXCEEDED;
        if result.rc != 0 && !limited {
            return Err(LdapFailure::Result {
                op,
                rc: result.rc,
                text: result.text,
            });
        }
        raw.into_iter()
            .map(|r| Entry::parse(r).map_err(|detail| LdapFailure::Protocol { op, detail }))
            .collect()
    }

    /// Says goodbye politely, without waiting long for it.
    pub async fn close(mut self) {
        let _ = timeout(Duration::from_secs(1), self.ldap.unbind()).await;
    }
}

/// The service account's connection: opened and bound on first use, shared by
/// concurrent logins (LDAP multiplexes operations on one connection), and dropped and
/// reopened once when it turns out to be broken.
pub struct ServiceConnection {
    connector: Arc<Connector>,
    bind_dn: String,
    password: Password,
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    generation: u64,
    ldap: Option<Ldap>,
}

impl fmt::Debug for ServiceConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceConnection")
            .field("bind_dn", &self.bind_dn)
            .finish_non_exhaustive()
    }
}

impl ServiceConnection {
    /// Nothing is opened until the first search.
    pub fn new(connector: Arc<Connector>, bind_dn: String, password: Password) -> Self {
        ServiceConnection {
            connector,
            bind_dn,
            password,
            slot: Mutex::new(Slot::default()),
        }
    }

    /// The cached connection, or a new bound one. The lock is not held while
    /// connecting, so one slow server does not queue every login behind one attempt.
    async fn checkout(&self) -> Result<(u64, Session, bool), LdapFailure> {
        {
            let mut slot = self.slot.lock().await;
            if let Some(ldap) = slot.ldap.as_mut() {
                if !ldap.is_closed() {
                    let session = Session {
                        ldap: ldap.clone(),
                        operation_timeout: self.connector.operation_timeout,
                    };
                    return Ok((slot.generation, session, false));
                }
                slot.ldap = None;
            }
        }
        let mut session = self.connector.open().await?;
        session
            .bind(&self.bind_dn, &self.password)
            .await
            .map_err(|e| match e {
                LdapFailure::Result { rc, text, .. } if BIND_REFUSED.contains(&rc) => {
                    LdapFailure::ServiceBindRefused { rc, text }
                }
                other => other,
            })?;
        tracing::debug!(url = %self.connector.url, "LDAP service connection opened");
        let mut slot = self.slot.lock().await;
        slot.generation += 1;
        slot.ldap = Some(session.ldap.clone());
        Ok((slot.generation, session, true))
    }

    /// Forgets the cached connection if it is still the one that failed.
    async fn discard(&self, generation: u64) {
        let mut slot = self.slot.lock().await;
        if slot.generation == generation {
            slot.ldap = None;
        }
    }

    /// Runs a search as the service account. A reused connection that turns out to be
    /// dead is replaced and the search tried once more; a timeout is not retried.
    pub async fn search(&self, search: Search<'_>) -> Result<Vec<Entry>, LdapFailure> {
        let mut retried = false;
        loop {
            let (generation, mut session, fresh) = self.checkout().await?;
            match session.search(search).await {
                Err(e) if e.broke_connection() => {
                    self.discard(generation).await;
                    let retry = !fresh && !retried && matches!(e, LdapFailure::Connection { .. });
                    if !retry {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, "LDAP service connection broke; reconnecting");
                    retried = true;
                }
                other => return other,
            }
        }
    }
}
