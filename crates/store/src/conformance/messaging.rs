//! Conformance checks for one-time codes, effects, phone changes and the outbox.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};
use twofold_core::messaging::*;

pub(super) const TTL: i64 = 10 * 60 * 1000;
pub(super) const COOLDOWN: i64 = 30_000;
pub(super) const MINUTE: i64 = 60_000;
pub(super) const HOUR: i64 = 60 * MINUTE;
pub(super) const DAY: i64 = 24 * HOUR;
pub(super) const PHONE: &str = "+447700900123";
pub(super) const NEW_PHONE: &str = "+447700900999";
const PHONE_CHANGE_TTL_MS: i64 = 30 * MINUTE;

static NEXT_MESSAGE: AtomicU64 = AtomicU64::new(1);

/// Creates tenant `acme` ("Acme") at `at`: a fixture for the outbox tests of a backend or of
/// the delivery worker, which need a tenant to queue messages for.
pub async fn acme_tenant(s: &dyn Store, at: i64) -> Tenant {
    let t = NewTenant {
        name: "Acme".into(),
        created_at: at,
        ..new_tenant("acme", None)
    };
    s.create_tenant(t, audit("tenant.create", None, at))
        .await
        .unwrap()
}

fn message(t: &Tenant, u: Option<&User>, template: TemplateKind, at: i64) -> NewMessage {
    NewMessage {
        message_id: format!("m{}@test", NEXT_MESSAGE.fetch_add(1, Ordering::Relaxed)),
        tenant_id: t.id,
        user_id: u.map(|u| u.id),
        channel: Channel::Sms,
        destination: PHONE.into(),
        template,
        sealed_params: vec![9; 24],
        created_at: at,
    }
}

pub(super) fn notice(t: &Tenant, u: &User, at: i64) -> NewMessage {
    message(t, Some(u), TemplateKind::SecurityNotice, at)
}

pub(super) fn sms_factor(t: &Tenant, u: &User, id: &str, status: FactorStatus) -> Factor {
    Factor {
        kind: "sms".into(),
        destination: Some(PHONE.into()),
        sealed_secret: Vec::new(),
        ..factor(t, u, id, status)
    }
}

/// A tenant, a user and one active SMS factor `fac_s`.
pub(super) async fn sms_setup(s: &DynStore) -> (Tenant, User) {
    setup_with(s, |t, u| sms_factor(t, u, "fac_s", FactorStatus::Active)).await
}

/// A tenant `acme` and a user `alice` with one factor, which `make` builds for them.
pub(super) async fn setup_with(
    s: &DynStore,
    make: impl FnOnce(&Tenant, &User) -> Factor,
) -> (Tenant, User) {
    let t = tenant(s, "acme").await;
    let u = user(s, &t, "alice").await;
    enrol(s, &t, make(&t, &u)).await;
    (t, u)
}

/// `f` one failure away from being locked.
pub(super) fn nearly_locked(f: Factor) -> Factor {
    Factor {
        failures: LOCK_AFTER - 1,
        ..f
    }
}

/// Deletes `fac_s` (only while it has status `only_if`, when given), queueing `notice`.
async fn delete_fac_s(
    s: &DynStore,
    t: &Tenant,
    only_if: Option<FactorStatus>,
    at: i64,
    notice: Option<NewMessage>,
) -> bool {
    s.delete_factor(
        "fac_s",
        only_if,
        audit("factor.delete", Some(t.id), at),
        notice,
    )
    .await
    .unwrap()
}

/// Unlocks `factor_id`, queueing `notice`.
async fn unlock(s: &DynStore, t: &Tenant, factor_id: &str, at: i64, notice: NewMessage) -> bool {
    s.unlock_factor(
        factor_id,
        audit("factor.unlock", Some(t.id), at),
        vec![Effect::Enqueue(notice)],
    )
    .await
    .unwrap()
}

/// Enrols `f` (at most ten factors per user).
pub(super) async fn enrol(s: &DynStore, t: &Tenant, f: Factor) {
    s.insert_factor(f, 10, audit("factor.enrol", Some(t.id), 3))
        .await
        .unwrap();
}

pub(super) async fn issue_code(s: &DynStore, i: IssueCode) -> IssueOutcome {
    s.issue_code(i).await.unwrap()
}

/// Issues `i`, which must be sent.
pub(super) async fn assert_issued(s: &DynStore, i: IssueCode) {
    assert_eq!(issue_code(s, i).await, IssueOutcome::Issued);
}

pub(super) async fn consume_code(s: &DynStore, c: ConsumeCode) -> AttemptOutcome {
    s.consume_code(c).await.unwrap()
}

pub(super) fn code_hash(code: u8) -> Vec<u8> {
    vec![code; 32]
}

pub(super) fn issue(
    t: &Tenant,
    u: &User,
    factor_id: &str,
    purpose: CodePurpose,
    code: u8,
    now: i64,
) -> IssueCode {
    IssueCode {
        code: NewCode {
            tenant_id: t.id,
            user_id: u.id,
            factor_id: factor_id.into(),
            purpose,
            action_hash: None,
            code_hash: code_hash(code),
            hash_key_id: "hk1".into(),
            created_at: now,
            expires_at: now + TTL,
        },
        message: message(t, Some(u), TemplateKind::Code, now),
        cooldown_ms: COOLDOWN,
        limits: Vec::new(),
        effects: Vec::new(),
        audit: audit("code.send", Some(t.id), now),
    }
}

pub(super) fn consume(
    t: &Tenant,
    u: &User,
    factor_id: &str,
    purpose: CodePurpose,
    code: u8,
    now: i64,
) -> ConsumeCode {
    ConsumeCode {
        tenant_id: t.id,
        user_id: u.id,
        factor_id: factor_id.into(),
        purpose,
        action_hash: None,
        presented_hash: code_hash(code),
        now,
        on_success: Vec::new(),
        on_lock: Vec::new(),
        on_backoff: Vec::new(),
        budgets: Vec::new(),
        audit: audit("code.verify", Some(t.id), now),
    }
}

/// Issues a Verify code for `fac_s`.
pub(super) fn verify_code(t: &Tenant, u: &User, code: u8, now: i64) -> IssueCode {
    issue(t, u, "fac_s", CodePurpose::Verify, code, now)
}

/// Presents a Verify code for `fac_s`.
pub(super) fn verify(t: &Tenant, u: &User, code: u8, now: i64) -> ConsumeCode {
    consume(t, u, "fac_s", CodePurpose::Verify, code, now)
}

pub(super) fn accepted_by(factor_id: &str) -> AttemptOutcome {
    AttemptOutcome::Accepted {
        factor_id: factor_id.into(),
    }
}

fn refused(reason: SendRefusal, retry_at: i64) -> IssueOutcome {
    IssueOutcome::Refused { reason, retry_at }
}

pub(super) async fn factor_by_id(s: &DynStore, u: &User, id: &str) -> Option<Factor> {
    s.factors_of(u.id)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.id == id)
}

