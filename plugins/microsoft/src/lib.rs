//! Microsoft Entra ID (and personal Microsoft accounts) upstream provider for
//! Switchboard: a preset over `switchboard-oidc` on the v2.0 endpoints.
//!
//! - `tenant`: `common`, `organizations`, `consumers`, a tenant id or a verified
//!   domain; discovery at `{authority}/{tenant}/v2.0/.well-known/openid-configuration`
//!   (`authority` defaults to `https://login.microsoftonline.com`).
//! - Multi-tenant issuer validation: the multi-tenant discovery document names the
//!   issuer `{authority}/{tenantid}/v2.0`; each ID token's `iss` must equal that
//!   template with the token's own `tid` put in, and `tid` must look like a tenant id.
//! - `allowed_tenants` restricts which tenants may log in.
//! - The subject is `tid:oid`: never `sub` alone (pairwise per app) and never the email.
//! - Entra's `email` claim is not proof of ownership ("nOAuth"): it counts as verified
//!   only with `xms_edov = true` (an optional claim the app registration must add).
//!   `preferred_username` is used as the email only with
//!   `preferred_username_as_email = true`, and is never verified.
//! - Groups arrive as object ids; `group_names` maps them to names (unmapped ids stay
//!   ids). A group-overage token (`_claim_names.groups` or `hasgroups`) is refused
//!   rather than silently dropping the person's groups.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use switchboard_oidc::config::{check_prompt, client_secret};
use switchboard_oidc::settings::clean_scopes;
use switchboard_oidc::{
    OfflineAccess, OidcProvider, OidcSettings, TokenEndpointAuth, UnverifiedEmail, UpstreamProfile,
    UserinfoUse,
};
use switchboard_plugin_api::{
    Identity, Password, Provider, ProviderContext, ProviderError, ProviderFactory,
};
use switchboard_upstream::check_upstream_url;

/// The `type` of this provider in config.
pub const PROVIDER_TYPE: &str = "microsoft";

/// The public cloud's login host.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The placeholder in multi-tenant discovery documents.
pub const TENANT_TEMPLATE: &str = "{tenantid}";

fn default_authority() -> String {
    DEFAULT_AUTHORITY.into()
}
fn default_tenant() -> String {
    "common".into()
}
fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "profile".into(), "email".into()]
}

/// The config section of a Microsoft provider.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MicrosoftConfig {
    /// `common`, `organizations`, `consumers`, a tenant id or a tenant's domain.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// Login host (national clouds, tests).
    #[serde(default = "default_authority")]
    pub authority: String,
    /// Application (client) id.
    pub client_id: String,
    /// Client secret, inline.
    #[serde(default)]
    pub client_secret: Option<Password>,
    /// File holding the client secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Scopes (`openid` is always sent).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// `basic` or `post`.
    #[serde(default)]
    pub token_endpoint_auth: TokenEndpointAuth,
    /// Only these tenant ids may log in (empty: any the `tenant` admits).
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    /// Group object id → group name.
    #[serde(default)]
    pub group_names: BTreeMap<String, String>,
    /// Only members of one of these groups (names after mapping, or ids) may log in.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Use `preferred_username` as the (unverified) email when `email` is absent.
    #[serde(default)]
    pub preferred_username_as_email: bool,
    /// Ask for a refresh token (`offline_access`) and re-check at each broker refresh.
    #[serde(default)]
    pub offline_access: bool,
    /// `prompt` to send (`select_account` is useful with `common`).
    #[serde(default)]
    pub prompt: Option<String>,
}

/// True for a tenant id: a GUID (hex and dashes, 36 characters).
pub fn is_tenant_id(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Checks the `tenant` key.
pub fn check_tenant(tenant: &str) -> Result<String, String> {
    let t = tenant.trim();
    let lower = t.to_ascii_lowercase();
    if matches!(lower.as_str(), "common" | "organizations" | "consumers") || is_tenant_id(&lower) {
        return Ok(lower);
    }
    let domain_like = t.contains('.')
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if domain_like {
        Ok(lower)
    } else {
        Err(format!(
            "tenant `{tenant}` must be common, organizations, consumers, a tenant id or a domain"
        ))
    }
}

/// Microsoft's adjustments to the generic flow.
#[derive(Debug, Clone)]
pub struct MicrosoftProfile {
    authority: String,
    tenant: String,
    allowed_tenants: Vec<String>,
    group_names: BTreeMap<String, String>,
    preferred_username_as_email: bool,
}

/// Splits an issuer `{authority}/{segment}/v2.0` into its tenant segment.
fn tenant_segment<'a>(authority: &str, issuer: &'a str) -> Option<&'a str> {
    issuer
        .strip_prefix(authority)?
        .strip_prefix('/')?
        .strip_suffix("/v2.0")
        .filter(|s| !s.is_empty() && !s.contains('/'))
}

