//! The attacks of SECURITY.md on the console's code: the code emailed to confirm an admin's
//! change is single-use under parallel replays, and guessing it runs into the admin's daily
//! failure budget, after which even the right code is refused until the budget frees up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::attacks::a_wrong;
use common::console::{org, submit};
use common::oidc::Page;
use reqwest::StatusCode;
use serde_json::json;
use twofold_core::service::ADMIN_CONFIRM_FAILURES;

/// Proposes "optional" from the console; returns the confirmation page's path and page.
async fn propose(o: &common::console::Org, b: &common::oidc::Browser) -> (String, Page) {
    let form = b.get("/console/settings").await;
    let fields = [("mode", "optional"), ("totp", "1"), ("reminder_days", "14")];
    let proposed = submit(b, &form, "/console/settings", &fields).await;
    assert_eq!(proposed.status, StatusCode::SEE_OTHER, "{}", proposed.body);
    let at = proposed.location.unwrap();
    let page = b.get(&at).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let _ = o;
    (at, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_emailed_code_confirms_once_under_parallel_replays() {
    let o = org().await;
    let b = o.signed_in().await;
    let (at, page) = propose(&o, &b).await;
    let code = o.app.next_code("boss@example.com").await;
    let fields = [("code", code.as_str())];
    let answers =
        futures_util::future::join_all((0..10).map(|_| submit(&b, &page, &at, &fields))).await;
    let applied = answers
        .iter()
        .filter(|p| p.status == StatusCode::OK && p.body.contains("Change applied"))
        .count();
    assert_eq!(
        applied,
        1,
        "{:?}",
        answers.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    for p in answers.iter().filter(|p| p.status != StatusCode::OK) {
        assert!(
            [
                StatusCode::NOT_FOUND,
                StatusCode::UNAUTHORIZED,
                StatusCode::CONFLICT
            ]
            .contains(&p.status),
            "{} {}",
            p.status,
            p.body
        );
    }
    let confirms = o.app.audit(&o.alice, "action=proposal.apply").await;
    let by_console = confirms.iter().filter(|e| e["actor"] == "admin:boss").count();
    assert_eq!(by_console, 1, "{confirms:?}");
}

#[tokio::test]
async fn guessing_the_code_runs_into_the_admins_daily_budget() {
    let o = org().await;
    let b = o.signed_in().await;
    let (at, page) = propose(&o, &b).await;
    let code = o.app.next_code("boss@example.com").await;
    let wrong = a_wrong(&code);
    for i in 0..ADMIN_CONFIRM_FAILURES {
        let p = submit(&b, &page, &at, &[("code", &wrong)]).await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "guess {i}: {}", p.body);
    }
    // The budget is spent: the right code is refused too, and nothing changed.
    let p = submit(&b, &page, &at, &[("code", &code)]).await;
    assert_eq!(p.status, StatusCode::TOO_MANY_REQUESTS, "{}", p.body);
    let (_, policy) = o.app.get("/v1/tenants/acme/policy", &o.alice.key).await;
    assert_eq!(policy["policy"]["enforcement"]["mode"], "required_for_all");
    // A day later the budget is free again; the proposal has expired meanwhile, so a new one
    // (and its new code) is needed.
    o.app.advance_secs(24 * 3600 + 60);
    let b = o.signed_in().await;
    let (at, page) = propose(&o, &b).await;
    let code = o.app.next_code("boss@example.com").await;
    let p = submit(&b, &page, &at, &[("code", &code)]).await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    let (_, policy) = o.app.get("/v1/tenants/acme/policy", &o.alice.key).await;
    assert_eq!(
        policy["policy"]["enforcement"]["mode"],
        "optional",
        "{}",
        json!(policy)
    );
}
