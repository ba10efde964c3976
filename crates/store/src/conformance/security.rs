//! Conformance checks for the user's ways back and ways around: recovery codes (INV-02, 30
//! parallel uses of one code), failure budgets beyond a factor's own limits, the effects that
//! ride on a factor's backoff and lock, removing and restoring factors and phone numbers,
//! "this wasn't me" links, the 2FA freeze, app passwords and the login history.

use super::logins::{applied, apply, session, the_user, token, STATE_CHANGED};
use super::messaging::{
    accepted_by, audit_trail, code_hash, consume, consume_code, enrol, factor_by_id, issue,
    issue_code, messages, nearly_locked, notice, phone_change, row, setup_with, sms_factor,
    sms_setup, verify, verify_code, COOLDOWN, DAY, HOUR, NEW_PHONE, PHONE, TTL,
};
use super::*;
use twofold_core::messaging::*;
use twofold_core::security::*;

fn recovery_codes(t: &Tenant, u: &User, codes: &[u8], at: i64) -> Effect {
    Effect::ReplaceRecoveryCodes {
        tenant_id: t.id,
        user_id: u.id,
        hashes: codes.iter().map(|&c| code_hash(c)).collect(),
        hash_key_id: "hk1".into(),
        at,
    }
}

fn use_recovery_code(u: &User, code: u8, at: i64) -> Effect {
    Effect::UseRecoveryCode {
        user_id: u.id,
        code_hash: code_hash(code),
        at,
    }
}

async fn left(s: &DynStore, u: &User) -> u32 {
    s.recovery_codes_left(u.id).await.unwrap()
}

/// A failure budget of `max` per hour.
fn budget(scope: &str, max: u32) -> SendLimit {
    SendLimit {
        scope: scope.into(),
        max,
        window_ms: HOUR,
    }
}

/// [`attempt`] against `factor_id` instead of `fac_a`.
fn attempt_on(factor_id: &str, now: i64, step: Option<i64>) -> Attempt {
    let mut a = attempt(now, step, 1);
    a.factors[0].id = factor_id.into();
    if let Some(m) = a.matched.as_mut() {
        m.factor_id = factor_id.into();
    }
    a
}

fn with_budgets(mut a: Attempt, budgets: Vec<SendLimit>) -> Attempt {
    a.budgets = budgets;
    a
}

async fn failures(s: &DynStore, u: &User, factor_id: &str) -> i32 {
    factor_by_id(s, u, factor_id).await.unwrap().failures
}

/// (outcome, reason) of the newest TOTP attempt's audit row (those rows name no tenant).
async fn last_totp_audit(s: &DynStore) -> (String, Option<String>) {
    let e = s
        .list_audit(AuditQuery {
            action: Some("totp.verify".into()),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0);
    (e.record.outcome, e.record.reason)
}

pub async fn recovery_codes_are_replaced_and_used_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let alice = user(&s, &t, "alice").await;
    let bob = user(&s, &t, "bob").await;
    assert_eq!(left(&s, &alice).await, 0);
    applied(
        &s,
        &t,
        vec![recovery_codes(&t, &alice, &[1, 2, 3], 100)],
        100,
    )
    .await;
    applied(&s, &t, vec![recovery_codes(&t, &bob, &[1, 2], 100)], 100).await;
    assert_eq!(left(&s, &alice).await, 3);
    applied(&s, &t, vec![use_recovery_code(&alice, 1, 200)], 200).await;
    assert_eq!((left(&s, &alice).await, left(&s, &bob).await), (2, 2));
    for spent in [
        use_recovery_code(&alice, 1, 300), // used already
        use_recovery_code(&alice, 9, 300), // never one of hers
        Effect::UseRecoveryCode {
            user_id: bob.id + 1_000,
            code_hash: code_hash(2),
            at: 300,
        },
    ] {
        assert_eq!(apply(&s, &t, vec![spent], 300).await, Err(STATE_CHANGED));
    }
    // All or nothing: a good code next to a spent one stays unused.
    assert_eq!(
        apply(
            &s,
            &t,
            vec![
                use_recovery_code(&alice, 2, 400),
                use_recovery_code(&alice, 1, 400)
            ],
            400
        )
        .await,
        Err(STATE_CHANGED)
    );
    assert_eq!(left(&s, &alice).await, 2);
    // A new set replaces the old one, used and unused codes alike.
    applied(&s, &t, vec![recovery_codes(&t, &alice, &[4, 5], 500)], 500).await;
    assert_eq!(left(&s, &alice).await, 2);
    assert_eq!(
        apply(&s, &t, vec![use_recovery_code(&alice, 2, 600)], 600).await,
        Err(STATE_CHANGED)
    );
    applied(&s, &t, vec![use_recovery_code(&alice, 4, 600)], 600).await;
    assert_eq!((left(&s, &alice).await, left(&s, &bob).await), (1, 2));
    // A set with the same code twice is refused whole.
    assert_eq!(
        apply(&s, &t, vec![recovery_codes(&t, &alice, &[6, 6], 700)], 700).await,
        Err(StoreError::Conflict("recovery_code_exists"))
    );
    assert_eq!(left(&s, &alice).await, 1);
}

