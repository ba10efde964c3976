//! SMS and email factors, one-time codes, the phone change, security notices, sending caps and
//! the outbox, through the HTTP API with the development outbox as the delivery channel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ALICE_PHONE: &str = "+447700900123";
const NEW_PHONE: &str = "+447700900999";

fn err(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

/// Tenant `acme` with user `alice` (alice@example.com); returns its key.
async fn acme(app: &TestApp) -> String {
    let key = app.tenant("acme").await;
    app.user("acme", &key, "alice").await;
    key
}

async fn enrol_sms(app: &TestApp, key: &str, phone: &str) -> (String, Value) {
    let (s, body) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/sms",
            key,
            json!({ "phone": phone }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    (body["factor"]["id"].as_str().unwrap().to_string(), body)
}

async fn confirm(app: &TestApp, key: &str, factor: &str, code: &str) -> bool {
    let (s, body) = app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{factor}/confirm"),
            key,
            json!({ "code": code }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["confirmed"].as_bool().unwrap()
}

async fn verify(app: &TestApp, key: &str, factor: &str, code: &str) -> bool {
    let (s, body) = app
        .post(
            "/v1/tenants/acme/users/alice/verify",
            key,
            json!({ "code": code, "factor_id": factor }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["verified"].as_bool().unwrap()
}

async fn send_code(app: &TestApp, key: &str, factor: &str, body: Value) -> (StatusCode, Value) {
    app.post(
        &format!("/v1/tenants/acme/users/alice/factors/{factor}/send-code"),
        key,
        body,
    )
    .await
}

/// An active SMS factor for alice, with the notice of its addition consumed.
async fn active_sms(app: &TestApp, key: &str) -> String {
    let (factor, _) = enrol_sms(app, key, ALICE_PHONE).await;
    let code = app.next_code(ALICE_PHONE).await;
    assert!(confirm(app, key, &factor, &code).await);
    app.next_notice("alice@example.com").await;
    factor
}

fn a_wrong(code: &str) -> String {
    format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000)
}

#[tokio::test]
async fn sms_enrolment_confirm_verify_and_the_added_notice() {
    let app = spawn_app().await;
    let key = acme(&app).await;
    let (factor, body) = enrol_sms(&app, &key, ALICE_PHONE).await;
    assert_eq!(body["factor"]["kind"], "sms");
    assert_eq!(body["factor"]["status"], "pending");
    assert_eq!(body["factor"]["destination"], "+44•••••••123");
    assert_eq!(body["code_sent"]["channel"], "sms");
    assert!(!body.to_string().contains("7700900"), "{body}");

    let sms = app.next_message(ALICE_PHONE).await;
    let code = sms.code().expect("the SMS carries a code");
    // A pending factor does not verify, even with its enrolment code.
    assert!(!verify(&app, &key, &factor, &code).await);
    assert!(confirm(&app, &key, &factor, &code).await);
    // Used once: the same code does not confirm again.
    assert!(!confirm(&app, &key, &factor, &code).await);

    let notice = app.next_notice("alice@example.com").await;
    assert!(notice.text.contains("added"), "{}", notice.text);
    assert!(notice.text.contains("+44•••••••123"), "{}", notice.text);
    assert!(!notice.text.contains(ALICE_PHONE));
    assert_eq!(notice.code(), None, "a notice never carries a code");
    assert!(
        notice.text.contains("2026-11-26"),
        "says when: {}",
        notice.text
    );
    assert!(
        notice.text.contains("127.0.0.1"),
        "says from where: {}",
        notice.text
    );

    // Sign in with a code sent on request.
    let (s, r) = send_code(&app, &key, &factor, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["destination"], "+44•••••••123");
    let code = app.next_code(ALICE_PHONE).await;
    assert!(verify(&app, &key, &factor, &code).await);
    assert!(!verify(&app, &key, &factor, &code).await, "replayed");

    let (_, f) = app.get("/v1/tenants/acme/users/alice/factors", &key).await;
    assert_eq!(f["factors"][0]["status"], "active");
    let reasons: Vec<Value> = app
        .audit_of("acme", &key, "action=sms.verify")
        .await
        .iter()
        .map(|e| json!([e["outcome"], e["reason"]]))
        .collect();
    assert_eq!(
        reasons,
        vec![
            json!(["denied", "replayed"]),
            json!(["ok", null]),
            json!(["denied", "no_code"])
        ]
    );
}

#[tokio::test]
async fn email_codes_expire_die_after_five_tries_and_only_the_newest_counts() {
    let app = spawn_app().await;
    let key = acme(&app).await;
    let (s, body) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/email",
            &key,
            json!({ "email": "Alice.Work@Example.org" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["factor"]["destination"], "A••••@example.org");
    let factor = body["factor"]["id"].as_str().unwrap().to_string();
    let mail = app.next_message("Alice.Work@example.org").await;
    assert!(mail.subject.is_some());
    assert!(mail
        .html
        .as_deref()
        .unwrap_or("")
        .contains(&mail.code().unwrap()));
    assert!(confirm(&app, &key, &factor, &mail.code().unwrap()).await);
    app.next_notice("alice@example.com").await;

    // Expiry: ten minutes, to the millisecond.
    send_code(&app, &key, &factor, json!({})).await;
    let code = app.next_code("Alice.Work@example.org").await;
    app.clock.advance_ms(10 * 60 * 1000);
    assert!(!verify(&app, &key, &factor, &code).await);

    // Only the newest code is valid.
    let (s, _) = send_code(&app, &key, &factor, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let older = app.next_code("Alice.Work@example.org").await;
    app.advance_secs(31);
    send_code(&app, &key, &factor, json!({})).await;
    let newest = app.next_code("Alice.Work@example.org").await;
    assert_ne!(older, newest);
    assert!(!verify(&app, &key, &factor, &older).await);
    assert!(verify(&app, &key, &factor, &newest).await);

    // Five wrong tries kill a code; asking again is refused until it expires, and the
    // factor's own attempt limit (backoff after five failures) is not reset by anything.
    // (A new hour first: five codes an hour may go to one address.)
    app.clock.set_ms(START_MS + 3_600_000);
    send_code(&app, &key, &factor, json!({})).await;
    let code = app.next_code("Alice.Work@example.org").await;
    for _ in 0..5 {
        assert!(!verify(&app, &key, &factor, &a_wrong(&code)).await);
    }
    assert!(
        !verify(&app, &key, &factor, &code).await,
        "dead after 5 tries"
    );
    app.advance_secs(31);
    let (s, body) = send_code(&app, &key, &factor, json!({})).await;
    assert_eq!(
        (s, err(&body)),
        (StatusCode::TOO_MANY_REQUESTS, Some("code_exhausted"))
    );
    app.clock.advance_ms(10 * 60 * 1000);
    let (s, body) = send_code(&app, &key, &factor, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let code = app.next_code("Alice.Work@example.org").await;
    assert!(verify(&app, &key, &factor, &code).await);

    let reasons: Vec<String> = app
        .audit_of("acme", &key, "action=email.verify&limit=9")
        .await
        .iter()
        .map(|e| e["reason"].as_str().unwrap_or("ok").to_string())
        .collect();
    assert_eq!(reasons[0], "ok");
    // The right code after five wrong ones: dead, and the factor is backing off as well.
    assert!(
        ["throttled", "no_code"].contains(&reasons[1].as_str()),
        "{reasons:?}"
    );
    assert_eq!(reasons[2..7], ["wrong_code"; 5], "{reasons:?}");
    let all: Vec<String> = app
        .audit_of("acme", &key, "action=email.verify&limit=20")
        .await
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    assert!(all.contains(&"expired".to_string()), "{all:?}");
}

#[tokio::test]
async fn resend_cooldown_and_sending_caps_answer_429_with_retry_after() {
    let app = spawn_app().await;
    let key = acme(&app).await;
    let factor = active_sms(&app, &key).await;
    send_code(&app, &key, &factor, json!({})).await;
    let resp = app
        .client
        .post(format!(
            "{}/v1/tenants/acme/users/alice/factors/{factor}/send-code",
            app.base
        ))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "30");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(err(&body), Some("resend_too_soon"));

    // Per destination: 5 an hour (the enrolment code was the first).
    let mut sent = 2;
    loop {
        app.advance_secs(31);
        let (s, body) = send_code(&app, &key, &factor, json!({})).await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(err(&body), Some("send_limit_reached"), "{body}");
            // Which cap it was is for the audit log, not the caller.
            assert!(!body["error"]["message"].as_str().unwrap().contains("dest"));
            break;
        }
        assert_eq!(s, StatusCode::ACCEPTED, "{body}");
        sent += 1;
        assert!(sent <= 5, "the cap did not hold");
    }
    assert_eq!(sent, 5);
    // The window ends on the hour: 2026-11-26 00:00 + 1 h.
    app.clock.set_ms(START_MS + 3_600_000);
    let (s, body) = send_code(&app, &key, &factor, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");

    // Refusals are counted for operators.
    let (_, metrics) = app
        .call(Method::GET, "/metrics", Some(&app.operator_key), None)
        .await;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("twofold_code_sends_refused_total{reason=\"cooldown\"} 1"),
        "{text}"
    );
    assert!(text.contains("twofold_code_sends_refused_total{reason=\"limit_dest\"} 1"));
    assert!(text.contains("twofold_outbox_messages{status=\"pending\"}"));
}

#[tokio::test]
async fn sms_countries_are_allowed_per_tenant() {
    let app = spawn_app().await;
    let key = acme(&app).await;
    // +882 (international networks) is a classic toll-fraud range: not allowed by default.
    let (s, body) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/sms",
            &key,
            json!({ "phone": "+88216000000" }),
        )
        .await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("phone"))
    );
    let (s, _) = app.get("/v1/tenants/acme/users/alice/factors", &key).await;
    assert_eq!(s, StatusCode::OK);

    // Only an operator may change where SMS goes; the tenant key may name its sender.
    let put = |key: String, body: Value| {
        let app = &app;
        async move {
            app.call(
                Method::PUT,
                "/v1/tenants/acme/messaging",
                Some(&key),
                Some(body),
            )
            .await
        }
    };
    let (s, _) = put(key.clone(), json!({ "sms_countries": ["882"] })).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, settings) = put(key.clone(), json!({ "sender_name": "Acme Security" })).await;
    assert_eq!(s, StatusCode::OK, "{settings}");
    assert_eq!(settings["sms_countries_default"], true);
    let (s, settings) = put(
        app.operator_key.clone(),
        json!({ "sms_countries": ["+882", "44"] }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{settings}");
    assert_eq!(settings["sms_countries"], json!(["882", "44"]));
    assert_eq!(settings["sms_countries_default"], false);
    assert_eq!(
        settings["sender_name"], "Acme Security",
        "absent fields stay"
    );
    enrol_sms(&app, &key, "+88216000000").await;
    // The US is no longer on this tenant's list.
    let (s, _) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/sms",
            &key,
            json!({ "phone": "+14155550123" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The sender name shows on the tenant's emails.
    app.post(
        "/v1/tenants/acme/users/alice/factors/email",
        &key,
        json!({ "email": "alice@example.com" }),
    )
    .await;
    let mail = app.next_message("alice@example.com").await;
    assert!(mail.from.contains("Acme Security"), "{}", mail.from);

    for bad in [
        json!({"sms_countries": ["0"]}),
        json!({"sms_countries": ["1234567"]}),
        json!({"sms_countries": [""]}),
        json!({"sms_countries": "44"}),
        json!({"sender_name": ""}),
        json!({"sender_name": ["x"]}),
    ] {
        let (s, body) = put(app.operator_key.clone(), bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} → {body}");
    }
    // Back to the default: the pending +882 factor gets no more texts.
    let (s, settings) = put(app.operator_key.clone(), json!({ "sms_countries": null })).await;
    assert_eq!(
        (s, settings["sms_countries_default"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (_, f) = app.get("/v1/tenants/acme/users/alice/factors", &key).await;
    let pending = f["factors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "sms")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.advance_secs(31);
    let (s, r) = send_code(&app, &key, &pending, json!({})).await;
    assert_eq!(
        (s, r["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("phone"))
    );
}

#[tokio::test]
async fn phone_change_walks_old_then_new_then_swaps_and_notifies() {
    let app = spawn_app().await;
    let key = acme(&app).await;
    let factor = active_sms(&app, &key).await;
    let base = format!("/v1/tenants/acme/users/alice/factors/{factor}/phone-change");
    let (s, started) = app
        .post(&base, &key, json!({ "new_phone": NEW_PHONE }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{started}");
    assert_eq!(started["change"]["state"], "awaiting_old");
    assert_eq!(started["code_sent"]["destination"], "+44•••••••123");
    let change = started["change"]["id"].as_str().unwrap().to_string();
    let old_code = app.next_code(ALICE_PHONE).await;

    // A sign-in code is not a phone-change code, and a wrong code does not move the change.
    let confirm_url = format!("{base}/{change}/confirm");
    let (_, r) = app
        .post(&confirm_url, &key, json!({"code": a_wrong(&old_code)}))
        .await;
    assert_eq!(
        (r["accepted"].as_bool(), r["change"]["state"].as_str()),
        (Some(false), Some("awaiting_old"))
    );
    let (_, r) = app
        .post(&confirm_url, &key, json!({"code": old_code}))
        .await;
    assert_eq!(r["accepted"], true, "{r}");
    assert_eq!(r["change"]["state"], "awaiting_new");
    assert_eq!(r["code_sent"]["destination"], "+44•••••••999");
    let new_code = app.next_code(NEW_PHONE).await;
    // The old number's code cannot be replayed for the second step.
    let (_, r) = app
        .post(&confirm_url, &key, json!({"code": old_code}))
        .await;
    assert_eq!(r["accepted"], false);
    // The number has not changed yet.
    let (_, f) = app.get("/v1/tenants/acme/users/alice/factors", &key).await;
    assert_eq!(f["factors"][0]["destination"], "+44•••••••123");

    let (_, r) = app
        .post(&confirm_url, &key, json!({"code": new_code}))
        .await;
    assert_eq!(
        (r["accepted"].as_bool(), r["change"]["state"].as_str()),
        (Some(true), Some("done"))
    );
    let (_, f) = app.get("/v1/tenants/acme/users/alice/factors", &key).await;
    assert_eq!(f["factors"][0]["destination"], "+44•••••••999");
    let notice = app.next_notice("alice@example.com").await;
    assert!(notice.text.contains("+44•••••••999"), "{}", notice.text);
    assert!(!notice.text.contains(NEW_PHONE));
    let (s, r) = app
        .post(&confirm_url, &key, json!({"code": new_code}))
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("phone_change_finished"))
    );

    // Codes now go to the new number.
    send_code(&app, &key, &factor, json!({})).await;
    let code = app.next_code(NEW_PHONE).await;
    assert!(verify(&app, &key, &factor, &code).await);
    let actions: Vec<String> = app
        .audit_of("acme", &key, "user=alice&limit=20")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert!(
        actions.contains(&"factor.phone_change".to_string()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn phone_change_expires_and_a_new_start_cancels_the_old() {
    let app = spawn_app().await;
    let key = acme(&app).await;
    let factor = active_sms(&app, &key).await;
    let base = format!("/v1/tenants/acme/users/alice/factors/{factor}/phone-change");
    let (_, first) = app
        .post(&base, &key, json!({ "new_phone": NEW_PHONE }))
        .await;
    let first_id = first["change"]["id"].as_str().unwrap().to_string();
    let old_code = app.next_code(ALICE_PHONE).await;
    let (_, r) = app
        .post(
            &format!("{base}/{first_id}/confirm"),
            &key,
            json!({"code": old_code}),
        )
        .await;
    assert_eq!(r["change"]["state"], "awaiting_new");
    let new_code = app.next_code(NEW_PHONE).await;
    app.clock.advance_ms(30 * 60 * 1000);
    let (s, r) = app
        .post(
            &format!("{base}/{first_id}/confirm"),
            &key,
            json!({"code": new_code}),
        )
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("phone_change_expired"))
    );
    let (_, view) = app.get(&format!("{base}/{first_id}"), &key).await;
    assert_eq!(view["state"], "cancelled");
    let (_, f) = app.get("/v1/tenants/acme/users/alice/factors", &key).await;
    assert_eq!(f["factors"][0]["destination"], "+44•••••••123");

    // Start, then start again: the first is cancelled and its code is useless.
    let (_, a) = app
        .post(&base, &key, json!({ "new_phone": NEW_PHONE }))
        .await;
    let a_id = a["change"]["id"].as_str().unwrap().to_string();
    let a_code = app.next_code(ALICE_PHONE).await;
    app.advance_secs(31);
    let (s, b) = app
        .post(&base, &key, json!({ "new_phone": "+447700900555" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, view) = app.get(&format!("{base}/{a_id}"), &key).await;
    assert_eq!(view["state"], "cancelled");
    let b_id = b["change"]["id"].as_str().unwrap().to_string();
    let (_, r) = app
        .post(
            &format!("{base}/{b_id}/confirm"),
            &key,
            json!({"code": a_code}),
        )
        .await;
    assert_eq!(r["accepted"], false, "a code bound to another change");

    // Bad input.
    for (body, code) in [
        (json!({"new_phone": "07700900999"}), StatusCode::BAD_REQUEST),
        (json!({"new_phone": ALICE_PHONE}), StatusCode::BAD_REQUEST),
        (json!({"new_phone": [NEW_PHONE]}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::BAD_REQUEST),
    ] {
        let (s, r) = app.post(&base, &key, body.clone()).await;
        assert_eq!(s, code, "{body} → {r}");
    }
    let (s, r) = app
        .get(&format!("{base}/pcg_aaaaaaaaaaaaaaaaaaaaaaaaaa"), &key)
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::NOT_FOUND, Some("phone_change_not_found"))
    );
}

#[tokio::test]
async fn removing_an_active_factor_needs_a_fresh_code() {
    let app = spawn_app().await;
    let e = app.enrolled("acme").await;
    let added = app.next_notice("alice@example.com").await;
    assert!(added.text.contains("authenticator app"), "{}", added.text);
    let key = e.key.clone();
    let sms = active_sms(&app, &key).await;
    let delete_url = format!("/v1/tenants/acme/users/alice/factors/{sms}");
    let disable_url = format!("{delete_url}/disable");

    // The tenant key alone cannot remove an active factor.
    let (s, r) = app
        .call(Method::DELETE, &delete_url, Some(&key), None)
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("fresh_code_required"))
    );
    let (s, r) = app.post(&disable_url, &key, json!({})).await;
    assert_eq!(
        (s, r["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("code"))
    );

    // A sign-in code is not a removal code.
    send_code(&app, &key, &sms, json!({})).await;
    let signin = app.next_code(ALICE_PHONE).await;
    let (_, r) = app.post(&disable_url, &key, json!({"code": signin})).await;
    assert_eq!(r["disabled"], false);
    // A removal code for another factor does not remove this one.
    app.advance_secs(31);
    let (s, r) = send_code(&app, &key, &sms, json!({"disable_factor_id": e.factor_id})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let for_totp = app.next_code(ALICE_PHONE).await;
    let (_, r) = app
        .post(&disable_url, &key, json!({"code": for_totp}))
        .await;
    assert_eq!(r["disabled"], false);
    let (_, f) = app.get("/v1/tenants/acme/users/alice/factors", &key).await;
    assert_eq!(f["factors"].as_array().unwrap().len(), 2);

    // A TOTP code from the other active factor removes the SMS factor.
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let (_, r) = app
        .post(
            &disable_url,
            &key,
            json!({"code": code, "code_factor_id": e.factor_id}),
        )
        .await;
    assert_eq!(r["disabled"], true, "{r}");
    let notice = app.next_notice("alice@example.com").await;
    assert!(notice.text.contains("removed"), "{}", notice.text);
    let (_, f) = app.get("/v1/tenants/acme/users/alice/factors", &key).await;
    assert_eq!(f["factors"].as_array().unwrap().len(), 1);

    // An SMS removal code removes the TOTP factor it names.
    let sms = active_sms(&app, &key).await;
    let (s, _) = send_code(&app, &key, &sms, json!({"disable_factor_id": e.factor_id})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let code = app.next_code(ALICE_PHONE).await;
    let (_, r) = app
        .post(
            &format!(
                "/v1/tenants/acme/users/alice/factors/{}/disable",
                e.factor_id
            ),
            &key,
            json!({"code": code, "code_factor_id": sms}),
        )
        .await;
    assert_eq!(r["disabled"], true, "{r}");
    app.next_notice("alice@example.com").await;

    // An operator may reset (remove without a code); the user is told it was an administrator.
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/users/alice/factors/{sms}"),
            Some(&app.operator_key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let notice = app.next_notice("alice@example.com").await;
    assert!(notice.text.contains("administrator"), "{}", notice.text);
    let (_, f) = app.get("/v1/tenants/acme/users/alice/factors", &key).await;
    assert_eq!(f["factors"], json!([]));
}

#[tokio::test]
async fn codes_are_bound_to_their_user_and_tenant() {
    let app = spawn_app().await;
    let key = acme(&app).await;
    app.user("acme", &key, "bob").await;
    let factor = active_sms(&app, &key).await;
    send_code(&app, &key, &factor, json!({})).await;
    let code = app.next_code(ALICE_PHONE).await;
    // Bob cannot use alice's factor id or her code.
    let (s, r) = app
        .post(
            "/v1/tenants/acme/users/bob/verify",
            &key,
            json!({"code": code, "factor_id": factor}),
        )
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::NOT_FOUND, Some("factor_not_found"))
    );
    // Another tenant cannot reach alice at all.
    let other = app.tenant("other").await;
    let (s, _) = send_code_as(&app, &other, "acme", &factor).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // And the code still works for alice.
    assert!(verify(&app, &key, &factor, &code).await);
}

async fn send_code_as(app: &TestApp, key: &str, tenant: &str, factor: &str) -> (StatusCode, Value) {
    app.post(
        &format!("/v1/tenants/{tenant}/users/alice/factors/{factor}/send-code"),
        key,
        json!({}),
    )
    .await
}

#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() {
    let app = spawn_app().await;
    let key = acme(&app).await;
    let url = "/v1/tenants/acme/users/alice/factors/sms";
    for (body, field_or_code) in [
        (json!({"phone": "+0123456789"}), "phone"),
        (json!({"phone": "4477009001234"}), "phone"),
        (json!({"phone": "+44 7700 900123"}), "phone"),
        (json!({"phone": format!("+44{}", "1".repeat(200))}), "phone"),
        (json!({"phone": ["+447700900123"]}), "invalid_body"),
        (json!({"phone": 447700900123u64}), "invalid_body"),
        (
            json!({"phone": "+447700900123", "extra": 1}),
            "invalid_body",
        ),
    ] {
        let (s, r) = app.post(url, &key, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {r}");
        let got = r["error"]["field"].as_str().or(err(&r)).unwrap();
        assert_eq!(got, field_or_code, "{body} → {r}");
    }
    // Duplicate keys where one value is expected.
    let resp = app
        .client
        .post(format!("{}{url}", app.base))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(r#"{"phone": "+447700900123", "phone": "+447700900999"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    for bad in ["bob", "a@b", &format!("{}@example.com", "x".repeat(300))] {
        let (s, r) = app
            .post(
                "/v1/tenants/acme/users/alice/factors/email",
                &key,
                json!({"email": bad}),
            )
            .await;
        assert_eq!(
            (s, r["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("email"))
        );
    }
    let (_, f) = app.get("/v1/tenants/acme/users/alice/factors", &key).await;
    assert_eq!(f["factors"], json!([]), "nothing was created");
    let (_, stats) = app.get("/v1/tenants/acme/outbox/stats", &key).await;
    assert_eq!(
        stats["pending"].as_u64().unwrap() + stats["sent"].as_u64().unwrap(),
        0
    );

    let factor = active_sms(&app, &key).await;
    for (body, want) in [
        (json!({"code": "12345"}), StatusCode::BAD_REQUEST),
        (
            json!({"code": "１２３４５６", "factor_id": factor}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"code": ["123456"], "factor_id": factor}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"code": "123456", "factor_id": "fac_nope"}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (s, r) = app
            .post("/v1/tenants/acme/users/alice/verify", &key, body.clone())
            .await;
        assert_eq!(s, want, "{body} → {r}");
    }
    let (s, r) = send_code(&app, &key, &factor, json!({"disable_factor_id": 5})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
    let (s, r) = app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{factor}/send-code"),
            &key,
            json!({"disable_factor_id": "nonsense"}),
        )
        .await;
    assert_eq!(
        (s, r["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("disable_factor_id"))
    );
}

#[tokio::test]
async fn locks_and_unlocks_are_notified_and_the_outbox_is_visible() {
    let app = spawn_app().await;
    let e = app.enrolled("acme").await;
    app.next_notice("alice@example.com").await; // the TOTP factor was added
                                                // 100 consecutive failures lock the factor; backoff is waited out between tries.
    for _ in 0..100 {
        let (s, _) = app.verify(&e, "000000").await;
        assert_eq!(s, StatusCode::OK);
        app.clock.advance_ms(16 * 60 * 1000);
    }
    // The fifth failure in a row was announced before the lock.
    let warning = app.next_notice("alice@example.com").await;
    assert!(
        warning.text.contains("5 wrong codes in a row"),
        "{}",
        warning.text
    );
    let notice = app.next_notice("alice@example.com").await;
    assert!(notice.text.contains("locked"), "{}", notice.text);
    let (s, _) = app
        .post(
            &format!(
                "/v1/tenants/acme/users/alice/factors/{}/unlock",
                e.factor_id
            ),
            &e.key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let notice = app.next_notice("alice@example.com").await;
    assert!(notice.text.contains("unlocked"), "{}", notice.text);

    // The outbox lists messages (masked, no content) to the tenant and to operators.
    let (s, page) = app.get("/v1/tenants/acme/outbox?status=sent", &e.key).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let messages = page["messages"].as_array().unwrap();
    // Added, five wrong in a row, locked, unlocked.
    assert_eq!(messages.len(), 4, "{page}");
    assert!(messages.iter().all(|m| m["template"] == "security_notice"));
    assert!(messages
        .iter()
        .all(|m| m["destination"] == "a••••@example.com"));
    let (s, _) = app.get("/v1/outbox", &e.key).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, stats) = app.get("/v1/outbox/stats", &app.operator_key).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stats["sent"], 4, "{stats}");
    let (s, r) = app
        .post("/v1/outbox/1/retry", &app.operator_key, json!({}))
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("message_not_failed"))
    );
    let (s, _) = app
        .get("/v1/tenants/acme/outbox?status=bogus", &e.key)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // An invitation goes to the user's address.
    let (s, m) = app
        .post(
            "/v1/tenants/acme/users/alice/invite",
            &e.key,
            json!({"deadline": "1 March 2027"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{m}");
    let invite = app.next_message("alice@example.com").await;
    assert!(invite.text.contains("1 March 2027"), "{}", invite.text);
}
