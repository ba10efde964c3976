//! Error mapping, statement helpers, row mappers, shared inserts and the per-user row lock used
//! by every part of the PostgreSQL store.

pub(super) use crate::common::*;
use deadpool_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::Row;
use twofold_core::login::*;
use twofold_core::messaging::*;
use twofold_core::model::*;
use twofold_core::ports::*;
use twofold_core::security::*;

pub(super) type Tx<'a> = deadpool_postgres::Transaction<'a>;
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// SQLSTATEs after which retrying later may succeed: lost races that PostgreSQL resolved by
/// aborting us, a server going down or full, a standby that cannot take writes (failover).
const BUSY: &[SqlState] = &[
    SqlState::T_R_SERIALIZATION_FAILURE,
    SqlState::T_R_DEADLOCK_DETECTED,
    SqlState::LOCK_NOT_AVAILABLE,
    SqlState::QUERY_CANCELED,
    SqlState::ADMIN_SHUTDOWN,
    SqlState::CRASH_SHUTDOWN,
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::TOO_MANY_CONNECTIONS,
    SqlState::READ_ONLY_SQL_TRANSACTION,
    SqlState::CONNECTION_EXCEPTION,
    SqlState::CONNECTION_DOES_NOT_EXIST,
    SqlState::CONNECTION_FAILURE,
    SqlState::SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
    SqlState::SQLSERVER_REJECTED_ESTABLISHMENT_OF_SQLCONNECTION,
];

/// Maps a driver error: connection loss and the states in [`BUSY`] are `Busy`, anything else
/// is `Backend` with the server's message (tokio-postgres' own `Display` leaves it out).
pub(crate) fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(why) = super::tls::failure(&e) {
        return StoreError::Backend(why);
    }
    let lost = e.is_closed()
        || std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>())
        // tokio-postgres has no public accessor for its "connect timed out" kind.
        || e.to_string().starts_with("timeout");
    if lost || e.code().is_some_and(|c| BUSY.contains(c)) {
        // The caller answers 503 without the cause: keep it for whoever reads the log.
        tracing::debug!(code = ?e.code().map(SqlState::code), error = %e, "PostgreSQL busy");
        return StoreError::Busy;
    }
    match std::error::Error::source(&e) {
        Some(cause) => StoreError::Backend(format!("{e}: {cause}")),
        None => StoreError::Backend(e.to_string()),
    }
}

/// Maps a failure to get a pooled connection: the server being unreachable or every
/// connection staying busy is `Busy`.
pub(super) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => pg(e),
        PoolError::Timeout(_) => StoreError::Busy,
        other => StoreError::Backend(format!("connection pool: {other}")),
    }
}

/// Runs a statement (prepared once per connection) and returns how many rows it changed.
pub(super) async fn exec(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, StoreError> {
    exec_raw(c, sql, params).await.map_err(pg)
}

/// One row changed, or the effect's precondition failed (`state_changed`).
pub(super) async fn changed(tx: &Tx<'_>, sql: &str, params: Params<'_>) -> Result<(), StoreError> {
    match exec(tx, sql, params).await? {
        1 => Ok(()),
        _ => Err(StoreError::Conflict("state_changed")),
    }
}

async fn exec_raw(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.execute(&statement, params).await
}

/// Maps a failed insert: a duplicate key is the conflict `what`, anything else as [`pg`].
fn conflict_on_duplicate(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            StoreError::Conflict(what)
        } else {
            pg(e)
        }
    }
}

/// Maps a failed factor insert: a credential id registered already (to anyone) is
/// `credential_registered`; another duplicate key is the conflict `what`.
pub(super) fn factor_conflict(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| {
        let index = e.as_db_error().and_then(|d| d.constraint());
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) && index == Some(CREDENTIAL_INDEX) {
            CREDENTIAL_REGISTERED
        } else {
            conflict_on_duplicate(what)(e)
        }
    }
}

/// Runs an insert; a duplicate key is the conflict `what`.
pub(super) async fn insert(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    what: &'static str,
) -> Result<u64, StoreError> {
    insert_mapped(c, sql, params, conflict_on_duplicate(what)).await
}

/// Runs an insert whose failures `map` turns into store errors (which key was duplicated).
pub(super) async fn insert_mapped(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    map: impl Fn(tokio_postgres::Error) -> StoreError,
) -> Result<u64, StoreError> {
    exec_raw(c, sql, params).await.map_err(map)
}

/// Runs an `INSERT … RETURNING id`; a duplicate key is the conflict `what`.
pub(super) async fn insert_returning_id(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    what: &'static str,
) -> Result<i64, StoreError> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    let row = c
        .query_one(&statement, params)
        .await
        .map_err(conflict_on_duplicate(what))?;
    get(&row, 0)
}

pub(super) async fn query(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.query(&statement, params).await.map_err(pg)
}