pub async fn parallel_uses_of_one_recovery_code_succeed_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    applied(&s, &t, vec![recovery_codes(&t, &u, &[1, 2], 100)], 100).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let (s, t, u) = (s.clone(), t.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            let at = 1_000 + i64::from(i);
            let effects = vec![
                use_recovery_code(&u, 1, at),
                Effect::InsertSession(session(&t, &u, i, at)),
            ];
            apply(&s, &t, effects, at).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e, STATE_CHANGED),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(left(&s, &u).await, 1);
    assert_eq!(s.sessions_of(u.id).await.unwrap().len(), 1, "one session");
    assert_eq!(audit_trail(&s, &t, "login.test").await.len(), 2);
}

pub async fn a_full_budget_throttles_even_a_right_code_uncharged(s: DynStore) {
    let (t, u) = setup(&s).await;
    enrol(&s, &t, sms_factor(&t, &u, "fac_s", FactorStatus::Active)).await;
    let ip = budget("fail_ip:192.0.2.1", 3);
    let now = 10 * HOUR;
    for i in 0..3 {
        assert_eq!(
            s.attempt(with_budgets(attempt(now + i, None, 1), vec![ip.clone()]))
                .await
                .unwrap(),
            rejected(RejectReason::WrongCode)
        );
    }
    assert_eq!(s.counts(vec![ip.clone()], now).await.unwrap(), vec![3]);
    assert_eq!(failures(&s, &u, "fac_a").await, 3);
    // Full: a right step is refused unjudged: not consumed, not charged, not counted.
    assert_eq!(
        s.attempt(with_budgets(
            attempt(now + 10, Some(50), 1),
            vec![ip.clone()]
        ))
        .await
        .unwrap(),
        rejected(RejectReason::Throttled)
    );
    let f = factor_by_id(&s, &u, "fac_a").await.unwrap();
    assert_eq!((f.failures, f.last_step), (3, -1));
    assert_eq!(last_totp_audit(&s).await, row("denied", Some("throttled")));
    // The same for a one-time code, which stays usable.
    issue_code(&s, verify_code(&t, &u, 7, now)).await;
    let mut c = verify(&t, &u, 7, now + 20);
    c.budgets = vec![ip.clone()];
    assert_eq!(consume_code(&s, c).await, rejected(RejectReason::Throttled));
    assert_eq!(failures(&s, &u, "fac_s").await, 0);
    assert_eq!(
        audit_trail(&s, &t, "code.verify").await[0],
        row("denied", Some("throttled"))
    );
    assert_eq!(s.counts(vec![ip.clone()], now).await.unwrap(), vec![3]);
    // Under another budget (another address) the same step and code pass; a success counts
    // nothing.
    assert_eq!(
        s.attempt(attempt(now + 30, Some(50), 1)).await.unwrap(),
        accepted()
    );
    let other = budget("fail_ip:198.51.100.7", 3);
    let mut c = verify(&t, &u, 7, now + 31);
    c.budgets = vec![other.clone()];
    assert_eq!(consume_code(&s, c).await, accepted_by("fac_s"));
    assert_eq!(
        s.counts(vec![ip.clone(), other], now).await.unwrap(),
        vec![3, 0]
    );
    // The next window starts empty.
    assert_eq!(
        s.attempt(with_budgets(
            attempt(now + HOUR, Some(51), 1),
            vec![ip.clone()]
        ))
        .await
        .unwrap(),
        accepted()
    );
    assert_eq!(s.counts(vec![ip], now + HOUR).await.unwrap(), vec![0]);
}

