//! Moving an embedded install to PostgreSQL (`twofold migrate-store`), with nothing lost.
//!
//! Nothing here names a table: the tables, their columns, keys and foreign keys are read from
//! the SQLite schema, so a table added by a later migration comes along without a change here.
//! The steps:
//!
//! 1. The SQLite file is opened in exclusive locking mode and read inside one transaction:
//!    the lock is refused while any other process has the database open (a running `twofold
//!    serve` would go on writing rows the copy never sees), and keeps every other process out
//!    until the copy is over. Both databases must have applied the same migrations: the
//!    target is migrated first with the PostgreSQL migrations, which have the same version
//!    names (checked by a test in `migrations`), so both schemas are the same version.
//! 2. The target must be empty. Everything else happens in one PostgreSQL transaction that
//!    first locks every table against writers: a copy that fails half-way leaves nothing.
//! 3. Tables are copied parents first (an order derived from the foreign keys), in primary-key
//!    order, in batches of multi-row `INSERT`s. Values are converted by the PostgreSQL column
//!    type, strictly: an integer where a boolean is expected must be 0 or 1, an integer column
//!    must fit, text stays text, blobs stay bytes. A PostgreSQL column that SQLite lacks must
//!    be an identity column; it stands in for SQLite's hidden `rowid` (the `seq` of sessions
//!    and devices, which orders rows made in the same millisecond) and gets its value.
//! 4. Identity sequences are moved past the largest copied id, so new rows do not collide.
//! 5. Verification, still inside the transaction: per table, the row count and a SHA-256
//!    checksum computed the same way on both sides ([`Digest`]) over the rows in primary-key
//!    order. Only when every table matches is the transaction committed.

use crate::migrations::{self, Backend};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_postgres::types::ToSql;

/// What was copied from one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    pub table: String,
    pub rows: u64,
    /// SHA-256 of the normalised rows (hex), equal on both sides.
    pub checksum: String,
}

/// Where the copy of one table stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableProgress<'a> {
    pub table: &'a str,
    pub copied: u64,
    pub total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(
        "there is no SQLite database at {0}; pass --from sqlite://PATH to the twofold.db file"
    )]
    NoSource(PathBuf),
    #[error(
        "the SQLite database {0} is in use by another process: stop every `twofold serve` (and \
         other twofold commands) using it, then run migrate-store again; nothing was copied"
    )]
    SourceInUse(PathBuf),
    #[error(
        "the SQLite database {path} lacks migrations {missing:?} that this twofold has: run \
         `twofold migrate --data-dir DIR` (without database_url) first; nothing was copied"
    )]
    SourceBehind { path: PathBuf, missing: Vec<String> },
    #[error("cannot read the SQLite database: {0}; nothing was copied")]
    Source(String),
    #[error("cannot use the PostgreSQL database {url}: {reason}; nothing was copied")]
    Target { url: String, reason: String },
    #[error(
        "the PostgreSQL database {url} already holds data ({tables}): migrate-store copies into \
         an empty database only, so nothing is merged or overwritten. Point --to at a new \
         database (e.g. `createdb --owner twofold twofold`) and run again"
    )]
    NotEmpty { url: String, tables: String },
    #[error(
        "the SQLite and PostgreSQL schemas do not match: {0}. This is a bug in twofold's \
         migrations (please report it); nothing was copied"
    )]
    Schema(String),
    #[error(
        "{table}.{column} of the row with key {key} cannot be copied: {reason}; nothing was \
         copied"
    )]
    Value {
        table: String,
        column: String,
        key: String,
        reason: String,
    },
    #[error(
        "verification of {table} failed: SQLite has {source_rows} rows (checksum \
         {source_sum}), PostgreSQL {target_rows} rows (checksum {target_sum}). The transaction \
         was rolled back: the target is still empty. Please report this"
    )]
    Mismatch {
        table: String,
        source_rows: u64,
        source_sum: String,
        target_rows: u64,
        target_sum: String,
    },
}

/// PostgreSQL column types the copy knows how to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PgType {
    Bool,
    Int2,
    Int4,
    Int8,
    Text,
    Bytea,
}

