//! Master-key rotation: re-seals every value the store keeps sealed (signing keys,
//! upstream provider data, TOTP secrets) under the current master key, while the previous keys
//! still open what they sealed.
//!
//! Safe to interrupt and run again: values are rewritten in small batches, each one
//! transaction that only replaces a row still holding the value that was read, and a
//! value already under the current key is left alone. Before anything is rewritten,
//! every value is checked to open under a configured key; one that does not stops the
//! run with nothing changed.

use crate::identity::{LINK_FORMAT, LINK_TABLE, mfa};
use crate::secrets::{MasterKey, SecretsError};
use crate::store::{SealedColumn, SealedRewrite, SealedRow, SharedStore, StoreError};
use crate::tokens::keyring;

/// Rows read (and rewritten) per store call.
const BATCH: u32 = 100;

const COLUMNS: [SealedColumn; 3] = [
    SealedColumn::SigningKeys,
    SealedColumn::ProviderData,
    SealedColumn::TotpSecrets,
];

/// What a run found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Sealed values in the store.
    pub total: u64,
    /// Values already under the current key before this run.
    pub already_current: u64,
    /// Values this run re-sealed.
    pub resealed: u64,
    /// Values still under a previous key (a run stopped by `max_rows`).
    pub remaining: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{count} sealed value(s) open under no configured master key (first: {first}: {cause}); \
         nothing was re-sealed. Add the key that sealed them to [secrets] \
         previous_master_key_files and run again"
    )]
    Unreadable {
        count: u64,
        first: String,
        cause: SecretsError,
    },
}

/// The `(table, row id, format)` a value's seal is bound to.
fn binding(row: &SealedRow) -> (&'static str, String, u32) {
    match row {
        SealedRow::SigningKey { kid } => (keyring::TABLE, kid.clone(), keyring::FORMAT),
        SealedRow::ProviderData {
            provider_id,
            subject,
        } => (LINK_TABLE, format!("{provider_id}/{subject}"), LINK_FORMAT),
        SealedRow::TotpSecret { user_id } => (mfa::TOTP_TABLE, user_id.clone(), mfa::TOTP_FORMAT),
    }
}

/// How a row is named in messages: never its contents.
fn describe(row: &SealedRow) -> String {
    match row {
        SealedRow::SigningKey { kid } => format!("signing key {kid}"),
        SealedRow::ProviderData {
            provider_id,
            subject,
        } => format!("provider data of {provider_id}/{subject}"),
        SealedRow::TotpSecret { user_id } => format!("TOTP secret of user {user_id}"),
    }
}

/// Calls `each` with every page of sealed values of `column`.
async fn pages(
    store: &SharedStore,
    column: SealedColumn,
    mut each: impl FnMut(Vec<crate::store::SealedValue>),
) -> Result<(), StoreError> {
    let mut after: Option<SealedRow> = None;
    loop {
        let page = store.list_sealed(column, after.as_ref(), BATCH).await?;
        let full = page.len() == BATCH as usize;
        after = page.last().map(|v| v.row.clone());
        each(page);
        if !full {
            return Ok(());
        }
    }
}

/// Checks that every sealed value opens under a configured key; returns the total
/// and how many are already under the current key.
async fn check(store: &SharedStore, master: &MasterKey) -> Result<(u64, u64), RotationError> {
    let (mut total, mut current) = (0u64, 0u64);
    let mut failures: Vec<(String, SecretsError)> = Vec::new();
    for column in COLUMNS {
        pages(store, column, |page| {
            for v in page {
                total += 1;
                let (table, row_id, format) = binding(&v.row);
                match master.open(table, &row_id, format, &v.sealed) {
                    Ok(mut plain) => {
                        zeroize::Zeroize::zeroize(&mut plain);
                        if master.is_current(&v.sealed) {
                            current += 1;
                        }
                    }
                    Err(e) => failures.push((describe(&v.row), e)),
                }
            }
        })
        .await?;
    }
    let count = failures.len() as u64;
    match failures.into_iter().next() {
        Some((first, cause)) => Err(RotationError::Unreadable {
            count,
            first,
            cause,
        }),
        None => Ok((total, current)),
    }
}

/// Re-seals under the current key every value still under a previous one, at most
/// `max_rows` of them (all when `None`).
pub async fn rotate_master_key(
    store: &SharedStore,
    master: &MasterKey,
    max_rows: Option<u64>,
) -> Result<RotationReport, RotationError> {
    let (total, already_current) = check(store, master).await?;
    let mut budget = max_rows.unwrap_or(u64::MAX);
    let mut resealed = 0u64;
    for column in COLUMNS {
        let mut after: Option<SealedRow> = None;
        while budget > 0 {
            let page = store.list_sealed(column, after.as_ref(), BATCH).await?;
            let full = page.len() == BATCH as usize;
            after = page.last().map(|v| v.row.clone());
            let mut rewrites = Vec::new();
            for v in page.into_iter().filter(|v| !master.is_current(&v.sealed)) {
                if budget == 0 {
                    break;
                }
                let (table, row_id, format) = binding(&v.row);
                let new = master
                    .reseal(table, &row_id, format, &v.sealed)
                    .map_err(|cause| RotationError::Unreadable {
                        count: 1,
                        first: describe(&v.row),
                        cause,
                    })?;
                rewrites.push(SealedRewrite {
                    row: v.row,
                    old: v.sealed,
                    new,
                });
                budget -= 1;
            }
            if !rewrites.is_empty() {
                let changed = store.rewrite_sealed(&rewrites).await?;
                resealed += changed;
                tracing::info!(rows = changed, "re-sealed under the current master key");
            }
            if !full {
                break;
            }
        }
    }
    // Counted again: rows written meanwhile were sealed under the current key.
    let remaining = count_remaining(store, master).await?;
    Ok(RotationReport {
        total,
        already_current,
        resealed,
        remaining,
    })
}

