//! Master-key rotation: re-seals every value the store keeps sealed (signing keys,
//! upstream provider data) under the current master key, while the previous keys
//! still open what they sealed.
//!
//! Safe to interrupt and run again: values are rewritten in small batches, each one
//! transaction that only replaces a row still holding the value that was read, and a
//! value already under the current key is left alone. Before anything is rewritten,
//! every value is checked to open under a configured key; one that does not stops the
//! run with nothing changed.

use crate::identity::{LINK_FORMAT, LINK_TABLE};
use crate::secrets::{MasterKey, SecretsError};
use crate::store::{SealedColumn, SealedRewrite, SealedRow, SharedStore, StoreError};
use crate::tokens::keyring;

/// Rows read (and rewritten) per store call.
const BATCH: u32 = 100;

const COLUMNS: [SealedColumn; 2] = [SealedColumn::SigningKeys, SealedColumn::ProviderData];

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
