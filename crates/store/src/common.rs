//! What every backend decides the same way: the column lists, the verdict on a presented
//! one-time code (INV-02, INV-05), the order of send refusals, why a TOTP step was not consumed
//! (INV-01), which factors a failure is charged to (INV-03) and the audit rows an attempt
//! derives. Each backend keeps only its SQL (reading the rows, the conditional writes); the
//! rules live here once, so SQLite and PostgreSQL cannot drift apart.

use subtle::ConstantTimeEq;
use twofold_core::messaging::*;
use twofold_core::model::*;
use twofold_core::ports::*;
use twofold_core::throttle::{ThrottleState, BACKOFF_AFTER};

pub(crate) const TENANT_COLS: &str = "id, slug, name, created_at, sender_name, sms_countries";

pub(crate) const USER_COLS: &str =
    "id, tenant_id, external_id, email, phone, profile, is_admin, created_at, generation,
     skip_until, frozen_at";

pub(crate) const KEY_COLS: &str = "key_id, tenant_id, label, secret_hash, created_at, revoked_at";

pub(crate) const FACTOR_COLS: &str =
    "id, tenant_id, user_id, kind, status, sealed_secret, algorithm, digits,
     period, last_step, drift, version, failures, blocked_until, locked_at, created_at,
     confirmed_at, drift_hint_step, drift_hint_dir, destination, label, credential_id";

/// The unique index on `factors.credential_id` (migration 0010): a WebAuthn credential is
/// registered to one factor of one user across the whole server. PostgreSQL names it in a
/// violation; SQLite names the column instead ([`CREDENTIAL_COLUMN`]).
pub(crate) const CREDENTIAL_INDEX: &str = "factors_by_credential";
pub(crate) const CREDENTIAL_COLUMN: &str = "factors.credential_id";
/// The conflict of a factor insert whose credential id is taken, whichever tenant holds it.
pub(crate) const CREDENTIAL_REGISTERED: StoreError = StoreError::Conflict("credential_registered");

pub(crate) const MESSAGE_COLS: &str =
    "id, message_id, tenant_id, user_id, channel, destination, template,
     sealed_params, status, attempts, next_attempt_at, lease_owner, lease_until, last_error,
     created_at, sent_at";

pub(crate) const PHONE_CHANGE_COLS: &str =
    "id, tenant_id, user_id, factor_id, new_phone, state, created_at, expires_at, updated_at";

pub(crate) const POLICY_COLS: &str = "tenant_id, json, version, updated_at";

pub(crate) const PROPOSAL_COLS: &str =
    "id, tenant_id, admin_user_id, payload, payload_hash, base_version, state, created_at,
     expires_at";

pub(crate) const LOGIN_COLS: &str =
    "id, token_hash, tenant_id, user_id, generation, decision, primary_method, client_id, ip,
     user_agent, created_at, expires_at, completed_at, device, country";

pub(crate) const SESSION_COLS: &str =
    "id, token_hash, tenant_id, user_id, generation, amr, second_factor, client_id, ip,
     created_at, last_seen_at, expires_at, revoked_at, revoke_reason";

pub(crate) const DEVICE_COLS: &str =
    "id, token_hash, tenant_id, user_id, generation, label, created_at, expires_at,
     last_used_at, revoked_at";

pub(crate) const JOB_COLS: &str =
    "id, tenant_id, kind, payload, cursor, run_at, done_at, processed, created_at";

pub(crate) const WEBHOOK_COLS: &str = "id, tenant_id, url, sealed_secret, events, created_at";

pub(crate) const VAULT_ENTRY_COLS: &str =
    "id, tenant_id, name, owner_kind, owner, group_id, kind, sealed_secret, algorithm, digits, \
     period, counter, issuer, account, created_at";
pub(crate) const VAULT_GROUP_COLS: &str = "id, tenant_id, name, created_at";
pub(crate) const VAULT_TOKEN_COLS: &str =
    "id, tenant_id, label, token_hash, entry_id, group_id, created_at, revoked_at";
pub(crate) const REVERT_LINK_COLS: &str =
    "id, token_hash, tenant_id, user_id, undo, change, created_at, expires_at, used_at";

