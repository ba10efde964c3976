//! `twofold demo` (issue #6, "a demo a newcomer can run"): the real binary on free ports and a
//! temporary data directory, driven in headless Chromium as a newcomer would, with
//! `oathtool` as their authenticator app; and over plain HTTP, the demo app's own checks
//! (password, CSRF, the callback's state) and a second start on the same data.
//!
//! With `TWOFOLD_DEMO_SCREENSHOTS=<dir>` the browser tests save a PNG of each page there
//! (`scripts/demo-screenshots.sh` writes the README's into `docs/img`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chromium::{
    assert_page_is_clean, press_button, submit_code, submit_enrol_code, type_into, wait_for_title,
    wait_for_url, WAIT,
};
use common::rp::oathtool_b32;
use common::{dev_messages, DevMessage};
use reqwest::StatusCode;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use twofold_testkit::browser::fantoccini::{Client, Locator};
use twofold_testkit::browser::{Browser, Viewport};

const SIGN_IN: &str = "Sign in";
const ENROLL: &str = "Set up two-step verification";
const CHALLENGE: &str = "Two-step verification";

/// A running `twofold demo`: Twofold at `twofold`, the demo app at `app`.
struct Demo {
    child: Child,
    twofold: String,
    app: String,
    data_dir: PathBuf,
    /// Everything it printed until the banner's last line.
    stdout: String,
    /// Its later lines.
    lines: std::sync::mpsc::Receiver<String>,
}

