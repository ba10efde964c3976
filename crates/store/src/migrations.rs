//! Versioned, embedded migrations. Each backend keeps its own folder with the same version
//! names in the same order (checked by a test below); applied versions are recorded in
//! `schema_migrations` and never edited afterwards. A database that records a version this
//! binary does not know is refused before anything is applied: it belongs to a newer twofold.

use rusqlite::{params, Connection};
use twofold_core::ports::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// (version, SQL) in order.
    pub fn migrations(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
        }
    }
}

/// (version, SQL) in order. Add new files at the end; never change a released one.
pub const SQLITE: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        "0002_messaging",
        include_str!("../migrations/sqlite/0002_messaging.sql"),
    ),
    (
        "0003_logins",
        include_str!("../migrations/sqlite/0003_logins.sql"),
    ),
    (
        "0004_jobs",
        include_str!("../migrations/sqlite/0004_jobs.sql"),
    ),
    (
        "0005_webhooks",
        include_str!("../migrations/sqlite/0005_webhooks.sql"),
    ),
    (
        "0006_security",
        include_str!("../migrations/sqlite/0006_security.sql"),
    ),
    (
        "0007_keys",
        include_str!("../migrations/sqlite/0007_keys.sql"),
    ),
    (
        "0008_vault",
        include_str!("../migrations/sqlite/0008_vault.sql"),
    ),
    (
        "0009_oidc",
        include_str!("../migrations/sqlite/0009_oidc.sql"),
    ),
    (
        "0010_webauthn",
        include_str!("../migrations/sqlite/0010_webauthn.sql"),
    ),
];

/// The same versions as [`SQLITE`], in PostgreSQL's dialect.
pub const POSTGRES: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_messaging",
        include_str!("../migrations/postgres/0002_messaging.sql"),
    ),
    (
        "0003_logins",
        include_str!("../migrations/postgres/0003_logins.sql"),
    ),
    (
        "0004_jobs",
        include_str!("../migrations/postgres/0004_jobs.sql"),
    ),
    (
        "0005_webhooks",
        include_str!("../migrations/postgres/0005_webhooks.sql"),
    ),
    (
        "0006_security",
        include_str!("../migrations/postgres/0006_security.sql"),
    ),
    (
        "0007_keys",
        include_str!("../migrations/postgres/0007_keys.sql"),
    ),
    (
        "0008_vault",
        include_str!("../migrations/postgres/0008_vault.sql"),
    ),
    (
        "0009_oidc",
        include_str!("../migrations/postgres/0009_oidc.sql"),
    ),
    (
        "0010_webauthn",
        include_str!("../migrations/postgres/0010_webauthn.sql"),
    ),
];

/// The key of the PostgreSQL advisory lock that migrating holds ("twofold" in ASCII), so two
/// nodes starting together migrate one after the other.
const PG_MIGRATION_LOCK: i64 = 0x0074_776f_666f_6c64;

/// The migrations of `backend` still to apply to a database that has `applied`, in order;
/// an error if it has one this binary does not know.
fn pending(
    backend: Backend,
    applied: &[String],
) -> Result<Vec<(&'static str, &'static str)>, StoreError> {
    let all = backend.migrations();
    if let Some(unknown) = applied
        .iter()
        .find(|v| !all.iter().any(|(known, _)| known == v))
    {
        return Err(StoreError::Backend(format!(
            "database has migration {unknown} that this twofold does not know; upgrade twofold"
        )));
    }
    Ok(all
        .iter()
        .filter(|(v, _)| !applied.iter().any(|a| a == v))
        .copied()
        .collect())
}

fn err(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(format!("migration: {e}"))
}

pub fn apply_sqlite(conn: &mut Connection) -> Result<Vec<String>, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    TEXT PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )
    .map_err(err)?;
    let mut newly = Vec::new();
    for (version, sql) in pending(Backend::Sqlite, &applied(conn, Backend::Sqlite)?)? {
        let tx = conn.transaction().map_err(err)?;
        tx.execute_batch(sql).map_err(err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at)
             VALUES (?1, CAST(strftime('%s','now') AS INTEGER) * 1000)",
            params![version],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        tracing::info!(version, "applied migration");
        newly.push(version.to_string());
    }
    Ok(newly)
}

pub fn applied(conn: &Connection, _backend: Backend) -> Result<Vec<String>, StoreError> {
    let mut s = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .map_err(err)?;
    let rows = s.query_map([], |r| r.get(0)).map_err(err)?;
    rows.collect::<Result<_, _>>().map_err(err)
}

fn pg_err(e: tokio_postgres::Error) -> StoreError {
    match crate::postgres::pg(e) {
        StoreError::Backend(m) => StoreError::Backend(format!("migration: {m}")),
        other => other,
    }
}

/// Applies the pending PostgreSQL migrations in one transaction that first takes an advisory
/// lock: a second node starting at the same moment waits, then finds nothing left to do. The
/// DDL is transactional, so a failing migration leaves the database as it was.
pub async fn apply_postgres(
    client: &mut tokio_postgres::Client,
) -> Result<Vec<String>, StoreError> {
    let tx = client.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    TEXT   PRIMARY KEY,
             applied_at BIGINT NOT NULL
         )",
    )
    .await
    .map_err(pg_err)?;
    let mut newly = Vec::new();
    for (version, sql) in pending(Backend::Postgres, &applied_postgres(&tx).await?)? {
        tx.batch_execute(sql).await.map_err(pg_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at)
             VALUES ($1, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT)",
            &[&version],
        )
        .await
        .map_err(pg_err)?;
        newly.push(version.to_string());
    }
    tx.commit().await.map_err(pg_err)?;
    for version in &newly {
        tracing::info!(version, "applied migration");
    }
    Ok(newly)
}

/// The versions recorded in a PostgreSQL database, in order.
pub async fn applied_postgres(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Vec<String>, StoreError> {
    client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(|r| r.try_get(0).map_err(pg_err))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn versions(b: Backend) -> Vec<&'static str> {
        b.migrations().iter().map(|(v, _)| *v).collect()
    }

    #[test]
    fn both_backends_list_the_same_versions_in_the_same_order() {
        assert_eq!(versions(Backend::Sqlite), versions(Backend::Postgres));
        let mut sorted = versions(Backend::Sqlite);
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, versions(Backend::Sqlite), "in order, each once");
    }

    #[test]
    fn each_folder_holds_exactly_the_embedded_files() {
        for (folder, backend) in [("sqlite", Backend::Sqlite), ("postgres", Backend::Postgres)] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(folder);
            let mut files: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let embedded: Vec<String> = versions(backend)
                .iter()
                .map(|v| format!("{v}.sql"))
                .collect();
            assert_eq!(files, embedded, "migrations/{folder}");
        }
    }

    #[test]
    fn an_unknown_applied_version_is_refused_before_anything_runs() {
        let applied = vec!["0001_init".to_string(), "9999_future".to_string()];
        assert!(matches!(
            pending(Backend::Postgres, &applied),
            Err(StoreError::Backend(m)) if m.contains("9999_future")
        ));
        let pending = pending(Backend::Sqlite, &["0001_init".to_string()]).unwrap();
        assert_eq!(
            pending.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
            vec![
                "0002_messaging",
                "0003_logins",
                "0004_jobs",
                "0005_webhooks",
                "0006_security",
                "0007_keys",
                "0008_vault",
                "0009_oidc",
                "0010_webauthn"
            ]
        );
    }
}
