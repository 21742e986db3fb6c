//! The status of a token this broker issued, whichever kind it is: what introspection
//! (RFC 7662) may tell a client about it, and what revocation (RFC 7009) ends.
//!
//! - A `token_type_hint` only decides which kind is looked for first; the other kind is
//!   always looked for too, so a wrong hint never hides a token.
//! - A refresh token is live while it is unspent (a rotated token is dead, whatever
//!   the reuse grace), before its own expiry, and while its grant and user are.
//! - An access token is live while its signature and expiry hold, its `jti` is not
//!   denied, and (for a person's token) its grant and user are.
//! - Only the client a refresh token was issued to may introspect or revoke it. An
//!   access token may be revoked by its own client only, and introspected by the
//!   clients its `introspection` policy admits.
//! - An API key (`sbk_…`, see [`crate::identity::api_keys`]) is issued to no client:
//!   apps verify keys by introspection, so any confidential client may introspect
//!   one, and whoever presents a key's whole secret may revoke it.
//!
//! What is learnt about a live access token is kept for a few seconds (see
//! [`super::live`]): a revocation on this process holds at once, on other replicas as
//! soon as the store's change feed tells them, and at worst after the cache's lifetime.
//! Refresh tokens and API keys are read from the store every time.

use super::jwt::JwtError;
use super::keyring::KeyringError;
use super::live::{LiveAccess, LiveTokenCache};
use super::{AccessTokenClaims, TokenSigner};
use crate::config::{Client, Config, IntrospectionPolicy};
use crate::identity::IdentityError;
use crate::identity::api_keys::{self, Verified};
use crate::roles::{Access, RolePolicy};
use crate::secrets;
use crate::store::{
    GrantRecord, RefreshTokenRecord, SharedStore, StoreError, UnixTime, UserRecord, UserStatus,
};
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The signing keys could not be read to verify an access token.
    #[error("reading the signing keys failed: {0}")]
    Keys(#[source] KeyringError),
    /// Checking or revoking an API key failed.
    #[error("API key: {0}")]
    ApiKey(#[from] IdentityError),
    /// The roles or groups of a token's person could not be read.
    #[error("reading the person's roles and groups failed: {0}")]
    Person(#[source] IdentityError),
}

/// The two kinds of token a client can present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    /// The kind a `token_type_hint` names; `None` for no hint or one this server does
    /// not know (ignored, as RFC 7009 §2.1 and RFC 7662 §2.1 allow).
    pub fn from_hint(hint: Option<&str>) -> Option<Self> {
        match hint? {
            "access_token" => Some(TokenKind::Access),
            "refresh_token" => Some(TokenKind::Refresh),
            _ => None,
        }
    }
}

/// The order in which the kinds are looked for: the hinted kind first, else the one
/// the token looks like (our access tokens are JWTs, with two dots; refresh tokens are
/// plain base64url). Both kinds, always.
fn search_order(token: &str, hint: Option<TokenKind>) -> [TokenKind; 2] {
    let shaped = if token.matches('.').count() == 2 {
        TokenKind::Access
    } else {
        TokenKind::Refresh
    };
    match hint.unwrap_or(shaped) {
        TokenKind::Access => [TokenKind::Access, TokenKind::Refresh],
        TokenKind::Refresh => [TokenKind::Refresh, TokenKind::Access],
    }
}

/// A token this broker issued, found whatever its state.
#[derive(Debug)]
enum Found {
    /// Signature, issuer, type and expiry verified; nothing else checked yet.
    Access(AccessTokenClaims),
    /// As stored: possibly spent or expired, its grant possibly revoked.
    Refresh {
        token: RefreshTokenRecord,
        grant: GrantRecord,
    },
}

/// The live grant of a person and the person, active, as tokens show them now.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub grant: GrantRecord,
    /// With their managed groups when the grant has the `groups` scope.
    pub user: UserRecord,
    /// Their roles and permissions, when the grant's scopes ask for them.
    pub access: Option<Access>,
}

/// A live token, as far as the asking client may be told.
#[derive(Debug)]
pub enum ActiveToken {
    Access(Arc<LiveAccess>),
    /// `token.expires_at` is when it stops working: its own expiry, or its grant's if
    /// that comes first.
    Refresh {
        token: RefreshTokenRecord,
        person: Box<Person>,
    },
}