/// Every queued message of the tenant, newest first.
pub(super) async fn messages(s: &DynStore, t: &Tenant) -> Vec<OutboxMessage> {
    s.list_messages(MessageQuery {
        tenant_id: Some(t.id),
        limit: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn message_by_id(s: &DynStore, id: i64) -> OutboxMessage {
    s.list_messages(MessageQuery {
        before_id: Some(id + 1),
        limit: 1,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_iter()
    .find(|m| m.id == id)
    .expect("message exists")
}

/// (outcome, reason) of the audit rows with `action`, newest first.
pub(super) async fn audit_trail(
    s: &DynStore,
    t: &Tenant,
    action: &str,
) -> Vec<(String, Option<String>)> {
    s.list_audit(AuditQuery {
        tenant_id: Some(t.id),
        action: Some(action.into()),
        limit: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_iter()
    .map(|e| (e.record.outcome, e.record.reason))
    .collect()
}

pub(super) fn row(outcome: &str, reason: Option<&str>) -> (String, Option<String>) {
    (outcome.into(), reason.map(Into::into))
}

pub async fn a_code_is_accepted_once(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    let i = verify_code(&t, &u, 7, 1_000);
    let sent = i.message.clone();
    assert_issued(&s, i).await;
    let queued = messages(&s, &t).await;
    assert_eq!(queued.len(), 1);
    let m = &queued[0];
    assert_eq!(
        (
            m.message_id.as_str(),
            m.user_id,
            m.channel,
            m.destination.as_str(),
            m.template,
            m.sealed_params.as_deref(),
        ),
        (
            sent.message_id.as_str(),
            Some(u.id),
            Channel::Sms,
            PHONE,
            TemplateKind::Code,
            Some(sent.sealed_params.as_slice()),
        )
    );
    assert_eq!(
        (m.status, m.attempts, m.next_attempt_at, m.created_at),
        (MessageStatus::Pending, 0, 1_000, 1_000)
    );
    assert_eq!(
        (&m.lease_owner, m.lease_until, &m.last_error, m.sent_at),
        (&None, None, &None, None)
    );
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, 2_000)).await,
        accepted_by("fac_s")
    );
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, 2_001)).await,
        rejected(RejectReason::Replayed)
    );
    assert_eq!(
        consume_code(&s, verify(&t, &u, 8, 2_002)).await,
        rejected(RejectReason::WrongCode)
    );
    assert_eq!(
        audit_trail(&s, &t, "code.verify").await,
        vec![
            row("denied", Some("wrong_code")),
            row("denied", Some("replayed")),
            row("ok", None)
        ]
    );
    assert_eq!(
        audit_trail(&s, &t, "code.send").await,
        vec![row("ok", None)]
    );
    assert_eq!(the_factor(&s, &u).await.failures, 2, "replays are charged");
}

pub async fn wrong_tries_exhaust_a_code_until_it_expires(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    issue_code(&s, verify_code(&t, &u, 7, 1_000)).await;
    for i in 0..CODE_MAX_ATTEMPTS as i64 {
        assert_eq!(
            consume_code(&s, verify(&t, &u, 8, 1_100 + i)).await,
            rejected(RejectReason::WrongCode)
        );
    }
    let f = the_factor(&s, &u).await;
    assert_eq!(
        f.failures, CODE_MAX_ATTEMPTS,
        "every wrong try charges the factor"
    );
    // Past the factor's backoff and the cooldown: the right code is dead all the same.
    let now = 1_000 + COOLDOWN;
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, now)).await,
        rejected(RejectReason::NoCode)
    );
    assert_eq!(
        issue_code(&s, verify_code(&t, &u, 9, now + 5_000)).await,
        refused(SendRefusal::Exhausted, 1_000 + TTL)
    );
    assert_eq!(
        audit_trail(&s, &t, "code.send").await[0],
        row("denied", Some("exhausted"))
    );
    assert_eq!(messages(&s, &t).await.len(), 1, "a refusal queues nothing");
    assert_issued(&s, verify_code(&t, &u, 9, 1_000 + TTL)).await;
    assert_eq!(
        consume_code(&s, verify(&t, &u, 9, 1_000 + TTL + 10)).await,
        accepted_by("fac_s")
    );
    assert_eq!(
        the_factor(&s, &u).await.failures,
        0,
        "success clears failures"
    );
}

pub async fn an_expired_code_is_refused(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    issue_code(&s, verify_code(&t, &u, 7, 1_000)).await;
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, 1_000 + TTL)).await,
        rejected(RejectReason::Expired)
    );
    assert_eq!(the_factor(&s, &u).await.failures, 1);
    issue_code(&s, verify_code(&t, &u, 7, 1_000 + TTL)).await;
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, 1_000 + 2 * TTL - 1)).await,
        accepted_by("fac_s"),
        "live until the last millisecond before expires_at"
    );
}

pub async fn a_code_is_bound_to_purpose_user_factor_and_action(s: DynStore) {
    let (t, alice) = sms_setup(&s).await;
    let bob = user(&s, &t, "bob").await;
    enrol(&s, &t, sms_factor(&t, &bob, "fac_b", FactorStatus::Active)).await;
    let mut i = issue(&t, &alice, "fac_s", CodePurpose::Disable, 7, 1_000);
    i.code.action_hash = Some(vec![1; 32]);
    issue_code(&s, i).await;
    let disable = |u: &User, factor_id: &str, action: Option<Vec<u8>>| {
        let mut c = consume(&t, u, factor_id, CodePurpose::Disable, 7, 2_000);
        c.action_hash = action;
        c
    };
    let right = || Some(vec![1; 32]);
    for (c, why) in [
        (verify(&t, &alice, 7, 2_000), "another purpose"),
        (disable(&bob, "fac_b", right()), "another user"),
        (disable(&bob, "fac_s", right()), "another user's factor"),
    ] {
        assert_eq!(
            consume_code(&s, c).await,
            rejected(RejectReason::NoCode),
            "{why}"
        );
    }
    assert_eq!(
        the_factor(&s, &alice).await.failures,
        1,
        "someone else's try is not charged to alice"
    );
    for (action, why) in [(Some(vec![2; 32]), "another action"), (None, "no action")] {
        let c = disable(&alice, "fac_s", action);
        assert_eq!(
            consume_code(&s, c).await,
            rejected(RejectReason::WrongCode),
            "{why}"
        );
    }
    assert_eq!(
        consume_code(&s, disable(&alice, "fac_s", right())).await,
        accepted_by("fac_s")
    );
}

pub async fn only_the_newest_code_is_valid(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    issue_code(&s, verify_code(&t, &u, 1, 1_000)).await;
    assert_issued(&s, verify_code(&t, &u, 2, 1_000 + COOLDOWN)).await;
    let now = 2_000 + COOLDOWN;
    assert_eq!(
        consume_code(&s, verify(&t, &u, 1, now)).await,
        rejected(RejectReason::WrongCode)
    );
    assert_eq!(
        consume_code(&s, verify(&t, &u, 2, now)).await,
        accepted_by("fac_s")
    );
    assert_eq!(
        consume_code(&s, verify(&t, &u, 1, now)).await,
        rejected(RejectReason::WrongCode)
    );
    assert_eq!(messages(&s, &t).await.len(), 2);
}

