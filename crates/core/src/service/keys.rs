//! Sweeping every sealed value for a master key rotation (see [`crate::keys`] for the whole
//! procedure): counting blobs per key id, and re-sealing those under other keys.
//!
//! Each value is re-sealed with the owner string it was sealed with (the associated data that
//! binds it to its row), so a re-sealed blob opens only where the old one did. Rows are read
//! in pages by key and written back by one conditional update per row ("only if it still holds
//! what was read"): a factor confirmed, a message sent or a link used meanwhile keeps its new
//! value, and is looked at again by the next pass.

use super::webhooks::secret_owner;
use crate::error::CoreError;
use crate::keys::*;
use crate::messaging::params_owner;
use crate::model::Factor;
use crate::ports::Store;
use crate::security::Undo;
use base64::Engine;
use std::collections::BTreeMap;
use twofold_crypto::Keyring;

/// What a sweep found, per key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealedCensus {
    /// Blobs per column and key id, as they stand after the sweep.
    pub blobs: BTreeMap<SealedColumn, BTreeMap<String, u64>>,
    /// Blobs moved to the active key.
    pub resealed: u64,
    /// Rows that changed between being read and being re-sealed (counted under the key they
    /// had when read; the next pass looks at them again).
    pub raced: u64,
    /// Values that do not open: `(column, row key, why)`. A key the sweeping keyring lacks,
    /// or a damaged or misplaced blob.
    pub unreadable: Vec<(SealedColumn, String, String)>,
}

impl SealedCensus {
    /// Blobs per key id over every column.
    pub fn by_key(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for per_key in self.blobs.values() {
            for (id, n) in per_key {
                *out.entry(id.clone()).or_insert(0) += n;
            }
        }
        out
    }

    /// How many blobs are under `key_id`, and in which columns.
    pub fn under(&self, key_id: &str) -> (u64, Vec<(SealedColumn, u64)>) {
        let columns: Vec<(SealedColumn, u64)> = self
            .blobs
            .iter()
            .filter_map(|(c, per_key)| per_key.get(key_id).map(|n| (*c, *n)))
            .collect();
        (columns.iter().map(|(_, n)| n).sum(), columns)
    }

    /// Whether another pass may find work: something was re-sealed or raced.
    pub fn moved(&self) -> bool {
        self.resealed > 0 || self.raced > 0
    }
}

/// Where a sweep stands, after each page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepProgress {
    pub column: SealedColumn,
    /// Rows of this column read so far.
    pub rows: u64,
    /// Of those, re-sealed.
    pub resealed: u64,
    /// Whether the column is done.
    pub done: bool,
}

/// One sealed blob inside a stored value, with the owner string it is bound to.
struct Blob {
    sealed: Vec<u8>,
    owner: String,
}

/// The blob in `row` of `column`, if it holds one. Undo JSON holds a blob only when it would
/// restore a TOTP factor.
fn blob_of(column: SealedColumn, row: &SealedRow) -> Result<Option<Blob>, String> {
    let user = || row.user_id.ok_or_else(|| "the row has no user".to_string());
    let blob = match column {
        SealedColumn::FactorSecret => Blob {
            sealed: row.value.clone(),
            owner: Factor::seal_owner(row.tenant_id, user()?, &row.key),
        },
        SealedColumn::OutboxParams => Blob {
            sealed: row.value.clone(),
            owner: params_owner(&row.key),
        },
        SealedColumn::WebhookSecret => Blob {
            sealed: row.value.clone(),
            owner: secret_owner(&row.key),
        },
        SealedColumn::VaultSecret => Blob {
            sealed: row.value.clone(),
            owner: crate::vault::VaultEntry::seal_owner(row.tenant_id, &row.key),
        },
        SealedColumn::OidcClientSecret => Blob {
            sealed: row.value.clone(),
            owner: crate::oidc::OidcClient::seal_owner(row.tenant_id, &row.key),
        },
        SealedColumn::OidcSigningKey => Blob {
            sealed: row.value.clone(),
            owner: crate::oidc::SigningKey::seal_owner(&row.key),
        },
        SealedColumn::RevertUndo => {
            let Undo::RestoreFactor { factor } = parse_undo(&row.value)? else {
                return Ok(None);
            };
            if factor.sealed_secret.is_empty() {
                return Ok(None);
            }
            Blob {
                sealed: base64::engine::general_purpose::STANDARD
                    .decode(&factor.sealed_secret)
                    .map_err(|_| "the undo record's seed is not base64".to_string())?,
                owner: Factor::seal_owner(row.tenant_id, user()?, &factor.id),
            }
        }
    };
    Ok(Some(blob))
}

