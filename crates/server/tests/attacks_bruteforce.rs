//! SECURITY.md's brute-force attacks against the running server: 1,000 wrong codes serially per
//! factor type and 200 in parallel on every route that takes a code, restarted logins
//! (AuthQuake) and the admin confirmation code. Judgements are counted from the audit log's
//! reasons (the caller cannot tell them apart, INV-11).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::attacks::*;
use common::logins::*;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The `i`-th wrong code for `right` (six digits, or a recovery code's shape).
fn wrong_code(right: &str, i: usize) -> String {
    if right.contains('-') {
        return format!("abcd-efgh-jkmn-{:04}", i % 10_000);
    }
    let c = format!("{:06}", (i * 7919) % 1_000_000);
    if c == right {
        a_wrong(right)
    } else {
        c
    }
}

/// How many wrong codes each route may judge before its limits engage with the clock stopped:
/// a factor's backoff after 5 failures in a row (a one-time code also dies after 5), 10 wrong
/// recovery codes an hour, 20 wrong admin confirmations a day.
fn limit(which: CodeEndpoint) -> usize {
    match which {
        CodeEndpoint::DisableWithRecoveryCode | CodeEndpoint::LoginRecover => 10,
        CodeEndpoint::ProposalConfirm | CodeEndpoint::VaultExport => 20,
        _ => 5,
    }
}

/// The audit reasons of the endpoint's judgements since `skip` events ago, and how many wrong
/// codes were actually judged.
async fn judged(a: &Armed, before: usize) -> (usize, BTreeMap<String, usize>) {
    let all = all_audit(&a.app, &a.e.key, &format!("action={}", a.action)).await;
    let new = &all[..all.len() - before];
    let r = reasons(new);
    assert!(!r.contains_key("ok"), "{:?}: {r:?}", a.action);
    // Recovery codes are audited as `recovery:wrong_code`; admin confirmations as `denied`.
    let wrong = r
        .iter()
        .filter(|(k, _)| k.ends_with("wrong_code") || *k == "denied")
        .map(|(_, n)| n)
        .sum();
    (wrong, r)
}

/// `count` wrong codes at `which`, serially or all at once, with the clock stopped: the route
/// judges no more than its limit, answers every attempt alike, and then refuses even the right
/// code (nothing more is judged).
async fn brute(which: CodeEndpoint, count: usize, parallel: bool) {
    let a = arm(which, if parallel { count } else { 1 }).await;
    let before = all_audit(&a.app, &a.e.key, &format!("action={}", a.action))
        .await
        .len();
    let answers = if parallel {
        let a = &a;
        let tries = (0..count).map(|i| async move { a.send(i, &wrong_code(&a.code, i)).await });
        futures_util::future::join_all(tries).await
    } else {
        let mut answers = Vec::new();
        for i in 0..count {
            answers.push(a.send(0, &wrong_code(&a.code, i)).await);
        }
        answers
    };
    let (wrong, r) = judged(&a, before).await;
    assert!(
        (1..=limit(which)).contains(&wrong),
        "{which:?}: {wrong} wrong codes judged: {r:?}"
    );
    // Every refusal looks the same to the caller (the admin limit answers 429: see
    // `wrong_admin_confirmations_are_limited_per_admin`).
    let first = &answers[0];
    for r in &answers {
        assert!(r.status < 500, "{which:?}: {r:?}");
        if !matches!(
            which,
            CodeEndpoint::ProposalConfirm | CodeEndpoint::VaultExport
        ) {
            assert_eq!(
                (r.status, &r.body),
                (first.status, &first.body),
                "{which:?}"
            );
        }
    }
    let right = a.send(if parallel { count } else { 0 }, &a.code).await;
    assert!(
        !a.accepted(&right),
        "{which:?}: the right code after the limit: {right:?}"
    );
}

macro_rules! brute_tests {
    ($($name:ident: $which:ident, $count:expr, $parallel:expr,)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            brute(CodeEndpoint::$which, $count, $parallel).await;
        }
    )*};
}

// One thousand serially per kind of code (TOTP, SMS, email, recovery, admin confirmation).
brute_tests! {
    a_thousand_wrong_totp_codes_serially_are_judged_within_the_limit: VerifyTotp, 1000, false,
    a_thousand_wrong_sms_codes_serially_are_judged_within_the_limit: VerifySms, 1000, false,
    a_thousand_wrong_email_codes_serially_are_judged_within_the_limit: VerifyEmail, 1000, false,
    a_thousand_wrong_recovery_codes_serially_are_judged_within_the_limit: LoginRecover, 1000, false,
    a_thousand_wrong_admin_confirmation_codes_serially_hit_the_per_admin_limit: ProposalConfirm, 1000, false,
    a_thousand_wrong_vault_export_codes_serially_hit_the_per_admin_limit: VaultExport, 1000, false,
}