impl PgType {
    fn parse(data_type: &str) -> Option<Self> {
        Some(match data_type {
            "boolean" => Self::Bool,
            "smallint" => Self::Int2,
            "integer" => Self::Int4,
            "bigint" => Self::Int8,
            "text" | "character varying" | "character" => Self::Text,
            "bytea" => Self::Bytea,
            _ => return None,
        })
    }
}

#[derive(Debug)]
struct Column {
    name: String,
    ty: PgType,
    /// The SQLite expression that gives its value: the column, or `rowid`.
    source: String,
    /// An identity column (its sequence is moved past the copied ids).
    identity: bool,
    /// `GENERATED ALWAYS`: inserting a value needs `OVERRIDING SYSTEM VALUE`.
    always: bool,
}

#[derive(Debug)]
struct Table {
    name: String,
    /// In PostgreSQL's column order.
    columns: Vec<Column>,
    /// Indexes into `columns` of the primary key, in key order.
    key: Vec<usize>,
}

/// One table as SQLite describes it.
#[derive(Debug, Clone)]
pub struct SqliteTable {
    pub name: String,
    pub columns: Vec<String>,
    /// Primary-key columns in key order.
    pub key: Vec<String>,
    /// Tables its foreign keys point to.
    pub parents: BTreeSet<String>,
}

/// Quotes an identifier for either dialect.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn source_err(e: rusqlite::Error) -> TransferError {
    TransferError::Source(e.to_string())
}

/// The application tables of a SQLite database (not its own `sqlite_*` tables, not
/// `schema_migrations`, which each side keeps for itself), by name.
pub fn sqlite_tables(c: &Connection) -> Result<Vec<SqliteTable>, rusqlite::Error> {
    let names: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%'
             ESCAPE '\\' AND name <> 'schema_migrations' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    names
        .into_iter()
        .map(|name| {
            let mut cols: Vec<(String, i64)> = c
                .prepare("SELECT name, pk FROM pragma_table_info(?1) ORDER BY cid")?
                .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let columns = cols.iter().map(|(n, _)| n.clone()).collect();
            cols.retain(|(_, pk)| *pk > 0);
            cols.sort_by_key(|(_, pk)| *pk);
            let parents = c
                .prepare("SELECT \"table\" FROM pragma_foreign_key_list(?1)")?
                .query_map([&name], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(SqliteTable {
                columns,
                key: cols.into_iter().map(|(n, _)| n).collect(),
                parents,
                name,
            })
        })
        .collect()
}

/// The order to copy `tables` in: every table after the tables its foreign keys point to,
/// ties by name. References to tables outside the set and to the table itself are ignored;
/// a cycle is an error naming the tables in it.
pub fn copy_order(tables: &[SqliteTable]) -> Result<Vec<String>, String> {
    let names: BTreeSet<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let mut waiting: BTreeMap<&str, BTreeSet<&str>> = tables
        .iter()
        .map(|t| {
            let parents = t
                .parents
                .iter()
                .map(String::as_str)
                .filter(|p| *p != t.name && names.contains(p))
                .collect();
            (t.name.as_str(), parents)
        })
        .collect();
    let mut order = Vec::with_capacity(tables.len());
    while !waiting.is_empty() {
        let ready: Vec<&str> = waiting
            .iter()
            .filter(|(_, parents)| parents.is_empty())
            .map(|(name, _)| *name)
            .collect();
        if ready.is_empty() {
            let cycle: Vec<&str> = waiting.keys().copied().collect();
            return Err(format!(
                "the foreign keys of {} form a cycle",
                cycle.join(", ")
            ));
        }
        for name in ready {
            waiting.remove(name);
            for parents in waiting.values_mut() {
                parents.remove(name);
            }
            order.push(name.to_string());
        }
    }
    Ok(order)
}

/// A value as both sides hash it: integers (and booleans, as 0 and 1) by value, text as is,
/// blobs by their bytes, NULL as a marker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Norm<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl<'a> From<&'a Value> for Norm<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Null => Norm::Null,
            Value::Integer(i) => Norm::Int(*i),
            Value::Real(f) => Norm::Real(*f),
            Value::Text(s) => Norm::Text(s),
            Value::Blob(b) => Norm::Blob(b),
        }
    }
}