/// What a revocation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// A refresh token: its whole grant (every refresh and access token of it).
    Grant { grant_id: String },
    /// An access token, denied until its expiry; a person's token also ended its grant.
    AccessToken {
        jti: String,
        grant_id: Option<String>,
    },
    /// An API key, at once: every later use of it is refused.
    ApiKey { key_id: String, user_id: String },
    /// Unknown, or another client's: nothing changed (the answer is the same 200).
    Nothing,
}

/// Whether `client` may be told about the access token `claims`. The client the token
/// was issued to always may; others as their `introspection` policy says:
/// `own_audience` admits tokens whose `aud` names the client's id or its configured
/// `audience`, `all` admits every access token.
pub fn may_introspect(client: &Client, claims: &AccessTokenClaims) -> bool {
    if claims.client_id == client.id {
        return true;
    }
    match client.introspection {
        IntrospectionPolicy::All => true,
        IntrospectionPolicy::OwnAudience => claims
            .audiences()
            .any(|aud| aud == client.id || client.audience.as_deref() == Some(aud)),
    }
}

/// What status checks read: the store, the signing keys, the role rules, what was
/// learnt lately, and the time of asking.
#[derive(Debug, Clone, Copy)]
pub struct TokenStatus<'a> {
    pub store: &'a SharedStore,
    pub signer: &'a TokenSigner,
    pub policy: &'a RolePolicy,
    pub live: &'a LiveTokenCache,
    pub now: UnixTime,
}

