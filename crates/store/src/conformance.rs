//! The conformance suite every [`Store`] must pass. Each check takes a fresh, empty, migrated
//! store; backends wire them up with [`conformance_tests!`](crate::conformance_tests).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use twofold_core::model::*;
use twofold_core::ports::*;
use twofold_core::throttle::{BACKOFF_AFTER, LOCK_AFTER, MAX_BACKOFF_MS};

mod jobs;
mod keys;
mod logins;
mod messaging;
mod oidc;
mod security;
mod vault;
mod webauthn;
pub use jobs::*;
pub use keys::*;
pub use logins::*;
pub use messaging::*;
pub use oidc::*;
pub use security::*;
pub use vault::*;
pub use webauthn::*;

pub type DynStore = Arc<dyn Store>;

fn audit(action: &str, tenant_id: Option<i64>, at: i64) -> AuditRecord {
    AuditRecord {
        tenant_id,
        at,
        actor: "test".into(),
        action: action.into(),
        user_id: None,
        factor_id: None,
        outcome: "ok".into(),
        reason: None,
        ip: Some("192.0.2.1".into()),
        request_id: None,
    }
}

fn new_tenant(slug: &str, first_key: Option<ApiKey>) -> NewTenant {
    NewTenant {
        slug: slug.into(),
        name: "Acme Inc".into(),
        created_at: 1,
        first_key,
    }
}

async fn tenant(s: &DynStore, slug: &str) -> Tenant {
    s.create_tenant(new_tenant(slug, None), audit("tenant.create", None, 1))
        .await
        .unwrap()
}

async fn user(s: &DynStore, t: &Tenant, ext: &str) -> User {
    s.create_user(
        NewUser {
            tenant_id: t.id,
            external_id: ext.into(),
            email: Some(format!("{ext}@example.com")),
            phone: None,
            profile: None,
            is_admin: false,
            created_at: 2,
        },
        audit("user.create", Some(t.id), 2),
    )
    .await
    .unwrap()
}

fn factor(t: &Tenant, u: &User, id: &str, status: FactorStatus) -> Factor {
    Factor {
        id: id.into(),
        tenant_id: t.id,
        user_id: u.id,
        kind: "totp".into(),
        status,
        destination: None,
        label: None,
        credential_id: None,
        sealed_secret: vec![1, 2, 3],
        algorithm: "SHA1".into(),
        digits: 6,
        period: 30,
        last_step: -1,
        drift: 0,
        version: 1,
        failures: 0,
        blocked_until: None,
        locked_at: None,
        created_at: 3,
        confirmed_at: None,
        drift_hint: None,
    }
}

/// A tenant, a user and one active factor `fac_a`.
async fn setup(s: &DynStore) -> (Tenant, User) {
    let t = tenant(s, "acme").await;
    let u = user(s, &t, "alice").await;
    s.insert_factor(
        factor(&t, &u, "fac_a", FactorStatus::Active),
        10,
        audit("factor.enrol", Some(t.id), 3),
    )
    .await
    .unwrap();
    (t, u)
}

fn attempt(now: i64, step: Option<i64>, version: i64) -> Attempt {
    Attempt {
        factors: vec![FactorRef {
            id: "fac_a".into(),
            version,
        }],
        matched: step.map(|step| StepMatch {
            factor_id: "fac_a".into(),
            expected_version: version,
            expected_status: FactorStatus::Active,
            step,
            new_drift: 0,
            new_version: version,
            hint_dir: None,
        }),
        now,
        audit: audit("totp.verify", None, now),
        on_accept: Vec::new(),
        on_lock: Vec::new(),
        on_backoff: Vec::new(),
        budgets: Vec::new(),
    }
}

async fn the_factor(s: &DynStore, u: &User) -> Factor {
    s.factors_of(u.id).await.unwrap().remove(0)
}

fn rejected(r: RejectReason) -> AttemptOutcome {
    AttemptOutcome::Rejected { reason: r }
}