pub(crate) const APP_PASSWORD_COLS: &str =
    "id, token_hash, tenant_id, user_id, client_id, label, generation, created_at, last_used_at,
     revoked_at";

pub(crate) const LOGIN_RECORD_COLS: &str =
    "tenant_id, user_id, at, ip, network, country, lat_e4, lon_e4, device, ua_family, generation";

/// How long an expired "this wasn't me" link is kept before `prune_messaging` deletes it: for
/// a day its holder is told that the link expired rather than that it is unknown.
pub(crate) const REVERT_LINK_GRACE_MS: i64 = 86_400_000;

/// The head of the audit listing; each backend adds its filters (the tenant one spelled so
/// that its index is used).
pub(crate) const AUDIT_SELECT: &str =
    "SELECT a.id, a.tenant_id, a.at, a.actor, a.action, a.user_id, a.factor_id,
            a.outcome, a.reason, a.ip, a.request_id, u.external_id
     FROM audit_events a LEFT JOIN users u ON u.id = a.user_id";

/// `sms_countries` as stored: a JSON array, so `Some(vec![])` (no country) stays distinct from
/// `None` (the server default).
pub(crate) fn countries_json(
    countries: &Option<Vec<String>>,
) -> Result<Option<String>, StoreError> {
    countries
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Backend(e.to_string()))
}

/// The inverse of [`countries_json`].
pub(crate) fn countries_from_json(
    json: Option<String>,
) -> Result<Option<Vec<String>>, serde_json::Error> {
    json.map(|j| serde_json::from_str(&j)).transpose()
}

/// The error text for a stored enum that this binary does not know: the database is newer or
/// damaged.
pub(crate) fn unknown(what: &str, value: &str) -> String {
    format!("unknown {what} {value:?}")
}

/// What creating a tenant writes once its id is known: the `tenant.create` audit row, and the
/// first key (if any) with the `apikey.create` row derived from the same record. Returns the
/// tenant as created.
pub(crate) struct TenantRows {
    pub tenant: Tenant,
    pub audit: AuditRecord,
    pub first_key: Option<(ApiKey, AuditRecord)>,
}

pub(crate) fn tenant_rows(id: i64, t: NewTenant, mut audit: AuditRecord) -> TenantRows {
    audit.tenant_id = Some(id);
    let first_key = t.first_key.map(|mut key| {
        key.tenant_id = Some(id);
        let mut key_audit = audit.clone();
        key_audit.action = "apikey.create".into();
        (key, key_audit)
    });
    TenantRows {
        tenant: Tenant {
            id,
            slug: t.slug,
            name: t.name,
            created_at: t.created_at,
            sender_name: None,
            sms_countries: None,
        },
        audit,
        first_key,
    }
}

/// The user as created with `id`, and its audit row naming it.
pub(crate) fn user_rows(id: i64, u: NewUser, mut audit: AuditRecord) -> (User, AuditRecord) {
    audit.user_id = Some(id);
    let user = User {
        id,
        tenant_id: u.tenant_id,
        external_id: u.external_id,
        email: u.email,
        phone: u.phone,
        profile: u.profile,
        is_admin: u.is_admin,
        created_at: u.created_at,
        generation: 0,
        skip_until: None,
        frozen_at: None,
    };
    (user, audit)
}

