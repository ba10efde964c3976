//! Error mapping, column lists and row mappers shared by every part of the SQLite store.

pub(super) use crate::common::*;
use rusqlite::{params, Connection, OptionalExtension, Row};
use twofold_core::login::*;
use twofold_core::messaging::*;
use twofold_core::model::*;
use twofold_core::ports::*;
use twofold_core::security::*;

pub(super) fn backend(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::*;
    match e.sqlite_error_code() {
        Some(DatabaseBusy) | Some(DatabaseLocked) => StoreError::Busy,
        _ => StoreError::Backend(e.to_string()),
    }
}

pub(super) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Maps a failed insert: a duplicate key is the conflict `what`, anything else as [`backend`].
pub(super) fn conflict_on_duplicate(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(what)
        } else {
            backend(e)
        }
    }
}

/// Maps a failed factor insert: a credential id registered already (to anyone) is
/// `credential_registered`; another duplicate key is the conflict `what`.
pub(super) fn factor_conflict(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(_, Some(m))
            if is_unique_violation(&e) && m.contains(CREDENTIAL_COLUMN) =>
        {
            CREDENTIAL_REGISTERED
        }
        _ => conflict_on_duplicate(what)(e),
    }
}

/// One row by a unique key, or none.
pub(super) fn one<T, P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    p: P,
    row: impl FnOnce(&Row) -> rusqlite::Result<T>,
) -> Result<Option<T>, StoreError> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.query_row(p, row).optional())
        .map_err(backend)
}

/// Every row of a query, in its order.
pub(super) fn all<T, P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    p: P,
    row: impl FnMut(&Row) -> rusqlite::Result<T>,
) -> Result<Vec<T>, StoreError> {
    let mut s = c.prepare_cached(sql).map_err(backend)?;
    let rows = s.query_map(p, row).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// One row changed, or the effect's precondition failed (`state_changed`).
pub(super) fn changed(n: rusqlite::Result<usize>) -> Result<(), StoreError> {
    match n.map_err(backend)? {
        1 => Ok(()),
        _ => Err(StoreError::Conflict("state_changed")),
    }
}

/// Runs a cached statement; how many rows it changed.
pub(super) fn exec(c: &Connection, sql: &str, p: impl rusqlite::Params) -> rusqlite::Result<usize> {
    c.prepare_cached(sql).and_then(|mut s| s.execute(p))
}

pub(super) fn insert_audit(c: &Connection, a: &AuditRecord) -> Result<(), StoreError> {
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

pub(super) fn insert_key(c: &Connection, key: &ApiKey) -> Result<(), StoreError> {
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
    .map_err(conflict_on_duplicate("api_key_exists"))
}

pub(super) fn tenant_row(r: &Row) -> rusqlite::Result<Tenant> {
    let countries: Option<String> = r.get(5)?;
    Ok(Tenant {
        id: r.get(0)?,
        slug: r.get(1)?,
        name: r.get(2)?,
        created_at: r.get(3)?,
        sender_name: r.get(4)?,
        sms_countries: countries_from_json(countries).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, e.into())
        })?,
    })
}

pub(super) fn user_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        external_id: r.get(2)?,
        email: r.get(3)?,
        phone: r.get(4)?,
        profile: r.get(5)?,
        is_admin: r.get(6)?,
        created_at: r.get(7)?,
        generation: r.get(8)?,
        skip_until: r.get(9)?,
        frozen_at: r.get(10)?,
    })
}

pub(super) fn key_row(r: &Row) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        key_id: r.get(0)?,
        tenant_id: r.get(1)?,
        label: r.get(2)?,
        secret_hash: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

