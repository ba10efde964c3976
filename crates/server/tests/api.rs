//! End-to-end tests of the REST API against a real server on a real SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn walkthrough_enrol_confirm_verify_once() {
    let app = spawn_app().await;
    let e = app.enrolled("acme").await;
    assert!(e.enrolment["qr_svg"].as_str().unwrap().contains("<svg"));
    assert_eq!(e.enrolment["factor"]["status"], "pending");
    let uri = e.enrolment["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/acme%20Inc:alice%40example.com?"),
        "{uri}"
    );

    let code = app.code_at_offset(&e.secret, &e.params, 0);
    assert_eq!(
        app.verify(&e, &code).await,
        (StatusCode::OK, json!({"verified": true}))
    );
    // The same code again is a replay.
    assert_eq!(
        app.verify(&e, &code).await,
        (StatusCode::OK, json!({"verified": false}))
    );
    // The previous step's code is accepted only if unused; it is older than the last accepted.
    let prev = app.code_at_offset(&e.secret, &e.params, -1);
    assert_eq!(app.verify(&e, &prev).await.1, json!({"verified": false}));
    app.advance_secs(30);
    let next = app.code_at_offset(&e.secret, &e.params, 0);
    assert_eq!(app.verify(&e, &next).await.1, json!({"verified": true}));

    let (s, factors) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(factors["factors"][0]["status"], "active");
    assert!(factors
        .to_string()
        .find(e.enrolment["secret"].as_str().unwrap())
        .is_none());

    let reasons = app.audit_outcomes(&e, "action=totp.verify").await;
    assert_eq!(
        reasons,
        vec![
            json!(["ok", null]),
            json!(["denied", "replayed"]),
            json!(["denied", "replayed"]),
            json!(["ok", null])
        ]
    );
}

#[tokio::test]
async fn fifty_parallel_uses_of_one_code_succeed_once() {
    let app = spawn_app().await;
    let e = app.enrolled("acme").await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let url = format!("{}/v1/tenants/acme/users/alice/verify", app.base);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (client, url, key, code) =
            (app.client.clone(), url.clone(), e.key.clone(), code.clone());
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({ "code": code }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()["verified"]
                .as_bool()
                .unwrap()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap() as u32;
    }
    assert_eq!(ok, 1);
    let denied = app.audit(&e, "action=totp.verify&limit=100").await;
    assert_eq!(denied.len(), 50, "every attempt is audited");
}

#[tokio::test]
async fn a_wrong_code_leaves_the_factor_pending() {
    let app = spawn_app().await;
    let key = app.tenant("acme").await;
    app.user("acme", &key, "bob").await;
    let e = app.pending("acme", &key, "bob").await;
    let (secret, params) = (e.secret.clone(), e.params);
    let good = app.code_at_offset(&secret, &params, 0);
    let wrong = format!("{:06}", (good.parse::<u32>().unwrap() + 1) % 1_000_000);
    assert_eq!(app.confirm(&e, &wrong).await.1, json!({"confirmed": false}));
    let (_, f) = app.get("/v1/tenants/acme/users/bob/factors", &key).await;
    assert_eq!(f["factors"][0]["status"], "pending");
    // A pending factor never verifies.
    let (s, body) = app.verify(&e, &good).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_active_factor"))
    );
    // Bob's first factor: confirmed, with his recovery codes, shown this once.
    let (_, confirmed) = app.confirm(&e, &good).await;
    assert_eq!(confirmed["confirmed"], true);
    assert_eq!(confirmed["recovery_codes"].as_array().unwrap().len(), 10);
    // Replaying the confirmation code answers exactly like a wrong code, and is audited.
    let replay = app.confirm(&e, &good).await;
    assert_eq!(replay, app.confirm(&e, &wrong).await);
    assert_eq!(replay, (StatusCode::OK, json!({"confirmed": false})));
    let reasons: Vec<Value> = app
        .audit(&e, "action=factor.confirm")
        .await
        .iter()
        .map(|ev| ev["reason"].clone())
        .collect();
    assert_eq!(
        reasons,
        vec![
            json!("wrong_code"),
            json!("replayed"),
            Value::Null,
            json!("wrong_code")
        ]
    );
}

