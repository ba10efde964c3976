//! PostgreSQL's side of a run (`--pg-url`): transactions committed or rolled back in the
//! benchmark's database, and WAL written, read before and after each run.

use std::time::Duration;

/// How long the server may keep a backend's statistics before publishing them: PostgreSQL 15+
/// flushes them at most once a second while busy and within 10 s once idle
/// (`PGSTAT_IDLE_INTERVAL`), so the count after a run is read after this pause.
pub const STATS_SETTLE: Duration = Duration::from_secs(11);

/// Counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Counters {
    /// `xact_commit + xact_rollback` of the database.
    pub xacts: i64,
    /// `pg_current_wal_lsn()` in bytes.
    pub wal_bytes: i64,
}

/// A connection to the benchmark's database (plain TCP: the benchmark runs on one machine).
pub struct Stats {
    client: tokio_postgres::Client,
}

impl Stats {
    pub async fn connect(url: &str) -> Result<Self, String> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("--pg-url: cannot connect: {e}"))?;
        tokio::spawn(connection);
        Ok(Self { client })
    }

    pub async fn read(&self) -> Result<Counters, String> {
        let row = self
            .client
            .query_one(
                "SELECT (xact_commit + xact_rollback)::int8, \
                        (pg_current_wal_lsn() - '0/0'::pg_lsn)::int8 \
                 FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )
            .await
            .map_err(|e| format!("--pg-url: cannot read pg_stat_database: {e}"))?;
        Ok(Counters {
            xacts: row.get(0),
            wal_bytes: row.get(1),
        })
    }
}