impl Demo {
    /// Starts the demo on free ports with `data_dir`, and waits for its banner.
    fn start(data_dir: &Path) -> Demo {
        let (port, app_port) = (twofold_testkit::free_port(), twofold_testkit::free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_twofold"))
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--app-listen", &format!("127.0.0.1:{app_port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err_pipe, err_text) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                err_text.lock().unwrap().push_str(&line);
                err_text.lock().unwrap().push('\n');
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut stdout = String::new();
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    stdout.push_str(&line);
                    stdout.push('\n');
                    if line == "Press Ctrl-C to stop." {
                        return Demo {
                            child,
                            twofold: format!("http://127.0.0.1:{port}"),
                            app: format!("http://127.0.0.1:{app_port}"),
                            data_dir: data_dir.to_path_buf(),
                            stdout,
                            lines: rx,
                        };
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(_) => {}
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the demo did not start\nstdout:\n{stdout}\nstderr:\n{}",
            stderr.lock().unwrap()
        );
    }

    /// Stops it the way Ctrl-C does (SIGINT) and returns what it printed on the way out.
    fn stop(mut self) -> String {
        let ok = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status:?}");
        // Its stdout closed as it exited: the reader ends after the last line.
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            rest.push(line);
        }
        rest.join("\n")
    }

    fn messages(&self) -> Vec<DevMessage> {
        dev_messages(&self.data_dir.join("dev-outbox"))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Saves a screenshot `demo-<name>.png` when `TWOFOLD_DEMO_SCREENSHOTS` names a folder.
async fn shot(b: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("TWOFOLD_DEMO_SCREENSHOTS") {
        b.save_screenshot(&Path::new(&dir).join(format!("demo-{name}.png")))
            .await;
    }
}

/// Opens the demo app's sign-in page and signs in as `user` with `password`.
async fn sign_in(c: &Client, demo: &Demo, user: &str, password: &str) {
    c.goto(&format!("{}/", demo.app)).await.unwrap();
    wait_for_title(c, SIGN_IN).await;
    type_into(c, "username", user).await;
    type_into(c, "password", password).await;
    press_button(c, "Sign in").await;
}

/// The text of the element with id `id`.
async fn text_of(c: &Client, id: &str) -> String {
    c.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

/// Waits for the demo app's account page of `user`; returns its `amr` and `acr` lines.
async fn signed_in_as(c: &Client, demo: &Demo, user: &str) -> (String, String) {
    wait_for_url(c, &format!("{}/account", demo.app)).await;
    wait_for_title(c, &format!("Signed in as {user}")).await;
    (text_of(c, "amr").await, text_of(c, "acr").await)
}

async fn sign_out(c: &Client) {
    press_button(c, "Sign out").await;
    wait_for_title(c, SIGN_IN).await;
}

/// Waits until the 30-second step after `step` has begun, so the next code is a fresh one
/// (each code is accepted once: the previous sign-in spent this step's).
async fn next_step_after(step: u64) {
    while now_secs() / 30 <= step {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn alice_enrols_signs_in_again_is_remembered_and_opens_the_console_and_bob_says_later() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(&dir.path().join("demo"));
    for what in [
        "alice",
        "wonderland",
        "bob",
        "carol",
        &demo.app,
        &demo.twofold,
    ] {
        assert!(demo.stdout.contains(what), "{what} in {}", demo.stdout);
    }
    let demo = &demo;
    let browser = Browser::with_viewport(Viewport::Laptop).await;
    let b = &browser;

    b.step("sign-in-page", |c| async move {
        c.goto(&format!("{}/", demo.app)).await.unwrap();
        wait_for_title(&c, SIGN_IN).await;
        assert_page_is_clean(b).await;
        shot(b, "1-sign-in").await;
    })
    .await;

    // Everyone is in the grace period: alice chooses "Set up now", then the app.
    b.step("alice-asked-to-enrol", |c| async move {
        sign_in(&c, demo, "alice", "wonderland").await;
        wait_for_title(&c, ENROLL).await;
        assert!(c
            .current_url()
            .await
            .unwrap()
            .as_str()
            .starts_with(&demo.twofold));
        assert_page_is_clean(b).await;
        press_button(&c, "Set up now").await;
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::XPath(
                "//button[normalize-space()='Set up an authenticator app']",
            ))
            .await
            .unwrap();
        press_button(&c, "Set up an authenticator app").await;
    })
    .await;
    let key = b
        .step("alice-qr-and-key", |c| async move {
            let key = c
                .wait()
                .at_most(WAIT)
                .for_element(Locator::Css("code.key"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert_page_is_clean(b).await;
            shot(b, "2-enrol").await;
            key
        })
        .await;

    let enrolled_at = now_secs();
    let code = oathtool_b32(&key, enrolled_at);
    b.step("alice-recovery-codes", |c| async move {
        submit_enrol_code(&c, &code).await;
        wait_for_title(&c, "Save your recovery codes").await;
        assert!(
            c.find_all(Locator::Css("ul.codes code"))
                .await
                .unwrap()
                .len()
                >= 8
        );
        assert_page_is_clean(b).await;
        shot(b, "3-recovery-codes").await;
        c.find(Locator::Css("a.continue"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    })
    .await;
    b.step("alice-signed-in", |c| async move {
        let (amr, acr) = signed_in_as(&c, demo, "alice").await;
        assert!(amr.contains("otp"), "{amr}");
        assert!(acr.contains("urn:twofold:acr:2fa"), "{acr}");
        // The administrator's way into the console (which the console's own sign-in guards).
        c.find(Locator::XPath(
            "//button[normalize-space()='Admin console']",
        ))
        .await
        .unwrap();
        assert_page_is_clean(b).await;
        shot(b, "4-signed-in").await;
        sign_out(&c).await;
    })
    .await;

    // The second sign-in asks for a code; she ticks "remember this device".
    next_step_after(enrolled_at / 30).await;
    b.step("alice-challenged", |c| async move {
        sign_in(&c, demo, "alice", "wonderland").await;
        wait_for_title(&c, CHALLENGE).await;
        assert_page_is_clean(b).await;
        shot(b, "5-challenge").await;
    })
    .await;
    let challenged_at = now_secs();
    let code = oathtool_b32(&key, challenged_at);
    b.step("alice-remembered", |c| async move {
        submit_code(&c, &code, true).await;
        let (amr, _) = signed_in_as(&c, demo, "alice").await;
        assert!(amr.contains("otp"), "{amr}");
    })
    .await;

    // Her "Admin console" button: Twofold's console, which always asks for a second step.
    next_step_after(challenged_at / 30).await;
    b.step("alice-console-challenge", |c| async move {
        press_button(&c, "Admin console").await;
        wait_for_title(&c, CHALLENGE).await;
        assert!(c
            .current_url()
            .await
            .unwrap()
            .as_str()
            .starts_with(&demo.twofold));
    })
    .await;
    let code = oathtool_b32(&key, now_secs());
    b.step("alice-console", |c| async move {
        submit_code(&c, &code, false).await;
        wait_for_title(&c, "Overview").await;
        assert_page_is_clean(b).await;
        shot(b, "9-console").await;
    })
    .await;

    // Back in the demo app, the next sign-in in this browser skips the code: the device is
    // remembered.
    b.step("alice-remembered-device", |c| async move {
        sign_in(&c, demo, "alice", "wonderland").await;
        let (_, acr) = signed_in_as(&c, demo, "alice").await;
        assert!(acr.contains("urn:twofold:acr:remembered-device"), "{acr}");
        sign_out(&c).await;
    })
    .await;

    // bob sees the countdown, and signs in with his password alone for now.
    b.step("bob-countdown", |c| async move {
        sign_in(&c, demo, "bob", "builder").await;
        wait_for_title(&c, ENROLL).await;
        let note = c
            .find(Locator::Css("p.note"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        // 14 calendar days, or 13 once midnight (UTC) passed since the set-up.
        assert!(
            note.contains("becomes mandatory for your organisation in 14 days")
                || note.contains("in 13 days"),
            "{note}"
        );
        assert_page_is_clean(b).await;
        shot(b, "6-bob").await;
        press_button(&c, "Later").await;
        let (amr, acr) = signed_in_as(&c, demo, "bob").await;
        assert!(amr.contains("pwd") && !amr.contains("otp"), "{amr}");
        assert!(acr.contains("urn:twofold:acr:1fa"), "{acr}");
        sign_out(&c).await;
    })
    .await;

    b.step("mailbox", |c| async move {
        c.goto(&format!("{}/mailbox", demo.app)).await.unwrap();
        wait_for_title(&c, "Mailbox").await;
        // The code that confirmed the demo's settings went to alice, the administrator.
        c.find(Locator::XPath(
            "//article/h2[normalize-space()='Email to alice@demo.test']",
        ))
        .await
        .unwrap();
        assert_page_is_clean(b).await;
    })
    .await;
}

#[tokio::test]
async fn carol_reads_her_emailed_code_in_the_mailbox_and_signs_in_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(&dir.path().join("demo"));
    let demo = &demo;
    let browser = Browser::with_viewport(Viewport::Laptop).await;
    let b = &browser;

    let back = b
        .step("carol-challenged", |c| async move {
            sign_in(&c, demo, "carol", "christmas").await;
            wait_for_title(&c, CHALLENGE).await;
            // Her methods are codes by email and by text message: take the email.
            if let Ok(link) = c
                .find(Locator::XPath(
                    "//a[contains(normalize-space(), '(email)')]",
                ))
                .await
            {
                link.click().await.unwrap();
                wait_for_title(&c, CHALLENGE).await;
            }
            assert_page_is_clean(b).await;
            c.current_url().await.unwrap().to_string()
        })
        .await;

    let before: Vec<PathBuf> = demo.messages().into_iter().map(|m| m.path).collect();
    b.step("carol-code-sent", |c| async move {
        press_button(&c, "Send a code").await;
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Css("p.note[role=status]"))
            .await
            .unwrap();
        shot(b, "7-challenge-email").await;
    })
    .await;
    // The code as the development outbox holds it, once delivered.
    let deadline = Instant::now() + WAIT;
    let sent = loop {
        let new = demo
            .messages()
            .into_iter()
            .find(|m| m.to == "carol@demo.test" && !before.contains(&m.path) && m.code().is_some());
        if let Some(m) = new {
            break m.code().unwrap();
        }
        assert!(Instant::now() < deadline, "no code reached carol");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let code = b
        .step("mailbox-shows-the-code", |c| async move {
            c.goto(&format!("{}/mailbox", demo.app)).await.unwrap();
            wait_for_title(&c, "Mailbox").await;
            assert_page_is_clean(b).await;
            let xpath = format!("//article[h2='Email to carol@demo.test']//code[.='{sent}']");
            let code = c
                .find(Locator::XPath(&xpath))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            shot(b, "8-mailbox").await;
            code
        })
        .await;

    b.step("carol-signed-in", |c| async move {
        c.goto(&back).await.unwrap();
        wait_for_title(&c, CHALLENGE).await;
        submit_code(&c, &code, false).await;
        let (amr, _) = signed_in_as(&c, demo, "carol").await;
        assert!(amr.contains("email"), "{amr}");
        // Only administrators get the console button.
        assert!(c
            .find(Locator::XPath(
                "//button[normalize-space()='Admin console']"
            ))
            .await
            .is_err());
        assert_page_is_clean(b).await;
    })
    .await;
}

/// A browser without JavaScript's help: a cookie jar, no redirects followed.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The CSRF token of the sign-in page (its cookie lands in `client`'s jar).
async fn csrf_of_sign_in(client: &reqwest::Client, demo: &Demo) -> String {
    let page = client.get(format!("{}/", demo.app)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    let at = html.find("name=\"csrf\" value=\"").unwrap() + 19;
    html[at..at + 43].to_string()
}

async fn post_login(
    client: &reqwest::Client,
    demo: &Demo,
    csrf: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{}/login", demo.app))
        .form(&[("csrf", csrf), ("username", user), ("password", password)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_demo_app_refuses_wrong_passwords_forged_forms_and_tampered_callbacks_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let demo = Demo::start(&data);
    let client = http();
    let csrf = csrf_of_sign_in(&client, &demo).await;

    // A wrong password and an unknown user get the same answer, and nobody is sent on.
    for (user, password) in [
        ("alice", "builder"),
        ("mallory", "wonderland"),
        ("alice", ""),
    ] {
        let r = post_login(&client, &demo, &csrf, user, password).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{user}");
        assert!(r.headers().get("location").is_none());
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("Wrong user name or password"));
    }
    // A form without this browser's CSRF token is refused before the password is looked at.
    let r = post_login(&client, &demo, "forged", "alice", "wonderland").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The right password: on to Twofold's authorization endpoint, with PKCE S256, state and
    // nonce, and a login hint.
    let r = post_login(&client, &demo, &csrf, "alice", "wonderland").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        to.as_str().split('?').next(),
        Some(format!("{}/oidc/authorize", demo.twofold).as_str())
    );
    let param = |name: &str| {
        to.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param("client_id").as_deref(), Some("demo.portal"));
    assert_eq!(
        param("redirect_uri"),
        Some(format!("{}/callback", demo.app))
    );
    let state = param("state").unwrap();
    assert!(param("nonce").is_some() && param("login_hint_token").is_some());

    // Back at the callback with a state that is not this browser's: refused, and the sign-in
    // in progress is spent.
    let callback = |state: &str, code: &str| {
        client
            .get(format!("{}/callback", demo.app))
            .query(&[("state", state), ("code", code)])
            .send()
    };
    let tampered = format!("{state}x");
    let r = callback(&tampered, "some-code").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("could not be verified"));
    let r = callback(&state, "some-code").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "the flow cookie is gone"
    );

    // With the right state, a code Twofold never issued is refused by its token endpoint.
    let r = post_login(&client, &demo, &csrf, "alice", "wonderland").await;
    let to = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let state = to
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let r = callback(&state, "not-a-code").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("refused"));
    // Pages that need a session send a stranger to the sign-in page.
    let r = client
        .get(format!("{}/account", demo.app))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let stopped = demo.stop();
    assert!(stopped.contains("demo stopped"), "{stopped}");

    // A second start on the same data (new ports) finds everything set up, registers the new
    // redirect URI, and Twofold accepts the hints signed with the new client secret.
    let demo = Demo::start(&data);
    assert!(
        demo.stdout
            .contains("tenant demo is there from an earlier start"),
        "{}",
        demo.stdout
    );
    assert!(!demo.stdout.contains("created user"), "{}", demo.stdout);
    let client = http();
    let csrf = csrf_of_sign_in(&client, &demo).await;
    let r = post_login(&client, &demo, &csrf, "bob", "builder").await;
    let authorize = r.headers()["location"].to_str().unwrap().to_string();
    let r = client.get(&authorize).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"],
        "/oidc/enroll",
        "bob is asked to enrol"
    );
}

#[tokio::test]
async fn the_demo_pages_fit_a_phone() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(&dir.path().join("demo"));
    let demo = &demo;
    let browser = Browser::phone().await;
    let b = &browser;
    b.step("sign-in", |c| async move {
        c.goto(&format!("{}/", demo.app)).await.unwrap();
        wait_for_title(&c, SIGN_IN).await;
        assert_page_is_clean(b).await;
    })
    .await;
    // Long lines (the links in the notices) wrap instead of widening the page.
    b.step("mailbox", |c| async move {
        c.goto(&format!("{}/mailbox", demo.app)).await.unwrap();
        wait_for_title(&c, "Mailbox").await;
        assert!(!c
            .find_all(Locator::Css("article"))
            .await
            .unwrap()
            .is_empty());
        assert_page_is_clean(b).await;
    })
    .await;
}

#[test]
fn the_demo_refuses_to_run_on_another_database_or_config() {
    for flag in [
        ["--database-url", "postgres://localhost/real"],
        ["--config", "twofold.toml"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_twofold"))
            .arg("demo")
            .args(flag)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("the demo keeps to its own"), "{err}");
    }
}