/// The newest code for (tenant, user, factor, purpose), as a backend reads it.
pub(crate) struct CodeRow {
    pub id: i64,
    pub action_hash: Option<Vec<u8>>,
    pub code_hash: Vec<u8>,
    pub attempts: i32,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// Equal in constant time (for equal lengths; a length is no secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

fn same_action(stored: &Option<Vec<u8>>, presented: &Option<Vec<u8>>) -> bool {
    match (stored, presented) {
        (None, None) => true,
        (Some(a), Some(b)) => same(a, b),
        _ => false,
    }
}

/// The verdict on a presented code: `Ok(id)` of the row to consume (by the backend's one
/// conditional update, which re-checks all of this), or why it is rejected. The hash and the
/// action are both compared before either result is looked at (INV-07).
pub(crate) fn check_code(
    code: Option<&CodeRow>,
    presented_hash: &[u8],
    action_hash: &Option<Vec<u8>>,
    now: i64,
) -> Result<i64, RejectReason> {
    let Some(row) = code else {
        return Err(RejectReason::NoCode);
    };
    let hash_ok = same(&row.code_hash, presented_hash);
    if row.used_at.is_some() {
        Err(if hash_ok {
            RejectReason::Replayed
        } else {
            RejectReason::WrongCode
        })
    } else if now >= row.expires_at {
        Err(RejectReason::Expired)
    } else if row.attempts >= CODE_MAX_ATTEMPTS {
        Err(RejectReason::NoCode)
    } else if !(hash_ok & same_action(&row.action_hash, action_hash)) {
        Err(RejectReason::WrongCode)
    } else {
        Ok(row.id)
    }
}

/// The start of the fixed window of `window_ms` holding `now`.
pub(crate) fn window_start(now: i64, window_ms: i64) -> Result<i64, StoreError> {
    now.checked_rem_euclid(window_ms)
        .filter(|_| window_ms > 0)
        .map(|r| now - r)
        .ok_or_else(|| StoreError::Backend(format!("send limit window of {window_ms} ms")))
}

/// The refusals checked before the sending caps, in the documented order: a locked factor
/// (`throttle`, `None` when the factor does not exist yet), then the cooldown and the
/// exhaustion of the previous code.
pub(crate) fn refusal_before_limits(
    throttle: Option<ThrottleState>,
    prev: Option<&CodeRow>,
    now: i64,
    cooldown_ms: i64,
) -> Option<(SendRefusal, i64)> {
    if throttle.is_some_and(|t| t.is_locked()) {
        // Waiting does not help: only an operator unlock does.
        return Some((SendRefusal::Locked, i64::MAX));
    }
    let prev = prev?;
    let cooldown_end = prev.created_at.saturating_add(cooldown_ms);
    if now < cooldown_end {
        return Some((SendRefusal::Cooldown, cooldown_end));
    }
    let live = prev.used_at.is_none() && now < prev.expires_at;
    if live && prev.attempts >= CODE_MAX_ATTEMPTS {
        return Some((SendRefusal::Exhausted, prev.expires_at));
    }
    None
}

/// The refusal for a reached cap whose current window starts at `start`.
pub(crate) fn limit_refusal(l: &SendLimit, start: i64) -> (SendRefusal, i64) {
    (
        SendRefusal::Limit(l.kind().to_string()),
        start.saturating_add(l.window_ms),
    )
}

/// What the failure path of a TOTP attempt needs to know about one factor row.
pub(crate) struct AttemptRow {
    pub status: String,
    pub version: i64,
    pub last_step: i64,
    pub throttle: ThrottleState,
}

/// Why the consume statement changed no row, read from the factor as it is now; `None` when
/// the factor is gone or changed under the caller's copy (the outcome is then `Stale`).
pub(crate) fn unconsumed_reason(
    row: Option<&AttemptRow>,
    m: &StepMatch,
    now: i64,
) -> Option<RejectReason> {
    let row = row?;
    if row.version != m.expected_version || row.status != m.expected_status.as_str() {
        return None;
    }
    Some(if row.throttle.is_locked() {
        RejectReason::Locked
    } else if row.throttle.is_blocked(now) {
        RejectReason::Throttled
    } else if row.last_step >= m.step {
        RejectReason::Replayed
    } else {
        RejectReason::WrongCode
    })
}

/// The failure path of a TOTP attempt (INV-03): every candidate that is open is charged one
/// failure; a locked or blocked one is not, and turns a plain wrong code into `Locked` or
/// `Throttled`. Returns the final reason and the factors to charge.
pub(crate) fn failures_to_charge(
    mut reason: RejectReason,
    rows: Vec<(&str, AttemptRow)>,
    now: i64,
) -> (RejectReason, Vec<(&str, ThrottleState)>) {
    let mut charge = Vec::with_capacity(rows.len());
    for (id, row) in rows {
        if row.throttle.is_locked() {
            if reason == RejectReason::WrongCode {
                reason = RejectReason::Locked;
            }
        } else if row.throttle.is_blocked(now) {
            if reason == RejectReason::WrongCode {
                reason = RejectReason::Throttled;
            }
        } else {
            charge.push((id, row.throttle));
        }
    }
    (reason, charge)
}

/// Whether the failure budgets of an attempt (`Attempt::budgets`, `ConsumeCode::budgets`: limits
/// beyond the factor's own, per address or per tenant, kept in `send_counters` like the sending
/// caps) are used up: some limit's current window (its count read by the backend, in the same
/// order) already holds `max` failures. Such an attempt is refused as `Throttled` before
/// anything else is looked at: not judged, no factor charged, nothing counted, even for a
/// right code. Otherwise it is judged as usual, and a judged rejection (see
/// [`failure_was_judged`]) counts one failure in each budget in the same transaction; a success
/// counts nothing.
///
/// On SQLite the single writer runs the read, the judgment and the count of one attempt with
/// nothing in between, so a budget is exact. On PostgreSQL parallel attempts on any number of
/// nodes may all read a budget one short of full; a plain count afterwards would let them
/// overshoot it by the number in flight. So PostgreSQL counts a failure with the checked upsert
/// (`… DO UPDATE … WHERE count < max RETURNING`) and, when that finds the window full, rolls
/// the attempt back to a savepoint taken before judging it and refuses it as `Throttled`:
/// failures are exact there too. Only an accepted code in flight while a budget fills is let
/// through, as if it had come first (the per-(user, factor) limits are exact on both).
pub(crate) fn budgets_full(budgets: &[SendLimit], counts: &[i64]) -> bool {
    budgets
        .iter()
        .zip(counts)
        .any(|(l, &n)| n >= i64::from(l.max))
}

/// Whether a rejected TOTP attempt counts one failure in each of its budgets: it does when the
/// code was judged, that is when some candidate factor was open to it (and was charged) or the
/// rejection is about the code itself (wrong, replayed); not when the factors' own lock or
/// backoff refused it unseen. (A one-time code is refused unseen only before it is judged, so
/// every rejection that reaches its failure path counts.)
pub(crate) fn failure_was_judged(reason: RejectReason, charged: usize) -> bool {
    charged > 0 || !matches!(reason, RejectReason::Throttled | RejectReason::Locked)
}

/// The effects that ride on failures: `on_lock` when a failure locks a factor that was not
/// locked, `on_backoff` when one starts a factor's backoff (its
/// [`BACKOFF_AFTER`]th consecutive failure). Each list is taken when it falls due, so one
/// operation applies it at most once however many factors it charges.
pub(crate) struct OnFailure {
    pub on_lock: Vec<Effect>,
    pub on_backoff: Vec<Effect>,
}

impl OnFailure {
    /// The effects due when one failure moves a factor from `before` to `after`.
    pub fn due(&mut self, before: ThrottleState, after: ThrottleState) -> Vec<Effect> {
        let mut due = Vec::new();
        if after.failures == BACKOFF_AFTER && before.failures < BACKOFF_AFTER {
            due.append(&mut self.on_backoff);
        }
        if after.is_locked() && !before.is_locked() {
            due.append(&mut self.on_lock);
        }
        due
    }
}

/// The `factor.lock` row written when a failure locks a factor, derived from the attempt's.
pub(crate) fn lock_audit(audit: &AuditRecord, factor_id: &str, failures: i32) -> AuditRecord {
    let mut lock = audit.clone();
    lock.action = "factor.lock".into();
    lock.factor_id = Some(factor_id.to_string());
    lock.outcome = "ok".into();
    lock.reason = Some(format!("{failures} consecutive failures"));
    lock
}

/// The attempt's audit row for a success.
pub(crate) fn ok(mut audit: AuditRecord) -> AuditRecord {
    audit.outcome = "ok".into();
    audit
}

/// The attempt's audit row for a refusal, with the real reason.
pub(crate) fn denied(mut audit: AuditRecord, reason: &str) -> AuditRecord {
    audit.outcome = "denied".into();
    audit.reason = Some(reason.to_string());
    audit
}

/// Where the values of a [`SealedColumn`] live, for the rotation sweep's generic SQL: the
/// table, its text key (ordered by an index, so paging costs one index range per page), the
/// value, the user column (or `NULL`) and which rows hold a value at all.
pub(crate) struct SealedSql {
    pub table: &'static str,
    pub key: &'static str,
    pub value: &'static str,
    pub user: &'static str,
    /// The tenant column, or a constant for rows that belong to no tenant.
    pub tenant: &'static str,
    pub holds_value: &'static str,
    /// The value is `TEXT` (the undo JSON), not a blob: bound and read as a string.
    pub text: bool,
}

pub(crate) fn sealed_sql(column: twofold_core::keys::SealedColumn) -> SealedSql {
    use twofold_core::keys::SealedColumn::*;
    match column {
        FactorSecret => SealedSql {
            table: "factors",
            key: "id",
            value: "sealed_secret",
            user: "user_id",
            // SMS and email factors have no seed: an empty blob.
            tenant: "tenant_id",
            holds_value: "length(sealed_secret) > 0",
            text: false,
        },
        OutboxParams => SealedSql {
            table: "outbox",
            key: "message_id",
            value: "sealed_params",
            user: "CAST(NULL AS BIGINT)",
            // Wiped once sent or given up.
            tenant: "tenant_id",
            holds_value: "sealed_params IS NOT NULL",
            text: false,
        },
        WebhookSecret => SealedSql {
            table: "webhooks",
            key: "id",
            value: "sealed_secret",
            user: "CAST(NULL AS BIGINT)",
            tenant: "tenant_id",
            holds_value: "TRUE",
            text: false,
        },
        RevertUndo => SealedSql {
            table: "revert_links",
            key: "id",
            value: "undo",
            user: "user_id",
            // Only an undo that restores a factor carries a seed.
            tenant: "tenant_id",
            holds_value: "undo LIKE '%\"sealed_secret\"%'",
            text: true,
        },
        VaultSecret => SealedSql {
            table: "vault_entries",
            key: "id",
            value: "sealed_secret",
            user: "CAST(NULL AS BIGINT)",
            tenant: "tenant_id",
            holds_value: "TRUE",
            text: false,
        },
        OidcClientSecret => SealedSql {
            table: "oidc_clients",
            key: "id",
            value: "sealed_secret",
            user: "CAST(NULL AS BIGINT)",
            tenant: "tenant_id",
            holds_value: "TRUE",
            text: false,
        },
        // Signing keys are the provider's, not a tenant's: `tenant_id` is 0.
        OidcSigningKey => SealedSql {
            table: "oidc_signing_keys",
            key: "kid",
            value: "sealed_key",
            user: "CAST(NULL AS BIGINT)",
            tenant: "CAST(0 AS BIGINT)",
            holds_value: "TRUE",
            text: false,
        },
    }
}

impl SealedSql {
    /// A page of rows after a cursor; `$1`-style or `?1`-style placeholders by `param`.
    pub fn select_page(&self, param: impl Fn(usize) -> String) -> String {
        format!(
            "SELECT {key}, {tenant}, {user}, {value} FROM {table}
             WHERE {holds} AND {key} > {after} ORDER BY {key} LIMIT {limit}",
            key = self.key,
            tenant = self.tenant,
            user = self.user,
            value = self.value,
            table = self.table,
            holds = self.holds_value,
            after = param(1),
            limit = param(2),
        )
    }

