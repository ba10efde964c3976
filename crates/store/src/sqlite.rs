//! The embedded SQLite store.
//!
//! Writes go through one writer thread that takes everything queued (up to [`MAX_BATCH`]) into
//! a single `BEGIN IMMEDIATE` transaction, each job inside its own savepoint, and answers each
//! caller only after the one `COMMIT` (group commit). With `synchronous=FULL` that is one fsync
//! per batch instead of per request: every acknowledged write is durable, and a crash loses
//! only writes that were never acknowledged. Reads come from a small pool of read-only
//! connections (WAL lets them run beside the writer).

use crate::migrations::{self, Backend};
use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Semaphore};
use twofold_core::model::*;
use twofold_core::ports::*;
use twofold_core::throttle::{after_failure, ThrottleState};
use twofold_core::totp::HINT_HORIZON;

/// Most jobs committed together; bounds how long one batch holds the write lock.
pub const MAX_BATCH: usize = 512;
const READERS: usize = 8;
const QUEUE_DEPTH: usize = 16_384;

fn backend(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DatabaseBusy) | Some(DatabaseLocked) => StoreError::Busy,
        _ => StoreError::Backend(e.to_string()),
    }
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

trait WriteJob: Send {
    /// Runs the job inside its own savepoint. Returns false when the surrounding transaction
    /// is no longer usable (SQLite rolled it back, e.g. on a full disk, or the savepoint could
    /// not be closed): the whole batch must then fail, since nothing in it can be committed.
    fn run(&mut self, conn: &Connection) -> bool;
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

struct Job<F, R> {
    f: Option<F>,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> WriteJob for Job<F, R>
where
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(f) = self.f.take() else {
            return true;
        };
        // Cached statements: parsing these three on every job is measurable at full speed.
        let exec = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
        if let Err(e) = exec("SAVEPOINT job") {
            self.result = Some(Err(backend(e)));
            return false;
        }
        // A panicking job must not take the writer thread (and every later write) with it.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|_| Err(StoreError::Backend("a write job panicked".into())));
        if conn.is_autocommit() {
            self.result = Some(Err(result
                .err()
                .unwrap_or_else(|| StoreError::Backend("transaction rolled back".into()))));
            return false;
        }
        let end = if result.is_ok() {
            exec("RELEASE job")
        } else {
            exec("ROLLBACK TO job").and_then(|_| exec("RELEASE job"))
        };
        match end {
            Ok(_) => {
                self.result = Some(result);
                true
            }
            Err(e) => {
                self.result = Some(Err(backend(e)));
                false
            }
        }
    }

    fn finish(self: Box<Self>, commit: Result<(), StoreError>) {
        let outcome = match (commit, self.result) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(r)) => r,
            (Ok(()), None) => Err(StoreError::Backend("write job never ran".into())),
        };
        let _ = self.reply.send(outcome);
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Box<dyn WriteJob>>) {
    while let Ok(first) = rx.recv() {
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Never start a batch inside a transaction left over from a failed one.
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let commit = match conn.execute_batch("BEGIN IMMEDIATE") {
            Err(e) => Err(backend(e)),
            Ok(()) => {
                let mut healthy = true;
                for job in batch.iter_mut() {
                    if healthy {
                        healthy = job.run(&conn);
                    }
                }
                if healthy {
                    conn.execute_batch("COMMIT").map_err(|e| {
                        let _ = conn.execute_batch("ROLLBACK");
                        backend(e)
                    })
                } else {
                    if !conn.is_autocommit() {
                        let _ = conn.execute_batch("ROLLBACK");
                    }
                    tracing::error!("a write batch was aborted and rolled back");
                    Err(StoreError::Backend("write batch aborted".into()))
                }
            }
        };
        for job in batch {
            job.finish(commit.clone());
        }
    }
}

/// SQLite store handle; cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: mpsc::SyncSender<Box<dyn WriteJob>>,
    readers: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Inner {
    /// Runs `f` on a pooled read connection, opening a spare if every pooled one is in use.
    fn with_reader<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = self
            .readers
            .lock()
            .map_err(|_| StoreError::Backend("reader pool poisoned".into()))?
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => open(&self.path, true)?,
        };
        let result = f(&conn);
        self.give_back(conn);
        result
    }

    /// Returns a connection to the pool, or closes it when the pool is already full.
    fn give_back(&self, conn: Connection) {
        if let Ok(mut pool) = self.readers.lock() {
            if pool.len() < READERS {
                pool.push(conn);
            }
        }
    }
}