pub(super) async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, StoreError> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.query_opt(&statement, params).await.map_err(pg)
}

/// Maps every row with `f`.
pub(super) fn all<T>(
    rows: Vec<Row>,
    f: impl Fn(&Row) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(f).collect()
}

/// One column of a row.
pub(super) fn get<'a, T: FromSql<'a>>(r: &'a Row, idx: usize) -> Result<T, StoreError> {
    r.try_get(idx).map_err(pg)
}

/// A stored value that does not fit its Rust type: the database is newer or damaged.
fn damaged(what: &str, value: impl std::fmt::Debug) -> StoreError {
    StoreError::Backend(format!("stored {what} out of range: {value:?}"))
}

/// Serialises the writes to one user's factors, codes and phone changes across connections
/// and nodes. Every such write takes this row lock first, so its reads (the failure count, the
/// newest code, the number of factors) and the writes that depend on them are not interleaved
/// with another request for the same user, exactly as SQLite's single writer guarantees.
/// `FOR NO KEY UPDATE` does not block inserts that merely reference the user (foreign keys).
/// Locking again in the same transaction costs one round trip and changes nothing.
pub(super) async fn lock_user(tx: &Tx<'_>, user_id: i64) -> Result<(), StoreError> {
    exec(
        tx,
        "SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE",
        &[&user_id],
    )
    .await
    .map(|_| ())
}

/// [`lock_user`] for the owners of `factor_ids`, in id order so that two requests never wait
/// for each other crosswise.
pub(super) async fn lock_owners(tx: &Tx<'_>, factor_ids: &[&str]) -> Result<(), StoreError> {
    exec(
        tx,
        "SELECT id FROM users
         WHERE id IN (SELECT user_id FROM factors WHERE id = ANY($1))
         ORDER BY id FOR NO KEY UPDATE",
        &[&factor_ids],
    )
    .await
    .map(|_| ())
}

pub(super) async fn insert_audit(
    c: &impl GenericClient,
    a: &AuditRecord,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO audit_events (tenant_id, at, actor, action, user_id, factor_id, outcome,
                                   reason, ip, request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &a.tenant_id,
            &a.at,
            &a.actor,
            &a.action,
            &a.user_id,
            &a.factor_id,
            &a.outcome,
            &a.reason,
            &a.ip,
            &a.request_id,
        ],
    )
    .await
    .map(|_| ())
}

pub(super) async fn insert_key(c: &impl GenericClient, key: &ApiKey) -> Result<(), StoreError> {
    insert(
        c,
        &format!("INSERT INTO api_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            &key.key_id,
            &key.tenant_id,
            &key.label,
            &key.secret_hash,
            &key.created_at,
            &key.revoked_at,
        ],
        "api_key_exists",
    )
    .await
    .map(|_| ())
}

/// Queues one message: pending, due at once, no attempt yet.
pub(super) async fn insert_message(
    c: &impl GenericClient,
    m: &NewMessage,
) -> Result<(), StoreError> {
    insert(
        c,
        "INSERT INTO outbox (message_id, tenant_id, user_id, channel, destination, template,
                             sealed_params, status, attempts, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8)",
        &[
            &m.message_id,
            &m.tenant_id,
            &m.user_id,
            &m.channel.as_str(),
            &m.destination,
            &m.template.as_str(),
            &m.sealed_params,
            &m.created_at,
        ],
        "message_exists",
    )
    .await
    .map(|_| ())
}

pub(super) fn tenant_row(r: &Row) -> Result<Tenant, StoreError> {
    Ok(Tenant {
        id: get(r, 0)?,
        slug: get(r, 1)?,
        name: get(r, 2)?,
        created_at: get(r, 3)?,
        sender_name: get(r, 4)?,
        sms_countries: countries_from_json(get(r, 5)?)
            .map_err(|e| StoreError::Backend(format!("stored sms_countries: {e}")))?,
    })
}

pub(super) fn user_row(r: &Row) -> Result<User, StoreError> {
    Ok(User {
        id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        external_id: get(r, 2)?,
        email: get(r, 3)?,
        phone: get(r, 4)?,
        profile: get(r, 5)?,
        is_admin: get(r, 6)?,
        created_at: get(r, 7)?,
        generation: get(r, 8)?,
        skip_until: get(r, 9)?,
        frozen_at: get(r, 10)?,
    })
}

pub(super) fn key_row(r: &Row) -> Result<ApiKey, StoreError> {
    Ok(ApiKey {
        key_id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        label: get(r, 2)?,
        secret_hash: get(r, 3)?,
        created_at: get(r, 4)?,
        revoked_at: get(r, 5)?,
    })
}

/// How many columns [`USER_COLS`] lists: where a factor starts in a user-and-factors row.
pub(super) const USER_COLUMNS: usize = columns(USER_COLS);