/// The per-table checksum: SHA-256 over the rows in primary-key order, each value written
/// unambiguously (`N;`, `I<decimal>;`, `T<length>:<text>;`, `B<hex>;`), each row ended by a
/// newline, so that no two different tables of rows hash alike by shifting bytes between
/// columns or rows.
#[derive(Default)]
pub struct Digest {
    sha: Sha256,
    rows: u64,
}

impl Digest {
    pub fn row<'a>(&mut self, values: impl IntoIterator<Item = Norm<'a>>) {
        for v in values {
            match v {
                Norm::Null => self.sha.update(b"N;"),
                Norm::Int(i) => self.sha.update(format!("I{i};")),
                Norm::Real(f) => self.sha.update(format!("R{:016x};", f.to_bits())),
                Norm::Text(s) => {
                    self.sha.update(format!("T{}:", s.len()));
                    self.sha.update(s.as_bytes());
                    self.sha.update(b";");
                }
                Norm::Blob(b) => {
                    self.sha.update(b"B");
                    self.sha.update(hex(b));
                    self.sha.update(b";");
                }
            }
        }
        self.sha.update(b"\n");
        self.rows += 1;
    }

    /// (rows, checksum in hex).
    pub fn finish(self) -> (u64, String) {
        (self.rows, hex(&self.sha.finalize()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A converted value, typed for the PostgreSQL column (a NULL too: the driver checks types).
fn to_pg(v: &Value, ty: PgType) -> Result<Box<dyn ToSql + Sync + Send>, String> {
    Ok(match (ty, v) {
        (PgType::Bool, Value::Null) => Box::new(None::<bool>),
        (PgType::Bool, Value::Integer(0)) => Box::new(Some(false)),
        (PgType::Bool, Value::Integer(1)) => Box::new(Some(true)),
        (PgType::Int2, Value::Null) => Box::new(None::<i16>),
        (PgType::Int2, Value::Integer(i)) => Box::new(Some(
            i16::try_from(*i).map_err(|_| format!("{i} does not fit a smallint"))?,
        )),
        (PgType::Int4, Value::Null) => Box::new(None::<i32>),
        (PgType::Int4, Value::Integer(i)) => Box::new(Some(
            i32::try_from(*i).map_err(|_| format!("{i} does not fit an integer"))?,
        )),
        (PgType::Int8, Value::Null) => Box::new(None::<i64>),
        (PgType::Int8, Value::Integer(i)) => Box::new(Some(*i)),
        (PgType::Text, Value::Null) => Box::new(None::<String>),
        (PgType::Text, Value::Text(s)) => Box::new(Some(s.clone())),
        (PgType::Bytea, Value::Null) => Box::new(None::<Vec<u8>>),
        (PgType::Bytea, Value::Blob(b)) => Box::new(Some(b.clone())),
        (ty, other) => {
            return Err(format!(
                "SQLite holds {other:?} where PostgreSQL expects {ty:?}"
            ))
        }
    })
}

fn target_err(url: &str, e: &tokio_postgres::Error) -> TransferError {
    let reason =
        crate::postgres::tls::failure(e).unwrap_or_else(|| match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        });
    TransferError::Target {
        url: crate::PgStore::redacted_url(url),
        reason,
    }
}

/// Opens the SQLite source for the copy: exclusively (refused while another process has it
/// open) and inside a read transaction that lasts until the connection is dropped.
fn open_source(path: &Path) -> Result<Connection, TransferError> {
    if !path.is_file() {
        return Err(TransferError::NoSource(path.to_path_buf()));
    }
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(source_err)?;
    c.busy_timeout(Duration::from_secs(3)).map_err(source_err)?;
    c.query_row("PRAGMA locking_mode = EXCLUSIVE", [], |r| {
        r.get::<_, String>(0)
    })
    .map_err(source_err)?;
    match c.execute_batch("BEGIN EXCLUSIVE") {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            return Err(TransferError::SourceInUse(path.to_path_buf()))
        }
        Err(e) => return Err(source_err(e)),
    }
    let applied = migrations::applied(&c, Backend::Sqlite)
        .map_err(|e| TransferError::Source(e.to_string()))?;
    let known: Vec<String> = Backend::Sqlite
        .migrations()
        .iter()
        .map(|(v, _)| v.to_string())
        .collect();
    if let Some(unknown) = applied.iter().find(|v| !known.contains(v)) {
        return Err(TransferError::Source(format!(
            "it has migration {unknown}, which this twofold does not know: use the twofold \
             that wrote it"
        )));
    }
    let missing: Vec<String> = known.into_iter().filter(|v| !applied.contains(v)).collect();
    if !missing.is_empty() {
        return Err(TransferError::SourceBehind {
            path: path.to_path_buf(),
            missing,
        });
    }
    Ok(c)
}

/// The PostgreSQL side of each SQLite table, matched column by column.
async fn plan(
    client: &impl tokio_postgres::GenericClient,
    url: &str,
    source: &[SqliteTable],
) -> Result<Vec<Table>, TransferError> {
    let schema = |m: String| TransferError::Schema(m);
    let pg_tables: BTreeSet<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'
               AND table_name <> 'schema_migrations'",
            &[],
        )
        .await
        .map_err(|e| target_err(url, &e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let sqlite_names: BTreeSet<String> = source.iter().map(|t| t.name.clone()).collect();
    if pg_tables != sqlite_names {
        return Err(schema(format!(
            "tables only in SQLite: {:?}, only in PostgreSQL: {:?}",
            sqlite_names.difference(&pg_tables).collect::<Vec<_>>(),
            pg_tables.difference(&sqlite_names).collect::<Vec<_>>()
        )));
    }
    let order = copy_order(source).map_err(schema)?;
    let mut tables = Vec::with_capacity(order.len());
    for name in order {
        let Some(src) = source.iter().find(|t| t.name == name) else {
            continue;
        };
        let rows = client
            .query(
                "SELECT column_name::text, data_type::text, is_identity::text,
                        COALESCE(identity_generation::text, '')
                 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name = $1
                 ORDER BY ordinal_position",
                &[&name],
            )
            .await
            .map_err(|e| target_err(url, &e))?;
        let mut columns = Vec::with_capacity(rows.len());
        for r in &rows {
            let col: String = r.get(0);
            let data_type: String = r.get(1);
            let identity = r.get::<_, String>(2) == "YES";
            let ty = PgType::parse(&data_type).ok_or_else(|| {
                schema(format!(
                    "{name}.{col} has type {data_type}, which migrate-store cannot copy yet \
                     (teach PgType in crates/store/src/transfer.rs)"
                ))
            })?;
            let source = if src.columns.contains(&col) {
                quote(&col)
            } else if identity {
                "rowid".to_string()
            } else {
                return Err(schema(format!(
                    "{name}.{col} is only in PostgreSQL and is not an identity column"
                )));
            };
            columns.push(Column {
                ty,
                source,
                identity,
                always: r.get::<_, String>(3) == "ALWAYS",
                name: col,
            });
        }
        if let Some(col) = src
            .columns
            .iter()
            .find(|c| !columns.iter().any(|p| &p.name == *c))
        {
            return Err(schema(format!("{name}.{col} is only in SQLite")));
        }
        if src.key.is_empty() {
            return Err(schema(format!("{name} has no primary key to order it by")));
        }
        let key = src
            .key
            .iter()
            .map(|k| {
                columns
                    .iter()
                    .position(|c| &c.name == k)
                    .ok_or_else(|| schema(format!("{name}.{k} is only in SQLite")))
            })
            .collect::<Result<_, _>>()?;
        tables.push(Table { name, columns, key });
    }
    Ok(tables)
}

/// Rows per `INSERT`: PostgreSQL takes at most 65,535 parameters a statement.
fn batch_rows(columns: usize) -> usize {
    (30_000 / columns.max(1)).clamp(1, 1000)
}

/// One batch of `t` from SQLite in key order, after the key `after` (the last row's).
fn read_batch(
    c: &Connection,
    t: &Table,
    after: Option<&[Value]>,
    limit: usize,
) -> Result<Vec<Vec<Value>>, TransferError> {
    let cols: Vec<&str> = t.columns.iter().map(|c| c.source.as_str()).collect();
    let key: Vec<String> = t.key.iter().map(|&i| t.columns[i].source.clone()).collect();
    let filter = match after {
        Some(_) => format!(
            "WHERE ({}) > ({})",
            key.join(", "),
            (1..=key.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => String::new(),
    };
    let sql = format!(
        "SELECT {} FROM {} {filter} ORDER BY {} LIMIT {limit}",
        cols.join(", "),
        quote(&t.name),
        key.join(", ")
    );
    let mut s = c.prepare_cached(&sql).map_err(source_err)?;
    let params = rusqlite::params_from_iter(after.unwrap_or(&[]).iter());
    let rows = s
        .query_map(params, |r| {
            (0..cols.len()).map(|i| r.get::<_, Value>(i)).collect()
        })
        .map_err(source_err)?;
    rows.collect::<Result<_, _>>().map_err(source_err)
}

fn insert_sql(t: &Table, rows: usize) -> String {
    let n = t.columns.len();
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=n).map(|i| format!("${}", r * n + i)).collect();
            format!("({})", row.join(", "))
        })
        .collect();
    let overriding = if t.columns.iter().any(|c| c.always) {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    format!(
        "INSERT INTO {} ({}){overriding} VALUES {}",
        quote(&t.name),
        t.columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        values.join(", ")
    )
}

/// Reads one table from SQLite in key order and returns its digest; with `into`, copies each
/// batch into that PostgreSQL transaction on the way.
async fn copy_table(
    source: &Connection,
    into: Option<&tokio_postgres::Transaction<'_>>,
    url: &str,
    t: &Table,
    progress: &mut (dyn FnMut(TableProgress<'_>) + Send),
) -> Result<(u64, String), TransferError> {
    let total: i64 = source
        .query_row(
            &format!("SELECT count(*) FROM {}", quote(&t.name)),
            [],
            |r| r.get(0),
        )
        .map_err(source_err)?;
    let total = total as u64;
    let limit = batch_rows(t.columns.len());
    let mut digest = Digest::default();
    let mut after: Option<Vec<Value>> = None;
    let mut copied = 0u64;
    progress(TableProgress {
        table: &t.name,
        copied,
        total,
    });
    loop {
        let rows = read_batch(source, t, after.as_deref(), limit)?;
        let Some(last) = rows.last() else { break };
        after = Some(t.key.iter().map(|&i| last[i].clone()).collect());
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> =
            Vec::with_capacity(rows.len() * t.columns.len());
        for row in &rows {
            digest.row(row.iter().map(Norm::from));
            for (v, c) in row.iter().zip(&t.columns) {
                params.push(to_pg(v, c.ty).map_err(|reason| {
                    TransferError::Value {
                        table: t.name.clone(),
                        column: c.name.clone(),
                        key: t
                            .key
                            .iter()
                            .map(|&i| format!("{:?}", row[i]))
                            .collect::<Vec<_>>()
                            .join(", "),
                        reason,
                    }
                })?);
            }
        }
        if let Some(tx) = into {
            let refs: Vec<&(dyn ToSql + Sync)> = params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect();
            tx.execute(&insert_sql(t, rows.len()), &refs)
                .await
                .map_err(|e| target_err(url, &e))?;
        }
        copied += rows.len() as u64;
        progress(TableProgress {
            table: &t.name,
            copied,
            total,
        });
    }
    Ok(digest.finish())
}

/// The digest of `t` as PostgreSQL holds it, read in the same key order as SQLite's
/// (text keys compared bytewise, as SQLite's BINARY collation does).
async fn target_digest(
    tx: &tokio_postgres::Transaction<'_>,
    url: &str,
    t: &Table,
) -> Result<(u64, String), TransferError> {
    let order: Vec<String> = t
        .key
        .iter()
        .map(|&i| {
            let c = &t.columns[i];
            match c.ty {
                PgType::Text => format!("{} COLLATE \"C\"", quote(&c.name)),
                _ => quote(&c.name),
            }
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        t.columns
            .iter()
            .map(|c| quote(&c.name))
            .collect::<Vec<_>>()
            .join(", "),
        quote(&t.name),
        order.join(", ")
    );
    let err = |e: tokio_postgres::Error| target_err(url, &e);
    let portal = tx.bind(sql.as_str(), &[]).await.map_err(err)?;
    let mut digest = Digest::default();
    loop {
        let rows = tx.query_portal(&portal, 5_000).await.map_err(err)?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let mut values = Vec::with_capacity(t.columns.len());
            for (i, c) in t.columns.iter().enumerate() {
                let v = match c.ty {
                    PgType::Bool => r
                        .try_get::<_, Option<bool>>(i)
                        .map(|b| b.map(|b| Value::Integer(i64::from(b)))),
                    PgType::Int2 => r
                        .try_get::<_, Option<i16>>(i)
                        .map(|n| n.map(|n| Value::Integer(n.into()))),
                    PgType::Int4 => r
                        .try_get::<_, Option<i32>>(i)
                        .map(|n| n.map(|n| Value::Integer(n.into()))),
                    PgType::Int8 => r
                        .try_get::<_, Option<i64>>(i)
                        .map(|n| n.map(Value::Integer)),
                    PgType::Text => r
                        .try_get::<_, Option<String>>(i)
                        .map(|s| s.map(Value::Text)),
                    PgType::Bytea => r
                        .try_get::<_, Option<Vec<u8>>>(i)
                        .map(|b| b.map(Value::Blob)),
                }
                .map_err(err)?;
                values.push(v.unwrap_or(Value::Null));
            }
            digest.row(values.iter().map(Norm::from));
        }
    }
    Ok(digest.finish())
}

/// The exclusively opened SQLite source and a connection to the PostgreSQL target, migrated
/// to this twofold's schema.
struct Ends {
    source: Connection,
    source_tables: Vec<SqliteTable>,
    client: tokio_postgres::Client,
    driver: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Ends {
    async fn open(sqlite: &Path, url: &str) -> Result<Self, TransferError> {
        let source = open_source(sqlite)?;
        let source_tables = sqlite_tables(&source).map_err(source_err)?;
        let target = |reason: String| TransferError::Target {
            url: crate::PgStore::redacted_url(url),
            reason,
        };
        let (config, tls) = crate::postgres::parse_url(url).map_err(|e| target(e.to_string()))?;
        let (mut client, connection) =
            config.connect(tls).await.map_err(|e| target_err(url, &e))?;
        let driver = tokio::spawn(connection);
        migrations::apply_postgres(&mut client)
            .await
            .map_err(|e| target(e.to_string()))?;
        Ok(Self {
            source,
            source_tables,
            client,
            driver,
        })
    }

    async fn close(self) {
        drop(self.client);
        let _ = self.driver.await;
    }
}

/// Both sides' row count and checksum of every table, in copy order: what `migrate-store`
/// checks before it commits, on demand (e.g. again after it, before any node starts).
pub async fn compare(sqlite: &Path, url: &str) -> Result<Vec<Comparison>, TransferError> {
    let mut ends = Ends::open(sqlite, url).await?;
    let tx = ends
        .client
        .build_transaction()
        .read_only(true)
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .map_err(|e| target_err(url, &e))?;
    let tables = plan(&tx, url, &ends.source_tables).await?;
    let mut out = Vec::with_capacity(tables.len());
    for t in &tables {
        let sqlite = copy_table(&ends.source, None, url, t, &mut |_| {}).await?;
        let postgres = target_digest(&tx, url, t).await?;
        out.push(Comparison {
            table: t.name.clone(),
            sqlite,
            postgres,
        });
    }
    drop(tx);
    ends.close().await;
    Ok(out)
}

/// One table on both sides: (rows, checksum) each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub table: String,
    pub sqlite: (u64, String),
    pub postgres: (u64, String),
}

/// Copies every table of the SQLite database at `sqlite` into the empty PostgreSQL database at
/// `url` (see the module docs), calling `progress` after every batch. Returns what each table
/// holds on both sides, in copy order.
pub async fn sqlite_to_postgres(
    sqlite: &Path,
    url: &str,
    progress: &mut (dyn FnMut(TableProgress<'_>) + Send),
) -> Result<Vec<TableReport>, TransferError> {
    let mut ends = Ends::open(sqlite, url).await?;
    let tx = ends
        .client
        .transaction()
        .await
        .map_err(|e| target_err(url, &e))?;
    let tables = plan(&tx, url, &ends.source_tables).await?;
    // No node writes while we copy, and a second migrate-store waits, then finds data.
    let names: Vec<String> = tables.iter().map(|t| quote(&t.name)).collect();
    tx.batch_execute(&format!(
        "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
        names.join(", ")
    ))
    .await
    .map_err(|e| target_err(url, &e))?;
    let mut filled = Vec::new();
    for t in &tables {
        let n: i64 = tx
            .query_one(&format!("SELECT count(*) FROM {}", quote(&t.name)), &[])
            .await
            .map_err(|e| target_err(url, &e))?
            .get(0);
        if n > 0 {
            filled.push(format!("{}: {n} rows", t.name));
        }
    }
    if !filled.is_empty() {
        return Err(TransferError::NotEmpty {
            url: crate::PgStore::redacted_url(url),
            tables: filled.join(", "),
        });
    }

    let mut sums = Vec::with_capacity(tables.len());
    for t in &tables {
        sums.push(copy_table(&ends.source, Some(&tx), url, t, progress).await?);
    }
    for t in &tables {
        for c in t.columns.iter().filter(|c| c.identity) {
            tx.query_one(
                &format!(
                    "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(MAX({}), 0) + 1, \
                     false) FROM {}",
                    quote(&c.name),
                    quote(&t.name)
                ),
                &[&quote(&t.name), &c.name],
            )
            .await
            .map_err(|e| target_err(url, &e))?;
        }
    }
    let mut reports = Vec::with_capacity(tables.len());
    for (t, (source_rows, source_sum)) in tables.iter().zip(sums) {
        let (target_rows, target_sum) = target_digest(&tx, url, t).await?;
        if (source_rows, &source_sum) != (target_rows, &target_sum) {
            return Err(TransferError::Mismatch {
                table: t.name.clone(),
                source_rows,
                source_sum,
                target_rows,
                target_sum,
            });
        }
        reports.push(TableReport {
            table: t.name.clone(),
            rows: source_rows,
            checksum: source_sum,
        });
    }
    tx.commit().await.map_err(|e| target_err(url, &e))?;
    ends.close().await;
    Ok(reports)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn table(name: &str, parents: &[&str]) -> SqliteTable {
        SqliteTable {
            name: name.into(),
            columns: vec!["id".into()],
            key: vec!["id".into()],
            parents: parents.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn parents_are_copied_first_ties_by_name() {
        let tables = [
            table("users", &["tenants"]),
            table("factors", &["users", "tenants"]),
            table("tenants", &[]),
            table("audit", &[]),
            table("tree", &["tree", "elsewhere"]),
        ];
        assert_eq!(
            copy_order(&tables).unwrap(),
            ["audit", "tenants", "tree", "users", "factors"]
        );
        let cycle = [table("a", &["b"]), table("b", &["a"]), table("c", &[])];
        assert!(copy_order(&cycle).unwrap_err().contains("a, b"));
    }

    #[test]
    fn the_digest_tells_values_apart_that_concatenate_alike() {
        let sum = |rows: &[Vec<Norm>]| {
            let mut d = Digest::default();
            for r in rows {
                d.row(r.iter().copied());
            }
            d.finish()
        };
        let a = sum(&[vec![Norm::Text("ab"), Norm::Text("c")]]);
        let b = sum(&[vec![Norm::Text("a"), Norm::Text("bc")]]);
        let c = sum(&[vec![Norm::Text("a")], vec![Norm::Text("bc")]]);
        let d = sum(&[vec![Norm::Int(1)]]);
        let e = sum(&[vec![Norm::Text("1")]]);
        let f = sum(&[vec![Norm::Null]]);
        let g = sum(&[vec![Norm::Blob(b"")]]);
        let all = [&a, &b, &c, &d, &e, &f, &g];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(a.0, 1);
        assert_eq!(c.0, 2);
    }

    #[test]
    fn values_convert_strictly_by_the_target_type() {
        assert!(to_pg(&Value::Integer(1), PgType::Bool).is_ok());
        assert!(to_pg(&Value::Integer(2), PgType::Bool).is_err());
        assert!(to_pg(&Value::Integer(i64::from(i32::MAX) + 1), PgType::Int4).is_err());
        assert!(to_pg(&Value::Integer(70_000), PgType::Int2).is_err());
        assert!(to_pg(&Value::Text("x".into()), PgType::Bytea).is_err());
        assert!(to_pg(&Value::Blob(vec![1]), PgType::Text).is_err());
        assert!(to_pg(&Value::Null, PgType::Int8).is_ok());
    }
}
