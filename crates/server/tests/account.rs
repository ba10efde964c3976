//! The account pages over HTTP (issue #6): a user's own security settings, reached through
//! the hosted second step from the integrator's login hint. Removing a method, new recovery
//! codes and signing out everywhere only with a fresh code; adding an email method; changing
//! the phone number through the SMS stand-in (the development outbox); trusted devices and
//! sessions; another user's ids; CSRF; a console cookie does not open these pages, nor the
//! reverse. The browser is reqwest with a cookie jar (`common::oidc::Browser`); the Chromium
//! run is in `browser_account.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::logins::{login, step};
use common::oidc::{Browser, Page};
use common::rp::{acme, hint_with, spawn, spawn_with};
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use twofold_delivery::{Secret, SmsProvider};
use twofold_testkit::MockHttp;

/// Tenant acme from `rp::acme`: alice with an authenticator app (and her recovery codes),
/// 2FA required, remember-device allowed, client `acme.web`.
struct Org {
    app: TestApp,
    alice: Enrolled,
    secret: String,
}

async fn org() -> Org {
    org_with(spawn().await).await
}

async fn org_with(app: TestApp) -> Org {
    let (alice, secret) = acme(&app).await;
    app.advance_secs(30);
    Org { app, alice, secret }
}

impl Org {
    fn sso_url(&self, user: &str) -> String {
        let hint = hint_with(&self.app, &self.secret, json!({ "sub": user }));
        format!("/account/sso?client_id=acme.web&login_hint_token={hint}")
    }

    fn code(&self) -> String {
        self.app
            .code_at_offset(&self.alice.secret, &self.alice.params, 0)
    }

    /// Alice's browser through the hosted challenge into her security settings.
    async fn signed_in(&self) -> Browser {
        let b = Browser::new(&self.app);
        let first = b.get(&self.sso_url("alice")).await;
        assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
        assert_eq!(first.location.as_deref(), Some("/oidc/challenge"));
        let challenge = b.get("/oidc/challenge").await;
        assert!(
            challenge.body.contains("your security settings"),
            "{}",
            challenge.body
        );
        assert!(!challenge.body.contains("Remember this device"));
        let back = b.verify(&challenge, &self.code(), true).await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
        assert!(b.cookie("tf_device").is_none());
        let callback = back.location.unwrap();
        assert!(
            callback.starts_with(&format!("{}/account/callback?code=", self.app.base)),
            "{callback}"
        );
        let landed = b.get(&callback).await;
        assert_eq!(landed.status, StatusCode::SEE_OTHER, "{}", landed.body);
        assert_eq!(landed.location.as_deref(), Some("/account"));
        self.app.advance_secs(30);
        b
    }

    async fn factors(&self) -> Vec<Value> {
        let (_, f) = self
            .app
            .get("/v1/tenants/acme/users/alice/factors", &self.alice.key)
            .await;
        f["factors"].as_array().unwrap().clone()
    }

    async fn sessions(&self) -> Vec<Value> {
        let (_, s) = self
            .app
            .get("/v1/tenants/acme/users/alice/sessions", &self.alice.key)
            .await;
        s["sessions"].as_array().unwrap().clone()
    }
}

/// A form's POST with the page's CSRF token.
async fn submit(b: &Browser, page: &Page, to: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = page.csrf();
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    b.post(to, &form).await
}

fn wrong(code: &str) -> &'static str {
    if code == "000000" {
        "111111"
    } else {
        "000000"
    }
}

