//! The organisation's policy (admin-confirmed changes), the login decision, the second step,
//! sessions and remembered devices, through the HTTP API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::logins::*;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const DAY_MS: i64 = 86_400_000;

#[tokio::test]
async fn policy_changes_need_the_code_emailed_to_the_proposing_admin() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    let (_, p) = app.get("/v1/tenants/acme/policy", &e.key).await;
    assert_eq!(
        (
            p["version"].as_i64(),
            p["policy"]["enforcement"]["mode"].as_str()
        ),
        (Some(0), Some("off"))
    );
    // Off: everyone is let in, with a session.
    let d = login(&app, &e, "alice", json!({})).await;
    assert_eq!(
        (d["decision"].as_str(), d["reason"].as_str()),
        (Some("allow"), Some("not_required"))
    );
    assert!(d["session"]["token"].as_str().unwrap().starts_with("tfs_"));

    // Only an admin with an email can be named.
    for admin in ["alice", "ghost"] {
        let (s, r) = app
            .post(
                "/v1/tenants/acme/policy/proposals",
                &e.key,
                json!({"admin": admin, "policy": required(json!({}))}),
            )
            .await;
        assert_eq!(
            (s, r["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("admin")),
            "{r}"
        );
    }
    // Invalid settings are refused before anything is sent.
    for bad in [
        json!({"methods": []}),
        json!({"skip_hours": 0}),
        json!({"enforcement": {"mode": "sometimes"}}),
    ] {
        let (s, r) = app
            .post(
                "/v1/tenants/acme/policy/proposals",
                &e.key,
                json!({"admin": "boss", "policy": required(bad.clone())}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} → {r}");
    }

    // Proposal A, then B: B supersedes A; A's code does not confirm B, B's does not confirm A.
    let propose = |policy: Value| {
        let app = &app;
        let key = e.key.clone();
        async move {
            let (s, p) = app
                .post(
                    "/v1/tenants/acme/policy/proposals",
                    &key,
                    json!({"admin": "boss", "policy": policy}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{p}");
            p["id"].as_str().unwrap().to_string()
        }
    };
    let confirm = |id: String, code: String| {
        let app = &app;
        let key = e.key.clone();
        async move {
            app.post(
                &format!("/v1/tenants/acme/policy/proposals/{id}/confirm"),
                &key,
                json!({"code": code}),
            )
            .await
        }
    };
    let a = propose(required(json!({"methods": ["sms"]}))).await;
    let a_code = app.next_code("boss@example.com").await;
    app.advance_secs(31);
    let b = propose(required(json!({}))).await;
    let b_code = app.next_code("boss@example.com").await;
    let (_, r) = confirm(b.clone(), a_code.clone()).await;
    assert_eq!(r["confirmed"], false, "a code for another proposal");
    let (s, r) = confirm(a.clone(), a_code).await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("proposal_outdated")),
        "{r}"
    );
    let (_, r) = confirm(b.clone(), "000000".into()).await;
    assert_eq!(r["confirmed"], false);
    let (_, p) = app.get("/v1/tenants/acme/policy", &e.key).await;
    assert_eq!(p["version"], 0, "nothing changed yet");
    let (_, r) = confirm(b.clone(), b_code.clone()).await;
    assert_eq!(r["confirmed"], true, "{r}");
    let (_, r) = confirm(b, b_code).await;
    assert_eq!(r["confirmed"], false, "a code confirms once");
    let (_, p) = app.get("/v1/tenants/acme/policy", &e.key).await;
    assert_eq!(
        (
            p["version"].as_i64(),
            p["policy"]["enforcement"]["mode"].as_str()
        ),
        (Some(1), Some("required_for_all"))
    );
    let notice = notice_with(&app, "boss@example.com", "settings were changed").await;
    assert!(notice.text.contains("confirmed by boss"), "{}", notice.text);
    let proposed = notice_with(&app, "boss@example.com", "was proposed").await;
    assert!(proposed.text.contains("methods: sms"), "{}", proposed.text);

    // An expired code.
    app.advance_secs(31);
    let c = propose(required(json!({"sso_exempt": false}))).await;
    let c_code = app.next_code("boss@example.com").await;
    app.clock.advance_ms(10 * 60 * 1000);
    let (_, r) = confirm(c, c_code).await;
    assert_eq!(r["confirmed"], false);
    let actions: Vec<String> = app
        .audit(&e, "action=proposal.confirm&limit=10")
        .await
        .iter()
        .map(|ev| format!("{}:{}", ev["outcome"], ev["reason"]))
        .collect();
    assert!(actions.iter().any(|a| a.contains("expired")), "{actions:?}");
}

#[tokio::test]
async fn challenge_then_session_once_and_the_pending_token_is_only_for_its_login() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    set_policy(&app, &e, required(json!({}))).await;
    app.user("acme", &e.key, "bob").await;
    let d = login(&app, &e, "bob", json!({})).await;
    assert_eq!(d["decision"], "enroll_required", "{d}");
    assert_eq!(d["methods"], json!(["totp", "sms", "email"]));

    let d = login(
        &app,
        &e,
        "alice",
        json!({"client_id": "web", "user_agent": "Firefox"}),
    )
    .await;
    assert_eq!(
        (d["decision"].as_str(), d["methods"].clone()),
        (Some("challenge"), json!(["totp"]))
    );
    assert!(
        d.get("session").is_none(),
        "no session before the second step"
    );
    let pending = d["pending"]["token"].as_str().unwrap().to_string();
    // The pending token is not an API key, nor a session.
    let (s, _) = app.get("/v1/tenants/acme/users/alice", &pending).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let r = introspect(&app, &e, &json!(pending)).await;
    assert_eq!(r["active"], false);

    let r = step(&app, &e, &d, "000000", json!({})).await;
    assert_eq!(
        (r["verified"].as_bool(), r.get("session").is_none()),
        (Some(false), true)
    );
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let r = step(&app, &e, &d, &code, json!({})).await;
    assert_eq!(r["verified"], true, "{r}");
    let session = r["session"]["token"].clone();
    let s = introspect(&app, &e, &session).await;
    assert_eq!(
        (s["active"].as_bool(), s["session"]["user"].as_str()),
        (Some(true), Some("alice"))
    );
    assert_eq!(s["session"]["amr"], json!(["pwd", "otp"]));
    assert_eq!(s["session"]["second_factor"], true);
    // The login is finished: its token is dead, even with a fresh code.
    app.advance_secs(30);
    let next = app.code_at_offset(&e.secret, &e.params, 0);
    let (s, r) = app
        .post(
            "/v1/tenants/acme/logins/verify",
            &e.key,
            json!({"pending_token": pending, "code": next}),
        )
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("invalid_login_token"))
    );
    // A replayed code in a new login fails.
    let d2 = login(&app, &e, "alice", json!({})).await;
    let r = step(&app, &e, &d2, &code, json!({})).await;
    assert_eq!(r["verified"], false);
    // A pending login dies after ten minutes.
    app.clock.advance_ms(10 * 60 * 1000);
    let next = app.code_at_offset(&e.secret, &e.params, 0);
    let (s, _) = app
        .post(
            "/v1/tenants/acme/logins/verify",
            &e.key,
            json!({"pending_token": d2["pending"]["token"], "code": next}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Another tenant's key cannot use this tenant's pending token.
    let other = app.tenant("other").await;
    let d3 = login(&app, &e, "alice", json!({})).await;
    let (s, _) = app
        .post(
            "/v1/tenants/other/logins/verify",
            &other,
            json!({"pending_token": d3["pending"]["token"], "code": next}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);

    // Sessions are listed and revoked; a revoked session is inactive.
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/sessions", &e.key)
        .await;
    let id = list["sessions"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/users/alice/sessions/{id}"),
            Some(&e.key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(introspect(&app, &e, &session).await["active"], false);
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/users/alice/sessions/{id}"),
            Some(&e.key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn remembered_devices_skip_the_challenge_until_the_credentials_change() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    set_policy(&app, &e, required(json!({}))).await;
    let d = login(&app, &e, "alice", json!({})).await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let r = step(
        &app,
        &e,
        &d,
        &code,
        json!({"remember_device": true, "device_label": "Alice's laptop"}),
    )
    .await;
    let device = r["device"]["token"].as_str().unwrap().to_string();
    let session = r["session"]["token"].clone();
    let d = login(&app, &e, "alice", json!({"device_token": device})).await;
    assert_eq!(
        (d["decision"].as_str(), d["reason"].as_str()),
        (Some("allow"), Some("trusted_device"))
    );
    // Bob cannot use alice's device token.
    app.user("acme", &e.key, "bob").await;
    let d = login(&app, &e, "bob", json!({"device_token": device})).await;
    assert_eq!(d["decision"], "enroll_required");
    // A forged token is just not trusted.
    let d = login(&app, &e, "alice", json!({"device_token": "tfd_forged"})).await;
    assert_eq!(d["decision"], "challenge");
    let (_, devices) = app
        .get("/v1/tenants/acme/users/alice/devices", &e.key)
        .await;
    assert_eq!(devices["devices"][0]["label"], "Alice's laptop");

    // Signing out everywhere kills sessions and remembered devices (INV-06).
    let (s, _) = app
        .post(
            "/v1/tenants/acme/users/alice/sign-out-everywhere",
            &e.key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(introspect(&app, &e, &session).await["active"], false);
    let d = login(&app, &e, "alice", json!({"device_token": device})).await;
    assert_eq!(d["decision"], "challenge");
    let (_, devices) = app
        .get("/v1/tenants/acme/users/alice/devices", &e.key)
        .await;
    assert_eq!(devices["devices"][0]["active"], false);
}

#[tokio::test]
async fn the_rollout_reminds_lets_users_skip_daily_then_requires() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    let deadline = START_MS + 7 * DAY_MS;
    set_policy(&app, &e, required(json!({"mandatory_from": deadline}))).await;
    app.user("acme", &e.key, "bob").await;
    let d = login(&app, &e, "bob", json!({})).await;
    assert_eq!(
        (
            d["decision"].as_str(),
            d["deadline"].as_i64(),
            d["days_left"].as_i64()
        ),
        (Some("enroll_offered"), Some(deadline), Some(7)),
        "{d}"
    );
    let (s, session) = app
        .post(
            "/v1/tenants/acme/logins/skip",
            &e.key,
            json!({"pending_token": d["pending"]["token"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{session}");
    assert_eq!(
        introspect(&app, &e, &session["token"]).await["active"],
        true
    );
    let d = login(&app, &e, "bob", json!({})).await;
    assert_eq!(
        (d["decision"].as_str(), d["reason"].as_str()),
        (Some("allow"), Some("skipped"))
    );
    // A day later the reminder is back.
    app.clock.advance_ms(DAY_MS);
    let d = login(&app, &e, "bob", json!({})).await;
    assert_eq!(
        (d["decision"].as_str(), d["days_left"].as_i64()),
        (Some("enroll_offered"), Some(6))
    );
    // After the deadline: required, and "later" is refused.
    app.clock.set_ms(deadline);
    let d = login(&app, &e, "bob", json!({})).await;
    assert_eq!(d["decision"], "enroll_required");
    let (s, r) = app
        .post(
            "/v1/tenants/acme/logins/skip",
            &e.key,
            json!({"pending_token": d["pending"]["token"]}),
        )
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("skip_not_allowed"))
    );
    // SSO logins are exempt; a client without 2FA is refused.
    let d = login(&app, &e, "bob", json!({"primary": "sso"})).await;
    assert_eq!(d["reason"], "sso_exempt");
    let d = login(&app, &e, "bob", json!({"client_id": "imap"})).await;
    assert_eq!(
        (d["decision"].as_str(), d["reason"].as_str()),
        (Some("deny"), Some("client_unsupported"))
    );
    // Bad input.
    for (body, want) in [
        (json!({"user": "bob", "primary": "magic"}), "primary"),
        // An unparsable address is high risk, not a refusal (see tests/risk.rs); an absurdly
        // long one is refused.
        (
            json!({"user": "bob", "primary": "password", "ip": "9".repeat(101)}),
            "ip",
        ),
        (
            json!({"user": "bob", "primary": "password", "client_id": "nope"}),
            "client_id",
        ),
    ] {
        let (s, r) = app
            .post("/v1/tenants/acme/logins", &e.key, body.clone())
            .await;
        assert_eq!(
            (s, r["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(want)),
            "{body} → {r}"
        );
    }
    let (s, _) = app
        .post(
            "/v1/tenants/acme/logins",
            &e.key,
            json!({"user": "ghost", "primary": "password"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let decisions: Vec<String> = app
        .audit(&e, "action=login.decide&limit=3")
        .await
        .iter()
        .map(|ev| {
            format!(
                "{}:{}",
                ev["outcome"].as_str().unwrap(),
                ev["reason"].as_str().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(decisions[0], "deny:client_unsupported");
}

#[tokio::test]
async fn sms_codes_at_login_are_bound_to_that_login() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    set_policy(&app, &e, required(json!({}))).await;
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
    let d1 = login(&app, &e, "alice", json!({})).await;
    assert_eq!(d1["methods"], json!(["totp", "sms"]));
    let d2 = login(&app, &e, "alice", json!({})).await;
    let (s, r) = app
        .post(
            "/v1/tenants/acme/logins/send-code",
            &e.key,
            json!({"pending_token": d1["pending"]["token"], "factor_id": sms}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let code = app.next_code("+447700900123").await;
    // The code of login 1 does not complete login 2.
    let r = step(&app, &e, &d2, &code, json!({"factor_id": sms})).await;
    assert_eq!(r["verified"], false);
    let r = step(&app, &e, &d1, &code, json!({"factor_id": sms})).await;
    assert_eq!(r["verified"], true, "{r}");
    let s = introspect(&app, &e, &r["session"]["token"]).await;
    assert_eq!(s["session"]["amr"], json!(["pwd", "sms"]));
    // Once the organisation switches SMS off, an SMS factor completes no login.
    app.advance_secs(60);
    set_policy(&app, &e, required(json!({"methods": ["totp"]}))).await;
    let d = login(&app, &e, "alice", json!({})).await;
    assert_eq!(d["methods"], json!(["totp"]));
    let (s, _) = app
        .post(
            "/v1/tenants/acme/logins/send-code",
            &e.key,
            json!({"pending_token": d["pending"]["token"], "factor_id": sms}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admins_are_appointed_by_operators_or_confirmed_by_an_admin() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    // The tenant key alone cannot make an admin.
    let (s, _) = app
        .post(
            "/v1/tenants/acme/users",
            &e.key,
            json!({"external_id": "mallory", "email": "m@evil.test", "is_admin": true}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    app.post(
        "/v1/tenants/acme/users",
        &e.key,
        json!({"external_id": "bob", "email": "bob@example.com"}),
    )
    .await;
    // bob cannot propose (not an admin); boss can, and confirms with his code.
    let (s, _) = app
        .post(
            "/v1/tenants/acme/users/alice/admin-proposals",
            &e.key,
            json!({"admin": "bob"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, p) = app
        .post(
            "/v1/tenants/acme/users/bob/admin-proposals",
            &e.key,
            json!({"admin": "boss"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let code = app.next_code("boss@example.com").await;
    let url = format!(
        "/v1/tenants/acme/policy/proposals/{}/confirm",
        p["id"].as_str().unwrap()
    );
    let (_, r) = app
        .post(&url, &e.key, json!({"code": a_wrong(&code)}))
        .await;
    assert_eq!(r["confirmed"], false);
    let (_, u) = app.get("/v1/tenants/acme/users/bob", &e.key).await;
    assert_eq!(u["is_admin"], false);
    let (_, r) = app.post(&url, &e.key, json!({"code": code})).await;
    assert_eq!(r["confirmed"], true, "{r}");
    let (_, u) = app.get("/v1/tenants/acme/users/bob", &e.key).await;
    assert_eq!(u["is_admin"], true);
    notice_with(&app, "boss@example.com", "bob was made an administrator").await;
    let (s, r) = app
        .post(
            "/v1/tenants/acme/users/bob/admin-proposals",
            &e.key,
            json!({"admin": "boss"}),
        )
        .await;
    assert_eq!((s, err(&r)), (StatusCode::CONFLICT, Some("already_admin")));
}

fn a_wrong(code: &str) -> String {
    format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000)
}

#[tokio::test]
async fn the_last_factor_stays_while_2fa_is_required() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    set_policy(&app, &e, required(json!({}))).await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let (s, r) = app
        .post(
            &format!(
                "/v1/tenants/acme/users/alice/factors/{}/disable",
                e.factor_id
            ),
            &e.key,
            json!({"code": code}),
        )
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("last_factor")),
        "{r}"
    );
    let (_, f) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(f["factors"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn requiring_2fa_invites_everyone_in_scope_and_later_revokes_sessions_without_it() {
    // A day of idle time, so only the revocation can end the sessions here.
    let app = spawn_app_with(|c| c.sessions.idle_minutes = 24 * 60).await;
    let e = setup(&app).await;
    for i in 0..12 {
        let profile = if i % 3 == 0 { "admin" } else { "staff" };
        app.post(
            "/v1/tenants/acme/users",
            &e.key,
            json!({"external_id": format!("u{i}"), "email": format!("u{i}@example.com"), "profile": profile}),
        )
        .await;
    }
    // Sessions from before: u0 (an admin profile) without 2FA; alice with 2FA.
    let before = login(&app, &e, "u0", json!({})).await;
    assert_eq!(before["decision"], "allow");
    let staff = login(&app, &e, "u1", json!({})).await;
    // 2FA becomes required for the admin profile, sessions revoked 2 hours later.
    set_policy(
        &app,
        &e,
        required(json!({
            "enforcement": {"mode": "required_for_profiles", "profiles": ["admin"]},
            "revoke_sessions_after_hours": 2
        })),
    )
    .await;
    // Invitations to the four admin-profile users (u0, u3, u6, u9), nobody else.
    let mut invited = Vec::new();
    for i in [0, 3, 6, 9] {
        let m = app.next_message(&format!("u{i}@example.com")).await;
        assert!(m.text.contains("two-step verification"), "{}", m.text);
        invited.push(i);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let others = dev_messages(&app.outbox_dir())
        .into_iter()
        .filter(|m| m.to.starts_with('u') && m.to.contains("@example.com"))
        .count();
    assert_eq!(others, 4, "only users newly in scope are invited");

    // Before the hour: still active. After it: u0's session without 2FA is revoked; u1 (not
    // required) keeps theirs.
    app.clock.advance_ms(2 * 3_600_000 - 1_000);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(
        introspect(&app, &e, &before["session"]["token"]).await["active"],
        true
    );
    app.clock.advance_ms(2_000);
    let mut revoked = false;
    for _ in 0..100 {
        // Introspection touches the session, so the idle timer is not what ends it.
        if introspect(&app, &e, &before["session"]["token"]).await["active"] == false {
            revoked = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(revoked, "the session without 2FA was revoked on time");
    assert_eq!(
        introspect(&app, &e, &staff["session"]["token"]).await["active"],
        true
    );
    let revocations = app.audit(&e, "action=sessions.revoke_2fa_required").await;
    assert_eq!(revocations.len(), 1, "{revocations:?}");
}

#[tokio::test]
async fn enrolling_at_login_completes_it_and_is_only_for_users_without_a_factor() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    set_policy(&app, &e, required(json!({}))).await;
    app.user("acme", &e.key, "bob").await;
    let d = login(&app, &e, "bob", json!({})).await;
    assert_eq!(d["decision"], "enroll_required");
    let pending = d["pending"]["token"].clone();
    let (s, enrol) = app
        .post(
            "/v1/tenants/acme/logins/enroll/totp",
            &e.key,
            json!({"pending_token": pending}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{enrol}");
    let uri = twofold_otp::uri::KeyUri::parse(enrol["otpauth_uri"].as_str().unwrap()).unwrap();
    let code = app.code_at_offset(&uri.secret, &uri.params(), 0);
    let confirm = |code: String| {
        let app = &app;
        let key = e.key.clone();
        let body = json!({"pending_token": pending, "factor_id": enrol["factor_id"], "code": code});
        async move {
            app.post("/v1/tenants/acme/logins/enroll/confirm", &key, body)
                .await
        }
    };
    let (_, r) = confirm("000000".into()).await;
    assert_eq!(
        (r["verified"].as_bool(), r.get("session").is_none()),
        (Some(false), true)
    );
    let (_, r) = confirm(code).await;
    assert_eq!(r["verified"], true, "{r}");
    let s = introspect(&app, &e, &r["session"]["token"]).await;
    assert_eq!(s["session"]["amr"], json!(["pwd", "otp"]));
    // The login is done; the pending token cannot add another factor.
    let (s, r) = app
        .post(
            "/v1/tenants/acme/logins/enroll/totp",
            &e.key,
            json!({"pending_token": pending}),
        )
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("invalid_login_token"))
    );
    // A user with an active factor is challenged, and cannot enrol from a login.
    let d = login(&app, &e, "alice", json!({})).await;
    let (s, r) = app
        .post(
            "/v1/tenants/acme/logins/enroll/sms",
            &e.key,
            json!({"pending_token": d["pending"]["token"], "destination": "+447700900123"}),
        )
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("not_an_enrolment"))
    );
    // Enrolment by email at login works the same way.
    app.post(
        "/v1/tenants/acme/users",
        &e.key,
        json!({"external_id": "carol", "email": "carol@example.com"}),
    )
    .await;
    let d = login(&app, &e, "carol", json!({})).await;
    let (s, r) = app
        .post(
            "/v1/tenants/acme/logins/enroll/email",
            &e.key,
            json!({"pending_token": d["pending"]["token"], "destination": "carol@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let code = app.next_code("carol@example.com").await;
    let (_, r) = app
        .post("/v1/tenants/acme/logins/enroll/confirm", &e.key, json!({"pending_token": d["pending"]["token"], "factor_id": r["factor"]["id"], "code": code}))
        .await;
    assert_eq!(r["verified"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_receive_signed_events_through_the_outbox_with_retries() {
    let receiver = twofold_testkit::MockHttp::start().await;
    receiver.answer(503, "{}");
    let app = spawn_app_with(|c| {
        c.delivery.poll_interval_ms = 50;
        // The receiver runs on this machine; production refuses that (see the next test).
        c.delivery.allow_private_webhooks = true;
    })
    .await;
    let e = setup(&app).await;
    for (body, want) in [
        (
            json!({"url": "http://hooks.example.com/x", "events": ["login.decided"]}),
            "url",
        ),
        (
            json!({"url": format!("{}/hook", receiver.base_url), "events": ["nope"]}),
            "events",
        ),
        (
            json!({"url": format!("{}/hook", receiver.base_url), "events": []}),
            "events",
        ),
    ] {
        let (s, r) = app.post("/v1/tenants/acme/webhooks", &e.key, body).await;
        assert_eq!(
            (s, r["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(want)),
            "{r}"
        );
    }
    let (s, created) = app
        .post(
            "/v1/tenants/acme/webhooks",
            &e.key,
            json!({"url": format!("{}/hook", receiver.base_url), "events": ["login.decided", "session.revoked"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    let (_, list) = app.get("/v1/tenants/acme/webhooks", &e.key).await;
    assert!(
        !list.to_string().contains(&secret),
        "the secret is shown once"
    );

    let d = login(&app, &e, "alice", json!({})).await;
    assert_eq!(d["decision"], "allow");
    // The receiver answers 503 first: the event is retried after the backoff.
    let wait = |n: usize| {
        let receiver = &receiver;
        async move {
            for _ in 0..200 {
                if receiver.requests().len() >= n {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!(
                "expected {n} webhook requests, got {}",
                receiver.requests().len()
            );
        }
    };
    wait(1).await;
    app.advance_secs(60);
    wait(2).await;
    let r = &receiver.requests()[1];
    let body = std::str::from_utf8(&r.body).unwrap().to_string();
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (event["event"].as_str(), event["data"]["user"].as_str()),
        (Some("login.decided"), Some("alice"))
    );
    assert_eq!(event["data"]["decision"], "allow");
    assert_eq!(
        r.header("x-twofold-event").as_deref(),
        Some("login.decided")
    );
    assert_eq!(
        r.header("idempotency-key"),
        event["id"].as_str().map(String::from)
    );
    assert_eq!(
        receiver.requests()[0].body,
        r.body,
        "a retry sends the same event"
    );
    let ts = r.header("x-twofold-timestamp").unwrap();
    let expected = twofold_delivery::sms::webhook_signature(secret.as_bytes(), &ts, &r.body);
    assert_eq!(r.header("x-twofold-signature"), Some(expected));

    // Signing out everywhere is an event too; a factor enrolment is not subscribed.
    app.post(
        "/v1/tenants/acme/users/alice/sign-out-everywhere",
        &e.key,
        json!({}),
    )
    .await;
    wait(3).await;
    let last: Value = serde_json::from_slice(&receiver.requests()[2].body).unwrap();
    assert_eq!(
        (last["event"].as_str(), last["data"]["all"].as_bool()),
        (Some("session.revoked"), Some(true))
    );
    let id = created["webhook"]["id"].as_str().unwrap();
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/webhooks/{id}"),
            Some(&e.key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    login(&app, &e, "alice", json!({})).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        receiver.requests().len(),
        3,
        "no events after the webhook is deleted"
    );
}

#[tokio::test]
async fn a_pending_token_is_refused_everywhere_but_its_second_step() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    set_policy(&app, &e, required(json!({}))).await;
    let d = login(&app, &e, "alice", json!({})).await;
    let pending = d["pending"]["token"].as_str().unwrap().to_string();
    let f = &e.factor_id;
    let endpoints: Vec<(Method, String)> = vec![
        (Method::GET, "/v1/tenants/acme".into()),
        (Method::GET, "/v1/tenants/acme/users/alice".into()),
        (Method::GET, "/v1/tenants/acme/users/alice/factors".into()),
        (Method::POST, "/v1/tenants/acme/users/alice/verify".into()),
        (
            Method::POST,
            "/v1/tenants/acme/users/alice/factors/totp".into(),
        ),
        (
            Method::POST,
            format!("/v1/tenants/acme/users/alice/factors/{f}/disable"),
        ),
        (
            Method::DELETE,
            format!("/v1/tenants/acme/users/alice/factors/{f}"),
        ),
        (Method::GET, "/v1/tenants/acme/users/alice/sessions".into()),
        (Method::POST, "/v1/tenants/acme/logins".into()),
        (Method::POST, "/v1/tenants/acme/logins/verify".into()),
        (Method::POST, "/v1/tenants/acme/sessions/introspect".into()),
        (Method::GET, "/v1/tenants/acme/policy".into()),
        (Method::POST, "/v1/tenants/acme/policy/proposals".into()),
        (Method::GET, "/v1/tenants/acme/audit".into()),
        (Method::GET, "/metrics".into()),
    ];
    for (method, path) in endpoints {
        let (s, r) = app
            .call(
                method.clone(),
                &path,
                Some(&pending),
                Some(json!({"code": "123456"})),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path} → {r}");
    }
    // Where it belongs (with the integrator's key), it works.
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let r = step(&app, &e, &d, &code, json!({})).await;
    assert_eq!(r["verified"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_cannot_reach_private_addresses() {
    let receiver = twofold_testkit::MockHttp::start().await;
    let app = spawn_app_with(|c| c.delivery.poll_interval_ms = 50).await;
    let e = setup(&app).await;
    let (s, _) = app
        .post(
            "/v1/tenants/acme/webhooks",
            &e.key,
            json!({"url": format!("{}/hook", receiver.base_url), "events": ["login.decided"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    login(&app, &e, "alice", json!({})).await;
    let mut failed = Value::Null;
    for _ in 0..200 {
        let (_, page) = app
            .get("/v1/tenants/acme/outbox?status=failed", &e.key)
            .await;
        if let Some(m) = page["messages"].as_array().and_then(|m| m.first()) {
            failed = m.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(failed["channel"], "webhook", "{failed}");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap()
            .contains("non-public"),
        "{failed}"
    );
    assert!(
        receiver.requests().is_empty(),
        "nothing reached the private address"
    );
}

#[tokio::test]
async fn wrong_admin_confirmations_are_limited_per_admin() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    let propose = || {
        let app = &app;
        let key = e.key.clone();
        async move {
            let (s, p) = app
                .post(
                    "/v1/tenants/acme/policy/proposals",
                    &key,
                    json!({"admin": "boss", "policy": required(json!({}))}),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{p}");
            let code = app.next_code("boss@example.com").await;
            (p["id"].as_str().unwrap().to_string(), code)
        }
    };
    let (id, code) = propose().await;
    let url = format!("/v1/tenants/acme/policy/proposals/{id}/confirm");
    for _ in 0..20 {
        let (s, r) = app
            .post(&url, &e.key, json!({"code": a_wrong(&code)}))
            .await;
        assert_eq!((s, r["confirmed"].as_bool()), (StatusCode::OK, Some(false)));
    }
    // Even the right code of a fresh proposal is refused for the rest of the day.
    app.advance_secs(31);
    let (id, code) = propose().await;
    let url = format!("/v1/tenants/acme/policy/proposals/{id}/confirm");
    let (s, r) = app.post(&url, &e.key, json!({"code": code})).await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::TOO_MANY_REQUESTS, Some("too_many_attempts"))
    );
    let (_, p) = app.get("/v1/tenants/acme/policy", &e.key).await;
    assert_eq!(p["version"], 0);
}

#[tokio::test]
async fn a_later_deadline_postpones_the_revocation_of_sessions() {
    let app = spawn_app_with(|c| c.sessions.idle_minutes = 24 * 60).await;
    let e = setup(&app).await;
    app.user("acme", &e.key, "bob").await;
    let before = login(&app, &e, "bob", json!({})).await;
    let hour = 3_600_000;
    let policy =
        |at: i64| required(json!({"mandatory_from": at, "revoke_sessions_after_hours": 0}));
    set_policy(&app, &e, policy(START_MS + hour)).await;
    app.advance_secs(60);
    set_policy(&app, &e, policy(START_MS + 10 * hour)).await;
    let token = before["session"]["token"].clone();
    app.clock.set_ms(START_MS + 2 * hour);
    // Let the job runner (polling every 500 ms) see the new time.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = introspect(&app, &e, &token).await;
    assert_eq!(r["active"], true, "the first deadline no longer holds");
    app.clock.set_ms(START_MS + 10 * hour + 1);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = introspect(&app, &e, &token).await;
    assert_eq!(r["active"], false, "revoked at the new deadline");
}

/// The rollout report and the filtered user list follow the current policy and the clock:
/// the view an admin watches while 2FA becomes mandatory.
#[tokio::test]
async fn the_rollout_report_and_user_statuses_follow_the_policy_and_the_deadline() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    async fn report(app: &TestApp, e: &Enrolled) -> Value {
        let (s, r) = app.get("/v1/tenants/acme/rollout", &e.key).await;
        assert_eq!(s, StatusCode::OK, "{r}");
        r
    }
    // 2FA off: nobody is in scope, but alice's factor is counted by method.
    let r = report(&app, &e).await;
    assert_eq!(
        (&r["total"], &r["not_required"], &r["by_method"]["totp"]),
        (&json!(2), &json!(2), &json!(1)),
        "{r}"
    );
    assert_eq!(
        (&r["deadline"], &r["progress_percent"]),
        (&Value::Null, &Value::Null)
    );

    for (ext, profile) in [
        ("carol", "staff"),
        ("dave", "staff"),
        ("erin", "contractor"),
    ] {
        let (s, b) = app
            .post(
                "/v1/tenants/acme/users",
                &e.key,
                json!({"external_id": ext, "profile": profile}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let deadline = app.now_secs() as i64 * 1000 + 3 * 86_400_000;
    set_policy(
        &app,
        &e,
        required(json!({
            "enforcement": {"mode": "required_for_profiles", "profiles": ["staff"]},
            "mandatory_from": deadline,
        })),
    )
    .await;
    let r = report(&app, &e).await;
    // alice enrolled (she is challenged although her profile is not listed); carol and dave
    // pending; boss and erin not required.
    assert_eq!(
        [
            &r["total"],
            &r["enrolled"],
            &r["pending"],
            &r["overdue"],
            &r["not_required"]
        ],
        [&json!(5), &json!(1), &json!(2), &json!(0), &json!(2)],
        "{r}"
    );
    assert_eq!(
        (&r["deadline"], &r["days_left"]),
        (&json!(deadline), &json!(3))
    );
    assert_eq!(r["progress_percent"], json!(33.3));

    let (s, alice) = app.get("/v1/tenants/acme/users/alice", &e.key).await;
    assert_eq!(s, StatusCode::OK, "{alice}");
    assert_eq!(
        alice["two_factor"],
        json!({"status": "enrolled", "methods": ["totp"]})
    );
    assert_eq!(
        alice["external_id"], "alice",
        "the user's fields stay at the top level"
    );

    // A filtered listing pages through the matching users only.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            None => "/v1/tenants/acme/users?status=pending&limit=1".to_string(),
            Some(c) => format!("/v1/tenants/acme/users?status=pending&limit=1&cursor={c}"),
        };
        let (s, page) = app.get(&path, &e.key).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        for u in page["users"].as_array().unwrap() {
            assert_eq!(u["two_factor"]["status"], "pending", "{u}");
            seen.push(u["external_id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ["carol", "dave"]);

    // At the deadline the pending users are overdue: their next login must enrol.
    app.advance_secs(3 * 86_400);
    let r = report(&app, &e).await;
    assert_eq!(
        [&r["pending"], &r["overdue"], &r["days_left"]],
        [&json!(0), &json!(2), &json!(0)],
        "{r}"
    );
    let (s, page) = app
        .get("/v1/tenants/acme/users?status=overdue", &e.key)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["users"].as_array().unwrap().len(), 2, "{page}");

    // Bad input and other tenants' keys.
    let (s, b) = app.get("/v1/tenants/acme/users?status=late", &e.key).await;
    assert_eq!(
        (s, err(&b)),
        (StatusCode::BAD_REQUEST, Some("invalid_field")),
        "{b}"
    );
    let other = app.tenant("beta").await;
    let (s, b) = app.get("/v1/tenants/acme/rollout", &other).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
}
