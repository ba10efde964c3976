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

#[tokio::test]
async fn backup_is_a_consistent_copy() {
    use twofold_core::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("a.db")).unwrap();
    acme_tenant(&s, 1).await;
    let copy = dir.path().join("copy.db");
    s.backup_to(copy.clone()).await.unwrap();
    let restored = SqliteStore::open(&copy).unwrap();
    assert_eq!(
        restored.tenant_by_slug("acme").await.unwrap().unwrap().name,
        "Acme"
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
