//! Security keys at the HTTP level: what a client without an authenticator can send (forged,
//! malformed, huge or misplaced answers, another login's ceremony) gets a clear 4xx page and
//! changes nothing; the settings refuse keys where the server has no relying party, and the
//! phishing-resistant profiles without keys. The ceremonies themselves are in
//! `browser_webauthn.rs` (real Chromium, virtual authenticator).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::logins::{propose, required};
use common::oidc::Browser;
use common::rp::*;
use reqwest::StatusCode;
use serde_json::json;

/// A server on `localhost` with keys enabled for acme, alice (app) and bob (no factor).
async fn keys_app() -> (common::TestApp, common::Enrolled, String) {
    let app = spawn_on_localhost(|_| {}).await;
    let e = common::logins::setup(&app).await;
    common::logins::set_policy(&app, &e, required(json!({"methods": ["totp", "webauthn"]}))).await;
    app.user("acme", &e.key, "bob").await;
    let secret = register(&app, "acme", &e.key, "web").await;
    (app, e, secret)
}

/// A browser at the hosted enrolment of `user`'s sign-in.
async fn at_enrolment(app: &common::TestApp, rp: &Rp, secret: &str, user: &str) -> Browser {
    let b = Browser::new(app);
    let req = rp.authorize(&hint_with(app, secret, json!({ "sub": user })));
    let first = b.get(&req.url).await;
    assert_eq!(
        first.location.as_deref(),
        Some("/oidc/enroll"),
        "{}",
        first.body
    );
    b
}