pub async fn cooldown_refuses_and_a_refusal_changes_nothing(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    let cap = SendLimit {
        scope: format!("user:{}", u.id),
        max: 1,
        window_ms: DAY,
    };
    issue_code(&s, verify_code(&t, &u, 1, 1_000)).await;
    let mut again = verify_code(&t, &u, 2, 20_000);
    again.limits = vec![cap.clone()];
    again.effects = vec![
        Effect::Enqueue(notice(&t, &u, 20_000)),
        Effect::Audit(audit("effect.audit", Some(t.id), 20_000)),
        Effect::InsertFactor {
            factor: sms_factor(&t, &u, "fac_new", FactorStatus::Pending),
            max_per_user: 10,
        },
    ];
    assert_eq!(
        issue_code(&s, again.clone()).await,
        refused(SendRefusal::Cooldown, 1_000 + COOLDOWN)
    );
    assert_eq!(messages(&s, &t).await.len(), 1, "no message, no effect");
    assert_eq!(s.factors_of(u.id).await.unwrap().len(), 1);
    assert!(audit_trail(&s, &t, "effect.audit").await.is_empty());
    assert_eq!(
        audit_trail(&s, &t, "code.send").await,
        vec![row("denied", Some("cooldown")), row("ok", None)]
    );
    assert_eq!(
        consume_code(&s, verify(&t, &u, 1, 20_001)).await,
        accepted_by("fac_s"),
        "the refused code superseded nothing"
    );
    // The refusal counted nothing against the cap of one.
    again.code.created_at = 1_000 + COOLDOWN;
    again.code.expires_at = 1_000 + COOLDOWN + TTL;
    again.message = message(&t, Some(&u), TemplateKind::Code, 1_000 + COOLDOWN);
    assert_issued(&s, again).await;
    assert_eq!(messages(&s, &t).await.len(), 3, "code and effect message");
    assert!(factor_by_id(&s, &u, "fac_new").await.is_some());
    assert_eq!(audit_trail(&s, &t, "effect.audit").await.len(), 1);
    let mut third = verify_code(&t, &u, 3, 1_000 + 2 * COOLDOWN);
    third.limits = vec![cap];
    assert_eq!(
        issue_code(&s, third).await,
        refused(SendRefusal::Limit("user".into()), DAY)
    );
}

pub async fn a_locked_factor_gets_no_code_and_a_blocked_one_is_not_charged(s: DynStore) {
    let (t, u) = setup_with(&s, |t, u| Factor {
        failures: LOCK_AFTER,
        locked_at: Some(5),
        ..sms_factor(t, u, "fac_s", FactorStatus::Active)
    })
    .await;
    assert_eq!(
        issue_code(&s, verify_code(&t, &u, 7, 1_000)).await,
        refused(SendRefusal::Locked, i64::MAX),
        "waiting does not help; only an operator unlock"
    );
    assert!(messages(&s, &t).await.is_empty());
    assert_eq!(
        audit_trail(&s, &t, "code.send").await,
        vec![row("denied", Some("locked"))]
    );
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, 1_000)).await,
        rejected(RejectReason::Locked)
    );
    assert_eq!(the_factor(&s, &u).await.failures, LOCK_AFTER);

    let bob = user(&s, &t, "bob").await;
    let blocked = Factor {
        failures: BACKOFF_AFTER,
        blocked_until: Some(10_000),
        ..sms_factor(&t, &bob, "fac_b", FactorStatus::Active)
    };
    enrol(&s, &t, blocked).await;
    let bob_code = issue(&t, &bob, "fac_b", CodePurpose::Verify, 7, 1_000);
    assert_eq!(
        issue_code(&s, bob_code).await,
        IssueOutcome::Issued,
        "backoff limits tries, not sending"
    );
    let bob_try = |now| consume(&t, &bob, "fac_b", CodePurpose::Verify, 7, now);
    assert_eq!(
        consume_code(&s, bob_try(5_000)).await,
        rejected(RejectReason::Throttled)
    );
    assert_eq!(the_factor(&s, &bob).await.failures, BACKOFF_AFTER);
    assert_eq!(
        consume_code(&s, bob_try(10_000)).await,
        accepted_by("fac_b"),
        "a throttled try does not use up the code"
    );
}

pub async fn send_limits_refuse_until_their_window_ends(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    let dest = SendLimit {
        scope: format!("dest:{PHONE}"),
        max: 2,
        window_ms: HOUR,
    };
    let per_user = SendLimit {
        scope: format!("user:{}", u.id),
        max: 3,
        window_ms: DAY,
    };
    let both = vec![dest.clone(), per_user];
    let go = |code: u8, now: i64, limits: &[SendLimit]| {
        let mut i = verify_code(&t, &u, code, now);
        i.cooldown_ms = 0;
        i.limits = limits.to_vec();
        i
    };
    let day = 10 * DAY;
    let mut issued = 0;
    for (code, now) in [(1, day + 1_000), (2, day + 2_000)] {
        assert_issued(&s, go(code, now, &both)).await;
        issued += 1;
    }
    assert_eq!(
        issue_code(&s, go(3, day + 3_000, &both)).await,
        refused(SendRefusal::Limit("dest".into()), day + HOUR)
    );
    assert_eq!(
        audit_trail(&s, &t, "code.send").await[0],
        row("denied", Some("limit_dest"))
    );
    // Next hour: the destination may receive again; the refusal above counted nothing
    // against the user, who reaches their cap only now.
    assert_issued(&s, go(4, day + HOUR + 5, &both)).await;
    issued += 1;
    assert_eq!(
        issue_code(&s, go(5, day + HOUR + 6, &both)).await,
        refused(SendRefusal::Limit("user".into()), day + DAY)
    );
    // Refused by the user cap: the destination cap was not counted either.
    assert_issued(&s, go(6, day + HOUR + 7, std::slice::from_ref(&dest))).await;
    issued += 1;
    assert_eq!(
        issue_code(&s, go(7, day + HOUR + 8, &[dest])).await,
        refused(SendRefusal::Limit("dest".into()), day + 2 * HOUR)
    );
    let per_tenant = [SendLimit {
        scope: format!("tenant:{}", t.id),
        max: 1,
        window_ms: MINUTE,
    }];
    let now = day + 2 * HOUR + 30_000;
    assert_issued(&s, go(8, now, &per_tenant)).await;
    issued += 1;
    assert_eq!(
        issue_code(&s, go(9, now + 1, &per_tenant)).await,
        refused(SendRefusal::Limit("tenant".into()), day + 2 * HOUR + MINUTE)
    );
    // Two caps on one scope with different windows are counted apart, even when both
    // windows start at the same instant.
    let other = [
        SendLimit {
            scope: "dest:other".into(),
            max: 2,
            window_ms: HOUR,
        },
        SendLimit {
            scope: "dest:other".into(),
            max: 5,
            window_ms: DAY,
        },
    ];
    let midnight = 12 * DAY;
    for (code, now) in [(10, midnight), (11, midnight + 1)] {
        assert_issued(&s, go(code, now, &other)).await;
        issued += 1;
    }
    assert_eq!(
        issue_code(&s, go(12, midnight + 2, &other)).await,
        refused(SendRefusal::Limit("dest".into()), midnight + HOUR)
    );
    assert_eq!(messages(&s, &t).await.len(), issued);
    assert_eq!(
        consume_code(&s, verify(&t, &u, 11, midnight + 3)).await,
        accepted_by("fac_s"),
        "the refused code 12 superseded nothing"
    );
}