pub(super) fn factor_row(r: &Row) -> rusqlite::Result<Factor> {
    let status: String = r.get(4)?;
    Ok(Factor {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        user_id: r.get(2)?,
        kind: r.get(3)?,
        status: FactorStatus::parse(&status).unwrap_or(FactorStatus::Pending),
        destination: r.get(19)?,
        label: r.get(20)?,
        credential_id: r.get(21)?,
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

pub(super) fn factors_of(c: &Connection, user_id: i64) -> Result<Vec<Factor>, StoreError> {
    let mut s = c
        .prepare_cached(&format!(
            "SELECT {FACTOR_COLS} FROM factors WHERE user_id = ?1 ORDER BY created_at, id"
        ))
        .map_err(backend)?;
    let rows = s.query_map(params![user_id], factor_row).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// A stored enum that this binary does not know: the database is newer or damaged.
fn unknown(idx: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        idx,
        rusqlite::types::Type::Text,
        crate::common::unknown(what, value).into(),
    )
}

pub(super) fn message_row(r: &Row) -> rusqlite::Result<OutboxMessage> {
    let channel: String = r.get(4)?;
    let template: String = r.get(6)?;
    let status: String = r.get(8)?;
    Ok(OutboxMessage {
        id: r.get(0)?,
        message_id: r.get(1)?,
        tenant_id: r.get(2)?,
        user_id: r.get(3)?,
        channel: Channel::parse(&channel).ok_or_else(|| unknown(4, "channel", &channel))?,
        destination: r.get(5)?,
        template: TemplateKind::parse(&template)
            .ok_or_else(|| unknown(6, "template", &template))?,
        sealed_params: r.get(7)?,
        status: MessageStatus::parse(&status).ok_or_else(|| unknown(8, "status", &status))?,
        attempts: r.get(9)?,
        next_attempt_at: r.get(10)?,
        lease_owner: r.get(11)?,
        lease_until: r.get(12)?,
        last_error: r.get(13)?,
        created_at: r.get(14)?,
        sent_at: r.get(15)?,
    })
}

pub(super) fn phone_change_row(r: &Row) -> rusqlite::Result<PhoneChange> {
    let state: String = r.get(5)?;
    Ok(PhoneChange {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        user_id: r.get(2)?,
        factor_id: r.get(3)?,
        new_phone: r.get(4)?,
        state: PhoneChangeState::parse(&state).ok_or_else(|| unknown(5, "state", &state))?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// Queues one message: pending, due at once, no attempt yet.
pub(super) fn insert_message(c: &Connection, m: &NewMessage) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO outbox (message_id, tenant_id, user_id, channel, destination, template,
                             sealed_params, status, attempts, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?8, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            m.message_id,
            m.tenant_id,
            m.user_id,
            m.channel.as_str(),
            m.destination,
            m.template.as_str(),
            m.sealed_params,
            m.created_at
        ])
    })
    .map(|_| ())
    .map_err(conflict_on_duplicate("message_exists"))
}

pub(super) fn policy_row(r: &Row) -> rusqlite::Result<StoredPolicy> {
    Ok(StoredPolicy {
        tenant_id: r.get(0)?,
        json: r.get(1)?,
        version: r.get(2)?,
        updated_at: r.get(3)?,
    })
}

pub(super) fn proposal_row(r: &Row) -> rusqlite::Result<Proposal> {
    let state: String = r.get(6)?;
    Ok(Proposal {
        id: r.get(0)?,
        tenant_id: r.get(1)?,
        admin_user_id: r.get(2)?,
        payload: r.get(3)?,
        payload_hash: r.get(4)?,
        base_version: r.get(5)?,
        state: ProposalState::parse(&state).ok_or_else(|| unknown(6, "state", &state))?,
        created_at: r.get(7)?,
        expires_at: r.get(8)?,
    })
}

pub(super) fn login_row(r: &Row) -> rusqlite::Result<PendingLogin> {
    Ok(PendingLogin {
        id: r.get(0)?,
        token_hash: r.get(1)?,
        tenant_id: r.get(2)?,
        user_id: r.get(3)?,
        generation: r.get(4)?,
        decision: r.get(5)?,
        primary: r.get(6)?,
        client_id: r.get(7)?,
        ip: r.get(8)?,
        user_agent: r.get(9)?,
        created_at: r.get(10)?,
        expires_at: r.get(11)?,
        completed_at: r.get(12)?,
        device: r.get(13)?,
        country: r.get(14)?,
    })
}

pub(super) fn session_row(r: &Row) -> rusqlite::Result<Session> {
    Ok(Session {
        id: r.get(0)?,
        token_hash: r.get(1)?,
        tenant_id: r.get(2)?,
        user_id: r.get(3)?,
        generation: r.get(4)?,
        amr: r.get(5)?,
        second_factor: r.get(6)?,
        client_id: r.get(7)?,
        ip: r.get(8)?,
        created_at: r.get(9)?,
        last_seen_at: r.get(10)?,
        expires_at: r.get(11)?,
        revoked_at: r.get(12)?,
        revoke_reason: r.get(13)?,
    })
}

pub(super) fn device_row(r: &Row) -> rusqlite::Result<TrustedDevice> {
    Ok(TrustedDevice {
        id: r.get(0)?,
        token_hash: r.get(1)?,
        tenant_id: r.get(2)?,
        user_id: r.get(3)?,
        generation: r.get(4)?,
        label: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        last_used_at: r.get(8)?,
        revoked_at: r.get(9)?,
    })
}

pub(super) fn revert_link_row(r: &Row) -> rusqlite::Result<RevertLink> {
    Ok(RevertLink {
        id: r.get(0)?,
        token_hash: r.get(1)?,
        tenant_id: r.get(2)?,
        user_id: r.get(3)?,
        undo: r.get(4)?,
        change: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        used_at: r.get(8)?,
    })
}

pub(super) fn app_password_row(r: &Row) -> rusqlite::Result<AppPassword> {
    Ok(AppPassword {
        id: r.get(0)?,
        token_hash: r.get(1)?,
        tenant_id: r.get(2)?,
        user_id: r.get(3)?,
        client_id: r.get(4)?,
        label: r.get(5)?,
        generation: r.get(6)?,
        created_at: r.get(7)?,
        last_used_at: r.get(8)?,
        revoked_at: r.get(9)?,
    })
}

pub(super) fn login_record_row(r: &Row) -> rusqlite::Result<LoginRecord> {
    Ok(LoginRecord {
        tenant_id: r.get(0)?,
        user_id: r.get(1)?,
        at: r.get(2)?,
        ip: r.get(3)?,
        network: r.get(4)?,
        country: r.get(5)?,
        lat_e4: r.get(6)?,
        lon_e4: r.get(7)?,
        device: r.get(8)?,
        ua_family: r.get(9)?,
        generation: r.get(10)?,
    })
}
