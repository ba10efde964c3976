#![allow(clippy::unwrap_used)]
//! The conformance suite against the embedded SQLite store, plus SQLite-specific checks.

use std::sync::Arc;
use twofold_store::conformance::DynStore;
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
async fn migration_files_match_the_embedded_list() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".sql")
                .to_string()
        })
        .collect();
    files.sort();
    let embedded: Vec<&str> = twofold_store::migrations::SQLITE
        .iter()
        .map(|(v, _)| *v)
        .collect();
    assert_eq!(files, embedded);
}

#[tokio::test]
async fn backup_is_a_consistent_copy() {
    use twofold_core::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path().join("a.db")).unwrap();
    let t = twofold_core::model::NewTenant {
        slug: "acme".into(),
        name: "Acme".into(),
        created_at: 1,
        first_key: None,
    };
    s.create_tenant(
        t,
        twofold_core::model::AuditRecord {
            tenant_id: None,
            at: 1,
            actor: "t".into(),
            action: "tenant.create".into(),
            user_id: None,
            factor_id: None,
            outcome: "ok".into(),
            reason: None,
            ip: None,
            request_id: None,
        },
    )
    .await
    .unwrap();
    let copy = dir.path().join("copy.db");
    s.backup_to(copy.clone()).await.unwrap();
    let restored = SqliteStore::open(&copy).unwrap();
    assert_eq!(
        restored.tenant_by_slug("acme").await.unwrap().unwrap().name,
        "Acme"
    );
}