pub async fn effects_are_applied_with_the_code(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    let new = sms_factor(&t, &u, "fac_n", FactorStatus::Pending);
    let mut i = issue(&t, &u, "fac_n", CodePurpose::Enrol, 7, 1_000);
    i.effects = vec![Effect::InsertFactor {
        factor: new.clone(),
        max_per_user: 5,
    }];
    assert_issued(&s, i).await;
    assert_eq!(s.factors_of(u.id).await.unwrap(), vec![new]);
    let mut c = consume(&t, &u, "fac_n", CodePurpose::Enrol, 7, 2_000);
    let added = notice(&t, &u, 2_000);
    c.on_success = vec![
        Effect::ActivateFactor {
            factor_id: "fac_n".into(),
            at: 2_000,
        },
        Effect::Enqueue(added.clone()),
        Effect::Audit(audit("factor.activate", Some(t.id), 2_000)),
    ];
    assert_eq!(consume_code(&s, c).await, accepted_by("fac_n"));
    let f = the_factor(&s, &u).await;
    assert_eq!(
        (
            f.status,
            f.confirmed_at,
            f.version,
            f.failures,
            f.blocked_until
        ),
        (FactorStatus::Active, Some(2_000), 2, 0, None)
    );
    let queued = messages(&s, &t).await;
    assert_eq!(queued.len(), 2);
    assert_eq!(queued[0].message_id, added.message_id);
    assert_eq!(
        audit_trail(&s, &t, "factor.activate").await,
        vec![row("ok", None)]
    );
}

pub async fn a_failed_effect_rolls_everything_back(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    issue_code(&s, verify_code(&t, &u, 7, 1_000)).await;
    let state_changed = StoreError::Conflict("state_changed");
    // Activating an active factor: the precondition fails after the code was marked used.
    let mut c = verify(&t, &u, 7, 2_000);
    c.on_success = vec![
        Effect::Enqueue(notice(&t, &u, 2_000)),
        Effect::ActivateFactor {
            factor_id: "fac_s".into(),
            at: 2_000,
        },
    ];
    assert_eq!(s.consume_code(c).await, Err(state_changed.clone()));
    assert_eq!(messages(&s, &t).await.len(), 1, "the notice was not queued");
    assert!(audit_trail(&s, &t, "code.verify").await.is_empty());
    for missing in [
        Effect::ActivateFactor {
            factor_id: "fac_missing".into(),
            at: 2_000,
        },
        Effect::DeleteFactor {
            factor_id: "fac_missing".into(),
        },
        Effect::SetDestination {
            factor_id: "fac_missing".into(),
            destination: NEW_PHONE.into(),
        },
        Effect::MovePhoneChange {
            id: "pcg_missing".into(),
            from: PhoneChangeState::AwaitingOld,
            to: PhoneChangeState::AwaitingNew,
            at: 2_000,
        },
    ] {
        let mut c = verify(&t, &u, 7, 2_000);
        c.on_success = vec![missing];
        assert_eq!(s.consume_code(c).await, Err(state_changed.clone()));
    }
    assert_eq!(the_factor(&s, &u).await.failures, 0);
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, 2_001)).await,
        accepted_by("fac_s"),
        "the code stayed unconsumed"
    );

    // A failed effect of an issue: no code, no message, no count, no audit.
    let cap = SendLimit {
        scope: format!("user:{}", u.id),
        max: 1,
        window_ms: DAY,
    };
    let now = 1_000 + COOLDOWN;
    let mut i = verify_code(&t, &u, 8, now);
    i.limits = vec![cap.clone()];
    i.effects = vec![
        Effect::Enqueue(notice(&t, &u, now)),
        Effect::DeleteFactor {
            factor_id: "fac_missing".into(),
        },
    ];
    assert_eq!(s.issue_code(i).await, Err(state_changed));
    let mut i = verify_code(&t, &u, 8, now);
    i.effects = vec![Effect::InsertFactor {
        factor: sms_factor(&t, &u, "fac_x", FactorStatus::Pending),
        max_per_user: 1,
    }];
    assert_eq!(
        s.issue_code(i).await,
        Err(StoreError::Conflict("too_many_factors"))
    );
    assert_eq!(s.factors_of(u.id).await.unwrap().len(), 1);
    assert_eq!(messages(&s, &t).await.len(), 1);
    assert_eq!(audit_trail(&s, &t, "code.send").await.len(), 1);
    assert_eq!(
        consume_code(&s, verify(&t, &u, 8, now + 1)).await,
        rejected(RejectReason::WrongCode),
        "no code 8 was stored"
    );
    let mut i = verify_code(&t, &u, 8, now + 2);
    i.limits = vec![cap];
    assert_eq!(
        issue_code(&s, i).await,
        IssueOutcome::Issued,
        "the rolled-back issue counted nothing"
    );
}

pub(super) fn phone_change(
    t: &Tenant,
    u: &User,
    id: &str,
    factor_id: &str,
    at: i64,
) -> PhoneChange {
    PhoneChange {
        id: id.into(),
        tenant_id: t.id,
        user_id: u.id,
        factor_id: factor_id.into(),
        new_phone: NEW_PHONE.into(),
        state: PhoneChangeState::AwaitingOld,
        created_at: at,
        expires_at: at + PHONE_CHANGE_TTL_MS,
        updated_at: at,
    }
}

fn move_change(id: &str, from: PhoneChangeState, to: PhoneChangeState, at: i64) -> Effect {
    Effect::MovePhoneChange {
        id: id.into(),
        from,
        to,
        at,
    }
}

