//! The Microsoft preset end to end against the certified OP peer mounted on a
//! tenant-shaped issuer path (`/{tenant-id}/v2.0`), single-tenant and through a
//! multi-tenant `{tenantid}` discovery document; accounts carry Entra's claims
//! (`tid`, `oid`, `xms_edov`, group object ids, group overage).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed step should stop it loudly

use serde_json::{Value, json};
use std::sync::Arc;
use switchboard_microsoft::MicrosoftFactory;
use switchboard_plugin_api::{
    BeginRequest, Identity, Provider, ProviderContext, ProviderError, ProviderFactory,
    RefreshRequest,
};
use switchboard_provider_testkit::browser::{Browser, Choice};
use switchboard_provider_testkit::peer::{OidcPeer, PeerOptions};
use switchboard_provider_testkit::{LoginSecrets, callback, require_peer};

const CALLBACK: &str = "http://127.0.0.1:9/callback/entra";
const TID: &str = "9b1c3f0e-1111-4a2b-8c3d-123456789abc";
const OTHER_TID: &str = "0f0f0f0f-2222-4a2b-8c3d-123456789abc";
const GROUP_ADMINS: &str = "6f1c0000-aaaa-4bbb-8ccc-000000000001";
const GROUP_UNMAPPED: &str = "6f1c0000-aaaa-4bbb-8ccc-000000000002";

async fn peer() -> OidcPeer {
    let mut options = PeerOptions::new(CALLBACK);
    options.issuer_path = Some(format!("/{TID}/v2.0"));
    options.common_path = Some("/common/v2.0".into());
    options.accounts = json!({
        "mia": {
            "tid": TID, "oid": "oid-mia", "xms_edov": true,
            "email": "mia@contoso.example", "preferred_username": "mia@contoso.example",
            "groups": [GROUP_ADMINS, GROUP_UNMAPPED],
        },
        // nOAuth: an email the tenant admin typed, without proof.
        "noah": {
            "tid": TID, "oid": "oid-noah", "email": "ceo@victim.example",
            "preferred_username": "noah@contoso.example", "groups": [],
        },
        "pat": {
            "tid": TID, "oid": "oid-pat", "email": null,
            "preferred_username": "pat@contoso.example", "groups": [],
        },
        "over": {
            "tid": TID, "oid": "oid-over", "groups": [GROUP_ADMINS],
            "_claim_names": { "groups": "src1" },
            "_claim_sources": { "src1": { "endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects" } },
        },
        "flag": { "tid": TID, "oid": "oid-flag", "hasgroups": true, "groups": [] },
        // A token whose tid is not the tenant of its issuer.
        "liar": { "tid": OTHER_TID, "oid": "oid-liar", "groups": [] },
    });
    OidcPeer::start(&options)
        .await
        .unwrap_or_else(|e| panic!("peer: {e}"))
}