/// The number of columns in a comma-separated column list.
const fn columns(list: &str) -> usize {
    let bytes = list.as_bytes();
    let (mut n, mut i) = (1, 0);
    while i < bytes.len() {
        if bytes[i] == b',' {
            n += 1;
        }
        i += 1;
    }
    n
}

pub(super) fn factor_row(r: &Row) -> Result<Factor, StoreError> {
    factor_row_at(r, 0)
}

/// A factor whose [`FACTOR_COLS`] start at column `at`.
pub(super) fn factor_row_at(r: &Row, at: usize) -> Result<Factor, StoreError> {
    let status: String = get(r, at + 4)?;
    let digits: i32 = get(r, at + 7)?;
    let period: i64 = get(r, at + 8)?;
    Ok(Factor {
        id: get(r, at)?,
        tenant_id: get(r, at + 1)?,
        user_id: get(r, at + 2)?,
        kind: get(r, at + 3)?,
        status: FactorStatus::parse(&status).unwrap_or(FactorStatus::Pending),
        destination: get(r, at + 19)?,
        label: get(r, at + 20)?,
        credential_id: get(r, at + 21)?,
        sealed_secret: get(r, at + 5)?,
        algorithm: get(r, at + 6)?,
        digits: u8::try_from(digits).map_err(|_| damaged("digits", digits))?,
        period: u32::try_from(period).map_err(|_| damaged("period", period))?,
        last_step: get(r, at + 9)?,
        drift: get(r, at + 10)?,
        version: get(r, at + 11)?,
        failures: get(r, at + 12)?,
        blocked_until: get(r, at + 13)?,
        locked_at: get(r, at + 14)?,
        created_at: get(r, at + 15)?,
        confirmed_at: get(r, at + 16)?,
        drift_hint: match (
            get::<Option<i64>>(r, at + 17)?,
            get::<Option<i32>>(r, at + 18)?,
        ) {
            (Some(step), Some(dir)) => Some((step, dir)),
            _ => None,
        },
    })
}

pub(super) async fn factors_of(
    c: &impl GenericClient,
    user_id: i64,
) -> Result<Vec<Factor>, StoreError> {
    let rows = query(
        c,
        &format!("SELECT {FACTOR_COLS} FROM factors WHERE user_id = $1 ORDER BY created_at, id COLLATE \"C\""),
        &[&user_id],
    )
    .await?;
    all(rows, factor_row)
}

/// A stored enum parsed with `parse`, or an error naming what is unknown.
fn parsed<T>(
    r: &Row,
    idx: usize,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let value: String = get(r, idx)?;
    parse(&value).ok_or_else(|| StoreError::Backend(unknown(what, &value)))
}

pub(super) fn message_row(r: &Row) -> Result<OutboxMessage, StoreError> {
    Ok(OutboxMessage {
        id: get(r, 0)?,
        message_id: get(r, 1)?,
        tenant_id: get(r, 2)?,
        user_id: get(r, 3)?,
        channel: parsed(r, 4, "channel", Channel::parse)?,
        destination: get(r, 5)?,
        template: parsed(r, 6, "template", TemplateKind::parse)?,
        sealed_params: get(r, 7)?,
        status: parsed(r, 8, "status", MessageStatus::parse)?,
        attempts: get(r, 9)?,
        next_attempt_at: get(r, 10)?,
        lease_owner: get(r, 11)?,
        lease_until: get(r, 12)?,
        last_error: get(r, 13)?,
        created_at: get(r, 14)?,
        sent_at: get(r, 15)?,
    })
}

pub(super) fn phone_change_row(r: &Row) -> Result<PhoneChange, StoreError> {
    Ok(PhoneChange {
        id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        user_id: get(r, 2)?,
        factor_id: get(r, 3)?,
        new_phone: get(r, 4)?,
        state: parsed(r, 5, "state", PhoneChangeState::parse)?,
        created_at: get(r, 6)?,
        expires_at: get(r, 7)?,
        updated_at: get(r, 8)?,
    })
}

pub(super) fn audit_row(r: &Row) -> Result<AuditEvent, StoreError> {
    Ok(AuditEvent {
        id: get(r, 0)?,
        record: AuditRecord {
            tenant_id: get(r, 1)?,
            at: get(r, 2)?,
            actor: get(r, 3)?,
            action: get(r, 4)?,
            user_id: get(r, 5)?,
            factor_id: get(r, 6)?,
            outcome: get(r, 7)?,
            reason: get(r, 8)?,
            ip: get(r, 9)?,
            request_id: get(r, 10)?,
        },
        user_external_id: get(r, 11)?,
    })
}