pub async fn a_phone_change_moves_step_by_step(s: DynStore) {
    use PhoneChangeState::*;
    let (t, u) = sms_setup(&s).await;
    let pc1 = phone_change(&t, &u, "pcg_1", "fac_s", 1_000);
    let mut i = issue(&t, &u, "fac_s", CodePurpose::PhoneOld, 7, 1_000);
    i.effects = vec![Effect::StartPhoneChange(pc1.clone())];
    assert_issued(&s, i).await;
    assert_eq!(s.phone_change("pcg_1").await.unwrap(), Some(pc1.clone()));
    assert_eq!(s.phone_change("pcg_none").await.unwrap(), None);

    // The right old-number code moves the change and, in the same transaction, stores the
    // new number's code (counted against the caps, not refused by them) and queues its SMS.
    let mut c = consume(&t, &u, "fac_s", CodePurpose::PhoneOld, 7, 2_000);
    let earned = issue(&t, &u, "fac_s", CodePurpose::PhoneNew, 8, 2_000);
    let mut new_sms = earned.message.clone();
    new_sms.destination = NEW_PHONE.into();
    c.on_success = vec![
        move_change("pcg_1", AwaitingOld, AwaitingNew, 2_000),
        Effect::InsertCode {
            code: earned.code.clone(),
            limits: earned.limits.clone(),
        },
        Effect::Enqueue(new_sms.clone()),
    ];
    assert_eq!(consume_code(&s, c).await, accepted_by("fac_s"));
    let pc = s.phone_change("pcg_1").await.unwrap().unwrap();
    assert_eq!((pc.state, pc.updated_at), (AwaitingNew, 2_000));
    assert!(messages(&s, &t)
        .await
        .iter()
        .any(|m| m.message_id == new_sms.message_id && m.destination == NEW_PHONE));
    // A code still live for another purpose (sent to the old number) dies with the swap.
    issue_code(&s, verify_code(&t, &u, 12, 2_500)).await;
    let mut c = consume(&t, &u, "fac_s", CodePurpose::PhoneNew, 8, 4_000);
    c.on_success = vec![move_change("pcg_1", AwaitingOld, Done, 4_000)];
    assert_eq!(
        s.consume_code(c).await,
        Err(StoreError::Conflict("state_changed")),
        "a step cannot be skipped"
    );
    let mut c = consume(&t, &u, "fac_s", CodePurpose::PhoneNew, 8, 4_000);
    c.on_success = vec![
        move_change("pcg_1", AwaitingNew, Done, 4_000),
        Effect::SetDestination {
            factor_id: "fac_s".into(),
            destination: NEW_PHONE.into(),
        },
    ];
    assert_eq!(consume_code(&s, c).await, accepted_by("fac_s"));
    let f = the_factor(&s, &u).await;
    assert_eq!((f.destination.as_deref(), f.version), (Some(NEW_PHONE), 2));
    assert_eq!(s.phone_change("pcg_1").await.unwrap().unwrap().state, Done);
    assert_eq!(
        consume_code(&s, consume(&t, &u, "fac_s", CodePurpose::Verify, 12, 4_001)).await,
        AttemptOutcome::Rejected {
            reason: RejectReason::NoCode
        },
        "a code sent to the old number does not outlive the swap"
    );

    // Starting again cancels the open change, never a finished one.
    let at = 1_000 + COOLDOWN;
    let mut i = issue(&t, &u, "fac_s", CodePurpose::PhoneOld, 9, at);
    i.effects = vec![Effect::StartPhoneChange(phone_change(
        &t, &u, "pcg_2", "fac_s", at,
    ))];
    issue_code(&s, i).await;
    let at3 = at + COOLDOWN;
    let pc3 = phone_change(&t, &u, "pcg_3", "fac_s", at3);
    let mut i = issue(&t, &u, "fac_s", CodePurpose::PhoneOld, 10, at3);
    i.effects = vec![Effect::StartPhoneChange(pc3.clone())];
    issue_code(&s, i).await;
    let pc2 = s.phone_change("pcg_2").await.unwrap().unwrap();
    assert_eq!((pc2.state, pc2.updated_at), (Cancelled, at3));
    assert_eq!(s.phone_change("pcg_1").await.unwrap().unwrap().state, Done);
    assert_eq!(s.phone_change("pcg_3").await.unwrap(), Some(pc3.clone()));

    // An expired change cannot move, even with a live code.
    let late = pc3.expires_at;
    issue_code(
        &s,
        issue(&t, &u, "fac_s", CodePurpose::PhoneOld, 11, late - MINUTE),
    )
    .await;
    let mut c = consume(&t, &u, "fac_s", CodePurpose::PhoneOld, 11, late);
    c.on_success = vec![move_change("pcg_3", AwaitingOld, AwaitingNew, late)];
    assert_eq!(
        s.consume_code(c).await,
        Err(StoreError::Conflict("state_changed"))
    );
    assert_eq!(
        s.phone_change("pcg_3").await.unwrap().unwrap().state,
        AwaitingOld
    );

    // Deleting the factor takes its changes and codes with it.
    assert!(delete_fac_s(&s, &t, None, late, None).await);
    for id in ["pcg_1", "pcg_2", "pcg_3"] {
        assert_eq!(s.phone_change(id).await.unwrap(), None);
    }
}

pub async fn code_failures_charge_the_factor_and_queue_one_lock_notice(s: DynStore) {
    let (t, u) = setup_with(&s, |t, u| {
        nearly_locked(sms_factor(t, u, "fac_s", FactorStatus::Active))
    })
    .await;
    issue_code(&s, verify_code(&t, &u, 7, 1_000)).await;
    let lock_notice = notice(&t, &u, 2_000);
    let mut c = verify(&t, &u, 8, 2_000);
    c.on_lock = vec![Effect::Enqueue(lock_notice.clone())];
    assert_eq!(consume_code(&s, c).await, rejected(RejectReason::WrongCode));
    let f = the_factor(&s, &u).await;
    assert_eq!((f.failures, f.locked_at), (LOCK_AFTER, Some(2_000)));
    let queued = messages(&s, &t).await;
    assert_eq!(queued.len(), 2);
    assert_eq!(queued[0].message_id, lock_notice.message_id);
    for code in [8, 7] {
        let mut c = verify(&t, &u, code, 3_000);
        c.on_lock = vec![Effect::Enqueue(notice(&t, &u, 3_000))];
        assert_eq!(consume_code(&s, c).await, rejected(RejectReason::Locked));
    }
    assert_eq!(messages(&s, &t).await.len(), 2, "one lock, one notice");
    assert_eq!(audit_trail(&s, &t, "factor.lock").await.len(), 1);
    assert_eq!(the_factor(&s, &u).await.failures, LOCK_AFTER);
}

pub async fn a_totp_lock_queues_its_notice_once(s: DynStore) {
    let (t, u) = setup_with(&s, |t, u| {
        nearly_locked(factor(t, u, "fac_a", FactorStatus::Active))
    })
    .await;
    for now in [1_000, 2_000] {
        let mut a = attempt(now, None, 1);
        a.on_lock = vec![Effect::Enqueue(notice(&t, &u, now))];
        s.attempt(a).await.unwrap();
    }
    assert_eq!(the_factor(&s, &u).await.locked_at, Some(1_000));
    assert_eq!(messages(&s, &t).await.len(), 1);
}

pub async fn totp_effects_ride_on_the_accepted_step(s: DynStore) {
    let (t, u) = setup(&s).await;
    let mut a = attempt(1_000, Some(50), 1);
    a.on_accept = vec![
        Effect::Enqueue(notice(&t, &u, 1_000)),
        Effect::Audit(audit("effect.audit", Some(t.id), 1_000)),
    ];
    assert_eq!(s.attempt(a).await.unwrap(), accepted());
    assert_eq!(messages(&s, &t).await.len(), 1);
    assert_eq!(audit_trail(&s, &t, "effect.audit").await.len(), 1);
    let mut a = attempt(1_001, Some(51), 1);
    a.on_accept = vec![
        Effect::Enqueue(notice(&t, &u, 1_001)),
        Effect::DeleteFactor {
            factor_id: "fac_missing".into(),
        },
    ];
    assert_eq!(
        s.attempt(a).await,
        Err(StoreError::Conflict("state_changed"))
    );
    assert_eq!(the_factor(&s, &u).await.last_step, 50, "step not consumed");
    assert_eq!(messages(&s, &t).await.len(), 1);
    let mut a = attempt(1_002, Some(51), 1);
    a.on_accept = vec![Effect::DeleteFactor {
        factor_id: "fac_a".into(),
    }];
    assert_eq!(s.attempt(a).await.unwrap(), accepted());
    assert!(s.factors_of(u.id).await.unwrap().is_empty());
}