fn tid_of(claims: &Map<String, Value>) -> Result<String, String> {
    let tid = claims
        .get("tid")
        .and_then(Value::as_str)
        .ok_or("the token has no tid")?
        .to_ascii_lowercase();
    if is_tenant_id(&tid) {
        Ok(tid)
    } else {
        Err(format!("tid `{tid}` is not a tenant id"))
    }
}

fn is_true(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

impl MicrosoftProfile {
    /// The issuer an ID token from tenant `tid` must carry, given the discovered one.
    pub fn expected_issuer(&self, discovered: &str, tid: &str) -> Result<String, String> {
        let segment = tenant_segment(&self.authority, discovered).ok_or_else(|| {
            format!(
                "discovered issuer `{discovered}` is not under {}",
                self.authority
            )
        })?;
        if segment == TENANT_TEMPLATE {
            return Ok(discovered.replacen(TENANT_TEMPLATE, tid, 1));
        }
        if !segment.eq_ignore_ascii_case(tid) {
            return Err(format!(
                "token tid `{tid}` is not the issuer's tenant `{segment}`"
            ));
        }
        Ok(discovered.to_string())
    }

    /// A token whose groups did not fit: `_claim_names.groups` or `hasgroups`.
    pub fn has_group_overage(claims: &Map<String, Value>) -> bool {
        let names = claims
            .get("_claim_names")
            .and_then(Value::as_object)
            .is_some_and(|n| n.contains_key("groups"));
        names || is_true(claims.get("hasgroups"))
    }

    /// Object ids mapped to names through `group_names` (unmapped ids stay).
    pub fn map_groups(&self, ids: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for id in ids {
            let name = self
                .group_names
                .get(&id.to_ascii_lowercase())
                .cloned()
                .unwrap_or_else(|| id.clone());
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }
}

impl UpstreamProfile for MicrosoftProfile {
    fn accept_discovered_issuer(&self, configured: &str, discovered: &str) -> Result<(), String> {
        let segment = tenant_segment(&self.authority, discovered).ok_or_else(|| {
            format!(
                "the discovery document names issuer `{discovered}`, not one under {} (configured {configured})",
                self.authority
            )
        })?;
        let segment = segment.to_ascii_lowercase();
        let multi = matches!(self.tenant.as_str(), "common" | "organizations");
        let ok = if segment == TENANT_TEMPLATE {
            multi
        } else if is_tenant_id(&self.tenant) {
            segment == self.tenant
        } else {
            // consumers or a domain: the document names the concrete tenant id.
            is_tenant_id(&segment)
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "the discovery document names issuer `{discovered}`, which does not fit tenant `{}`",
                self.tenant
            ))
        }
    }

    fn exact_token_issuer(&self) -> bool {
        false
    }

    fn accept_token_issuer(
        &self,
        discovered: &str,
        claims: &Map<String, Value>,
    ) -> Result<(), String> {
        let tid = tid_of(claims)?;
        let expected = self.expected_issuer(discovered, &tid)?;
        match claims.get("iss").and_then(Value::as_str) {
            Some(iss) if iss == expected => Ok(()),
            other => Err(format!("issuer {other:?} is not `{expected}`")),
        }
    }

    fn accept_response_issuer(&self, discovered: &str, iss: &str) -> bool {
        match tenant_segment(&self.authority, iss) {
            Some(tid) if is_tenant_id(&tid.to_ascii_lowercase()) => self
                .expected_issuer(discovered, &tid.to_ascii_lowercase())
                .is_ok_and(|e| e.eq_ignore_ascii_case(iss)),
            _ => false,
        }
    }

    fn finish(
        &self,
        claims: &Map<String, Value>,
        mut identity: Identity,
    ) -> Result<Identity, ProviderError> {
        let tid = tid_of(claims).map_err(ProviderError::protocol)?;
        let oid = claims
            .get("oid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ProviderError::protocol("the ID token has no oid"))?;
        if !self.allowed_tenants.is_empty() && !self.allowed_tenants.contains(&tid) {
            return Err(ProviderError::denied(
                "your organization's Microsoft accounts may not sign in here (tenant not in allowed_tenants)",
            ));
        }
        if Self::has_group_overage(claims) {
            return Err(ProviderError::denied(
                "your account is in too many groups for Microsoft to list them in the sign-in token; \
                 ask an administrator to limit the groups sent to this application",
            ));
        }
        identity.subject = format!("{tid}:{oid}");
        // nOAuth: the email claim is whatever the tenant admin typed unless xms_edov says
        // the domain owner verified it.
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|e| e.contains('@'))
            .map(str::to_string);
        identity.email_verified = email.is_some() && is_true(claims.get("xms_edov"));
        identity.email = email.or_else(|| {
            self.preferred_username_as_email
                .then(|| identity.username.clone())
                .flatten()
                .filter(|u| u.contains('@'))
        });
        identity.groups = self.map_groups(&identity.groups);
        Ok(identity)
    }
}

