//! Who is calling: what an API learns from a valid access token or API key.

use serde::{Deserialize, Serialize};

/// How the caller proved who they are.
///
/// ```
/// use switchboard_client::{Credential, Principal};
/// # fn handler(caller: &Principal) -> &'static str {
/// match caller.credential {
///     Credential::ApiKey => "called with an API key",
///     _ => "called with an access token",
/// }
/// # }
/// # assert_eq!(handler(&Principal::new("u")), "called with an access token");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Credential {
    /// A JWT access token (RFC 9068), verified by signature.
    AccessToken,
    /// A person's API key (`sbk_…`), verified by introspection.
    ApiKey,
}

/// The caller of an API: a person (or a client acting as itself) with the scopes,
/// roles, permissions and groups their token or key carries.
///
/// Roles, permissions and groups are present only when the token was issued with the
/// scopes `roles`, `permissions` and `groups`; an API that checks permissions needs
/// its clients to ask for `permissions`.
///
/// ```
/// use switchboard_client::Principal;
/// fn may_approve(caller: &Principal) -> bool {
///     caller.has_scope("invoices") && caller.allows("invoices:approve")
/// }
/// let mut ann = Principal::new("user-ann");
/// ann.scopes = vec!["invoices".into()];
/// ann.permissions = vec!["invoices:*".into()];
/// assert!(may_approve(&ann));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Principal {
    /// The stable subject: the user id, or the client id for client credentials.
    pub sub: String,
    /// The client the token was issued to (absent for API keys).
    pub client_id: Option<String>,
    /// Granted scopes (`scope`, space-separated in the token).
    pub scopes: Vec<String>,
    /// Roles toward this client.
    pub roles: Vec<String>,
    /// Permissions, possibly patterns such as `admin:*`.
    pub permissions: Vec<String>,
    /// Groups, namespaced by provider (`local/admins`).
    pub groups: Vec<String>,
    /// When the person logged in (Unix seconds).
    pub auth_time: Option<i64>,
    /// Authentication methods (`amr`), when the token names them.
    pub amr: Vec<String>,
    /// When the token or key expires (Unix seconds).
    pub expires_at: Option<i64>,
    /// The token's `jti` (for an API key, the key's id): not a secret.
    pub token_id: Option<String>,
    /// Access token or API key.
    pub credential: Credential,
}

impl Principal {
    /// Whether one of the caller's permissions allows `permission`, with the grammar
    /// the broker uses (`admin:*` allows `admin:users:delete`).
    ///
    /// ```
    /// # use switchboard_client::Principal;
    /// let mut ann = Principal::new("user-ann");
    /// ann.permissions = vec!["invoices:*".into()];
    /// assert!(ann.allows("invoices:approve"));
    /// assert!(!ann.allows("reports:read"));
    /// ```
    pub fn allows(&self, permission: &str) -> bool {
        switchboard_access::allows_any(&self.permissions, permission)
    }

    /// Whether the token was granted `scope`.
    ///
    /// ```
    /// # use switchboard_client::Principal;
    /// let mut ann = Principal::new("user-ann");
    /// ann.scopes = vec!["openid".into(), "reports".into()];
    /// assert!(ann.has_scope("reports"));
    /// assert!(!ann.has_scope("admin"));
    /// ```
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// A principal with only a subject (an access token's, with nothing granted): for
    /// tests of an app's own handlers.
    ///
    /// ```
    /// use switchboard_client::{Credential, Principal};
    /// let ann = Principal::new("user-ann");
    /// assert_eq!(ann.sub, "user-ann");
    /// assert_eq!(ann.credential, Credential::AccessToken);
    /// assert!(!ann.allows("anything"));
    /// ```
    pub fn new(sub: impl Into<String>) -> Self {
        Principal {
            sub: sub.into(),
            client_id: None,
            scopes: Vec::new(),
            roles: Vec::new(),
            permissions: Vec::new(),
            groups: Vec::new(),
            auth_time: None,
            amr: Vec::new(),
            expires_at: None,
            token_id: None,
            credential: Credential::AccessToken,
        }
    }
}

/// Splits a space-separated `scope` value.
pub(crate) fn scopes_of(scope: Option<&str>) -> Vec<String> {
    scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}
