//! Tokens Switchboard signs: ID tokens (OIDC Core) and JWT access tokens (RFC 9068).

pub mod amr;
pub mod jwt;
pub mod keyring;
pub mod keys;
pub mod live;
pub mod status;

use crate::config::{Client, SigningAlg};
use crate::roles::Access;
use crate::store::{GrantRecord, UnixTime, UserRecord};
use jwt::JwtError;
use keyring::Keyring;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
pub const ID_TOKEN_TYP: &str = "JWT";

/// Profile claims, included according to the granted scopes.
#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq)]
pub struct ProfileClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

impl ProfileClaims {
    pub fn for_scopes(user: &UserRecord, scopes: &[String]) -> Self {
        let has = |s: &str| scopes.iter().any(|x| x == s);
        let mut c = ProfileClaims::default();
        if has("email") {
            c.email = user.email.clone();
            c.email_verified = user.email.as_ref().map(|_| user.email_verified);
        }
        if has("profile") {
            c.name = user.name.clone();
            c.given_name = user.given_name.clone();
            c.family_name = user.family_name.clone();
            c.preferred_username = user.username.clone().or_else(|| user.email.clone());
            c.picture = user.picture.clone();
        }
        if has("groups") {
            c.groups = Some(user.groups.clone());
        }
        c
    }
}

/// Roles (scope `roles`) and permissions (scope `permissions`): the global ones and
/// the requesting client's own, never another client's.
#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq)]
pub struct RoleClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
}

impl RoleClaims {
    /// `access` is the user's access toward the client (absent when no scope asks).
    pub fn for_scopes(access: Option<&Access>, scopes: &[String]) -> Self {
        let has = |s: &str| scopes.iter().any(|x| x == s);
        let Some(access) = access else {
            return RoleClaims::default();
        };
        RoleClaims {
            roles: has("roles").then(|| access.roles.clone()),
            permissions: has("permissions").then(|| access.permissions.clone()),
        }
    }
}

/// What an access token says about the person beyond `sub`, by scope.
#[derive(Debug, Default, Serialize, Deserialize, Clone, PartialEq)]
pub struct PersonClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(flatten)]
    pub roles: RoleClaims,
}

impl PersonClaims {
    pub fn for_scopes(user: &UserRecord, access: Option<&Access>, scopes: &[String]) -> Self {
        PersonClaims {
            groups: scopes
                .iter()
                .any(|s| s == "groups")
                .then(|| user.groups.clone()),
            roles: RoleClaims::for_scopes(access, scopes),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub azp: String,
    pub exp: UnixTime,
    pub iat: UnixTime,
    pub auth_time: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// How the person authenticated (RFC 8176); absent for sessions from before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// [`amr::ACR_PWD`] or [`amr::ACR_MFA`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(flatten)]
    pub profile: ProfileClaims,
    #[serde(flatten)]
    pub roles: RoleClaims,
}

#[derive(Debug, Serialize, Deserialize, Clone)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub iat: UnixTime,
    pub exp: UnixTime,
    pub jti: String,
    /// Absent on client-credentials tokens (no person logged in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<UnixTime>,
    /// The grant this token belongs to: revoking the grant revokes the token. Absent on
    /// client-credentials tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// On a token made by token exchange (RFC 8693 §4.1): the client that exchanged a
    /// person's token for it, acting for them. Absent on every other token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// How the person authenticated (RFC 9068 §2.2.1, as in the ID token); absent on
    /// client-credentials tokens.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    /// Groups, roles and permissions, by scope (none on client-credentials tokens).
    #[serde(flatten)]
    pub person: PersonClaims,
}

/// The `act` claim (RFC 8693 §4.1): who acts for the token's subject.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The client id of the acting client.
    pub sub: String,
}

impl AccessTokenClaims {
    /// The audiences the token is for (`aud`).
    pub fn audiences(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.aud.as_str())
    }
}

/// Signs tokens for one issuer.
#[derive(Debug, Clone)]
pub struct TokenSigner {
    pub issuer: String,
    pub keyring: Arc<Keyring>,
    /// Counts what is signed, by kind and algorithm.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// What the token endpoint hands back.
#[derive(Debug)]
pub struct SignedAccessToken {
    pub token: String,
    pub expires_in: i64,
}

impl TokenSigner {
    pub fn access_token(
        &self,
        client: &Client,
        grant: &GrantRecord,
        audience: &str,
        person: PersonClaims,
        now: UnixTime,
    ) -> Result<SignedAccessToken, JwtError> {
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: grant.user_id.clone(),
            aud: audience.to_string(),
            client_id: client.id.clone(),
            scope: grant.scopes.join(" "),
            iat: now,
            exp: now + client.lifetimes.access_token,
            jti: crate::secrets::random_id().map_err(|e| JwtError::Invalid(e.to_string()))?,
            auth_time: Some(grant.auth_time),
            gid: Some(grant.id.clone()),
            act: None,
            amr: grant.amr.clone(),
            acr: Some(amr::acr_for(&grant.amr).to_string()),
            person,
        };
        self.sign_access(client, claims)
    }