fn open(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(backend)?;
    // Room for every hot statement of the writer and readers, so none is re-parsed.
    conn.set_prepared_statement_cache_capacity(64);
    // busy_timeout lets the CLI write beside a running server: each side waits for the other.
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(backend)?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         PRAGMA synchronous = FULL;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -8000;",
    )
    .map_err(backend)?;
    Ok(conn)
}

/// Creates the database file readable by its owner only; SQLite gives the `-wal` and `-shm`
/// files the same mode. The file holds sealed secrets and keyed hashes.
fn create_private(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Backend(format!(
            "cannot create database file {}: {e}",
            path.display()
        ))),
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        create_private(&path)?;
        let mut conn = open(&path, false)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "could not switch {} to WAL mode (got {mode})",
                path.display()
            )));
        }
        migrations::apply_sqlite(&mut conn)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(open(&path, true)?);
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: tx,
                readers: Mutex::new(readers),
                permits: Arc::new(Semaphore::new(READERS)),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The migration versions applied to this database, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<String>, StoreError> {
        self.read(|c| migrations::applied(c, Backend::Sqlite)).await
    }

    /// Runs `f` inside the writer's current group-commit transaction; resolves after COMMIT.
    async fn write<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job {
            f: Some(f),
            result: None,
            reply,
        });
        // try_send keeps the async runtime from blocking; a full queue is overload.
        match self.inner.writer.try_send(job) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => return Err(StoreError::Busy),
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(StoreError::Backend("writer thread has stopped".into()))
            }
        }
        rx.await
            .map_err(|_| StoreError::Backend("writer dropped the job".into()))?
    }

    /// A read on a pooled connection in a blocking thread: for scans (listings, backups).
    /// The permit moves into the blocking task, so it is released the moment the work ends,
    /// not when this future is next polled.
    async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("reader pool closed".into()))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let result = inner.with_reader(f);
            drop(permit);
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("reader task failed: {e}")))?
    }

    /// An indexed point read (a row or a handful, from the page cache in microseconds), run
    /// right here on the async worker when a pooled connection is free: handing it to a
    /// blocking thread costs more in thread switches than the read itself (measured in
    /// docs/PERFORMANCE.md). Falls back to [`Self::read`] when the pool is busy.
    async fn point_read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        let pooled = self.inner.readers.lock().ok().and_then(|mut p| p.pop());
        match pooled {
            Some(conn) => {
                let result = f(&conn);
                self.inner.give_back(conn);
                result
            }
            None => self.read(f).await,
        }
    }

    /// A consistent online copy of the database into `dest` (`VACUUM INTO`), created
    /// readable by its owner only: it holds sealed seeds and keyed hashes.
    pub async fn backup_to(&self, dest: PathBuf) -> Result<(), StoreError> {
        if dest.exists() {
            return Err(StoreError::Backend(format!(
                "{} already exists",
                dest.display()
            )));
        }
        create_private(&dest)?;
        self.read(move |c| {
            c.execute("VACUUM INTO ?1", params![dest.to_string_lossy()])
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }
}

fn insert_audit(c: &Connection, a: &AuditRecord) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO audit_events (tenant_id, at, actor, action, user_id, factor_id, outcome,
                                   reason, ip, request_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .and_then(|mut s| {
        s.execute(params![
            a.tenant_id,
            a.at,
            a.actor,
            a.action,
            a.user_id,
            a.factor_id,
            a.outcome,
            a.reason,
            a.ip,
            a.request_id
        ])
    })
    .map(|_| ())
    .map_err(backend)
}

fn insert_key(c: &Connection, key: &ApiKey) -> Result<(), StoreError> {
    c.execute(
        &format!("INSERT INTO api_keys ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            key.key_id,
            key.tenant_id,
            key.label,
            key.secret_hash,
            key.created_at,
            key.revoked_at
        ],
    )
    .map(|_| ())
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict("api_key_exists")
        } else {
            backend(e)
        }
    })
}

