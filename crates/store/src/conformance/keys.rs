//! Conformance checks for master key rotation: the cluster's sealing-key state, the nodes' key
//! reports, paging through sealed values and re-sealing them conditionally, and the core's
//! sweep over a real store with real keys.

use super::logins::{applied, token};
use super::*;
use twofold_core::keys::*;
use twofold_core::login::Webhook;
use twofold_core::messaging::*;
use twofold_core::security::*;
use twofold_core::service::keys::sweep_sealed;
use twofold_crypto::{KeyMaterial, Keyring};

pub async fn the_key_state_moves_one_version_at_a_time(s: DynStore) {
    assert_eq!(s.key_state().await.unwrap(), KeyState::default());
    let set = |expected: i64, active: Option<&str>, pending: Option<&str>, at: i64| {
        let s = s.clone();
        let (active, pending) = (active.map(String::from), pending.map(String::from));
        async move {
            let change = KeyChange {
                expected_version: expected,
                active,
                pending,
                at,
            };
            s.set_key_state(change, audit("key.rotate", None, at))
                .await
                .unwrap()
        }
    };
    assert!(set(0, None, Some("bbbbbbbb"), 10).await);
    assert!(
        !set(0, Some("cccccccc"), None, 11).await,
        "a first row only once"
    );
    assert!(
        !set(2, Some("cccccccc"), None, 11).await,
        "not from a later version"
    );
    let pending = s.key_state().await.unwrap();
    assert_eq!(
        pending,
        KeyState {
            active: None,
            pending: Some("bbbbbbbb".into()),
            version: 1,
            changed_at: 10,
        }
    );
    assert!(set(1, Some("bbbbbbbb"), None, 20).await);
    assert!(
        !set(1, None, None, 21).await,
        "a stale version changes nothing"
    );
    let state = s.key_state().await.unwrap();
    assert_eq!(
        (
            state.active.as_deref(),
            state.pending,
            state.version,
            state.changed_at
        ),
        (Some("bbbbbbbb"), None, 2, 20)
    );
    let audited = s
        .list_audit(AuditQuery {
            tenant_id: None,
            user_id: None,
            action: Some("key.rotate".into()),
            before_id: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        audited.len(),
        2,
        "only the changes that happened are audited"
    );
}

/// Two concurrent changes from one version: exactly one wins.
pub async fn parallel_key_state_changes_succeed_once(s: DynStore) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let change = KeyChange {
                expected_version: 0,
                active: Some(format!("{i:08}")),
                pending: None,
                at: i,
            };
            s.set_key_state(change, audit("key.rotate", None, i))
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    assert_eq!(s.key_state().await.unwrap().version, 1);
}

fn node(id: &str, keys: &[&str], sealing: &str, seen_at: i64) -> NodeKeys {
    NodeKeys {
        node_id: id.into(),
        key_ids: keys.iter().map(|k| k.to_string()).collect(),
        sealing_key_id: sealing.into(),
        started_at: 5,
        seen_at,
    }
}

pub async fn node_reports_replace_each_other_and_age_out(s: DynStore) {
    s.report_node_keys(node("b/10.0.0.2:8080/7", &["aaaaaaaa"], "aaaaaaaa", 100))
        .await
        .unwrap();
    s.report_node_keys(node("a/10.0.0.1:8080/9", &["aaaaaaaa"], "aaaaaaaa", 100))
        .await
        .unwrap();
    // A later report of the same node replaces its keys and time, not its start.
    let mut again = node(
        "a/10.0.0.1:8080/9",
        &["aaaaaaaa", "bbbbbbbb"],
        "bbbbbbbb",
        200,
    );
    again.started_at = 150;
    s.report_node_keys(again).await.unwrap();
    let all = s.node_keys(0).await.unwrap();
    assert_eq!(
        all,
        vec![
            node(
                "a/10.0.0.1:8080/9",
                &["aaaaaaaa", "bbbbbbbb"],
                "bbbbbbbb",
                200
            ),
            node("b/10.0.0.2:8080/7", &["aaaaaaaa"], "aaaaaaaa", 100),
        ]
    );
    let recent = s.node_keys(150).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].node_id, "a/10.0.0.1:8080/9");
    assert_eq!(s.prune_node_keys(150).await.unwrap(), 1);
    assert_eq!(s.node_keys(0).await.unwrap().len(), 1);
}

