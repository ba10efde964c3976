//! The PostgreSQL store, for several `twofold serve` nodes sharing one database.
//!
//! Connections come from a pool (deadpool) of `tokio-postgres` clients, each caching its
//! prepared statements. Every write the [`Store`] contract calls atomic is one transaction at
//! PostgreSQL's default READ COMMITTED isolation, made safe across processes by:
//! - conditional writes whose success is "a row changed": consuming a TOTP step
//!   (`UPDATE … WHERE last_step < $step AND version = …`, INV-01) and a one-time code
//!   (`UPDATE … WHERE used_at IS NULL`, INV-02), finishing a leased message, moving a phone
//!   change; PostgreSQL re-checks such a condition on the newest row version, so two nodes
//!   cannot both succeed;
//! - the owning user's row lock (`SELECT … FOR NO KEY UPDATE`, see [`rows::lock_user`]) taken
//!   first by every write to a user's factors, codes and phone changes, so failure counters
//!   (INV-03), cooldowns and the per-user factor cap are read and written by one request at a
//!   time, as SQLite's single writer guarantees;
//! - sending caps counted by `INSERT … ON CONFLICT DO UPDATE … WHERE count < max RETURNING`,
//!   and outbox claims with `FOR UPDATE SKIP LOCKED`.
//!
//! Unique violations map to the same `Conflict` codes as SQLite; lost connections, deadlocks,
//! serialization failures and a server shutting down map to `Busy`.
//!
//! Connections use TLS as `sslmode` and `sslrootcert` in the URL say, with libpq's meanings
//! (see [`tls`]): by default (`prefer`) encrypted when the server offers it, without checking
//! its certificate; `verify-full` with `sslrootcert` authenticates the server.
//!
//! The SQL lives beside this file by concern, mirroring the SQLite store: `rows`, `factors`,
//! `codes`, `effects`, `logins`, `jobs`, `webhooks`, `security`, `keys`, `vault`, `oidc`,
//! `webauthn` and `outbox`; the rules both stores share are in `crate::common`.

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
pub mod tls;
mod vault;
mod webauthn;
mod webhooks;

use crate::migrations;
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
pub(crate) use rows::pg;
use rows::*;
use std::time::Duration;
use tokio_postgres_rustls::MakeRustlsConnect;
use twofold_core::keys::*;
use twofold_core::login::*;
use twofold_core::messaging::*;
use twofold_core::model::*;
use twofold_core::oidc::*;
use twofold_core::ports::*;
use twofold_core::security::*;
use twofold_core::vault::*;
use twofold_core::webauthn::WebauthnChallenge;

/// Connections per node. PostgreSQL's default `max_connections` is 100: several nodes fit.
pub const POOL_SIZE: usize = 16;
/// How long a request waits for a free connection before the store answers `Busy`.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows deleted per transaction when pruning.
const PRUNE_CHUNK: i64 = 5_000;

/// PostgreSQL store handle; cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