pub async fn judged_failures_count_in_every_budget(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    let ip = budget("fail_ip:192.0.2.1", 100);
    let per_tenant = budget(&format!("fail_tenant:{}", t.id), 100);
    let both = vec![ip.clone(), per_tenant.clone()];
    let now = 10 * HOUR;
    let code = |c: u8, at: i64| {
        let mut k = verify(&t, &u, c, at);
        k.budgets = both.clone();
        k
    };
    // Rejections about the code itself count, whatever they are; a success does not.
    assert_eq!(
        consume_code(&s, code(7, now)).await,
        rejected(RejectReason::NoCode)
    );
    issue_code(&s, verify_code(&t, &u, 7, now)).await;
    assert_eq!(
        consume_code(&s, code(8, now + 1)).await,
        rejected(RejectReason::WrongCode)
    );
    assert_eq!(
        consume_code(&s, code(7, now + 2)).await,
        accepted_by("fac_s")
    );
    assert_eq!(
        consume_code(&s, code(7, now + 3)).await,
        rejected(RejectReason::Replayed)
    );
    issue_code(&s, verify_code(&t, &u, 9, now + COOLDOWN)).await;
    assert_eq!(
        consume_code(&s, code(9, now + COOLDOWN + TTL)).await,
        rejected(RejectReason::Expired)
    );
    assert_eq!(s.counts(both.clone(), now).await.unwrap(), vec![4, 4]);
    // A code for something that is no factor (a proposal) counts too.
    let mut k = consume(&t, &u, "prp_1", CodePurpose::AdminConfirm, 1, now + 4);
    k.budgets = both.clone();
    assert_eq!(consume_code(&s, k).await, rejected(RejectReason::NoCode));
    // A wrong TOTP code counts.
    enrol(&s, &t, factor(&t, &u, "fac_a", FactorStatus::Active)).await;
    assert_eq!(
        s.attempt(with_budgets(attempt(now + 5, None, 1), both.clone()))
            .await
            .unwrap(),
        rejected(RejectReason::WrongCode)
    );
    assert_eq!(s.counts(both.clone(), now).await.unwrap(), vec![6, 6]);
    // Refusals by a factor's own lock or backoff judge nothing and count nothing.
    let bob = user(&s, &t, "bob").await;
    let locked = Factor {
        failures: LOCK_AFTER,
        locked_at: Some(1),
        ..sms_factor(&t, &bob, "fac_locked", FactorStatus::Active)
    };
    let blocked = Factor {
        failures: BACKOFF_AFTER,
        blocked_until: Some(now + HOUR),
        ..factor(&t, &bob, "fac_blocked", FactorStatus::Active)
    };
    enrol(&s, &t, locked).await;
    enrol(&s, &t, blocked).await;
    let mut k = consume(&t, &bob, "fac_locked", CodePurpose::Verify, 5, now + 6);
    k.budgets = both.clone();
    assert_eq!(consume_code(&s, k).await, rejected(RejectReason::Locked));
    for (a, why) in [
        (
            attempt_on("fac_locked", now + 7, Some(9)),
            RejectReason::Locked,
        ),
        (
            attempt_on("fac_blocked", now + 8, Some(9)),
            RejectReason::Throttled,
        ),
        (
            attempt_on("fac_blocked", now + 9, None),
            RejectReason::Throttled,
        ),
    ] {
        assert_eq!(
            s.attempt(with_budgets(a, both.clone())).await.unwrap(),
            rejected(why)
        );
    }
    assert_eq!(s.counts(both.clone(), now).await.unwrap(), vec![6, 6]);
    // CountFailure counts one in each window, unchecked; counts() reads them in order, an
    // unused limit or another window as zero.
    applied(
        &s,
        &t,
        vec![Effect::CountFailure {
            limits: vec![per_tenant.clone(), per_tenant.clone()],
            at: now + 10,
        }],
        now + 10,
    )
    .await;
    let unused = budget("fail_ip:203.0.113.9", 1);
    assert_eq!(
        s.counts(vec![per_tenant.clone(), unused, ip.clone()], now)
            .await
            .unwrap(),
        vec![8, 0, 6]
    );
    assert_eq!(
        s.counts(vec![per_tenant, ip], now - 1).await.unwrap(),
        vec![0, 0]
    );
}

