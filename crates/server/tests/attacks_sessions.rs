//! SECURITY.md's attacks on the second step and its results, against the running server:
//! pending tokens used as sessions and force-browsing past the second step (INV-04), enrolling
//! from a pending login, stale sessions and remembered-device tokens after a credential change
//! (INV-06), other users' and tenants' ids, and sensitive changes with only a session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::attacks::*;
use common::logins::*;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A session and a remembered-device token from a completed challenge of alice.
async fn signed_in(app: &TestApp, e: &Enrolled) -> (Value, String) {
    let d = login(app, e, "alice", json!({})).await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let r = step(app, e, &d, &code, json!({"remember_device": true})).await;
    assert_eq!(r["verified"], true, "{r}");
    app.advance_secs(30);
    (
        r["session"]["token"].clone(),
        r["device"]["token"].as_str().unwrap().to_string(),
    )
}

/// Whether the session is alive and the device still skips the challenge.
async fn alive(app: &TestApp, e: &Enrolled, session: &Value, device: &str) -> (bool, bool) {
    let s = introspect(app, e, session).await["active"] == true;
    let d = login(app, e, "alice", json!({ "device_token": device })).await;
    (s, d["reason"] == "trusted_device")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_token_is_no_session_and_cannot_force_browse_past_the_second_step() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    require_2fa(&app, &e).await;
    let pending = pending_login(&app, &e).await;
    // Not a session: introspection says inactive, every session endpoint refuses it as a key.
    assert_eq!(introspect(&app, &e, &json!(pending)).await["active"], false);
    for (method, path) in [
        (Method::GET, "/v1/tenants/acme/users/alice/sessions"),
        (
            Method::POST,
            "/v1/tenants/acme/users/alice/sign-out-everywhere",
        ),
        (Method::GET, "/v1/tenants/acme/users/alice/devices"),
        (Method::POST, "/v1/tenants/acme/sessions/introspect"),
        (Method::POST, "/v1/tenants/acme/users/alice/recovery-codes"),
        (Method::POST, "/v1/tenants/acme/users/alice/app-passwords"),
        (Method::POST, "/v1/tenants/acme/logins/recover"),
    ] {
        let r = raw_call(&app, method.clone(), &pending, path, Some("{}")).await;
        assert_eq!(r.status, 401, "{method} {path}: {r:?}");
    }
    // Skipping the second step where 2FA is required, or completing it elsewhere, fails.
    let (s, r) = app
        .post(
            "/v1/tenants/acme/logins/skip",
            &e.key,
            json!({ "pending_token": pending }),
        )
        .await;
    assert!(s.is_client_error() && r.get("session").is_none(), "{r}");
    // An enrolment login (bob has no factor) cannot be finished with alice's code or
    // recovery code, and alice's challenge cannot enrol a factor nor confirm one made aside.
    app.user("acme", &e.key, "bob").await;
    let bob = login(&app, &e, "bob", json!({})).await;
    assert_eq!(bob["decision"], "enroll_required");
    let bob_pending = bob["pending"]["token"].as_str().unwrap();
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    for (path, body) in [
        (
            "/v1/tenants/acme/logins/verify",
            json!({"pending_token": bob_pending, "code": code}),
        ),
        (
            "/v1/tenants/acme/logins/verify",
            json!({"pending_token": bob_pending, "code": code, "factor_id": e.factor_id}),
        ),
        (
            "/v1/tenants/acme/logins/recover",
            json!({"pending_token": bob_pending, "recovery_code": e.recovery_codes[0]}),
        ),
        (
            "/v1/tenants/acme/logins/enroll/totp",
            json!({ "pending_token": pending }),
        ),
        (
            "/v1/tenants/acme/logins/enroll/sms",
            json!({"pending_token": pending, "destination": ALICE_PHONE}),
        ),
    ] {
        let (s, r) = app.post(path, &e.key, body.clone()).await;
        assert!(
            r.get("session").is_none() && r.get("factor_id").is_none() && s != StatusCode::CREATED,
            "{path} {body} → {s} {r}"
        );
        assert!(
            s.is_client_error() || r["verified"] == false,
            "{path} → {s} {r}"
        );
    }
    let aside = app.pending("acme", &e.key, "alice").await;
    let (s, r) = app
        .post(
            "/v1/tenants/acme/logins/enroll/confirm",
            &e.key,
            json!({"pending_token": pending, "factor_id": aside.factor_id,
                   "code": app.code_at_offset(&aside.secret, &aside.params, 0)}),
        )
        .await;
    assert!(s.is_client_error() && r.get("session").is_none(), "{s} {r}");
    // A tampered pending token is an unknown one.
    let flipped = unknown_like(&pending);
    let (s1, r1) = app
        .post(
            "/v1/tenants/acme/logins/verify",
            &e.key,
            json!({"pending_token": flipped, "code": code}),
        )
        .await;
    let (s2, r2) = app
        .post(
            "/v1/tenants/acme/logins/verify",
            &e.key,
            json!({"pending_token": "tfp_nothing", "code": code}),
        )
        .await;
    assert_eq!((s1, err(&r1)), (s2, err(&r2)));
    assert_eq!(s1, StatusCode::CONFLICT);
    // Nobody got a session, and alice's own login still completes.
    let (_, list) = app.get("/v1/tenants/acme/users/bob/sessions", &e.key).await;
    assert_eq!(list["sessions"], json!([]));
    let r = step_of(&app, &e, &pending, &code).await;
    assert_eq!(r["verified"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_a_new_factor_from_a_pending_login_is_refused_when_one_exists() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    require_2fa(&app, &e).await;
    let pending = pending_login(&app, &e).await;
    for (kind, body) in [
        ("totp", json!({ "pending_token": pending })),
        (
            "sms",
            json!({"pending_token": pending, "destination": ALICE_PHONE}),
        ),
        (
            "email",
            json!({"pending_token": pending, "destination": ALICE_CODES}),
        ),
    ] {
        let (s, r) = app
            .post(
                &format!("/v1/tenants/acme/logins/enroll/{kind}"),
                &e.key,
                body,
            )
            .await;
        assert_eq!(
            (s, err(&r)),
            (StatusCode::CONFLICT, Some("not_an_enrolment")),
            "{kind}: {r}"
        );
    }
    let (_, f) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(
        f["factors"].as_array().unwrap().len(),
        1,
        "nothing was added"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_sessions_and_device_tokens_die_after_a_factor_removal_a_phone_change_or_a_reset() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    let sms = active_sms(&app, &e.key).await;
    let spare = another_totp(&app, &e).await;
    require_2fa(&app, &e).await;

    // Adding a factor kills nothing.
    let (session, device) = signed_in(&app, &e).await;
    let _ = another_totp(&app, &e).await;
    assert_eq!(alive(&app, &e, &session, &device).await, (true, true));

    // Removing a factor (with a fresh code from another) kills both.
    let (_, r) = app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{}/disable", spare.factor_id),
            &e.key,
            json!({"code": app.code_at_offset(&e.secret, &e.params, 0), "code_factor_id": e.factor_id}),
        )
        .await;
    assert_eq!(r["disabled"], true, "{r}");
    app.advance_secs(30);
    assert_eq!(alive(&app, &e, &session, &device).await, (false, false));

    // A phone change kills both.
    let (session, device) = signed_in(&app, &e).await;
    let base = format!("/v1/tenants/acme/users/alice/factors/{sms}/phone-change");
    let (_, started) = app
        .post(&base, &e.key, json!({ "new_phone": NEW_PHONE }))
        .await;
    let confirm = format!(
        "{base}/{}/confirm",
        started["change"]["id"].as_str().unwrap()
    );
    let old = app.next_code(ALICE_PHONE).await;
    let (_, r) = app.post(&confirm, &e.key, json!({ "code": old })).await;
    assert_eq!(r["accepted"], true, "{r}");
    let new = app.next_code(NEW_PHONE).await;
    let (_, r) = app.post(&confirm, &e.key, json!({ "code": new })).await;
    assert_eq!(r["change"]["state"], "done", "{r}");
    assert_eq!(alive(&app, &e, &session, &device).await, (false, false));

    // An operator reset kills both.
    let (session, device) = signed_in(&app, &e).await;
    let (s, r) = app
        .post(
            "/v1/tenants/acme/users/alice/disable-2fa",
            &app.operator_key,
            json!({}),
        )
        .await;
    assert!(s.is_success(), "{r}");
    let still = introspect(&app, &e, &session).await["active"] == true;
    let d = login(&app, &e, "alice", json!({ "device_token": device })).await;
    assert!(!still && d["reason"] != "trusted_device", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_tokens_of_another_user_revoked_forged_or_tampered_skip_nothing() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    require_2fa(&app, &e).await;
    let (_, device) = signed_in(&app, &e).await;
    // Bob, with his own factor, cannot use alice's token.
    app.user("acme", &e.key, "bob").await;
    let bob = app.pending("acme", &e.key, "bob").await;
    let (_, c) = app
        .confirm(&bob, &app.code_at_offset(&bob.secret, &bob.params, 0))
        .await;
    assert_eq!(c["confirmed"], true);
    let d = login(&app, &e, "bob", json!({ "device_token": device })).await;
    assert_eq!(d["decision"], "challenge", "{d}");
    // Forged and tampered tokens are not trusted, however they look.
    let mut tampered: Vec<String> = (4..device.len())
        .step_by(7)
        .map(|i| {
            let mut t = device.clone().into_bytes();
            t[i] = if t[i] == b'a' { b'b' } else { b'a' };
            String::from_utf8(t).unwrap()
        })
        .collect();
    tampered.extend([
        "tfd_".to_string(),
        "tfd_forged".to_string(),
        format!("{device}x"),
        device.to_uppercase(),
        format!("tfd_{}", "a".repeat(4096)),
    ]);
    for t in &tampered {
        let d = login(&app, &e, "alice", json!({ "device_token": t })).await;
        assert_eq!(d["decision"], "challenge", "{t}: {d}");
    }
    // Another tenant's user of the same name is not alice.
    let other = app.tenant("other").await;
    app.user("other", &other, "alice").await;
    let (_, d) = app
        .post(
            "/v1/tenants/other/logins",
            &other,
            json!({"user": "alice", "primary": "password", "device_token": device}),
        )
        .await;
    assert_ne!(d["reason"], "trusted_device", "{d}");
    // Revoked: the device is no longer trusted.
    let d = login(&app, &e, "alice", json!({ "device_token": device })).await;
    assert_eq!(d["reason"], "trusted_device");
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/devices", &e.key)
        .await;
    let id = list["devices"][0]["id"].as_str().unwrap();
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/users/alice/devices/{id}"),
            Some(&e.key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let d = login(&app, &e, "alice", json!({ "device_token": device })).await;
    assert_eq!(d["decision"], "challenge", "{d}");
}

/// Everything of alice's in tenant acme that has an id.
struct Ids {
    factor: String,
    sms: String,
    change: String,
    session: String,
    device: String,
    app_password: String,
    proposal: String,
}

async fn ids_of_alice(app: &TestApp, e: &Enrolled) -> Ids {
    let sms = active_sms(app, &e.key).await;
    require_2fa(app, e).await;
    let (_, _) = signed_in(app, e).await;
    let (_, sessions) = app
        .get("/v1/tenants/acme/users/alice/sessions", &e.key)
        .await;
    let (_, devices) = app
        .get("/v1/tenants/acme/users/alice/devices", &e.key)
        .await;
    let (_, ap) = app
        .post(
            "/v1/tenants/acme/users/alice/app-passwords",
            &e.key,
            json!({"client_id": "imap", "recovery_code": e.recovery_codes[9]}),
        )
        .await;
    assert_eq!(ap["verified"], true, "{ap}");
    let (_, change) = app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{sms}/phone-change"),
            &e.key,
            json!({ "new_phone": NEW_PHONE }),
        )
        .await;
    let (_, p) = app
        .post(
            "/v1/tenants/acme/policy/proposals",
            &e.key,
            json!({"admin": "boss", "policy": required(json!({"skip_hours": 2}))}),
        )
        .await;
    let s = |v: &Value| v.as_str().unwrap().to_string();
    Ids {
        factor: e.factor_id.clone(),
        sms,
        change: s(&change["change"]["id"]),
        session: s(&sessions["sessions"][0]["id"]),
        device: s(&devices["devices"][0]["id"]),
        app_password: s(&ap["id"]),
        proposal: s(&p["id"]),
    }
}

/// Every endpoint that takes an id, as `(method, path, body)` for the user path `u`.
fn id_endpoints(t: &str, u: &str, ids: &Ids) -> Vec<(Method, String, Option<String>)> {
    let f = format!("{u}/factors/{}", ids.factor);
    let pc = format!("{u}/factors/{}/phone-change/{}", ids.sms, ids.change);
    let code = r#"{"code":"123456"}"#.to_string();
    vec![
        (Method::POST, format!("{f}/confirm"), Some(code.clone())),
        (
            Method::POST,
            format!("{f}/resync"),
            Some(r#"{"code1":"123456","code2":"654321"}"#.into()),
        ),
        (Method::POST, format!("{f}/disable"), Some(code.clone())),
        (Method::POST, format!("{f}/send-code"), Some("{}".into())),
        (Method::POST, format!("{f}/unlock"), Some("{}".into())),
        (Method::DELETE, f.clone(), None),
        (
            Method::POST,
            format!("{u}/factors/{}/phone-change", ids.sms),
            Some(format!(r#"{{"new_phone":"{NEW_PHONE}"}}"#)),
        ),
        (Method::GET, pc.clone(), None),
        (Method::POST, format!("{pc}/confirm"), Some(code.clone())),
        (Method::POST, format!("{pc}/resend"), Some("{}".into())),
        (
            Method::POST,
            format!("{u}/verify"),
            Some(format!(r#"{{"code":"123456","factor_id":"{}"}}"#, ids.sms)),
        ),
        (
            Method::POST,
            format!("{u}/recovery-codes"),
            Some(format!(
                r#"{{"code":"123456","code_factor_id":"{}"}}"#,
                ids.factor
            )),
        ),
        (
            Method::DELETE,
            format!("{u}/sessions/{}", ids.session),
            None,
        ),
        (Method::DELETE, format!("{u}/devices/{}", ids.device), None),
        (
            Method::DELETE,
            format!("{u}/app-passwords/{}", ids.app_password),
            None,
        ),
        (
            Method::POST,
            format!("/v1/tenants/{t}/policy/proposals/{}/confirm", ids.proposal),
            Some(code),
        ),
    ]
}

/// The same ids with their last character changed: ids that name nothing.
fn unknown_ids(ids: &Ids) -> Ids {
    Ids {
        factor: unknown_like(&ids.factor),
        sms: unknown_like(&ids.sms),
        change: unknown_like(&ids.change),
        session: unknown_like(&ids.session),
        device: unknown_like(&ids.device),
        app_password: unknown_like(&ids.app_password),
        proposal: unknown_like(&ids.proposal),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_or_another_users_ids_answer_404_exactly_like_unknown_ids() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    let ids = ids_of_alice(&app, &e).await;
    let unknown = unknown_ids(&ids);
    let other = app.tenant("other").await;
    app.user("other", &other, "alice").await;
    app.user("acme", &e.key, "bob").await;
    let cases = [
        // Another tenant's key, on its own tenant, with acme's ids.
        (other.clone(), "other", "/v1/tenants/other/users/alice"),
        // Another tenant's key on acme's paths.
        (other.clone(), "acme", "/v1/tenants/acme/users/alice"),
        // This tenant's key, alice's ids under bob.
        (e.key.clone(), "acme", "/v1/tenants/acme/users/bob"),
    ];
    for (key, t, u) in cases {
        let real = id_endpoints(t, u, &ids);
        let fake = id_endpoints(t, u, &unknown);
        for ((method, path, body), (_, fake_path, _)) in real.into_iter().zip(fake) {
            if u.ends_with("/bob") && path.contains("/policy/") {
                continue; // a proposal belongs to the tenant, not to a user
            }
            let got = raw_call(&app, method.clone(), &key, &path, body.as_deref()).await;
            let none = raw_call(&app, method.clone(), &key, &fake_path, body.as_deref()).await;
            // An id in the path is not found; one in the body (the factor a proof comes
            // from) is refused as that field; either way exactly like an unknown id.
            if !path.ends_with("/recovery-codes") {
                assert_eq!(got.status, 404, "{method} {path}: {got:?}");
            } else {
                assert!((400..500).contains(&got.status), "{path}: {got:?}");
            }
            assert_eq!(got, none, "{method} {path}: like an unknown id");
        }
    }
    // Nothing of alice's moved.
    let (_, f) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(f["factors"].as_array().unwrap().len(), 2, "{f}");
    let (_, sessions) = app
        .get("/v1/tenants/acme/users/alice/sessions", &e.key)
        .await;
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 1);
    let (_, p) = app.get("/v1/tenants/acme/policy", &e.key).await;
    assert_eq!(p["version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_2fa_or_changing_the_phone_with_only_a_session_or_another_users_id_is_refused() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    let sms = active_sms(&app, &e.key).await;
    require_2fa(&app, &e).await;
    let (session, _) = signed_in(&app, &e).await;
    let session = session.as_str().unwrap();
    let f = format!("/v1/tenants/acme/users/alice/factors/{sms}");
    // A session is not a key: every change refuses it.
    for (method, path, body) in [
        (Method::POST, format!("{f}/disable"), Some("{}")),
        (Method::DELETE, f.clone(), None),
        (
            Method::POST,
            format!("{f}/phone-change"),
            Some(r#"{"new_phone":"+447700900999"}"#),
        ),
        (
            Method::POST,
            "/v1/tenants/acme/users/alice/disable-2fa".into(),
            Some("{}"),
        ),
    ] {
        let r = raw_call(&app, method.clone(), session, &path, body).await;
        assert_eq!(r.status, 401, "{method} {path}: {r:?}");
    }
    // The key alone cannot remove an active factor nor switch 2FA off.
    let (s, r) = app.call(Method::DELETE, &f, Some(&e.key), None).await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("fresh_code_required"))
    );
    let (s, _) = app
        .post(
            "/v1/tenants/acme/users/alice/disable-2fa",
            &e.key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Bob's own fresh code does not remove alice's factor, under either user's path.
    app.user("acme", &e.key, "bob").await;
    let bob = another_user_totp(&app, &e, "bob").await;
    let code = app.code_at_offset(&bob.secret, &bob.params, 0);
    let disable = |user: &str| format!("/v1/tenants/acme/users/{user}/factors/{sms}/disable");
    let proof = json!({"code": code, "code_factor_id": bob.factor_id});
    let (s, r) = app.post(&disable("alice"), &e.key, proof.clone()).await;
    assert_eq!(
        (s, r["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("code_factor_id")),
        "{r}"
    );
    let (s, r) = app.post(&disable("bob"), &e.key, proof).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{r}");
    // Nor does bob start a change of alice's number through his own path.
    let (s, r) = app
        .post(
            &format!("/v1/tenants/acme/users/bob/factors/{sms}/phone-change"),
            &e.key,
            json!({ "new_phone": NEW_PHONE }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{r}");
    // Nor does bob's recovery code.
    let (_, r) = app
        .post(
            &format!("{f}/disable"),
            &e.key,
            json!({ "recovery_code": bob.recovery_codes[0] }),
        )
        .await;
    assert_eq!(r["disabled"], false, "{r}");
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(list["factors"].as_array().unwrap().len(), 2);
}

/// `user` of acme with a confirmed TOTP factor and recovery codes.
async fn another_user_totp(app: &TestApp, e: &Enrolled, user: &str) -> Enrolled {
    let mut f = app.pending("acme", &e.key, user).await;
    let (_, c) = app
        .confirm(&f, &app.code_at_offset(&f.secret, &f.params, 0))
        .await;
    assert_eq!(c["confirmed"], true);
    f.recovery_codes = c["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    app.advance_secs(30);
    f
}

/// "Does this phone or address exist" across tenants (Authy 2024): enrolling alice's number
/// and address at another tenant answers like a number and an address nobody uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_or_address_in_use_at_one_tenant_is_not_revealed_at_another() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    active_sms(&app, &e.key).await;
    active_email(&app, &e.key).await;
    let other = app.tenant("other").await;
    let shape = |v: &Value| {
        let mut keys: Vec<String> = v["factor"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        (
            keys,
            v["factor"]["status"].clone(),
            v["code_sent"]["channel"].clone(),
        )
    };
    for (kind, field, used, unused) in [
        ("sms", "phone", ALICE_PHONE, "+447700900555"),
        ("email", "email", ALICE_CODES, "nobody@example.com"),
    ] {
        let mut answers = Vec::new();
        for (user, value) in [("u1", used), ("u2", unused)] {
            app.user("other", &other, &format!("{kind}{user}")).await;
            let (s, r) = app
                .post(
                    &format!("/v1/tenants/other/users/{kind}{user}/factors/{kind}"),
                    &other,
                    json!({ field: value }),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{r}");
            answers.push(shape(&r));
        }
        assert_eq!(answers[0], answers[1], "{kind}");
    }
}
