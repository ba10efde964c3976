#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The conformance suite against PostgreSQL, plus PostgreSQL-specific checks. Each test gets a
//! database of its own from [`PgDatabase::fresh`] (the server named by `TWOFOLD_TEST_PG_URL`),
//! dropped when the test ends. These tests never skip: without a reachable server they fail and
//! say how to get one.

use std::sync::Arc;
use twofold_core::ports::StoreError;
use twofold_store::conformance::{self, DynStore};
use twofold_store::PgStore;
use twofold_testkit::PgDatabase;

async fn store(db: &PgDatabase) -> PgStore {
    PgStore::connect(&db.url).await.unwrap()
}

twofold_store::conformance_tests!({
    let db = PgDatabase::fresh().await;
    let store: DynStore = Arc::new(store(&db).await);
    (store, db)
});

fn versions() -> Vec<String> {
    twofold_store::migrations::POSTGRES
        .iter()
        .map(|(v, _)| v.to_string())
        .collect()
}

#[tokio::test]
async fn migrations_are_recorded_and_reconnecting_is_idempotent() {
    let db = PgDatabase::fresh().await;
    let s = store(&db).await;
    assert_eq!(s.applied_migrations().await.unwrap(), versions());
    drop(s);
    let s = store(&db).await;
    assert_eq!(s.applied_migrations().await.unwrap(), versions());
}

/// Nodes starting at the same moment on an empty database: the advisory lock lets one
/// migrate while the others wait, then find nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let db = PgDatabase::fresh().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let url = db.url.clone();
        tasks.push(tokio::spawn(async move { PgStore::connect(&url).await }));
    }
    for task in tasks {
        let s = task.await.unwrap().unwrap();
        assert_eq!(s.applied_migrations().await.unwrap(), versions());
    }
}

#[tokio::test]
async fn a_database_from_a_newer_twofold_is_refused() {
    let db = PgDatabase::fresh().await;
    drop(store(&db).await);
    let client = db.client().await;
    client
        .batch_execute("INSERT INTO schema_migrations VALUES ('9999_future', 0)")
        .await
        .unwrap();
    match PgStore::connect(&db.url).await {
        Err(StoreError::Backend(m)) => assert!(m.contains("9999_future"), "{m}"),
        Err(e) => panic!("unexpected error {e:?}"),
        Ok(_) => panic!("a newer database was opened"),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_busy_and_a_bad_url_is_refused() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    assert!(matches!(
        PgStore::connect("postgres://postgres@127.0.0.1:1/twofold").await,
        Err(StoreError::Busy)
    ));
    assert!(matches!(
        PgStore::connect("mysql://nope").await,
        Err(StoreError::Backend(m)) if !m.contains("nope")
    ));
}

/// Two pools on one database behave like two nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_never_claim_the_same_message() {
    let db = PgDatabase::fresh().await;
    let (a, b): (DynStore, DynStore) = (Arc::new(store(&db).await), Arc::new(store(&db).await));
    conformance::two_handles_never_claim_the_same_message(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_accept_a_step_and_a_code_once() {
    let db = PgDatabase::fresh().await;
    let (a, b): (DynStore, DynStore) = (Arc::new(store(&db).await), Arc::new(store(&db).await));
    conformance::two_handles_accept_a_step_and_a_code_once(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_advance_a_job_once() {
    let db = PgDatabase::fresh().await;
    let (a, b): (DynStore, DynStore) = (Arc::new(store(&db).await), Arc::new(store(&db).await));
    conformance::two_handles_advance_a_job_once(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_complete_a_login_once() {
    let db = PgDatabase::fresh().await;
    let (a, b): (DynStore, DynStore) = (Arc::new(store(&db).await), Arc::new(store(&db).await));
    conformance::two_handles_complete_a_login_once(a, b).await;
}

/// A database of the first released PostgreSQL schema (0001 and 0002) takes the later
/// migrations in place: existing users get generation 0 and no skip, no policy.
#[tokio::test]
async fn a_0002_database_upgrades_in_place() {
    use twofold_core::ports::Store;
    let db = PgDatabase::fresh().await;
    {
        let client = db.client().await;
        for (_, sql) in &twofold_store::migrations::POSTGRES[..2] {
            client.batch_execute(sql).await.unwrap();
        }
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at BIGINT NOT NULL);
                 INSERT INTO schema_migrations VALUES ('0001_init', 0), ('0002_messaging', 0);
                 INSERT INTO tenants (slug, name, created_at) VALUES ('acme', 'Acme', 1);
                 INSERT INTO users (tenant_id, external_id, is_admin, created_at)
                 VALUES (1, 'alice', TRUE, 2);",
            )
            .await
            .unwrap();
    }
    let s = store(&db).await;
    assert_eq!(s.applied_migrations().await.unwrap(), versions());
    let t = s.tenant_by_slug("acme").await.unwrap().unwrap();
    let alice = s.user(t.id, "alice").await.unwrap().unwrap();
    assert_eq!((alice.generation, alice.skip_until), (0, None));
    assert_eq!(s.admins_of(t.id).await.unwrap(), vec![alice]);
    assert_eq!(s.policy(t.id).await.unwrap(), None);
}

#[test]
fn a_redacted_url_never_shows_the_password() {
    for (url, want) in [
        (
            "postgres://app:s3cret@db.internal:6432/twofold?sslmode=disable",
            "postgres://app@db.internal:6432/twofold?sslmode=disable",
        ),
        (
            "postgres://app:s3cret@db/twofold?sslrootcert=%2Fca.pem&sslmode=verify-full",
            "postgres://app@db:5432/twofold?sslmode=verify-full&sslrootcert=/ca.pem",
        ),
        (
            "postgresql://app@h1,h2/twofold?password=s3cret",
            "postgres://app@h1:5432,h2:5432/twofold",
        ),
        (
            "host=h user=app password=s3cret dbname=twofold",
            "postgres://app@h:5432/twofold",
        ),
    ] {
        assert_eq!(PgStore::redacted_url(url), want);
    }
    assert_eq!(
        PgStore::redacted_url("postgres://app:s3cret@h:notaport/x"),
        "<invalid PostgreSQL URL>"
    );
}
