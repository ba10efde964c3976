//! Real headless Chromium for the hosted pages' tests, driven over WebDriver (W3C) by
//! `fantoccini` through Debian's `chromedriver`.
//!
//! - One chromedriver per test binary while its tests run: the first [`Browser`] starts it on
//!   a port it picks itself (`--port=0`, no race for a free port), the others share it, and it
//!   is killed when the last browser is dropped.
//! - Each [`Browser`] is its own Chromium (`--headless=new`) with a fresh profile directory,
//!   a fixed window size ([`Viewport::Desktop`]) or a phone's screen through Chrome's mobile
//!   emulation ([`Viewport::Phone`], so the page's viewport meta really matters), console
//!   messages recorded, and `--no-sandbox` only when running as root (Chromium refuses to start
//!   as root with its sandbox; as another user the sandbox stays on).
//! - A step that fails keeps the evidence: [`Browser::step`] catches the failure, saves a
//!   screenshot and the page source as `target/browser-failures/<test>-<step>.png|html`, and
//!   fails the test with a message that names both files.
//! - Dropping a browser ends its WebDriver session synchronously (a plain HTTP `DELETE`), so
//!   no Chromium outlives its test even when the test panicked and its runtime is gone.
//!
//! No TLS stack: chromedriver listens on loopback over plain HTTP, so fantoccini is built
//! without its TLS features and given hyper's plain `HttpConnector` (no OpenSSL, and no
//! second rustls crypto provider in the test builds).

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder};
use futures_util::FutureExt;
use serde_json::{json, Value};
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

pub use fantoccini;

/// Where to look when `TWOFOLD_CHROMIUM` is not set: Debian's real binary first (its
/// `/usr/bin/chromium` is a shell wrapper that adds flags from `/etc/chromium.d`), then `PATH`.
const CHROMIUM_CANDIDATES: [&str; 4] = [
    "/usr/lib/chromium/chromium",
    "chromium",
    "chromium-browser",
    "google-chrome",
];

const CHROMEDRIVER_CANDIDATES: [&str; 1] = ["chromedriver"];

const INSTALL_HINT: &str = "the browser tests need Chromium and its WebDriver: run \
     scripts/test.sh (it installs them) or `apt-get install chromium chromium-driver`; \
     TWOFOLD_CHROMIUM and TWOFOLD_CHROMEDRIVER may point at other binaries";

/// The binary `what` names: the file in `override_var` when set (it must exist), else the
/// first candidate that is an existing absolute path or a file in one of `search_path`'s
/// directories. The error says what is missing and how to install it.
fn find_binary(
    what: &str,
    override_var: (&str, Option<std::ffi::OsString>),
    candidates: &[&str],
    search_path: Option<std::ffi::OsString>,
) -> Result<PathBuf, String> {
    if let (var, Some(p)) = override_var {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{var}={} is not a file", p.display()))
        };
    }
    let dirs: Vec<PathBuf> = search_path
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    candidates
        .iter()
        .find_map(|c| {
            let c = Path::new(c);
            if c.is_absolute() {
                return c.is_file().then(|| c.to_path_buf());
            }
            dirs.iter().map(|d| d.join(c)).find(|p| p.is_file())
        })
        .ok_or_else(|| format!("{what} not found; {INSTALL_HINT}"))
}