impl TokenStatus<'_> {
    /// What introspection tells `client` about `token`: `None` (inactive) for anything
    /// unknown, expired, spent, revoked, of a disabled user, or that `client` may not
    /// see; the same `None` in every case, so the answer tells nothing more.
    pub async fn introspect(
        &self,
        client: &Client,
        token: &str,
        hint: Option<TokenKind>,
    ) -> Result<Option<ActiveToken>, StatusError> {
        if let Some(live) = self.live.get(token, self.now) {
            return Ok(may_introspect(client, &live.claims).then_some(ActiveToken::Access(live)));
        }
        let epoch = self.live.epoch();
        match self.find(token, hint).await? {
            None => Ok(None),
            Some(Found::Access(claims)) if may_introspect(client, &claims) => {
                self.live_access(token, epoch, claims).await
            }
            Some(Found::Access(_)) => Ok(None),
            Some(Found::Refresh { token, grant }) if grant.client_id == client.id => {
                if token.is_ended() || token.expires_at <= self.now {
                    return Ok(None);
                }
                Ok(self.live_person(grant).await?.map(|person| {
                    // Issued capped by the grant's end; kept so, should the grant shrink.
                    let expires_at = token.expires_at.min(person.grant.expires_at);
                    ActiveToken::Refresh {
                        token: RefreshTokenRecord {
                            expires_at,
                            ..token
                        },
                        person: Box::new(person),
                    }
                }))
            }
            Some(Found::Refresh { .. }) => Ok(None),
        }
    }

    /// A live access token of this broker, presented as a bearer credential (to an
    /// API of the broker itself): `None` for anything else, refresh tokens included.
    pub async fn live_access_token(&self, token: &str) -> Result<Option<ActiveToken>, StatusError> {
        if let Some(live) = self.live.get(token, self.now) {
            return Ok(Some(ActiveToken::Access(live)));
        }
        let epoch = self.live.epoch();
        match self.verified_access(token).await? {
            Some(claims) => self.live_access(token, epoch, claims).await,
            None => Ok(None),
        }
    }

    /// What introspection tells any confidential client about the API key `secret`
    /// presented from `ip` (see [`api_keys::verify_api_key`]: throttled per address,
    /// live or not, and what it holds now).
    pub async fn introspect_api_key(
        &self,
        config: &Config,
        secret: &str,
        ip: Option<IpAddr>,
    ) -> Result<Verified, StatusError> {
        Ok(api_keys::verify_api_key(self.store, config, secret, ip, self.now).await?)
    }

    /// Revokes `token` if it was issued to `client`. A refresh token (current or
    /// already rotated) ends its grant. An access token is denied by `jti` until its
    /// expiry, and a person's access token also ends its grant. An API key is revoked
    /// by any client that presents its secret (audited as that client's doing).
    pub async fn revoke(
        &self,
        client: &Client,
        token: &str,
        hint: Option<TokenKind>,
    ) -> Result<Revoked, StatusError> {
        if api_keys::is_api_key(token) {
            let actor = format!("client:{}", client.id);
            if let Some(key) =
                api_keys::revoke_by_secret(self.store, token, &actor, self.now).await?
            {
                return Ok(Revoked::ApiKey {
                    key_id: key.id,
                    user_id: key.user_id,
                });
            }
        }
        // Not a key (a refresh token may start with `sbk_` by chance): look further.
        match self.find(token, hint).await? {
            Some(Found::Refresh { grant, .. }) if grant.client_id == client.id => {
                self.store.revoke_grant(&grant.id, self.now).await?;
                Ok(Revoked::Grant { grant_id: grant.id })
            }
            Some(Found::Access(claims)) if claims.client_id == client.id => {
                self.store
                    .deny_access_token(&claims.jti, claims.exp, self.now)
                    .await?;
                // An exchanged token's grant is another client's login: only the
                // token itself ends.
                let grant_id = claims.gid.filter(|_| claims.act.is_none());
                if let Some(grant_id) = &grant_id {
                    self.store.revoke_grant(grant_id, self.now).await?;
                }
                Ok(Revoked::AccessToken {
                    jti: claims.jti,
                    grant_id,
                })
            }
            _ => Ok(Revoked::Nothing),
        }
    }

    /// Looks for `token` as each kind in turn, the hinted kind first.
    async fn find(
        &self,
        token: &str,
        hint: Option<TokenKind>,
    ) -> Result<Option<Found>, StatusError> {
        for kind in search_order(token, hint) {
            let found = match kind {
                TokenKind::Access => self.verified_access(token).await?.map(Found::Access),
                TokenKind::Refresh => self.stored_refresh(token).await?,
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The claims of an access token of ours (signature, type, issuer, expiry), or
    /// `None` for anything else; only a failure to read the keys is an error.
    async fn verified_access(&self, token: &str) -> Result<Option<AccessTokenClaims>, StatusError> {
        match self.signer.verify_access_token(token).await {
            // The broker's own clock decides too: a token is dead at its `exp`.
            Ok(claims) if claims.exp > self.now => Ok(Some(claims)),
            Ok(_) => Ok(None),
            Err(JwtError::Keyring(e)) => Err(StatusError::Keys(e)),
            Err(_) => Ok(None),
        }
    }

    async fn stored_refresh(&self, token: &str) -> Result<Option<Found>, StatusError> {
        let hash = secrets::hash_secret(token);
        let Some(record) = self.store.get_refresh_token(&hash).await? else {
            return Ok(None);
        };
        let grant = self.store.get_grant(&record.grant_id).await?;
        Ok(grant.map(|grant| Found::Refresh {
            token: record,
            grant,
        }))
    }

    /// The access token if it is live: not denied, and a person's grant and user live;
    /// kept as read in `epoch`.
    async fn live_access(
        &self,
        token: &str,
        epoch: u64,
        claims: AccessTokenClaims,
    ) -> Result<Option<ActiveToken>, StatusError> {
        if self.store.access_token_denied(&claims.jti).await? {
            return Ok(None);
        }
        let person = match &claims.gid {
            None => None,
            Some(grant_id) => {
                let Some(grant) = self.store.get_grant(grant_id).await? else {
                    return Ok(None);
                };
                // An exchanged token is issued to the client that acts for the person,
                // not to the grant's own client.
                let issued_to_grant_client = grant.client_id == claims.client_id
                    || claims
                        .act
                        .as_ref()
                        .is_some_and(|actor| actor.sub == claims.client_id);
                if grant.user_id != claims.sub || !issued_to_grant_client {
                    return Ok(None);
                }
                match self.live_person(grant).await? {
                    Some(person) => Some(person),
                    None => return Ok(None),
                }
            }
        };
        let live = Arc::new(LiveAccess { claims, person });
        self.live.keep(token, epoch, self.now, live.clone());
        Ok(Some(ActiveToken::Access(live)))
    }

    /// The grant and its user, if the grant is neither revoked nor expired and the
    /// user is active, with what the grant's scopes show of them.
    async fn live_person(&self, grant: GrantRecord) -> Result<Option<Person>, StatusError> {
        if grant.revoked_at.is_some() || grant.expires_at <= self.now {
            return Ok(None);
        }
        let Some(user) = self
            .store
            .get_user(&grant.user_id)
            .await?
            .filter(|u| u.status == UserStatus::Active)
        else {
            return Ok(None);
        };
        let user = crate::identity::with_managed_groups(self.store, user, &grant.scopes)
            .await
            .map_err(StatusError::Person)?;
        let access = crate::identity::grant_access(self.store, self.policy, &grant)
            .await
            .map_err(StatusError::Person)?;
        Ok(Some(Person {
            grant,
            user,
            access,
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed step should fail the test loudly
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::config::{ClientAuth, Lifetimes, SigningAlg};
    use crate::secrets::{MasterKey, SecretString};
    use crate::store::{ChangeEpoch, CodeRecord, MemoryStore, WatchedStore};
    use crate::tokens::PersonClaims;
    use crate::tokens::keyring::{Keyring, RotationPolicy};
    use std::collections::BTreeSet;
    use std::sync::Arc;

    fn client(id: &str, audience: Option<&str>, introspection: IntrospectionPolicy) -> Client {
        Client {
            id: id.into(),
            name: id.into(),
            auth: ClientAuth::Secret(SecretString::new("s3cret-long".into())),
            redirect_uris: vec![],
            scopes: BTreeSet::new(),
            grants: BTreeSet::new(),
            cors_origins: BTreeSet::new(),
            id_token_alg: SigningAlg::Es256,
            audience: audience.map(str::to_string),
            resources: BTreeSet::new(),
            lifetimes: Lifetimes {
                access_token: 600,
                id_token: 600,
                refresh_token_idle: 3600,
                refresh_token_absolute: 7200,
            },
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            backchannel_logout_session_required: false,
            introspection,
            exchange_audiences: BTreeSet::new(),
            require_pkce: true,
            require_mfa: false,
        }
    }

    fn claims(client_id: &str, aud: &str) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://id.example".into(),
            sub: client_id.into(),
            aud: aud.into(),
            client_id: client_id.into(),
            scope: String::new(),
            iat: 0,
            exp: 600,
            jti: "jti-1".into(),
            auth_time: None,
            gid: None,
            act: None,
            amr: Vec::new(),
            acr: None,
            person: PersonClaims::default(),
        }
    }

    #[test]
    fn the_hint_orders_the_search_and_never_shortens_it() {
        use TokenKind::{Access, Refresh};
        assert_eq!(search_order("a.b.c", None), [Access, Refresh]);
        assert_eq!(search_order("opaque", None), [Refresh, Access]);
        assert_eq!(search_order("a.b.c", Some(Refresh)), [Refresh, Access]);
        assert_eq!(search_order("opaque", Some(Access)), [Access, Refresh]);
        assert_eq!(TokenKind::from_hint(Some("refresh_token")), Some(Refresh));
        assert_eq!(TokenKind::from_hint(Some("access_token")), Some(Access));
        assert_eq!(TokenKind::from_hint(Some("id_token")), None, "ignored");
        assert_eq!(TokenKind::from_hint(None), None);
    }

    #[test]
    fn own_audience_admits_the_issued_client_and_the_named_audiences_only() {
        let own = IntrospectionPolicy::OwnAudience;
        let token = claims("web", "https://api.example");
        assert!(may_introspect(&client("web", None, own), &token), "its own");
        assert!(may_introspect(
            &client("rs", Some("https://api.example"), own),
            &token
        ));
        assert!(!may_introspect(&client("other", None, own), &token));
        assert!(!may_introspect(
            &client("other", Some("https://other.example"), own),
            &token
        ));
        assert!(may_introspect(
            &client("rs", None, own),
            &claims("web", "rs")
        ));
        assert!(may_introspect(
            &client("other", None, IntrospectionPolicy::All),
            &token
        ));
    }

    /// A broker's worth of token machinery on the memory store, at the real time
    /// (JWT expiry is checked against the system clock).
    struct Fixture {
        store: SharedStore,
        signer: TokenSigner,
        policy: RolePolicy,
        live: LiveTokenCache,
        now: UnixTime,
    }

    impl Fixture {
        async fn new() -> Self {
            let epoch = Arc::new(ChangeEpoch::default());
            let store: SharedStore = Arc::new(WatchedStore::new(
                Arc::new(MemoryStore::new()),
                epoch.clone(),
                Arc::default(),
            ));
            let clock = ManualClock::at(crate::clock::SystemClock.now());
            let keyring = Keyring::open(
                store.clone(),
                Arc::new(MasterKey::from_bytes(&[7u8; 32]).unwrap()),
                clock.clone(),
                RotationPolicy {
                    period: 86_400,
                    prepublish: 600,
                    retain: 3600,
                },
                [SigningAlg::Es256].into_iter().collect(),
            )
            .await
            .unwrap();
            Fixture {
                store,
                signer: TokenSigner {
                    issuer: "https://id.example".into(),
                    keyring,
                    metrics: Arc::default(),
                },
                policy: RolePolicy::default(),
                live: LiveTokenCache::new(epoch, 60, 100),
                now: clock.now(),
            }
        }

        fn status(&self) -> TokenStatus<'_> {
            TokenStatus {
                store: &self.store,
                signer: &self.signer,
                policy: &self.policy,
                live: &self.live,
                now: self.now,
            }
        }

        /// A person's grant `g1` for `web`, with refresh token `rt-1`.
        async fn person_grant(&self) -> GrantRecord {
            let grant = GrantRecord {
                id: "g1".into(),
                user_id: "u1".into(),
                client_id: "web".into(),
                session_id_hash: None,
                scopes: vec!["openid".into()],
                auth_time: self.now,
                provider_id: "local".into(),
                created_at: self.now,
                expires_at: self.now + 7200,
                revoked_at: None,
                resource: None,
                amr: vec!["pwd".into()],
            };
            self.store
                .create_user(&crate::store::UserRecord {
                    id: "u1".into(),
                    username: Some("ada".into()),
                    email: None,
                    email_verified: false,
                    name: None,
                    given_name: None,
                    family_name: None,
                    picture: None,
                    groups: vec![],
                    status: UserStatus::Active,
                    password_hash: None,
                    created_at: self.now,
                    updated_at: self.now,
                    last_login_at: None,
                    revision: 1,
                })
                .await
                .unwrap();
            let code = CodeRecord {
                code_hash: "c1".into(),
                grant_id: "g1".into(),
                client_id: "web".into(),
                redirect_uri: "https://web.example/cb".into(),
                code_challenge: None,
                nonce: None,
                created_at: self.now,
                expires_at: self.now + 60,
            };
            self.store
                .create_grant_with_code(&grant, &code)
                .await
                .unwrap();
            self.store
                .put_refresh_token(
                    &secrets::hash_secret("rt-1"),
                    "g1",
                    self.now + 3600,
                    self.now,
                )
                .await
                .unwrap();
            grant
        }
    }

    fn web() -> Client {
        client("web", None, IntrospectionPolicy::OwnAudience)
    }

    #[tokio::test]
    async fn a_spent_refresh_token_is_inactive_and_a_live_one_has_its_own_expiry() {
        let f = Fixture::new().await;
        f.person_grant().await;
        let live = f.status().introspect(&web(), "rt-1", None).await.unwrap();
        let Some(ActiveToken::Refresh { token, person }) = live else {
            panic!("live refresh token expected, got {live:?}");
        };
        assert_eq!(token.expires_at, f.now + 3600, "not the grant's expiry");
        assert_eq!(token.created_at, f.now);
        assert_eq!(person.user.id, "u1");

        f.store
            .rotate_refresh(
                &secrets::hash_secret("rt-1"),
                &secrets::hash_secret("rt-2"),
                f.now + 3600,
                f.now,
                30,
            )
            .await
            .unwrap();
        assert!(
            f.status()
                .introspect(&web(), "rt-1", None)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            f.status()
                .introspect(&web(), "rt-2", Some(TokenKind::Access))
                .await
                .unwrap()
                .is_some(),
            "found despite the wrong hint"
        );
    }

    #[tokio::test]
    async fn another_clients_refresh_token_is_neither_shown_nor_revoked() {
        let f = Fixture::new().await;
        f.person_grant().await;
        let trusted = client("rs", None, IntrospectionPolicy::All);
        assert!(
            f.status()
                .introspect(&trusted, "rt-1", None)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            f.status().revoke(&trusted, "rt-1", None).await.unwrap(),
            Revoked::Nothing
        );
        assert_eq!(
            f.store.get_grant("g1").await.unwrap().unwrap().revoked_at,
            None
        );
        assert_eq!(
            f.status().revoke(&web(), "rt-1", None).await.unwrap(),
            Revoked::Grant {
                grant_id: "g1".into()
            }
        );
        assert!(
            f.store
                .get_grant("g1")
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
    }

    #[tokio::test]
    async fn a_revoked_client_access_token_is_denied_until_its_expiry() {
        let f = Fixture::new().await;
        let web = web();
        let signed = f
            .signer
            .client_access_token(&web, &[], "https://api.example", Default::default(), f.now)
            .unwrap();
        let token = signed.token.as_str();
        assert!(
            f.status()
                .introspect(&web, token, Some(TokenKind::Refresh))
                .await
                .unwrap()
                .is_some()
        );

        let other = client("other", None, IntrospectionPolicy::All);
        assert_eq!(
            f.status().revoke(&other, token, None).await.unwrap(),
            Revoked::Nothing,
            "only its own client revokes it"
        );
        let Revoked::AccessToken { jti, grant_id } =
            f.status().revoke(&web, token, None).await.unwrap()
        else {
            panic!("the access token should be revoked");
        };
        assert_eq!(grant_id, None);
        assert!(f.store.access_token_denied(&jti).await.unwrap());
        for asker in [&web, &other] {
            assert!(
                f.status()
                    .introspect(asker, token, None)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        // The denial lasts exactly until the token's own expiry.
        f.store.purge_expired(f.now + 599).await.unwrap();
        assert!(f.store.access_token_denied(&jti).await.unwrap());
        f.store.purge_expired(f.now + 600).await.unwrap();
        assert!(!f.store.access_token_denied(&jti).await.unwrap());
    }

    #[tokio::test]
    async fn revoking_a_persons_access_token_ends_its_grant() {
        let f = Fixture::new().await;
        let grant = f.person_grant().await;
        let web = web();
        let signed = f
            .signer
            .access_token(
                &web,
                &grant,
                "https://id.example",
                PersonClaims::default(),
                f.now,
            )
            .unwrap();
        let Revoked::AccessToken { grant_id, .. } = f
            .status()
            .revoke(&web, &signed.token, Some(TokenKind::Refresh))
            .await
            .unwrap()
        else {
            panic!("the access token should be revoked");
        };
        assert_eq!(grant_id.as_deref(), Some("g1"));
        assert!(
            f.store
                .get_grant("g1")
                .await
                .unwrap()
                .unwrap()
                .revoked_at
                .is_some()
        );
        assert!(
            f.status()
                .introspect(&web, "rt-1", None)
                .await
                .unwrap()
                .is_none(),
            "the refresh token died with the grant"
        );
    }

    /// A token is dead at its `exp`, by the broker's clock and by the JWT check alike.
    #[tokio::test]
    async fn an_access_token_is_refused_from_the_second_of_its_expiry() {
        let f = Fixture::new().await;
        let web = web();
        let signed = f
            .signer
            .client_access_token(&web, &[], "https://api.example", Default::default(), f.now)
            .unwrap();
        let exp = f.now + 600;
        let at = |now: UnixTime| TokenStatus { now, ..f.status() };
        assert!(
            at(exp - 1)
                .live_access_token(&signed.token)
                .await
                .unwrap()
                .is_some(),
            "live one second before"
        );
        let fresh = LiveTokenCache::new(Arc::default(), 0, 10);
        let at_exp = TokenStatus {
            live: &fresh,
            ..at(exp)
        };
        assert!(
            at_exp
                .live_access_token(&signed.token)
                .await
                .unwrap()
                .is_none(),
            "exp == now is expired"
        );
        assert!(
            at_exp
                .introspect(&web, &signed.token, None)
                .await
                .unwrap()
                .is_none()
        );
        // Signed so that `exp` is the system clock's now (or just past): jsonwebtoken
        // alone would still accept it.
        let ending = f
            .signer
            .client_access_token(
                &web,
                &[],
                "https://api.example",
                Default::default(),
                f.now - 600,
            )
            .unwrap();
        let unaware = TokenStatus {
            live: &fresh,
            ..at(f.now - 1)
        };
        assert!(
            unaware
                .live_access_token(&ending.token)
                .await
                .unwrap()
                .is_none(),
            "exp == the system clock's now is expired too"
        );
    }
}
