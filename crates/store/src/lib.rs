//! Store implementations for Twofold.
//!
//! - [`SqliteStore`]: the embedded default (WAL, `synchronous=FULL`, group-commit writer).
//! - [`conformance`]: the suite every backend must pass, so PostgreSQL can be added later and
//!   proved against the same behaviour.

pub mod conformance;
pub mod migrations;
mod sqlite;

pub use sqlite::{SqliteStore, MAX_BATCH};
