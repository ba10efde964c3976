//! Enrolment at sign-in on the hosted pages, over HTTP against a real server: the countdown
//! and its "Later" (a 1FA sign-in until the deadline, refused after it even when forged),
//! SMS enrolment through a stand-in of the SMS provider (Twilio's Messages API, as in
//! `delivery.rs`), the CSRF pair on every form, cancel, and the page for clients that cannot
//! show a second step. The relying party is the `openidconnect` crate; the browser is reqwest
//! with a cookie store, reading each form's CSRF token from the HTML (see `common::oidc`).
//!
//! The deadline is crossed by moving the test's `ManualClock` (`app.clock`), injected through
//! `Application::build_with_clock`: the `twofold` binary always builds with the system clock,
//! so no production build can move time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::logins::{required, set_policy, setup};
use common::oidc::{Browser, Page};
use common::rp::*;
use common::{Enrolled, TestApp, START_MS};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use twofold_delivery::{Secret, SmsProvider};
use twofold_testkit::MockHttp;

const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
const ACR_1FA: &str = "urn:twofold:acr:1fa";
const ACR_2FA: &str = "urn:twofold:acr:2fa";

/// Tenant acme (alice enrolled, admin boss) with `policy`, client `acme.web` registered;
/// returns the enrolment, the client secret and the relying party.
async fn integrator(app: &TestApp, policy: Value) -> (Enrolled, String, Rp) {
    let e = setup(app).await;
    set_policy(app, &e, policy).await;
    let secret = register(app, "acme", &e.key, "web").await;
    let rp = Rp::discover(app, "acme.web", &secret).await;
    (e, secret, rp)
}

/// `user` signs in through a fresh browser and lands on the enrolment page.
async fn enrol_start(app: &TestApp, rp: &Rp, secret: &str, user: &str) -> (Browser, Request, Page) {
    let b = Browser::new(app);
    let req = rp.authorize(&hint_with(app, secret, json!({ "sub": user })));
    let first = b.get(&req.url).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    assert_eq!(first.location.as_deref(), Some("/oidc/enroll"));
    let page = b.get("/oidc/enroll").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    (b, req, page)
}

/// The client's code exchanged: `(sub, amr, acr)` of the verified ID token.
async fn exchange(
    app: &TestApp,
    rp: &Rp,
    back: &Page,
    req: Request,
) -> (String, Vec<String>, String) {
    let code = code_of(app, back, &req);
    let tokens = rp.exchange(&code, req.verifier).await.unwrap();
    let claims = rp.claims(app, &tokens, &req.nonce);
    (
        claims.subject().to_string(),
        amr(&claims),
        claims.auth_context_ref().unwrap().to_string(),
    )
}

fn has_button(page: &Page, label: &str) -> bool {
    page.body.contains(&format!(">{label}</button>"))
}