fn accepted() -> AttemptOutcome {
    AttemptOutcome::Accepted {
        factor_id: "fac_a".into(),
    }
}

pub async fn tenants_are_unique_and_audited(s: DynStore) {
    let t = tenant(&s, "acme").await;
    assert_eq!(s.tenant_by_slug("acme").await.unwrap(), Some(t.clone()));
    assert_eq!(s.tenant_by_slug("nope").await.unwrap(), None);
    let key = ApiKey {
        key_id: "k1".into(),
        tenant_id: None,
        label: "default".into(),
        secret_hash: vec![1; 32],
        created_at: 5,
        revoked_at: None,
    };
    let dup = s
        .create_tenant(
            new_tenant("acme", Some(key.clone())),
            audit("tenant.create", None, 5),
        )
        .await;
    assert_eq!(dup, Err(StoreError::Conflict("tenant_exists")));
    assert_eq!(
        s.api_key("k1").await.unwrap(),
        None,
        "no key without its tenant"
    );
    let beta = s
        .create_tenant(
            new_tenant("beta", Some(key.clone())),
            audit("tenant.create", None, 6),
        )
        .await
        .unwrap();
    assert_eq!(
        s.api_key("k1").await.unwrap().unwrap().tenant_id,
        Some(beta.id),
        "the first key belongs to the new tenant"
    );
    let dup_key = s
        .create_tenant(
            new_tenant("gamma", Some(key)),
            audit("tenant.create", None, 7),
        )
        .await;
    assert_eq!(dup_key, Err(StoreError::Conflict("api_key_exists")));
    assert_eq!(
        s.tenant_by_slug("gamma").await.unwrap(),
        None,
        "all or nothing"
    );
    let events = s
        .list_audit(AuditQuery {
            tenant_id: Some(t.id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "the failed duplicate leaves no audit row");
    assert_eq!(events[0].record.action, "tenant.create");
}

pub async fn users_are_unique_per_tenant_and_paginate(s: DynStore) {
    let a = tenant(&s, "acme").await;
    let b = tenant(&s, "beta").await;
    let alice = user(&s, &a, "alice").await;
    user(&s, &b, "alice").await; // same external id, other tenant: fine
    let dup = s
        .create_user(
            NewUser {
                tenant_id: a.id,
                external_id: "alice".into(),
                email: None,
                phone: None,
                profile: None,
                is_admin: false,
                created_at: 9,
            },
            audit("user.create", Some(a.id), 9),
        )
        .await;
    assert_eq!(dup, Err(StoreError::Conflict("user_exists")));
    assert_eq!(s.user(a.id, "alice").await.unwrap(), Some(alice.clone()));
    assert_eq!(s.user(a.id, "bob").await.unwrap(), None);
    assert_eq!(
        s.user_with_factors(a.id, "alice").await.unwrap(),
        Some((alice.clone(), vec![]))
    );
    assert_eq!(s.user_with_factors(b.id, "nobody").await.unwrap(), None);
    for i in 0..5 {
        user(&s, &a, &format!("u{i}")).await;
    }
    let page1 = s.list_users(a.id, None, 4).await.unwrap();
    let page2 = s.list_users(a.id, Some(page1[3].id), 4).await.unwrap();
    assert_eq!(page1.len(), 4);
    assert_eq!(page2.len(), 2);
    assert_eq!(page1[0], alice);
    assert!(page1.iter().chain(&page2).all(|u| u.tenant_id == a.id));
}

pub async fn rollout_groups_count_users_by_profile_and_active_methods(s: DynStore) {
    use twofold_core::rollout::{MethodGroup, MethodSet};
    let a = tenant(&s, "acme").await;
    let b = tenant(&s, "beta").await;
    let mut users = Vec::new();
    for (ext, profile) in [
        ("ann", Some("admin")),
        ("bob", Some("admin")),
        ("cat", None),
        ("dan", None),
        ("eve", None),
    ] {
        let u = s
            .create_user(
                NewUser {
                    tenant_id: a.id,
                    external_id: ext.into(),
                    email: None,
                    phone: None,
                    profile: profile.map(str::to_string),
                    is_admin: false,
                    created_at: 2,
                },
                audit("user.create", Some(a.id), 2),
            )
            .await
            .unwrap();
        users.push(u);
    }
    let add = |u: &User, id: &str, kind: &str, status: FactorStatus| {
        let mut f = factor(&a, u, id, status);
        f.kind = kind.into();
        f
    };
    // ann: TOTP and SMS (twice: still one user); cat: email; dan: a pending TOTP only.
    for f in [
        add(&users[0], "f1", "totp", FactorStatus::Active),
        add(&users[0], "f2", "sms", FactorStatus::Active),
        add(&users[0], "f3", "sms", FactorStatus::Active),
        add(&users[2], "f4", "email", FactorStatus::Active),
        add(&users[3], "f5", "totp", FactorStatus::Pending),
    ] {
        s.insert_factor(f, 10, audit("factor.enrol", Some(a.id), 3))
            .await
            .unwrap();
    }
    // Another tenant's active factor and user count nowhere in acme's report.
    let stranger = user(&s, &b, "ann").await;
    s.insert_factor(
        factor(&b, &stranger, "f6", FactorStatus::Active),
        10,
        audit("factor.enrol", Some(b.id), 3),
    )
    .await
    .unwrap();

    let bits = |kinds: &[&str]| MethodSet::from_kinds(kinds.iter().copied());
    let mut groups = s.rollout_groups(a.id).await.unwrap();
    groups.sort_by_key(|g| (g.profile.clone(), g.methods.iter().collect::<Vec<_>>()));
    let group = |profile: Option<&str>, kinds: &[&str], users| MethodGroup {
        profile: profile.map(str::to_string),
        methods: bits(kinds),
        users,
    };
    assert_eq!(
        groups,
        vec![
            group(None, &[], 2),
            group(None, &["email"], 1),
            group(Some("admin"), &[], 1),
            group(Some("admin"), &["totp", "sms"], 1),
        ]
    );
    assert_eq!(s.rollout_groups(999_999).await.unwrap(), vec![]);

    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut methods = s.active_methods(a.id, &ids).await.unwrap();
    methods.sort();
    assert_eq!(
        methods,
        vec![
            (users[0].id, bits(&["totp", "sms"])),
            (users[2].id, bits(&["email"]))
        ]
    );
    // Only the ids asked for, even inside the id range; none from another tenant.
    assert_eq!(
        s.active_methods(a.id, &[users[1].id, users[3].id])
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        s.active_methods(a.id, &[stranger.id]).await.unwrap(),
        vec![]
    );
    assert_eq!(s.active_methods(a.id, &[]).await.unwrap(), vec![]);
}

pub async fn api_keys_store_hashes_and_revoke_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let key = ApiKey {
        key_id: "k1".into(),
        tenant_id: Some(t.id),
        label: "ci".into(),
        secret_hash: vec![7; 32],
        created_at: 4,
        revoked_at: None,
    };
    s.insert_api_key(key.clone(), audit("apikey.create", Some(t.id), 4))
        .await
        .unwrap();
    let op = ApiKey {
        key_id: "k0".into(),
        tenant_id: None,
        ..key.clone()
    };
    s.insert_api_key(op.clone(), audit("apikey.create", None, 4))
        .await
        .unwrap();
    assert_eq!(s.api_key("k1").await.unwrap(), Some(key.clone()));
    assert_eq!(s.list_api_keys(Some(t.id)).await.unwrap(), vec![key]);
    assert_eq!(s.list_api_keys(None).await.unwrap(), vec![op]);
    assert!(s
        .revoke_api_key("k1", 10, audit("apikey.revoke", Some(t.id), 10))
        .await
        .unwrap());
    assert!(!s
        .revoke_api_key("k1", 11, audit("apikey.revoke", Some(t.id), 11))
        .await
        .unwrap());
    assert_eq!(s.api_key("k1").await.unwrap().unwrap().revoked_at, Some(10));
}

pub async fn confirmation_activates_and_learns_drift(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    s.insert_factor(
        factor(&t, &u, "fac_a", FactorStatus::Pending),
        10,
        audit("factor.enrol", Some(t.id), 3),
    )
    .await
    .unwrap();
    // Confirming as if active is stale: the status is part of the condition.
    assert_eq!(
        s.attempt(attempt(100, Some(10), 1)).await.unwrap(),
        AttemptOutcome::Stale
    );
    let mut confirm = attempt(100, Some(10), 1);
    if let Some(m) = confirm.matched.as_mut() {
        m.expected_status = FactorStatus::Pending;
        m.new_drift = 1;
        m.new_version = 2;
    }
    assert_eq!(s.attempt(confirm).await.unwrap(), accepted());
    let (_, with) = s.user_with_factors(t.id, "alice").await.unwrap().unwrap();
    assert_eq!(with, s.factors_of(u.id).await.unwrap());
    let f = the_factor(&s, &u).await;
    assert_eq!(
        (f.status, f.last_step, f.drift, f.version, f.confirmed_at),
        (FactorStatus::Active, 10, 1, 2, Some(100))
    );
}

pub async fn the_factor_limit_holds_under_parallel_enrolment(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, t, u) = (s.clone(), t.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            s.insert_factor(
                factor(&t, &u, &format!("fac_{i}"), FactorStatus::Pending),
                5,
                audit("factor.enrol", Some(t.id), 3),
            )
            .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e, StoreError::Conflict("too_many_factors")),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(s.factors_of(u.id).await.unwrap().len(), 5);
    s.ping().await.unwrap();
}

