//! Versioned, embedded migrations. Each backend keeps its own folder with the same version
//! names; applied versions are recorded in `schema_migrations` and never edited afterwards.

use rusqlite::{params, Connection};
use twofold_core::ports::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
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
];

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
    let done = applied(conn, Backend::Sqlite)?;
    let mut newly = Vec::new();
    for (version, sql) in SQLITE {
        if done.iter().any(|d| d == version) {
            continue;
        }
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
    // A database newer than this binary must not be written by it.
    let known: Vec<&str> = SQLITE.iter().map(|(v, _)| *v).collect();
    if let Some(unknown) = applied(conn, Backend::Sqlite)?
        .into_iter()
        .find(|v| !known.contains(&v.as_str()))
    {
        return Err(StoreError::Backend(format!(
            "database has migration {unknown} that this twofold does not know; upgrade twofold"
        )));
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