pub async fn parallel_consumes_of_one_code_succeed_once(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    issue_code(&s, verify_code(&t, &u, 7, 1_000)).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (s, t, u) = (s.clone(), t.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            s.consume_code(verify(&t, &u, 7, 2_000 + i)).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            AttemptOutcome::Accepted { .. } => ok += 1,
            // Replays are charged, so the factor soon backs off.
            other => assert!(
                [
                    rejected(RejectReason::Replayed),
                    rejected(RejectReason::Throttled)
                ]
                .contains(&other),
                "{other:?}"
            ),
        }
    }
    assert_eq!(ok, 1);
}

pub async fn enqueue_is_all_or_nothing(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    let m1 = message(&t, Some(&u), TemplateKind::Invitation, 100);
    let m2 = message(&t, None, TemplateKind::Invitation, 100);
    s.enqueue(
        vec![m1.clone(), m2],
        Some(audit("user.invite", Some(t.id), 100)),
    )
    .await
    .unwrap();
    assert_eq!(messages(&s, &t).await.len(), 2);
    let m3 = message(&t, None, TemplateKind::Invitation, 100);
    assert_eq!(
        s.enqueue(vec![m3, m1], Some(audit("user.invite", Some(t.id), 100)))
            .await,
        Err(StoreError::Conflict("message_exists"))
    );
    assert_eq!(messages(&s, &t).await.len(), 2);
    assert_eq!(audit_trail(&s, &t, "user.invite").await.len(), 1);
    s.enqueue(Vec::new(), None).await.unwrap();
}

pub async fn claims_are_disjoint_and_oldest_first(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let batch: Vec<_> = (0..20)
        .map(|i| message(&t, None, TemplateKind::Invitation, 100 + i))
        .collect();
    s.enqueue(batch, None).await.unwrap();
    // Not due yet: created (and so due) after `now`.
    s.enqueue(
        vec![message(&t, None, TemplateKind::Invitation, 5_000)],
        None,
    )
    .await
    .unwrap();
    let first = s.claim_messages("w0", 1_000, 60_000, 3).await.unwrap();
    let all = messages(&s, &t).await;
    let mut oldest: Vec<i64> = all.iter().map(|m| m.id).collect();
    oldest.sort();
    assert_eq!(
        first.iter().map(|m| m.id).collect::<Vec<_>>(),
        oldest[..3].to_vec()
    );
    for m in &first {
        assert_eq!(
            (
                m.status,
                m.lease_owner.as_deref(),
                m.lease_until,
                m.attempts
            ),
            (MessageStatus::Sending, Some("w0"), Some(61_000), 1)
        );
    }
    let mut tasks = Vec::new();
    for w in ["w1", "w2", "w3"] {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let claimed = s.claim_messages(w, 1_000, 60_000, 2).await.unwrap();
                if claimed.is_empty() {
                    return got;
                }
                assert!(claimed.iter().all(|m| m.lease_owner.as_deref() == Some(w)));
                got.extend(claimed.into_iter().map(|m| m.id));
            }
        }));
    }
    let mut ids: Vec<i64> = first.iter().map(|m| m.id).collect();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no message claimed twice");
    assert_eq!(
        ids,
        oldest[..20].to_vec(),
        "every due message, and only those"
    );
    let stats = s.outbox_stats(Some(t.id)).await.unwrap();
    assert_eq!((stats.pending, stats.sending), (1, 20));
}

