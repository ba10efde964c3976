//! Store implementations for Twofold.
//!
//! - [`SqliteStore`]: the embedded default (WAL, `synchronous=FULL`, group-commit writer).
//! - [`PgStore`]: PostgreSQL, for several nodes sharing one database (pooled `tokio-postgres`,
//!   conditional writes and row locks instead of a single writer).
//! - [`conformance`]: the suite every backend must pass, run against both.
//! - [`backup`]: online copies of the SQLite database; [`transfer`]: SQLite to PostgreSQL.

mod common;
pub mod conformance;
pub mod migrations;
mod postgres;
mod sqlite;
pub mod transfer;

pub use postgres::{PgStore, POOL_SIZE};
pub use sqlite::backup::{backup, BackupError, BackupOptions, BackupProgress, BackupReport};
pub use sqlite::{SqliteStore, MAX_BATCH};
