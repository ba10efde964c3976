//! Risk-based prompting through the API, with a real MaxMind-format database built for the
//! tests by `mmdb-writer` (see `twofold_testkit::geo`): familiar devices and networks skip
//! the code in adaptive mode, new devices and countries ask for it, impossible travel asks and
//! notifies, and every decision says why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::logins::*;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

const LONDON_1: &str = "203.0.113.7";
const LONDON_2: &str = "203.0.113.99";
const SYDNEY: &str = "198.51.100.7";
const PARIS: &str = "100.64.1.7";
const NOT_IN_DB: &str = "8.8.8.8";

async fn adaptive_app() -> (TestApp, Enrolled, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = twofold_testkit::geo_fixture(dir.path())
        .expect("building the test .mmdb needs `pip install mmdb-writer`");
    let app = spawn_app_with(|c| c.network.geoip_db = Some(db)).await;
    let e = setup(&app).await;
    set_policy(
        &app,
        &e,
        required(json!({"risk": {"mode": "adaptive"}, "remember_device_days": 30})),
    )
    .await;
    (app, e, dir)
}

/// A login decision from `ip` on `device`.
async fn decide(app: &TestApp, e: &Enrolled, ip: Option<&str>, device: &str) -> Value {
    let mut body = json!({"user": "alice", "primary": "password", "device_id": device,
                          "user_agent": "Mozilla/5.0 (Windows NT 10.0) Chrome/130.0"});
    if let Some(ip) = ip {
        body["ip"] = json!(ip);
    }
    let (s, d) = app.post("/v1/tenants/acme/logins", &e.key, body).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    d
}

/// Completes a challenge with the authenticator.
async fn pass(app: &TestApp, e: &Enrolled, d: &Value) {
    assert_eq!(d["decision"], "challenge", "{d}");
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let r = step(app, e, d, &code, json!({})).await;
    assert_eq!(r["verified"], true, "{r}");
    app.advance_secs(30);
}

