#![allow(clippy::unwrap_used)]
//! The conformance suite against the embedded SQLite store, plus SQLite-specific checks.

use std::sync::Arc;
use twofold_store::conformance::{self, acme_tenant, DynStore};
use twofold_store::SqliteStore;

twofold_store::conformance_tests!({
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = Arc::new(SqliteStore::open(dir.path().join("twofold.db")).unwrap());
    (store, dir)
});

#[tokio::test]
async fn migrations_are_recorded_and_reopening_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twofold.db");
    let s = SqliteStore::open(&path).unwrap();
    let names: Vec<String> = twofold_store::migrations::SQLITE
        .iter()
        .map(|(v, _)| v.to_string())
        .collect();
    assert_eq!(s.applied_migrations().await.unwrap(), names);
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.applied_migrations().await.unwrap(), names);
}

fn audit_row(at: i64) -> twofold_core::model::AuditRecord {
    twofold_core::model::AuditRecord {
        tenant_id: None,
        at,
        actor: "test".into(),
        action: "backup.test".into(),
        user_id: None,
        factor_id: None,
        outcome: "ok".into(),
        reason: None,
        ip: None,
        request_id: None,
    }
}

/// A backup taken page by page while another writer commits holds one snapshot: the rows
/// written one after the other form an unbroken prefix, with nothing after a gap. It reports
/// its progress, is private to its owner, and never replaces a file unless asked to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_is_a_consistent_copy_while_writes_continue() {
    use std::os::unix::fs::PermissionsExt;
    use twofold_core::ports::Store;
    use twofold_store::{backup, BackupError, BackupOptions};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("a.db");
    let s = SqliteStore::open(&src).unwrap();
    acme_tenant(&s, 1).await;
    for at in 0..3000 {
        s.append_audit(audit_row(at)).await.unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn({
        let (s, stop) = (s.clone(), stop.clone());
        async move {
            let mut at = 3000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.append_audit(audit_row(at)).await.unwrap();
                at += 1;
            }
            at
        }
    });

    let copy = dir.path().join("copy.db");
    let (src2, copy2) = (src.clone(), copy.clone());
    let (report, steps) = tokio::task::spawn_blocking(move || {
        let mut steps = Vec::new();
        let opts = BackupOptions {
            pages_per_step: 1,
            ..Default::default()
        };
        let r = backup(&src2, &copy2, &opts, &mut |p| steps.push(p)).unwrap();
        (r, steps)
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();

    assert!(steps.len() > 10, "one step per page: {}", steps.len());
    assert!(steps.windows(2).all(|w| w[0].pages_done <= w[1].pages_done));
    let last = steps.last().unwrap();
    assert_eq!(
        (last.pages_done, last.pages_total),
        (report.pages, report.pages)
    );
    assert_eq!(report.bytes, report.pages * last.page_size);
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // One snapshot: audit rows 0..n all there, in order, none after them.
    let c = rusqlite::Connection::open(&copy).unwrap();
    let (n, max_at, sum): (i64, i64, i64) = c
        .query_row(
            "SELECT count(*), max(at), sum(at) FROM audit_events WHERE action = 'backup.test'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert!(n >= 3000 && n <= written, "{n} of {written}");
    assert_eq!((max_at, sum), (n - 1, n * (n - 1) / 2), "a prefix, no gap");
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "one self-contained file");
    drop(c);
    let restored = SqliteStore::open(&copy).unwrap();
    assert_eq!(
        restored.tenant_by_slug("acme").await.unwrap().unwrap().name,
        "Acme"
    );
    drop(restored);

    // An existing file is kept unless replacing is asked for.
    let opts = BackupOptions::default();
    assert!(matches!(
        backup(&src, &copy, &opts, &mut |_| {}),
        Err(BackupError::Exists(_))
    ));
    let replace = BackupOptions {
        overwrite: true,
        ..opts
    };
    backup(&src, &copy, &replace, &mut |_| {}).unwrap();
    assert!(matches!(
        backup(
            &dir.path().join("none.db"),
            &dir.path().join("x.db"),
            &replace,
            &mut |_| {}
        ),
        Err(BackupError::NoSource(_))
    ));
    assert!(
        !dir.path().join("none.db").exists(),
        "never creates a source"
    );
}

/// Two handles on one file behave like two processes: each has its own writer thread.
fn two_handles() -> (DynStore, DynStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twofold.db");
    let a: DynStore = Arc::new(SqliteStore::open(&path).unwrap());
    let b: DynStore = Arc::new(SqliteStore::open(&path).unwrap());
    (a, b, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_never_claim_the_same_message() {
    let (a, b, _dir) = two_handles();
    conformance::two_handles_never_claim_the_same_message(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_accept_a_step_and_a_code_once() {
    let (a, b, _dir) = two_handles();
    conformance::two_handles_accept_a_step_and_a_code_once(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_advance_a_job_once() {
    let (a, b, _dir) = two_handles();
    conformance::two_handles_advance_a_job_once(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_complete_a_login_once() {
    let (a, b, _dir) = two_handles();
    conformance::two_handles_complete_a_login_once(a, b).await;
}

#[tokio::test]
async fn a_0001_database_upgrades_in_place() {
    use twofold_core::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(twofold_store::migrations::SQLITE[0].1)
            .unwrap();
        c.execute_batch(
            "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES ('0001_init', 0);
             INSERT INTO tenants (slug, name, created_at) VALUES ('acme', 'Acme', 1);
             INSERT INTO users (tenant_id, external_id, created_at) VALUES (1, 'alice', 2);
             INSERT INTO factors (id, tenant_id, user_id, kind, status, sealed_secret, algorithm,
                                  digits, period, last_step, drift, version, failures, created_at)
             VALUES ('fac_a', 1, 1, 'totp', 'active', x'01', 'SHA1', 6, 30, -1, 0, 1, 0, 3);",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    let t = s.tenant_by_slug("acme").await.unwrap().unwrap();
    assert_eq!((t.sender_name, t.sms_countries), (None, None));
    let factors = s.factors_of(1).await.unwrap();
    assert_eq!(factors.len(), 1);
    assert_eq!(factors[0].destination, None);
    let alice = s.user(t.id, "alice").await.unwrap().unwrap();
    assert_eq!((alice.generation, alice.skip_until), (0, None));
    assert_eq!(s.policy(t.id).await.unwrap(), None);
}

/// Another process holding the write lock past the busy timeout: the writer's `BEGIN` fails
/// with `Busy`, and so does every write that queued up behind it while it waited, at once.
/// Left in the queue, each of those would wait out a busy timeout of its own, 512 at a time:
/// under steady traffic the wait grows with the queue (minutes at its full depth) instead of
/// staying within one timeout, and the server never answers its 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_queued_behind_another_process_lock_are_refused_together() {
    use twofold_core::ports::{Store, StoreError};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twofold.db");
    let s = Arc::new(SqliteStore::open(&path).unwrap());
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();

    // Three batches' worth, all queued long before the first busy timeout (5 s) ends.
    let n = 3 * twofold_store::MAX_BATCH;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for at in 0..n {
        let (s, tx) = (s.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = tx.send(s.append_audit(audit_row(at as i64)).await);
        });
    }
    drop(tx);
    let first = rx.recv().await.unwrap();
    assert!(matches!(first, Err(StoreError::Busy)), "{first:?}");
    // The lock goes once the first refusal is in: a write still queued would now succeed.
    other.execute_batch("ROLLBACK").unwrap();
    let mut busy = 1;
    while let Some(r) = rx.recv().await {
        busy += usize::from(matches!(r, Err(StoreError::Busy)));
    }
    assert_eq!(
        busy, n,
        "every write queued during the wait is refused with it"
    );
    // And the writer is fine afterwards.
    s.append_audit(audit_row(0)).await.unwrap();
}
