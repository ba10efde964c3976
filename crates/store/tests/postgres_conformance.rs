#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The conformance suite against PostgreSQL, plus PostgreSQL-specific checks. Each test gets a
//! database of its own (`twofold_t_<random>`), created through the server named by
//! `TWOFOLD_TEST_PG_URL` (default [`DEFAULT_URL`]) and dropped when the test ends. These tests
//! never skip: without a reachable server they fail and say how to get one.

use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::NoTls;
use twofold_core::ports::StoreError;
use twofold_store::conformance::{self, DynStore};
use twofold_store::PgStore;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn admin_url() -> String {
    std::env::var("TWOFOLD_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// A connection to the server's admin database, or a failure that says what to do.
async fn admin_client(url: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url
        .parse()
        .unwrap_or_else(|e| panic!("TWOFOLD_TEST_PG_URL is not a PostgreSQL URL: {e}"));
    config.connect_timeout(Duration::from_secs(5));
    match config.connect(NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => panic!(
            "PostgreSQL is not reachable at {hosts:?} port {ports:?} ({e}; {cause}).\n\
             These tests need a PostgreSQL server where this user may CREATE DATABASE:\n\
             run scripts/test.sh (it installs and starts one), or start the installed cluster\n\
             (`pg_ctlcluster --skip-systemctl-redirect <version> main start`), or set\n\
             TWOFOLD_TEST_PG_URL (default {DEFAULT_URL}) to a server that is running.",
            hosts = config.get_hosts(),
            ports = config.get_ports(),
            cause = std::error::Error::source(&e)
                .map(|c| c.to_string())
                .unwrap_or_default(),
        ),
    }
}

/// `url` pointing at database `name` instead (URL or `key=value` form).
fn with_database(url: &str, name: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (rest, params) = match rest.split_once('?') {
                Some((rest, params)) => (rest, format!("?{params}")),
                None => (rest, String::new()),
            };
            let authority = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{authority}/{name}{params}")
        }
        None => format!("{url} dbname={name}"),
    }
}

/// A database created for one test, dropped (with any connection still open to it) when this
/// value is dropped.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> Self {
        let admin = admin_url();
        let client = admin_client(&admin).await;
        let name = format!("twofold_t_{:016x}", rand::random::<u64>());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot CREATE DATABASE {name}: {e:?}"));
        Self {
            url: with_database(&admin, &name),
            name,
        }
    }

    async fn store(&self) -> PgStore {
        PgStore::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs on the test's runtime, which cannot block on a future: a short-lived
        // thread with a runtime of its own does it.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async { admin_client(&admin_url()).await.batch_execute(&sql).await })
                .ok()
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

twofold_store::conformance_tests!({
    let db = TestDb::create().await;
    let store: DynStore = Arc::new(db.store().await);
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
    let db = TestDb::create().await;
    let s = db.store().await;
    assert_eq!(s.applied_migrations().await.unwrap(), versions());
    drop(s);
    let s = db.store().await;
    assert_eq!(s.applied_migrations().await.unwrap(), versions());
}

/// Nodes starting at the same moment on an empty database: the advisory lock lets one
/// migrate while the others wait, then find nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let db = TestDb::create().await;
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
    let db = TestDb::create().await;
    drop(db.store().await);
    let client = admin_client(&db.url).await;
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
    let db = TestDb::create().await;
    let (a, b): (DynStore, DynStore) = (Arc::new(db.store().await), Arc::new(db.store().await));
    conformance::two_handles_never_claim_the_same_message(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_accept_a_step_and_a_code_once() {
    let db = TestDb::create().await;
    let (a, b): (DynStore, DynStore) = (Arc::new(db.store().await), Arc::new(db.store().await));
    conformance::two_handles_accept_a_step_and_a_code_once(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_advance_a_job_once() {
    let db = TestDb::create().await;
    let (a, b): (DynStore, DynStore) = (Arc::new(db.store().await), Arc::new(db.store().await));
    conformance::two_handles_advance_a_job_once(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_complete_a_login_once() {
    let db = TestDb::create().await;
    let (a, b): (DynStore, DynStore) = (Arc::new(db.store().await), Arc::new(db.store().await));
    conformance::two_handles_complete_a_login_once(a, b).await;
}

/// A database of the first released PostgreSQL schema (0001 and 0002) takes the later
/// migrations in place: existing users get generation 0 and no skip, no policy.
#[tokio::test]
async fn a_0002_database_upgrades_in_place() {
    use twofold_core::ports::Store;
    let db = TestDb::create().await;
    {
        let client = admin_client(&db.url).await;
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
    let s = db.store().await;
    assert_eq!(s.applied_migrations().await.unwrap(), versions());
    let t = s.tenant_by_slug("acme").await.unwrap().unwrap();
    let alice = s.user(t.id, "alice").await.unwrap().unwrap();
    assert_eq!((alice.generation, alice.skip_until), (0, None));
    assert_eq!(s.admins_of(t.id).await.unwrap(), vec![alice]);
    assert_eq!(s.policy(t.id).await.unwrap(), None);
}

#[test]
fn the_test_database_replaces_only_the_database_name() {
    assert_eq!(
        with_database("postgres://u:p@h:5/postgres?sslmode=disable", "t1"),
        "postgres://u:p@h:5/t1?sslmode=disable"
    );
    assert_eq!(with_database("postgresql://h", "t1"), "postgresql://h/t1");
    assert_eq!(
        with_database("host=h user=u", "t1"),
        "host=h user=u dbname=t1"
    );
}