/// The Chromium binary the tests drive; fails with how to install it when there is none.
pub fn chromium_path() -> PathBuf {
    let var = "TWOFOLD_CHROMIUM";
    find_binary(
        "Chromium",
        (var, std::env::var_os(var)),
        &CHROMIUM_CANDIDATES,
        std::env::var_os("PATH"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The chromedriver binary; fails with how to install it when there is none.
pub fn chromedriver_path() -> PathBuf {
    let var = "TWOFOLD_CHROMEDRIVER";
    find_binary(
        "chromedriver",
        (var, std::env::var_os(var)),
        &CHROMEDRIVER_CANDIDATES,
        std::env::var_os("PATH"),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

// ----------------------------------------------------------------------------- chromedriver

/// A chromedriver process; killed when the last browser using it is dropped.
struct Driver {
    child: Mutex<Child>,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The browsers of this test binary share one driver while any of them is alive.
static SHARED_DRIVER: Mutex<Weak<Driver>> = Mutex::new(Weak::new());

impl Driver {
    fn shared() -> Arc<Driver> {
        let mut shared = SHARED_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = shared.upgrade() {
            return d;
        }
        let d = Arc::new(Driver::start());
        *shared = Arc::downgrade(&d);
        d
    }

    /// Starts chromedriver on a port of its choosing and reads the port from its banner
    /// ("ChromeDriver was started successfully on port N."); its output is drained after that
    /// so a full pipe never blocks it.
    fn start() -> Driver {
        let path = chromedriver_path();
        let mut child = Command::new(&path)
            .args(["--port=0", "--log-level=WARNING"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {}", path.display(), INSTALL_HINT));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut banner = Vec::new();
            for line in lines.by_ref().map_while(Result::ok) {
                let port = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|p| p.trim_end_matches('.').parse::<u16>().ok());
                banner.push(line);
                if let Some(port) = port {
                    let _ = tx.send(Ok(port));
                    break;
                }
            }
            let _ = tx.send(Err(banner.join("\n")));
            for _ in lines {}
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(port)) => port,
            Ok(Err(banner)) => {
                let _ = child.kill();
                panic!("chromedriver exited without starting; it said:\n{banner}")
            }
            Err(_) => {
                let _ = child.kill();
                panic!("chromedriver did not start within 30 s")
            }
        };
        Driver {
            child: Mutex::new(child),
            port,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A blocking request to chromedriver (for what fantoccini has no command for, and for
    /// `Drop`, where no async runtime may be left). Returns the JSON `value` of the answer.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Value> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        // chromedriver keeps the connection open despite `Connection: close`: read the
        // headers, then exactly `Content-Length` bytes.
        let mut reader = BufReader::new(stream);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let json = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
        Ok(json["value"].clone())
    }
}

// ----------------------------------------------------------------------------------- browser

/// The window a browser renders into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewport {
    /// A 1280×800 desktop window.
    Desktop,
    /// A 1024×700 laptop window: small enough for screenshots in the documentation.
    Laptop,
    /// A 360×740 phone (CSS pixels, device pixel ratio 3, touch), through mobile emulation.
    Phone,
}

impl Viewport {
    pub fn width(self) -> u32 {
        match self {
            Viewport::Desktop => 1280,
            Viewport::Laptop => 1024,
            Viewport::Phone => 360,
        }
    }
    pub fn height(self) -> u32 {
        match self {
            Viewport::Desktop => 800,
            Viewport::Laptop => 700,
            Viewport::Phone => 740,
        }
    }
}

/// The tallest page [`Browser::save_screenshot`] takes, in pixels.
pub const SCREENSHOT_MAX_HEIGHT: u64 = 1200;

/// Why a browser step failed, and where its evidence is.
#[derive(Debug)]
pub struct StepFailure {
    pub step: String,
    pub message: String,
    pub screenshot: PathBuf,
    pub source: PathBuf,
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "browser step `{}` failed: {}\n  screenshot: {}\n  page source: {}",
            self.step,
            self.message,
            self.screenshot.display(),
            self.source.display()
        )
    }
}

/// One headless Chromium with its own profile, driven through the shared chromedriver.
pub struct Browser {
    client: Client,
    driver: Arc<Driver>,
    session: String,
    test: String,
    viewport: Viewport,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A desktop-sized browser.
    pub async fn start() -> Browser {
        Browser::with_viewport(Viewport::Desktop).await
    }

    /// A phone-sized browser (mobile emulation: the page is laid out as on a phone).
    pub async fn phone() -> Browser {
        Browser::with_viewport(Viewport::Phone).await
    }

    pub async fn with_viewport(viewport: Viewport) -> Browser {
        let chromium = chromium_path();
        let driver = Driver::shared();
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={},{}", viewport.width(), viewport.height()),
            "--no-first-run".into(),
            "--no-default-browser-check".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-default-apps".into(),
            "--disable-extensions".into(),
            "--disable-sync".into(),
            "--disable-features=Translate,OptimizationHints,MediaRouter".into(),
            "--password-store=basic".into(),
            "--lang=en-US".into(),
        ];
        if running_as_root() {
            args.push("--no-sandbox".into());
        }
        let mut chrome = json!({ "binary": chromium, "args": args });
        if viewport == Viewport::Phone {
            chrome["mobileEmulation"] = json!({
                "deviceMetrics": {
                    "width": viewport.width(),
                    "height": viewport.height(),
                    "pixelRatio": 3.0,
                    "mobile": true,
                    "touch": true
                }
            });
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": chrome,
            "goog:loggingPrefs": { "browser": "ALL" }
        });
        let caps = caps.as_object().cloned().unwrap_or_default();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} through chromedriver: {e}\n(Chromium and chromedriver must \
                     be the same version: `chromium --version`, `chromedriver --version`; {})",
                    chromium.display(),
                    INSTALL_HINT
                )
            });
        let session = client
            .session_id()
            .await
            .ok()
            .flatten()
            .expect("a new WebDriver session has an id");
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .replace("::", "-");
        Browser {
            client,
            driver,
            session,
            test,
            viewport,
            _profile: profile,
        }
    }

    /// The WebDriver client, for anything the helpers here do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn viewport(&self) -> Viewport {
        self.viewport
    }

    /// Runs one step of a test. If it fails (a panic: a failed assertion or unwrap), the
    /// screenshot and page source are kept and the test fails naming both files.
    pub async fn step<T, F, Fut>(&self, name: &str, f: F) -> T
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = T>,
    {
        match self.try_step(name, f).await {
            Ok(v) => v,
            Err(failure) => panic!("{failure}"),
        }
    }

    /// [`Browser::step`] that hands back the failure instead of failing the test.
    pub async fn try_step<T, F, Fut>(&self, name: &str, f: F) -> Result<T, StepFailure>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = T>,
    {
        match AssertUnwindSafe(f(self.client.clone()))
            .catch_unwind()
            .await
        {
            Ok(v) => Ok(v),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                let (screenshot, source) = self.keep_evidence(name).await;
                Err(StepFailure {
                    step: name.to_string(),
                    message,
                    screenshot,
                    source,
                })
            }
        }
    }

    /// Saves a PNG of the page from its top, up to [`SCREENSHOT_MAX_HEIGHT`] pixels, to `path`
    /// (its folder is created), e.g. for the screenshots in the documentation: the window
    /// grows to the page's height for the picture, then gets its size back.
    pub async fn save_screenshot(&self, path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        let (width, height) = self.client.get_window_size().await.unwrap();
        let v = self
            .client
            .execute(
                "window.scrollTo(0, 0);\
                 return [document.documentElement.scrollHeight, window.innerHeight];",
                vec![],
            )
            .await
            .unwrap();
        let (page, inner) = (v[0].as_u64().unwrap(), v[1].as_u64().unwrap());
        let tall = (height - inner.min(height) + page).min(SCREENSHOT_MAX_HEIGHT);
        self.client
            .set_window_size(width as u32, tall.max(height) as u32)
            .await
            .unwrap();
        let png = self.client.screenshot().await;
        self.client
            .set_window_size(width as u32, height as u32)
            .await
            .unwrap();
        std::fs::write(path, png.unwrap()).unwrap();
    }

    /// Writes `target/browser-failures/<test>-<step>.png` and `.html`; returns both paths.
    /// What cannot be captured (a crashed tab) is written as a note in its place.
    pub async fn keep_evidence(&self, step: &str) -> (PathBuf, PathBuf) {
        let dir = failures_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let stem: String = format!("{}-{step}", self.test)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let png = dir.join(format!("{stem}.png"));
        let html = dir.join(format!("{stem}.html"));
        match self.client.screenshot().await {
            Ok(bytes) => std::fs::write(&png, bytes).unwrap(),
            Err(e) => std::fs::write(&png, format!("no screenshot: {e}")).unwrap(),
        }
        let source = match self.client.source().await {
            Ok(s) => s,
            Err(e) => format!("<!-- no page source: {e} -->"),
        };
        std::fs::write(&html, source).unwrap();
        (png, html)
    }

    /// Console messages and page errors at level SEVERE since the last call (the browser's
    /// log is drained by reading it): CSP violations, failed loads, script errors.
    pub fn console_errors(&self) -> Vec<String> {
        let entries = self
            .driver
            .request(
                "POST",
                &format!("/session/{}/se/log", self.session),
                Some(&json!({"type": "browser"})),
            )
            .unwrap_or_else(|e| panic!("reading the browser log failed: {e}"));
        entries
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Presses and releases `key` on whatever has the keyboard focus, as a person would.
    pub async fn press(&self, key: Key) {
        let k: char = key.into();
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: k })
            .then(KeyAction::Up { value: k });
        self.client.perform_actions(actions).await.unwrap();
    }

    /// Presses Tab `n` times from the top of the page and describes each element that got the
    /// focus (`tag "text"`), to check the focus order a keyboard user gets.
    pub async fn tab_order(&self, n: usize) -> Vec<String> {
        let mut order = Vec::new();
        for _ in 0..n {
            self.press(Key::Tab).await;
            order.push(self.focused().await);
        }
        order
    }

    /// `tag "accessible text"` of the focused element.
    pub async fn focused(&self) -> String {
        let v = self
            .client
            .execute(
                "const e = document.activeElement;\
                 const text = (e.innerText || e.value || e.getAttribute('aria-label') || '').trim();\
                 return e.tagName.toLowerCase() + ' \"' + text + '\"';",
                vec![],
            )
            .await
            .unwrap();
        v.as_str().unwrap_or_default().to_string()
    }

    /// The focus indicator the focused element draws: `(outline-style, outline-width px)`.
    pub async fn focus_outline(&self) -> (String, f64) {
        let v = self
            .client
            .execute(
                "const s = getComputedStyle(document.activeElement);\
                 return [s.outlineStyle, parseFloat(s.outlineWidth)];",
                vec![],
            )
            .await
            .unwrap();
        (
            v[0].as_str().unwrap_or_default().to_string(),
            v[1].as_f64().unwrap_or(0.0),
        )
    }

    /// Lays the page out for `media` (`print`, or `""` for the screen again) through the
    /// DevTools protocol, so a test can see what a print stylesheet leaves on paper.
    pub async fn emulate_media(&self, media: &str) {
        let body = json!({
            "cmd": "Emulation.setEmulatedMedia",
            "params": { "media": media },
        });
        self.driver
            .request(
                "POST",
                &format!("/session/{}/goog/cdp/execute", self.session),
                Some(&body),
            )
            .unwrap_or_else(|e| panic!("emulating {media:?} media failed: {e}"));
    }

    /// A WebDriver request of this browser's session (`path` after `/session/{id}`), for the
    /// commands fantoccini has no method for; panics with chromedriver's message on an error.
    fn session_request(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let full = format!("/session/{}{path}", self.session);
        let v = self
            .driver
            .request(method, &full, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        if let Some(error) = v.get("error") {
            panic!("{method} {path}: {error}: {}", v["message"]);
        }
        v
    }

    /// Adds a virtual authenticator (W3C WebAuthn §11.3) that answers every ceremony of this
    /// browser at once, as a security key that was touched (CTAP2 over USB, resident keys and
    /// user verification). `options` adds to or overrides those defaults (say
    /// `{"defaultBackupEligibility": true}` for a synced passkey). Returns its id.
    pub fn add_virtual_authenticator(&self, options: Value) -> String {
        let mut body = json!({
            "protocol": "ctap2",
            "transport": "usb",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserConsenting": true,
            "isUserVerified": true,
        });
        if let (Some(b), Some(o)) = (body.as_object_mut(), options.as_object()) {
            b.extend(o.clone());
        }
        let v = self.session_request("POST", "/webauthn/authenticator", Some(&body));
        v.as_str()
            .unwrap_or_else(|| panic!("no authenticator id in {v}"))
            .to_string()
    }

    /// Removes a virtual authenticator with its credentials.
    pub fn remove_virtual_authenticator(&self, authenticator: &str) {
        self.session_request(
            "DELETE",
            &format!("/webauthn/authenticator/{authenticator}"),
            None,
        );
    }

    /// The credentials a virtual authenticator holds: `credentialId` (base64url), `rpId`,
    /// `privateKey` (base64url PKCS#8), `userHandle`, `signCount`, `isResidentCredential`.
    pub fn authenticator_credentials(&self, authenticator: &str) -> Vec<Value> {
        let v = self.session_request(
            "GET",
            &format!("/webauthn/authenticator/{authenticator}/credentials"),
            None,
        );
        v.as_array().cloned().unwrap_or_default()
    }

    /// Puts a credential (as [`Self::authenticator_credentials`] lists them) into a virtual
    /// authenticator: a key copied from elsewhere.
    pub fn add_authenticator_credential(&self, authenticator: &str, credential: &Value) {
        self.session_request(
            "POST",
            &format!("/webauthn/authenticator/{authenticator}/credential"),
            Some(credential),
        );
    }

    /// Removes one credential (by its base64url id) from a virtual authenticator.
    pub fn remove_authenticator_credential(&self, authenticator: &str, credential_id: &str) {
        self.session_request(
            "DELETE",
            &format!("/webauthn/authenticator/{authenticator}/credentials/{credential_id}"),
            None,
        );
    }

    /// What a script can check of WCAG 2.2 A/AA and layout on the current page; empty when
    /// all is well: `lang`, a title, one `<h1>` inside a `<main>`, a viewport meta with
    /// `width=device-width`, every visible form control labelled, every button and link
    /// named, images with `alt`, no inline script or style (the CSP would block it; a script
    /// from a file is fine), a stylesheet applied, and nothing wider than the window (no
    /// horizontal scrolling).
    pub async fn page_problems(&self) -> Vec<String> {
        let v = self
            .client
            .execute(
                r#"
const p = [];
const root = document.documentElement;
if (!root.lang) p.push('no lang on <html>');
if (!document.title.trim()) p.push('empty <title>');
const vp = document.querySelector('meta[name=viewport]');
if (!vp || !/width=device-width/.test(vp.content)) p.push('no viewport meta with width=device-width');
if (!document.querySelector('main')) p.push('no <main> landmark');
if (document.querySelectorAll('h1').length !== 1) p.push('not exactly one <h1>');
for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
  const named = (el.labels && el.labels.length) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby');
  if (!named) p.push('unlabelled control: ' + el.outerHTML);
}
for (const el of document.querySelectorAll('button, a[href], input[type=submit]')) {
  const name = (el.innerText || el.value || el.getAttribute('aria-label') || '').trim();
  if (!name) p.push('control without a name: ' + el.outerHTML);
}
for (const img of document.images) if (!img.hasAttribute('alt')) p.push('image without alt: ' + img.outerHTML);
for (const el of document.querySelectorAll('script:not([src]), style, [style]')) p.push('inline script or style: ' + el.outerHTML.slice(0, 80));
if (document.styleSheets.length === 0) p.push('no stylesheet applied');
for (const l of document.querySelectorAll('link[rel=stylesheet]')) if (!l.sheet) p.push('stylesheet not loaded: ' + l.href);
const width = window.innerWidth;
// On a touch screen (mobile emulation) the layout must be the screen's width: a page without
// a working viewport meta is laid out 980px wide and shrunk, unreadable without zooming.
if (matchMedia('(pointer: coarse)').matches && width > screen.width) p.push('laid out ' + width + 'px wide on a ' + screen.width + 'px screen');
if (root.scrollWidth > root.clientWidth) p.push('horizontal scrolling: ' + root.scrollWidth + ' > ' + root.clientWidth);
// A data table may scroll sideways inside its own box (WCAG 1.4.10 exempts content that
// needs two dimensions); what sits in such a box is reachable, the box itself must fit.
const scrolls = el => { for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) { const o = getComputedStyle(a).overflowX; if (o === 'auto' || o === 'scroll') return true; } return false; };
for (const el of document.body.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width > 0 && (r.left < 0 || r.right > root.clientWidth + 0.5) && !scrolls(el)) p.push('outside the window: ' + el.tagName.toLowerCase() + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
}
return p;"#,
                vec![],
            )
            .await
            .unwrap();
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    /// Ends the session (Chromium quits) without needing the test's runtime, which may be gone.
    fn drop(&mut self) {
        let _ = self
            .driver
            .request("DELETE", &format!("/session/{}", self.session), None);
    }
}