#[tokio::test]
async fn confirmation_learns_drift_and_resync_relearns_it() {
    let app = spawn_app().await;
    let key = app.tenant("acme").await;
    app.user("acme", &key, "carol").await;
    let e = app.pending("acme", &key, "carol").await;
    let (fid, secret, params) = (e.factor_id.clone(), e.secret.clone(), e.params);
    // The phone runs one step ahead.
    let ahead = app.code_at_offset(&secret, &params, 1);
    assert_eq!(app.confirm(&e, &ahead).await.1["confirmed"], true);
    let (_, f) = app.get("/v1/tenants/acme/users/carol/factors", &key).await;
    assert_eq!(f["factors"][0]["drift_steps"], 1);
    app.advance_secs(30);
    // Now its code (real step + 1) is accepted, and the real current code is the "previous".
    assert_eq!(
        app.verify(&e, &app.code_at_offset(&secret, &params, 1))
            .await
            .1["verified"],
        true
    );
    // Two steps ahead is outside the window.
    app.advance_secs(30);
    assert_eq!(
        app.verify(&e, &app.code_at_offset(&secret, &params, 2))
            .await
            .1["verified"],
        false
    );

    // Resync: the phone is now 7 steps ahead; two consecutive codes prove it.
    let (c1, c2) = (
        app.code_at_offset(&secret, &params, 7),
        app.code_at_offset(&secret, &params, 8),
    );
    let path = format!("/v1/tenants/acme/users/carol/factors/{fid}/resync");
    let (s, body) = app
        .post(&path, &key, json!({"code1": c1, "code2": c2}))
        .await;
    assert_eq!((s, body), (StatusCode::OK, json!({"resynced": true})));
    let (_, f) = app.get("/v1/tenants/acme/users/carol/factors", &key).await;
    assert_eq!(f["factors"][0]["drift_steps"], 8);
    // Replaying the resync codes fails.
    let (_, body) = app
        .post(&path, &key, json!({"code1": c1, "code2": c2}))
        .await;
    assert_eq!(body, json!({"resynced": false}));
    app.advance_secs(30);
    assert_eq!(
        app.verify(&e, &app.code_at_offset(&secret, &params, 8))
            .await
            .1["verified"],
        true
    );
    // Non-consecutive codes do not resync.
    let (_, body) = app
        .post(
            &path,
            &key,
            json!({"code1": app.code_at_offset(&secret, &params, 2), "code2": app.code_at_offset(&secret, &params, 4)}),
        )
        .await;
    assert_eq!(body, json!({"resynced": false}));
    assert_eq!(app.audit(&e, "action=totp.resync").await.len(), 3);
}

#[tokio::test]
async fn drift_is_learned_on_use_from_two_codes_in_a_row() {
    let app = spawn_app().await;
    let e = app.enrolled("acme").await;
    // The phone's clock has gained a step since enrolment.
    let ahead = app.code_at_offset(&e.secret, &e.params, 1);
    assert_eq!(app.verify(&e, &ahead).await.1["verified"], false);
    app.advance_secs(30);
    let ahead = app.code_at_offset(&e.secret, &e.params, 1);
    assert_eq!(app.verify(&e, &ahead).await.1["verified"], true);
    let (_, f) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(f["factors"][0]["drift_steps"], 1);
    // The window moved, it did not widen: two steps behind the phone is now refused.
    app.advance_secs(30);
    let stale = app.code_at_offset(&e.secret, &e.params, -1);
    assert_eq!(app.verify(&e, &stale).await.1["verified"], false);
}

/// Two servers on one database, like nodes (or the CLI beside a server): a change made through
/// one must never make the other reject a right code or charge a failure for it.
#[tokio::test]
async fn a_stale_cache_on_another_node_never_costs_the_user() {
    let a = spawn_app().await;
    let b = spawn_app_at(a.data_dir.path().join("data")).await;
    let e = a.enrolled("acme").await;
    b.clock.set_ms({
        use twofold_core::ports::Clock;
        a.clock.now_ms()
    });
    // Node B caches the factor with drift 0.
    let code = b.code_at_offset(&e.secret, &e.params, 0);
    assert_eq!(b.verify(&e, &code).await.1["verified"], true);
    // Node A learns a drift of +3 through resync.
    let path = format!(
        "/v1/tenants/acme/users/alice/factors/{}/resync",
        e.factor_id
    );
    let (c1, c2) = (
        a.code_at_offset(&e.secret, &e.params, 2),
        a.code_at_offset(&e.secret, &e.params, 3),
    );
    assert_eq!(
        a.post(&path, &e.key, json!({"code1": c1, "code2": c2}))
            .await
            .1["resynced"],
        true
    );
    // B's cached copy is behind; the phone's next code must still work there, and no failure
    // may be charged on the way.
    a.advance_secs(30);
    b.advance_secs(30);
    let phone = b.code_at_offset(&e.secret, &e.params, 3);
    assert_eq!(b.verify(&e, &phone).await.1["verified"], true);
    let reasons = a.audit_outcomes(&e, "action=totp.verify&limit=5").await;
    assert_eq!(reasons, vec![json!(["ok", null]), json!(["ok", null])]);
    let (_, f) = a.get("/v1/tenants/acme/users/alice/factors", &e.key).await;
    assert_eq!(f["factors"][0]["drift_steps"], 3);

    // A factor deleted through A is refused by B at once, cache or not.
    let (s, _) = a
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/users/alice/factors/{}", e.factor_id),
            Some(&a.operator_key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    a.advance_secs(30);
    b.advance_secs(30);
    let next = b.code_at_offset(&e.secret, &e.params, 3);
    let (s, body) = b.verify(&e, &next).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_active_factor"))
    );
}