pub(super) fn policy_row(r: &Row) -> Result<StoredPolicy, StoreError> {
    Ok(StoredPolicy {
        tenant_id: get(r, 0)?,
        json: get(r, 1)?,
        version: get(r, 2)?,
        updated_at: get(r, 3)?,
    })
}

pub(super) fn proposal_row(r: &Row) -> Result<Proposal, StoreError> {
    Ok(Proposal {
        id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        admin_user_id: get(r, 2)?,
        payload: get(r, 3)?,
        payload_hash: get(r, 4)?,
        base_version: get(r, 5)?,
        state: parsed(r, 6, "state", ProposalState::parse)?,
        created_at: get(r, 7)?,
        expires_at: get(r, 8)?,
    })
}

pub(super) fn login_row(r: &Row) -> Result<PendingLogin, StoreError> {
    Ok(PendingLogin {
        id: get(r, 0)?,
        token_hash: get(r, 1)?,
        tenant_id: get(r, 2)?,
        user_id: get(r, 3)?,
        generation: get(r, 4)?,
        decision: get(r, 5)?,
        primary: get(r, 6)?,
        client_id: get(r, 7)?,
        ip: get(r, 8)?,
        user_agent: get(r, 9)?,
        created_at: get(r, 10)?,
        expires_at: get(r, 11)?,
        completed_at: get(r, 12)?,
        device: get(r, 13)?,
        country: get(r, 14)?,
    })
}

pub(super) fn session_row(r: &Row) -> Result<Session, StoreError> {
    Ok(Session {
        id: get(r, 0)?,
        token_hash: get(r, 1)?,
        tenant_id: get(r, 2)?,
        user_id: get(r, 3)?,
        generation: get(r, 4)?,
        amr: get(r, 5)?,
        second_factor: get(r, 6)?,
        client_id: get(r, 7)?,
        ip: get(r, 8)?,
        created_at: get(r, 9)?,
        last_seen_at: get(r, 10)?,
        expires_at: get(r, 11)?,
        revoked_at: get(r, 12)?,
        revoke_reason: get(r, 13)?,
    })
}

pub(super) fn device_row(r: &Row) -> Result<TrustedDevice, StoreError> {
    Ok(TrustedDevice {
        id: get(r, 0)?,
        token_hash: get(r, 1)?,
        tenant_id: get(r, 2)?,
        user_id: get(r, 3)?,
        generation: get(r, 4)?,
        label: get(r, 5)?,
        created_at: get(r, 6)?,
        expires_at: get(r, 7)?,
        last_used_at: get(r, 8)?,
        revoked_at: get(r, 9)?,
    })
}

pub(super) fn job_row(r: &Row) -> Result<Job, StoreError> {
    Ok(Job {
        id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        kind: get(r, 2)?,
        payload: get(r, 3)?,
        cursor: get(r, 4)?,
        run_at: get(r, 5)?,
        done_at: get(r, 6)?,
        processed: get(r, 7)?,
        created_at: get(r, 8)?,
    })
}

pub(super) fn webhook_row(r: &Row) -> Result<Webhook, StoreError> {
    let events: String = get(r, 4)?;
    Ok(Webhook {
        id: get(r, 0)?,
        tenant_id: get(r, 1)?,
        url: get(r, 2)?,
        sealed_secret: get(r, 3)?,
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(String::from)
            .collect(),
        created_at: get(r, 5)?,
    })
}

pub(super) fn revert_link_row(r: &Row) -> Result<RevertLink, StoreError> {
    Ok(RevertLink {
        id: get(r, 0)?,
        token_hash: get(r, 1)?,
        tenant_id: get(r, 2)?,
        user_id: get(r, 3)?,
        undo: get(r, 4)?,
        change: get(r, 5)?,
        created_at: get(r, 6)?,
        expires_at: get(r, 7)?,
        used_at: get(r, 8)?,
    })
}

pub(super) fn app_password_row(r: &Row) -> Result<AppPassword, StoreError> {
    Ok(AppPassword {
        id: get(r, 0)?,
        token_hash: get(r, 1)?,
        tenant_id: get(r, 2)?,
        user_id: get(r, 3)?,
        client_id: get(r, 4)?,
        label: get(r, 5)?,
        generation: get(r, 6)?,
        created_at: get(r, 7)?,
        last_used_at: get(r, 8)?,
        revoked_at: get(r, 9)?,
    })
}

pub(super) fn login_record_row(r: &Row) -> Result<LoginRecord, StoreError> {
    Ok(LoginRecord {
        tenant_id: get(r, 0)?,
        user_id: get(r, 1)?,
        at: get(r, 2)?,
        ip: get(r, 3)?,
        network: get(r, 4)?,
        country: get(r, 5)?,
        lat_e4: get(r, 6)?,
        lon_e4: get(r, 7)?,
        device: get(r, 8)?,
        ua_family: get(r, 9)?,
        generation: get(r, 10)?,
    })
}
