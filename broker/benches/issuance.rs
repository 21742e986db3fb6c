#![allow(clippy::unwrap_used)] // setup of a benchmark: a failure should stop it loudly

//! Token issuance throughput against its ceiling, the raw signing rate.
//!
//! For each algorithm the bench measures, in the same run:
//! - `raw_sign`: one signature with the parsed aws-lc-rs key pair (the ceiling);
//! - `issue_access_and_id_token`: what `/token` signs per login (access token + ID
//!   token: two signatures, claims, base64);
//! - for RS256, `jsonwebtoken_encode`: the naive path that re-parses the key per call.
//!
//! Read the results as ratios: issuance per second divided by raw signatures per
//! second should be close to 1/2 (two signatures per issuance).

use broker::clock::{ManualClock, SharedClock};
use broker::config::{Client, ClientAuth, IntrospectionPolicy, Lifetimes, SigningAlg};
use broker::secrets::MasterKey;
use broker::store::{GrantRecord, MemoryStore, SharedStore, UserRecord, UserStatus};
use broker::tokens::TokenSigner;
use broker::tokens::keyring::{Keyring, RotationPolicy};
use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;

fn client(alg: SigningAlg) -> Client {
    Client {
        id: "bench-app".into(),
        name: "bench".into(),
        auth: ClientAuth::None,
        redirect_uris: vec![],
        require_pkce: true,
        require_mfa: false,
        scopes: BTreeSet::new(),
        grants: BTreeSet::new(),
        cors_origins: BTreeSet::new(),
        id_token_alg: alg,
        audience: None,
        resources: BTreeSet::new(),
        lifetimes: Lifetimes {
            access_token: 600,
            id_token: 3600,
            refresh_token_idle: 1,
            refresh_token_absolute: 1,
        },
        post_logout_redirect_uris: vec![],
        backchannel_logout_uri: None,
        backchannel_logout_session_required: false,
        introspection: IntrospectionPolicy::OwnAudience,
        exchange_audiences: Default::default(),
    }
}

fn user() -> UserRecord {
    UserRecord {
        id: "u-1".into(),
        username: Some("ada".into()),
        email: Some("ada@example.com".into()),
        email_verified: true,
        name: Some("Ada Lovelace".into()),
        given_name: None,
        family_name: None,
        picture: None,
        groups: vec!["local/eng".into(), "local/admins".into()],
        status: UserStatus::Active,
        password_hash: None,
        created_at: 0,
        updated_at: 0,
        last_login_at: None,
        revision: 1,
    }
}

fn grant() -> GrantRecord {
    GrantRecord {
        id: "g-1".into(),
        user_id: "u-1".into(),
        client_id: "bench-app".into(),
        session_id_hash: None,
        scopes: vec![
            "openid".into(),
            "profile".into(),
            "email".into(),
            "groups".into(),
        ],
        auth_time: 1_800_000_000,
        provider_id: "local".into(),
        created_at: 1_800_000_000,
        expires_at: 1_900_000_000,
        revoked_at: None,
        resource: None,
        amr: vec!["pwd".into()],
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clock: SharedClock = ManualClock::at(1_800_000_000);
    let store: SharedStore = Arc::new(MemoryStore::new());
    let keyring = rt
        .block_on(Keyring::open(
            store,
            Arc::new(MasterKey::from_bytes(&[9u8; 32]).unwrap()),
            clock,
            RotationPolicy {
                period: 86_400,
                prepublish: 3600,
                retain: 3600,
            },
            SigningAlg::ALL.into_iter().collect(),
        ))
        .unwrap();
    let signer = TokenSigner {
        issuer: "https://id.example.com".into(),
        keyring: keyring.clone(),
        metrics: Default::default(),
    };
    let (user, grant) = (user(), grant());
    for alg in SigningAlg::ALL {
        let mut g = c.benchmark_group(alg.as_str());
        let key = keyring.signing_key(alg).unwrap();
        let message =
            b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1LTEiLCJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUuY29tIn0";
        g.bench_function("raw_sign", |b| {
            b.iter(|| key.pair.sign(black_box(message)).unwrap())
        });
        let client = client(alg);
        g.bench_function("issue_access_and_id_token", |b| {
            b.iter(|| {
                let at = signer
                    .access_token(
                        &client,
                        &grant,
                        "https://id.example.com",
                        Default::default(),
                        1_800_000_000,
                    )
                    .unwrap();
                let id = signer
                    .id_token(
                        &client,
                        &user,
                        &grant,
                        Default::default(),
                        Some("nonce"),
                        &at.token,
                        None,
                        1_800_000_000,
                    )
                    .unwrap();
                black_box((at, id))
            })
        });
        if alg == SigningAlg::Rs256 {
            let der = broker::tokens::keys::generate_pkcs8(alg).unwrap();
            // jsonwebtoken takes PKCS#1 for RSA: unwrap it from the PKCS#8 envelope.
            let pkcs1 = pkcs1_from_pkcs8(&der);
            let key = jsonwebtoken::EncodingKey::from_rsa_der(&pkcs1);
            let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            let claims = serde_json::json!({"sub": "u-1", "iss": "https://id.example.com", "exp": 1_900_000_000});
            g.bench_function("jsonwebtoken_encode", |b| {
                b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &key).unwrap())
            });
        }
        g.finish();
    }
}

/// The RSAPrivateKey inside a PKCS#8 PrivateKeyInfo:
/// SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey }.
fn pkcs1_from_pkcs8(der: &[u8]) -> Vec<u8> {
    // (tag, header length, content length) of the DER element at `at`.
    fn element(der: &[u8], at: usize) -> (u8, usize, usize) {
        let tag = der[at];
        let first = der[at + 1] as usize;
        if first < 0x80 {
            return (tag, 2, first);
        }
        let n = first & 0x7f;
        let len = der[at + 2..at + 2 + n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (tag, 2 + n, len)
    }
    let (_, outer_header, _) = element(der, 0);
    let mut at = outer_header;
    for _ in 0..2 {
        let (_, h, l) = element(der, at); // version, then algorithm
        at += h + l;
    }
    let (tag, h, l) = element(der, at);
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    der[at + h..at + h + l].to_vec()
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
