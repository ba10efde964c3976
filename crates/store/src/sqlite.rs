//! The embedded SQLite store.
//!
//! Writes go through one writer thread that takes everything queued (up to [`MAX_BATCH`]) into
//! a single `BEGIN IMMEDIATE` transaction, each job inside its own savepoint, and answers each
//! caller only after the one `COMMIT` (group commit). With `synchronous=FULL` that is one fsync
//! per batch instead of per request: every acknowledged write is durable, and a crash loses
//! only writes that were never acknowledged. Reads come from a small pool of read-only
//! connections (WAL lets them run beside the writer).
//!
//! This file holds the writer, the connections and the [`Store`] impl, which only routes each
//! call to the right connection; the SQL lives beside it by concern: `rows` (column lists, row
//! mappers, shared inserts), `factors` (enrolment, TOTP attempts, failure charging), `codes`
//! (one-time codes), `vault` (the authenticator vault), `webauthn` (security keys' ceremonies),
//! `effects` (changes riding on a code or attempt, or applied alone),
//! `logins` (policies, proposals, pending logins, sessions, remembered devices), `jobs`
//! (background jobs over a tenant's users), `security` (recovery codes, "this wasn't me"
//! links, app passwords, the login history), `keys` (master key rotation) and `outbox`.

pub mod backup;
mod codes;
mod effects;
mod factors;
mod jobs;
mod keys;
mod logins;
mod oidc;
mod outbox;
mod rows;
mod security;
mod vault;
mod webauthn;
mod webhooks;

use crate::migrations::{self, Backend};
use async_trait::async_trait;
use rows::*;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, Semaphore};
use twofold_core::keys::*;
use twofold_core::login::*;
use twofold_core::messaging::*;
use twofold_core::model::*;
use twofold_core::oidc::*;
use twofold_core::ports::*;
use twofold_core::security::*;
use twofold_core::vault::*;
use twofold_core::webauthn::WebauthnChallenge;

/// Most jobs committed together; bounds how long one batch holds the write lock.
pub const MAX_BATCH: usize = 512;
const READERS: usize = 8;
const QUEUE_DEPTH: usize = 16_384;

trait WriteJob: Send {
    /// Runs the job inside its own savepoint. Returns false when the surrounding transaction
    /// is no longer usable (SQLite rolled it back, e.g. on a full disk, or the savepoint could
    /// not be closed): the whole batch must then fail, since nothing in it can be committed.
    fn run(&mut self, conn: &Connection) -> bool;
    fn finish(self: Box<Self>, commit: Result<(), StoreError>);
}

