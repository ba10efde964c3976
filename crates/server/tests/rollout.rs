//! The setup-email fan-out when 2FA becomes optional or required: every user in scope is
//! queued exactly once, even when the process dies half-way and another one resumes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use twofold_core::messaging::{params_owner, MessageParams, MessageQuery, TemplateKind};
use twofold_core::ports::{ManualClock, Store};
use twofold_core::service::{NewUserInput, RequestMeta, JOB_BATCH};
use twofold_core::{Actor, Twofold, TwofoldConfig};
use twofold_crypto::{Hasher, KeyMaterial, Keyring};
use twofold_store::SqliteStore;

const START_MS: i64 = 1_795_651_200_000;
/// As many users as the issue names; created through the store's group commit in seconds.
const USERS: usize = 100_000;

struct Node {
    core: Arc<Twofold>,
    store: Arc<dyn Store>,
}

fn node(
    db: &std::path::Path,
    keyring: &Keyring,
    hasher: &Hasher,
    clock: &Arc<ManualClock>,
) -> Node {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db).unwrap());
    let core = Arc::new(Twofold::new(
        store.clone(),
        clock.clone(),
        keyring.clone(),
        hasher.clone(),
        TwofoldConfig::default(),
    ));
    Node { core, store }
}

async fn invitations(store: &Arc<dyn Store>) -> Vec<i64> {
    let mut users = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_messages(MessageQuery {
                before_id: before,
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        users.extend(
            page.iter()
                .filter(|m| m.template == TemplateKind::Invitation)
                .map(|m| m.user_id.unwrap()),
        );
    }
    users
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_resume_after_a_crash_without_missing_or_repeating_anyone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("twofold.db");
    let keyring = Keyring::new(KeyMaterial::generate());
    let hasher = Hasher::new(KeyMaterial::generate());
    let clock = Arc::new(ManualClock::new(START_MS));
    let first = node(&db, &keyring, &hasher, &clock);
    let (cli, meta) = (Actor::Cli, RequestMeta::default());
    first
        .core
        .create_tenant(&cli, &meta, "acme", "Acme")
        .await
        .unwrap();
    let new_user = |id: String, admin: bool| NewUserInput {
        email: Some(format!("{id}@example.com")),
        external_id: id,
        phone: None,
        profile: None,
        is_admin: admin,
    };
    first
        .core
        .create_user(&cli, &meta, "acme", new_user("boss".into(), true))
        .await
        .unwrap();
    // Many users at once: the store's group commit takes them in few transactions.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..USERS {
        // Stay well under the writer's queue depth: a full queue is overload (503).
        if tasks.len() >= 2000 {
            tasks.join_next().await;
        }
        let core = first.core.clone();
        tasks.spawn(async move {
            core.create_user(
                &Actor::Cli,
                &RequestMeta::default(),
                "acme",
                NewUserInput {
                    email: Some(format!("u{i}@example.com")),
                    external_id: format!("u{i}"),
                    phone: None,
                    profile: None,
                    is_admin: false,
                },
            )
            .await
            .unwrap();
        });
    }
    while tasks.join_next().await.is_some() {}

    // 2FA becomes optional: proposed, then confirmed with the code from the admin's email.
    let policy = twofold_core::policy::Policy {
        enforcement: twofold_core::policy::Enforcement::Optional,
        ..Default::default()
    };
    let (proposal, _) = first
        .core
        .propose_policy(&cli, &meta, "acme", "boss", policy)
        .await
        .unwrap();
    let code_message = first
        .store
        .list_messages(MessageQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    let sealed = code_message.sealed_params.unwrap();
    let params: MessageParams = serde_json::from_slice(
        &keyring
            .unseal(&sealed, &params_owner(&code_message.message_id))
            .unwrap(),
    )
    .unwrap();
    let verdict = first
        .core
        .confirm_proposal(&cli, &meta, "acme", &proposal.id, &params["code"])
        .await
        .unwrap();
    assert!(verdict.is_accepted());

    // The first process does half the batches, then dies.
    let half = USERS / JOB_BATCH as usize / 2;
    assert_eq!(first.core.run_jobs(half).await.unwrap(), half);
    let halfway = invitations(&first.store).await;
    assert_eq!(halfway.len(), half * JOB_BATCH as usize);
    drop(first);

    // Another process takes over on the same database.
    let second = node(&db, &keyring, &hasher, &clock);
    let batches = second.core.run_jobs(usize::MAX).await.unwrap();
    // The rest: USERS + 1 (the admin) users in batches of JOB_BATCH, the last one short.
    let total = (USERS + 1).div_ceil(JOB_BATCH as usize);
    assert_eq!(batches, total - half, "only the rest is left");
    assert_eq!(
        second.core.run_jobs(usize::MAX).await.unwrap(),
        0,
        "and then nothing"
    );
    let all = invitations(&second.store).await;
    let mut per_user: HashMap<i64, usize> = HashMap::new();
    for u in &all {
        *per_user.entry(*u).or_default() += 1;
    }
    assert_eq!(
        per_user.len(),
        USERS + 1,
        "everyone (and the admin) is invited"
    );
    assert!(per_user.values().all(|n| *n == 1), "nobody twice");
}