/// Values still under a key other than the current one.
async fn count_remaining(store: &SharedStore, master: &MasterKey) -> Result<u64, StoreError> {
    let mut remaining = 0u64;
    for column in COLUMNS {
        pages(store, column, |page| {
            remaining += page
                .iter()
                .filter(|v| !master.is_current(&v.sealed))
                .count() as u64;
        })
        .await?;
    }
    Ok(remaining)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::identity::{NewLocalUser, add_local_user};
    use crate::store::{IdentityLink, MemoryStore, SigningKeyRecord};
    use std::sync::Arc;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; 32]).unwrap()
    }

    /// A store with `keys` signing keys, `links` provider-data links and one TOTP
    /// secret, all sealed under `master`.
    async fn sealed_store(master: &MasterKey, keys: usize, links: usize) -> SharedStore {
        let store: SharedStore = Arc::new(MemoryStore::new());
        for i in 0..keys {
            let kid = format!("kid-{i}");
            let sealed = master
                .seal(keyring::TABLE, &kid, keyring::FORMAT, b"pkcs8")
                .unwrap();
            let record = SigningKeyRecord {
                kid,
                alg: format!("alg-{i}"),
                epoch: 1,
                sealed_private_key: sealed,
                public_jwk: serde_json::json!({}),
                created_at: 1,
                activate_at: 1,
                retire_at: 100,
                expires_at: 200,
            };
            assert!(store.insert_key_if_absent(&record).await.unwrap());
        }
        let user = add_local_user(
            &store,
            &NewLocalUser {
                email: "ann@example.com",
                ..NewLocalUser::default()
            },
            "test",
            1,
        )
        .await
        .unwrap();
        let totp = master
            .seal(
                mfa::TOTP_TABLE,
                &user.id,
                mfa::TOTP_FORMAT,
                b"0123456789abcdefghij",
            )
            .unwrap();
        assert!(store.put_pending_totp(&user.id, &totp, 1).await.unwrap());
        for i in 0..links {
            let subject = format!("s{i:03}");
            let sealed = master
                .seal(LINK_TABLE, &format!("corp/{subject}"), LINK_FORMAT, b"{}")
                .unwrap();
            store
                .link_identity(&IdentityLink {
                    provider_id: "corp".into(),
                    subject,
                    user_id: user.id.clone(),
                    claims: serde_json::json!({}),
                    sealed_provider_data: Some(sealed),
                    created_at: 1,
                    updated_at: 1,
                })
                .await
                .unwrap();
        }
        store
    }

    /// Whether every sealed value of the store opens under `master`.
    async fn all_open(store: &SharedStore, master: &MasterKey) -> bool {
        let mut ok = true;
        for column in COLUMNS {
            pages(store, column, |page| {
                for v in page {
                    let (table, row_id, format) = binding(&v.row);
                    ok &= master.open(table, &row_id, format, &v.sealed).is_ok();
                }
            })
            .await
            .unwrap();
        }
        ok
    }

    #[tokio::test]
    async fn an_interrupted_rotation_finishes_on_the_next_run_across_pages() {
        let store = sealed_store(&key(1), 3, 2 * BATCH as usize + 5).await;
        // Keys, links and the TOTP secret.
        let total = 3 + 2 * u64::from(BATCH) + 5 + 1;
        let rotating = key(2).with_previous([key(1)]);

        let first = rotate_master_key(&store, &rotating, Some(150))
            .await
            .unwrap();
        assert_eq!(
            first,
            RotationReport {
                total,
                already_current: 0,
                resealed: 150,
                remaining: total - 150
            }
        );
        assert!(!all_open(&store, &key(2)).await, "not finished yet");
        assert!(all_open(&store, &rotating).await);

        let second = rotate_master_key(&store, &rotating, None).await.unwrap();
        assert_eq!(second.already_current, 150);
        assert_eq!(second.resealed, total - 150);
        assert_eq!(second.remaining, 0);
        assert!(
            all_open(&store, &key(2)).await,
            "the new key alone opens everything"
        );
        assert!(!all_open(&store, &key(1)).await);
    }

    #[tokio::test]
    async fn a_value_no_configured_key_opens_stops_the_run_before_any_change() {
        let store = sealed_store(&key(1), 2, 3).await;
        // One link sealed under a key nobody configured.
        let stray = key(9)
            .seal(LINK_TABLE, "corp/s001", LINK_FORMAT, b"{}")
            .unwrap();
        let link = store
            .list_sealed(SealedColumn::ProviderData, None, 10)
            .await
            .unwrap()
            .into_iter()
            .find(|v| {
                v.row
                    == SealedRow::ProviderData {
                        provider_id: "corp".into(),
                        subject: "s001".into(),
                    }
            })
            .unwrap();
        store
            .rewrite_sealed(&[SealedRewrite {
                row: link.row,
                old: link.sealed,
                new: stray,
            }])
            .await
            .unwrap();

        let rotating = key(2).with_previous([key(1)]);
        let err = rotate_master_key(&store, &rotating, None)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("1 sealed value(s)"), "{text}");
        assert!(text.contains("provider data of corp/s001"), "{text}");
        assert!(text.contains("previous_master_key_files"), "{text}");
        assert!(
            // Two keys, three links and the TOTP secret.
            count_remaining(&store, &rotating).await.unwrap() == 6,
            "nothing was re-sealed"
        );
    }
}
