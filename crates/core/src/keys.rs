//! Master key rotation: the cluster-wide sealing-key state, what each node reports about its
//! keyring, and the sealed values a rotation re-seals.
//!
//! ```text
//!   key rotate:   pending := NEW ──▶ every live node holds NEW ──▶ active := NEW, pending := ∅
//!                      (nodes re-read their key files while they lack it)        │
//!                                                                                ▼
//!   key retire OLD ◀── nothing sealed under OLD ◀── re-seal every blob ◀── every live node
//!   (refused while OLD is active, pending, used by a node, or names a blob)      seals under NEW
//! ```
//!
//! Why this order: a blob sealed under a key some node lacks is unreadable on that node, so the
//! active key moves only once every live node holds the new key; blobs are re-sealed only once
//! every node seals under it, so no node keeps adding blobs under the old key behind the
//! re-sealing pass; and a key leaves the keyring only when the store holds nothing under it.
//! The hashing key (codes, tokens, API keys) is a different key and never rotates this way:
//! its hashes cannot be recomputed without the secrets they hide.

use serde::Serialize;

/// The cluster's choice of sealing key, one row in the store. Absent (`active: None`) on an
/// install that never rotated: each node then seals under its own primary key (`master.key`
/// or `master_key`), which every node shares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyState {
    /// The key every node seals under.
    pub active: Option<String>,
    /// The key a rotation in progress waits for: nodes that lack it re-read their key files.
    pub pending: Option<String>,
    /// Bumped by every change; changes are conditional on it, so two operators rotating at
    /// once cannot interleave (0: never changed).
    pub version: i64,
    pub changed_at: i64,
}

/// A change of the [`KeyState`], made only if the state is still at `expected_version`
/// (0: there is no state yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    pub expected_version: i64,
    pub active: Option<String>,
    pub pending: Option<String>,
    pub at: i64,
}

/// What one `twofold serve` process last reported about its keyring (its heartbeat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeKeys {
    /// `host/listen-address/pid`: unique among running processes, readable in messages.
    pub node_id: String,
    /// Every key id the node can unseal with, sorted.
    pub key_ids: Vec<String>,
    /// The key it seals under now.
    pub sealing_key_id: String,
    pub started_at: i64,
    /// Wall-clock milliseconds of the last report.
    pub seen_at: i64,
}

/// A column that holds sealed values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SealedColumn {
    /// `factors.sealed_secret`: TOTP seeds, bound to `totp:<tenant>:<user>:<factor>`.
    FactorSecret,
    /// `outbox.sealed_params`: message parameters (they may hold a code), bound to
    /// `outbox:<message_id>`; wiped once sent.
    OutboxParams,
    /// `webhooks.sealed_secret`: signing secrets, bound to `webhook:<id>`.
    WebhookSecret,
    /// `revert_links.undo`: JSON that may hold a removed factor's sealed seed (base64), still
    /// bound to that factor's owner string.
    RevertUndo,
    /// `vault_entries.sealed_secret`: third-party TOTP/HOTP secrets, bound to
    /// `vault:<tenant>:<entry>`.
    VaultSecret,
    /// `oidc_clients.sealed_secret`: OIDC client secrets (HS256 needs the secret itself),
    /// bound to `oidc-client:<tenant>:<client id>`.
    OidcClientSecret,
    /// `oidc_signing_keys.sealed_key`: the provider's ES256 private keys, bound to
    /// `oidc-signing:<kid>`.
    OidcSigningKey,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 7] = [
        SealedColumn::FactorSecret,
        SealedColumn::OutboxParams,
        SealedColumn::WebhookSecret,
        SealedColumn::RevertUndo,
        SealedColumn::VaultSecret,
        SealedColumn::OidcClientSecret,
        SealedColumn::OidcSigningKey,
    ];

    /// `table.column`, for messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            SealedColumn::FactorSecret => "factors.sealed_secret",
            SealedColumn::OutboxParams => "outbox.sealed_params",
            SealedColumn::WebhookSecret => "webhooks.sealed_secret",
            SealedColumn::RevertUndo => "revert_links.undo",
            SealedColumn::VaultSecret => "vault_entries.sealed_secret",
            SealedColumn::OidcClientSecret => "oidc_clients.sealed_secret",
            SealedColumn::OidcSigningKey => "oidc_signing_keys.sealed_key",
        }
    }
}

/// One stored sealed value and what binds it to its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRow {
    /// The row's text key: the factor, webhook or link id, or the outbox `message_id`. Rows
    /// come in this key's byte order, so it is also the cursor of the next page.
    pub key: String,
    pub tenant_id: i64,
    /// The user of factors and revert links.
    pub user_id: Option<i64>,
    /// The value as stored: a sealed blob, or the undo JSON's UTF-8 bytes.
    pub value: Vec<u8>,
}

/// Replace `from` by `to` in one row, only if it still holds `from` (a row changed meanwhile
/// keeps its new value, which its writer sealed under the key active then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reseal {
    pub column: SealedColumn,
    pub key: String,
    pub from: Vec<u8>,
    pub to: Vec<u8>,
}

/// Live nodes (seen at or after `since`) for which `ok` does not hold, oldest report first:
/// whom a rotation step still waits for.
pub fn lagging(nodes: &[NodeKeys], since: i64, ok: impl Fn(&NodeKeys) -> bool) -> Vec<&NodeKeys> {
    let mut out: Vec<&NodeKeys> = nodes
        .iter()
        .filter(|n| n.seen_at >= since && !ok(n))
        .collect();
    out.sort_by_key(|n| n.seen_at);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn node(id: &str, keys: &[&str], sealing: &str, seen_at: i64) -> NodeKeys {
        NodeKeys {
            node_id: id.into(),
            key_ids: keys.iter().map(|k| k.to_string()).collect(),
            sealing_key_id: sealing.into(),
            started_at: 0,
            seen_at,
        }
    }

    #[test]
    fn only_live_nodes_that_fail_the_check_are_waited_for() {
        let nodes = vec![
            node("a", &["old", "new"], "old", 100),
            node("b", &["old"], "old", 90),
            node("gone", &["old"], "old", 10),
        ];
        let holds_new = |n: &NodeKeys| n.key_ids.iter().any(|k| k == "new");
        let waiting: Vec<&str> = lagging(&nodes, 50, holds_new)
            .iter()
            .map(|n| n.node_id.as_str())
            .collect();
        assert_eq!(waiting, vec!["b"]);
        assert!(lagging(&nodes, 50, |n| n.sealing_key_id == "old").is_empty());
        assert_eq!(lagging(&nodes, 0, holds_new).len(), 2);
    }
}