/// The recovery codes a page shows (`<li><code>…</code></li>`).
fn codes_on(page: &Page) -> Vec<String> {
    page.body
        .split("<li><code>")
        .skip(1)
        .map(|s| s.split("</code>").next().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_user_signs_in_with_a_second_factor_and_sees_their_methods() {
    let o = org().await;
    let b = o.signed_in().await;
    let overview = b.get("/account").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    assert!(overview
        .body
        .contains("signed in as <strong>alice</strong>"));
    assert!(
        overview
            .body
            .contains("<li><strong>Authenticator app</strong>"),
        "{}",
        overview.body
    );
    assert!(overview
        .body
        .contains(&format!("/account/methods/{}/remove", o.alice.factor_id)));
    // Never the seed.
    let seed = twofold_otp::base32::encode(&o.alice.secret);
    assert!(!overview.body.contains(&seed));
    let set: Vec<_> = overview.headers.get_all("set-cookie").iter().collect();
    assert!(set.iter().all(|c| {
        let c = c.to_str().unwrap();
        c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/account")
    }));
    let rows = o.app.audit(&o.alice, "action=account.session").await;
    assert_eq!(rows[0]["actor"], "user:alice");
    let live: Vec<Value> = o
        .sessions()
        .await
        .into_iter()
        .filter(|s| s["active"] == true)
        .collect();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(live[0]["client_id"], "@account");

    // A user without a method enrols first.
    o.app.user("acme", &o.alice.key, "newbie").await;
    let first = Browser::new(&o.app).get(&o.sso_url("newbie")).await;
    assert_eq!(first.location.as_deref(), Some("/oidc/enroll"));
    // Nobody: the same refusal as a bad hint.
    let nobody = Browser::new(&o.app).get(&o.sso_url("ghost")).await;
    assert_eq!(nobody.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn adding_an_email_and_removing_a_method_needs_a_fresh_code() {
    let o = org().await;
    let b = o.signed_in().await;
    let form = b.get("/account/methods/email").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let bad = submit(
        &b,
        &form,
        "/account/methods/email",
        &[("destination", "nope")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("aria-invalid=\"true\""), "{}", bad.body);
    let sent = submit(
        &b,
        &form,
        "/account/methods/email",
        &[("destination", "alice.backup@example.com")],
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    let email_id = sent.input("factor_id").unwrap();
    let code = o.app.next_code("alice.backup@example.com").await;
    let refused = submit(
        &b,
        &sent,
        "/account/methods/confirm",
        &[("factor_id", &email_id), ("code", wrong(&code))],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let added = submit(
        &b,
        &sent,
        "/account/methods/confirm",
        &[("factor_id", &email_id), ("code", &code)],
    )
    .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert!(added.body.contains("Email to a"), "{}", added.body);
    assert_eq!(o.factors().await.len(), 2);

    // Removing the authenticator app: no code, a wrong code, then the right one.
    let totp = o.alice.factor_id.clone();
    let remove_at = format!("/account/methods/{totp}/remove");
    let page = b.get(&remove_at).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Confirm it is you"));
    let none = submit(&b, &page, &remove_at, &[("prover", &totp), ("code", "")]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED, "{}", none.body);
    let code = o.code();
    let bad = submit(
        &b,
        &page,
        &remove_at,
        &[("prover", &totp), ("code", wrong(&code))],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "{}", bad.body);
    assert!(bad.body.contains("That code did not work"));
    assert_eq!(o.factors().await.len(), 2);
    let before = b.cookie_at("/account", "tf_account").unwrap();
    let removed = submit(&b, &page, &remove_at, &[("prover", &totp), ("code", &code)]).await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert!(removed.body.contains("The method was removed."));
    let left = o.factors().await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["kind"], "email");
    // This session carried over to a new token; the old one died with the removal.
    assert_ne!(b.cookie_at("/account", "tf_account").unwrap(), before);
    assert_eq!(b.get("/account").await.status, StatusCode::OK);
    let stale = reqwest::Client::new()
        .get(format!("{}/account", o.app.base))
        .header("cookie", format!("tf_account={before}"))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    let rows = o.app.audit(&o.alice, "action=factor.disable").await;
    assert_eq!(rows[0]["actor"], "user:alice");
}

/// Waits (up to 10 s) until the SMS provider got `n` messages; the code in the last one,
/// which must have gone to `to`.
async fn nth_sms_code(provider: &MockHttp, n: usize, to: &str) -> String {
    for _ in 0..200 {
        let requests = provider.requests();
        if requests.len() >= n {
            assert_eq!(requests.len(), n, "more messages than expected");
            let last = &requests[n - 1];
            assert_eq!(last.form_value("To").as_deref(), Some(to));
            let text = last.form_value("Body").unwrap();
            return text
                .split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 6)
                .unwrap_or_else(|| panic!("no code in {text:?}"))
                .to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the provider did not get message {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_number_changes_with_codes_to_the_old_and_the_new_number() {
    // Text messages go out through a stand-in of the SMS provider (Twilio's Messages API).
    let provider = MockHttp::start().await;
    let base = provider.base_url.clone();
    let o = org_with(
        spawn_with(move |c| {
            c.sms.provider = SmsProvider::Twilio;
            c.sms.twilio.base_url = base;
            c.sms.twilio.account_sid = Some("AC0123456789".into());
            c.sms.twilio.auth_token = Some(Secret::new("token-xyz"));
            c.sms.twilio.from = Some("+15005550006".into());
            c.delivery.poll_interval_ms = 50;
        })
        .await,
    )
    .await;
    let (old, new) = ("+14155550100", "+14155550199");
    let (s, f) = o
        .app
        .post(
            "/v1/tenants/acme/users/alice/factors/sms",
            &o.alice.key,
            json!({ "phone": old }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{f}");
    let sms = f["factor"]["id"].as_str().unwrap().to_string();
    let code = nth_sms_code(&provider, 1, old).await;
    let (s, c) = o
        .app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{sms}/confirm"),
            &o.alice.key,
            json!({ "code": code }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");

    let b = o.signed_in().await;
    let overview = b.get("/account").await;
    let at = format!("/account/methods/{sms}/phone");
    assert!(overview.body.contains(&at), "{}", overview.body);
    let form = b.get(&at).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let same = submit(&b, &form, &at, &[("destination", "+1 415 555 0100")]).await;
    assert_eq!(same.status, StatusCode::BAD_REQUEST, "{}", same.body);
    let step1 = submit(&b, &form, &at, &[("destination", "+1 (415) 555-0199")]).await;
    assert_eq!(step1.status, StatusCode::OK, "{}", step1.body);
    assert!(step1.body.contains("your current number"), "{}", step1.body);
    let confirm_at = step1
        .body
        .split(&format!("action=\"{at}/"))
        .nth(1)
        .map(|rest| format!("{at}/{}", rest.split('"').next().unwrap()))
        .unwrap();
    let old_code = nth_sms_code(&provider, 2, old).await;
    let bad = submit(&b, &step1, &confirm_at, &[("code", wrong(&old_code))]).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let step2 = submit(&b, &step1, &confirm_at, &[("code", &old_code)]).await;
    assert_eq!(step2.status, StatusCode::OK, "{}", step2.body);
    assert!(step2.body.contains("the new number"), "{}", step2.body);
    let new_code = nth_sms_code(&provider, 3, new).await;
    let done = submit(&b, &step2, &confirm_at, &[("code", &new_code)]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(
        done.body.contains("Text-message codes now go to"),
        "{}",
        done.body
    );
    let factors = o.factors().await;
    let f = factors.iter().find(|f| f["id"] == sms.as_str()).unwrap();
    assert!(f["destination"].as_str().unwrap().ends_with("99"), "{f}");
    // Still signed in here, on a new token; the change is the user's own in the audit log.
    assert_eq!(b.get("/account").await.status, StatusCode::OK);
    let rows = o.app.audit(&o.alice, "action=factor.phone_change").await;
    assert_eq!(rows[0]["actor"], "user:alice");
}

#[tokio::test]
async fn new_recovery_codes_replace_the_old_ones() {
    let o = org().await;
    let old = o.alice.recovery_codes.clone();
    assert!(!old.is_empty());
    let b = o.signed_in().await;
    let page = b.get("/account/recovery").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("<strong>{}</strong> unused", old.len())),
        "{}",
        page.body
    );
    let wrong_code = wrong(&o.code()).to_string();
    let refused = submit(
        &b,
        &page,
        "/account/recovery",
        &[("prover", &o.alice.factor_id), ("code", &wrong_code)],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let made = submit(
        &b,
        &page,
        "/account/recovery",
        &[("prover", &o.alice.factor_id), ("code", &o.code())],
    )
    .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let new = codes_on(&made);
    assert_eq!(new.len(), old.len(), "{}", made.body);
    assert!(made.body.contains("download="));

    // At the hosted challenge: an old code is refused, a new one signs in.
    let recover = |code: String| {
        let o = &o;
        async move {
            let b = Browser::new(&o.app);
            b.get(&o.sso_url("alice")).await;
            let form = b.get("/oidc/challenge/recover").await;
            submit(
                &b,
                &form,
                "/oidc/challenge/recover",
                &[("recovery_code", &code)],
            )
            .await
        }
    };
    let with_old = recover(old[0].clone()).await;
    assert_ne!(with_old.status, StatusCode::SEE_OTHER, "{}", with_old.body);
    let with_new = recover(new[0].clone()).await;
    assert_eq!(with_new.status, StatusCode::SEE_OTHER, "{}", with_new.body);
}

#[tokio::test]
async fn devices_and_sessions_are_listed_and_revoked() {
    let o = org().await;
    // A remembered device and a session from a sign-in at the application.
    let pending = login(&o.app, &o.alice, "alice", json!({})).await;
    let done = step(
        &o.app,
        &o.alice,
        &pending,
        &o.code(),
        json!({"remember_device": true, "device_label": "Alice's laptop"}),
    )
    .await;
    assert!(done["device"]["token"].is_string(), "{done}");
    o.app.advance_secs(30);
    let b = o.signed_in().await;

    let devices = b.get("/account/devices").await;
    assert_eq!(devices.status, StatusCode::OK, "{}", devices.body);
    assert!(
        devices.body.contains("Alice&#39;s laptop"),
        "{}",
        devices.body
    );
    let device_id = done["device"]["id"].as_str().unwrap();
    let forgotten = submit(
        &b,
        &devices,
        &format!("/account/devices/{device_id}/forget"),
        &[],
    )
    .await;
    assert_eq!(forgotten.status, StatusCode::OK, "{}", forgotten.body);
    assert!(!forgotten.body.contains("Alice&#39;s laptop"));
    let again = submit(
        &b,
        &devices,
        &format!("/account/devices/{device_id}/forget"),
        &[],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);

    let sessions = b.get("/account/sessions").await;
    assert_eq!(sessions.status, StatusCode::OK, "{}", sessions.body);
    assert!(sessions.body.contains("<strong>This session</strong>"));
    let app_session = done["session"]["id"].as_str().unwrap();
    let revoke_at = format!("/account/sessions/{app_session}/revoke");
    assert!(sessions.body.contains(&revoke_at), "{}", sessions.body);
    let revoked = submit(&b, &sessions, &revoke_at, &[]).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(!revoked.body.contains(&revoke_at));
    let api = o.sessions().await;
    let s = api.iter().find(|s| s["id"] == app_session).unwrap();
    assert_eq!(s["active"], false, "{s}");
    let rows = o.app.audit(&o.alice, "action=session.revoke").await;
    assert_eq!(rows[0]["actor"], "user:alice");
}

#[tokio::test]
async fn signing_out_everywhere_needs_a_code_and_ends_this_session_too() {
    let o = org().await;
    let pending = login(&o.app, &o.alice, "alice", json!({})).await;
    let done = step(&o.app, &o.alice, &pending, &o.code(), json!({})).await;
    assert!(done["session"]["token"].is_string());
    o.app.advance_secs(30);
    let b = o.signed_in().await;
    let page = b.get("/account/sessions").await;
    let code = o.code();
    let refused = submit(
        &b,
        &page,
        "/account/sign-out-everywhere",
        &[("prover", &o.alice.factor_id), ("code", wrong(&code))],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(b.get("/account").await.status, StatusCode::OK);
    let out = submit(
        &b,
        &page,
        "/account/sign-out-everywhere",
        &[("prover", &o.alice.factor_id), ("code", &code)],
    )
    .await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    assert!(out.body.contains("signed out"), "{}", out.body);
    let after = b.get("/account").await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert!(o.sessions().await.iter().all(|s| s["active"] == false));
    let rows = o
        .app
        .audit(&o.alice, "action=user.sign_out_everywhere")
        .await;
    assert_eq!(rows[0]["actor"], "user:alice");
}

#[tokio::test]
async fn another_users_ids_are_not_found_and_forms_need_their_csrf_token() {
    let o = org().await;
    // bob, in the same tenant, with his own method and session.
    o.app.user("acme", &o.alice.key, "bob").await;
    let bob = o.app.pending("acme", &o.alice.key, "bob").await;
    let code = o.app.code_at_offset(&bob.secret, &bob.params, 0);
    let (s, body) = o.app.confirm(&bob, &code).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    o.app.advance_secs(30);
    let pending = login(&o.app, &o.alice, "bob", json!({})).await;
    let code = o.app.code_at_offset(&bob.secret, &bob.params, 0);
    let done = step(&o.app, &o.alice, &pending, &code, json!({})).await;
    let bob_session = done["session"]["id"].as_str().unwrap().to_string();
    o.app.advance_secs(30);

    let b = o.signed_in().await;
    let page = b.get("/account").await;
    let theirs = format!("/account/methods/{}/remove", bob.factor_id);
    assert_eq!(b.get(&theirs).await.status, StatusCode::NOT_FOUND);
    let bob_code = o.app.code_at_offset(&bob.secret, &bob.params, 0);
    let posted = submit(
        &b,
        &page,
        &theirs,
        &[("prover", &bob.factor_id), ("code", &bob_code)],
    )
    .await;
    assert_eq!(posted.status, StatusCode::NOT_FOUND, "{}", posted.body);
    let revoke = submit(
        &b,
        &page,
        &format!("/account/sessions/{bob_session}/revoke"),
        &[],
    )
    .await;
    assert_eq!(revoke.status, StatusCode::NOT_FOUND);
    let (_, f) = o
        .app
        .get("/v1/tenants/acme/users/bob/factors", &o.alice.key)
        .await;
    assert_eq!(f["factors"].as_array().unwrap().len(), 1);

    // Without the CSRF token, or with another: refused, nothing done.
    let forged = b
        .post(
            "/account/sign-out-everywhere",
            &[
                ("csrf", "x"),
                ("prover", &o.alice.factor_id),
                ("code", &o.code()),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let forged = b.post("/account/methods/totp", &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/account").await.status, StatusCode::OK);
    assert_eq!(o.factors().await.len(), 1);
}

#[tokio::test]
async fn console_and_account_cookies_open_only_their_own_pages() {
    let o = org().await;
    // boss, an admin with an authenticator app, signs in to the console.
    let mut boss = o.app.pending("acme", &o.alice.key, "boss").await;
    let code = o.app.code_at_offset(&boss.secret, &boss.params, 0);
    assert_eq!(o.app.confirm(&boss, &code).await.0, StatusCode::OK);
    boss.recovery_codes = vec![];
    o.app.advance_secs(30);
    let console = Browser::new(&o.app);
    let hint = hint_with(&o.app, &o.secret, json!({ "sub": "boss" }));
    console
        .get(&format!(
            "/console/sso?client_id=acme.web&login_hint_token={hint}"
        ))
        .await;
    let challenge = console.get("/oidc/challenge").await;
    let code = o.app.code_at_offset(&boss.secret, &boss.params, 0);
    let back = console.verify(&challenge, &code, false).await;
    console.get(&back.location.unwrap()).await;
    let console_token = console.cookie_at("/console", "tf_console").unwrap();
    o.app.advance_secs(30);

    let account = o.signed_in().await;
    let account_token = account.cookie_at("/account", "tf_account").unwrap();
    let open = |path: &'static str, cookie: String| {
        let base = o.app.base.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{base}{path}"))
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        open("/console", format!("tf_console={console_token}")).await,
        StatusCode::OK
    );
    assert_eq!(
        open("/account", format!("tf_account={console_token}")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        open("/account", format!("tf_account={account_token}")).await,
        StatusCode::OK
    );
    assert_eq!(
        open("/console", format!("tf_console={account_token}")).await,
        StatusCode::UNAUTHORIZED
    );
    // A non-admin's account sign-in works; the console still refuses them.
    let refused = Browser::new(&o.app)
        .get(&format!(
            "/console/sso?client_id=acme.web&login_hint_token={}",
            hint_with(&o.app, &o.secret, json!({ "sub": "alice" }))
        ))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

/// The attacks of SECURITY.md on the account pages' fresh code: one code posted ten times at
/// once makes one change, and guessing it meets the factor's backoff, after which even the
/// right code gets the same refusal until the backoff ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fresh_code_makes_one_change_under_parallel_replays() {
    let o = org().await;
    let b = o.signed_in().await;
    let page = b.get("/account/recovery").await;
    let code = o.code();
    let fields = [
        ("prover", o.alice.factor_id.as_str()),
        ("code", code.as_str()),
    ];
    let answers = futures_util::future::join_all(
        (0..10).map(|_| submit(&b, &page, "/account/recovery", &fields)),
    )
    .await;
    let made: Vec<&Page> = answers
        .iter()
        .filter(|p| p.status == StatusCode::OK)
        .collect();
    assert_eq!(
        made.len(),
        1,
        "{:?}",
        answers.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    assert_eq!(codes_on(made[0]).len(), 10);
    for p in answers.iter().filter(|p| p.status != StatusCode::OK) {
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
    }
}

#[tokio::test]
async fn guessing_the_fresh_code_meets_the_factors_backoff() {
    let o = org().await;
    let b = o.signed_in().await;
    let page = b.get("/account/recovery").await;
    let right = o.code();
    let mut refusals = Vec::new();
    for i in 0..20 {
        let guess = format!("{:06}", (i * 7919 + 1) % 1_000_000);
        if guess == right {
            continue;
        }
        let p = submit(
            &b,
            &page,
            "/account/recovery",
            &[("prover", &o.alice.factor_id), ("code", &guess)],
        )
        .await;
        refusals.push((p.status, p.body.contains("<li><code>")));
    }
    assert!(
        refusals
            .iter()
            .all(|r| *r == (StatusCode::UNAUTHORIZED, false)),
        "{refusals:?}"
    );
    // The backoff is on: the right code gets the very same refusal, and makes nothing.
    let p = submit(
        &b,
        &page,
        "/account/recovery",
        &[("prover", &o.alice.factor_id), ("code", &right)],
    )
    .await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
    assert!(codes_on(&p).is_empty());
    let judged = o.app.audit(&o.alice, "action=recovery.regenerate").await;
    let wrong = judged
        .iter()
        .filter(|e| {
            e["reason"]
                .as_str()
                .is_some_and(|r| r.ends_with("wrong_code"))
        })
        .count();
    assert!(
        (1..=5).contains(&wrong),
        "{wrong} wrong codes judged: {judged:?}"
    );
}