/// A user `name` of profile `admin`.
async fn admin(app: &common::TestApp, e: &common::Enrolled, name: &str) {
    let (s, body) = app
        .post(
            "/v1/tenants/acme/users",
            &e.key,
            json!({"external_id": name, "profile": "admin", "email": format!("{name}@example.com")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
}

/// The `wac_…` id of the page's key form.
fn ceremony_of(body: &str) -> String {
    let field = "name=\"ceremony\" value=\"";
    let at = body.find(field).expect("a key form") + field.len();
    body[at..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn forged_and_misplaced_key_answers_get_a_refusal_page_and_change_nothing() {
    let (app, e, secret) = keys_app().await;
    let rp = Rp::discover(&app, "acme.web", &secret).await;

    // Bob's enrolment: the key page holds a registration ceremony.
    let bob = at_enrolment(&app, &rp, &secret, "bob").await;
    let page = bob.get("/oidc/enroll/key").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let csp = page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let bobs = ceremony_of(&page.body);
    // Each page issues a fresh CSRF pair: every post uses the last page's.
    let mut csrf = page.csrf();

    let junk = [
        ("", ""),
        (bobs.as_str(), "not json"),
        (bobs.as_str(), "{}"),
        (
            bobs.as_str(),
            r#"{"id":"AA","rawId":"AA","type":"public-key","response":{"attestationObject":"AA","clientDataJSON":"AA"}}"#,
        ),
        ("wac_unknown", "{}"),
    ];
    for (ceremony, response) in junk {
        let form = [
            ("csrf", csrf.as_str()),
            ("ceremony", ceremony),
            ("response", response),
            ("name", "k"),
        ];
        let p = bob.post("/oidc/enroll/key", &form).await;
        assert_eq!(
            p.status,
            StatusCode::UNAUTHORIZED,
            "{ceremony} {response}: {}",
            p.body
        );
        assert!(p.body.contains("role=\"alert\""), "{}", p.body);
        csrf = p.csrf();
    }
    // A name that is too long is refused before anything is spent.
    let long = "k".repeat(65);
    let form = [
        ("csrf", csrf.as_str()),
        ("ceremony", bobs.as_str()),
        ("response", "{}"),
        ("name", long.as_str()),
    ];
    let p = bob.post("/oidc/enroll/key", &form).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    let csrf = p.csrf();
    // Without the CSRF pair: refused as every form.
    let p = bob
        .post(
            "/oidc/enroll/key",
            &[("ceremony", bobs.as_str()), ("response", "{}")],
        )
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // A huge answer is cut off by the body limit.
    let huge = "x".repeat(200_000);
    let p = bob
        .post(
            "/oidc/enroll/key",
            &[("csrf", csrf.as_str()), ("response", huge.as_str())],
        )
        .await;
    assert_eq!(p.status, StatusCode::PAYLOAD_TOO_LARGE);

    // Alice's challenge (no key) with bob's ceremony: not hers, refused like a wrong code.
    let alice = Browser::new(&app);
    let req = rp.authorize(&hint(&app, &secret));
    let page = alice.open_challenge(&req.url).await;
    assert!(
        !page.body.contains("data-webauthn"),
        "alice has no key: {}",
        page.body
    );
    let form = [
        ("csrf", page.csrf()),
        ("ceremony", bobs.clone()),
        ("response", "{}".to_string()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = alice.post("/oidc/challenge/key", &form).await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);

    // Nothing was registered, nobody signed in, and the refusals are audited with reasons.
    let (_, factors) = app.get("/v1/tenants/acme/users/bob/factors", &e.key).await;
    assert_eq!(factors["factors"], json!([]));
    let rows = app
        .audit_of("acme", &e.key, "action=factor.enrol&limit=20")
        .await;
    let reasons: Vec<&str> = rows.iter().filter_map(|r| r["reason"].as_str()).collect();
    assert!(reasons.contains(&"malformed_response"), "{reasons:?}");
    assert!(reasons.contains(&"challenge_mismatch"), "{reasons:?}");
    let rows = app
        .audit_of("acme", &e.key, "action=login.verify&limit=20")
        .await;
    assert!(
        rows.iter().any(|r| r["reason"] == "no_challenge"),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r["outcome"] != "accepted"), "{rows:?}");
}

#[tokio::test]
async fn keys_need_a_relying_party_and_phishing_resistant_profiles_need_keys() {
    // On an IP address there is no RP id: the method cannot be switched on, and says why.
    let app = spawn().await;
    let e = common::logins::setup(&app).await;
    let (s, body) = app
        .post(
            "/v1/tenants/acme/policy/proposals",
            &e.key,
            json!({"admin": "boss", "policy": required(json!({"methods": ["totp", "webauthn"]}))}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.to_string().contains("security keys are not set up"),
        "{body}"
    );

    let (app, e, _) = keys_app().await;
    let (s, body) = app
        .post(
            "/v1/tenants/acme/policy/proposals",
            &e.key,
            json!({"admin": "boss", "policy": required(json!({"phishing_resistant_profiles": ["admin"]}))}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.to_string().contains("phishing_resistant_profiles"),
        "{body}"
    );
    // With keys enabled it is accepted.
    let _ = propose(
        &app,
        &e,
        required(
            json!({"methods": ["totp", "webauthn"], "phishing_resistant_profiles": ["admin"]}),
        ),
    )
    .await;
}

#[tokio::test]
async fn a_profile_that_needs_keys_enrols_only_a_key_after_the_deadline() {
    let (app, e, secret) = keys_app().await;
    // bob becomes an admin-profile user; the date has passed.
    common::logins::set_policy(
        &app,
        &e,
        required(json!({
            "methods": ["totp", "webauthn"],
            "phishing_resistant_profiles": ["admin"],
        })),
    )
    .await;
    admin(&app, &e, "carl").await;
    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let carl = at_enrolment(&app, &rp, &secret, "carl").await;
    let methods = carl.get("/oidc/enroll/methods").await;
    assert!(
        methods.body.contains("Use a security key or passkey"),
        "{}",
        methods.body
    );
    assert!(
        !methods.body.contains("authenticator app"),
        "{}",
        methods.body
    );
    // An app enrolment forged anyway is refused.
    let p = carl
        .post("/oidc/enroll/totp", &[("csrf", methods.csrf().as_str())])
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
    assert!(p.body.contains("This sign-in cannot go on"), "{}", p.body);
    let (_, factors) = app.get("/v1/tenants/acme/users/carl/factors", &e.key).await;
    assert_eq!(factors["factors"], json!([]));

    // A key page for someone who has an app that no longer counts asks for its code first:
    // a password alone adds no key beside it.
    let mut app_of_carl = app.pending("acme", &e.key, "carl").await;
    let code = app.code_at_offset(&app_of_carl.secret, &app_of_carl.params, 0);
    let (s, body) = app.confirm(&app_of_carl, &code).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    app_of_carl.recovery_codes.clear();
    let carl = at_enrolment(&app, &rp, &secret, "carl").await;
    let page = carl.get("/oidc/enroll/key").await;
    assert!(
        page.body.contains("First confirm it is you"),
        "{}",
        page.body
    );
    let ceremony = ceremony_of(&page.body);
    let csrf = page.csrf();
    let form = [
        ("csrf", csrf.as_str()),
        ("ceremony", ceremony.as_str()),
        ("response", "{}"),
    ];
    let p = carl.post("/oidc/enroll/key", &form).await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", p.body);
    assert!(p.body.contains("first confirm it is you"), "{}", p.body);
    let (_, factors) = app.get("/v1/tenants/acme/users/carl/factors", &e.key).await;
    assert_eq!(factors["factors"].as_array().unwrap().len(), 1, "{factors}");
}

#[tokio::test]
async fn the_console_switches_keys_on_and_requires_them_for_admins() {
    let o = common::console::org_on(spawn_on_localhost(|_| {}).await).await;
    let console = o.signed_in().await;
    let form = console.get("/console/settings").await;
    assert!(
        form.body.contains("Security key or passkey"),
        "{}",
        form.body
    );
    let fields = [
        ("mode", "required_for_all"),
        ("totp", "1"),
        ("webauthn", "1"),
        ("phishing_resistant_profiles", "admin"),
        ("mandatory_from", ""),
        ("reminder_days", "7"),
        ("remember_device_days", ""),
    ];
    let proposed = common::console::submit(&console, &form, "/console/settings", &fields).await;
    assert_eq!(proposed.status, StatusCode::SEE_OTHER, "{}", proposed.body);
    let confirm = console.get(proposed.location.as_deref().unwrap()).await;
    assert!(
        confirm
            .body
            .contains("methods: totp, webauthn; only security keys for admin"),
        "{}",
        confirm.body
    );
    let code = o.app.next_code("boss@example.com").await;
    let confirm_at = proposed.location.unwrap();
    let applied =
        common::console::submit(&console, &confirm, &confirm_at, &[("code", &code)]).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    let p = o.policy().await;
    assert_eq!(p["policy"]["methods"], json!(["totp", "webauthn"]));
    assert_eq!(p["policy"]["phishing_resistant_profiles"], json!(["admin"]));
    // The form shows what is set.
    let form = console.get("/console/settings").await;
    assert!(
        form.body.contains("name=\"webauthn\" value=\"1\" checked"),
        "{}",
        form.body
    );
    assert!(
        form.body
            .contains("name=\"phishing_resistant_profiles\" value=\"admin\""),
        "{}",
        form.body
    );
}

/// An app password for `user`'s client `imap`, proven by their app's current code.
async fn app_password(
    app: &common::TestApp,
    e: &common::Enrolled,
    user: &common::Enrolled,
) -> (StatusCode, serde_json::Value) {
    let code = app.code_at_offset(&user.secret, &user.params, 0);
    let path = format!("/v1/tenants/acme/users/{}/app-passwords", user.user);
    let body = json!({"client_id": "imap", "code": code, "code_factor_id": user.factor_id});
    app.post(&path, &e.key, body).await
}

/// Once a profile signs in with keys only, what a code earned no longer stands in for a key:
/// codes prove no sensitive change, app passwords are neither made nor accepted, and a device
/// remembered after a code is not trusted.
#[tokio::test]
async fn keys_only_profiles_cannot_get_around_the_key_with_codes() {
    let (app, e, _) = keys_app().await;
    admin(&app, &e, "carl").await;
    let carl = app.pending("acme", &e.key, "carl").await;
    let code = app.code_at_offset(&carl.secret, &carl.params, 0);
    assert_eq!(app.confirm(&carl, &code).await.0, StatusCode::OK);
    // Before the rule: an app code remembers a device and makes an app password.
    common::logins::set_policy(
        &app,
        &e,
        required(json!({
            "methods": ["totp", "webauthn"],
            "clients": [{"id": "web", "supports_2fa": true},
                        {"id": "imap", "supports_2fa": false, "app_passwords": true}],
        })),
    )
    .await;
    app.advance_secs(30);
    let (s, apw) = app_password(&app, &e, &carl).await;
    assert_eq!(s, StatusCode::OK, "{apw}");
    let password = apw["password"].as_str().unwrap().to_string();
    app.advance_secs(30);
    let pending = common::logins::login(&app, &e, "carl", json!({})).await;
    let code = app.code_at_offset(&carl.secret, &carl.params, 0);
    let done =
        common::logins::step(&app, &e, &pending, &code, json!({"remember_device": true})).await;
    let device = done["device"]["token"].as_str().unwrap().to_string();

    // The rule: admins sign in with keys only, from now on.
    common::logins::set_policy(
        &app,
        &e,
        required(json!({
            "methods": ["totp", "webauthn"],
            "phishing_resistant_profiles": ["admin"],
            "clients": [{"id": "web", "supports_2fa": true},
                        {"id": "imap", "supports_2fa": false, "app_passwords": true}],
        })),
    )
    .await;
    app.advance_secs(30);
    let trusted = common::logins::login(&app, &e, "carl", json!({"device_token": device})).await;
    assert_eq!(trusted["decision"], "enroll_required", "{trusted}");
    assert_eq!(trusted["methods"], json!(["webauthn"]), "{trusted}");
    let imap = common::logins::login(
        &app,
        &e,
        "carl",
        json!({"client_id": "imap", "app_password": password}),
    )
    .await;
    assert_eq!(imap["decision"], "deny", "{imap}");
    let code = app.code_at_offset(&carl.secret, &carl.params, 0);
    let (s, body) = app_password(&app, &e, &carl).await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (s, body) = app
        .post(
            "/v1/tenants/acme/users/carl/recovery-codes",
            &e.key,
            json!({"code": code, "code_factor_id": carl.factor_id}),
        )
        .await;
    assert!(s.is_client_error(), "{s} {body}");
    assert_ne!(body["verified"], true, "{body}");
}