    /// An access token for the client itself (client-credentials grant): `sub` is the
    /// client id.
    pub fn client_access_token(
        &self,
        client: &Client,
        scopes: &[String],
        audience: &str,
        roles: RoleClaims,
        now: UnixTime,
    ) -> Result<SignedAccessToken, JwtError> {
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: client.id.clone(),
            aud: audience.to_string(),
            client_id: client.id.clone(),
            scope: scopes.join(" "),
            iat: now,
            exp: now + client.lifetimes.access_token,
            jti: crate::secrets::random_id().map_err(|e| JwtError::Invalid(e.to_string()))?,
            auth_time: None,
            gid: None,
            act: None,
            amr: Vec::new(),
            acr: None,
            person: PersonClaims {
                groups: None,
                roles,
            },
        };
        self.sign_access(client, claims)
    }

    /// A token made by token exchange: the person and grant of the subject token, for
    /// `audience` alone, with `scopes` (already narrowed), issued to `client`, which
    /// `act`s for the person; it lives `lifetime` seconds.
    #[allow(clippy::too_many_arguments)]
    pub fn exchanged_access_token(
        &self,
        client: &Client,
        grant: &GrantRecord,
        audience: &str,
        scopes: &[String],
        person: PersonClaims,
        lifetime: i64,
        now: UnixTime,
    ) -> Result<SignedAccessToken, JwtError> {
        let claims = AccessTokenClaims {
            iss: self.issuer.clone(),
            sub: grant.user_id.clone(),
            aud: audience.to_string(),
            client_id: client.id.clone(),
            scope: scopes.join(" "),
            iat: now,
            exp: now + lifetime,
            jti: crate::secrets::random_id().map_err(|e| JwtError::Invalid(e.to_string()))?,
            auth_time: Some(grant.auth_time),
            gid: Some(grant.id.clone()),
            act: Some(Actor {
                sub: client.id.clone(),
            }),
            amr: grant.amr.clone(),
            acr: Some(amr::acr_for(&grant.amr).to_string()),
            person,
        };
        self.sign_access(client, claims)
    }

    fn sign_access(
        &self,
        client: &Client,
        claims: AccessTokenClaims,
    ) -> Result<SignedAccessToken, JwtError> {
        // The client's algorithm: its resource servers are the ones that verify.
        let token = jwt::sign(
            &self.keyring,
            client.id_token_alg,
            ACCESS_TOKEN_TYP,
            &claims,
        )?;
        self.metrics
            .token_signed("access_token", client.id_token_alg.as_str());
        Ok(SignedAccessToken {
            token,
            expires_in: claims.exp - claims.iat,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn id_token(
        &self,
        client: &Client,
        user: &UserRecord,
        grant: &GrantRecord,
        roles: RoleClaims,
        nonce: Option<&str>,
        access_token: &str,
        sid: Option<&str>,
        now: UnixTime,
    ) -> Result<String, JwtError> {
        let alg: SigningAlg = client.id_token_alg;
        let claims = IdTokenClaims {
            iss: self.issuer.clone(),
            sub: user.id.clone(),
            aud: client.id.clone(),
            azp: client.id.clone(),
            exp: now + client.lifetimes.id_token,
            iat: now,
            auth_time: grant.auth_time,
            nonce: nonce.map(str::to_string),
            at_hash: Some(jwt::half_hash(alg, access_token)),
            sid: sid.map(str::to_string),
            amr: grant.amr.clone(),
            acr: Some(amr::acr_for(&grant.amr).to_string()),
            profile: ProfileClaims::for_scopes(user, &grant.scopes),
            roles,
        };
        let token = jwt::sign(&self.keyring, alg, ID_TOKEN_TYP, &claims)?;
        self.metrics.token_signed("id_token", alg.as_str());
        Ok(token)
    }

    pub async fn verify_access_token(&self, token: &str) -> Result<AccessTokenClaims, JwtError> {
        jwt::verify(&self.keyring, &self.issuer, ACCESS_TOKEN_TYP, token).await
    }
}