/// Failures of many users against one shared budget, all at once: exactly `max` are judged and
/// counted, the rest are refused unjudged (exact on both backends: see `budgets_full`).
pub async fn parallel_failures_stay_within_a_budget(s: DynStore) {
    const USERS: usize = 30;
    const MAX: u32 = 10;
    let t = tenant(&s, "acme").await;
    let mut users = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let u = user(&s, &t, &format!("u{i}")).await;
        enrol(
            &s,
            &t,
            factor(&t, &u, &format!("fac_{i}"), FactorStatus::Active),
        )
        .await;
        users.push(u);
    }
    let shared = budget(&format!("fail_tenant:{}", t.id), MAX);
    let now = 10 * HOUR;
    let mut tasks = Vec::new();
    for i in 0..USERS {
        let (s, shared) = (s.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            let a = attempt_on(&format!("fac_{i}"), now + i as i64, None);
            s.attempt(with_budgets(a, vec![shared])).await
        }));
    }
    let (mut wrong, mut throttled) = (0, 0);
    for task in tasks {
        match task.await.unwrap().unwrap() {
            AttemptOutcome::Rejected {
                reason: RejectReason::WrongCode,
            } => wrong += 1,
            AttemptOutcome::Rejected {
                reason: RejectReason::Throttled,
            } => throttled += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((wrong, throttled), (MAX, USERS as u32 - MAX));
    assert_eq!(
        s.counts(vec![shared], now).await.unwrap(),
        vec![i64::from(MAX)]
    );
    let mut charged = 0;
    for (i, u) in users.iter().enumerate() {
        charged += failures(&s, u, &format!("fac_{i}")).await;
    }
    assert_eq!(
        charged, MAX as i32,
        "only the counted failures were charged"
    );
}

pub async fn backoff_effects_ride_on_the_fifth_totp_failure_only(s: DynStore) {
    let (t, u) = setup(&s).await;
    let fail = |now: i64| {
        let mut a = attempt(now, None, 1);
        a.on_backoff = vec![
            Effect::Enqueue(notice(&t, &u, now)),
            Effect::Audit(audit("backoff.test", Some(t.id), now)),
        ];
        a
    };
    let mut now = 10_000;
    for _ in 1..BACKOFF_AFTER {
        assert_eq!(
            s.attempt(fail(now)).await.unwrap(),
            rejected(RejectReason::WrongCode)
        );
        assert!(messages(&s, &t).await.is_empty());
    }
    assert_eq!(
        s.attempt(fail(now)).await.unwrap(),
        rejected(RejectReason::WrongCode)
    );
    assert_eq!(messages(&s, &t).await.len(), 1);
    assert_eq!(audit_trail(&s, &t, "backoff.test").await.len(), 1);
    assert_eq!(the_factor(&s, &u).await.blocked_until, Some(now + 1_000));
    // While blocked: refused unjudged, nothing applied.
    assert_eq!(
        s.attempt(fail(now + 1)).await.unwrap(),
        rejected(RejectReason::Throttled)
    );
    // Later failures lengthen the backoff; they do not start it.
    now += MAX_BACKOFF_MS;
    s.attempt(fail(now)).await.unwrap();
    assert_eq!(the_factor(&s, &u).await.failures, BACKOFF_AFTER + 1);
    assert_eq!(messages(&s, &t).await.len(), 1);
    // A success ends the streak: the next fifth failure starts a new backoff and says so.
    now += MAX_BACKOFF_MS;
    assert_eq!(
        s.attempt(attempt(now, Some(50), 1)).await.unwrap(),
        accepted()
    );
    for _ in 0..BACKOFF_AFTER {
        s.attempt(fail(now)).await.unwrap();
    }
    assert_eq!(messages(&s, &t).await.len(), 2);
    assert_eq!(audit_trail(&s, &t, "backoff.test").await.len(), 2);
}

pub async fn backoff_effects_ride_on_the_fifth_code_failure_only(s: DynStore) {
    let (t, u) = setup_with(&s, |t, u| Factor {
        failures: BACKOFF_AFTER - 1,
        ..sms_factor(t, u, "fac_s", FactorStatus::Active)
    })
    .await;
    issue_code(&s, verify_code(&t, &u, 7, 1_000)).await;
    // The effects are part of the attempt: one failing undoes the charge with it.
    let mut c = verify(&t, &u, 8, 2_000);
    c.on_backoff = vec![Effect::DeleteFactor {
        factor_id: "fac_missing".into(),
    }];
    assert_eq!(s.consume_code(c).await, Err(STATE_CHANGED));
    assert_eq!(failures(&s, &u, "fac_s").await, BACKOFF_AFTER - 1);
    let mut c = verify(&t, &u, 8, 2_000);
    c.on_backoff = vec![
        Effect::Enqueue(notice(&t, &u, 2_000)),
        Effect::SetFrozen {
            user_id: u.id,
            frozen_at: Some(2_000),
        },
    ];
    assert_eq!(consume_code(&s, c).await, rejected(RejectReason::WrongCode));
    let f = factor_by_id(&s, &u, "fac_s").await.unwrap();
    assert_eq!((f.failures, f.blocked_until), (BACKOFF_AFTER, Some(3_000)));
    assert_eq!(messages(&s, &t).await.len(), 2, "the code and the notice");
    assert_eq!(the_user(&s, &u).await.frozen_at, Some(2_000));
    for (at, why) in [
        (2_500, RejectReason::Throttled),
        (10_000, RejectReason::WrongCode),
    ] {
        let mut c = verify(&t, &u, 8, at);
        c.on_backoff = vec![Effect::Enqueue(notice(&t, &u, at))];
        assert_eq!(consume_code(&s, c).await, rejected(why));
    }
    assert_eq!(failures(&s, &u, "fac_s").await, BACKOFF_AFTER + 1);
    assert_eq!(messages(&s, &t).await.len(), 2, "one backoff, one notice");
}

pub async fn lock_effects_are_applied_once_at_the_lock(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    for id in ["fac_a", "fac_b"] {
        enrol(
            &s,
            &t,
            nearly_locked(factor(&t, &u, id, FactorStatus::Active)),
        )
        .await;
    }
    let on_lock = |now: i64| {
        vec![
            Effect::Enqueue(notice(&t, &u, now)),
            Effect::SetFrozen {
                user_id: u.id,
                frozen_at: Some(now),
            },
            Effect::Audit(audit("lock.test", Some(t.id), now)),
        ]
    };
    // One attempt locking two factors applies the effects once.
    let mut a = attempt(1_000, None, 1);
    a.factors.push(FactorRef {
        id: "fac_b".into(),
        version: 1,
    });
    a.on_lock = on_lock(1_000);
    assert_eq!(
        s.attempt(a).await.unwrap(),
        rejected(RejectReason::WrongCode)
    );
    for id in ["fac_a", "fac_b"] {
        assert_eq!(
            factor_by_id(&s, &u, id).await.unwrap().locked_at,
            Some(1_000)
        );
    }
    assert_eq!(audit_trail(&s, &t, "lock.test").await.len(), 1);
    assert_eq!(messages(&s, &t).await.len(), 1);
    assert_eq!(the_user(&s, &u).await.frozen_at, Some(1_000));
    // Already locked: nothing more.
    let mut a = attempt(2_000, Some(5), 1);
    a.on_lock = on_lock(2_000);
    assert_eq!(s.attempt(a).await.unwrap(), rejected(RejectReason::Locked));
    assert_eq!(audit_trail(&s, &t, "lock.test").await.len(), 1);
    assert_eq!(messages(&s, &t).await.len(), 1);
    assert_eq!(the_user(&s, &u).await.frozen_at, Some(1_000));
}

pub async fn all_factors_go_with_their_codes_and_recovery_codes(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    enrol(&s, &t, factor(&t, &u, "fac_a", FactorStatus::Active)).await;
    let bob = user(&s, &t, "bob").await;
    enrol(&s, &t, factor(&t, &bob, "fac_b", FactorStatus::Active)).await;
    issue_code(&s, verify_code(&t, &u, 7, 1_000)).await;
    applied(
        &s,
        &t,
        vec![
            Effect::StartPhoneChange(phone_change(&t, &u, "pcg_1", "fac_s", 1_000)),
            recovery_codes(&t, &u, &[1, 2, 3], 1_000),
            recovery_codes(&t, &bob, &[1, 2], 1_000),
        ],
        1_000,
    )
    .await;
    applied(
        &s,
        &t,
        vec![Effect::DeleteAllFactors { user_id: u.id }],
        2_000,
    )
    .await;
    assert!(s.factors_of(u.id).await.unwrap().is_empty());
    assert_eq!(left(&s, &u).await, 0);
    assert_eq!(s.phone_change("pcg_1").await.unwrap(), None);
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, 2_100)).await,
        rejected(RejectReason::NoCode),
        "the code went with its factor"
    );
    // Another user's are untouched; with nothing left, deleting again is no error.
    assert_eq!(s.factors_of(bob.id).await.unwrap().len(), 1);
    assert_eq!(left(&s, &bob).await, 2);
    applied(
        &s,
        &t,
        vec![Effect::DeleteAllFactors { user_id: u.id }],
        3_000,
    )
    .await;
    enrol(&s, &t, factor(&t, &u, "fac_a", FactorStatus::Pending)).await;
}