fn reasons(d: &Value) -> Vec<&str> {
    d["risk"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn familiar_devices_and_networks_skip_the_code_and_new_ones_ask_for_it() {
    let (app, e, _db) = adaptive_app().await;
    // First login: nothing known.
    let d = decide(&app, &e, Some(LONDON_1), "laptop").await;
    assert_eq!(reasons(&d), vec!["first_login"]);
    assert_eq!(d["risk"]["country"], "GB");
    pass(&app, &e, &d).await;
    // One success is not yet familiar (the default needs two).
    app.advance_secs(3600);
    let d = decide(&app, &e, Some(LONDON_1), "laptop").await;
    assert_eq!(d["risk"]["familiar"], false, "{d}");
    pass(&app, &e, &d).await;

    // Two successes from this device in 30 days: it is familiar, no code.
    app.advance_secs(3600);
    let d = decide(&app, &e, Some(LONDON_1), "laptop").await;
    assert_eq!(
        (d["decision"].as_str(), d["reason"].as_str()),
        (Some("allow"), Some("familiar")),
        "{d}"
    );
    assert!(reasons(&d).contains(&"familiar_device"));
    assert!(d["session"]["token"].is_string());
    // A new device on the same /24 in the same country: the familiar network lets it in.
    let d = decide(&app, &e, Some(LONDON_2), "phone").await;
    assert_eq!(d["decision"], "allow", "{d}");
    assert!(reasons(&d).contains(&"new_device") && reasons(&d).contains(&"familiar_network"));
    // The known device in a new country (Paris, a few hours later): asked.
    app.advance_secs(5 * 3600);
    let d = decide(&app, &e, Some(PARIS), "laptop").await;
    assert_eq!(d["decision"], "challenge", "{d}");
    assert!(reasons(&d).contains(&"new_country"), "{d}");
    // No IP, or an IP the database does not know: asked.
    let d = decide(&app, &e, None, "laptop").await;
    assert_eq!(
        (d["decision"].as_str(), reasons(&d)),
        (Some("challenge"), vec!["no_ip"])
    );
    // An address the database does not know: the network rule cannot vouch, and a device id
    // the integrator chose cannot either without a known country (only a remembered-device
    // token Twofold issued could).
    let d = decide(&app, &e, Some(NOT_IN_DB), "laptop").await;
    assert_eq!(
        (d["decision"].as_str(), reasons(&d)),
        (
            Some("challenge"),
            vec!["familiar_device", "unknown_country"]
        )
    );
    let d = decide(&app, &e, Some(NOT_IN_DB), "tablet").await;
    assert_eq!(
        (d["decision"].as_str(), reasons(&d)),
        (Some("challenge"), vec!["new_device", "unknown_country"])
    );
    // After 31 quiet days the history is too old to vouch for anything.
    app.advance_secs(31 * 86_400);
    let d = decide(&app, &e, Some(LONDON_1), "laptop").await;
    assert_eq!(
        (d["decision"].as_str(), reasons(&d)),
        (Some("challenge"), vec!["no_recent_logins"])
    );

    // Every decision's reasons are in the audit row.
    let audit = app
        .audit_of("acme", &e.key, "action=login.decide&limit=1")
        .await;
    assert_eq!(audit[0]["reason"], "risk: no_recent_logins", "{audit:?}");
    let audit = app
        .audit_of("acme", &e.key, "action=login.decide&limit=20")
        .await;
    assert!(audit.iter().any(|a| a["reason"]
        .as_str()
        .unwrap()
        .starts_with("familiar; risk: ")));
}

#[tokio::test]
async fn impossible_travel_asks_for_a_code_even_on_a_remembered_device_and_tells_the_user() {
    let (app, e, _db) = adaptive_app().await;
    // Two logins in London, the second remembering the device.
    let d = decide(&app, &e, Some(LONDON_1), "laptop").await;
    pass(&app, &e, &d).await;
    let d = decide(&app, &e, Some(LONDON_1), "laptop").await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let r = step(&app, &e, &d, &code, json!({"remember_device": true})).await;
    let device = r["device"]["token"].as_str().unwrap().to_string();
    app.advance_secs(30);

    // One hour later "from Sydney", with the remembered device: 17,000 km in an hour.
    app.advance_secs(3600);
    let (_, d) = app
        .post(
            "/v1/tenants/acme/logins",
            &e.key,
            json!({"user": "alice", "primary": "password", "ip": SYDNEY,
                   "device_token": device}),
        )
        .await;
    assert_eq!(d["decision"], "challenge", "{d}");
    assert_eq!(d["risk"]["impossible_travel"], true);
    assert!(d["risk"]["travel_kmh"].as_u64().unwrap() > 10_000, "{d}");
    let notice = notice_with(&app, "alice@example.com", "too far from your previous").await;
    assert!(notice.text.contains("from AU") && notice.text.contains("/wasnt-me/"));
    assert_eq!(
        app.audit_of("acme", &e.key, "action=risk.impossible_travel")
            .await
            .len(),
        1
    );
    // Thirty hours later Sydney is reachable: the remembered device is honoured again.
    app.advance_secs(30 * 3600);
    let (_, d) = app
        .post(
            "/v1/tenants/acme/logins",
            &e.key,
            json!({"user": "alice", "primary": "password", "ip": SYDNEY,
                   "device_token": device}),
        )
        .await;
    assert_eq!(
        (d["decision"].as_str(), d["reason"].as_str()),
        (Some("allow"), Some("trusted_device")),
        "{d}"
    );
    assert_eq!(d["risk"]["impossible_travel"], false);
}

#[tokio::test]
async fn risk_is_off_unless_the_tenant_turns_it_on_and_bad_hints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = twofold_testkit::geo_fixture(dir.path()).unwrap();
    let app = spawn_app_with(|c| c.network.geoip_db = Some(db)).await;
    let e = setup(&app).await;
    set_policy(&app, &e, required(json!({}))).await;
    for _ in 0..3 {
        let d = decide(&app, &e, Some(LONDON_1), "laptop").await;
        assert!(d.get("risk").is_none(), "{d}");
        pass(&app, &e, &d).await;
    }
    let d = decide(&app, &e, Some(LONDON_1), "laptop").await;
    assert_eq!(d["decision"], "challenge");
    for (field, body) in [
        ("country", json!({"country": "GBR"})),
        ("country", json!({"country": "1x"})),
        ("device_id", json!({"device_id": ""})),
        ("device_id", json!({"device_id": "a b"})),
    ] {
        let mut b = json!({"user": "alice", "primary": "password"});
        for (k, v) in body.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (s, r) = app.post("/v1/tenants/acme/logins", &e.key, b).await;
        assert_eq!(
            (s, r["error"]["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field))
        );
    }
    // An address that does not parse is high risk, like a missing one, not a refusal.
    set_policy(&app, &e, required(json!({"risk": {"mode": "adaptive"}}))).await;
    for garbage in ["203.0.113.7, 10.0.0.1", "unknown", "<script>"] {
        let (s, d) = app
            .post(
                "/v1/tenants/acme/logins",
                &e.key,
                json!({"user": "alice", "primary": "password", "ip": garbage, "device_id": "laptop"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{d}");
        assert_eq!(
            (d["decision"].as_str(), reasons(&d)),
            (Some("challenge"), vec!["no_ip"])
        );
    }
    let audit = app
        .audit_of("acme", &e.key, "action=login.decide&limit=1")
        .await;
    assert_eq!(audit[0]["reason"], "risk: no_ip; ip_unparsable");
    // Settings out of range are refused when proposed.
    let (s, r) = app
        .post(
            "/v1/tenants/acme/policy/proposals",
            &e.key,
            json!({"admin": "boss", "policy": required(json!({"risk": {"mode": "adaptive",
                   "familiar_logins": 0}}))}),
        )
        .await;
    assert_eq!(
        (s, r["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("risk"))
    );
}

#[tokio::test]
async fn without_a_geo_database_the_integrators_country_hint_is_used() {
    let app = spawn_app().await;
    let e = setup(&app).await;
    set_policy(
        &app,
        &e,
        required(json!({"risk": {"mode": "adaptive", "familiar_logins": 1}})),
    )
    .await;
    let login = |country: &'static str| {
        let app = &app;
        let e = &e;
        async move {
            let (_, d) = app
                .post(
                    "/v1/tenants/acme/logins",
                    &e.key,
                    json!({"user": "alice", "primary": "password", "ip": "192.0.2.10",
                           "country": country}),
                )
                .await;
            d
        }
    };
    let d = login("gb").await;
    assert_eq!(d["risk"]["country"], "GB");
    pass(&app, &e, &d).await;
    let d = login("GB").await;
    assert_eq!(
        (d["decision"].as_str(), d["reason"].as_str()),
        (Some("allow"), Some("familiar")),
        "{d}"
    );
    let d = login("FR").await;
    assert_eq!(d["decision"], "challenge");
    assert!(reasons(&d).contains(&"new_country"));
}

#[tokio::test]
async fn only_logins_proven_by_a_code_teach_familiarity_and_a_credential_change_forgets_it() {
    let (app, e, _db) = adaptive_app().await;
    for _ in 0..2 {
        let d = decide(&app, &e, Some(LONDON_1), "laptop").await;
        pass(&app, &e, &d).await;
    }
    // Familiar logins let in without a code are not recorded: they cannot renew themselves.
    for _ in 0..3 {
        let d = decide(&app, &e, Some(LONDON_2), "phone").await;
        assert_eq!(d["reason"], "familiar", "{d}");
    }
    let d = decide(&app, &e, Some(PARIS), "phone").await;
    assert!(reasons(&d).contains(&"new_device"), "{d}");
    // Signing out everywhere (as "this wasn't me" does) forgets everything learnt before.
    let (s, _) = app
        .post(
            "/v1/tenants/acme/users/alice/sign-out-everywhere",
            &e.key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let d = decide(&app, &e, Some(LONDON_1), "laptop").await;
    assert_eq!(
        (d["decision"].as_str(), reasons(&d)),
        (Some("challenge"), vec!["first_login"])
    );
}