fn parse_undo(value: &[u8]) -> Result<Undo, String> {
    serde_json::from_slice(value).map_err(|e| format!("the undo record is not valid: {e}"))
}

/// The stored value with its blob replaced by `resealed`.
fn with_blob(column: SealedColumn, row: &SealedRow, resealed: Vec<u8>) -> Result<Vec<u8>, String> {
    if column != SealedColumn::RevertUndo {
        return Ok(resealed);
    }
    let mut undo = parse_undo(&row.value)?;
    if let Undo::RestoreFactor { factor } = &mut undo {
        factor.sealed_secret = base64::engine::general_purpose::STANDARD.encode(resealed);
    }
    serde_json::to_vec(&undo).map_err(|e| format!("cannot write the undo record: {e}"))
}

/// Reads every sealed value, page by page, and counts blobs per key id. With `reseal`, each
/// blob not under that keyring's active key is sealed again under it (same owner) and written
/// back conditionally; blobs it cannot open are reported, never changed.
pub async fn sweep_sealed(
    store: &dyn Store,
    reseal: Option<&Keyring>,
    page: u32,
    progress: &mut (dyn FnMut(SweepProgress) + Send),
) -> Result<SealedCensus, CoreError> {
    let mut census = SealedCensus::default();
    for column in SealedColumn::ALL {
        let mut after = None;
        let mut shown = SweepProgress {
            column,
            rows: 0,
            resealed: 0,
            done: false,
        };
        loop {
            let rows = store.sealed_rows(column, after.clone(), page).await?;
            let last_page = rows.len() < page as usize;
            after = rows.last().map(|r| r.key.clone());
            let mut changes = Vec::new();
            let mut keys_of_changes = Vec::new();
            for row in &rows {
                let blob = match blob_of(column, row) {
                    Ok(Some(b)) => b,
                    Ok(None) => continue,
                    Err(why) => {
                        census.unreadable.push((column, row.key.clone(), why));
                        continue;
                    }
                };
                let Some(key_id) = Keyring::key_id_of(&blob.sealed).map(str::to_string) else {
                    census
                        .unreadable
                        .push((column, row.key.clone(), "not a sealed blob".into()));
                    continue;
                };
                let moved = match reseal.map(|ring| ring.reseal(&blob.sealed, &blob.owner)) {
                    None | Some(Ok(None)) => None,
                    Some(Ok(Some(new))) => Some(new),
                    Some(Err(e)) => {
                        census
                            .unreadable
                            .push((column, row.key.clone(), e.to_string()));
                        None
                    }
                };
                match moved.map(|new| with_blob(column, row, new)) {
                    Some(Ok(to)) => {
                        changes.push(Reseal {
                            column,
                            key: row.key.clone(),
                            from: row.value.clone(),
                            to,
                        });
                        keys_of_changes.push(key_id);
                    }
                    Some(Err(why)) => census.unreadable.push((column, row.key.clone(), why)),
                    None => *census.count(column, &key_id) += 1,
                }
            }
            shown.rows += rows.len() as u64;
            if let (Some(ring), false) = (reseal, changes.is_empty()) {
                let applied = store.reseal(changes).await?;
                for (changed, old_key) in applied.into_iter().zip(&keys_of_changes) {
                    if changed {
                        *census.count(column, ring.active_id()) += 1;
                        census.resealed += 1;
                        shown.resealed += 1;
                    } else {
                        // Changed meanwhile: counted where it was, looked at again next pass.
                        *census.count(column, old_key) += 1;
                        census.raced += 1;
                    }
                }
            }
            shown.done = last_page;
            progress(shown);
            if last_page {
                break;
            }
        }
    }
    Ok(census)
}

impl SealedCensus {
    fn count(&mut self, column: SealedColumn, key_id: &str) -> &mut u64 {
        self.blobs
            .entry(column)
            .or_default()
            .entry(key_id.to_string())
            .or_insert(0)
    }
}