/// Wrong, replayed, throttled and locked answers must be indistinguishable (INV-11).
#[tokio::test]
async fn attempt_limits_back_off_lock_and_unlock_with_identical_answers() {
    let app = spawn_app().await;
    let e = app.enrolled("acme").await;
    let raw = |code: String| {
        let (client, url, key) = (
            app.client.clone(),
            format!("{}/v1/tenants/acme/users/alice/verify", app.base),
            e.key.clone(),
        );
        async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({ "code": code }))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let mut headers: Vec<String> = r
                .headers()
                .iter()
                .filter(|(k, _)| *k != "x-request-id" && *k != "date")
                .map(|(k, v)| format!("{k}: {v:?}"))
                .collect();
            headers.sort();
            (status, headers, r.text().await.unwrap())
        }
    };
    let wrong = || "000000".to_string();
    let good = app.code_at_offset(&e.secret, &e.params, 0);
    assert_ne!(good, wrong());
    let first_wrong = raw(wrong()).await;
    for _ in 0..4 {
        assert_eq!(raw(wrong()).await, first_wrong);
    }
    // Five failures: now blocked; the right code answers exactly like a wrong one.
    assert_eq!(
        raw(good.clone()).await,
        first_wrong,
        "throttled looks like wrong"
    );
    app.advance_secs(1);
    assert_eq!(
        raw(good.clone()).await.2,
        r#"{"verified":true}"#,
        "after backoff"
    );
    assert_eq!(
        raw(good.clone()).await,
        first_wrong,
        "replayed looks like wrong"
    );

    // Drive to the hard lock: 100 consecutive failures, waiting out each backoff.
    for _ in 0..100 {
        app.advance_secs(15 * 60);
        raw(wrong()).await;
    }
    app.advance_secs(3600);
    let good = app.code_at_offset(&e.secret, &e.params, 0);
    assert_eq!(
        raw(good.clone()).await,
        first_wrong,
        "locked looks like wrong"
    );
    let (_, f) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(f["factors"][0]["locked"], true);
    let reasons: Vec<String> = app
        .audit(&e, "action=totp.verify&limit=3")
        .await
        .iter()
        .map(|ev| ev["reason"].as_str().unwrap_or("-").to_string())
        .collect();
    assert_eq!(reasons[0], "locked");
    assert_eq!(app.audit(&e, "action=factor.lock").await.len(), 1);

    let (s, f) = app
        .post(
            &format!(
                "/v1/tenants/acme/users/alice/factors/{}/unlock",
                e.factor_id
            ),
            &e.key,
            json!({}),
        )
        .await;
    assert_eq!((s, &f["locked"]), (StatusCode::OK, &json!(false)));
    assert_eq!(raw(good).await.2, r#"{"verified":true}"#);
}

