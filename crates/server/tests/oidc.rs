//! The hosted second step over OpenID Connect, against a real server: an off-the-shelf relying
//! party (the `openidconnect` crate: discovery, authorization URL with PKCE and nonce, code
//! exchange, ID token verification against the JWKS) as the client, reqwest with a cookie
//! store as the browser (reading each form's CSRF token from the HTML), and codes from
//! `oathtool`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::logins::{err, required};
use common::oidc::{Browser, Page};
use common::rp::*;
use openidconnect::core::CoreJwsSigningAlgorithm;
use openidconnect::{AuthenticationContextClass, PkceCodeChallenge};
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn an_oidc_relying_party_signs_in_through_the_hosted_challenge() {
    let app = spawn().await;
    let (e, secret) = acme(&app).await;
    let e = with_secret(e, &secret);
    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let b = Browser::new(&app);

    let req = rp.authorize(&hint(&app, &secret));
    let first = b.get(&req.url).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    // The login cookie: HttpOnly, SameSite=Lax (the client's redirect is a cross-site
    // top-level navigation), only for the hosted pages, short-lived.
    let login_cookie = first.headers["set-cookie"].to_str().unwrap().to_string();
    for part in [
        "tf_login=tfl_",
        "HttpOnly",
        "SameSite=Lax",
        "Path=/oidc",
        "Max-Age=600",
    ] {
        assert!(
            login_cookie.contains(part),
            "{part} missing: {login_cookie}"
        );
    }
    let page = b.get(first.location.as_deref().unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // The page: no script, not frameable, labelled code input for one-time codes.
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("script-src"));
    assert!(!page.body.contains("<script"));
    assert_eq!(page.headers["x-frame-options"], "DENY");
    for needle in [
        "<label for=\"code\">",
        "name=\"code\"",
        "autocomplete=\"one-time-code\"",
        "inputmode=\"numeric\"",
        ">Verify</button>",
        "Remember this device for 30 days",
        "href=\"/oidc/challenge/recover\"",
        "name=\"viewport\"",
    ] {
        assert!(
            page.body.contains(needle),
            "{needle} missing in {}",
            page.body
        );
    }

    // A wrong code, then the right one.
    let wrong = b.verify(&page, "000000", false).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("That code did not work"),
        "{}",
        wrong.body
    );
    let back = b
        .verify(&wrong, &oathtool(&e.secret, app.now_secs()), false)
        .await;
    let code = code_of(&app, &back, &req);

    let tokens = rp.exchange(&code, req.verifier).await.unwrap();
    let claims = rp.claims(&app, &tokens, &req.nonce);
    assert_eq!(claims.subject().as_str(), "alice");
    assert_eq!(amr(&claims), vec!["pwd", "otp"]);
    assert_eq!(
        claims.auth_context_ref(),
        Some(&AuthenticationContextClass::new(
            "urn:twofold:acr:2fa".into()
        ))
    );
    assert_eq!(
        claims.auth_time().unwrap().timestamp(),
        app.now_secs() as i64
    );

    // The login minted a live session; replaying the code fails and revokes it (RFC 6749
    // §4.1.2).
    let live: Vec<Value> = sessions(&app, &e).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["active"], true);
    let (_, verifier) = PkceCodeChallenge::new_random_sha256();
    let replay = rp.exchange(&code, verifier).await.unwrap_err();
    assert!(replay.contains("invalid_grant"), "{replay}");
    let after = sessions(&app, &e).await;
    assert_eq!(after[0]["active"], false, "{after:?}");
    let audit = app.audit(&e, "action=oidc.token").await;
    assert!(
        audit
            .iter()
            .any(|a| a["outcome"] == "denied" && a["reason"] == "code_replayed"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn bad_login_hints_are_refused_back_to_the_client() {
    let app = spawn().await;
    let (e, secret) = acme(&app).await;
    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let b = Browser::new(&app);
    let now = app.now_secs();
    let refused = |label: &'static str, hint: String| (label, hint);
    let jti = "replayed-jti-0001";
    let cases = vec![
        refused("expired", hint_with(&app, &secret, json!({"exp": now - 1}))),
        refused(
            "exp more than 2 minutes ahead",
            hint_with(&app, &secret, json!({"exp": now + 121})),
        ),
        refused(
            "wrong signature",
            hint_with(&app, "not-the-secret", json!({})),
        ),
        refused(
            "wrong audience",
            hint_with(&app, &secret, json!({"aud": "https://elsewhere.example"})),
        ),
        refused(
            "wrong issuer",
            hint_with(&app, &secret, json!({"iss": "acme.imap"})),
        ),
        refused("garbage", "not.a.jwt".to_string()),
    ];
    for (label, h) in cases {
        let req = rp.authorize(&h);
        let p = b.get(&req.url).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{label}: {}", p.body);
        assert_eq!(
            p.param("error").as_deref(),
            Some("invalid_request"),
            "{label}"
        );
        assert_eq!(
            p.param("state").as_deref(),
            Some(req.state.secret().as_str()),
            "{label}"
        );
        assert_eq!(p.param("code"), None, "{label}");
    }
    // An unsigned hint (alg none) is refused too.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(
            json!({"iss": "acme.web", "aud": issuer(&app), "sub": "alice",
                   "primary": "password", "exp": now + 60, "jti": "unsigned-0001"})
            .to_string()
            .as_bytes()
        )
    );
    let p = b.get(&rp.authorize(&none).url).await;
    assert_eq!(p.param("error").as_deref(), Some("invalid_request"));

    // A hint works once.
    let once = hint_with(&app, &secret, json!({"jti": jti}));
    b.open_challenge(&rp.authorize(&once).url).await;
    let again = b.get(&rp.authorize(&once).url).await;
    assert_eq!(again.param("error").as_deref(), Some("invalid_request"));
    let audit = app.audit(&e, "action=oidc.authorize").await;
    let reasons: Vec<&str> = audit.iter().filter_map(|a| a["reason"].as_str()).collect();
    for r in [
        "hint_expired",
        "hint_lifetime",
        "hint_signature",
        "hint_audience",
        "hint_issuer",
        "hint_malformed",
        "hint_replayed",
    ] {
        assert!(reasons.contains(&r), "{r} not audited: {reasons:?}");
    }

    // Without PKCE, or with plain PKCE: refused.
    let req = rp.authorize(&hint(&app, &secret));
    let plain = req
        .url
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let p = b.get(&plain).await;
    assert_eq!(p.param("error").as_deref(), Some("invalid_request"));
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn untrusted_clients_and_redirects_get_a_page_never_a_redirect() {
    let app = spawn().await;
    let (_e, secret) = acme(&app).await;
    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let b = Browser::new(&app);
    let req = rp.authorize(&hint(&app, &secret));
    for url in [
        req.url.replace(
            "redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fcallback",
            "redirect_uri=https%3A%2F%2Fevil.example%2Fcallback",
        ),
        req.url.replace("client_id=acme.web", "client_id=acme.nope"),
        format!("{}&client_id=acme.web", req.url),
    ] {
        let p = b.get(&url).await;
        assert_eq!(p.status, StatusCode::BAD_REQUEST, "{url}: {}", p.body);
        assert_eq!(p.location, None);
        assert!(p.body.contains("not valid"), "{}", p.body);
    }
}

#[tokio::test]
async fn the_token_endpoint_binds_the_code_to_client_redirect_and_verifier() {
    let app = spawn().await;
    let (e, secret) = acme(&app).await;
    let e = with_secret(e, &secret);
    // Another tenant with its own client app `web`.
    let globex_key = app.tenant("globex").await;
    let boss = json!({"external_id": "gboss", "email": "gboss@example.com", "is_admin": true});
    let (s, _) = app
        .post("/v1/tenants/globex/users", &app.operator_key, boss)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, p) = app
        .post(
            "/v1/tenants/globex/policy/proposals",
            &globex_key,
            json!({"admin": "gboss", "policy": required(json!({}))}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let code = app.next_code("gboss@example.com").await;
    let (s, c) = app
        .post(
            &format!(
                "/v1/tenants/globex/policy/proposals/{}/confirm",
                p["id"].as_str().unwrap()
            ),
            &globex_key,
            json!({"code": code}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let globex_secret = register(&app, "globex", &globex_key, "web").await;

    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let b = Browser::new(&app);
    let (req, code) = sign_in(&app, &rp, &e, &b, false).await;
    let token_url = format!("{}/oidc/token", app.base);
    let post = |form: Vec<(&'static str, String)>| {
        let c = reqwest::Client::new();
        let url = token_url.clone();
        async move {
            let r = c.post(url).form(&form).send().await.unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap())
        }
    };
    let base = |client: &str, secret: &str, redirect: &str, verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.clone()),
            ("redirect_uri", redirect.to_string()),
            ("code_verifier", verifier.to_string()),
            ("client_id", client.to_string()),
            ("client_secret", secret.to_string()),
        ]
    };
    let right = req.verifier.secret().clone();
    let wrong_verifier = PkceCodeChallenge::new_random_sha256().1.secret().clone();
    // Wrong secret: invalid_client (401). Another tenant's client, a wrong redirect URI or
    // verifier: invalid_grant. None of these spends the code.
    let other_redirect = "http://localhost:3000/other";
    for (form, want) in [
        (
            base("acme.web", "wrong", REDIRECT, &right),
            (StatusCode::UNAUTHORIZED, "invalid_client"),
        ),
        (
            base("globex.web", &globex_secret, REDIRECT, &right),
            (StatusCode::BAD_REQUEST, "invalid_grant"),
        ),
        (
            base("acme.web", &secret, other_redirect, &right),
            (StatusCode::BAD_REQUEST, "invalid_grant"),
        ),
        (
            base("acme.web", &secret, REDIRECT, &wrong_verifier),
            (StatusCode::BAD_REQUEST, "invalid_grant"),
        ),
    ] {
        let (s, r) = post(form).await;
        assert_eq!((s, r["error"].as_str().unwrap()), want, "{r}");
    }
    // client_secret_post with everything right: the ID token.
    let (s, r) = post(base("acme.web", &secret, REDIRECT, &right)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["token_type"], "Bearer");
    assert!(r["id_token"].as_str().unwrap().split('.').count() == 3);
    // Spent.
    let (s, r) = post(base("acme.web", &secret, REDIRECT, &right)).await;
    assert_eq!(
        (s, r["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    // A code expires after a minute.
    app.advance_secs(30);
    let (req, code) = sign_in(&app, &rp, &e, &b, false).await;
    app.advance_secs(61);
    let late = rp.exchange(&code, req.verifier).await.unwrap_err();
    assert!(late.contains("invalid_grant"), "{late}");

    // Another tenant's client cannot sign in acme's users: globex's hint names a globex
    // user, and globex has no alice.
    let grp = Rp::discover(&app, "globex.web", &globex_secret).await;
    let gh = hint_with(&app, &globex_secret, json!({"iss": "globex.web"}));
    let p = b.get(&grp.authorize(&gh).url).await;
    assert_eq!(
        p.param("error").as_deref(),
        Some("access_denied"),
        "{:?}",
        p.location
    );
}

#[tokio::test]
async fn forms_need_their_csrf_token_and_the_login_cookie_is_only_for_its_login() {
    let app = spawn().await;
    let (e, secret) = acme(&app).await;
    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let b = Browser::new(&app);
    let req = rp.authorize(&hint(&app, &secret));
    let page = b.open_challenge(&req.url).await;
    let code = oathtool(&e.secret, app.now_secs());
    let factor = page.input("factor_id").unwrap();

    // No CSRF token, or another one: refused before the code is even looked at.
    for csrf in ["", "forged-token"] {
        let p = b
            .post(
                "/oidc/challenge/verify",
                &[("csrf", csrf), ("factor_id", &factor), ("code", &code)],
            )
            .await;
        assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    }
    // The pending login's cookie is no session.
    let pending = b.cookie("tf_login").unwrap();
    assert!(pending.starts_with("tfl_"));
    let (s, r) = app
        .post(
            "/v1/tenants/acme/sessions/introspect",
            &e.key,
            json!({"token": pending}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_ne!(r["active"], true, "{r}");
    // Another browser holding nothing gets the "ended" page.
    let stranger = Browser::new(&app);
    let p = stranger.get("/oidc/challenge").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);

    // The right code with the token: done; afterwards the same cookie opens nothing.
    let back = b.verify(&page, &code, false).await;
    code_of(&app, &back, &req);
    // The same cookies in another browser (a copy of the jar): the login is over.
    let copy = Browser::new(&app);
    let base = reqwest::Url::parse(&app.base).unwrap();
    let csrf = page.csrf();
    copy.jar
        .add_cookie_str(&format!("tf_login={pending}; Path=/oidc"), &base);
    copy.jar
        .add_cookie_str(&format!("tf_csrf={csrf}; Path=/oidc"), &base);
    let p = copy.get("/oidc/challenge").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
    assert!(p.body.contains("This sign-in has ended"));
    app.advance_secs(30);
    let fresh = oathtool(&e.secret, app.now_secs());
    let p = copy
        .post(
            "/oidc/challenge/verify",
            &[("csrf", &csrf), ("factor_id", &factor), ("code", &fresh)],
        )
        .await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);
    assert!(p.body.contains("This sign-in has ended"));
    assert_eq!(p.location, None);
}

#[tokio::test]
async fn a_throttled_right_code_looks_like_a_wrong_one_then_works_after_the_backoff() {
    let app = spawn().await;
    let (e, secret) = acme(&app).await;
    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let b = Browser::new(&app);
    let req = rp.authorize(&hint(&app, &secret));
    let page = b.open_challenge(&req.url).await;
    // Five wrong codes start the backoff (SECURITY.md: exponential after 5 failures). Each
    // page has a fresh CSRF token: the answers are compared without it.
    let without_token = |p: &Page| p.body.replace(&p.csrf(), "TOKEN");
    let mut current = page;
    let mut wrong = None;
    for _ in 0..5 {
        let p = b.verify(&current, "000000", false).await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED);
        wrong = Some(without_token(&p));
        current = p;
    }
    // The right code while throttled: the very same page (INV-11); the audit log knows why.
    let right = oathtool(&e.secret, app.now_secs());
    let throttled = b.verify(&current, &right, false).await;
    assert_eq!(throttled.status, StatusCode::UNAUTHORIZED);
    assert_eq!(Some(without_token(&throttled)), wrong);
    let page = throttled;
    let audit = app.audit(&e, "action=login.verify").await;
    assert_eq!(audit[0]["reason"], "throttled", "{:?}", audit[0]);
    // After the backoff, the next code signs in.
    app.advance_secs(15 * 60);
    let back = b
        .verify(&page, &oathtool(&e.secret, app.now_secs()), false)
        .await;
    // The pending login lives 10 minutes: this one expired meanwhile.
    assert_eq!(back.status, StatusCode::BAD_REQUEST, "{}", back.body);
    let req = rp.authorize(&hint(&app, &secret));
    let page = b.open_challenge(&req.url).await;
    let back = b
        .verify(&page, &oathtool(&e.secret, app.now_secs()), false)
        .await;
    code_of(&app, &back, &req);
}

#[tokio::test]
async fn a_remembered_device_skips_the_code_until_sign_out_everywhere_or_a_factor_removal() {
    let app = spawn().await;
    let (e, secret) = acme(&app).await;
    let e = with_secret(e, &secret);
    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let b = Browser::new(&app);

    let (req, code) = sign_in(&app, &rp, &e, &b, true).await;
    rp.exchange(&code, req.verifier).await.unwrap();
    assert!(b.cookie("tf_device").unwrap().starts_with("tfd_"));
    assert_eq!(b.cookie("tf_login"), None, "the login cookie is cleared");

    // The next sign-in goes straight back with a code; the ID token says how.
    let req = rp.authorize(&hint(&app, &secret));
    let back = b.get(&req.url).await;
    let code = code_of(&app, &back, &req);
    let tokens = rp.exchange(&code, req.verifier).await.unwrap();
    let claims = rp.claims(&app, &tokens, &req.nonce);
    assert_eq!(
        claims.auth_context_ref(),
        Some(&AuthenticationContextClass::new(
            "urn:twofold:acr:remembered-device".into()
        ))
    );

    // "Sign out everywhere" kills the device: the code is asked again.
    let (s, _) = app
        .post(
            "/v1/tenants/acme/users/alice/sign-out-everywhere",
            &e.key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    app.advance_secs(30);
    let req = rp.authorize(&hint(&app, &secret));
    let page = b.open_challenge(&req.url).await;
    let back = b
        .verify(&page, &oathtool(&e.secret, app.now_secs()), true)
        .await;
    code_of(&app, &back, &req);

    // Remembered again; then alice adds an email factor and removes her authenticator app
    // (proven by a code from it): the device dies with the factor change.
    let req = rp.authorize(&hint(&app, &secret));
    code_of(&app, &b.get(&req.url).await, &req);
    let email_factor = app.active_contact(&e, "email", "alice@example.com").await;
    app.advance_secs(30);
    let (s, d) = app
        .post(
            &format!(
                "/v1/tenants/acme/users/alice/factors/{}/disable",
                e.factor_id
            ),
            &e.key,
            json!({"code": oathtool(&e.secret, app.now_secs())}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let req = rp.authorize(&hint(&app, &secret));
    let page = b.open_challenge(&req.url).await;
    // Only the email factor is left: "send a code", then the emailed code.
    assert!(page.body.contains("Send a code"), "{}", page.body);
    let csrf = page.csrf();
    let sent = b
        .post(
            "/oidc/challenge/send",
            &[("csrf", &csrf), ("factor_id", &email_factor)],
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    assert!(
        sent.body.contains("You can ask for another in"),
        "{}",
        sent.body
    );
    let code = app
        .next_message_where("alice@example.com", |m| m.code().is_some())
        .await
        .code()
        .unwrap();
    // Asking again at once: the cooldown the core enforces is shown, nothing is sent.
    let again = b
        .post(
            "/oidc/challenge/send",
            &[("csrf", &sent.csrf()), ("factor_id", &email_factor)],
        )
        .await;
    assert!(
        again.body.contains("A code was sent recently"),
        "{}",
        again.body
    );
    let back = b.verify(&again, &code, false).await;
    let code = code_of(&app, &back, &req);
    let tokens = rp.exchange(&code, req.verifier).await.unwrap();
    assert_eq!(
        amr(&rp.claims(&app, &tokens, &req.nonce)),
        vec!["pwd", "email"]
    );
}

#[tokio::test]
async fn recovery_codes_cancel_and_the_pages_for_what_is_not_there_yet() {
    let app = spawn().await;
    let (e, secret) = acme(&app).await;
    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let b = Browser::new(&app);

    // A recovery code instead of the app.
    let req = rp.authorize(&hint(&app, &secret));
    b.open_challenge(&req.url).await;
    let form = b.get("/oidc/challenge/recover").await;
    assert!(form.body.contains("<label for=\"recovery_code\">"));
    let wrong = b
        .post(
            "/oidc/challenge/recover",
            &[
                ("csrf", &form.csrf()),
                ("recovery_code", "aaaa-bbbb-cccc-dddd"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let back = b
        .post(
            "/oidc/challenge/recover",
            &[
                ("csrf", &wrong.csrf()),
                ("recovery_code", &e.recovery_codes[0]),
            ],
        )
        .await;
    let code = code_of(&app, &back, &req);
    let tokens = rp.exchange(&code, req.verifier).await.unwrap();
    assert_eq!(
        amr(&rp.claims(&app, &tokens, &req.nonce)),
        vec!["pwd", "rcode"]
    );

    // Cancel: a page, then access_denied back to the client.
    let req = rp.authorize(&hint(&app, &secret));
    let page = b.open_challenge(&req.url).await;
    let done = b
        .post("/oidc/challenge/cancel", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(done.body.contains("error=access_denied"), "{}", done.body);
    assert!(done.body.contains(&format!("state={}", req.state.secret())));

    // A user without a factor while 2FA is required: the enrolment page (tested in Chromium
    // in browser_signin.rs), which the challenge does not stand in for.
    app.user("acme", &e.key, "bob").await;
    let h = hint_with(&app, &secret, json!({"sub": "bob"}));
    let p = b.get(&rp.authorize(&h).url).await;
    assert_eq!(p.status, StatusCode::SEE_OTHER, "{}", p.body);
    assert_eq!(p.location.as_deref(), Some("/oidc/enroll"));
    let p = b.get("/oidc/enroll").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert!(p.body.contains("Set up an authenticator app"), "{}", p.body);
    let p = b.get("/oidc/challenge").await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST, "{}", p.body);

    // A client app that cannot do 2FA while it is required: denied, with a page.
    let imap_secret = register(&app, "acme", &e.key, "imap").await;
    let irp = Rp::discover(&app, "acme.imap", &imap_secret).await;
    let h = hint_with(&app, &imap_secret, json!({"iss": "acme.imap"}));
    let p = b.get(&irp.authorize(&h).url).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN, "{}", p.body);
    assert!(p.body.contains("error=access_denied"));
}

#[tokio::test]
async fn clients_are_managed_by_the_tenant_api_with_audit_rows() {
    let app = spawn().await;
    let (e, secret) = acme(&app).await;
    let other = app.tenant("globex").await;
    let path = "/v1/tenants/acme/oidc/clients";

    // Bad input: 400 with a stable code; an unknown client app; a second registration.
    for (body, code) in [
        (
            json!({"client_app": "web", "redirect_uris": ["http://app.example/cb"]}),
            "invalid",
        ),
        (
            json!({"client_app": "nope", "redirect_uris": [REDIRECT]}),
            "invalid",
        ),
        (json!({"client_app": "web", "redirect_uris": []}), "invalid"),
    ] {
        let (s, r) = app.post(path, &e.key, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{r}");
        assert!(err(&r).unwrap().starts_with(code), "{r}");
    }
    let (s, r) = app
        .post(
            path,
            &e.key,
            json!({"client_app": "web", "redirect_uris": [REDIRECT]}),
        )
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("oidc_client_exists"))
    );

    // Listed without the secret; another tenant's key sees nothing of it.
    let (s, list) = app.get(path, &e.key).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["clients"][0]["client_id"], "acme.web");
    assert!(!list.to_string().contains(&secret));
    let (s, _) = app.get(path, &other).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .post(
            "/v1/tenants/acme/oidc/clients/acme.web/secret",
            &other,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Rotation: the old secret stops working at the token endpoint and for hints.
    let (s, rotated) = app
        .post(
            "/v1/tenants/acme/oidc/clients/acme.web/secret",
            &e.key,
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    let new_secret = rotated["client_secret"].as_str().unwrap();
    assert_ne!(new_secret, secret);
    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let b = Browser::new(&app);
    let p = b.get(&rp.authorize(&hint(&app, &secret)).url).await;
    assert_eq!(p.param("error").as_deref(), Some("invalid_request"));
    let rp = Rp::discover(&app, "acme.web", new_secret).await;
    let req = rp.authorize(&hint(&app, new_secret));
    b.open_challenge(&req.url).await;

    // New redirect URIs replace the old ones.
    let (s, r) = app
        .call(
            reqwest::Method::PUT,
            "/v1/tenants/acme/oidc/clients/acme.web",
            Some(&e.key),
            Some(json!({"redirect_uris": ["https://app.example.com/cb"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["redirect_uris"], json!(["https://app.example.com/cb"]));
    let p = b.get(&rp.authorize(&hint(&app, new_secret)).url).await;
    assert_eq!(
        p.status,
        StatusCode::BAD_REQUEST,
        "the old URI is not trusted now"
    );

    let audit = app.audit(&e, "").await;
    let actions: Vec<&str> = audit.iter().filter_map(|a| a["action"].as_str()).collect();
    for a in [
        "oidc_client.create",
        "oidc_client.rotate_secret",
        "oidc_client.redirect_uris",
    ] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    let (s, _) = app
        .call(
            reqwest::Method::DELETE,
            "/v1/tenants/acme/oidc/clients/acme.web",
            Some(&e.key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, list) = app.get(path, &e.key).await;
    assert_eq!(list["clients"], json!([]));

    // The OpenAPI document describes the client API.
    let (_, doc) = app.get("/openapi.json", &e.key).await;
    assert!(doc["paths"]["/v1/tenants/{tenant}/oidc/clients"]["post"].is_object());
}

#[tokio::test]
async fn every_node_on_one_store_signs_with_the_same_published_key() {
    let app = spawn().await;
    let (e, secret) = acme(&app).await;
    let e = with_secret(e, &secret);
    // A second node on the same data directory (same keys, same database).
    let port = twofold_testkit::free_port();
    let other = common::spawn_app_at_with(app.data_path.clone(), |c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = Some(app.base.clone());
    })
    .await;
    let jwks = |base: String| async move {
        reqwest::get(format!("{base}/oidc/jwks"))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    // The key is made on first use, by whichever node comes first, and shared.
    let from_other = jwks(other.base.clone()).await;
    let from_first = jwks(app.base.clone()).await;
    assert_eq!(from_first, from_other);
    assert_eq!(from_first["keys"].as_array().unwrap().len(), 1);
    assert_eq!(from_first["keys"][0]["alg"], "ES256");
    assert!(
        from_first["keys"][0].get("d").is_none(),
        "never the private key"
    );
    // A code issued through one node is exchanged on the other; the ID token verifies
    // against the JWKS the relying party discovered from the first.
    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let b = Browser::new(&app);
    let (req, code) = sign_in(&app, &rp, &e, &b, false).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", req.verifier.secret().as_str()),
    ];
    let r = reqwest::Client::new()
        .post(format!("{}/oidc/token", other.base))
        .basic_auth("acme.web", Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let id_token = r.json::<Value>().await.unwrap()["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    let header = jsonwebtoken::decode_header(&id_token).unwrap();
    assert_eq!(header.kid.as_deref(), from_first["keys"][0]["kid"].as_str());
    let token: openidconnect::core::CoreIdToken = id_token.parse().unwrap();
    let now = app.now_secs() as i64;
    let verifier = rp
        .client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256])
        .set_time_fn(move || chrono::DateTime::from_timestamp(now, 0).unwrap());
    let claims = token.claims(&verifier, &req.nonce).unwrap();
    assert_eq!(claims.subject().as_str(), "alice");
}