pub async fn a_step_is_consumed_once(s: DynStore) {
    let (_, u) = setup(&s).await;
    assert_eq!(
        s.attempt(attempt(1000, Some(50), 1)).await.unwrap(),
        accepted()
    );
    assert_eq!(
        s.attempt(attempt(1001, Some(50), 1)).await.unwrap(),
        rejected(RejectReason::Replayed)
    );
    assert_eq!(
        s.attempt(attempt(1002, Some(49), 1)).await.unwrap(),
        rejected(RejectReason::Replayed)
    );
    assert_eq!(
        s.attempt(attempt(1003, Some(51), 1)).await.unwrap(),
        accepted()
    );
    assert_eq!(
        the_factor(&s, &u).await.failures,
        0,
        "success resets failures"
    );
}

pub async fn parallel_uses_of_one_step_succeed_once(s: DynStore) {
    setup(&s).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.attempt(attempt(1000 + i, Some(77), 1)).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().unwrap() == accepted() {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
}

pub async fn failures_back_off_then_lock(s: DynStore) {
    let (t, u) = setup(&s).await;
    let mut now = 10_000;
    for _ in 0..BACKOFF_AFTER - 1 {
        assert_eq!(
            s.attempt(attempt(now, None, 1)).await.unwrap(),
            rejected(RejectReason::WrongCode)
        );
    }
    assert_eq!(the_factor(&s, &u).await.blocked_until, None);
    s.attempt(attempt(now, None, 1)).await.unwrap();
    let f = the_factor(&s, &u).await;
    assert_eq!(
        (f.failures, f.blocked_until),
        (BACKOFF_AFTER, Some(now + 1000))
    );
    // While blocked: a right code is refused and nothing more is counted.
    assert_eq!(
        s.attempt(attempt(now + 1, Some(5), 1)).await.unwrap(),
        rejected(RejectReason::Throttled)
    );
    assert_eq!(
        s.attempt(attempt(now + 1, None, 1)).await.unwrap(),
        rejected(RejectReason::Throttled)
    );
    assert_eq!(the_factor(&s, &u).await.failures, BACKOFF_AFTER);
    // Keep failing after each backoff until the hard lock.
    for _ in BACKOFF_AFTER..LOCK_AFTER {
        now += MAX_BACKOFF_MS;
        s.attempt(attempt(now, None, 1)).await.unwrap();
    }
    let f = the_factor(&s, &u).await;
    assert_eq!((f.failures, f.locked_at), (LOCK_AFTER, Some(now)));
    now += 10 * MAX_BACKOFF_MS;
    assert_eq!(
        s.attempt(attempt(now, Some(6), 1)).await.unwrap(),
        rejected(RejectReason::Locked)
    );
    let locks = s
        .list_audit(AuditQuery {
            action: Some("factor.lock".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(locks.len(), 1);
    assert!(s
        .unlock_factor("fac_a", audit("factor.unlock", Some(t.id), now), vec![])
        .await
        .unwrap());
    assert_eq!(
        s.attempt(attempt(now, Some(6), 1)).await.unwrap(),
        accepted()
    );
    assert!(!s
        .unlock_factor(
            "fac_missing",
            audit("factor.unlock", Some(t.id), now),
            vec![]
        )
        .await
        .unwrap());
}

pub async fn parallel_wrong_codes_stay_within_the_limit(s: DynStore) {
    let (_, u) = setup(&s).await;
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.attempt(attempt(5000, None, 1)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let f = the_factor(&s, &u).await;
    assert_eq!(
        f.failures, BACKOFF_AFTER,
        "attempts while blocked are not counted"
    );
    assert_eq!(
        s.attempt(attempt(5001, Some(1), 1)).await.unwrap(),
        rejected(RejectReason::Throttled)
    );
}

pub async fn stale_and_deleted_factors_are_never_accepted(s: DynStore) {
    let (t, u) = setup(&s).await;
    assert_eq!(
        s.attempt(attempt(100, Some(3), 7)).await.unwrap(),
        AttemptOutcome::Stale,
        "a cached copy with an old version must reload"
    );
    assert!(s
        .delete_factor("fac_a", None, audit("factor.delete", Some(t.id), 100), None)
        .await
        .unwrap());
    assert!(s.factors_of(u.id).await.unwrap().is_empty());
    assert_eq!(
        s.attempt(attempt(100, Some(3), 1)).await.unwrap(),
        AttemptOutcome::Stale
    );
    assert!(!s
        .delete_factor("fac_a", None, audit("factor.delete", Some(t.id), 100), None)
        .await
        .unwrap());
}

fn neighbour(now: i64, step: i64, dir: i32) -> Attempt {
    let mut a = attempt(now, Some(step), 1);
    if let Some(m) = a.matched.as_mut() {
        m.hint_dir = Some(dir);
        m.new_drift = dir;
        m.new_version = 2;
    }
    a
}

pub async fn drift_is_learned_on_use_only_from_two_codes(s: DynStore) {
    let (_, u) = setup(&s).await;
    // A lone code beyond the window is refused and remembered.
    assert_eq!(
        s.attempt(neighbour(100, 20, 1)).await.unwrap(),
        rejected(RejectReason::WrongCode)
    );
    assert_eq!(the_factor(&s, &u).await.drift_hint, Some((20, 1)));
    // The same step again, or the other direction, teaches nothing.
    assert_eq!(
        s.attempt(neighbour(101, 20, 1)).await.unwrap(),
        rejected(RejectReason::WrongCode)
    );
    assert_eq!(
        s.attempt(neighbour(102, 21, -1)).await.unwrap(),
        rejected(RejectReason::WrongCode)
    );
    assert_eq!(the_factor(&s, &u).await.drift_hint, Some((21, -1)));
    assert_eq!(
        s.attempt(neighbour(103, 22, 1)).await.unwrap(),
        rejected(RejectReason::WrongCode)
    );
    // A later code in the same direction within the horizon moves the drift.
    assert_eq!(s.attempt(neighbour(104, 24, 1)).await.unwrap(), accepted());
    let f = the_factor(&s, &u).await;
    assert_eq!(
        (f.drift, f.version, f.last_step, f.drift_hint),
        (1, 2, 24, None)
    );
    assert_eq!(f.failures, 0);
}

pub async fn a_drift_hint_expires_after_the_horizon(s: DynStore) {
    setup(&s).await;
    s.attempt(neighbour(100, 20, 1)).await.unwrap();
    assert_eq!(
        s.attempt(neighbour(101, 20 + twofold_core::totp::HINT_HORIZON + 1, 1))
            .await
            .unwrap(),
        rejected(RejectReason::WrongCode)
    );
}

pub async fn every_attempt_is_audited_with_its_reason(s: DynStore) {
    let (t, u) = setup(&s).await;
    let mut a = attempt(100, Some(3), 1);
    a.audit.tenant_id = Some(t.id);
    a.audit.user_id = Some(u.id);
    s.attempt(a.clone()).await.unwrap();
    s.attempt(a).await.unwrap();
    let events = s
        .list_audit(AuditQuery {
            tenant_id: Some(t.id),
            user_id: Some(u.id),
            action: Some("totp.verify".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.record.outcome.as_str(), e.record.reason.as_deref()))
        .collect();
    assert_eq!(got, vec![("denied", Some("replayed")), ("ok", None)]);
    assert_eq!(events[0].user_external_id.as_deref(), Some("alice"));
    // Cursor pagination, newest first.
    let older = s
        .list_audit(AuditQuery {
            tenant_id: Some(t.id),
            before_id: Some(events[0].id),
            action: Some("totp.verify".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].id, events[1].id);
}

pub async fn audit_is_pruned_by_age(s: DynStore) {
    let t = tenant(&s, "acme").await;
    for at in [10, 20, 30, 40] {
        s.append_audit(audit("x", Some(t.id), at)).await.unwrap();
    }
    assert_eq!(
        s.prune_audit(25).await.unwrap(),
        3,
        "tenant.create at 1 too"
    );
    let left = s
        .list_audit(AuditQuery {
            tenant_id: Some(t.id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        left.iter().map(|e| e.record.at).collect::<Vec<_>>(),
        vec![40, 30]
    );
}

/// Generates one `#[tokio::test]` per conformance check; `$make` is an expression (it may
/// `.await`) yielding a fresh [`DynStore`] and anything that must live as long as it (a temporary
/// directory, a database dropped at the end). The checks that need two handles on one database
/// (`two_handles_*`) are called by each backend's tests directly.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            tenants_are_unique_and_audited,
            users_are_unique_per_tenant_and_paginate,
            rollout_groups_count_users_by_profile_and_active_methods,
            api_keys_store_hashes_and_revoke_once,
            confirmation_activates_and_learns_drift,
            a_step_is_consumed_once,
            the_factor_limit_holds_under_parallel_enrolment,
            parallel_uses_of_one_step_succeed_once,
            failures_back_off_then_lock,
            parallel_wrong_codes_stay_within_the_limit,
            stale_and_deleted_factors_are_never_accepted,
            every_attempt_is_audited_with_its_reason,
            drift_is_learned_on_use_only_from_two_codes,
            a_drift_hint_expires_after_the_horizon,
            audit_is_pruned_by_age,
            a_code_is_accepted_once,
            wrong_tries_exhaust_a_code_until_it_expires,
            an_expired_code_is_refused,
            a_code_is_bound_to_purpose_user_factor_and_action,
            only_the_newest_code_is_valid,
            cooldown_refuses_and_a_refusal_changes_nothing,
            a_locked_factor_gets_no_code_and_a_blocked_one_is_not_charged,
            send_limits_refuse_until_their_window_ends,
            effects_are_applied_with_the_code,
            a_failed_effect_rolls_everything_back,
            a_phone_change_moves_step_by_step,
            code_failures_charge_the_factor_and_queue_one_lock_notice,
            a_totp_lock_queues_its_notice_once,
            totp_effects_ride_on_the_accepted_step,
            parallel_consumes_of_one_code_succeed_once,
            enqueue_is_all_or_nothing,
            claims_are_disjoint_and_oldest_first,
            an_expired_lease_is_reclaimed,
            retries_and_failures_go_where_they_belong,
            outbox_stats_and_listing_filter,
            prune_removes_finished_and_dead_rows,
            delete_and_unlock_queue_their_notices,
            tenant_messaging_settings_round_trip,
            factor_destination_round_trips,
            generation_and_skip_are_kept_on_the_user,
            admins_are_listed_per_tenant,
            policy_versions_move_one_at_a_time,
            a_new_proposal_supersedes_the_pending_one,
            a_proposal_moves_only_from_its_state_before_expiry,
            a_code_for_a_proposal_confirms_it_once,
            a_pending_login_completes_once,
            parallel_completions_mint_one_session,
            sessions_round_trip_and_revoke_once,
            devices_round_trip_and_revoke_once,
            webhooks_round_trip_per_tenant_and_delete_once,
            touch_moves_last_seen_forward_only,
            a_failed_apply_changes_nothing,
            jobs_are_due_from_run_at_until_done,
            a_job_advances_once_per_cursor,
            parallel_advances_from_one_cursor_succeed_once,
            revoking_sessions_without_2fa_spares_the_rest,
            the_admin_flag_round_trips,
            recovery_codes_are_replaced_and_used_once,
            parallel_uses_of_one_recovery_code_succeed_once,
            a_full_budget_throttles_even_a_right_code_uncharged,
            judged_failures_count_in_every_budget,
            parallel_failures_stay_within_a_budget,
            backoff_effects_ride_on_the_fifth_totp_failure_only,
            backoff_effects_ride_on_the_fifth_code_failure_only,
            lock_effects_are_applied_once_at_the_lock,
            all_factors_go_with_their_codes_and_recovery_codes,
            a_removed_factor_is_restored_once_as_it_was,
            a_phone_is_restored_only_while_it_is_expected,
            revert_links_are_single_use_until_expiry_then_pruned,
            app_passwords_round_trip_touch_and_revoke_once,
            login_history_is_newest_first_and_pruned_by_age,
            the_freeze_round_trips_on_the_user,
            a_sensitive_code_confirms_only_its_purpose,
            guards_reservations_and_expiries_hold,
            the_key_state_moves_one_version_at_a_time,
            parallel_key_state_changes_succeed_once,
            node_reports_replace_each_other_and_age_out,
            sealed_values_are_paged_by_key_in_every_column,
            a_reseal_changes_only_rows_that_still_hold_what_was_read,
            a_rotation_sweep_reseals_every_column_under_the_new_key,
            vault_entries_groups_and_tokens_round_trip_per_tenant,
            parallel_hotp_advances_take_distinct_counters,
            oidc_clients_round_trip_per_tenant,
            parallel_uses_of_one_hint_jti_succeed_once,
            parallel_exchanges_of_one_code_succeed_once,
            hosted_logins_round_trip_and_spent_state_is_pruned,
            a_rotation_sweep_reseals_oidc_secrets_and_signing_keys,
            a_security_key_round_trips_and_its_credential_is_registered_once,
            a_ceremony_is_spent_once_by_its_user_before_it_expires,
            a_key_gets_a_new_secret_and_a_lock_with_a_version_bump,
            webauthn_effects_ride_on_the_accepted_step,
            expired_ceremonies_are_pruned_and_live_ones_kept,
            a_security_key_counts_as_the_webauthn_method_in_rollouts,
            a_rotation_sweep_reseals_security_keys
        );
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}