// Two hundred in parallel on every route that takes a code: no route goes without limits.
brute_tests! {
    two_hundred_parallel_wrong_codes_on_verify_totp_stay_within_the_limit: VerifyTotp, 200, true,
    two_hundred_parallel_wrong_codes_on_verify_sms_stay_within_the_limit: VerifySms, 200, true,
    two_hundred_parallel_wrong_codes_on_verify_email_stay_within_the_limit: VerifyEmail, 200, true,
    two_hundred_parallel_wrong_codes_on_confirm_totp_stay_within_the_limit: ConfirmTotp, 200, true,
    two_hundred_parallel_wrong_codes_on_confirm_sms_stay_within_the_limit: ConfirmSms, 200, true,
    two_hundred_parallel_wrong_codes_on_confirm_email_stay_within_the_limit: ConfirmEmail, 200, true,
    two_hundred_parallel_wrong_codes_on_resync_stay_within_the_limit: Resync, 200, true,
    two_hundred_parallel_wrong_codes_on_disable_stay_within_the_limit: DisableWithCode, 200, true,
    two_hundred_parallel_wrong_recovery_codes_on_disable_stay_within_the_limit: DisableWithRecoveryCode, 200, true,
    two_hundred_parallel_wrong_codes_on_phone_change_confirm_stay_within_the_limit: PhoneChange, 200, true,
    two_hundred_parallel_wrong_codes_on_recovery_code_regeneration_stay_within_the_limit: RegenerateRecoveryCodes, 200, true,
    two_hundred_parallel_wrong_codes_on_app_password_creation_stay_within_the_limit: CreateAppPassword, 200, true,
    two_hundred_parallel_wrong_codes_on_logins_verify_stay_within_the_limit: LoginVerify, 200, true,
    two_hundred_parallel_wrong_recovery_codes_on_logins_recover_stay_within_the_limit: LoginRecover, 200, true,
    two_hundred_parallel_wrong_codes_on_logins_enroll_confirm_stay_within_the_limit: LoginEnrollConfirm, 200, true,
    two_hundred_parallel_wrong_admin_confirmation_codes_stay_within_the_per_admin_limit: ProposalConfirm, 200, true,
    two_hundred_parallel_wrong_vault_export_codes_stay_within_the_per_admin_limit: VaultExport, 200, true,
}

/// Waiting out every backoff with the manual clock: a TOTP factor judges exactly 100 wrong
/// codes, then locks, and the other 900 are refused as locked, the right code too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_wrong_totp_codes_waiting_out_each_backoff_lock_the_factor_at_100() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    let path = "/v1/tenants/acme/users/alice/verify";
    for i in 0..1000 {
        app.advance_secs(16 * 60);
        let code = wrong_code(&app.code_at_offset(&e.secret, &e.params, 0), i);
        let (_, r) = app.post(path, &e.key, json!({ "code": code })).await;
        assert_eq!(r, json!({"verified": false}));
    }
    let audit = all_audit(&app, &e.key, "action=totp.verify").await;
    let r = reasons(&audit);
    assert_eq!(
        (r.get("wrong_code"), r.get("locked")),
        (Some(&100), Some(&900)),
        "{r:?}"
    );
    let (_, v) = app
        .verify(&e, &app.code_at_offset(&e.secret, &e.params, 0))
        .await;
    assert_eq!(v, json!({"verified": false}));
}

/// AuthQuake: a new login after each wrong code (waiting out the backoff) gives no fresh
/// attempts: the failures add up per factor to the lock, and the next login's right code is
/// refused as locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_login_after_each_wrong_code_refreshes_no_attempts() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    require_2fa(&app, &e).await;
    for i in 0..100 {
        app.advance_secs(16 * 60);
        let pending = pending_login(&app, &e).await;
        let code = wrong_code(&app.code_at_offset(&e.secret, &e.params, 0), i);
        let r = step_of(&app, &e, &pending, &code).await;
        assert_eq!(r["verified"], false);
    }
    app.advance_secs(16 * 60);
    let d = login(&app, &e, "alice", json!({})).await;
    if d["decision"] == "challenge" {
        let right = app.code_at_offset(&e.secret, &e.params, 0);
        let r = step(&app, &e, &d, &right, json!({})).await;
        assert_eq!(r["verified"], false, "{r}");
    }
    let audit = all_audit(&app, &e.key, "action=login.verify").await;
    let r = reasons(&audit);
    assert_eq!(r.get("wrong_code"), Some(&100), "{r:?}");
    let (_, f) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(f["factors"][0]["locked"], true, "{f}");
}