    /// The conditional update of one value: new value, key, old value.
    pub fn update_if_unchanged(&self, param: impl Fn(usize) -> String) -> String {
        format!(
            "UPDATE {table} SET {value} = {new} WHERE {key} = {id} AND {value} = {old}",
            table = self.table,
            value = self.value,
            key = self.key,
            new = param(1),
            id = param(2),
            old = param(3),
        )
    }
}

/// A value of a text column as the bytes a [`twofold_core::keys::SealedRow`] carries, and back.
pub(crate) fn text_value(bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StoreError::Backend("a text value to re-seal is not UTF-8".into()))
}

/// `key_ids` of `node_keys`: sorted and comma-separated (key ids are hex).
pub(crate) fn join_key_ids(ids: &[String]) -> String {
    ids.join(",")
}

pub(crate) fn split_key_ids(joined: &str) -> Vec<String> {
    joined
        .split(',')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

pub(crate) const KEY_STATE_COLS: &str = "active_key_id, pending_key_id, version, changed_at";

pub(crate) const NODE_KEYS_COLS: &str = "node_id, key_ids, sealing_key_id, started_at, seen_at";

pub(crate) const OIDC_CLIENT_COLS: &str =
    "id, tenant_id, app_id, redirect_uris, sealed_secret, created_at, secret_at";
pub(crate) const SIGNING_KEY_COLS: &str = "kid, sealed_key, created_at";
pub(crate) const AUTH_CODE_COLS: &str = "code_hash, tenant_id, client_id, redirect_uri, \
     code_challenge, nonce, user_id, subject, amr, acr, auth_time, session_id, created_at, \
     expires_at, used_at";
pub(crate) const WEBAUTHN_CHALLENGE_COLS: &str =
    "id, tenant_id, user_id, purpose, binding, state, created_at, expires_at, used_at";
pub(crate) const HOSTED_LOGIN_COLS: &str = "login_id, tenant_id, client_id, redirect_uri, state, \
     nonce, code_challenge, created_at, expires_at";

/// A client's redirect URIs as stored: a JSON array.
pub(crate) fn uris_to_json(uris: &[String]) -> String {
    serde_json::to_string(uris).unwrap_or_else(|_| "[]".into())
}

pub(crate) fn uris_from_json(json: &str) -> Result<Vec<String>, String> {
    serde_json::from_str(json).map_err(|e| format!("stored redirect_uris: {e}"))
}

/// The bits of [`twofold_core::rollout::MethodSet`] for one user's active factors, computed in
/// SQL that both backends accept (no `bit_or` in SQLite).
const METHOD_BITS: &str = "CAST(MAX(CASE WHEN kind = 'totp' THEN 1 ELSE 0 END)
     + MAX(CASE WHEN kind = 'sms' THEN 2 ELSE 0 END)
     + MAX(CASE WHEN kind = 'email' THEN 4 ELSE 0 END)
     + MAX(CASE WHEN kind = 'webauthn' THEN 8 ELSE 0 END) AS BIGINT)";