pub async fn a_removed_factor_is_restored_once_as_it_was(s: DynStore) {
    let (t, u) = setup(&s).await;
    let back = Factor {
        last_step: 99,
        drift: 1,
        version: 7,
        confirmed_at: Some(50),
        ..the_factor(&s, &u).await
    };
    applied(
        &s,
        &t,
        vec![Effect::DeleteFactor {
            factor_id: "fac_a".into(),
        }],
        100,
    )
    .await;
    applied(&s, &t, vec![Effect::RestoreFactor(back.clone())], 200).await;
    assert_eq!(s.factors_of(u.id).await.unwrap(), vec![back.clone()]);
    assert_eq!(
        apply(&s, &t, vec![Effect::RestoreFactor(back.clone())], 300).await,
        Err(STATE_CHANGED),
        "a factor with its id exists"
    );
    // The cap on enrolment does not hold a factor back that was counted when enrolled.
    s.insert_factor(
        factor(&t, &u, "fac_2", FactorStatus::Active),
        2,
        audit("factor.enrol", Some(t.id), 3),
    )
    .await
    .unwrap();
    assert_eq!(
        s.insert_factor(
            factor(&t, &u, "fac_3", FactorStatus::Active),
            2,
            audit("factor.enrol", Some(t.id), 3),
        )
        .await,
        Err(StoreError::Conflict("too_many_factors"))
    );
    let third = Factor {
        id: "fac_3".into(),
        created_at: 4,
        ..back
    };
    applied(&s, &t, vec![Effect::RestoreFactor(third)], 400).await;
    assert_eq!(s.factors_of(u.id).await.unwrap().len(), 3);
}

pub async fn a_phone_is_restored_only_while_it_is_expected(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    let restore = || Effect::RestorePhone {
        factor_id: "fac_s".into(),
        expected: NEW_PHONE.into(),
        phone: PHONE.into(),
    };
    assert_eq!(
        apply(&s, &t, vec![restore()], 100).await,
        Err(STATE_CHANGED),
        "the number is not the one to undo"
    );
    applied(
        &s,
        &t,
        vec![Effect::SetDestination {
            factor_id: "fac_s".into(),
            destination: NEW_PHONE.into(),
        }],
        200,
    )
    .await;
    issue_code(&s, verify_code(&t, &u, 7, 1_000)).await;
    applied(&s, &t, vec![restore()], 2_000).await;
    let f = factor_by_id(&s, &u, "fac_s").await.unwrap();
    assert_eq!((f.destination.as_deref(), f.version), (Some(PHONE), 3));
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, 2_100)).await,
        rejected(RejectReason::NoCode),
        "a code sent to the replaced number dies"
    );
    assert_eq!(
        apply(&s, &t, vec![restore()], 3_000).await,
        Err(STATE_CHANGED)
    );
    let missing = Effect::RestorePhone {
        factor_id: "fac_missing".into(),
        expected: PHONE.into(),
        phone: NEW_PHONE.into(),
    };
    assert_eq!(
        apply(&s, &t, vec![missing], 3_000).await,
        Err(STATE_CHANGED)
    );
}