pub async fn an_expired_lease_is_reclaimed(s: DynStore) {
    let t = tenant(&s, "acme").await;
    s.enqueue(vec![message(&t, None, TemplateKind::Invitation, 100)], None)
        .await
        .unwrap();
    let a = s.claim_messages("a", 1_000, 500, 10).await.unwrap();
    assert_eq!(a.len(), 1);
    let id = a[0].id;
    assert!(s
        .claim_messages("b", 1_499, 500, 10)
        .await
        .unwrap()
        .is_empty());
    let b = s.claim_messages("b", 1_500, 500, 10).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(
        (
            b[0].id,
            b[0].attempts,
            b[0].lease_owner.as_deref(),
            b[0].lease_until
        ),
        (id, 2, Some("b"), Some(2_000))
    );
    assert!(!s
        .finish_message(id, "a", DeliveryResult::Sent, 1_600)
        .await
        .unwrap());
    assert!(s
        .finish_message(id, "b", DeliveryResult::Sent, 1_700)
        .await
        .unwrap());
    let m = message_by_id(&s, id).await;
    assert_eq!(
        (
            m.status,
            m.sent_at,
            &m.sealed_params,
            &m.lease_owner,
            m.lease_until
        ),
        (MessageStatus::Sent, Some(1_700), &None, &None, None),
        "sent wipes the parameters"
    );
    assert!(!s
        .finish_message(id, "b", DeliveryResult::Failed { error: "x".into() }, 1_800)
        .await
        .unwrap());
    assert!(s
        .claim_messages("c", i64::MAX / 2, 500, 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn retries_and_failures_go_where_they_belong(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let m0 = message(&t, None, TemplateKind::Invitation, 100);
    s.enqueue(vec![m0.clone()], None).await.unwrap();
    let id = s.claim_messages("w", 1_000, 500, 1).await.unwrap()[0].id;
    let retry = DeliveryResult::Retry {
        at: 5_000,
        error: "451 try later".into(),
    };
    assert!(s.finish_message(id, "w", retry, 1_100).await.unwrap());
    let m = message_by_id(&s, id).await;
    assert_eq!(
        (
            m.status,
            m.next_attempt_at,
            m.last_error.as_deref(),
            &m.lease_owner,
            m.attempts
        ),
        (
            MessageStatus::Pending,
            5_000,
            Some("451 try later"),
            &None,
            1
        )
    );
    assert!(s
        .claim_messages("w", 4_999, 500, 1)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.claim_messages("w", 5_000, 500, 1).await.unwrap()[0].attempts,
        2
    );
    let failed = DeliveryResult::Failed {
        error: "550 no such user".into(),
    };
    assert!(s.finish_message(id, "w", failed, 5_100).await.unwrap());
    let m = message_by_id(&s, id).await;
    assert_eq!(
        (m.status, m.last_error.as_deref(), m.sealed_params.as_ref()),
        (
            MessageStatus::Failed,
            Some("550 no such user"),
            Some(&m0.sealed_params)
        ),
        "a failed message keeps its parameters for a retry"
    );
    assert!(s
        .claim_messages("w", i64::MAX / 2, 500, 1)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .retry_message(id, 9_000, audit("message.retry", Some(t.id), 9_000))
        .await
        .unwrap());
    let m = message_by_id(&s, id).await;
    assert_eq!(
        (m.status, m.next_attempt_at, m.attempts),
        (MessageStatus::Pending, 9_000, 2)
    );
    assert!(!s
        .retry_message(id, 9_001, audit("message.retry", Some(t.id), 9_001))
        .await
        .unwrap());
    assert!(!s
        .retry_message(id + 100, 9_001, audit("message.retry", Some(t.id), 9_001))
        .await
        .unwrap());
    assert_eq!(audit_trail(&s, &t, "message.retry").await.len(), 1);
    let again = s.claim_messages("w", 9_000, 500, 1).await.unwrap();
    assert_eq!((again[0].id, again[0].attempts), (id, 3));
}

pub async fn outbox_stats_and_listing_filter(s: DynStore) {
    let a = tenant(&s, "acme").await;
    let b = tenant(&s, "beta").await;
    let empty = tenant(&s, "gamma").await;
    let alice = user(&s, &a, "alice").await;
    let bob = user(&s, &b, "bob").await;
    let new = [
        message(&a, Some(&alice), TemplateKind::Code, 100),
        message(&a, Some(&alice), TemplateKind::Code, 200),
        message(&a, None, TemplateKind::Invitation, 300),
        message(&a, Some(&alice), TemplateKind::Code, 400),
        message(&b, Some(&bob), TemplateKind::Code, 150),
    ];
    s.enqueue(new.to_vec(), None).await.unwrap();
    let all = s
        .list_messages(MessageQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let id = |i: usize| {
        all.iter()
            .find(|m| m.message_id == new[i].message_id)
            .unwrap()
            .id
    };
    // m0 sent, m1 sending, m2 failed, m3 and m4 pending.
    let claimed = s.claim_messages("w", 1_000, 60_000, 2).await.unwrap();
    assert_eq!(
        claimed.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![id(0), id(1)]
    );
    s.finish_message(id(0), "w", DeliveryResult::Sent, 1_000)
        .await
        .unwrap();
    assert_eq!(
        s.claim_messages("w", 1_000, 60_000, 1).await.unwrap()[0].id,
        id(2)
    );
    s.finish_message(
        id(2),
        "w",
        DeliveryResult::Failed { error: "x".into() },
        1_000,
    )
    .await
    .unwrap();
    assert_eq!(
        s.outbox_stats(None).await.unwrap(),
        OutboxStats {
            pending: 2,
            sending: 1,
            sent: 1,
            failed: 1,
            oldest_unsent_at: Some(150),
        }
    );
    assert_eq!(
        s.outbox_stats(Some(a.id)).await.unwrap(),
        OutboxStats {
            pending: 1,
            sending: 1,
            sent: 1,
            failed: 1,
            oldest_unsent_at: Some(200),
        }
    );
    assert_eq!(
        s.outbox_stats(Some(b.id)).await.unwrap(),
        OutboxStats {
            pending: 1,
            oldest_unsent_at: Some(150),
            ..Default::default()
        }
    );
    assert_eq!(
        s.outbox_stats(Some(empty.id)).await.unwrap(),
        OutboxStats::default()
    );
    let ids = |q: MessageQuery| {
        let s = s.clone();
        async move {
            s.list_messages(q)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.id)
                .collect::<Vec<_>>()
        }
    };
    let q = |limit: u32| MessageQuery {
        limit,
        ..Default::default()
    };
    assert_eq!(
        ids(MessageQuery {
            tenant_id: Some(a.id),
            ..q(10)
        })
        .await,
        vec![id(3), id(2), id(1), id(0)]
    );
    assert_eq!(
        ids(MessageQuery {
            status: Some(MessageStatus::Pending),
            ..q(10)
        })
        .await,
        vec![id(4), id(3)]
    );
    assert_eq!(
        ids(MessageQuery {
            user_id: Some(alice.id),
            ..q(10)
        })
        .await,
        vec![id(3), id(1), id(0)]
    );
    assert_eq!(
        ids(MessageQuery {
            tenant_id: Some(a.id),
            status: Some(MessageStatus::Failed),
            ..q(10)
        })
        .await,
        vec![id(2)]
    );
    assert_eq!(
        ids(MessageQuery {
            tenant_id: Some(a.id),
            before_id: Some(id(2)),
            ..q(1)
        })
        .await,
        vec![id(1)]
    );
    assert_eq!(ids(q(2)).await, vec![id(4), id(3)]);
}

pub async fn prune_removes_finished_and_dead_rows(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    for f in [
        factor(&t, &u, "fac_a", FactorStatus::Active),
        sms_factor(&t, &u, "fac_s", FactorStatus::Active),
    ] {
        enrol(&s, &t, f).await;
    }
    let (before, now) = (1_000, 700_000);
    // Outbox: old sent and failed go; old pending and recent sent stay.
    let old_sent = message(&t, None, TemplateKind::Invitation, 100);
    let old_failed = message(&t, None, TemplateKind::Invitation, 200);
    s.enqueue(vec![old_sent.clone(), old_failed.clone()], None)
        .await
        .unwrap();
    let c = s.claim_messages("w", 250, 1_000, 10).await.unwrap();
    s.finish_message(c[0].id, "w", DeliveryResult::Sent, 260)
        .await
        .unwrap();
    let failed = DeliveryResult::Failed { error: "x".into() };
    s.finish_message(c[1].id, "w", failed, 260).await.unwrap();
    let recent_sent = message(&t, None, TemplateKind::Invitation, 5_000);
    s.enqueue(vec![recent_sent.clone()], None).await.unwrap();
    let c = s.claim_messages("w", 5_000, 1_000, 10).await.unwrap();
    s.finish_message(c[0].id, "w", DeliveryResult::Sent, 5_000)
        .await
        .unwrap();
    let old_pending = message(&t, None, TemplateKind::Invitation, 300);
    s.enqueue(vec![old_pending.clone()], None).await.unwrap();
    // Codes: one expired by `now` (with a counter of a past window and one of the current
    // day), one still live.
    let mut i = verify_code(&t, &u, 7, 1_000);
    i.limits = vec![
        SendLimit {
            scope: format!("user:{}", u.id),
            max: 10,
            window_ms: MINUTE,
        },
        SendLimit {
            scope: format!("tenant:{}", t.id),
            max: 10,
            window_ms: DAY,
        },
    ];
    issue_code(&s, i).await;
    issue_code(&s, issue(&t, &u, "fac_s", CodePurpose::Disable, 8, 500_000)).await;
    // Phone changes: finished long ago, expired, live, finished recently.
    let mut step = 10;
    let mut apply = |effects: Vec<Effect>| {
        step += 1;
        let mut a = attempt(now - 1, Some(step), 1);
        a.on_accept = effects;
        let s = s.clone();
        async move { assert_eq!(s.attempt(a).await.unwrap(), accepted()) }
    };
    let pc1 = phone_change(&t, &u, "pcg_1", "fac_1", 0);
    let pc2 = phone_change(&t, &u, "pcg_2", "fac_2", now - PHONE_CHANGE_TTL_MS);
    let pc3 = phone_change(&t, &u, "pcg_3", "fac_3", now - 1);
    let pc4 = phone_change(&t, &u, "pcg_4", "fac_4", 0);
    apply(vec![
        Effect::StartPhoneChange(pc1),
        Effect::StartPhoneChange(pc2),
        Effect::StartPhoneChange(pc3),
        Effect::StartPhoneChange(PhoneChange {
            expires_at: 2 * now,
            ..pc4
        }),
    ])
    .await;
    apply(vec![
        move_change(
            "pcg_1",
            PhoneChangeState::AwaitingOld,
            PhoneChangeState::Done,
            500,
        ),
        move_change(
            "pcg_4",
            PhoneChangeState::AwaitingOld,
            PhoneChangeState::Done,
            5_000,
        ),
    ])
    .await;

    assert_eq!(
        s.prune_messaging(before, now).await.unwrap(),
        2 + 1 + 2 + 1,
        "two messages, one code, two phone changes, one counter"
    );
    let left: Vec<String> = messages(&s, &t)
        .await
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    assert!(!left.contains(&old_sent.message_id));
    assert!(!left.contains(&old_failed.message_id));
    assert!(left.contains(&recent_sent.message_id));
    assert!(left.contains(&old_pending.message_id));
    assert_eq!(left.len(), 4, "and the two code messages");
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, now)).await,
        rejected(RejectReason::NoCode),
        "the expired code is gone"
    );
    assert_eq!(
        consume_code(&s, consume(&t, &u, "fac_s", CodePurpose::Disable, 8, now)).await,
        accepted_by("fac_s")
    );
    assert_eq!(s.phone_change("pcg_1").await.unwrap(), None);
    assert_eq!(s.phone_change("pcg_2").await.unwrap(), None);
    assert!(s.phone_change("pcg_3").await.unwrap().is_some());
    assert!(s.phone_change("pcg_4").await.unwrap().is_some());
    assert_eq!(s.prune_messaging(before, now).await.unwrap(), 0);
}