#[tokio::test]
async fn the_countdown_counts_the_days_and_later_signs_in_with_the_password_until_the_deadline() {
    let app = spawn().await;
    // Ten days ahead, at midnight UTC: 2026-12-06.
    let deadline = START_MS + 10 * DAY_MS;
    let (e, secret, rp) = integrator(&app, required(json!({"mandatory_from": deadline}))).await;
    for user in ["bob", "carol", "dave"] {
        app.user("acme", &e.key, user).await;
    }

    let (b, req, page) = enrol_start(&app, &rp, &secret, "bob").await;
    assert!(
        page.body.contains(
            "Two-step verification becomes mandatory for your organisation in 10 days (from \
             2026-12-06 00:00 UTC)."
        ),
        "{}",
        page.body
    );
    for label in ["Set up now", "Later", "Cancel sign-in"] {
        assert!(has_button(&page, label), "{label} missing: {}", page.body);
    }
    // "Later" answers its POST with a redirect to the client: the page's form-action allows
    // the client's origin, and nothing else is loosened.
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("form-action 'self' http://localhost:3000;") && !csp.contains("script-src"),
        "{csp}"
    );

    // Without the CSRF pair nothing happens; with it, back to the client with a code.
    for csrf in ["", "forged"] {
        let p = b.post("/oidc/enroll/later", &[("csrf", csrf)]).await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    }
    let back = b
        .post("/oidc/enroll/later", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(b.cookie("tf_login"), None, "the login cookie is cleared");
    let (sub, amr, acr) = exchange(&app, &rp, &back, req).await;
    assert_eq!(
        (sub.as_str(), amr, acr.as_str()),
        ("bob", vec!["pwd".to_string()], ACR_1FA)
    );
    let audit = app.audit(&e, "action=login.skip").await;
    assert_eq!(
        (audit[0]["outcome"].as_str(), audit[0]["actor"].as_str()),
        (Some("ok"), Some("oidc:acme.web")),
        "{audit:?}"
    );

    // Five minutes before the deadline (midnight): "in 1 day", the date says when exactly.
    app.clock.set_ms(deadline - 5 * 60_000);
    let (b, _, page) = enrol_start(&app, &rp, &secret, "carol").await;
    assert!(
        page.body
            .contains("mandatory for your organisation in 1 day (from"),
        "{}",
        page.body
    );

    // The deadline passes while carol's page is open: her "Later" is refused (the policy is
    // read at the POST, INV-10), with a page that says why and offers the methods.
    app.clock.set_ms(deadline + 1000);
    let refused = b
        .post("/oidc/enroll/later", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused
        .body
        .contains("Two-step verification is mandatory for your organisation now"));
    assert!(
        has_button(&refused, "Set up an authenticator app"),
        "{}",
        refused.body
    );
    assert!(!has_button(&refused, "Later"), "{}", refused.body);
    assert_eq!(refused.location, None);
    let audit = app.audit(&e, "action=login.skip").await;
    assert_eq!(
        (audit[0]["outcome"].as_str(), audit[0]["reason"].as_str()),
        (Some("denied"), Some("skip_not_allowed")),
        "{audit:?}"
    );

    // After the deadline bob must enrol: the methods at once, no "Later"; a "Later" forged
    // with a valid CSRF pair is refused the same way and mints nothing.
    let (b, _, page) = enrol_start(&app, &rp, &secret, "bob").await;
    assert!(!page.body.contains("becomes mandatory"), "{}", page.body);
    assert!(
        !has_button(&page, "Later") && !has_button(&page, "Not now"),
        "{}",
        page.body
    );
    assert!(
        has_button(&page, "Set up an authenticator app"),
        "{}",
        page.body
    );
    let forged = b
        .post("/oidc/enroll/later", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);
    assert_eq!(forged.location, None);
    let (_, sessions) = app.get("/v1/tenants/acme/users/bob/sessions", &e.key).await;
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        1,
        "only the one from the first \"Later\": {sessions}"
    );

    // A client app that cannot show a second step, while 2FA is required: the blocked page,
    // then access_denied back to that client.
    let imap_secret = register(&app, "acme", &e.key, "imap").await;
    let irp = Rp::discover(&app, "acme.imap", &imap_secret).await;
    let h = hint_with(
        &app,
        &imap_secret,
        json!({"iss": "acme.imap", "sub": "bob"}),
    );
    let p = Browser::new(&app).get(&irp.authorize(&h).url).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(
        p.body.contains(
            "This application cannot be used while two-step verification is required for you."
        ),
        "{}",
        p.body
    );
    assert!(p.body.contains("error=access_denied"), "{}", p.body);

    // A deadline later today: "today".
    set_policy(
        &app,
        &e,
        required(json!({"mandatory_from": deadline + 15 * HOUR_MS})),
    )
    .await;
    let (_, _, page) = enrol_start(&app, &rp, &secret, "dave").await;
    assert!(
        page.body
            .contains("mandatory for your organisation today (from 2026-12-06 15:00 UTC)."),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn an_optional_policy_offers_not_now_and_the_pages_refuse_what_does_not_fit() {
    let app = spawn().await;
    let policy = required(json!({
        "enforcement": {"mode": "optional"},
        "methods": ["totp", "email"],
    }));
    let (e, secret, rp) = integrator(&app, policy).await;
    app.user("acme", &e.key, "bob").await;
    app.user("acme", &e.key, "carol").await;

    // Optional: no date, "Not now" signs in with the password only.
    let (b, req, page) = enrol_start(&app, &rp, &secret, "bob").await;
    assert!(page
        .body
        .contains("Your organisation offers two-step verification"));
    assert!(!page.body.contains("becomes mandatory"));
    assert!(
        has_button(&page, "Not now") && has_button(&page, "Set up now"),
        "{}",
        page.body
    );
    // The methods the tenant enables, the app first; SMS is not one of them.
    let methods = b.get("/oidc/enroll/methods").await;
    let app_at = methods.body.find("Set up an authenticator app").unwrap();
    let email_at = methods.body.find("Get codes by email").unwrap();
    assert!(app_at < email_at, "{}", methods.body);
    assert!(!methods.body.contains("text message"), "{}", methods.body);
    let sms = b.get("/oidc/enroll/sms").await;
    assert_eq!(
        (sms.status, sms.location.as_deref()),
        (StatusCode::SEE_OTHER, Some("/oidc/enroll/methods"))
    );
    let p = b
        .post(
            "/oidc/enroll/sms",
            &[("csrf", &methods.csrf()), ("destination", "+447700900123")],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
    // Every form of the enrolment needs its CSRF pair.
    for path in [
        "/oidc/enroll/totp",
        "/oidc/enroll/email",
        "/oidc/enroll/resend",
        "/oidc/enroll/confirm",
        "/oidc/enroll/cancel",
        "/oidc/enroll/later",
    ] {
        let p = b
            .post(
                path,
                &[("csrf", "forged"), ("destination", "bob@example.com")],
            )
            .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{path}: {}", p.body);
    }
    let back = b
        .post("/oidc/enroll/later", &[("csrf", &methods.csrf())])
        .await;
    let (sub, amr, acr) = exchange(&app, &rp, &back, req).await;
    assert_eq!(
        (sub.as_str(), amr, acr.as_str()),
        ("bob", vec!["pwd".to_string()], ACR_1FA)
    );

    // Cancel on an enrolment page: the login ends (audited) and the client hears
    // access_denied; the cookie opens nothing afterwards.
    let (b, req, _) = enrol_start(&app, &rp, &secret, "carol").await;
    let email = b.get("/oidc/enroll/email").await;
    assert!(email
        .body
        .contains("<label for=\"destination\">Email address</label>"));
    assert!(has_button(&email, "Cancel sign-in"));
    let done = b
        .post("/oidc/enroll/cancel", &[("csrf", &email.csrf())])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.body.contains("error=access_denied"), "{}", done.body);
    assert!(done.body.contains(&format!("state={}", req.state.secret())));
    let audit = app.audit(&e, "action=oidc.hosted.cancel").await;
    assert_eq!(
        (audit[0]["outcome"].as_str(), audit[0]["reason"].as_str()),
        (Some("denied"), Some("enroll_offered")),
        "{audit:?}"
    );
    for p in [
        b.get("/oidc/enroll").await,
        b.post("/oidc/enroll/later", &[("csrf", &email.csrf())])
            .await,
    ] {
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
        assert!(p.body.contains("This sign-in has ended"), "{}", p.body);
    }

    // A login waiting for a code is not an enrolment.
    let b = Browser::new(&app);
    let req = rp.authorize(&hint(&app, &secret));
    b.open_challenge(&req.url).await;
    let p = b.get("/oidc/enroll").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
}

/// The six-digit code in a text message.
fn code_in_text(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_string()
}

/// Waits (up to 10 s) until the SMS provider got `n` messages; returns the last one's text.
async fn nth_sms(provider: &MockHttp, n: usize) -> String {
    for _ in 0..200 {
        let requests = provider.requests();
        if requests.len() >= n {
            assert_eq!(requests.len(), n, "more messages than expected");
            let last = &requests[n - 1];
            assert_eq!(last.form_value("To").as_deref(), Some("+447700900123"));
            return last.form_value("Body").unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the provider did not get message {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_enrols_a_phone_on_the_hosted_pages_with_resend_and_a_wrong_code() {
    let provider = MockHttp::start().await;
    let base = provider.base_url.clone();
    let app = spawn_with(move |c| {
        c.sms.provider = SmsProvider::Twilio;
        c.sms.twilio.base_url = base;
        c.sms.twilio.account_sid = Some("AC0123456789".into());
        c.sms.twilio.auth_token = Some(Secret::new("token-xyz"));
        c.sms.twilio.from = Some("+15005550006".into());
        c.delivery.poll_interval_ms = 50;
    })
    .await;
    let (e, secret, rp) = integrator(&app, required(json!({}))).await;
    app.user("acme", &e.key, "bob").await;
    let (b, req, page) = enrol_start(&app, &rp, &secret, "bob").await;
    // Required now: the chooser at once, the app first, then SMS, then email.
    let order: Vec<usize> = [
        "Set up an authenticator app",
        "Get codes by text message",
        "Get codes by email",
    ]
    .iter()
    .map(|l| {
        page.body
            .find(l)
            .unwrap_or_else(|| panic!("{l}: {}", page.body))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");

    let form = b.get("/oidc/enroll/sms").await;
    assert_eq!(form.status, StatusCode::OK);
    for needle in [
        "<label for=\"destination\">Mobile phone number</label>",
        "type=\"tel\" autocomplete=\"tel\"",
        "aria-describedby=\"destination-hint\"",
    ] {
        assert!(form.body.contains(needle), "{needle}: {}", form.body);
    }
    // A number without its country code: the form again, with what was typed and why.
    let bad = b
        .post(
            "/oidc/enroll/sms",
            &[("csrf", &form.csrf()), ("destination", "07700 900123")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    for needle in [
        "role=\"alert\" id=\"destination-error\">That is not a phone number we can send to.",
        "value=\"07700 900123\"",
        "aria-describedby=\"destination-hint destination-error\" aria-invalid=\"true\"",
    ] {
        assert!(bad.body.contains(needle), "{needle}: {}", bad.body);
    }
    // A country the tenant does not send to.
    let bad = b
        .post(
            "/oidc/enroll/sms",
            &[("csrf", &bad.csrf()), ("destination", "+88216000000")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body
            .contains("text messages to this country are not enabled"),
        "{}",
        bad.body
    );
    assert!(provider.requests().is_empty());

    // The number as people write it: a code goes out, the page says where and when to ask
    // again, and never shows the whole number.
    let sent = b
        .post(
            "/oidc/enroll/sms",
            &[("csrf", &bad.csrf()), ("destination", "+44 7700 900123")],
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    assert!(sent.body.contains("We sent a code to"), "{}", sent.body);
    assert!(
        sent.body.contains("You can ask for another in 30 seconds."),
        "{}",
        sent.body
    );
    assert!(sent
        .body
        .contains("<label for=\"code\">Code from the text message</label>"));
    assert!(!sent.body.contains("7700900123") && !sent.body.contains("7700 900123"));
    let first = code_in_text(&nth_sms(&provider, 1).await);
    let factor = sent.input("factor_id").unwrap();

    // "Send a new code" at once: the cooldown, nothing sent.
    let wait = b
        .post(
            "/oidc/enroll/resend",
            &[("csrf", &sent.csrf()), ("factor_id", &factor)],
        )
        .await;
    assert_eq!(wait.status, StatusCode::OK, "{}", wait.body);
    assert!(wait
        .body
        .contains("A code was sent recently. You can ask for another in"));
    // A wrong code: the same form again, the factor still pending.
    let wrong = if first == "000000" {
        "111111"
    } else {
        "000000"
    };
    let refused = b
        .post(
            "/oidc/enroll/confirm",
            &[
                ("csrf", &wait.csrf()),
                ("factor_id", &factor),
                ("code", wrong),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(
        refused.body.contains("That code did not work"),
        "{}",
        refused.body
    );
    assert!(has_button(&refused, "Send a new code"));
    assert_eq!(refused.input("factor_id").as_deref(), Some(factor.as_str()));
    // After the cooldown a new code goes out; the first one no longer works.
    app.advance_secs(31);
    let again = b
        .post(
            "/oidc/enroll/resend",
            &[("csrf", &refused.csrf()), ("factor_id", &factor)],
        )
        .await;
    assert!(again.body.contains("We sent a code to"), "{}", again.body);
    let second = code_in_text(&nth_sms(&provider, 2).await);
    let mut current = again;
    if second != first {
        let old = b
            .post(
                "/oidc/enroll/confirm",
                &[
                    ("csrf", &current.csrf()),
                    ("factor_id", &factor),
                    ("code", &first),
                ],
            )
            .await;
        assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.body);
        current = old;
    }
    let done = b
        .post(
            "/oidc/enroll/confirm",
            &[
                ("csrf", &current.csrf()),
                ("factor_id", &factor),
                ("code", &second),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done
        .body
        .contains("<title>Save your recovery codes</title>"));

    // The recovery codes: a download named after the organisation, a print stylesheet, and
    // the Print button's script, which this page alone may run (from this origin only).
    let csp = done.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self';") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(
        done.body
            .contains("download=\"acme-inc-recovery-codes.txt\""),
        "{}",
        done.body
    );
    assert!(done.body.contains("href=\"data:text/plain;charset=utf-8,"));
    assert!(done
        .body
        .contains("<button type=\"button\" id=\"print\" class=\"plain\" hidden>"));
    for (asset, kind) in [("print.js", "text/javascript"), ("print.css", "text/css")] {
        let at = done.body.find(&format!("/assets/{asset}?v=")).unwrap();
        let href = &done.body[at..];
        let href = &href[..href.find('"').unwrap()];
        let r = reqwest::get(format!("{}{href}", app.base)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert_eq!(
            r.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
    }
    let marker = "<a class=\"continue\" href=\"";
    let continue_at = done.body.find(marker).unwrap() + marker.len();
    let href = &done.body[continue_at..];
    let href = html_unescape(&href[..href.find('"').unwrap()]);
    let back = Page {
        status: StatusCode::SEE_OTHER,
        location: Some(href),
        headers: Default::default(),
        body: String::new(),
    };
    let (sub, amr, acr) = exchange(&app, &rp, &back, req).await;
    assert_eq!(
        (sub.as_str(), amr, acr.as_str()),
        ("bob", vec!["pwd".to_string(), "sms".to_string()], ACR_2FA)
    );
    let (_, list) = app.get("/v1/tenants/acme/users/bob/factors", &e.key).await;
    let active: Vec<(&str, &str)> = list["factors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "active")
        .map(|f| (f["kind"].as_str().unwrap(), f["id"].as_str().unwrap()))
        .collect();
    assert_eq!(active, vec![("sms", factor.as_str())], "{list}");
    let audit = app.audit(&e, "action=code.send").await;
    assert!(
        audit
            .iter()
            .any(|a| a["reason"] == "enrol" && a["outcome"] == "ok"),
        "the resend is an enrolment code: {audit:?}"
    );
}

/// The `&amp;` of an attribute value back to `&`.
fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&")
}