/// Users counted by profile and method bits; `p` is the tenant id's placeholder (`?1`, `$1`).
pub(crate) fn rollout_groups_sql(p: &str) -> String {
    format!(
        "SELECT u.profile, COALESCE(m.bits, 0) AS bits, COUNT(*) AS n
         FROM users u LEFT JOIN (
             SELECT user_id, {METHOD_BITS} AS bits FROM factors
             WHERE tenant_id = {p} AND status = 'active' GROUP BY user_id
         ) m ON m.user_id = u.id
         WHERE u.tenant_id = {p}
         GROUP BY u.profile, COALESCE(m.bits, 0)"
    )
}

/// Method bits per user with ids in `[$2, $3]` (a page of users is a range of ids; the caller
/// keeps the ids it asked for). `ps` are the placeholders of tenant id, low and high id.
pub(crate) fn active_methods_sql(ps: [&str; 3]) -> String {
    let [tenant, low, high] = ps;
    format!(
        "SELECT user_id, {METHOD_BITS} FROM factors
         WHERE tenant_id = {tenant} AND status = 'active' AND user_id >= {low} AND user_id <= {high}
         GROUP BY user_id"
    )
}

/// The rows of [`rollout_groups_sql`] as groups.
pub(crate) fn method_group(
    profile: Option<String>,
    bits: i64,
    users: i64,
) -> twofold_core::rollout::MethodGroup {
    twofold_core::rollout::MethodGroup {
        profile,
        methods: twofold_core::rollout::MethodSet::from_bits(bits),
        users: users.max(0) as u64,
    }
}

/// The id range that covers `ids` (the range query of [`active_methods_sql`]).
pub(crate) fn id_range(ids: &[i64]) -> Option<(i64, i64)> {
    Some((*ids.iter().min()?, *ids.iter().max()?))
}

/// The rows of [`active_methods_sql`] (user id, method bits) of exactly the users in `ids`:
/// the id range may hold users the caller did not ask for.
pub(crate) fn methods_of(
    rows: impl IntoIterator<Item = (i64, i64)>,
    ids: &[i64],
) -> Vec<(i64, twofold_core::rollout::MethodSet)> {
    let wanted: std::collections::HashSet<i64> = ids.iter().copied().collect();
    rows.into_iter()
        .filter(|(user, _)| wanted.contains(user))
        .map(|(user, bits)| (user, twofold_core::rollout::MethodSet::from_bits(bits)))
        .collect()
}