fn tenant_row(r: &Row) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        slug: r.get(1)?,
        name: r.get(2)?,
        created_at: r.get(3)?,
    })
}

const USER_COLS: &str = "id, tenant_id, external_id, email, phone, profile, is_admin, created_at";

fn user_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        external_id: r.get(2)?,
        email: r.get(3)?,
        phone: r.get(4)?,
        profile: r.get(5)?,
        is_admin: r.get(6)?,
        created_at: r.get(7)?,
    })
}

const KEY_COLS: &str = "key_id, tenant_id, label, secret_hash, created_at, revoked_at";

fn key_row(r: &Row) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        key_id: r.get(0)?,
        tenant_id: r.get(1)?,
        label: r.get(2)?,
        secret_hash: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

const FACTOR_COLS: &str = "id, tenant_id, user_id, kind, status, sealed_secret, algorithm, digits,
     period, last_step, drift, version, failures, blocked_until, locked_at, created_at,
     confirmed_at, drift_hint_step, drift_hint_dir";

fn factor_row(r: &Row) -> rusqlite::Result<Factor> {
    let status: String = r.get(4)?;
    Ok(Factor {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        user_id: r.get(2)?,
        kind: r.get(3)?,
        status: FactorStatus::parse(&status).unwrap_or(FactorStatus::Pending),
        sealed_secret: r.get(5)?,
        algorithm: r.get(6)?,
        digits: r.get(7)?,
        period: r.get(8)?,
        last_step: r.get(9)?,
        drift: r.get(10)?,
        version: r.get(11)?,
        failures: r.get(12)?,
        blocked_until: r.get(13)?,
        locked_at: r.get(14)?,
        created_at: r.get(15)?,
        confirmed_at: r.get(16)?,
        drift_hint: match (r.get::<_, Option<i64>>(17)?, r.get::<_, Option<i32>>(18)?) {
            (Some(step), Some(dir)) => Some((step, dir)),
            _ => None,
        },
    })
}

fn factors_of(c: &Connection, user_id: i64) -> Result<Vec<Factor>, StoreError> {
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {FACTOR_COLS} FROM factors WHERE user_id = ?1 ORDER BY created_at, id"
        ))
        .map_err(backend)?;
    let rows = s.query_map(params![user_id], factor_row).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// What the failure path needs to know about one factor row.
struct AttemptRow {
    status: String,
    version: i64,
    last_step: i64,
    throttle: ThrottleState,
}

fn attempt_row(c: &Connection, id: &str) -> Result<Option<AttemptRow>, StoreError> {
    c.prepare_cached(
        "SELECT status, version, last_step, failures, blocked_until, locked_at
         FROM factors WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.query_row(params![id], |r| {
            Ok(AttemptRow {
                status: r.get(0)?,
                version: r.get(1)?,
                last_step: r.get(2)?,
                throttle: ThrottleState {
                    failures: r.get(3)?,
                    blocked_until: r.get(4)?,
                    locked_at: r.get(5)?,
                },
            })
        })
        .optional()
    })
    .map_err(backend)
}