/// One row in every sealed column, plus rows that hold no sealed value: an SMS factor, a
/// message already sent (its parameters wiped), a webhook, and a revert link that restores
/// nothing. Values are sealed under `ring` with the owners the core uses.
struct Sealed {
    t: Tenant,
    u: User,
}

fn seal(ring: &Keyring, what: &str, owner: &str) -> Vec<u8> {
    ring.seal(what.as_bytes(), owner).unwrap()
}

fn restore_undo(ring: &Keyring, t: &Tenant, u: &User, factor_id: &str) -> String {
    let mut f = factor(t, u, factor_id, FactorStatus::Active);
    f.sealed_secret = seal(
        ring,
        "removed-seed",
        &Factor::seal_owner(t.id, u.id, factor_id),
    );
    let undo = Undo::RestoreFactor {
        factor: Box::new(StoredFactor::of(&f)),
    };
    serde_json::to_string(&undo).unwrap()
}

async fn fill_sealed(s: &DynStore, ring: &Keyring) -> Sealed {
    let t = tenant(s, "acme").await;
    let u = user(s, &t, "alice").await;
    for (id, kind) in [("fac_t1", "totp"), ("fac_t2", "totp"), ("fac_sms", "sms")] {
        let mut f = factor(&t, &u, id, FactorStatus::Active);
        f.kind = kind.into();
        f.sealed_secret = if kind == "totp" {
            seal(ring, id, &Factor::seal_owner(t.id, u.id, id))
        } else {
            Vec::new()
        };
        s.insert_factor(f, 10, audit("factor.enrol", Some(t.id), 3))
            .await
            .unwrap();
    }
    let message = |id: &str| NewMessage {
        message_id: id.into(),
        tenant_id: t.id,
        user_id: Some(u.id),
        channel: Channel::Email,
        destination: "alice@example.com".into(),
        template: TemplateKind::SecurityNotice,
        sealed_params: seal(ring, r#"{"code":"123456"}"#, &params_owner(id)),
        created_at: 4,
    };
    s.enqueue(vec![message("m1@keys"), message("m2@keys")], None)
        .await
        .unwrap();
    let claimed = s.claim_messages("w", 5, 60_000, 1).await.unwrap();
    assert_eq!(claimed[0].message_id, "m1@keys");
    assert!(s
        .finish_message(claimed[0].id, "w", DeliveryResult::Sent, 6)
        .await
        .unwrap());
    let hook = Webhook {
        id: "whk_a".into(),
        tenant_id: t.id,
        url: "https://hooks.example.com/a".into(),
        sealed_secret: seal(ring, "whsec_x", "webhook:whk_a"),
        events: vec!["login.decided".into()],
        created_at: 7,
    };
    let link = |n: u32, undo: String| RevertLink {
        id: format!("rvt_{n}"),
        token_hash: token("rvt", n),
        tenant_id: t.id,
        user_id: u.id,
        undo,
        change: "A factor was removed".into(),
        created_at: 8,
        expires_at: 8 + REVERT_TTL_MS,
        used_at: None,
    };
    applied(
        s,
        &t,
        vec![
            Effect::InsertWebhook(hook),
            Effect::InsertRevertLink(link(1, restore_undo(ring, &t, &u, "fac_gone"))),
            Effect::InsertRevertLink(link(2, r#"{"kind":"nothing"}"#.into())),
        ],
        8,
    )
    .await;
    Sealed { t, u }
}

/// Every row of `column`, one page of `page` rows at a time.
async fn all_sealed(s: &DynStore, column: SealedColumn, page: u32) -> Vec<SealedRow> {
    let mut out: Vec<SealedRow> = Vec::new();
    loop {
        let after = out.last().map(|r| r.key.clone());
        let rows = s.sealed_rows(column, after, page).await.unwrap();
        let done = rows.len() < page as usize;
        out.extend(rows);
        if done {
            return out;
        }
    }
}

pub async fn sealed_values_are_paged_by_key_in_every_column(s: DynStore) {
    let ring = Keyring::new(KeyMaterial::generate());
    let Sealed { t, u } = fill_sealed(&s, &ring).await;
    let keys = |rows: &[SealedRow]| rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>();
    let factors = all_sealed(&s, SealedColumn::FactorSecret, 1).await;
    assert_eq!(
        keys(&factors),
        vec!["fac_t1", "fac_t2"],
        "SMS factors hold no seed"
    );
    assert!(factors
        .iter()
        .all(|r| r.tenant_id == t.id && r.user_id == Some(u.id)));
    assert_eq!(
        ring.unseal(&factors[0].value, &Factor::seal_owner(t.id, u.id, "fac_t1"))
            .unwrap(),
        b"fac_t1"
    );
    let outbox = all_sealed(&s, SealedColumn::OutboxParams, 10).await;
    assert_eq!(keys(&outbox), vec!["m2@keys"], "sent messages are wiped");
    assert_eq!(outbox[0].user_id, None);
    let hooks = all_sealed(&s, SealedColumn::WebhookSecret, 10).await;
    assert_eq!(
        (keys(&hooks), hooks[0].user_id),
        (vec!["whk_a".into()], None)
    );
    let links = all_sealed(&s, SealedColumn::RevertUndo, 10).await;
    assert_eq!(
        keys(&links),
        vec!["rvt_1"],
        "only undo records that hold a seed"
    );
    assert_eq!(links[0].user_id, Some(u.id));
    let undo: Undo = serde_json::from_slice(&links[0].value).unwrap();
    assert_eq!(undo.kind(), "restore_factor");
    // Past the last key: nothing.
    assert!(s
        .sealed_rows(SealedColumn::FactorSecret, Some("fac_t2".into()), 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn a_reseal_changes_only_rows_that_still_hold_what_was_read(s: DynStore) {
    let ring = Keyring::new(KeyMaterial::generate());
    let Sealed { t, u } = fill_sealed(&s, &ring).await;
    let factors = all_sealed(&s, SealedColumn::FactorSecret, 10).await;
    let links = all_sealed(&s, SealedColumn::RevertUndo, 10).await;
    let outbox = all_sealed(&s, SealedColumn::OutboxParams, 10).await;
    let changes = vec![
        Reseal {
            column: SealedColumn::FactorSecret,
            key: "fac_t1".into(),
            from: factors[0].value.clone(),
            to: vec![1, 2, 3],
        },
        // Someone changed fac_t2 since it was read: left alone.
        Reseal {
            column: SealedColumn::FactorSecret,
            key: "fac_t2".into(),
            from: vec![9, 9, 9],
            to: vec![4, 5, 6],
        },
        Reseal {
            column: SealedColumn::RevertUndo,
            key: "rvt_1".into(),
            from: links[0].value.clone(),
            to: br#"{"kind":"nothing"}"#.to_vec(),
        },
        Reseal {
            column: SealedColumn::OutboxParams,
            key: "m2@keys".into(),
            from: outbox[0].value.clone(),
            to: vec![7],
        },
        Reseal {
            column: SealedColumn::WebhookSecret,
            key: "whk_missing".into(),
            from: vec![1],
            to: vec![2],
        },
    ];
    assert_eq!(
        s.reseal(changes).await.unwrap(),
        vec![true, false, true, true, false]
    );
    let stored = s.factors_of(u.id).await.unwrap();
    let secret = |id: &str| {
        stored
            .iter()
            .find(|f| f.id == id)
            .unwrap()
            .sealed_secret
            .clone()
    };
    assert_eq!(secret("fac_t1"), vec![1, 2, 3]);
    assert_eq!(secret("fac_t2"), factors[1].value);
    let link = s.revert_link(&token("rvt", 1)).await.unwrap().unwrap();
    assert_eq!(
        (link.undo.as_str(), link.tenant_id),
        (r#"{"kind":"nothing"}"#, t.id)
    );
    assert_eq!(
        all_sealed(&s, SealedColumn::OutboxParams, 10).await[0].value,
        vec![7]
    );
}

/// The core's sweep over a real store: every blob of every column moves to the new key with
/// its own owner (each opens with the new key alone), the census says so, and a blob that
/// does not open under its owner is reported and left as it was.
pub async fn a_rotation_sweep_reseals_every_column_under_the_new_key(s: DynStore) {
    let (old, new) = (KeyMaterial::generate(), KeyMaterial::generate());
    let old_ring = Keyring::new(old.clone());
    let Sealed { t, u } = fill_sealed(&s, &old_ring).await;
    // A seed copied onto another factor's row: its owner does not match, so it never opens.
    let mut misplaced = factor(&t, &u, "fac_x", FactorStatus::Active);
    misplaced.sealed_secret = all_sealed(&s, SealedColumn::FactorSecret, 10).await[0]
        .value
        .clone();
    s.insert_factor(misplaced, 10, audit("factor.enrol", Some(t.id), 9))
        .await
        .unwrap();

    let census = sweep_sealed(&*s, None, 2, &mut |_| {}).await.unwrap();
    assert_eq!(census.by_key().get(&old.id()), Some(&6));
    assert_eq!(census.resealed, 0, "counting changes nothing");

    let both = Keyring::from_keys([old.clone(), new.clone()], &new.id()).unwrap();
    let mut seen = Vec::new();
    let census = sweep_sealed(&*s, Some(&both), 2, &mut |p| seen.push(p))
        .await
        .unwrap();
    assert_eq!(census.resealed, 5);
    assert_eq!(census.raced, 0);
    assert_eq!(census.by_key().get(&new.id()), Some(&5));
    assert_eq!(census.under(&old.id()).0, 1, "the misplaced seed stays");
    assert_eq!(census.unreadable.len(), 1);
    assert_eq!(
        (census.unreadable[0].0, census.unreadable[0].1.as_str()),
        (SealedColumn::FactorSecret, "fac_x")
    );
    let factors_done = seen
        .iter()
        .find(|p| p.column == SealedColumn::FactorSecret && p.done)
        .unwrap();
    assert_eq!((factors_done.rows, factors_done.resealed), (3, 2));
    assert!(seen.iter().filter(|p| p.done).count() == SealedColumn::ALL.len());

    // Each value opens with the new key alone, bound to the same owner as before.
    let only_new = Keyring::new(new.clone());
    let factors = all_sealed(&s, SealedColumn::FactorSecret, 10).await;
    for r in factors.iter().filter(|r| r.key != "fac_x") {
        let owner = Factor::seal_owner(t.id, u.id, &r.key);
        assert_eq!(only_new.unseal(&r.value, &owner).unwrap(), r.key.as_bytes());
    }
    let outbox = all_sealed(&s, SealedColumn::OutboxParams, 10).await;
    assert_eq!(
        only_new
            .unseal(&outbox[0].value, &params_owner("m2@keys"))
            .unwrap(),
        br#"{"code":"123456"}"#
    );
    let hooks = all_sealed(&s, SealedColumn::WebhookSecret, 10).await;
    assert_eq!(
        only_new.unseal(&hooks[0].value, "webhook:whk_a").unwrap(),
        b"whsec_x"
    );
    let link = s.revert_link(&token("rvt", 1)).await.unwrap().unwrap();
    let Undo::RestoreFactor { factor } = serde_json::from_str(&link.undo).unwrap() else {
        panic!("the undo record changed kind: {}", link.undo);
    };
    let restored = factor.restore(t.id, u.id).unwrap();
    assert_eq!(
        only_new
            .unseal(
                &restored.sealed_secret,
                &Factor::seal_owner(t.id, u.id, "fac_gone")
            )
            .unwrap(),
        b"removed-seed"
    );

    // A second pass finds nothing left to move.
    let again = sweep_sealed(&*s, Some(&both), 100, &mut |_| {})
        .await
        .unwrap();
    assert!(!again.moved());
    assert_eq!(again.by_key(), census.by_key());
}