/// Restarting the login and asking for a new SMS code: three wrong codes in one login, two
/// in the next with a new code make five in a row (the count is per factor, never per login
/// or per code).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_login_with_a_new_sms_code_refreshes_no_attempts() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    let sms = active_sms(&app, &e.key).await;
    require_2fa(&app, &e).await;
    let with_sms = json!({ "factor_id": sms });
    let mut i = 0;
    for wrong in [3, 2] {
        let d = login(&app, &e, "alice", json!({})).await;
        let code = login_sms_code(&app, &e, &d, &sms).await;
        for _ in 0..wrong {
            i += 1;
            let r = step(&app, &e, &d, &wrong_code(&code, i), with_sms.clone()).await;
            assert_eq!(r["verified"], false);
        }
        app.advance_secs(31);
    }
    // The fifth wrong code in a row (in the second login, on the second code) is the one the
    // user is warned of: nothing was reset in between.
    let m = notice_with(&app, ALICE_MAIL, "5 wrong codes in a row").await;
    assert!(m.text.contains("/wasnt-me/"));
    let audit = all_audit(&app, &e.key, "action=login.verify").await;
    assert_eq!(reasons(&audit).get("wrong_code"), Some(&5), "{audit:?}");
}

async fn login_sms_code(app: &TestApp, e: &Enrolled, d: &Value, sms: &str) -> String {
    let (s, r) = app
        .post(
            "/v1/tenants/acme/logins/send-code",
            &e.key,
            json!({"pending_token": d["pending"]["token"], "factor_id": sms}),
        )
        .await;
    assert!(s.is_success(), "{r}");
    app.next_code(ALICE_PHONE).await
}

/// One admin confirmation code confirms its own proposal only, in parallel too: proposing
/// again supersedes the first proposal, and the first code confirms neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_admin_confirmation_code_cannot_confirm_two_different_proposals() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    let (first, code) = propose(&app, &e, required(json!({"methods": ["sms"]}))).await;
    app.advance_secs(31);
    let (second, _) = propose(&app, &e, required(json!({}))).await;
    let tries = [&first, &second, &first, &second].map(|path| {
        let (app, key, body) = (&app, &e.key, json!({ "code": code }));
        async move { raw(app, key, path, &body).await }
    });
    let answers = futures_util::future::join_all(tries).await;
    assert!(
        answers.iter().all(|r| r.json()["confirmed"] != true),
        "{answers:#?}"
    );
    let (_, p) = app.get("/v1/tenants/acme/policy", &e.key).await;
    assert_eq!(p["version"], 0, "nothing was confirmed");
}

/// The per-admin limit holds under parallel attempts too: one wrong confirmation short of
/// it, a burst of wrong codes at a fresh proposal gets one more judged, not the five a
/// code's own tries would allow (the count is an atomic budget, not a read of the audit log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_burst_one_short_of_the_per_admin_limit_gets_one_more_guess() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    let (path, code) = propose(&app, &e, required(json!({}))).await;
    for i in 0..19 {
        let (_, r) = app
            .post(&path, &e.key, json!({ "code": wrong_code(&code, i) }))
            .await;
        assert_eq!(r["confirmed"], false, "{r}");
    }
    app.advance_secs(31);
    let (path, code) = propose(&app, &e, required(json!({}))).await;
    let tries = (0..50).map(|i| {
        let (app, key, path, body) = (&app, &e.key, &path, json!({ "code": wrong_code(&code, i) }));
        async move { raw(app, key, path, &body).await }
    });
    futures_util::future::join_all(tries).await;
    let audit = all_audit(&app, &e.key, "action=proposal.confirm").await;
    let r = reasons(&audit);
    assert_eq!(
        r.get("wrong_code"),
        Some(&6),
        "5 on the first code, 1 on the second: {r:?}"
    );
    let (_, c) = app.post(&path, &e.key, json!({ "code": code })).await;
    assert_ne!(c["confirmed"], true, "{c}");
}
