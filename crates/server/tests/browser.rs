//! The hosted pages in a real browser: headless Chromium driven over WebDriver
//! (`twofold_testkit::browser`), on the "this wasn't me" page of a real security notice.
//! A failing browser step keeps a screenshot and the page source under
//! `target/browser-failures/` and names them in the failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chromium::{assert_page_is_clean, main_text, wait_for_title};
use common::logins::*;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use twofold_testkit::browser::fantoccini::{key::Key, Locator};
use twofold_testkit::browser::{Browser, Viewport};

const ALICE: &str = "alice@example.com";
const BUTTON: &str = "This wasn't me: secure my account";

/// Someone added a second authenticator to alice's account while she holds a session.
struct Reported {
    e: Enrolled,
    session: Value,
    /// The "this wasn't me" link of the notice she got, on the test server.
    url: String,
    /// The factor "someone else" added.
    evil_factor: String,
}

async fn reported_change(app: &TestApp) -> Reported {
    let e = setup(app).await;
    set_policy(app, &e, required(json!({}))).await;
    let pending = login(app, &e, "alice", json!({})).await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let session = step(app, &e, &pending, &code, json!({})).await["session"]["token"].clone();
    app.advance_secs(30);
    notice_with(app, ALICE, "method was added").await; // her own, at setup
    let evil = app.pending("acme", &e.key, "alice").await;
    app.confirm(&evil, &app.code_at_offset(&evil.secret, &evil.params, 0))
        .await;
    let notice = notice_with(app, ALICE, "method was added").await;
    let at = notice
        .text
        .find("/wasnt-me/")
        .expect("the notice links the page");
    let path: String = notice.text[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    Reported {
        url: format!("{}{path}", app.base),
        evil_factor: evil.factor_id,
        e,
        session,
    }
}

async fn session_active(app: &TestApp, r: &Reported) -> bool {
    introspect(app, &r.e, &r.session).await["active"] == true
}

async fn factor_ids(app: &TestApp, r: &Reported) -> Vec<String> {
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/factors", &r.e.key)
        .await;
    list["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_wasnt_me_page_secures_the_account_from_the_keyboard_in_chromium() {
    let app = spawn_app().await;
    let r = reported_change(&app).await;
    let browser = Browser::start().await;
    let (b, url) = (&browser, r.url.as_str());

    b.step("open-link", |c| async move {
        c.goto(url).await.unwrap();
        wait_for_title(&c, "Was this you?").await;
        let what = c.find(Locator::Css(".what")).await.unwrap();
        assert!(what.text().await.unwrap().contains("method was added"));
    })
    .await;
    b.step("page-checks", |c| async move {
        assert_page_is_clean(b).await;
        // The stylesheet is applied: the white card, 32rem wide at most.
        let style = c
            .execute(
                "const s = getComputedStyle(document.querySelector('main'));\
                 return [s.backgroundColor, s.maxWidth];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(style, json!(["rgb(255, 255, 255)", "512px"]));
    })
    .await;
    // Opening the link changed nothing: mail scanners open links too.
    assert!(session_active(&app, &r).await);

    b.step("csp-blocks-inline-script", |c| async move {
        // An injected inline script (what an XSS would add) must not run under the page's CSP.
        let ran = c
            .execute(
                "const s = document.createElement('script');\
                 s.textContent = 'window.injected = true';\
                 document.head.appendChild(s);\
                 return window.injected === true;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(ran, json!(false));
        let errors = b.console_errors();
        assert!(
            errors.len() == 1 && errors[0].contains("Content Security Policy"),
            "{errors:?}"
        );
    })
    .await;

    b.step("keyboard", |_| async move {
        // The button is the first stop of the focus order, and its focus ring shows.
        assert_eq!(b.tab_order(1).await, vec![format!("button \"{BUTTON}\"")]);
        assert_eq!(b.focus_outline().await, ("solid".to_string(), 3.0));
        b.press(Key::Enter).await;
    })
    .await;
    b.step("secured", |c| async move {
        wait_for_title(&c, "Your account is secured").await;
        let text = main_text(&c).await;
        assert!(text.contains("You were signed out everywhere."), "{text}");
        assert_page_is_clean(b).await;
    })
    .await;

    // Through the API: the added factor is gone, the session is dead, the settings frozen.
    assert_eq!(factor_ids(&app, &r).await, vec![r.e.factor_id.clone()]);
    assert!(!factor_ids(&app, &r).await.contains(&r.evil_factor));
    assert!(!session_active(&app, &r).await);
    let (s, body) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/totp",
            &r.e.key,
            json!({}),
        )
        .await;
    assert_eq!(
        (s, err(&body)),
        (StatusCode::CONFLICT, Some("account_frozen"))
    );

    b.step("used-twice", |c| async move {
        c.goto(url).await.unwrap();
        wait_for_title(&c, "This link was used already").await;
        assert!(c.find_all(Locator::Css("form")).await.unwrap().is_empty());
        // The page's own 409 is the one thing the console reports (Chromium logs every
        // document answered with an error status).
        assert_eq!(b.page_problems().await, Vec::<String>::new());
        let errors = b.console_errors();
        assert!(
            errors.len() == 1 && errors[0].contains("status of 409 (Conflict)"),
            "{errors:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn the_wasnt_me_page_fits_a_phone_and_works_by_touch() {
    let app = spawn_app().await;
    let r = reported_change(&app).await;
    let browser = Browser::phone().await;
    let (b, url) = (&browser, r.url.as_str());
    assert_eq!(b.viewport(), Viewport::Phone);

    b.step("open-link", |c| async move {
        c.goto(url).await.unwrap();
        wait_for_title(&c, "Was this you?").await;
        let width = c
            .execute("return window.innerWidth;", vec![])
            .await
            .unwrap();
        assert_eq!(width, json!(360), "laid out at the phone's width");
        // No horizontal scrolling, nothing outside the screen, labels and the rest.
        assert_page_is_clean(b).await;
        // The button is a comfortable touch target (WCAG 2.5.5: 44×44 CSS px) on screen.
        let rect = c
            .execute(
                "const r = document.querySelector('button').getBoundingClientRect();\
                 return [r.left, r.right, r.height];",
                vec![],
            )
            .await
            .unwrap();
        let (left, right, height) = (
            rect[0].as_f64().unwrap(),
            rect[1].as_f64().unwrap(),
            rect[2].as_f64().unwrap(),
        );
        assert!(left >= 0.0 && right <= 360.0 && height >= 44.0, "{rect}");
    })
    .await;
    b.step("tap", |c| async move {
        c.find(Locator::Css("button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_title(&c, "Your account is secured").await;
        assert_page_is_clean(b).await;
    })
    .await;
    assert!(!session_active(&app, &r).await);
}

#[tokio::test]
async fn forged_posts_are_refused_and_every_answer_carries_the_security_headers() {
    let app = spawn_app().await;
    let r = reported_change(&app).await;
    let open = app.client.get(&r.url).send().await.unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    let cookie = open.headers()["set-cookie"].to_str().unwrap().to_string();
    let token = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.strip_prefix("tf_csrf="))
        .unwrap()
        .to_string();
    let headers_ok = |h: &reqwest::header::HeaderMap| {
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'")
                && csp.contains("frame-ancestors 'none'")
                && !csp.contains("script-src"),
            "{csp}"
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h["permissions-policy"]
            .to_str()
            .unwrap()
            .contains("camera=()"));
        assert_eq!(h["cache-control"], "no-store");
    };
    headers_ok(open.headers());
    let html = open.text().await.unwrap();
    assert!(
        !html.contains("<style") && !html.contains("<script"),
        "{html}"
    );

    // Without the CSRF cookie (what a cross-site form sends), with a cookie but another
    // value, or from another site (Fetch Metadata) even with both: refused, nothing done.
    let post = |cookie: Option<String>, field: &str, site: Option<&str>| {
        let mut req = app.client.post(&r.url).form(&[("csrf", field)]);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        req.send()
    };
    let with_cookie = Some(format!("tf_csrf={token}"));
    for resp in [
        post(None, &token, None).await.unwrap(),
        post(with_cookie.clone(), "forged", None).await.unwrap(),
        post(with_cookie.clone(), &token, Some("cross-site"))
            .await
            .unwrap(),
    ] {
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        headers_ok(resp.headers());
        assert!(resp.text().await.unwrap().contains("open the link again"));
    }
    // A body that is no form at all: a 4xx from axum, with the headers all the same.
    let resp = app
        .client
        .post(&r.url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());
    headers_ok(resp.headers());
    assert!(session_active(&app, &r).await);
    assert_eq!(factor_ids(&app, &r).await.len(), 2, "nothing was undone");

    // The same-origin POST with the page's token does the work.
    let done = post(with_cookie, &token, Some("same-origin"))
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert!(!session_active(&app, &r).await);
}

#[tokio::test]
async fn the_stylesheet_is_cached_for_a_year_under_its_versioned_url_only() {
    let app = spawn_app().await;
    let page = app
        .client
        .get(format!("{}/wasnt-me/tfr_unknown", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    let html = page.text().await.unwrap();
    let at = html.find("href=\"/assets/twofold.css?v=").unwrap() + "href=\"".len();
    let href = &html[at..at + html[at..].find('"').unwrap()];
    let css = app
        .client
        .get(format!("{}{href}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(
        css.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(css.headers()["x-content-type-options"], "nosniff");
    assert!(css.text().await.unwrap().contains(":focus-visible"));
    for stale in [
        "/assets/twofold.css",
        "/assets/twofold.css?v=0000000000000000",
    ] {
        let resp = app
            .client
            .get(format!("{}{stale}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["cache-control"], "no-cache", "{stale}");
    }
}

#[tokio::test]
async fn a_failed_step_keeps_a_screenshot_and_the_page_source_and_names_them() {
    let b = Browser::start().await;
    let failure = b
        .try_step("deliberate", |c| async move {
            c.goto("data:text/html,<title>t</title><h1>Evidence page</h1>")
                .await
                .unwrap();
            assert_eq!(
                c.title().await.unwrap(),
                "another title",
                "deliberate failure"
            );
        })
        .await
        .expect_err("the step fails");
    assert!(failure.message.contains("deliberate failure"), "{failure}");
    let name = "a_failed_step_keeps_a_screenshot_and_the_page_source_and_names_them-deliberate";
    assert!(failure
        .screenshot
        .ends_with(format!("browser-failures/{name}.png")));
    assert!(failure
        .source
        .ends_with(format!("browser-failures/{name}.html")));
    let png = std::fs::read(&failure.screenshot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a real PNG");
    let html = std::fs::read_to_string(&failure.source).unwrap();
    assert!(html.contains("Evidence page"), "{html}");
    let text = failure.to_string();
    assert!(
        text.contains(&failure.screenshot.display().to_string())
            && text.contains(&failure.source.display().to_string()),
        "{text}"
    );
    std::fs::remove_file(&failure.screenshot).unwrap();
    std::fs::remove_file(&failure.source).unwrap();
}