pub async fn delete_and_unlock_queue_their_notices(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    issue_code(&s, verify_code(&t, &u, 7, 1_000)).await;
    // Withdrawing "a pending factor" never removes one that is active by now.
    let before = messages(&s, &t).await.len();
    assert!(
        !delete_fac_s(
            &s,
            &t,
            Some(FactorStatus::Pending),
            1_500,
            Some(notice(&t, &u, 1_500))
        )
        .await
    );
    assert_eq!(messages(&s, &t).await.len(), before);
    assert!(audit_trail(&s, &t, "factor.delete").await.is_empty());
    let gone = notice(&t, &u, 2_000);
    assert!(delete_fac_s(&s, &t, None, 2_000, Some(gone.clone())).await);
    assert!(!delete_fac_s(&s, &t, None, 2_001, Some(notice(&t, &u, 2_001))).await);
    let queued = messages(&s, &t).await;
    assert_eq!(queued.len(), 2);
    assert_eq!(queued[0].message_id, gone.message_id);
    assert_eq!(audit_trail(&s, &t, "factor.delete").await.len(), 1);
    // A factor re-created under the same id does not inherit the old codes.
    enrol(&s, &t, sms_factor(&t, &u, "fac_s", FactorStatus::Active)).await;
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, 2_002)).await,
        rejected(RejectReason::NoCode)
    );

    let unlocked = notice(&t, &u, 3_000);
    assert!(unlock(&s, &t, "fac_s", 3_000, unlocked.clone()).await);
    assert!(!unlock(&s, &t, "fac_missing", 3_000, notice(&t, &u, 3_000)).await);
    let queued = messages(&s, &t).await;
    assert_eq!(queued.len(), 3);
    assert_eq!(queued[0].message_id, unlocked.message_id);
    assert_eq!(the_factor(&s, &u).await.failures, 0);
}

pub async fn tenant_messaging_settings_round_trip(s: DynStore) {
    let t = tenant(&s, "acme").await;
    assert_eq!(
        (t.sender_name.clone(), t.sms_countries.clone()),
        (None, None)
    );
    for (sender, countries) in [
        (
            Some("Acme Security".to_string()),
            Some(vec!["44".to_string(), "1".to_string()]),
        ),
        (None, Some(Vec::new())),
        (None, None),
    ] {
        s.update_tenant_messaging(
            t.id,
            sender.clone(),
            countries.clone(),
            audit("tenant.messaging", Some(t.id), 5),
        )
        .await
        .unwrap();
        let got = s.tenant_by_slug("acme").await.unwrap().unwrap();
        assert_eq!(
            got,
            Tenant {
                sender_name: sender,
                sms_countries: countries,
                ..t.clone()
            }
        );
    }
    assert_eq!(audit_trail(&s, &t, "tenant.messaging").await.len(), 3);
}

pub async fn factor_destination_round_trips(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    let sms = sms_factor(&t, &u, "fac_s", FactorStatus::Pending);
    let email = Factor {
        id: "fac_e".into(),
        kind: "email".into(),
        destination: Some("alice@example.com".into()),
        created_at: 4,
        ..sms.clone()
    };
    for f in [sms.clone(), email.clone()] {
        enrol(&s, &t, f).await;
    }
    assert_eq!(s.factors_of(u.id).await.unwrap(), vec![sms, email]);
}

// ------------------------------------------------------------ two handles on one database
//
// Not in `conformance_tests!`: these need two independent handles on the same database (two
// processes, or two nodes), which only the backend's own tests know how to open.

/// Four workers on two handles drain one queue; no message is claimed twice.
pub async fn two_handles_never_claim_the_same_message(a: DynStore, b: DynStore) {
    let t = acme_tenant(&*a, 1).await;
    let batch: Vec<NewMessage> = (0..200)
        .map(|i| message(&t, None, TemplateKind::Invitation, 10 + i % 7))
        .collect();
    b.enqueue(batch, None).await.unwrap();
    let mut tasks = Vec::new();
    for (i, store) in [a.clone(), b.clone(), a, b].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let owner = format!("w{i}");
            let mut got = Vec::new();
            loop {
                let claimed = store.claim_messages(&owner, 100, 60_000, 3).await.unwrap();
                if claimed.is_empty() {
                    return got;
                }
                got.extend(claimed.into_iter().map(|m| m.id));
            }
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((n, ids.len()), (200, 200));
}

/// One TOTP step and one SMS code, each presented in parallel through two handles, are each
/// accepted once; wrong codes through both handles are all counted (INV-01..03 across nodes).
pub async fn two_handles_accept_a_step_and_a_code_once(a: DynStore, b: DynStore) {
    let (t, u) = setup(&a).await;
    enrol(&a, &t, sms_factor(&t, &u, "fac_s", FactorStatus::Active)).await;
    issue_code(&b, verify_code(&t, &u, 7, 1_000)).await;
    let mut steps = Vec::new();
    let mut codes = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let s2 = s.clone();
        steps.push(tokio::spawn(async move {
            s.attempt(attempt(1_000 + i, Some(77), 1)).await
        }));
        let (t, u) = (t.clone(), u.clone());
        codes.push(tokio::spawn(async move {
            s2.consume_code(verify(&t, &u, 7, 2_000 + i)).await
        }));
    }
    let mut ok = (0, 0);
    for task in steps {
        if task.await.unwrap().unwrap() == accepted() {
            ok.0 += 1;
        }
    }
    for task in codes {
        if task.await.unwrap().unwrap() == accepted_by("fac_s") {
            ok.1 += 1;
        }
    }
    assert_eq!(ok, (1, 1));
    // The replays above were charged; start the count afresh.
    assert!(unlock(&b, &t, "fac_a", 3_000, notice(&t, &u, 3_000)).await);
    let mut wrong = Vec::new();
    for i in 0..(2 * BACKOFF_AFTER) {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        wrong.push(tokio::spawn(async move {
            s.attempt(attempt(5_000, None, 1)).await
        }));
    }
    for task in wrong {
        task.await.unwrap().unwrap();
    }
    let f = factor_by_id(&a, &u, "fac_a").await.unwrap();
    assert_eq!(
        f.failures, BACKOFF_AFTER,
        "every failure counted, none while blocked"
    );
}