impl MicrosoftConfig {
    /// Validates the section into generic OIDC settings with the Microsoft profile.
    pub fn into_settings(self, context: &ProviderContext) -> Result<OidcSettings, ProviderError> {
        let bad = |detail: String| ProviderError::Misconfigured {
            detail: format!("providers.{}.{detail}", context.id),
        };
        let tenant = check_tenant(&self.tenant).map_err(bad)?;
        let authority = check_upstream_url("authority", &self.authority, context.dev_mode)
            .map_err(bad)?
            .as_str()
            .trim_end_matches('/')
            .to_string();
        let mut allowed_tenants = Vec::new();
        for t in &self.allowed_tenants {
            let t = t.trim().to_ascii_lowercase();
            if !is_tenant_id(&t) {
                return Err(bad(format!("allowed_tenants: `{t}` is not a tenant id")));
            }
            allowed_tenants.push(t);
        }
        if tenant == "consumers" && !allowed_tenants.is_empty() {
            return Err(bad(
                "allowed_tenants: personal accounts (tenant consumers) all share one tenant".into(),
            ));
        }
        let mut group_names = BTreeMap::new();
        for (id, name) in self.group_names {
            if name.trim().is_empty() {
                return Err(bad(format!("group_names.{id}: the name is empty")));
            }
            group_names.insert(id.trim().to_ascii_lowercase(), name);
        }
        let secret = client_secret(
            context,
            self.client_secret.as_ref(),
            self.client_secret_file.as_deref(),
            self.client_secret_env.as_deref(),
        )?;
        let issuer = format!("{authority}/{tenant}/v2.0");
        let mut settings = OidcSettings::new(
            context.id.clone(),
            &issuer,
            self.client_id,
            secret,
            context.dev_mode,
        )?;
        settings.scopes = clean_scopes(&self.scopes).map_err(|e| bad(format!("scopes: {e}")))?;
        settings.token_endpoint_auth = self.token_endpoint_auth;
        // Entra's userinfo is Microsoft Graph's and answers only Graph-audience access
        // tokens; what we map is in its ID token.
        settings.use_userinfo = UserinfoUse::Never;
        // An unverified Entra email is normal; it stays unverified and never links.
        settings.rules.unverified_email = UnverifiedEmail::KeepUnverified;
        settings.rules.allowed_groups = self.allowed_groups;
        settings.offline_access = if self.offline_access {
            OfflineAccess::Scope
        } else {
            OfflineAccess::Off
        };
        // Entra grants offline_access without prompt=consent: none is forced.
        settings.prompt = self
            .prompt
            .as_deref()
            .map(check_prompt)
            .transpose()
            .map_err(bad)?;
        settings.profile = Arc::new(MicrosoftProfile {
            authority,
            tenant,
            allowed_tenants,
            group_names,
            preferred_username_as_email: self.preferred_username_as_email,
        });
        Ok(settings)
    }
}

/// Builds Microsoft providers.
#[derive(Debug, Clone, Copy, Default)]
pub struct MicrosoftFactory;

impl ProviderFactory for MicrosoftFactory {
    fn provider_type(&self) -> &str {
        PROVIDER_TYPE
    }

