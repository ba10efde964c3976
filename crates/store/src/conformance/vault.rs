//! Conformance checks for the authenticator vault: entries unique per tenant, groups, tokens
//! by keyed hash, and the HOTP counter advanced by one conditional update.

use super::logins::{applied, apply, STATE_CHANGED};
use super::*;
use twofold_core::messaging::*;
use twofold_core::vault::*;

fn entry(t: &Tenant, id: &str, name: &str, kind: EntryKind) -> VaultEntry {
    VaultEntry {
        id: id.into(),
        tenant_id: t.id,
        name: name.into(),
        owner_kind: OwnerKind::Service,
        owner: "robot".into(),
        group_id: None,
        kind,
        sealed_secret: vec![9; 48],
        algorithm: "SHA256".into(),
        digits: 8,
        period: if kind == EntryKind::Totp { 60 } else { 0 },
        counter: 0,
        issuer: Some("GitHub".into()),
        account: None,
        created_at: 1_000,
    }
}

fn token(t: &Tenant, id: &str, entry_id: Option<&str>, group_id: Option<&str>) -> VaultToken {
    VaultToken {
        id: id.into(),
        tenant_id: t.id,
        label: "ci".into(),
        token_hash: id.as_bytes().to_vec(),
        entry_id: entry_id.map(Into::into),
        group_id: group_id.map(Into::into),
        created_at: 2_000,
        revoked_at: None,
    }
}

pub async fn vault_entries_groups_and_tokens_round_trip_per_tenant(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let other = tenant(&s, "other").await;
    let e = entry(&t, "vte_a", "github", EntryKind::Totp);
    applied(&s, &t, vec![Effect::InsertVaultEntry(e.clone())], 1_000).await;
    // The name is unique per tenant, not across tenants.
    let dup = entry(&t, "vte_b", "github", EntryKind::Totp);
    let r = apply(&s, &t, vec![Effect::InsertVaultEntry(dup)], 1_000).await;
    assert_eq!(r, Err(StoreError::Conflict("vault_entry_exists")));
    let theirs = entry(&other, "vte_c", "github", EntryKind::Hotp);
    applied(
        &s,
        &other,
        vec![Effect::InsertVaultEntry(theirs.clone())],
        1_000,
    )
    .await;
    assert_eq!(
        s.vault_entry(t.id, "github").await.unwrap(),
        Some(e.clone())
    );
    assert_eq!(
        s.vault_entry(other.id, "github").await.unwrap(),
        Some(theirs)
    );
    assert_eq!(s.vault_entries(t.id).await.unwrap(), vec![e.clone()]);

    let g = VaultGroup {
        id: "vtg_a".into(),
        tenant_id: t.id,
        name: "robots".into(),
        created_at: 1_500,
    };
    applied(&s, &t, vec![Effect::InsertVaultGroup(g.clone())], 1_500).await;
    let r = apply(&s, &t, vec![Effect::InsertVaultGroup(g.clone())], 1_500).await;
    assert_eq!(r, Err(StoreError::Conflict("vault_group_exists")));
    assert_eq!(s.vault_groups(t.id).await.unwrap(), vec![g.clone()]);
    assert!(s.vault_groups(other.id).await.unwrap().is_empty());
    // Another tenant can neither join its entry to this group nor move this entry.
    let r = apply(
        &s,
        &other,
        vec![Effect::SetVaultEntryGroup {
            entry_id: "vte_c".into(),
            tenant_id: other.id,
            group_id: Some("vtg_a".into()),
        }],
        1_600,
    )
    .await;
    assert_eq!(r, Err(STATE_CHANGED));
    applied(
        &s,
        &t,
        vec![Effect::SetVaultEntryGroup {
            entry_id: "vte_a".into(),
            tenant_id: t.id,
            group_id: Some("vtg_a".into()),
        }],
        1_600,
    )
    .await;
    let grouped = s.vault_entry(t.id, "github").await.unwrap().unwrap();
    assert_eq!(grouped.group_id.as_deref(), Some("vtg_a"));

    let by_entry = token(&t, "vtk_a", Some("vte_a"), None);
    let by_group = token(&t, "vtk_b", None, Some("vtg_a"));
    applied(
        &s,
        &t,
        vec![
            Effect::InsertVaultToken(by_entry.clone()),
            Effect::InsertVaultToken(by_group.clone()),
        ],
        2_000,
    )
    .await;
    assert_eq!(
        s.vault_token(b"vtk_a").await.unwrap(),
        Some(by_entry.clone())
    );
    assert_eq!(s.vault_tokens(t.id).await.unwrap().len(), 2);
    assert!(s.vault_tokens(other.id).await.unwrap().is_empty());
    // A token of one tenant cannot be revoked through another.
    let revoke = |tenant_id| Effect::RevokeVaultToken {
        id: "vtk_a".into(),
        tenant_id,
        at: 3_000,
    };
    let r = apply(&s, &other, vec![revoke(other.id)], 3_000).await;
    assert_eq!(r, Err(STATE_CHANGED));
    applied(&s, &t, vec![revoke(t.id)], 3_000).await;
    let r = apply(&s, &t, vec![revoke(t.id)], 3_000).await;
    assert_eq!(r, Err(STATE_CHANGED), "revoked once");
    let revoked = s.vault_token(b"vtk_a").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(3_000));

    // Deleting an entry takes its tokens; another tenant cannot delete it.
    let delete = |tenant_id| Effect::DeleteVaultEntry {
        id: "vte_a".into(),
        tenant_id,
    };
    let r = apply(&s, &other, vec![delete(other.id)], 4_000).await;
    assert_eq!(r, Err(STATE_CHANGED));
    applied(&s, &t, vec![delete(t.id)], 4_000).await;
    assert_eq!(s.vault_entry(t.id, "github").await.unwrap(), None);
    assert_eq!(s.vault_token(b"vtk_a").await.unwrap(), None);
    assert_eq!(s.vault_tokens(t.id).await.unwrap(), vec![by_group]);
}