/// A queued write: the closure, its result once run, and where to send that after COMMIT.
struct QueuedWrite<F, R> {
    f: Option<F>,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> WriteJob for QueuedWrite<F, R>
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
        let shed = matches!(commit, Err(StoreError::Busy));
        for job in batch {
            job.finish(commit.clone());
        }
        // BEGIN waited out the whole busy timeout: another process holds the write lock.
        // Everything that queued up meanwhile is refused now rather than each batch waiting a
        // timeout of its own, which under steady traffic would grow every caller's wait with
        // the queue (up to QUEUE_DEPTH / MAX_BATCH timeouts) instead of answering 503 within
        // one. Jobs that arrive after this start a fresh attempt.
        if shed {
            while let Ok(job) = rx.try_recv() {
                job.finish(Err(StoreError::Busy));
            }
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
    conn.set_prepared_statement_cache_capacity(128);
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
    match backup::create_new_private(path) {
        Ok(()) => Ok(()),
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
        let job: Box<dyn WriteJob> = Box::new(QueuedWrite {
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

    /// A read on a pooled connection in a blocking thread: for scans (listings).
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

    /// Runs `delete` (`DELETE … WHERE id IN (SELECT id … WHERE at < ?1 LIMIT ?2)`) until it
    /// deletes less than a chunk, each chunk its own write, so one prune never holds the
    /// group-commit writer for long. Returns how many rows went.
    async fn prune_in_chunks(&self, delete: &'static str, before: i64) -> StoreResult<u64> {
        const CHUNK: u64 = 5_000;
        let mut total = 0;
        loop {
            let n = self
                .write(move |c| {
                    c.prepare_cached(delete)
                        .and_then(|mut s| s.execute(params![before, CHUNK]))
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

#[async_trait]
impl Store for SqliteStore {
    async fn create_tenant(&self, t: NewTenant, audit: AuditRecord) -> StoreResult<Tenant> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO tenants (slug, name, created_at) VALUES (?1, ?2, ?3)",
                params![t.slug, t.name, t.created_at],
            )
            .map_err(conflict_on_duplicate("tenant_exists"))?;
            let rows = tenant_rows(c.last_insert_rowid(), t, audit);
            insert_audit(c, &rows.audit)?;
            if let Some((key, key_audit)) = &rows.first_key {
                insert_key(c, key)?;
                insert_audit(c, key_audit)?;
            }
            Ok(rows.tenant)
        })
        .await
    }

    async fn tenant_by_id(&self, id: i64) -> StoreResult<Option<Tenant>> {
        self.point_read(move |c| {
            c.query_row(
                &format!("SELECT {TENANT_COLS} FROM tenants WHERE id = ?1"),
                params![id],
                tenant_row,
            )
            .optional()
            .map_err(backend)
        })
        .await
    }

    async fn tenant_by_slug(&self, slug: &str) -> StoreResult<Option<Tenant>> {
        let slug = slug.to_string();
        self.point_read(move |c| {
            c.query_row(
                &format!("SELECT {TENANT_COLS} FROM tenants WHERE slug = ?1"),
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
            .map_err(conflict_on_duplicate("user_exists"))?;
            let (user, audit) = user_rows(c.last_insert_rowid(), user, audit);
            insert_audit(c, &audit)?;
            Ok(user)
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

    async fn rollout_groups(
        &self,
        tenant_id: i64,
    ) -> StoreResult<Vec<twofold_core::rollout::MethodGroup>> {
        self.read(move |c| {
            let mut s = c
                .prepare_cached(&rollout_groups_sql("?1"))
                .map_err(backend)?;
            let rows = s
                .query_map(params![tenant_id], |r| {
                    Ok(method_group(r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn active_methods(
        &self,
        tenant_id: i64,
        user_ids: &[i64],
    ) -> StoreResult<Vec<(i64, twofold_core::rollout::MethodSet)>> {
        let Some((low, high)) = id_range(user_ids) else {
            return Ok(Vec::new());
        };
        let ids = user_ids.to_vec();
        self.read(move |c| {
            let mut s = c
                .prepare_cached(&active_methods_sql(["?1", "?2", "?3"]))
                .map_err(backend)?;
            let rows = s
                .query_map(params![tenant_id, low, high], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok(methods_of(rows, &ids))
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
            factors::insert_factor_row(c, &f, max_per_user)?;
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

    async fn delete_factor(
        &self,
        factor_id: &str,
        only_if: Option<FactorStatus>,
        audit: AuditRecord,
        notice: Option<NewMessage>,
    ) -> StoreResult<bool> {
        let factor_id = factor_id.to_string();
        self.write(move |c| {
            let deleted = factors::delete_factor_rows(c, &factor_id, only_if)?;
            if deleted {
                insert_audit(c, &audit)?;
                notice.iter().try_for_each(|m| insert_message(c, m))?;
            }
            Ok(deleted)
        })
        .await
    }

    async fn attempt(&self, attempt: Attempt) -> StoreResult<AttemptOutcome> {
        self.write(move |c| factors::run_attempt(c, attempt)).await
    }

    async fn unlock_factor(
        &self,
        factor_id: &str,
        audit: AuditRecord,
        notice: Vec<Effect>,
    ) -> StoreResult<bool> {
        let factor_id = factor_id.to_string();
        self.write(move |c| {
            let unlocked = factors::unlock_factor_row(c, &factor_id)?;
            if unlocked {
                insert_audit(c, &audit)?;
                effects::apply_effects(c, notice)?;
            }
            Ok(unlocked)
        })
        .await
    }

    async fn update_tenant_messaging(
        &self,
        tenant_id: i64,
        sender_name: Option<String>,
        sms_countries: Option<Vec<String>>,
        audit: AuditRecord,
    ) -> StoreResult<()> {
        let countries = countries_json(&sms_countries)?;
        self.write(move |c| {
            let n = c
                .execute(
                    "UPDATE tenants SET sender_name = ?1, sms_countries = ?2 WHERE id = ?3",
                    params![sender_name, countries, tenant_id],
                )
                .map_err(backend)?;
            if n != 1 {
                return Err(StoreError::Conflict("state_changed"));
            }
            insert_audit(c, &audit)
        })
        .await
    }

    async fn issue_code(&self, issue: IssueCode) -> StoreResult<IssueOutcome> {
        self.write(move |c| codes::issue_code(c, issue)).await
    }

    async fn consume_code(&self, consume: ConsumeCode) -> StoreResult<AttemptOutcome> {
        self.write(move |c| codes::consume_code(c, consume)).await
    }

    async fn phone_change(&self, id: &str) -> StoreResult<Option<PhoneChange>> {
        let id = id.to_string();
        self.point_read(move |c| codes::phone_change(c, &id)).await
    }

    async fn enqueue(
        &self,
        messages: Vec<NewMessage>,
        audit: Option<AuditRecord>,
    ) -> StoreResult<()> {
        self.write(move |c| {
            messages.iter().try_for_each(|m| insert_message(c, m))?;
            audit.iter().try_for_each(|a| insert_audit(c, a))
        })
        .await
    }

    async fn claim_messages(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let owner = owner.to_string();
        self.write(move |c| outbox::claim(c, &owner, now, lease_ms, limit))
            .await
    }

    async fn finish_message(
        &self,
        id: i64,
        owner: &str,
        result: DeliveryResult,
        now: i64,
    ) -> StoreResult<bool> {
        let owner = owner.to_string();
        self.write(move |c| outbox::finish(c, id, &owner, result, now))
            .await
    }

    async fn outbox_stats(&self, tenant_id: Option<i64>) -> StoreResult<OutboxStats> {
        self.read(move |c| outbox::stats(c, tenant_id)).await
    }

    async fn list_messages(&self, query: MessageQuery) -> StoreResult<Vec<OutboxMessage>> {
        self.read(move |c| outbox::list(c, &query)).await
    }

    async fn retry_message(&self, id: i64, now: i64, audit: AuditRecord) -> StoreResult<bool> {
        self.write(move |c| {
            let requeued = outbox::retry(c, id, now)?;
            if requeued {
                insert_audit(c, &audit)?;
            }
            Ok(requeued)
        })
        .await
    }

    async fn prune_messaging(&self, before: i64, now: i64) -> StoreResult<u64> {
        const CHUNK: u64 = 5_000;
        let mut total = 0;
        loop {
            let (n, more) = self
                .write(move |c| outbox::prune_chunk(c, before, now, CHUNK))
                .await?;
            total += n;
            if !more {
                return Ok(total);
            }
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        self.write(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }

    async fn apply(&self, effects: Vec<Effect>, audit: AuditRecord) -> StoreResult<()> {
        self.write(move |c| {
            effects::apply_effects(c, effects)?;
            insert_audit(c, &audit)
        })
        .await
    }

    async fn policy(&self, tenant_id: i64) -> StoreResult<Option<StoredPolicy>> {
        self.point_read(move |c| logins::policy(c, tenant_id)).await
    }

    async fn user_by_id(&self, user_id: i64) -> StoreResult<Option<User>> {
        self.point_read(move |c| {
            c.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE id = ?1"))
                .and_then(|mut s| s.query_row(params![user_id], user_row).optional())
                .map_err(backend)
        })
        .await
    }

    async fn admins_of(&self, tenant_id: i64) -> StoreResult<Vec<User>> {
        self.read(move |c| {
            let mut s = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLS} FROM users WHERE tenant_id = ?1 AND is_admin <> 0
                     ORDER BY id"
                ))
                .map_err(backend)?;
            let rows = s.query_map(params![tenant_id], user_row).map_err(backend)?;
            rows.collect::<Result<_, _>>().map_err(backend)
        })
        .await
    }

    async fn proposal(&self, id: &str) -> StoreResult<Option<Proposal>> {
        let id = id.to_string();
        self.point_read(move |c| logins::proposal(c, &id)).await
    }

    async fn start_login(&self, login: PendingLogin, audit: AuditRecord) -> StoreResult<()> {
        self.write(move |c| {
            logins::insert_login(c, &login)?;
            insert_audit(c, &audit)
        })
        .await
    }

    async fn pending_login(&self, token_hash: &[u8]) -> StoreResult<Option<PendingLogin>> {
        let token_hash = token_hash.to_vec();
        self.point_read(move |c| logins::pending_login(c, &token_hash))
            .await
    }

    async fn session(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        let token_hash = token_hash.to_vec();
        self.point_read(move |c| logins::session(c, &token_hash))
            .await
    }

    async fn sessions_of(&self, user_id: i64) -> StoreResult<Vec<Session>> {
        // Not a point read: revoked sessions are kept, so the list has no fixed bound.
        self.read(move |c| logins::sessions_of(c, user_id)).await
    }

    async fn touch_session(&self, id: &str, at: i64) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |c| logins::touch_session(c, &id, at)).await
    }

    async fn device(&self, token_hash: &[u8]) -> StoreResult<Option<TrustedDevice>> {
        let token_hash = token_hash.to_vec();
        self.point_read(move |c| logins::device(c, &token_hash))
            .await
    }

    async fn devices_of(&self, user_id: i64) -> StoreResult<Vec<TrustedDevice>> {
        self.read(move |c| logins::devices_of(c, user_id)).await
    }

    async fn due_jobs(&self, now: i64, limit: u32) -> StoreResult<Vec<Job>> {
        self.read(move |c| jobs::due(c, now, limit)).await
    }

    async fn advance_job(
        &self,
        job_id: i64,
        from_cursor: i64,
        to_cursor: i64,
        processed: i64,
        done: bool,
        effects: Vec<Effect>,
        now: i64,
    ) -> StoreResult<bool> {
        let step = jobs::Advance {
            job_id,
            from_cursor,
            to_cursor,
            processed,
            done,
            now,
        };
        self.write(move |c| jobs::advance(c, &step, effects)).await
    }

    async fn job(&self, job_id: i64) -> StoreResult<Option<Job>> {
        self.point_read(move |c| jobs::job(c, job_id)).await
    }

    async fn webhooks_of(&self, tenant_id: i64) -> StoreResult<Vec<Webhook>> {
        self.point_read(move |c| webhooks::of_tenant(c, tenant_id))
            .await
    }

    async fn key_state(&self) -> StoreResult<KeyState> {
        self.point_read(keys::key_state).await
    }

    async fn set_key_state(&self, change: KeyChange, audit: AuditRecord) -> StoreResult<bool> {
        self.write(move |c| {
            let set = keys::set_key_state(c, &change)?;
            if set {
                insert_audit(c, &audit)?;
            }
            Ok(set)
        })
        .await
    }

    async fn report_node_keys(&self, node: NodeKeys) -> StoreResult<()> {
        self.write(move |c| keys::report_node(c, &node)).await
    }

    async fn node_keys(&self, since: i64) -> StoreResult<Vec<NodeKeys>> {
        self.read(move |c| keys::nodes(c, since)).await
    }

    async fn prune_node_keys(&self, before: i64) -> StoreResult<u64> {
        self.prune_in_chunks(
            "DELETE FROM node_keys WHERE node_id IN
               (SELECT node_id FROM node_keys WHERE seen_at < ?1 LIMIT ?2)",
            before,
        )
        .await
    }

    async fn sealed_rows(
        &self,
        column: SealedColumn,
        after: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<SealedRow>> {
        let after = after.unwrap_or_default();
        self.read(move |c| keys::sealed_rows(c, column, &after, limit))
            .await
    }

    async fn reseal(&self, changes: Vec<Reseal>) -> StoreResult<Vec<bool>> {
        self.write(move |c| keys::reseal(c, &changes)).await
    }

    async fn vault_entries(&self, tenant_id: i64) -> StoreResult<Vec<VaultEntry>> {
        self.point_read(move |c| vault::entries(c, tenant_id)).await
    }

    async fn vault_entry(&self, tenant_id: i64, name: &str) -> StoreResult<Option<VaultEntry>> {
        let name = name.to_string();
        self.point_read(move |c| vault::entry(c, tenant_id, &name))
            .await
    }

    async fn vault_groups(&self, tenant_id: i64) -> StoreResult<Vec<VaultGroup>> {
        self.point_read(move |c| vault::groups(c, tenant_id)).await
    }

    async fn vault_tokens(&self, tenant_id: i64) -> StoreResult<Vec<VaultToken>> {
        self.point_read(move |c| vault::tokens(c, tenant_id)).await
    }

    async fn vault_token(&self, token_hash: &[u8]) -> StoreResult<Option<VaultToken>> {
        let hash = token_hash.to_vec();
        self.point_read(move |c| vault::token(c, &hash)).await
    }

    async fn oidc_client(&self, client_id: &str) -> StoreResult<Option<OidcClient>> {
        let id = client_id.to_string();
        self.point_read(move |c| oidc::client(c, &id)).await
    }

    async fn oidc_clients(&self, tenant_id: i64) -> StoreResult<Vec<OidcClient>> {
        self.point_read(move |c| oidc::clients(c, tenant_id)).await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        self.point_read(oidc::signing_keys).await
    }

    async fn auth_code(&self, code_hash: &[u8]) -> StoreResult<Option<AuthCode>> {
        let hash = code_hash.to_vec();
        self.point_read(move |c| oidc::code(c, &hash)).await
    }

    async fn hosted_login(&self, login_id: &str) -> StoreResult<Option<HostedLogin>> {
        let id = login_id.to_string();
        self.point_read(move |c| oidc::hosted(c, &id)).await
    }

    async fn prune_oidc(&self, before: i64) -> StoreResult<u64> {
        self.write(move |c| oidc::prune(c, before)).await
    }

    async fn webauthn_challenge(&self, id: &str) -> StoreResult<Option<WebauthnChallenge>> {
        let id = id.to_string();
        self.point_read(move |c| webauthn::challenge(c, &id)).await
    }

    async fn prune_webauthn_challenges(&self, before: i64) -> StoreResult<u64> {
        self.prune_in_chunks(webauthn::PRUNE, before).await
    }

    async fn append_audit(&self, audit: AuditRecord) -> StoreResult<()> {
        self.write(move |c| insert_audit(c, &audit)).await
    }

    async fn list_audit(&self, q: AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        self.read(move |c| {
            let mut s = c
                .prepare_cached(&format!(
                    "{AUDIT_SELECT}
                     WHERE a.tenant_id IS ?1
                       AND (?2 IS NULL OR a.user_id = ?2)
                       AND (?3 IS NULL OR a.action = ?3)
                       AND a.id < ?4
                     ORDER BY a.id DESC LIMIT ?5"
                ))
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
        self.prune_in_chunks(
            "DELETE FROM audit_events WHERE id IN
               (SELECT id FROM audit_events WHERE at < ?1 LIMIT ?2)",
            before,
        )
        .await
    }

    async fn recovery_codes_left(&self, user_id: i64) -> StoreResult<u32> {
        self.point_read(move |c| security::recovery_codes_left(c, user_id))
            .await
    }

    async fn counts(&self, limits: Vec<SendLimit>, now: i64) -> StoreResult<Vec<i64>> {
        self.point_read(move |c| codes::counts(c, &limits, now))
            .await
    }

    async fn revert_link(&self, token_hash: &[u8]) -> StoreResult<Option<RevertLink>> {
        let token_hash = token_hash.to_vec();
        self.point_read(move |c| security::revert_link(c, &token_hash))
            .await
    }

    async fn app_password(&self, token_hash: &[u8]) -> StoreResult<Option<AppPassword>> {
        let token_hash = token_hash.to_vec();
        self.point_read(move |c| security::app_password(c, &token_hash))
            .await
    }

    async fn app_passwords_of(&self, user_id: i64) -> StoreResult<Vec<AppPassword>> {
        // Not a point read: revoked ones are kept, so the list has no fixed bound.
        self.read(move |c| security::app_passwords_of(c, user_id))
            .await
    }

    async fn login_history(
        &self,
        user_id: i64,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<LoginRecord>> {
        self.read(move |c| security::login_history(c, user_id, since, limit))
            .await
    }

    async fn prune_login_history(&self, before: i64) -> StoreResult<u64> {
        self.prune_in_chunks(
            "DELETE FROM login_history WHERE id IN
               (SELECT id FROM login_history WHERE at < ?1 LIMIT ?2)",
            before,
        )
        .await
    }
}