    fn create(&self, context: ProviderContext) -> Result<Arc<dyn Provider>, ProviderError> {
        let config: MicrosoftConfig = context.parse_config()?;
        let settings = config.into_settings(&context)?;
        Ok(Arc::new(OidcProvider::new(settings, context.dev_mode)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TID: &str = "9b1c3f0e-1111-4a2b-8c3d-123456789abc";
    const OTHER: &str = "0f0f0f0f-2222-4a2b-8c3d-123456789abc";

    fn profile(tenant: &str) -> MicrosoftProfile {
        MicrosoftProfile {
            authority: DEFAULT_AUTHORITY.into(),
            tenant: tenant.into(),
            allowed_tenants: Vec::new(),
            group_names: BTreeMap::from([("aaaa".to_string(), "admins".to_string())]),
            preferred_username_as_email: false,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn template() -> String {
        format!("{DEFAULT_AUTHORITY}/{{tenantid}}/v2.0")
    }

    fn settings(config: Value) -> Result<OidcSettings, ProviderError> {
        let ctx = ProviderContext::new("entra", config, false);
        ctx.parse_config::<MicrosoftConfig>()?.into_settings(&ctx)
    }

    #[test]
    fn tenants_are_keywords_ids_or_domains() {
        assert_eq!(check_tenant("Common").unwrap(), "common");
        assert_eq!(check_tenant(TID).unwrap(), TID);
        assert_eq!(
            check_tenant("contoso.onmicrosoft.com").unwrap(),
            "contoso.onmicrosoft.com"
        );
        assert!(check_tenant("../evil").is_err());
        assert!(check_tenant("tenant/x").is_err());
        assert!(is_tenant_id(TID));
        assert!(!is_tenant_id("9b1c3f0e11114a2b8c3d123456789abc0000"));
    }

    #[test]
    fn config_builds_the_tenant_issuer_and_rejects_bad_keys() {
        let s = settings(json!({"client_id": "app", "client_secret": "s", "tenant": TID})).unwrap();
        assert_eq!(s.issuer, format!("{DEFAULT_AUTHORITY}/{TID}/v2.0"));
        assert_eq!(
            s.discovery_url.as_str(),
            format!("{DEFAULT_AUTHORITY}/{TID}/v2.0/.well-known/openid-configuration")
        );
        let s = settings(json!({"client_id": "app", "client_secret": "s"})).unwrap();
        assert_eq!(s.issuer, format!("{DEFAULT_AUTHORITY}/common/v2.0"));
        for (key, value) in [
            ("tenant", json!("a/b")),
            ("authority", json!("http://login.example.com")),
            ("allowed_tenants", json!(["contoso"])),
            ("group_names", json!({"aaaa": ""})),
            ("unknown", json!(1)),
        ] {
            let mut c = json!({"client_id": "app", "client_secret": "s"});
            c[key] = value;
            assert!(
                matches!(settings(c), Err(ProviderError::Misconfigured { ref detail }) if detail.contains(key)),
                "{key}"
            );
        }
    }

    #[test]
    fn template_issuer_is_checked_against_the_tokens_tid() {
        let p = profile("common");
        p.accept_discovered_issuer("", &template()).unwrap();
        let good = claims(json!({"tid": TID, "iss": format!("{DEFAULT_AUTHORITY}/{TID}/v2.0")}));
        p.accept_token_issuer(&template(), &good).unwrap();
        // A token from tenant A claiming tenant B's issuer, or the reverse.
        let mismatched =
            claims(json!({"tid": OTHER, "iss": format!("{DEFAULT_AUTHORITY}/{TID}/v2.0")}));
        assert!(p.accept_token_issuer(&template(), &mismatched).is_err());
        let no_tid = claims(json!({"iss": format!("{DEFAULT_AUTHORITY}/{TID}/v2.0")}));
        assert!(p.accept_token_issuer(&template(), &no_tid).is_err());
        let junk_tid = claims(json!({"tid": "x/../y", "iss": "x"}));
        assert!(p.accept_token_issuer(&template(), &junk_tid).is_err());
    }

    #[test]
    fn single_tenant_issuer_must_be_that_tenant() {
        let p = profile(TID);
        let concrete = format!("{DEFAULT_AUTHORITY}/{TID}/v2.0");
        p.accept_discovered_issuer("", &concrete).unwrap();
        assert!(
            p.accept_discovered_issuer("", &template()).is_err(),
            "a single tenant never gets the template"
        );
        assert!(
            p.accept_discovered_issuer("", &format!("{DEFAULT_AUTHORITY}/{OTHER}/v2.0"))
                .is_err()
        );
        assert!(
            p.accept_discovered_issuer("", "https://evil.example/{tenantid}/v2.0")
                .is_err()
        );
        let from_other = claims(json!({"tid": OTHER, "iss": concrete}));
        assert!(p.accept_token_issuer(&concrete, &from_other).is_err());
    }

    #[test]
    fn response_iss_parameter_follows_the_template() {
        let p = profile("organizations");
        assert!(p.accept_response_issuer(&template(), &format!("{DEFAULT_AUTHORITY}/{TID}/v2.0")));
        assert!(!p.accept_response_issuer(&template(), "https://evil.example/x/v2.0"));
        assert!(
            !p.accept_response_issuer(&template(), &format!("{DEFAULT_AUTHORITY}/common/v2.0"))
        );
    }

    #[test]
    fn subject_is_tid_and_oid_and_groups_are_mapped() {
        let p = profile("common");
        let c = claims(json!({"tid": TID, "oid": "oid-1", "sub": "pairwise"}));
        let id = Identity::new("pairwise").with_groups(vec!["AAAA".into(), "bbbb".into()]);
        let id = p.finish(&c, id).unwrap();
        assert_eq!(id.subject, format!("{TID}:oid-1"));
        assert_eq!(id.groups, vec!["admins", "bbbb"]);
        let no_oid = claims(json!({"tid": TID}));
        assert!(matches!(
            p.finish(&no_oid, Identity::new("x")),
            Err(ProviderError::UpstreamProtocol { .. })
        ));
    }

    #[test]
    fn email_is_verified_only_with_xms_edov() {
        let p = profile("common");
        let base = json!({"tid": TID, "oid": "o", "email": "ceo@victim.example"});
        let id = p.finish(&claims(base.clone()), Identity::new("s")).unwrap();
        assert_eq!(id.email.as_deref(), Some("ceo@victim.example"));
        assert!(
            !id.email_verified,
            "nOAuth: an unproven email is unverified"
        );
        let mut proven = base.clone();
        proven["xms_edov"] = json!(true);
        assert!(
            p.finish(&claims(proven), Identity::new("s"))
                .unwrap()
                .email_verified
        );
        let mut upstream_says = base;
        upstream_says["email_verified"] = json!(true);
        let mut id = Identity::new("s");
        id.email_verified = true;
        assert!(!p.finish(&claims(upstream_says), id).unwrap().email_verified);
    }

    #[test]
    fn preferred_username_is_an_email_only_when_allowed_and_never_verified() {
        let c = claims(json!({"tid": TID, "oid": "o", "xms_edov": true}));
        let id = Identity::new("s").with_username("mia@contoso.example");
        assert_eq!(
            profile("common").finish(&c, id.clone()).unwrap().email,
            None
        );
        let mut p = profile("common");
        p.preferred_username_as_email = true;
        let id = p.finish(&c, id).unwrap();
        assert_eq!(id.email.as_deref(), Some("mia@contoso.example"));
        assert!(!id.email_verified);
    }

    #[test]
    fn group_overage_fails_closed() {
        let p = profile("common");
        for overage in [
            json!({"tid": TID, "oid": "o", "_claim_names": {"groups": "src1"},
                   "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/x"}}}),
            json!({"tid": TID, "oid": "o", "hasgroups": true}),
        ] {
            let err = p.finish(&claims(overage), Identity::new("s")).unwrap_err();
            assert!(
                matches!(&err, ProviderError::Denied { reason } if reason.contains("too many groups")),
                "{err:?}"
            );
        }
        assert!(!MicrosoftProfile::has_group_overage(&claims(
            json!({"hasgroups": false})
        )));
    }

    #[test]
    fn tenants_outside_allowed_tenants_are_denied() {
        let mut p = profile("organizations");
        p.allowed_tenants = vec![OTHER.into()];
        let err = p
            .finish(&claims(json!({"tid": TID, "oid": "o"})), Identity::new("s"))
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::Denied { reason } if reason.contains("allowed_tenants"))
        );
        p.finish(
            &claims(json!({"tid": OTHER, "oid": "o"})),
            Identity::new("s"),
        )
        .unwrap();
    }
}

#[cfg(feature = "cdylib")]
switchboard_plugin_api::export_plugin! {
    name: "microsoft",
    factory: MicrosoftFactory,
    capabilities: [redirect, refresh],
}
