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

/// `migrate-store` carries security keys: a factor's label and credential id and the ceremony
/// table arrive as they were, checksums matching, and the PostgreSQL store reads them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_from_sqlite_carries_security_keys_and_their_ceremonies() {
    use twofold_core::model::*;
    use twofold_core::ports::Store;
    use twofold_core::webauthn::WebauthnChallenge;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("twofold.db");
    let sqlite = twofold_store::SqliteStore::open(&path).unwrap();
    let t = conformance::acme_tenant(&sqlite, 1).await;
    let audit = |action: &str| AuditRecord {
        tenant_id: Some(t.id),
        at: 2,
        actor: "test".into(),
        action: action.into(),
        user_id: None,
        factor_id: None,
        outcome: "ok".into(),
        reason: None,
        ip: None,
        request_id: None,
    };
    let new_user = NewUser {
        tenant_id: t.id,
        external_id: "alice".into(),
        email: None,
        phone: None,
        profile: None,
        is_admin: false,
        created_at: 2,
    };
    let u = sqlite
        .create_user(new_user, audit("user.create"))
        .await
        .unwrap();
    let mut key = Factor::pending("fac_key".into(), t.id, u.id, "webauthn", 3);
    key.label = Some("Blue YubiKey".into());
    key.credential_id = Some(vec![0, 1, 2, 0xff]);
    key.sealed_secret = vec![9; 64];
    sqlite
        .insert_factor(key.clone(), 10, audit("factor.enrol"))
        .await
        .unwrap();
    let ceremony = WebauthnChallenge {
        id: "wac_1".into(),
        tenant_id: t.id,
        user_id: u.id,
        purpose: "register".into(),
        binding: "ses_1".into(),
        state: r#"{"rs":{}}"#.into(),
        created_at: 4,
        expires_at: 300_004,
        used_at: Some(5),
    };
    let insert = twofold_core::messaging::Effect::InsertWebauthnChallenge(ceremony.clone());
    sqlite
        .apply(vec![insert], audit("webauthn.test"))
        .await
        .unwrap();
    drop(sqlite);

    let db = PgDatabase::fresh().await;
    let mut copied = twofold_store::transfer::sqlite_to_postgres(&path, &db.url, &mut |_| {}).await;
    for _ in 0..50 {
        // The dropped store lets go of its connections in a moment.
        if !matches!(
            copied,
            Err(twofold_store::transfer::TransferError::SourceInUse(_))
        ) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        copied = twofold_store::transfer::sqlite_to_postgres(&path, &db.url, &mut |_| {}).await;
    }
    let rows = |table: &str| {
        copied
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.table == table)
            .map(|r| r.rows)
    };
    assert_eq!(rows("factors"), Some(1));
    assert_eq!(rows("webauthn_challenges"), Some(1));
    let pg = store(&db).await;
    assert_eq!(pg.factors_of(u.id).await.unwrap(), vec![key]);
    assert_eq!(
        pg.webauthn_challenge("wac_1").await.unwrap(),
        Some(ceremony)
    );
}