/// The body of [`Store::attempt`], run inside the writer's transaction.
fn run_attempt(c: &Connection, a: Attempt) -> Result<AttemptOutcome, StoreError> {
    let now = a.now;
    let mut audit = a.audit;
    let mut reason = RejectReason::WrongCode;
    if let Some(m) = &a.matched {
        // INV-01: the one consume statement. Replay, staleness, lock and backoff are all
        // conditions of this single write; success is "one row changed".
        let changed = c
            .prepare_cached(
                "UPDATE factors
                 SET last_step = ?1, failures = 0, blocked_until = NULL, drift = ?2,
                     version = ?3, status = 'active', confirmed_at = COALESCE(confirmed_at, ?4),
                     drift_hint_step = NULL, drift_hint_dir = NULL
                 WHERE id = ?5 AND version = ?6 AND status = ?7 AND last_step < ?1
                   AND locked_at IS NULL AND (blocked_until IS NULL OR blocked_until <= ?4)
                   AND (?8 IS NULL OR (drift_hint_dir = ?8 AND drift_hint_step < ?1
                                       AND drift_hint_step >= ?1 - ?9))",
            )
            .and_then(|mut s| {
                s.execute(params![
                    m.step,
                    m.new_drift,
                    m.new_version,
                    now,
                    m.factor_id,
                    m.expected_version,
                    m.expected_status.as_str(),
                    m.hint_dir,
                    HINT_HORIZON
                ])
            })
            .map_err(backend)?;
        if changed == 1 {
            audit.outcome = "ok".into();
            insert_audit(c, &audit)?;
            return Ok(AttemptOutcome::Accepted {
                factor_id: m.factor_id.clone(),
            });
        }
        match attempt_row(c, &m.factor_id)? {
            Some(row)
                if row.version == m.expected_version
                    && row.status == m.expected_status.as_str() =>
            {
                reason = if row.throttle.is_locked() {
                    RejectReason::Locked
                } else if row.throttle.is_blocked(now) {
                    RejectReason::Throttled
                } else if row.last_step >= m.step {
                    RejectReason::Replayed
                } else {
                    RejectReason::WrongCode
                };
            }
            _ => return Ok(AttemptOutcome::Stale),
        }
    }
    // Before anything is charged, every candidate must still be as the caller saw it: a
    // failure must never be counted because a cached copy was behind.
    let mut rows = Vec::with_capacity(a.factors.len());
    for f in &a.factors {
        match attempt_row(c, &f.id)? {
            Some(row) if row.version == f.version => rows.push((&f.id, row)),
            _ => return Ok(AttemptOutcome::Stale),
        }
    }
    if let Some(m) = &a.matched {
        if let (Some(dir), RejectReason::WrongCode) = (m.hint_dir, reason) {
            // First half of learning drift on use: remember where this code matched.
            c.prepare_cached(
                "UPDATE factors SET drift_hint_step = ?1, drift_hint_dir = ?2 WHERE id = ?3",
            )
            .and_then(|mut s| s.execute(params![m.step, dir, m.factor_id]))
            .map_err(backend)?;
        }
    }
    // Failure path: count one failure on every candidate that is open (INV-03).
    for (id, row) in rows {
        if row.throttle.is_locked() {
            if reason == RejectReason::WrongCode {
                reason = RejectReason::Locked;
            }
            continue;
        }
        if row.throttle.is_blocked(now) {
            if reason == RejectReason::WrongCode {
                reason = RejectReason::Throttled;
            }
            continue;
        }
        let next = after_failure(row.throttle, now);
        c.prepare_cached(
            "UPDATE factors SET failures = ?1, blocked_until = ?2, locked_at = ?3
             WHERE id = ?4 AND failures = ?5",
        )
        .and_then(|mut s| {
            s.execute(params![
                next.failures,
                next.blocked_until,
                next.locked_at,
                id,
                row.throttle.failures
            ])
        })
        .map_err(backend)?;
        if next.is_locked() && !row.throttle.is_locked() {
            let mut lock = audit.clone();
            lock.action = "factor.lock".into();
            lock.factor_id = Some(id.to_string());
            lock.outcome = "ok".into();
            lock.reason = Some(format!("{} consecutive failures", next.failures));
            insert_audit(c, &lock)?;
        }
    }
    audit.outcome = "denied".into();
    audit.reason = Some(reason.as_str().into());
    insert_audit(c, &audit)?;
    Ok(AttemptOutcome::Rejected { reason })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_tenant(&self, t: NewTenant, audit: AuditRecord) -> StoreResult<Tenant> {
        let NewTenant {
            slug,
            name,
            created_at: now,
            first_key,
        } = t;
        self.write(move |c| {
            c.execute(
                "INSERT INTO tenants (slug, name, created_at) VALUES (?1, ?2, ?3)",
                params![slug, name, now],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("tenant_exists")
                } else {
                    backend(e)
                }
            })?;
            let id = c.last_insert_rowid();
            let mut audit = audit;
            audit.tenant_id = Some(id);
            insert_audit(c, &audit)?;
            if let Some(mut key) = first_key {
                key.tenant_id = Some(id);
                insert_key(c, &key)?;
                audit.action = "apikey.create".into();
                insert_audit(c, &audit)?;
            }
            Ok(Tenant {
                id,
                slug,
                name,
                created_at: now,
            })
        })
        .await
    }

    async fn tenant_by_slug(&self, slug: &str) -> StoreResult<Option<Tenant>> {
        let slug = slug.to_string();
        self.point_read(move |c| {
            c.query_row(
                "SELECT id, slug, name, created_at FROM tenants WHERE slug = ?1",
                params![slug],
                tenant_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn insert_api_key(&self, key: ApiKey, audit: AuditRecord) -> StoreResult<()> {
        self.write(move |c| {
            insert_key(c, &key)?;
            insert_audit(c, &audit)
        })
        .await
    }

    async fn api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>> {
        let key_id = key_id.to_string();
        self.point_read(move |c| {
            c.query_row(
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE key_id = ?1"),
                params![key_id],
                key_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn list_api_keys(&self, tenant_id: Option<i64>) -> StoreResult<Vec<ApiKey>> {
        self.read(move |c| {
            let mut s = c
                .prepare(&format!(
                    "SELECT {KEY_COLS} FROM api_keys WHERE tenant_id IS ?1 ORDER BY created_at"
                ))
                .map_err(backend)?;
            let rows = s.query_map(params![tenant_id], key_row).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        key_id: &str,
        now: i64,
        audit: AuditRecord,
    ) -> StoreResult<bool> {
        let key_id = key_id.to_string();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE api_keys SET revoked_at = ?1 WHERE key_id = ?2 AND revoked_at IS NULL",
                    params![now, key_id],
                )
                .map_err(backend)?;
            if n == 1 {
                insert_audit(c, &audit)?;
            }
            Ok(n == 1)
        })
        .await
    }

    async fn create_user(&self, user: NewUser, audit: AuditRecord) -> StoreResult<User> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO users (tenant_id, external_id, email, phone, profile, is_admin,
                                    created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    user.tenant_id,
                    user.external_id,
                    user.email,
                    user.phone,
                    user.profile,
                    user.is_admin,
                    user.created_at
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("user_exists")
                } else {
                    backend(e)
                }
            })?;
            let id = c.last_insert_rowid();
            let mut audit = audit;
            audit.user_id = Some(id);
            insert_audit(c, &audit)?;
            Ok(User {
                id,
                tenant_id: user.tenant_id,
                external_id: user.external_id,
                email: user.email,
                phone: user.phone,
                profile: user.profile,
                is_admin: user.is_admin,
                created_at: user.created_at,
            })
        })
        .await
    }

    async fn user(&self, tenant_id: i64, external_id: &str) -> StoreResult<Option<User>> {
        let external_id = external_id.to_string();
        self.point_read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users WHERE tenant_id = ?1 AND external_id = ?2"
            ))
            .and_then(|mut s| {
                s.query_row(params![tenant_id, external_id], user_row)
                    .optional()
            })
            .map_err(backend)
        })
        .await
    }

    async fn list_users(
        &self,
        tenant_id: i64,
        after_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<User>> {
        self.read(move |c| {
            let mut s = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLS} FROM users WHERE tenant_id = ?1 AND id > ?2
                     ORDER BY id LIMIT ?3"
                ))
                .map_err(backend)?;
            let rows = s
                .query_map(params![tenant_id, after_id.unwrap_or(0), limit], user_row)
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn insert_factor(
        &self,
        f: Factor,
        max_per_user: usize,
        audit: AuditRecord,
    ) -> StoreResult<()> {
        self.write(move |c| {
            let count: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM factors WHERE user_id = ?1",
                    params![f.user_id],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if count >= max_per_user as i64 {
                return Err(StoreError::Conflict("too_many_factors"));
            }
            c.execute(
                &format!(
                    "INSERT INTO factors ({FACTOR_COLS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                             ?16, ?17, ?18, ?19)"
                ),
                params![
                    f.id,
                    f.tenant_id,
                    f.user_id,
                    f.kind,
                    f.status.as_str(),
                    f.sealed_secret,
                    f.algorithm,
                    f.digits,
                    f.period,
                    f.last_step,
                    f.drift,
                    f.version,
                    f.failures,
                    f.blocked_until,
                    f.locked_at,
                    f.created_at,
                    f.confirmed_at,
                    f.drift_hint.map(|h| h.0),
                    f.drift_hint.map(|h| h.1)
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("factor_exists")
                } else {
                    backend(e)
                }
            })?;
            insert_audit(c, &audit)
        })
        .await
    }

    async fn user_with_factors(
        &self,
        tenant_id: i64,
        external_id: &str,
    ) -> StoreResult<Option<(User, Vec<Factor>)>> {
        let external_id = external_id.to_string();
        self.point_read(move |c| {
            let Some(user) = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLS} FROM users WHERE tenant_id = ?1 AND external_id = ?2"
                ))
                .and_then(|mut s| {
                    s.query_row(params![tenant_id, external_id], user_row)
                        .optional()
                })
                .map_err(backend)?
            else {
                return Ok(None);
            };
            let factors = factors_of(c, user.id)?;
            Ok(Some((user, factors)))
        })
        .await
    }

    async fn factors_of(&self, user_id: i64) -> StoreResult<Vec<Factor>> {
        self.point_read(move |c| factors_of(c, user_id)).await
    }

    async fn delete_factor(&self, factor_id: &str, audit: AuditRecord) -> StoreResult<bool> {
        let factor_id = factor_id.to_string();
        self.write(move |c| {
            let n = c
                .execute("DELETE FROM factors WHERE id = ?1", params![factor_id])
                .map_err(backend)?;
            if n == 1 {
                insert_audit(c, &audit)?;
            }
            Ok(n == 1)
        })
        .await
    }

    async fn attempt(&self, attempt: Attempt) -> StoreResult<AttemptOutcome> {
        self.write(move |c| run_attempt(c, attempt)).await
    }

    async fn unlock_factor(&self, factor_id: &str, audit: AuditRecord) -> StoreResult<bool> {
        let factor_id = factor_id.to_string();
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE factors SET failures = 0, blocked_until = NULL, locked_at = NULL
                     WHERE id = ?1",
                    params![factor_id],
                )
                .map_err(backend)?;
            if n == 1 {
                insert_audit(c, &audit)?;
            }
            Ok(n == 1)
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.write(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }

    async fn append_audit(&self, audit: AuditRecord) -> StoreResult<()> {
        self.write(move |c| insert_audit(c, &audit)).await
    }

    async fn list_audit(&self, q: AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        self.read(move |c| {
            let mut s = c
                .prepare_cached(
                    "SELECT a.id, a.tenant_id, a.at, a.actor, a.action, a.user_id, a.factor_id,
                            a.outcome, a.reason, a.ip, a.request_id, u.external_id
                     FROM audit_events a LEFT JOIN users u ON u.id = a.user_id
                     WHERE a.tenant_id IS ?1
                       AND (?2 IS NULL OR a.user_id = ?2)
                       AND (?3 IS NULL OR a.action = ?3)
                       AND a.id < ?4
                     ORDER BY a.id DESC LIMIT ?5",
                )
                .map_err(backend)?;
            let rows = s
                .query_map(
                    params![
                        q.tenant_id,
                        q.user_id,
                        q.action,
                        q.before_id.unwrap_or(i64::MAX),
                        q.limit
                    ],
                    |r| {
                        Ok(AuditEvent {
                            id: r.get(0)?,
                            record: AuditRecord {
                                tenant_id: r.get(1)?,
                                at: r.get(2)?,
                                actor: r.get(3)?,
                                action: r.get(4)?,
                                user_id: r.get(5)?,
                                factor_id: r.get(6)?,
                                outcome: r.get(7)?,
                                reason: r.get(8)?,
                                ip: r.get(9)?,
                                request_id: r.get(10)?,
                            },
                            user_external_id: r.get(11)?,
                        })
                    },
                )
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn prune_audit(&self, before: i64) -> StoreResult<u64> {
        // In chunks, so one prune never holds the group-commit writer for long.
        const CHUNK: u64 = 5_000;
        let mut total = 0;
        loop {
            let n = self
                .write(move |c| {
                    c.execute(
                        "DELETE FROM audit_events WHERE id IN
                           (SELECT id FROM audit_events WHERE at < ?1 LIMIT ?2)",
                        params![before, CHUNK],
                    )
                    .map(|n| n as u64)
                    .map_err(backend)
                })
                .await?;
            total += n;
            if n < CHUNK {
                return Ok(total);
            }
        }
    }
}