/// Runs `$body` (an expression using the transaction `$tx`) in one transaction and commits it
/// if the body succeeded; on an error the transaction is dropped, which rolls it back.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut client = $store.client().await?;
        let $tx = client.transaction().await.map_err(pg)?;
        let out: Result<_, StoreError> = $body;
        let out = out?;
        $tx.commit().await.map_err(pg)?;
        Ok::<_, StoreError>(out)
    }};
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`, or the
    /// `key=value` form) and applies pending migrations. The URL is never echoed in errors: it
    /// may hold a password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_pooled(url, POOL_SIZE).await
    }

    /// The same with at most `max_connections` connections from this process (at least one):
    /// all nodes together must stay below the server's `max_connections`.
    pub async fn connect_pooled(url: &str, max_connections: usize) -> Result<Self, StoreError> {
        let (config, tls) = parse_url(url)?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(format!("connection pool: {e}")))?;
        let store = Self { pool };
        let mut client = store.client().await?;
        migrations::apply_postgres(&mut client).await?;
        drop(client);
        Ok(store)
    }

    /// `url` without its password, for logs and messages: only the user, hosts, ports and
    /// database the driver would use, so nothing else in the URL can leak.
    pub fn redacted_url(url: &str) -> String {
        let Ok((rest, tls)) = tls::split(url) else {
            return "<invalid PostgreSQL URL>".into();
        };
        let Ok(config) = rest.parse::<tokio_postgres::Config>() else {
            return "<invalid PostgreSQL URL>".into();
        };
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let host = match host {
                    tokio_postgres::config::Host::Tcp(h) => h.clone(),
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                };
                let ports = config.get_ports();
                let port = ports.get(i).or(ports.first()).unwrap_or(&5432);
                format!("{host}:{port}")
            })
            .collect();
        let mut params = Vec::new();
        if tls.explicit {
            params.push(format!("sslmode={}", tls.mode.as_str()));
        }
        match &tls.root {
            Some(tls::RootCerts::File(path)) => {
                params.push(format!("sslrootcert={}", path.display()))
            }
            Some(tls::RootCerts::System) => params.push("sslrootcert=system".into()),
            None => {}
        }
        format!(
            "postgres://{}{}/{}{}{}",
            config
                .get_user()
                .map(|u| format!("{u}@"))
                .unwrap_or_default(),
            hosts.join(","),
            config.get_dbname().unwrap_or_default(),
            if params.is_empty() { "" } else { "?" },
            params.join("&")
        )
    }

    /// A warning when `url` reaches a host other than this machine without authenticating the
    /// server (`sslmode` other than `verify-full`); `None` when it is fine or cannot be parsed
    /// (connecting will say why).
    pub fn tls_warning(url: &str) -> Option<String> {
        let (rest, tls) = tls::split(url).ok()?;
        let config = rest.parse::<tokio_postgres::Config>().ok()?;
        let remote: Vec<&str> = config
            .get_hosts()
            .iter()
            .filter_map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => Some(h.as_str()),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(_) => None,
            })
            .filter(|h| {
                let loopback = h
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
                !(loopback || h.eq_ignore_ascii_case("localhost"))
            })
            .collect();
        let what = match tls.mode {
            tls::SslMode::VerifyFull => return None,
            _ if remote.is_empty() => return None,
            tls::SslMode::Disable => "is not encrypted (sslmode=disable)",
            tls::SslMode::Prefer if tls.root.is_none() => {
                "is encrypted only if the server offers TLS, and the server is not \
                 authenticated (sslmode=prefer, the default)"
            }
            tls::SslMode::Prefer => {
                "is encrypted only if the server offers TLS (sslmode=prefer, the default)"
            }
            tls::SslMode::Require if tls.root.is_none() => {
                "is encrypted but the server is not authenticated (sslmode=require)"
            }
            tls::SslMode::Require | tls::SslMode::VerifyCa => {
                "does not check the host name in the server's certificate (sslmode=verify-ca)"
            }
        };
        Some(format!(
            "database_url: the connection to {} {what}: use sslmode=verify-full with \
             sslrootcert=<the CA's PEM file> unless the network to PostgreSQL is trusted",
            remote.join(",")
        ))
    }

    /// The migration versions applied to this database, in order.
    pub async fn applied_migrations(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        migrations::applied_postgres(&**client).await
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Runs `delete` (`DELETE … WHERE id IN (SELECT id … WHERE at < $1 LIMIT $2)`) until it
    /// deletes less than a chunk, each chunk its own transaction, so one prune never holds
    /// many row locks for long. Returns how many rows went.
    async fn prune_in_chunks(&self, delete: &str, before: i64) -> StoreResult<u64> {
        let mut total = 0;
        loop {
            let n: u64 = in_tx!(self, |tx| exec(&tx, delete, &[&before, &PRUNE_CHUNK]).await)?;
            total += n;
            if n < PRUNE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

/// The driver's settings for `url`, with a connect timeout unless the URL sets one, and the TLS
/// connector its `sslmode` and `sslrootcert` ask for. The URL is never echoed in the error: it
/// may hold a password.
pub(crate) fn parse_url(
    url: &str,
) -> Result<(tokio_postgres::Config, MakeRustlsConnect), StoreError> {
    let (rest, tls) = tls::split(url)?;
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|_| StoreError::Backend("invalid PostgreSQL connection URL".into()))?;
    let (mode, connector) = tls::connector(&tls)?;
    config.ssl_mode(mode);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("twofold");
    Ok((config, connector))
}

#[async_trait]
impl Store for PgStore {
    async fn create_tenant(&self, t: NewTenant, audit: AuditRecord) -> StoreResult<Tenant> {
        in_tx!(self, |tx| async {
            let id = insert_returning_id(
                &tx,
                "INSERT INTO tenants (slug, name, created_at) VALUES ($1, $2, $3) RETURNING id",
                &[&t.slug, &t.name, &t.created_at],
                "tenant_exists",
            )
            .await?;
            let rows = tenant_rows(id, t, audit);
            insert_audit(&tx, &rows.audit).await?;
            if let Some((key, key_audit)) = &rows.first_key {
                insert_key(&tx, key).await?;
                insert_audit(&tx, key_audit).await?;
            }
            Ok(rows.tenant)
        }
        .await)
    }

    async fn tenant_by_id(&self, id: i64) -> StoreResult<Option<Tenant>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {TENANT_COLS} FROM tenants WHERE id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(tenant_row)
        .transpose()
    }

    async fn tenant_by_slug(&self, slug: &str) -> StoreResult<Option<Tenant>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {TENANT_COLS} FROM tenants WHERE slug = $1"),
            &[&slug],
        )
        .await?
        .as_ref()
        .map(tenant_row)
        .transpose()
    }

    async fn insert_api_key(&self, key: ApiKey, audit: AuditRecord) -> StoreResult<()> {
        in_tx!(self, |tx| async {
            insert_key(&tx, &key).await?;
            insert_audit(&tx, &audit).await
        }
        .await)
    }

    async fn api_key(&self, key_id: &str) -> StoreResult<Option<ApiKey>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {KEY_COLS} FROM api_keys WHERE key_id = $1"),
            &[&key_id],
        )
        .await?
        .as_ref()
        .map(key_row)
        .transpose()
    }

    async fn list_api_keys(&self, tenant_id: Option<i64>) -> StoreResult<Vec<ApiKey>> {
        let client = self.client().await?;
        // Two spellings: `IS NOT DISTINCT FROM` would not use an index.
        let rows = match tenant_id {
            Some(id) => {
                query(
                    &client,
                    &format!(
                        "SELECT {KEY_COLS} FROM api_keys WHERE tenant_id = $1
                         ORDER BY created_at, key_id COLLATE \"C\""
                    ),
                    &[&id],
                )
                .await?
            }
            None => {
                query(
                    &client,
                    &format!(
                        "SELECT {KEY_COLS} FROM api_keys WHERE tenant_id IS NULL
                         ORDER BY created_at, key_id COLLATE \"C\""
                    ),
                    &[],
                )
                .await?
            }
        };
        all(rows, key_row)
    }

    async fn revoke_api_key(
        &self,
        key_id: &str,
        now: i64,
        audit: AuditRecord,
    ) -> StoreResult<bool> {
        in_tx!(self, |tx| async {
            let n = exec(
                &tx,
                "UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL",
                &[&now, &key_id],
            )
            .await?;
            if n == 1 {
                insert_audit(&tx, &audit).await?;
            }
            Ok(n == 1)
        }
        .await)
    }

    async fn create_user(&self, user: NewUser, audit: AuditRecord) -> StoreResult<User> {
        in_tx!(self, |tx| async {
            let id = insert_returning_id(
                &tx,
                "INSERT INTO users (tenant_id, external_id, email, phone, profile, is_admin,
                                    created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    &user.tenant_id,
                    &user.external_id,
                    &user.email,
                    &user.phone,
                    &user.profile,
                    &user.is_admin,
                    &user.created_at,
                ],
                "user_exists",
            )
            .await?;
            let (user, audit) = user_rows(id, user, audit);
            insert_audit(&tx, &audit).await?;
            Ok(user)
        }
        .await)
    }

    async fn user(&self, tenant_id: i64, external_id: &str) -> StoreResult<Option<User>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND external_id = $2"),
            &[&tenant_id, &external_id],
        )
        .await?
        .as_ref()
        .map(user_row)
        .transpose()
    }

    async fn list_users(
        &self,
        tenant_id: i64,
        after_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<User>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            &format!(
                "SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND id > $2
                 ORDER BY id LIMIT $3"
            ),
            &[&tenant_id, &after_id.unwrap_or(0), &i64::from(limit)],
        )
        .await?;
        all(rows, user_row)
    }

    async fn rollout_groups(
        &self,
        tenant_id: i64,
    ) -> StoreResult<Vec<twofold_core::rollout::MethodGroup>> {
        let client = self.client().await?;
        let rows = query(&client, &rollout_groups_sql("$1"), &[&tenant_id]).await?;
        all(rows, |r| {
            Ok(method_group(get(r, 0)?, get(r, 1)?, get(r, 2)?))
        })
    }

    async fn active_methods(
        &self,
        tenant_id: i64,
        user_ids: &[i64],
    ) -> StoreResult<Vec<(i64, twofold_core::rollout::MethodSet)>> {
        let Some((low, high)) = id_range(user_ids) else {
            return Ok(Vec::new());
        };
        let client = self.client().await?;
        let rows = query(
            &client,
            &active_methods_sql(["$1", "$2", "$3"]),
            &[&tenant_id, &low, &high],
        )
        .await?;
        let rows = all(rows, |r| Ok((get(r, 0)?, get(r, 1)?)))?;
        Ok(methods_of(rows, user_ids))
    }

    async fn user_with_factors(
        &self,
        tenant_id: i64,
        external_id: &str,
    ) -> StoreResult<Option<(User, Vec<Factor>)>> {
        // One statement, so the user and their factors come from one snapshot.
        let client = self.client().await?;
        let rows = query(
            &client,
            &format!(
                "SELECT u.*, f.* FROM
                   (SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND external_id = $2) u
                 LEFT JOIN LATERAL
                   (SELECT {FACTOR_COLS} FROM factors WHERE user_id = u.id) f ON TRUE
                 ORDER BY f.created_at, f.id COLLATE \"C\""
            ),
            &[&tenant_id, &external_id],
        )
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let user = user_row(first)?;
        let mut factors = Vec::with_capacity(rows.len());
        for row in &rows {
            if get::<Option<String>>(row, USER_COLUMNS)?.is_some() {
                factors.push(factor_row_at(row, USER_COLUMNS)?);
            }
        }
        Ok(Some((user, factors)))
    }

    async fn insert_factor(
        &self,
        f: Factor,
        max_per_user: usize,
        audit: AuditRecord,
    ) -> StoreResult<()> {
        in_tx!(self, |tx| async {
            factors::insert_factor_row(&tx, &f, max_per_user).await?;
            insert_audit(&tx, &audit).await
        }
        .await)
    }

    async fn factors_of(&self, user_id: i64) -> StoreResult<Vec<Factor>> {
        let client = self.client().await?;
        factors_of(&client, user_id).await
    }

    async fn delete_factor(
        &self,
        factor_id: &str,
        only_if: Option<FactorStatus>,
        audit: AuditRecord,
        notice: Option<NewMessage>,
    ) -> StoreResult<bool> {
        in_tx!(self, |tx| async {
            let deleted = factors::delete_factor_rows(&tx, factor_id, only_if).await?;
            if deleted {
                insert_audit(&tx, &audit).await?;
                if let Some(m) = &notice {
                    insert_message(&tx, m).await?;
                }
            }
            Ok(deleted)
        }
        .await)
    }

    async fn attempt(&self, attempt: Attempt) -> StoreResult<AttemptOutcome> {
        in_tx!(self, |tx| factors::run_attempt(&tx, attempt).await)
    }

    async fn unlock_factor(
        &self,
        factor_id: &str,
        audit: AuditRecord,
        notice: Vec<Effect>,
    ) -> StoreResult<bool> {
        in_tx!(self, |tx| async {
            let unlocked = factors::unlock_factor_row(&tx, factor_id).await?;
            if unlocked {
                insert_audit(&tx, &audit).await?;
                effects::apply_effects(&tx, notice).await?;
            }
            Ok(unlocked)
        }
        .await)
    }

    async fn update_tenant_messaging(
        &self,
        tenant_id: i64,
        sender_name: Option<String>,
        sms_countries: Option<Vec<String>>,
        audit: AuditRecord,
    ) -> StoreResult<()> {
        let countries = countries_json(&sms_countries)?;
        in_tx!(self, |tx| async {
            let n = exec(
                &tx,
                "UPDATE tenants SET sender_name = $1, sms_countries = $2 WHERE id = $3",
                &[&sender_name, &countries, &tenant_id],
            )
            .await?;
            if n != 1 {
                return Err(StoreError::Conflict("state_changed"));
            }
            insert_audit(&tx, &audit).await
        }
        .await)
    }

    async fn issue_code(&self, issue: IssueCode) -> StoreResult<IssueOutcome> {
        in_tx!(self, |tx| codes::issue_code(&tx, issue).await)
    }

    async fn consume_code(&self, consume: ConsumeCode) -> StoreResult<AttemptOutcome> {
        in_tx!(self, |tx| codes::consume_code(&tx, consume).await)
    }

    async fn phone_change(&self, id: &str) -> StoreResult<Option<PhoneChange>> {
        let client = self.client().await?;
        codes::phone_change(&client, id).await
    }

    async fn enqueue(
        &self,
        messages: Vec<NewMessage>,
        audit: Option<AuditRecord>,
    ) -> StoreResult<()> {
        in_tx!(self, |tx| async {
            for m in &messages {
                insert_message(&tx, m).await?;
            }
            if let Some(a) = &audit {
                insert_audit(&tx, a).await?;
            }
            Ok(())
        }
        .await)
    }

    async fn claim_messages(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMessage>> {
        // One statement: its own transaction.
        let client = self.client().await?;
        outbox::claim(&client, owner, now, lease_ms, limit).await
    }

    async fn finish_message(
        &self,
        id: i64,
        owner: &str,
        result: DeliveryResult,
        now: i64,
    ) -> StoreResult<bool> {
        let client = self.client().await?;
        outbox::finish(&client, id, owner, result, now).await
    }

    async fn outbox_stats(&self, tenant_id: Option<i64>) -> StoreResult<OutboxStats> {
        let client = self.client().await?;
        outbox::stats(&client, tenant_id).await
    }

    async fn list_messages(&self, query: MessageQuery) -> StoreResult<Vec<OutboxMessage>> {
        let client = self.client().await?;
        outbox::list(&client, &query).await
    }

    async fn retry_message(&self, id: i64, now: i64, audit: AuditRecord) -> StoreResult<bool> {
        in_tx!(self, |tx| async {
            let requeued = outbox::retry(&tx, id, now).await?;
            if requeued {
                insert_audit(&tx, &audit).await?;
            }
            Ok(requeued)
        }
        .await)
    }

    async fn prune_messaging(&self, before: i64, now: i64) -> StoreResult<u64> {
        let mut total = 0;
        loop {
            let (n, more): (u64, bool) = in_tx!(self, |tx| outbox::prune_chunk(
                &tx,
                before,
                now,
                PRUNE_CHUNK
            )
            .await)?;
            total += n;
            if !more {
                return Ok(total);
            }
        }
    }

    async fn apply(&self, effects: Vec<Effect>, audit: AuditRecord) -> StoreResult<()> {
        in_tx!(self, |tx| async {
            effects::apply_effects(&tx, effects).await?;
            insert_audit(&tx, &audit).await
        }
        .await)
    }

    async fn policy(&self, tenant_id: i64) -> StoreResult<Option<StoredPolicy>> {
        let client = self.client().await?;
        logins::policy(&client, tenant_id).await
    }

    async fn user_by_id(&self, user_id: i64) -> StoreResult<Option<User>> {
        let client = self.client().await?;
        query_opt(
            &client,
            &format!("SELECT {USER_COLS} FROM users WHERE id = $1"),
            &[&user_id],
        )
        .await?
        .as_ref()
        .map(user_row)
        .transpose()
    }

    async fn admins_of(&self, tenant_id: i64) -> StoreResult<Vec<User>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            &format!("SELECT {USER_COLS} FROM users WHERE tenant_id = $1 AND is_admin ORDER BY id"),
            &[&tenant_id],
        )
        .await?;
        all(rows, user_row)
    }

    async fn proposal(&self, id: &str) -> StoreResult<Option<Proposal>> {
        let client = self.client().await?;
        logins::proposal(&client, id).await
    }

    async fn start_login(&self, login: PendingLogin, audit: AuditRecord) -> StoreResult<()> {
        in_tx!(self, |tx| async {
            logins::insert_login(&tx, &login).await?;
            insert_audit(&tx, &audit).await
        }
        .await)
    }

    async fn pending_login(&self, token_hash: &[u8]) -> StoreResult<Option<PendingLogin>> {
        let client = self.client().await?;
        logins::pending_login(&client, token_hash).await
    }

    async fn session(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        let client = self.client().await?;
        logins::session(&client, token_hash).await
    }

    async fn sessions_of(&self, user_id: i64) -> StoreResult<Vec<Session>> {
        let client = self.client().await?;
        logins::sessions_of(&client, user_id).await
    }

    async fn touch_session(&self, id: &str, at: i64) -> StoreResult<bool> {
        // One statement: its own transaction.
        let client = self.client().await?;
        logins::touch_session(&client, id, at).await
    }

    async fn device(&self, token_hash: &[u8]) -> StoreResult<Option<TrustedDevice>> {
        let client = self.client().await?;
        logins::device(&client, token_hash).await
    }

    async fn devices_of(&self, user_id: i64) -> StoreResult<Vec<TrustedDevice>> {
        let client = self.client().await?;
        logins::devices_of(&client, user_id).await
    }

    async fn due_jobs(&self, now: i64, limit: u32) -> StoreResult<Vec<Job>> {
        let client = self.client().await?;
        jobs::due(&client, now, limit).await
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
        in_tx!(self, |tx| jobs::advance(&tx, &step, effects).await)
    }

    async fn job(&self, job_id: i64) -> StoreResult<Option<Job>> {
        let client = self.client().await?;
        jobs::job(&client, job_id).await
    }

    async fn webhooks_of(&self, tenant_id: i64) -> StoreResult<Vec<Webhook>> {
        let client = self.client().await?;
        webhooks::of_tenant(&client, tenant_id).await
    }

    async fn key_state(&self) -> StoreResult<KeyState> {
        let client = self.client().await?;
        keys::key_state(&client).await
    }

    async fn set_key_state(&self, change: KeyChange, audit: AuditRecord) -> StoreResult<bool> {
        in_tx!(self, |tx| async {
            let set = keys::set_key_state(&tx, &change).await?;
            if set {
                insert_audit(&tx, &audit).await?;
            }
            Ok(set)
        }
        .await)
    }

    async fn report_node_keys(&self, node: NodeKeys) -> StoreResult<()> {
        let client = self.client().await?;
        keys::report_node(&client, &node).await
    }

    async fn node_keys(&self, since: i64) -> StoreResult<Vec<NodeKeys>> {
        let client = self.client().await?;
        keys::nodes(&client, since).await
    }

    async fn prune_node_keys(&self, before: i64) -> StoreResult<u64> {
        self.prune_in_chunks(
            "DELETE FROM node_keys WHERE node_id IN
               (SELECT node_id FROM node_keys WHERE seen_at < $1 LIMIT $2)",
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
        let client = self.client().await?;
        keys::sealed_rows(&client, column, after.as_deref().unwrap_or(""), limit).await
    }

    async fn reseal(&self, changes: Vec<Reseal>) -> StoreResult<Vec<bool>> {
        in_tx!(self, |tx| keys::reseal(&tx, &changes).await)
    }

    async fn vault_entries(&self, tenant_id: i64) -> StoreResult<Vec<VaultEntry>> {
        vault::entries(&self.client().await?, tenant_id).await
    }

    async fn vault_entry(&self, tenant_id: i64, name: &str) -> StoreResult<Option<VaultEntry>> {
        vault::entry(&self.client().await?, tenant_id, name).await
    }

    async fn vault_groups(&self, tenant_id: i64) -> StoreResult<Vec<VaultGroup>> {
        vault::groups(&self.client().await?, tenant_id).await
    }

    async fn vault_tokens(&self, tenant_id: i64) -> StoreResult<Vec<VaultToken>> {
        vault::tokens(&self.client().await?, tenant_id).await
    }

    async fn vault_token(&self, token_hash: &[u8]) -> StoreResult<Option<VaultToken>> {
        vault::token(&self.client().await?, token_hash).await
    }

    async fn oidc_client(&self, client_id: &str) -> StoreResult<Option<OidcClient>> {
        oidc::client(&self.client().await?, client_id).await
    }

    async fn oidc_clients(&self, tenant_id: i64) -> StoreResult<Vec<OidcClient>> {
        oidc::clients(&self.client().await?, tenant_id).await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        oidc::signing_keys(&self.client().await?).await
    }

    async fn auth_code(&self, code_hash: &[u8]) -> StoreResult<Option<AuthCode>> {
        oidc::code(&self.client().await?, code_hash).await
    }

    async fn hosted_login(&self, login_id: &str) -> StoreResult<Option<HostedLogin>> {
        oidc::hosted(&self.client().await?, login_id).await
    }

    async fn prune_oidc(&self, before: i64) -> StoreResult<u64> {
        oidc::prune(&self.client().await?, before).await
    }

    async fn webauthn_challenge(&self, id: &str) -> StoreResult<Option<WebauthnChallenge>> {
        webauthn::challenge(&self.client().await?, id).await
    }

    async fn prune_webauthn_challenges(&self, before: i64) -> StoreResult<u64> {
        self.prune_in_chunks(webauthn::PRUNE, before).await
    }

    async fn append_audit(&self, audit: AuditRecord) -> StoreResult<()> {
        let client = self.client().await?;
        insert_audit(&client, &audit).await
    }

    async fn list_audit(&self, q: AuditQuery) -> StoreResult<Vec<AuditEvent>> {
        let client = self.client().await?;
        // Two spellings of the tenant filter, so both can use `audit_by_tenant`.
        let tenant = if q.tenant_id.is_some() {
            "a.tenant_id = $1"
        } else {
            "a.tenant_id IS NULL AND $1::BIGINT IS NULL"
        };
        let rows = query(
            &client,
            &format!(
                "{AUDIT_SELECT}
                 WHERE {tenant}
                   AND ($2::BIGINT IS NULL OR a.user_id = $2)
                   AND ($3::TEXT IS NULL OR a.action = $3)
                   AND a.id < $4
                 ORDER BY a.id DESC LIMIT $5"
            ),
            &[
                &q.tenant_id,
                &q.user_id,
                &q.action,
                &q.before_id.unwrap_or(i64::MAX),
                &i64::from(q.limit),
            ],
        )
        .await?;
        all(rows, audit_row)
    }

    async fn ping(&self) -> StoreResult<()> {
        // A standby (say, during a failover) answers but cannot commit a write.
        let client = self.client().await?;
        let writable = match query_opt(&client, "SELECT NOT pg_is_in_recovery()", &[]).await? {
            Some(row) => get::<bool>(&row, 0)?,
            None => false,
        };
        if writable {
            Ok(())
        } else {
            Err(StoreError::Busy)
        }
    }

    async fn prune_audit(&self, before: i64) -> StoreResult<u64> {
        self.prune_in_chunks(
            "DELETE FROM audit_events WHERE id IN
               (SELECT id FROM audit_events WHERE at < $1 LIMIT $2)",
            before,
        )
        .await
    }

    async fn recovery_codes_left(&self, user_id: i64) -> StoreResult<u32> {
        let client = self.client().await?;
        security::recovery_codes_left(&client, user_id).await
    }

    async fn counts(&self, limits: Vec<SendLimit>, now: i64) -> StoreResult<Vec<i64>> {
        let client = self.client().await?;
        codes::counts(&client, &limits, now).await
    }

    async fn revert_link(&self, token_hash: &[u8]) -> StoreResult<Option<RevertLink>> {
        let client = self.client().await?;
        security::revert_link(&client, token_hash).await
    }

    async fn app_password(&self, token_hash: &[u8]) -> StoreResult<Option<AppPassword>> {
        let client = self.client().await?;
        security::app_password(&client, token_hash).await
    }

    async fn app_passwords_of(&self, user_id: i64) -> StoreResult<Vec<AppPassword>> {
        let client = self.client().await?;
        security::app_passwords_of(&client, user_id).await
    }

    async fn login_history(
        &self,
        user_id: i64,
        since: i64,
        limit: u32,
    ) -> StoreResult<Vec<LoginRecord>> {
        let client = self.client().await?;
        security::login_history(&client, user_id, since, limit).await
    }

    async fn prune_login_history(&self, before: i64) -> StoreResult<u64> {
        self.prune_in_chunks(
            "DELETE FROM login_history WHERE id IN
               (SELECT id FROM login_history WHERE at < $1 LIMIT $2)",
            before,
        )
        .await
    }
}