fn revert_link(t: &Tenant, u: &User, n: u32, at: i64) -> RevertLink {
    RevertLink {
        id: format!("rvt_{n}"),
        token_hash: token("rvt", n),
        tenant_id: t.id,
        user_id: u.id,
        undo: r#"{"kind":"nothing"}"#.into(),
        change: "A sign-in used a recovery code".into(),
        created_at: at,
        expires_at: at + REVERT_TTL_MS,
        used_at: None,
    }
}

fn use_link(n: u32, at: i64) -> Effect {
    Effect::UseRevertLink {
        id: format!("rvt_{n}"),
        at,
    }
}

pub async fn revert_links_are_single_use_until_expiry_then_pruned(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    let (l1, l2, l3) = (
        revert_link(&t, &u, 1, 1_000),
        revert_link(&t, &u, 2, 2_000),
        revert_link(&t, &u, 3, 3 * DAY),
    );
    for l in [&l1, &l2, &l3] {
        applied(
            &s,
            &t,
            vec![Effect::InsertRevertLink(l.clone())],
            l.created_at,
        )
        .await;
    }
    assert_eq!(
        s.revert_link(&l1.token_hash).await.unwrap(),
        Some(l1.clone())
    );
    assert_eq!(s.revert_link(&token("rvt", 9)).await.unwrap(), None);
    assert_eq!(
        apply(&s, &t, vec![Effect::InsertRevertLink(l1.clone())], 1_000).await,
        Err(StoreError::Conflict("revert_link_exists"))
    );
    // Dead at its expiry; single use before.
    assert_eq!(
        apply(&s, &t, vec![use_link(1, l1.expires_at)], l1.expires_at).await,
        Err(STATE_CHANGED)
    );
    applied(&s, &t, vec![use_link(1, 5_000)], 5_000).await;
    assert_eq!(
        s.revert_link(&l1.token_hash)
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(5_000)
    );
    for spent in [use_link(1, 5_001), use_link(9, 5_001)] {
        assert_eq!(apply(&s, &t, vec![spent], 5_001).await, Err(STATE_CHANGED));
    }
    // Kept for a day after expiry, used or not.
    let now = l2.expires_at + DAY;
    assert_eq!(s.prune_messaging(0, now - 1).await.unwrap(), 1);
    assert_eq!(s.revert_link(&l1.token_hash).await.unwrap(), None);
    assert!(s.revert_link(&l2.token_hash).await.unwrap().is_some());
    assert_eq!(s.prune_messaging(0, now).await.unwrap(), 1);
    assert_eq!(s.revert_link(&l2.token_hash).await.unwrap(), None);
    assert_eq!(s.revert_link(&l3.token_hash).await.unwrap(), Some(l3));
}

fn app_password(t: &Tenant, u: &User, n: u32, at: i64) -> AppPassword {
    AppPassword {
        id: format!("apw_{n}"),
        token_hash: token("apw", n),
        tenant_id: t.id,
        user_id: u.id,
        client_id: "mail".into(),
        label: format!("Mail on device {n}"),
        generation: u.generation,
        created_at: at,
        last_used_at: None,
        revoked_at: None,
    }
}

