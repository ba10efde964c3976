//! Recovery codes, "this wasn't me" links, operator controls and app passwords, through the
//! HTTP API and the link's page.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::logins::*;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const ALICE: &str = "alice@example.com";

/// Tenant `acme` requiring 2FA; alice has TOTP and her recovery codes.
async fn required_acme(app: &TestApp) -> Enrolled {
    let e = setup(app).await;
    set_policy(
        app,
        &e,
        required(json!({
            "clients": [
                {"id": "web", "supports_2fa": true},
                {"id": "imap", "supports_2fa": false, "app_passwords": true}
            ]
        })),
    )
    .await;
    e
}

async fn challenge(app: &TestApp, e: &Enrolled) -> String {
    let d = login(app, e, "alice", json!({"ip": "203.0.113.9"})).await;
    assert_eq!(d["decision"], "challenge", "{d}");
    d["pending"]["token"].as_str().unwrap().to_string()
}

async fn recover(app: &TestApp, e: &Enrolled, pending: &str, code: &str) -> (StatusCode, Value) {
    app.post(
        "/v1/tenants/acme/logins/recover",
        &e.key,
        json!({"pending_token": pending, "recovery_code": code}),
    )
    .await
}

/// The "this wasn't me" token in a notice.
fn revert_token(m: &DevMessage) -> String {
    let at = m.text.find("/wasnt-me/").expect("notice carries a link") + "/wasnt-me/".len();
    m.text[at..]
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn first_factor_brings_recovery_codes_that_sign_in_once_and_warn_when_low() {
    let app = spawn_app().await;
    let e = required_acme(&app).await;
    let codes = e.recovery_codes.clone();
    assert!(codes
        .iter()
        .all(|c| c.len() == 19 && c.matches('-').count() == 3));
    let unique: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(unique.len(), 10);
    let (_, st) = app
        .get("/v1/tenants/acme/users/alice/recovery-codes", &e.key)
        .await;
    assert_eq!(st["remaining"], 10);

    // A second factor brings no new codes.
    let second = app.pending("acme", &e.key, "alice").await;
    let (_, c) = app
        .confirm(
            &second,
            &app.code_at_offset(&second.secret, &second.params, 0),
        )
        .await;
    assert_eq!(c, json!({"confirmed": true}));

    // Sign in with one (typed in capitals with spaces): a session marked rcode, and an email.
    let pending = challenge(&app, &e).await;
    let typed = codes[0].to_uppercase().replace('-', " ");
    let (s, r) = recover(&app, &e, &pending, &typed).await;
    assert_eq!(
        (s, r["verified"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{r}"
    );
    let token = r["session"]["token"].as_str().unwrap();
    let (_, i) = app
        .post(
            "/v1/tenants/acme/sessions/introspect",
            &e.key,
            json!({"token": token}),
        )
        .await;
    assert_eq!(i["session"]["amr"], json!(["pwd", "rcode"]));
    let used = notice_with(&app, ALICE, "a recovery code was used to sign in").await;
    assert!(
        !used.text.contains(&codes[0]),
        "a notice never carries a code"
    );

    // Used once: the same code again fails like any wrong code, with a fresh login too.
    let pending = challenge(&app, &e).await;
    let (s, r) = recover(&app, &e, &pending, &codes[0]).await;
    assert_eq!((s, r), (StatusCode::OK, json!({"verified": false})));
    // Malformed codes are wrong codes too, not a different answer (INV-11).
    let (s, r) = recover(&app, &e, &pending, "not-a-code").await;
    assert_eq!((s, r), (StatusCode::OK, json!({"verified": false})));

    // Down to two left: the notice says to make new ones.
    for code in &codes[1..8] {
        let pending = challenge(&app, &e).await;
        let (_, r) = recover(&app, &e, &pending, code).await;
        assert_eq!(r["verified"], true);
    }
    let low = notice_with(&app, ALICE, "only 2 recovery codes are left").await;
    assert!(low.text.contains("make new ones"));
    let (_, st) = app
        .get("/v1/tenants/acme/users/alice/recovery-codes", &e.key)
        .await;
    assert_eq!(st["remaining"], 2);
    let audit = app.audit_of("acme", &e.key, "action=login.recover").await;
    assert_eq!(audit.len(), 10, "every try is audited");
    assert_eq!(
        audit.iter().filter(|a| a["outcome"] == "denied").count(),
        2,
        "{audit:?}"
    );
}

#[tokio::test]
async fn thirty_parallel_uses_of_one_recovery_code_give_one_session() {
    let app = spawn_app().await;
    let e = required_acme(&app).await;
    let mut pendings = Vec::new();
    for _ in 0..30 {
        pendings.push(challenge(&app, &e).await);
    }
    let code = e.recovery_codes[3].clone();
    let tries = pendings.iter().map(|p| recover(&app, &e, p, &code));
    let results = futures_util::future::join_all(tries).await;
    let wins = results
        .iter()
        .filter(|(s, r)| {
            assert_eq!(*s, StatusCode::OK, "{r}");
            r["verified"] == true
        })
        .count();
    assert_eq!(wins, 1);
    let (_, st) = app
        .get("/v1/tenants/acme/users/alice/recovery-codes", &e.key)
        .await;
    assert_eq!(st["remaining"], 9);
}

#[tokio::test]
async fn a_lost_phone_is_removed_with_a_recovery_code_and_new_codes_need_a_fresh_factor() {
    let app = spawn_app().await;
    let e = required_acme(&app).await;
    // Enrol a phone, then "lose" the TOTP device: remove TOTP with a recovery code.
    let (s, f) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/sms",
            &e.key,
            json!({"phone": "+447700900123"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{f}");
    let sms = f["factor"]["id"].as_str().unwrap().to_string();
    let code = app.next_code("+447700900123").await;
    let (_, c) = app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{sms}/confirm"),
            &e.key,
            json!({"code": code}),
        )
        .await;
    assert_eq!(c["confirmed"], true);
    let disable = format!(
        "/v1/tenants/acme/users/alice/factors/{}/disable",
        e.factor_id
    );
    let (s, r) = app
        .post(
            &disable,
            &e.key,
            json!({"code": "123456", "recovery_code": "x"}),
        )
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::BAD_REQUEST, Some("invalid_field")),
        "{r}"
    );
    let (_, r) = app
        .post(
            &disable,
            &e.key,
            json!({"recovery_code": e.recovery_codes[0]}),
        )
        .await;
    assert_eq!(r["disabled"], true, "{r}");
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(list["factors"].as_array().unwrap().len(), 1);

    // New recovery codes: a wrong proof changes nothing; the old codes still hold.
    let path = "/v1/tenants/acme/users/alice/recovery-codes";
    let (s, r) = app.post(path, &e.key, json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    let (_, r) = app
        .post(
            path,
            &e.key,
            json!({"code": "000000", "code_factor_id": sms}),
        )
        .await;
    assert_eq!(r, json!({"verified": false}));
    // A code sent for sign-in does not prove this change (INV-05); one sent for it does.
    let send = format!("/v1/tenants/acme/users/alice/factors/{sms}/send-code");
    app.advance_secs(31);
    let (s, _) = app.post(&send, &e.key, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let sign_in = app.next_code("+447700900123").await;
    let (_, r) = app
        .post(
            path,
            &e.key,
            json!({"code": sign_in, "code_factor_id": sms}),
        )
        .await;
    assert_eq!(r, json!({"verified": false}));
    app.advance_secs(31);
    let (s, _) = app
        .post(&send, &e.key, json!({"for": "recovery_codes"}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let proof = app.next_code("+447700900123").await;
    let (_, r) = app
        .post(path, &e.key, json!({"code": proof, "code_factor_id": sms}))
        .await;
    assert_eq!(r["verified"], true, "{r}");
    let fresh: Vec<String> = r["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().into())
        .collect();
    assert_eq!(fresh.len(), 10);
    notice_with(&app, ALICE, "new recovery codes were made").await;
    // The old set is dead, the new one works.
    let pending = challenge(&app, &e).await;
    assert_eq!(
        recover(&app, &e, &pending, &e.recovery_codes[1]).await.1["verified"],
        false
    );
    assert_eq!(
        recover(&app, &e, &pending, &fresh[0]).await.1["verified"],
        true
    );
}

#[tokio::test]
async fn a_user_with_every_factor_locked_comes_back_with_a_recovery_code() {
    let app = spawn_app().await;
    let e = required_acme(&app).await;
    // 100 wrong codes lock the factor (waiting out each backoff).
    for i in 0..100 {
        let (_, r) = app.verify(&e, "000000").await;
        assert_eq!(r["verified"], false, "try {i}");
        app.advance_secs(16 * 60);
    }
    notice_with(&app, ALICE, "locked after too many wrong codes").await;
    let d = login(&app, &e, "alice", json!({})).await;
    assert_eq!(
        (d["decision"].as_str(), d["methods"].clone()),
        (Some("challenge"), json!([])),
        "{d}"
    );
    let pending = d["pending"]["token"].as_str().unwrap();
    let (_, r) = recover(&app, &e, pending, &e.recovery_codes[0]).await;
    assert_eq!(r["verified"], true);
    // The recovery lifted the lock: the authenticator works again.
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    assert_eq!(app.verify(&e, &code).await.1["verified"], true);
}

#[tokio::test]
async fn repeated_wrong_codes_are_emailed_before_the_lock_and_restarting_the_login_refreshes_nothing(
) {
    let app = spawn_app().await;
    let e = required_acme(&app).await;
    let wrong = |pending: String| {
        let app = &app;
        let key = e.key.clone();
        async move {
            let (_, r) = app
                .post(
                    "/v1/tenants/acme/logins/verify",
                    &key,
                    json!({"pending_token": pending, "code": "000000"}),
                )
                .await;
            assert_eq!(r["verified"], false);
        }
    };
    // Three wrong codes, a new login, two more: the fifth in a row starts the backoff.
    let p = challenge(&app, &e).await;
    for _ in 0..3 {
        wrong(p.clone()).await;
    }
    let p = challenge(&app, &e).await;
    for _ in 0..2 {
        wrong(p.clone()).await;
    }
    let m = notice_with(&app, ALICE, "5 wrong codes in a row").await;
    assert!(m.text.contains("/wasnt-me/"));
    // Yet another login, with the right code: still in backoff.
    let p = challenge(&app, &e).await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let (_, r) = app
        .post(
            "/v1/tenants/acme/logins/verify",
            &e.key,
            json!({"pending_token": p, "code": code}),
        )
        .await;
    assert_eq!(r["verified"], false);
    let audit = app.audit_outcomes(&e, "action=login.verify&limit=1").await;
    assert_eq!(audit, vec![json!(["denied", "throttled"])]);
}

#[tokio::test]
async fn failures_are_also_limited_per_end_user_ip_and_per_tenant() {
    let app = spawn_app_with(|c| {
        c.throttle.ip_failures_per_hour = 50;
        c.throttle.tenant_failures_per_hour = 60;
    })
    .await;
    let e = required_acme(&app).await;
    // 20 users, each with a factor: spraying one wrong code per user stays below every
    // per-factor limit.
    let mut users = Vec::new();
    for i in 0..31 {
        let name = format!("u{i}");
        app.user("acme", &e.key, &name).await;
        let f = app.pending("acme", &e.key, &name).await;
        let (_, c) = app
            .confirm(&f, &app.code_at_offset(&f.secret, &f.params, 0))
            .await;
        assert_eq!(c["confirmed"], true);
        users.push(f);
    }
    app.advance_secs(30);
    // 200 wrong codes in parallel from one IP: exactly 50 are judged, the rest refused.
    let tries = (0..200).map(|i| {
        let path = format!("/v1/tenants/acme/users/{}/verify", users[i % 20].user);
        let (app, key) = (&app, e.key.clone());
        async move {
            app.post(
                &path,
                &key,
                json!({"code": format!("{:06}", i), "ip": "198.51.100.7"}),
            )
            .await
        }
    });
    let results = futures_util::future::join_all(tries).await;
    assert!(results
        .iter()
        .all(|(s, r)| *s == StatusCode::OK && r["verified"] == false));
    let audit = app
        .audit_of("acme", &e.key, "action=totp.verify&limit=500")
        .await;
    let judged = audit.iter().filter(|a| a["reason"] != "throttled").count();
    let refused = audit.iter().filter(|a| a["reason"] == "throttled").count();
    assert_eq!((judged, refused), (50, 150));
    // That IP is now refused even with the right code; another IP is not.
    let u = &users[0];
    let code = app.code_at_offset(&u.secret, &u.params, 0);
    let path = format!("/v1/tenants/acme/users/{}/verify", u.user);
    let (_, r) = app
        .post(&path, &e.key, json!({"code": code, "ip": "198.51.100.7"}))
        .await;
    assert_eq!(r["verified"], false);
    let (_, r) = app
        .post(&path, &e.key, json!({"code": code, "ip": "198.51.100.8"}))
        .await;
    assert_eq!(r["verified"], true);
    // The tenant's budget: one wrong code each for ten fresh users, from ten IPs, brings it
    // to 60; then even a right code of a user with no failures, from a new IP, waits.
    for (i, u) in users[20..30].iter().enumerate() {
        let (_, r) = app
            .post(
                &format!("/v1/tenants/acme/users/{}/verify", u.user),
                &e.key,
                json!({"code": "999999", "ip": format!("192.0.2.{i}")}),
            )
            .await;
        assert_eq!(r["verified"], false);
    }
    app.advance_secs(30);
    let fresh = &users[30];
    let (_, r) = app
        .post(
            &format!("/v1/tenants/acme/users/{}/verify", fresh.user),
            &e.key,
            json!({"code": app.code_at_offset(&fresh.secret, &fresh.params, 0),
                   "ip": "192.0.2.200"}),
        )
        .await;
    assert_eq!(r["verified"], false);
    let last = app
        .audit_of("acme", &e.key, "action=totp.verify&limit=1")
        .await;
    assert_eq!(last[0]["reason"], "throttled", "{last:?}");
    // An hour later the budgets are fresh.
    app.advance_secs(3600);
    let code = app.code_at_offset(&u.secret, &u.params, 0);
    let (_, r) = app
        .post(&path, &e.key, json!({"code": code, "ip": "198.51.100.7"}))
        .await;
    assert_eq!(r["verified"], true);
    // A garbage IP is a bad request, never silently ignored.
    let (s, r) = app
        .post(
            &path,
            &e.key,
            json!({"code": code, "ip": "1.2.3.4, 5.6.7.8"}),
        )
        .await;
    assert_eq!(
        (s, r["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ip"))
    );
}

/// GET the link's page; returns (status, body, csrf cookie value).
async fn open_link(app: &TestApp, token: &str) -> (StatusCode, String, Option<String>) {
    let resp = app
        .client
        .get(format!("{}/wasnt-me/{token}", app.base))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let h = resp.headers().clone();
    if status == StatusCode::OK {
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("script-src"), "no script may run: {csp}");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-frame-options"], "DENY");
    }
    let cookie = h.get("set-cookie").map(|c| {
        let c = c.to_str().unwrap();
        let path = format!("Path=/wasnt-me/{token}");
        for attr in ["HttpOnly", "SameSite=Strict", path.as_str()] {
            assert!(c.contains(attr), "{c}");
        }
        c.split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_string()
    });
    (status, resp.text().await.unwrap(), cookie)
}

async fn press(
    app: &TestApp,
    token: &str,
    cookie: Option<&str>,
    csrf: &str,
) -> (StatusCode, String) {
    let mut req = app
        .client
        .post(format!("{}/wasnt-me/{token}", app.base))
        .form(&[("csrf", csrf)]);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("tf_csrf={c}"));
    }
    let resp = req.send().await.unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// Opens the link and presses the button as a browser would.
async fn wasnt_me(app: &TestApp, m: &DevMessage) -> (StatusCode, String) {
    let token = revert_token(m);
    let (s, page, cookie) = open_link(app, &token).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let cookie = cookie.unwrap();
    assert!(page.contains(&format!("value=\"{cookie}\"")));
    press(app, &token, Some(&cookie), &cookie).await
}

async fn session_of(app: &TestApp, e: &Enrolled) -> String {
    let pending = challenge(app, e).await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let (_, r) = app
        .post(
            "/v1/tenants/acme/logins/verify",
            &e.key,
            json!({"pending_token": pending, "code": code}),
        )
        .await;
    assert_eq!(r["verified"], true, "{r}");
    app.advance_secs(30);
    r["session"]["token"].as_str().unwrap().to_string()
}

async fn active(app: &TestApp, e: &Enrolled, token: &str) -> bool {
    let (_, i) = app
        .post(
            "/v1/tenants/acme/sessions/introspect",
            &e.key,
            json!({"token": token}),
        )
        .await;
    i["active"] == true
}

#[tokio::test]
async fn this_wasnt_me_removes_a_new_factor_signs_out_freezes_and_alerts_admins() {
    let app = spawn_app().await;
    let e = required_acme(&app).await;
    let session = session_of(&app, &e).await;
    // "Someone" adds a second authenticator.
    notice_with(&app, ALICE, "method was added").await; // her own, at setup
    let evil = app.pending("acme", &e.key, "alice").await;
    app.confirm(&evil, &app.code_at_offset(&evil.secret, &evil.params, 0))
        .await;
    let m = notice_with(&app, ALICE, "method was added").await;
    let token = revert_token(&m);

    // Opening the link changes nothing (mail scanners open links). Over plain http (this
    // test server) the cookie cannot be Secure, or browsers would drop it.
    let (s, page, cookie) = open_link(&app, &token).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("method was added") && page.contains("<form method=\"post\">"));
    assert!(active(&app, &e, &session).await);
    // A POST without the page's CSRF cookie, or with another value, does nothing.
    let cookie = cookie.unwrap();
    assert_eq!(
        press(&app, &token, None, &cookie).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        press(&app, &token, Some(&cookie), "forged").await.0,
        StatusCode::FORBIDDEN
    );
    assert!(active(&app, &e, &session).await);

    let (s, done) = press(&app, &token, Some(&cookie), &cookie).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert!(done.contains("signed out everywhere"));
    // The new factor is gone, the session is dead, the settings are frozen.
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    let ids: Vec<&str> = list["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![e.factor_id.as_str()]);
    assert!(!active(&app, &e, &session).await);
    let (s, r) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/totp",
            &e.key,
            json!({}),
        )
        .await;
    assert_eq!((s, err(&r)), (StatusCode::CONFLICT, Some("account_frozen")));
    let alert = notice_with(&app, "boss@example.com", "alice reported a change").await;
    assert!(alert.text.contains("frozen"));
    let audit = app.audit_of("acme", &e.key, "action=user.wasnt_me").await;
    assert_eq!(
        (
            audit.len(),
            audit[0]["actor"].as_str(),
            audit[0]["reason"].as_str()
        ),
        (1, Some("user:alice"), Some("remove_factor"))
    );
    // Signing in still works with the remaining factor; used twice, the link says so.
    session_of(&app, &e).await;
    let (s, page, _) = open_link(&app, &token).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(page.contains("used already"));
    let (s, _) = press(&app, &token, Some(&cookie), &cookie).await;
    assert_eq!(s, StatusCode::CONFLICT);

    // An admin lifts the freeze (audited); then changes work again.
    let (s, _) = app
        .post("/v1/tenants/acme/users/alice/unfreeze", &e.key, json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/totp",
            &e.key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Unknown, malformed and foreign tokens: one plain "not valid" page.
    for t in ["tfr_nope", "x", &format!("{token}x")] {
        assert_eq!(open_link(&app, t).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn this_wasnt_me_brings_a_removed_factor_back() {
    let app = spawn_app().await;
    let e = required_acme(&app).await;
    let second = app.pending("acme", &e.key, "alice").await;
    app.confirm(
        &second,
        &app.code_at_offset(&second.secret, &second.params, 0),
    )
    .await;
    app.advance_secs(30);
    // The original factor is removed with a code from the second one.
    let code = app.code_at_offset(&second.secret, &second.params, 0);
    let (_, r) = app
        .post(
            &format!(
                "/v1/tenants/acme/users/alice/factors/{}/disable",
                e.factor_id
            ),
            &e.key,
            json!({"code": code, "code_factor_id": second.factor_id}),
        )
        .await;
    assert_eq!(r["disabled"], true, "{r}");
    let m = notice_with(&app, ALICE, "method was removed").await;
    let (s, done) = wasnt_me(&app, &m).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert!(done.contains("comes back"));
    // The removed factor is back with its seed: its codes verify again.
    app.advance_secs(30);
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let (_, r) = app
        .post(
            "/v1/tenants/acme/users/alice/verify",
            &e.key,
            json!({"code": code, "factor_id": e.factor_id}),
        )
        .await;
    assert_eq!(r["verified"], true, "{r}");
}

#[tokio::test]
async fn this_wasnt_me_puts_the_old_phone_number_back_and_expires_after_seven_days() {
    let app = spawn_app().await;
    let e = required_acme(&app).await;
    let (_, f) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/sms",
            &e.key,
            json!({"phone": "+447700900111"}),
        )
        .await;
    let sms = f["factor"]["id"].as_str().unwrap().to_string();
    let code = app.next_code("+447700900111").await;
    let base = format!("/v1/tenants/acme/users/alice/factors/{sms}");
    app.post(&format!("{base}/confirm"), &e.key, json!({"code": code}))
        .await;
    notice_with(&app, ALICE, "method was added").await; // the authenticator, at setup
    let added = notice_with(&app, ALICE, "method was added").await;
    let (s, started) = app
        .post(
            &format!("{base}/phone-change"),
            &e.key,
            json!({"new_phone": "+447700900222"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{started}");
    let change = started["change"]["id"].as_str().unwrap().to_string();
    let confirm = format!("{base}/phone-change/{change}/confirm");
    let old = app.next_code("+447700900111").await;
    app.post(&confirm, &e.key, json!({"code": old})).await;
    let new = app.next_code("+447700900222").await;
    let (_, r) = app.post(&confirm, &e.key, json!({"code": new})).await;
    assert_eq!(r["accepted"], true, "{r}");
    let m = notice_with(
        &app,
        ALICE,
        "phone number for text-message codes was changed",
    )
    .await;
    let (s, done) = wasnt_me(&app, &m).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    let dest = list["factors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == sms.as_str())
        .unwrap()["destination"]
        .clone();
    assert_eq!(dest, "+44•••••••111");
    // The older notice's link is still usable for 7 days, and dead after.
    app.advance_secs(8 * 86_400);
    let (s, page, _) = open_link(&app, &revert_token(&added)).await;
    assert_eq!(s, StatusCode::GONE);
    assert!(page.contains("expired"));
}

#[tokio::test]
async fn operators_switch_2fa_off_for_a_user_or_a_whole_tenant() {
    let app = spawn_app().await;
    let e = required_acme(&app).await;
    let session = session_of(&app, &e).await;
    let path = "/v1/tenants/acme/users/alice/disable-2fa";
    let (s, r) = app.post(path, &e.key, json!({})).await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{r}"
    );
    let (s, _) = app.post(path, &app.operator_key, json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(list["factors"], json!([]));
    let (_, st) = app
        .get("/v1/tenants/acme/users/alice/recovery-codes", &e.key)
        .await;
    assert_eq!(st["remaining"], 0);
    assert!(!active(&app, &e, &session).await);
    notice_with(&app, ALICE, "switched off for your account").await;
    assert_eq!(
        app.audit_of("acme", &e.key, "action=user.2fa_disable")
            .await
            .len(),
        1
    );
    // Required by the policy, she must enrol again at her next login.
    let d = login(&app, &e, "alice", json!({})).await;
    assert_eq!(d["decision"], "enroll_required");

    // The whole tenant: three more users with factors; the policy goes off, a job clears all.
    for u in ["bob", "carol", "dave"] {
        app.user("acme", &e.key, u).await;
        let f = app.pending("acme", &e.key, u).await;
        app.confirm(&f, &app.code_at_offset(&f.secret, &f.params, 0))
            .await;
    }
    let (s, r) = app
        .post("/v1/tenants/acme/disable-2fa", &e.key, json!({}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{r}");
    let (s, _) = app
        .post("/v1/tenants/acme/disable-2fa", &app.operator_key, json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, p) = app.get("/v1/tenants/acme/policy", &e.key).await;
    assert_eq!(p["policy"]["enforcement"]["mode"], "off");
    for u in ["bob", "carol", "dave"] {
        let mut cleared = false;
        for _ in 0..100 {
            let (_, list) = app
                .get(&format!("/v1/tenants/acme/users/{u}/factors"), &e.key)
                .await;
            if list["factors"] == json!([]) {
                cleared = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(cleared, "{u}'s factors were not removed");
        notice_with(
            &app,
            &format!("{u}@example.com"),
            "switched off for your account",
        )
        .await;
    }
    notice_with(&app, "boss@example.com", "for the whole organisation").await;
}

#[tokio::test]
async fn app_passwords_let_one_client_in_and_die_with_the_credentials() {
    let app = spawn_app().await;
    let e = required_acme(&app).await;
    let path = "/v1/tenants/acme/users/alice/app-passwords";
    // Only for a client that allows them, and only with a fresh proof.
    let (s, r) = app
        .post(
            path,
            &e.key,
            json!({"client_id": "web", "recovery_code": e.recovery_codes[0]}),
        )
        .await;
    assert_eq!(
        (s, r["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("client_id"))
    );
    let (s, _) = app.post(path, &e.key, json!({"client_id": "imap"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, r) = app
        .post(
            path,
            &e.key,
            json!({"client_id": "imap", "code": "000000", "code_factor_id": e.factor_id}),
        )
        .await;
    assert_eq!(r, json!({"verified": false}));
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let (_, r) = app
        .post(
            path,
            &e.key,
            json!({"client_id": "imap", "label": "Laptop mail", "code": code,
                   "code_factor_id": e.factor_id}),
        )
        .await;
    assert_eq!(r["verified"], true, "{r}");
    let password = r["password"].as_str().unwrap().to_string();
    let id = r["id"].as_str().unwrap().to_string();
    let notice = notice_with(&app, ALICE, "an app password was created for imap").await;
    assert!(!notice.text.contains(&password));

    let imap_login = |pw: String, client: &'static str| {
        let app = &app;
        let e = &e;
        async move {
            app.post(
                "/v1/tenants/acme/logins",
                &e.key,
                json!({"user": "alice", "primary": "password", "client_id": client,
                       "app_password": pw}),
            )
            .await
        }
    };
    // Without it, the client that cannot do 2FA is refused; with it, let in.
    let d = login(&app, &e, "alice", json!({"client_id": "imap"})).await;
    assert_eq!(
        (d["decision"].as_str(), d["reason"].as_str()),
        (Some("deny"), Some("client_unsupported"))
    );
    let (_, d) = imap_login(password.to_uppercase(), "imap").await;
    assert_eq!(
        (d["decision"].as_str(), d["reason"].as_str()),
        (Some("allow"), Some("app_password")),
        "{d}"
    );
    let token = d["session"]["token"].as_str().unwrap();
    let (_, i) = app
        .post(
            "/v1/tenants/acme/sessions/introspect",
            &e.key,
            json!({"token": token}),
        )
        .await;
    assert_eq!(i["session"]["amr"], json!(["app"]));
    let (_, d) = imap_login("aaaa-bbbb-cccc-dddd-eeee".into(), "imap").await;
    assert_eq!(d["reason"], "app_password_invalid");
    let (s, _) = imap_login(password.clone(), "web").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, list) = app.get(path, &e.key).await;
    let listed = &list["app_passwords"][0];
    assert_eq!(
        (
            listed["id"].as_str(),
            listed["label"].as_str(),
            listed["active"].as_bool()
        ),
        (Some(id.as_str()), Some("Laptop mail"), Some(true))
    );
    assert!(listed["last_used_at"].is_i64());
    assert!(!list.to_string().contains(&password));
    let uses = app.audit_of("acme", &e.key, "action=login.decide").await;
    assert!(uses
        .iter()
        .any(|a| a["reason"] == format!("app_password:{id}")));

    // Sign out everywhere kills it; a new one can be revoked by id.
    app.post(
        "/v1/tenants/acme/users/alice/sign-out-everywhere",
        &e.key,
        json!({}),
    )
    .await;
    assert_eq!(
        imap_login(password.clone(), "imap").await.1["decision"],
        "deny"
    );
    app.advance_secs(30);
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let (_, r) = app
        .post(
            path,
            &e.key,
            json!({"client_id": "imap", "code": code, "code_factor_id": e.factor_id}),
        )
        .await;
    let second = r["password"].as_str().unwrap().to_string();
    let second_id = r["id"].as_str().unwrap().to_string();
    assert_eq!(
        imap_login(second.clone(), "imap").await.1["decision"],
        "allow"
    );
    let (s, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("{path}/{second_id}"),
            Some(&e.key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(imap_login(second, "imap").await.1["decision"], "deny");
    // Another tenant's key sees nothing of it.
    let other = app.tenant("other").await;
    let (s, _) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/tenants/acme/users/alice/app-passwords/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Presses the button of `m`'s link with an `X-Forwarded-For` header; returns the IP the
/// audit row recorded.
async fn wasnt_me_from(app: &TestApp, e: &Enrolled, m: &DevMessage, xff: &str) -> String {
    let token = revert_token(m);
    let (_, _, cookie) = open_link(app, &token).await;
    let cookie = cookie.unwrap();
    let resp = app
        .client
        .post(format!("{}/wasnt-me/{token}", app.base))
        .header("cookie", format!("tf_csrf={cookie}"))
        .header("x-forwarded-for", xff)
        .form(&[("csrf", cookie.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let audit = app
        .audit_of("acme", &e.key, "action=user.wasnt_me&limit=1")
        .await;
    audit[0]["ip"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_page_believes_forwarding_headers_only_from_trusted_proxies() {
    for (trusted, xff, want) in [
        // No trusted proxy: the header is ignored, the socket address counts.
        (vec![], "198.51.100.1", "127.0.0.1"),
        // Behind a trusted proxy: the first untrusted hop from the right, never the
        // client-chosen left end.
        (
            vec!["127.0.0.0/8".to_string()],
            "6.6.6.6, 198.51.100.1",
            "198.51.100.1",
        ),
        // Garbage stops the walk: nothing the client wrote is believed.
        (
            vec!["127.0.0.0/8".to_string()],
            "198.51.100.1, evil<script>",
            "127.0.0.1",
        ),
        (vec!["127.0.0.0/8".to_string()], "unknown", "127.0.0.1"),
    ] {
        let app = spawn_app_with(|c| c.network.trusted_proxies = trusted.clone()).await;
        let e = setup(&app).await;
        notice_with(&app, ALICE, "method was added").await; // her own, at setup
        let extra = app.pending("acme", &e.key, "alice").await;
        app.confirm(&extra, &app.code_at_offset(&extra.secret, &extra.params, 0))
            .await;
        let m = notice_with(&app, ALICE, "method was added").await;
        assert_eq!(
            wasnt_me_from(&app, &e, &m, xff).await,
            want,
            "{trusted:?} {xff}"
        );
    }
}

#[tokio::test]
async fn this_wasnt_me_kills_recovery_codes_someone_else_made_and_expired_links_change_nothing() {
    let app = spawn_app_with(|c| c.public_url = Some("https://2fa.example.com".into())).await;
    let e = required_acme(&app).await;
    // "Someone" with a fresh code makes new recovery codes.
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let (_, r) = app
        .post(
            "/v1/tenants/acme/users/alice/recovery-codes",
            &e.key,
            json!({"code": code, "code_factor_id": e.factor_id}),
        )
        .await;
    let theirs = r["recovery_codes"][0].as_str().unwrap().to_string();
    let m = notice_with(&app, ALICE, "new recovery codes were made").await;
    assert!(
        m.text.contains("https://2fa.example.com/wasnt-me/tfr_"),
        "{}",
        m.text
    );
    // Over https the page's cookie is Secure.
    let token = revert_token(&m);
    let resp = app
        .client
        .get(format!("{}/wasnt-me/{token}", app.base))
        .send()
        .await
        .unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let value = cookie.split(';').next().unwrap().split_once('=').unwrap().1;
    let (s, done) = press(&app, &token, Some(value), value).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    assert!(done.contains("new recovery codes stop working"));
    // Their codes are gone: no sign-in with them, and nothing left to use.
    let pending = challenge(&app, &e).await;
    assert_eq!(
        recover(&app, &e, &pending, &theirs).await.1["verified"],
        false
    );
    let (_, st) = app
        .get("/v1/tenants/acme/users/alice/recovery-codes", &e.key)
        .await;
    assert_eq!(st["remaining"], 0);

    // A link POSTed after its 7 days changes nothing.
    app.post("/v1/tenants/acme/users/alice/unfreeze", &e.key, json!({}))
        .await;
    let extra = app.pending("acme", &e.key, "alice").await;
    app.confirm(&extra, &app.code_at_offset(&extra.secret, &extra.params, 0))
        .await;
    notice_with(&app, ALICE, "method was added").await; // her own, at setup
    let added = notice_with(&app, ALICE, "method was added").await;
    let token = revert_token(&added);
    let (_, _, cookie) = open_link(&app, &token).await;
    let cookie = cookie.unwrap();
    app.advance_secs(7 * 86_400 + 1);
    let (s, page) = press(&app, &token, Some(&cookie), &cookie).await;
    assert_eq!(s, StatusCode::GONE, "{page}");
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(
        list["factors"].as_array().unwrap().len(),
        2,
        "nothing was undone"
    );
    let (s, _) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/totp",
            &e.key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "and nothing frozen");
}

#[tokio::test]
async fn a_frozen_user_cannot_finish_a_change_started_before_the_freeze_and_admin_actions_stand() {
    let app = spawn_app().await;
    let e = required_acme(&app).await;
    // An enrolment is in progress when the user reports another change.
    let second = app.pending("acme", &e.key, "alice").await;
    let third = app.pending("acme", &e.key, "alice").await;
    app.confirm(
        &second,
        &app.code_at_offset(&second.secret, &second.params, 0),
    )
    .await;
    notice_with(&app, ALICE, "method was added").await; // her own, at setup
    let m = notice_with(&app, ALICE, "method was added").await;
    let (s, _) = wasnt_me(&app, &m).await;
    assert_eq!(s, StatusCode::OK);
    // The pending one went with the report: it cannot be confirmed now.
    let (s, r) = app
        .confirm(&third, &app.code_at_offset(&third.secret, &third.params, 0))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{r}");
    // Resync is a change too.
    let (s, r) = app
        .post(
            &format!(
                "/v1/tenants/acme/users/alice/factors/{}/resync",
                e.factor_id
            ),
            &e.key,
            json!({"code1": "123456", "code2": "654321"}),
        )
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("account_frozen")),
        "{r}"
    );

    // An operator's reset stands: an older "removed" link cannot bring a factor back.
    let (s, _) = app
        .post("/v1/tenants/acme/users/alice/unfreeze", &e.key, json!({}))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let again = app.pending("acme", &e.key, "alice").await;
    app.confirm(&again, &app.code_at_offset(&again.secret, &again.params, 0))
        .await;
    app.advance_secs(30);
    let code = app.code_at_offset(&again.secret, &again.params, 0);
    let (_, r) = app
        .post(
            &format!(
                "/v1/tenants/acme/users/alice/factors/{}/disable",
                e.factor_id
            ),
            &e.key,
            json!({"code": code, "code_factor_id": again.factor_id}),
        )
        .await;
    assert_eq!(r["disabled"], true, "{r}");
    let removed = notice_with(&app, ALICE, "method was removed").await;
    app.post(
        "/v1/tenants/acme/users/alice/disable-2fa",
        &app.operator_key,
        json!({}),
    )
    .await;
    let token = revert_token(&removed);
    let (s, page, _) = open_link(&app, &token).await;
    assert_eq!(s, StatusCode::CONFLICT, "{page}");
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(list["factors"], json!([]));
}