fn provider(peer: &OidcPeer, tenant: &str, extra: Value) -> Arc<dyn Provider> {
    let mut config = json!({
        "authority": peer.origin,
        "tenant": tenant,
        "client_id": "switchboard",
        "client_secret": "switchboard-secret",
        "scopes": ["openid", "profile", "email", "groups"],
        "group_names": { GROUP_ADMINS: "admins" },
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    MicrosoftFactory
        .create(ProviderContext::new("entra", config, false))
        .unwrap()
}

async fn login(provider: &dyn Provider, who: &str) -> Result<Identity, ProviderError> {
    let secrets = LoginSecrets::new();
    let begin = provider
        .redirect()
        .unwrap()
        .begin(BeginRequest::new(
            CALLBACK,
            &secrets.state,
            &secrets.nonce,
            &secrets.challenge,
        ))
        .await?;
    let hit = Browser::new()
        .authorize(&begin.url, who, CALLBACK, Choice::Approve)
        .await
        .unwrap();
    provider
        .redirect()
        .unwrap()
        .complete(callback(
            hit.params,
            begin.provider_state,
            CALLBACK,
            &secrets,
        ))
        .await
}

fn denied(result: Result<Identity, ProviderError>) -> String {
    match result {
        Err(ProviderError::Denied { reason }) => reason,
        other => panic!("expected Denied, got {other:?}"),
    }
}

#[tokio::test]
async fn a_single_tenant_login_gives_tid_oid_mapped_groups_and_a_proven_email() {
    require_peer!();
    let op = peer().await;
    let provider = provider(
        &op,
        TID,
        json!({ "offline_access": true, "prompt": "consent" }),
    );
    let identity = login(provider.as_ref(), "mia").await.unwrap();
    assert_eq!(identity.subject, format!("{TID}:oid-mia"));
    assert_eq!(identity.email.as_deref(), Some("mia@contoso.example"));
    assert!(identity.email_verified, "xms_edov proves the email");
    assert_eq!(identity.groups, vec!["admins", GROUP_UNMAPPED]);

    let refreshed = provider
        .refresh()
        .unwrap()
        .refresh(RefreshRequest::new(identity))
        .await
        .unwrap();
    assert_eq!(refreshed.subject, format!("{TID}:oid-mia"));
}

#[tokio::test]
async fn the_multi_tenant_template_issuer_is_checked_against_tid() {
    require_peer!();
    let op = peer().await;
    assert_eq!(
        op.common_issuer.as_deref(),
        Some(format!("{}/{{tenantid}}/v2.0", op.origin).as_str())
    );
    let common = provider(&op, "common", json!({}));
    let identity = login(common.as_ref(), "mia").await.unwrap();
    assert_eq!(identity.subject, format!("{TID}:oid-mia"));

    let err = login(common.as_ref(), "liar").await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::UpstreamProtocol { detail } if detail.contains("issuer")),
        "{err:?}"
    );

    let elsewhere = provider(
        &op,
        "organizations",
        json!({ "allowed_tenants": [OTHER_TID] }),
    );
    // The peer serves the template at /common only; organizations has no document.
    assert!(login(elsewhere.as_ref(), "mia").await.is_err());
    let restricted = provider(&op, "common", json!({ "allowed_tenants": [OTHER_TID] }));
    let reason = denied(login(restricted.as_ref(), "mia").await);
    assert!(reason.contains("allowed_tenants"), "{reason}");
}

#[tokio::test]
async fn unproven_emails_stay_unverified_and_preferred_username_needs_opt_in() {
    require_peer!();
    let op = peer().await;
    let provider_default = provider(&op, TID, json!({}));
    let noah = login(provider_default.as_ref(), "noah").await.unwrap();
    assert_eq!(noah.subject, format!("{TID}:oid-noah"));
    assert_eq!(noah.email.as_deref(), Some("ceo@victim.example"));
    assert!(!noah.email_verified, "nOAuth: no xms_edov, no verification");

    let pat = login(provider_default.as_ref(), "pat").await.unwrap();
    assert_eq!(pat.email, None);
    assert_eq!(pat.username.as_deref(), Some("pat@contoso.example"));

    let opted_in = provider(&op, TID, json!({ "preferred_username_as_email": true }));
    let pat = login(opted_in.as_ref(), "pat").await.unwrap();
    assert_eq!(pat.email.as_deref(), Some("pat@contoso.example"));
    assert!(!pat.email_verified);
}

#[tokio::test]
async fn group_overage_and_missing_allowed_groups_are_denied() {
    require_peer!();
    let op = peer().await;
    let provider_default = provider(&op, TID, json!({}));
    for who in ["over", "flag"] {
        let reason = denied(login(provider_default.as_ref(), who).await);
        assert!(reason.contains("too many groups"), "{who}: {reason}");
    }
    let admins_only = provider(&op, TID, json!({ "allowed_groups": ["admins"] }));
    login(admins_only.as_ref(), "mia").await.unwrap();
    let reason = denied(login(admins_only.as_ref(), "noah").await);
    assert!(reason.contains("admins"), "{reason}");
}