pub async fn parallel_hotp_advances_take_distinct_counters(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let e = entry(&t, "vte_h", "bank", EntryKind::Hotp);
    applied(&s, &t, vec![Effect::InsertVaultEntry(e)], 1_000).await;
    // Every request advances from the counter it read, retrying when another won: 20
    // requests in parallel end with 20 distinct counters and the entry at 20.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let now = s.vault_entry(t.id, "bank").await.unwrap().unwrap().counter;
                let advance = Effect::AdvanceVaultCounter {
                    entry_id: "vte_h".into(),
                    expected: now,
                };
                match apply(&s, &t, vec![advance], 2_000).await {
                    Ok(()) => return now,
                    Err(e) => assert_eq!(e, STATE_CHANGED),
                }
            }
        }));
    }
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap());
    }
    got.sort();
    assert_eq!(got, (0..20).collect::<Vec<i64>>());
    let after = s.vault_entry(t.id, "bank").await.unwrap().unwrap();
    assert_eq!(after.counter, 20);
    // A stale expectation changes nothing; a TOTP entry has no counter to advance.
    let stale = Effect::AdvanceVaultCounter {
        entry_id: "vte_h".into(),
        expected: 3,
    };
    assert_eq!(apply(&s, &t, vec![stale], 3_000).await, Err(STATE_CHANGED));
    let totp = entry(&t, "vte_t", "mail", EntryKind::Totp);
    applied(&s, &t, vec![Effect::InsertVaultEntry(totp)], 3_000).await;
    let r = apply(
        &s,
        &t,
        vec![Effect::AdvanceVaultCounter {
            entry_id: "vte_t".into(),
            expected: 0,
        }],
        3_000,
    )
    .await;
    assert_eq!(r, Err(STATE_CHANGED));
}