pub async fn app_passwords_round_trip_touch_and_revoke_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let alice = user(&s, &t, "alice").await;
    let bob = user(&s, &t, "bob").await;
    let (p1, p2, p3) = (
        app_password(&t, &alice, 1, 10),
        app_password(&t, &alice, 2, 20),
        app_password(&t, &bob, 3, 15),
    );
    let inserts = vec![
        Effect::InsertAppPassword(p1.clone()),
        Effect::InsertAppPassword(p2.clone()),
        Effect::InsertAppPassword(p3.clone()),
    ];
    applied(&s, &t, inserts, 20).await;
    assert_eq!(
        apply(&s, &t, vec![Effect::InsertAppPassword(p1.clone())], 30).await,
        Err(StoreError::Conflict("app_password_exists"))
    );
    assert_eq!(
        s.app_password(&p1.token_hash).await.unwrap(),
        Some(p1.clone())
    );
    assert_eq!(s.app_password(&token("apw", 9)).await.unwrap(), None);
    assert_eq!(
        s.app_passwords_of(alice.id).await.unwrap(),
        vec![p2.clone(), p1.clone()]
    );
    assert_eq!(s.app_passwords_of(bob.id).await.unwrap(), vec![p3]);
    // Touching moves last use forward only.
    let touch = |at: i64| Effect::TouchAppPassword {
        id: "apw_1".into(),
        at,
    };
    applied(&s, &t, vec![touch(50)], 50).await;
    applied(&s, &t, vec![touch(40)], 50).await;
    assert_eq!(
        s.app_password(&p1.token_hash)
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(50)
    );
    let missing = Effect::TouchAppPassword {
        id: "apw_9".into(),
        at: 60,
    };
    assert_eq!(apply(&s, &t, vec![missing], 60).await, Err(STATE_CHANGED));
    // Only its own user revokes it, once; a revoked one cannot be used.
    let revoke = |u: &User, at: i64| Effect::RevokeAppPassword {
        id: "apw_1".into(),
        user_id: u.id,
        at,
    };
    assert_eq!(
        apply(&s, &t, vec![revoke(&bob, 70)], 70).await,
        Err(STATE_CHANGED)
    );
    assert_eq!(
        s.app_password(&p1.token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
    applied(&s, &t, vec![revoke(&alice, 80)], 80).await;
    for again in [revoke(&alice, 90), touch(90)] {
        assert_eq!(apply(&s, &t, vec![again], 90).await, Err(STATE_CHANGED));
    }
    let listed = s.app_passwords_of(alice.id).await.unwrap();
    assert_eq!(listed.len(), 2, "revoked ones are listed");
    assert_eq!(
        (listed[1].revoked_at, listed[1].last_used_at),
        (Some(80), Some(50))
    );
}

fn login_record(t: &Tenant, u: &User, at: i64, n: u8) -> LoginRecord {
    LoginRecord {
        tenant_id: t.id,
        user_id: u.id,
        at,
        ip: Some(format!("192.0.2.{n}")),
        network: Some("192.0.2.0/24".into()),
        country: Some("AU".into()),
        lat_e4: to_e4(-33.8688),
        lon_e4: to_e4(151.2093),
        device: Some(format!("dev_{n}")),
        ua_family: Some("Firefox".into()),
        generation: i64::from(n),
    }
}

pub async fn login_history_is_newest_first_and_pruned_by_age(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let alice = user(&s, &t, "alice").await;
    let bob = user(&s, &t, "bob").await;
    let r100 = login_record(&t, &alice, 100, 1);
    let r200a = login_record(&t, &alice, 200, 2);
    let r200b = LoginRecord {
        ip: None,
        network: None,
        country: None,
        lat_e4: None,
        lon_e4: None,
        device: None,
        ua_family: None,
        ..login_record(&t, &alice, 200, 3)
    };
    let r300 = login_record(&t, &alice, 300, 4);
    let bobs = login_record(&t, &bob, 150, 5);
    for r in [&r100, &r200a, &r200b, &bobs, &r300] {
        applied(&s, &t, vec![Effect::InsertLoginRecord(r.clone())], r.at).await;
    }
    assert_eq!(r100.lat_e4, Some(-338_688));
    assert_eq!(
        s.login_history(alice.id, 0, 10).await.unwrap(),
        vec![r300.clone(), r200b.clone(), r200a.clone(), r100.clone()],
        "newest first; the same millisecond in reverse insertion order"
    );
    assert_eq!(
        s.login_history(alice.id, 200, 10).await.unwrap(),
        vec![r300.clone(), r200b.clone(), r200a.clone()]
    );
    assert_eq!(
        s.login_history(alice.id, 0, 2).await.unwrap(),
        vec![r300.clone(), r200b.clone()]
    );
    assert_eq!(s.login_history(bob.id, 0, 10).await.unwrap(), vec![bobs]);
    assert_eq!(s.prune_login_history(200).await.unwrap(), 2);
    assert_eq!(
        s.login_history(alice.id, 0, 10).await.unwrap(),
        vec![r300, r200b, r200a]
    );
    assert!(s.login_history(bob.id, 0, 10).await.unwrap().is_empty());
    assert_eq!(s.prune_login_history(200).await.unwrap(), 0);
}

pub async fn the_freeze_round_trips_on_the_user(s: DynStore) {
    let (t, u) = setup(&s).await;
    assert_eq!(u.frozen_at, None);
    applied(
        &s,
        &t,
        vec![Effect::SetFrozen {
            user_id: u.id,
            frozen_at: Some(5_000),
        }],
        5_000,
    )
    .await;
    let frozen = the_user(&s, &u).await;
    assert_eq!(frozen.frozen_at, Some(5_000));
    assert_eq!(s.user_by_id(u.id).await.unwrap(), Some(frozen.clone()));
    assert_eq!(
        s.user_with_factors(t.id, "alice").await.unwrap(),
        Some((frozen.clone(), vec![the_factor(&s, &u).await]))
    );
    assert_eq!(s.list_users(t.id, None, 10).await.unwrap(), vec![frozen]);
    applied(
        &s,
        &t,
        vec![Effect::SetFrozen {
            user_id: u.id,
            frozen_at: None,
        }],
        6_000,
    )
    .await;
    assert_eq!(the_user(&s, &u).await.frozen_at, None);
    let missing = Effect::SetFrozen {
        user_id: u.id + 1_000,
        frozen_at: Some(1),
    };
    assert_eq!(
        apply(&s, &t, vec![missing], 7_000).await,
        Err(STATE_CHANGED)
    );
}

pub async fn a_sensitive_code_confirms_only_its_purpose(s: DynStore) {
    let (t, u) = sms_setup(&s).await;
    issue_code(&s, verify_code(&t, &u, 7, 1_000)).await;
    issue_code(&s, issue(&t, &u, "fac_s", CodePurpose::Sensitive, 8, 1_000)).await;
    let sensitive = |code: u8, at: i64| consume(&t, &u, "fac_s", CodePurpose::Sensitive, code, at);
    assert_eq!(
        consume_code(&s, sensitive(7, 2_000)).await,
        rejected(RejectReason::WrongCode)
    );
    assert_eq!(
        consume_code(&s, sensitive(8, 2_001)).await,
        accepted_by("fac_s")
    );
    assert_eq!(
        consume_code(&s, verify(&t, &u, 7, 2_002)).await,
        accepted_by("fac_s")
    );
}

pub async fn guards_reservations_and_expiries_hold(s: DynStore) {
    let (t, u) = setup(&s).await;
    // The freeze guard: passes while unfrozen, fails (and rolls back) once frozen.
    applied(
        &s,
        &t,
        vec![Effect::RequireNotFrozen { user_id: u.id }],
        1_000,
    )
    .await;
    let freeze = Effect::SetFrozen {
        user_id: u.id,
        frozen_at: Some(2_000),
    };
    applied(&s, &t, vec![freeze], 2_000).await;
    let guarded = vec![
        Effect::RequireNotFrozen { user_id: u.id },
        recovery_codes(&t, &u, &[1, 2], 3_000),
    ];
    assert_eq!(apply(&s, &t, guarded, 3_000).await, Err(STATE_CHANGED));
    assert_eq!(left(&s, &u).await, 0);

    // Recovery codes made at or after a time go; older ones stay.
    applied(&s, &t, vec![recovery_codes(&t, &u, &[1, 2], 4_000)], 4_000).await;
    let since = |at| Effect::DeleteRecoveryCodesSince {
        user_id: u.id,
        since: at,
    };
    applied(&s, &t, vec![since(4_001)], 5_000).await;
    assert_eq!(left(&s, &u).await, 2);
    applied(&s, &t, vec![since(4_000)], 5_000).await;
    assert_eq!(left(&s, &u).await, 0);

    // Expiring a user's links marks only their unused ones.
    let (l1, l2) = (revert_link(&t, &u, 1, 1_000), revert_link(&t, &u, 2, 1_000));
    for l in [&l1, &l2] {
        applied(&s, &t, vec![Effect::InsertRevertLink(l.clone())], 1_000).await;
    }
    applied(&s, &t, vec![use_link(1, 1_500)], 1_500).await;
    let expire = Effect::ExpireRevertLinks {
        user_id: u.id,
        at: 6_000,
    };
    applied(&s, &t, vec![expire], 6_000).await;
    let used = |l: &RevertLink| {
        let s = s.clone();
        let h = l.token_hash.clone();
        async move { s.revert_link(&h).await.unwrap().unwrap().used_at }
    };
    assert_eq!(
        (used(&l1).await, used(&l2).await),
        (Some(1_500), Some(6_000))
    );

    // Reservations: counted only while there is room; a refund gives one back.
    let b = vec![budget("fail-x:1", 2)];
    let charge = || Effect::ChargeBudgets {
        limits: b.clone(),
        at: 7_000,
    };
    applied(&s, &t, vec![charge()], 7_000).await;
    applied(&s, &t, vec![charge()], 7_000).await;
    assert_eq!(
        apply(&s, &t, vec![charge()], 7_000).await,
        Err(STATE_CHANGED)
    );
    assert_eq!(s.counts(b.clone(), 7_000).await.unwrap(), vec![2]);
    let refund = Effect::RefundBudgets {
        limits: b.clone(),
        at: 7_000,
    };
    applied(&s, &t, vec![refund.clone()], 7_000).await;
    assert_eq!(s.counts(b.clone(), 7_000).await.unwrap(), vec![1]);
    // Parallel reservations never pass the maximum.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (s, t, effect) = (s.clone(), t.clone(), charge());
        tasks.push(tokio::spawn(async move {
            apply(&s, &t, vec![effect], 7_000).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += usize::from(task.await.unwrap().is_ok());
    }
    assert_eq!(ok, 1);
    assert_eq!(s.counts(b.clone(), 7_000).await.unwrap(), vec![2]);
    // A refund never goes below zero.
    let other = vec![budget("fail-x:2", 2)];
    let refund = Effect::RefundBudgets {
        limits: other.clone(),
        at: 7_000,
    };
    applied(&s, &t, vec![refund], 7_000).await;
    assert_eq!(s.counts(other, 7_000).await.unwrap(), vec![0]);
}