#[tokio::test]
async fn tenants_never_see_each_other() {
    let app = spawn_app().await;
    let a = app.enrolled("alpha").await;
    let b_key = app.tenant("beta").await;
    let code = app.code_at_offset(&a.secret, &a.params, 0);
    let paths = [
        (Method::GET, "/v1/tenants/alpha".to_string(), None),
        (Method::GET, "/v1/tenants/alpha/users".to_string(), None),
        (
            Method::GET,
            "/v1/tenants/alpha/users/alice".to_string(),
            None,
        ),
        (
            Method::GET,
            "/v1/tenants/alpha/users/alice/factors".to_string(),
            None,
        ),
        (Method::GET, "/v1/tenants/alpha/audit".to_string(), None),
        (
            Method::POST,
            "/v1/tenants/alpha/users/alice/verify".to_string(),
            Some(json!({"code": code})),
        ),
        (
            Method::DELETE,
            format!("/v1/tenants/alpha/users/alice/factors/{}", a.factor_id),
            None,
        ),
    ];
    for (m, p, body) in paths {
        let (s, body) = app.call(m.clone(), &p, Some(&b_key), body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {p}: {body}");
        assert_eq!(body["error"]["code"], "tenant_not_found");
    }
    // Tenant keys cannot create tenants or operator keys.
    let (s, _) = app
        .post("/v1/tenants", &b_key, json!({"slug": "gamma", "name": "G"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app
        .post("/v1/api-keys", &b_key, json!({"label": "x"}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The factor survived and still works for its own tenant.
    assert_eq!(app.verify(&a, &code).await.1["verified"], true);
}

#[tokio::test]
async fn api_keys_authenticate_and_revoke() {
    let app = spawn_app().await;
    let key = app.tenant("acme").await;
    for bad in ["", "tfk_", "tfk_nope_nope", "Basic abc", &format!("{key}x")] {
        let (s, body) = app
            .call(Method::GET, "/v1/tenants/acme", Some(bad), None)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad}");
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    let (s, _) = app.call(Method::GET, "/v1/tenants/acme", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, k2) = app
        .post("/v1/tenants/acme/api-keys", &key, json!({"label": "ci"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let k2_token = k2["token"].as_str().unwrap();
    let (_, list) = app.get("/v1/tenants/acme/api-keys", &key).await;
    assert_eq!(list["api_keys"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(k2_token));
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{}", k2["key_id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .call(Method::GET, "/v1/tenants/acme", Some(k2_token), None)
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "revoked keys stop working at once"
    );
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/api-keys/{}", k2["key_id"].as_str().unwrap()),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let app = spawn_app_with(|c| c.max_body_bytes = 4096).await;
    let e = app.enrolled("acme").await;
    let k = &e.key;
    let verify = "/v1/tenants/acme/users/alice/verify";
    let send = |path: &str, ctype: Option<&str>, body: Vec<u8>| {
        let mut req = app
            .client
            .post(format!("{}{}", app.base, path))
            .bearer_auth(k);
        if let Some(c) = ctype {
            req = req.header("content-type", c);
        }
        let req = req.body(body);
        async move { split(req.send().await.unwrap()).await }
    };
    let json_ct = Some("application/json");
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        (
            verify,
            json_ct,
            b"{".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            verify,
            json_ct,
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            verify,
            json_ct,
            br#"{"code": 123456}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            verify,
            json_ct,
            br#"{"code": ["123456"]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            verify,
            json_ct,
            br#"{"code":"123456","code":"654321"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            verify,
            json_ct,
            br#"{"code":"123456","admin":true}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            verify,
            Some("text/plain"),
            br#"{"code":"123456"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            verify,
            None,
            br#"{"code":"123456"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            verify,
            json_ct,
            format!(r#"{{"code":"{}"}}"#, "1".repeat(10_000)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            verify,
            json_ct,
            br#"{"code":""}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            verify,
            json_ct,
            br#"{"code":"12345"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            verify,
            json_ct,
            br#"{"code":"123456789"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            verify,
            json_ct,
            "{\"code\":\"١٢٣٤٥٦\"}".as_bytes().to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            verify,
            json_ct,
            "{\"code\":\"１２３４５６\"}".as_bytes().to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            verify,
            json_ct,
            br#"{"code":" 123456"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            verify,
            json_ct,
            br#"{"code":"123456","factor_id":"fac_nope"}"#.to_vec(),
            StatusCode::NOT_FOUND,
            "factor_not_found",
        ),
        (
            verify,
            json_ct,
            "\u{0}\u{1}".as_bytes().to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "/v1/tenants/nope/users/alice/verify",
            json_ct,
            br#"{"code":"123456"}"#.to_vec(),
            StatusCode::NOT_FOUND,
            "tenant_not_found",
        ),
        (
            "/v1/tenants/acme/users/nobody/verify",
            json_ct,
            br#"{"code":"123456"}"#.to_vec(),
            StatusCode::NOT_FOUND,
            "user_not_found",
        ),
        (
            "/v1/tenants/acme/users/alice/factors/fac_aaaaaaaaaaaaaaaaaaaaaaaaaa/confirm",
            json_ct,
            br#"{"code":"123456"}"#.to_vec(),
            StatusCode::NOT_FOUND,
            "factor_not_found",
        ),
        (
            "/v1/tenants/acme/users",
            json_ct,
            br#"{"external_id":""}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/tenants/acme/users",
            json_ct,
            format!(r#"{{"external_id":"{}"}}"#, "x".repeat(129)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/tenants/acme/users",
            json_ct,
            br#"{"external_id":"ok","email":"not-an-email"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/tenants/acme/users",
            json_ct,
            br#"{"external_id":"ok","phone":"0123"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/tenants/acme/users",
            json_ct,
            br#"{"external_id":"alice"}"#.to_vec(),
            StatusCode::CONFLICT,
            "user_exists",
        ),
        (
            "/v1/tenants/acme/users",
            json_ct,
            br#"{"external_id":"x","is_admin":"yes"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/tenants/acme/users/alice/factors/totp",
            json_ct,
            br#"{"digits":9}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/tenants/acme/users/alice/factors/totp",
            json_ct,
            br#"{"digits":300}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            "/v1/tenants/acme/users/alice/factors/totp",
            json_ct,
            br#"{"period":0}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/tenants/acme/users/alice/factors/totp",
            json_ct,
            br#"{"algorithm":"MD5"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_field",
        ),
        (
            "/v1/tenants",
            json_ct,
            br#"{"slug":"Bad Slug","name":"x"}"#.to_vec(),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "/v1/nope",
            json_ct,
            b"{}".to_vec(),
            StatusCode::NOT_FOUND,
            "route_not_found",
        ),
    ];
    for (path, ctype, body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(60)
            .collect::<String>();
        let (s, got) = send(path, ctype, body).await;
        assert_eq!(s, status, "{path} {shown}: {got}");
        assert_eq!(got["error"]["code"], code, "{path} {shown}: {got}");
        assert!(got["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    let (s, body) = app
        .post(
            "/v1/tenants",
            &app.operator_key,
            json!({"slug": "Bad Slug", "name": "x"}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("slug"))
    );
    let (s, body) = app
        .post(
            "/v1/tenants",
            &app.operator_key,
            json!({"slug": "acme", "name": "again"}),
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("tenant_exists"))
    );
    let (s, body) = app.call(Method::PUT, verify, Some(k), None).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method_not_allowed"))
    );
    let (s, body) = app.get("/v1/tenants/acme/users?limit=abc", k).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    let (s, body) = app.get("/v1/tenants/acme/users?cursor=!!", k).await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("cursor"))
    );
    let (s, _) = app
        .get(&format!("/v1/tenants/acme/users/{}", "x".repeat(5000)), k)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.get("/v1/tenants/acme/users/%FF%FE", k).await;
    assert!(s.is_client_error(), "{s}");

    // Nothing above disturbed the factor: no failure was counted by malformed requests.
    let (_, f) = app.get("/v1/tenants/acme/users/alice/factors", k).await;
    assert_eq!(f["factors"].as_array().unwrap().len(), 1);
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    assert_eq!(app.verify(&e, &code).await.1["verified"], true);
    let (_, users) = app.get("/v1/tenants/acme/users", k).await;
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn deleted_factors_stop_verifying_and_users_paginate() {
    let app = spawn_app().await;
    let e = app.enrolled("acme").await;
    for i in 0..7 {
        app.user("acme", &e.key, &format!("user{i}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        let (s, page) = app
            .get(&format!("/v1/tenants/acme/users?limit=3{q}"), &e.key)
            .await;
        assert_eq!(s, StatusCode::OK);
        for u in page["users"].as_array().unwrap() {
            seen.push(u["external_id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(seen[0], "alice");

    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/users/alice/factors/{}", e.factor_id),
            Some(&app.operator_key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, body) = app.verify(&e, &code).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_active_factor"))
    );
    let actions: Vec<String> = app
        .audit(&e, "user=alice")
        .await
        .iter()
        .map(|ev| ev["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        actions,
        vec![
            "factor.delete",
            "factor.confirm",
            "factor.enrol",
            "user.create"
        ]
    );
    let (s, _) = app.get("/v1/tenants/acme/audit?user=ghost", &e.key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.get("/v1/tenants/acme/audit?bogus=1", &e.key).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn seeds_never_reach_the_database_file_in_clear() {
    let app = spawn_app().await;
    let key = app.tenant("acme").await;
    let mut secrets = Vec::new();
    for i in 0..5 {
        let user = format!("u{i}");
        app.user("acme", &key, &user).await;
        for alg in ["SHA1", "SHA256", "SHA512"] {
            let (_, secret, _, body) = app
                .enrol("acme", &key, &user, json!({"algorithm": alg}))
                .await;
            secrets.push((secret, body["secret"].as_str().unwrap().to_string()));
        }
    }
    let dir = app.data_dir.path().join("data");
    let mut bytes = Vec::new();
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("twofold.db")
        {
            bytes.extend(std::fs::read(p).unwrap());
        }
    }
    assert!(bytes.len() > 10_000, "the database files were read");
    for (raw, b32) in &secrets {
        assert!(
            !bytes.windows(raw.len()).any(|w| w == raw.as_slice()),
            "raw seed found"
        );
        assert!(
            !bytes.windows(16).any(|w| w == &b32.as_bytes()[..16]),
            "base32 seed found"
        );
    }
    let key_file = std::fs::read_to_string(dir.join("master.key")).unwrap();
    assert!(!bytes.windows(32).any(|w| w == &key_file.as_bytes()[..32]));
}

#[tokio::test]
async fn health_metrics_openapi_and_request_ids() {
    let app = spawn_app().await;
    let e = app.enrolled("acme").await;
    app.verify(&e, "000000").await;
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-42");
    assert_eq!(r.headers()["cache-control"], "no-store");
    // Metrics reveal why codes were refused: operators only.
    let (s, _) = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app.call(Method::GET, "/metrics", Some(&e.key), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .bearer_auth(&app.operator_key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"twofold_verifications_total{kind="verify",outcome="wrong_code"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"twofold_verifications_total{kind="confirm",outcome="accepted"} 1"#));
    assert!(metrics.contains(r#"route="/v1/tenants/{tenant}/users/{user}/verify",status="2xx"} 1"#));
    assert!(metrics.contains("twofold_http_request_duration_seconds_bucket"));

    let (s, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/tenants",
        "/v1/tenants/{tenant}",
        "/v1/tenants/{tenant}/users",
        "/v1/tenants/{tenant}/users/{user}",
        "/v1/tenants/{tenant}/users/{user}/factors",
        "/v1/tenants/{tenant}/users/{user}/factors/totp",
        "/v1/tenants/{tenant}/users/{user}/factors/{factor}",
        "/v1/tenants/{tenant}/users/{user}/factors/{factor}/confirm",
        "/v1/tenants/{tenant}/users/{user}/verify",
        "/v1/tenants/{tenant}/audit",
    ] {
        assert!(paths.contains_key(p), "{p} missing from OpenAPI");
    }
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
    // Valid OpenAPI 3.1 by a validator nobody here wrote (scripts/test.sh installs it).
    let file = app.data_dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected /openapi.json (missing? run scripts/test.sh):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn enrolment_options_are_honoured() {
    let app = spawn_app().await;
    let key = app.tenant("acme").await;
    app.user("acme", &key, "dave").await;
    let (_, secret, params, body) = app
        .enrol(
            "acme",
            &key,
            "dave",
            json!({"algorithm": "SHA512", "digits": 8, "period": 60, "issuer": "Acme: Cloud", "account_name": "dave"}),
        )
        .await;
    assert_eq!(secret.len(), 64);
    assert_eq!((params.digits, params.period), (8, 60));
    assert_eq!(params.algorithm, twofold_otp::Algorithm::Sha512);
    let uri = body["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Acme%20%20Cloud:dave?"),
        "{uri}"
    );
    let e = Enrolled {
        tenant: "acme".into(),
        key: key.clone(),
        user: "dave".into(),
        factor_id: body["factor_id"].as_str().unwrap().into(),
        secret: secret.clone(),
        params,
        enrolment: body,
        recovery_codes: Vec::new(),
    };
    let code = app.code_at_offset(&secret, &params, 0);
    assert_eq!(code.len(), 8);
    assert_eq!(app.confirm(&e, &code).await.1["confirmed"], true);
    for _ in 0..9 {
        app.enrol("acme", &key, "dave", json!({})).await;
    }
    let (s, body) = app
        .post("/v1/tenants/acme/users/dave/factors/totp", &key, json!({}))
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("too_many_factors"))
    );
}