/// `target/browser-failures`, found from the test binary (`target/<profile>/deps/<test>`).
pub fn failures_dir() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent()?;
            (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(Path::to_path_buf))?
        })
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join("browser-failures")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_browser_says_how_to_install_it() {
        let empty = tempfile::tempdir().unwrap();
        let err = find_binary(
            "Chromium",
            ("TWOFOLD_CHROMIUM", None),
            &["no-such-chromium"],
            Some(empty.path().as_os_str().to_owned()),
        )
        .unwrap_err();
        assert!(
            err.starts_with("Chromium not found")
                && err.contains("scripts/test.sh")
                && err.contains("apt-get install chromium chromium-driver"),
            "{err}"
        );
        let err = find_binary(
            "chromedriver",
            (
                "TWOFOLD_CHROMEDRIVER",
                Some("/nonexistent/chromedriver".into()),
            ),
            &["chromedriver"],
            None,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "TWOFOLD_CHROMEDRIVER=/nonexistent/chromedriver is not a file"
        );
    }

    #[test]
    fn binaries_are_found_on_the_search_path_in_candidate_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("chromium-browser"), "").unwrap();
        let found = find_binary(
            "Chromium",
            ("TWOFOLD_CHROMIUM", None),
            &["/nonexistent/chromium", "chromium", "chromium-browser"],
            Some(dir.path().as_os_str().to_owned()),
        )
        .unwrap();
        assert_eq!(found, dir.path().join("chromium-browser"));
    }
}
