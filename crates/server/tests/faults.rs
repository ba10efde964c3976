//! Faults: the infrastructure failing under a running Twofold (issue #9, SECURITY.md's
//! "infrastructure" attacker). Real `twofold serve` processes on SQLite and PostgreSQL, a real
//! SMTP server process, a local HTTP server speaking Twilio's API, a private PostgreSQL server
//! the test stops and starts, and a second process holding SQLite's write lock.
//!
//! What each test proves:
//! - `kill -9` under load, then a restart on the same data: whatever was acknowledged before
//!   the kill is still there (confirmed factors active, queued messages in the outbox and then
//!   delivered, each once except the ones a worker was sending at the kill, which delivery
//!   promises at least once); no code accepted before the kill is accepted after it.
//! - the SMS provider refusing connections, then answering 5xx, then back: every message is
//!   retried with a growing backoff the outbox shows, and goes out once.
//! - SQLite's write lock held by another process past the busy timeout: writes answer 503
//!   `unavailable` with `Retry-After` within a bound, reads still work, and the same requests
//!   succeed once the lock is gone, with nothing restarted.
//! - PostgreSQL stopped and started under load: 503 with `Retry-After` while it is down (never
//!   a 500, never a hang), the pool reconnects by itself, a code refused with 503 during the
//!   outage verifies after it, and no code is accepted twice.
//!
//! No timing is asserted: "within a bound" is the client's timeout ([`REQUEST_BOUND`]), and
//! waits poll for a state with a generous limit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::process::{self, Server};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use twofold_otp::{uri::KeyUri, OtpParams};
use twofold_testkit::{free_port, MockHttp, PgDatabase, PgServer, SinkOptions, SmtpSink};

/// Longest a request may take before the test calls it a hang. Far above the store's own
/// limits (SQLite's 5 s busy timeout, the PostgreSQL pool's 10 s waits).
const REQUEST_BOUND: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------------ HTTP client

/// One answer: the status, the JSON body and the `Retry-After` header.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

impl Answer {
    fn is(&self, status: u16) -> bool {
        self.status == status
    }

    /// The overload answer: 503, the stable `unavailable` code and a `Retry-After` in seconds.
    fn is_unavailable(&self) -> bool {
        self.status == 503
            && self.body["error"]["code"] == "unavailable"
            && self
                .retry_after
                .as_deref()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| s >= 1)
    }

    fn flag(&self, name: &str) -> bool {
        self.body[name] == true
    }
}

/// Tenant `acme` of one running process, through its tenant key.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn new(server: &Server, key: &str) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(REQUEST_BOUND)
                .build()
                .unwrap(),
            base: format!("http://{}/v1/tenants/acme", server.addr),
            key: key.to_string(),
        }
    }

    /// `Err` when nothing answered (the process is gone); a request left without an answer
    /// past [`REQUEST_BOUND`] fails the test: that is a hang.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Answer, reqwest::Error> {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let sent = async {
            let resp = req.send().await?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = resp.text().await?;
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            Ok::<_, reqwest::Error>(Answer {
                status,
                body,
                retry_after,
            })
        };
        let answer = sent.await;
        if let Err(e) = &answer {
            assert!(
                !e.is_timeout(),
                "{method} {path}: no answer in {REQUEST_BOUND:?}"
            );
        }
        answer
    }

    async fn try_post(&self, path: &str, body: Value) -> Result<Answer, reqwest::Error> {
        self.try_call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.try_post(path, body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    async fn get(&self, path: &str) -> Answer {
        self.try_call(reqwest::Method::GET, path, None)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    async fn user(&self, user: &str) {
        let a = self
            .post(
                "/users",
                json!({"external_id": user, "email": format!("{user}@example.com")}),
            )
            .await;
        assert!(a.is(201), "{a:?}");
    }

    /// A pending TOTP factor of `user`.
    async fn totp(&self, user: &str) -> Totp {
        let a = self
            .post(&format!("/users/{user}/factors/totp"), json!({}))
            .await;
        assert!(a.is(201), "{a:?}");
        let uri = KeyUri::parse(a.body["otpauth_uri"].as_str().unwrap()).unwrap();
        Totp {
            user: user.to_string(),
            factor: a.body["factor_id"].as_str().unwrap().to_string(),
            secret: uri.secret.clone(),
            params: uri.params(),
        }
    }

    async fn confirm(&self, user: &str, factor: &str, code: &str) -> Answer {
        self.post(
            &format!("/users/{user}/factors/{factor}/confirm"),
            json!({ "code": code }),
        )
        .await
    }

    /// Confirms `t` with the previous step's code, so the current step is still free for a
    /// verification; returns the recovery codes. The step may turn between computing the code
    /// and the server checking it (the code is then two steps old): then again.
    async fn confirm_a_step_back(&self, t: &Totp) -> Vec<String> {
        for _ in 0..3 {
            let a = self.confirm(&t.user, &t.factor, &t.code(-1)).await;
            assert!(a.is(200), "{a:?}");
            if a.flag("confirmed") {
                return strings(&a.body["recovery_codes"]);
            }
        }
        panic!("the previous step's code never confirmed {}", t.user);
    }

    async fn try_verify(
        &self,
        user: &str,
        code: &str,
        factor: Option<&str>,
    ) -> Result<Answer, reqwest::Error> {
        let mut body = json!({ "code": code });
        if let Some(f) = factor {
            body["factor_id"] = json!(f);
        }
        self.try_post(&format!("/users/{user}/verify"), body).await
    }

    async fn verify(&self, user: &str, code: &str, factor: Option<&str>) -> Answer {
        self.try_verify(user, code, factor)
            .await
            .unwrap_or_else(|e| panic!("verify: {e}"))
    }

    async fn try_recover(&self, user: &str, code: &str) -> Result<Answer, reqwest::Error> {
        self.try_post(
            &format!("/users/{user}/recovery-codes"),
            json!({ "recovery_code": code }),
        )
        .await
    }

    /// The status of factor `factor` of `user`.
    async fn factor_status(&self, user: &str, factor: &str) -> String {
        let a = self.get(&format!("/users/{user}/factors")).await;
        assert!(a.is(200), "{a:?}");
        a.body["factors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == factor)
            .map(|f| f["status"].as_str().unwrap().to_string())
            .unwrap_or_else(|| "missing".into())
    }

    async fn outbox_stats(&self) -> Value {
        let a = self.get("/outbox/stats").await;
        assert!(a.is(200), "{a:?}");
        a.body
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A TOTP factor and what computes its codes.
#[derive(Clone)]
struct Totp {
    user: String,
    factor: String,
    secret: Vec<u8>,
    params: OtpParams,
}

impl Totp {
    /// The code of the step `steps` away from the wall clock's (the process's clock).
    fn code(&self, steps: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let t = now + steps * i64::from(self.params.period);
        twofold_otp::totp_at_time(&self.secret, t as u64, &self.params)
    }

    /// A code none of the steps near now has.
    fn wrong_code(&self) -> String {
        let near: HashSet<String> = (-3..=3).map(|k| self.code(k)).collect();
        (0..)
            .map(|n| format!("{:06}", 123_457 + n))
            .find(|c| !near.contains(c))
            .unwrap()
    }
}

/// The first run of exactly six digits in `text`.
fn six_digits(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_string)
}

/// Polls `f` every 25 ms for up to 20 s; `None` when `stop` is raised first or time runs out.
async fn poll<T>(stop: Option<&AtomicBool>, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..800 {
        if let Some(v) = f() {
            return Some(v);
        }
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

async fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll(None, f)
        .await
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

/// Codes mailed to `to` so far, in the order the SMTP server received them.
fn mailed_codes(sink: &SmtpSink, to: &str) -> Vec<String> {
    sink.received()
        .iter()
        .filter(|m| m["to"].as_str().is_some_and(|t| t.contains(to)))
        .filter_map(|m| six_digits(m["text"].as_str()?))
        .collect()
}

/// Codes texted to `to` so far, in the order the provider received them.
fn texted_codes(sms: &MockHttp, to: &str) -> Vec<String> {
    sms.requests()
        .iter()
        .filter(|r| r.form_value("To").as_deref() == Some(to))
        .filter_map(|r| six_digits(&r.form_value("Body")?))
        .collect()
}

// ------------------------------------------------------------------------- processes, data

/// Where a process keeps its data: the embedded SQLite file, or a PostgreSQL URL.
#[derive(Clone)]
enum Db {
    Sqlite,
    Postgres(String),
}

/// A data directory and configuration file that `twofold serve` processes are started on,
/// one after the other (a restart keeps both).
struct Site {
    dir: tempfile::TempDir,
    db: Db,
}

impl Site {
    /// `extra` is appended to the configuration: the `[email]` and `[sms]` sections.
    fn new(db: Db, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = match &db {
            Db::Sqlite => String::new(),
            Db::Postgres(url) => format!("database_url = \"{url}\"\ndatabase_pool_size = 8\n"),
        };
        // Fast delivery rounds, short leases (a killed worker's messages come back in
        // seconds), and limits far above what the tests send: no answer here is a 429.
        let config = format!(
            "{database}\
             [delivery]\npoll_interval_ms = 50\nlease_secs = 2\nbackoff_base_secs = 1\n\
             backoff_max_secs = 2\n\
             [codes]\nresend_cooldown_secs = 0\nper_destination_per_hour = 1000\n\
             per_user_per_hour = 1000\nper_tenant_per_hour = 100000\n\
             [throttle]\nip_failures_per_hour = 100000\ntenant_failures_per_hour = 100000\n\
             {extra}"
        );
        std::fs::write(dir.path().join("twofold.toml"), config).unwrap();
        Self { dir, db }
    }

    fn config(&self) -> String {
        self.dir.path().join("twofold.toml").display().to_string()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn serve(&self) -> Server {
        let data = self.data().display().to_string();
        process::serve_with_env(
            self.dir.path(),
            &["--config", &self.config(), "--data-dir", &data],
            &[("TWOFOLD_LOG_LEVEL", "info,twofold_store=debug")],
        )
    }

    /// Creates tenant `acme` with the CLI; returns its key.
    fn tenant(&self) -> String {
        let out = process::twofold(
            &self.data(),
            &[
                "tenant",
                "create",
                "--slug",
                "acme",
                "--name",
                "Acme Inc",
                "--config",
                &self.config(),
            ],
        );
        process::token(&process::stdout(&out))
    }

    /// Every outbox row by message id, read behind the server's back.
    async fn outbox(&self) -> HashMap<String, Row> {
        const SQL: &str = "SELECT message_id, channel, status, last_error FROM outbox";
        match &self.db {
            Db::Sqlite => {
                let c = rusqlite::Connection::open_with_flags(
                    self.data().join("twofold.db"),
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .unwrap();
                let mut s = c.prepare(SQL).unwrap();
                let rows = s
                    .query_map([], |r| {
                        let row = Row {
                            channel: r.get(1)?,
                            status: r.get(2)?,
                            last_error: r.get(3)?,
                        };
                        Ok((r.get(0)?, row))
                    })
                    .unwrap();
                rows.map(Result::unwrap).collect()
            }
            Db::Postgres(url) => twofold_testkit::pg_client(url)
                .await
                .query(SQL, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    let row = Row {
                        channel: r.get(1),
                        status: r.get(2),
                        last_error: r.get(3),
                    };
                    (r.get(0), row)
                })
                .collect(),
        }
    }
}

/// An outbox row as the database has it.
#[derive(Debug)]
struct Row {
    channel: String,
    status: String,
    last_error: Option<String>,
}

impl Row {
    /// Whether the message may reach its receiver more than once. Delivery is at least once: a
    /// worker that dies while sending (`sending`), or whose attempt ended in an error after the
    /// receiver may already have taken the message (a cut-off or timeout, so `last_error`), has
    /// it sent again, under the same id for the receiver to drop.
    fn may_repeat(&self) -> bool {
        self.status == "sending" || self.last_error.is_some()
    }
}

/// Stops `server` and fails if it ever panicked; returns its log.
fn stop_without_panics(server: Server) -> String {
    let log = server.stop();
    assert!(!log.contains("panicked"), "the server panicked:\n{log}");
    log
}

/// `[email]` to the SMTP server on `smtp_port`, `[sms]` to a Twilio-compatible `sms_url`.
fn transports(smtp_port: u16, sms_url: &str) -> String {
    format!(
        "[email]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {smtp_port}\n\
         security = \"none\"\nfrom_address = \"security@twofold.test\"\ntimeout_secs = 5\n\
         [sms]\nprovider = \"twilio\"\n[sms.twilio]\nbase_url = \"{sms_url}\"\n\
         account_sid = \"AC0123456789\"\nauth_token = \"token-xyz\"\nfrom = \"+15005550006\"\n"
    )
}

// ------------------------------------------------------------------------ kill -9 under load

/// An SMS or email factor and where its codes go.
#[derive(Clone)]
struct OtpFactor {
    user: String,
    factor: String,
    to: String,
}

/// What the server acknowledged during the load; all of it must survive the kill.
#[derive(Default)]
struct Acked {
    /// `(user, factor)` whose confirmation answered `confirmed: true`.
    confirmed: Vec<(String, String)>,
    /// `(user, code, factor)` of every accepted code: TOTP (no factor) and SMS/email.
    codes: Vec<(String, String, Option<String>)>,
    /// `(user, recovery code)` accepted by a renewal.
    recovery: Vec<(String, String)>,
    /// Message ids of the invitations answered 202.
    invited: Vec<String>,
    /// Acknowledgements per kind of request, to decide when to kill.
    per_kind: HashMap<&'static str, usize>,
    /// Answers that were not what the request should get (a 5xx, a refused right code).
    wrong: Vec<String>,
}

struct Load {
    api: Api,
    acked: Mutex<Acked>,
    /// Raised after the kill: the load stops at its next step.
    stop: AtomicBool,
}

impl Load {
    fn ack(&self, kind: &'static str, record: impl FnOnce(&mut Acked)) {
        let mut a = self.acked.lock().unwrap();
        *a.per_kind.entry(kind).or_default() += 1;
        record(&mut a);
    }

    /// Notes an answer that is not `want`; returns whether it was.
    fn expect(&self, what: &str, a: &Answer, want: u16) -> bool {
        if a.status != want {
            self.acked
                .lock()
                .unwrap()
                .wrong
                .push(format!("{what}: {a:?}"));
        }
        a.status == want
    }

    /// Like [`Load::expect`], but the overload answer (503 `unavailable` with `Retry-After`)
    /// is fine too: the database is down. Counts those under "unavailable".
    fn expect_or_unavailable(&self, what: &str, a: &Answer, want: u16) -> bool {
        if a.is_unavailable() {
            self.ack("unavailable", |_| {});
            return false;
        }
        self.expect(what, a, want)
    }

    fn count(&self, kind: &str) -> usize {
        let a = self.acked.lock().unwrap();
        a.per_kind.get(kind).copied().unwrap_or(0)
    }

    fn acked_at_least(&self, targets: &[(&str, usize)]) -> bool {
        let a = self.acked.lock().unwrap();
        targets
            .iter()
            .all(|(k, n)| a.per_kind.get(k).copied().unwrap_or(0) >= *n)
    }
}

/// Confirms each pending factor with the current step's code.
async fn confirm_load(load: Arc<Load>, pending: Vec<Totp>) {
    for t in pending {
        let code = t.code(0);
        let path = format!("/users/{}/factors/{}/confirm", t.user, t.factor);
        let Ok(a) = load.api.try_post(&path, json!({ "code": code })).await else {
            return;
        };
        if load.expect("confirm", &a, 200) && a.flag("confirmed") {
            load.ack("confirm", |acked| {
                acked.confirmed.push((t.user.clone(), t.factor.clone()));
                acked.codes.push((t.user.clone(), code, None));
            });
        }
    }
}

/// A wrong code, then the right one, for each factor (confirmed a step back).
async fn verify_load(load: Arc<Load>, active: Vec<Totp>) {
    for t in active {
        let Ok(a) = load.api.try_verify(&t.user, &t.wrong_code(), None).await else {
            return;
        };
        if load.expect("wrong code", &a, 200) && a.flag("verified") {
            load.acked
                .lock()
                .unwrap()
                .wrong
                .push("a wrong code verified".into());
        }
        let code = t.code(0);
        let Ok(a) = load.api.try_verify(&t.user, &code, None).await else {
            return;
        };
        if load.expect("verify", &a, 200) && a.flag("verified") {
            load.ack("verify", |acked| acked.codes.push((t.user, code, None)));
        }
    }
}

/// Renews each user's recovery codes with one of them.
async fn recovery_load(load: Arc<Load>, codes: Vec<(String, String)>) {
    for (user, code) in codes {
        let Ok(a) = load.api.try_recover(&user, &code).await else {
            return;
        };
        if load.expect("recovery", &a, 200) && a.flag("verified") {
            load.ack("recovery", |acked| acked.recovery.push((user, code)));
        }
    }
}

/// Asks for a sign-in code for each factor, reads it where it was delivered (`codes(to)`
/// lists every code sent there so far) and verifies it.
async fn otp_load(
    load: Arc<Load>,
    kind: &'static str,
    factors: Vec<OtpFactor>,
    codes: impl Fn(&str) -> Vec<String>,
) {
    for f in factors {
        let before = codes(&f.to).len();
        let path = format!("/users/{}/factors/{}/send-code", f.user, f.factor);
        let Ok(a) = load.api.try_post(&path, json!({})).await else {
            return;
        };
        if !load.expect("send-code", &a, 202) {
            continue;
        }
        let Some(code) = poll(Some(&load.stop), || codes(&f.to).get(before).cloned()).await else {
            return;
        };
        let Ok(a) = load.api.try_verify(&f.user, &code, Some(&f.factor)).await else {
            return;
        };
        if load.expect("verify a sent code", &a, 200) && a.flag("verified") {
            load.ack(kind, |acked| {
                acked
                    .codes
                    .push((f.user.clone(), code, Some(f.factor.clone())))
            });
        }
    }
}

/// Invites the users in turn until the server is gone, keeping at most a few invitations
/// ahead of what the mail server received (`delivered()`), so the code messages of the other
/// tasks are not queued behind a flood.
async fn invite_load(load: Arc<Load>, users: Vec<String>, delivered: impl Fn() -> usize) {
    for user in users.iter().cycle() {
        let room = || {
            let invited = load.acked.lock().unwrap().invited.len();
            (invited < delivered() + 16).then_some(())
        };
        if poll(Some(&load.stop), room).await.is_none() {
            return;
        }
        let path = format!("/users/{user}/invite");
        let Ok(a) = load.api.try_post(&path, json!({})).await else {
            return;
        };
        if load.expect("invite", &a, 202) {
            let id = a.body["message_id"].as_str().unwrap().to_string();
            load.ack("invite", |acked| acked.invited.push(id));
        }
    }
}

async fn kill_under_load(db: Db) {
    const N: usize = 24;
    const OTP: usize = 4;
    let sink = Arc::new(SmtpSink::start(SinkOptions::default()).await);
    let sms = Arc::new(MockHttp::start().await);
    let site = Site::new(db, &transports(sink.port, &sms.base_url));
    let key = site.tenant();
    let server = site.serve();
    let api = Api::new(&server, &key);

    // Before the load: factors waiting for confirmation, TOTP factors confirmed a step back
    // (with their recovery codes), and confirmed email and SMS factors.
    let mut pending = Vec::new();
    let mut active = Vec::new();
    let mut recovery = Vec::new();
    for i in 0..N {
        api.user(&format!("c{i}")).await;
        pending.push(api.totp(&format!("c{i}")).await);
        let user = format!("v{i}");
        api.user(&user).await;
        let t = api.totp(&user).await;
        recovery.push((user, api.confirm_a_step_back(&t).await[0].clone()));
        active.push(t);
    }
    let mut email = Vec::new();
    let mut phone = Vec::new();
    for i in 0..OTP {
        let user = format!("e{i}");
        api.user(&user).await;
        let to = format!("e{i}-codes@example.com");
        let a = api
            .post(
                &format!("/users/{user}/factors/email"),
                json!({ "email": to }),
            )
            .await;
        assert!(a.is(201), "{a:?}");
        let factor = a.body["factor"]["id"].as_str().unwrap().to_string();
        let code = eventually("the enrolment code", || mailed_codes(&sink, &to).pop()).await;
        assert!(api.confirm(&user, &factor, &code).await.flag("confirmed"));
        email.push(OtpFactor { user, factor, to });

        let user = format!("s{i}");
        api.user(&user).await;
        let to = format!("+44770090{:04}", 100 + i);
        let a = api
            .post(
                &format!("/users/{user}/factors/sms"),
                json!({ "phone": to }),
            )
            .await;
        assert!(a.is(201), "{a:?}");
        let factor = a.body["factor"]["id"].as_str().unwrap().to_string();
        let code = eventually("the enrolment SMS", || texted_codes(&sms, &to).pop()).await;
        assert!(api.confirm(&user, &factor, &code).await.flag("confirmed"));
        phone.push(OtpFactor { user, factor, to });
    }

    // The load: every kind of write at once. Codes by email and SMS (slow: each waits for its
    // delivery) and invitations start first; once each has been acknowledged, confirmations,
    // verifications and recovery-code renewals (fast) join, and the process is killed when
    // about half of those are through, so requests of every kind are in flight.
    let load = Arc::new(Load {
        api: api.clone(),
        acked: Mutex::default(),
        stop: AtomicBool::new(false),
    });
    let invitees: Vec<String> = (0..N).map(|i| format!("v{i}")).collect();
    let (mail, texts) = (sink.clone(), sms.clone());
    let mut tasks = vec![
        tokio::spawn(otp_load(load.clone(), "email", email.clone(), move |to| {
            mailed_codes(&mail, to)
        })),
        tokio::spawn(otp_load(load.clone(), "sms", phone, move |to| {
            texted_codes(&texts, to)
        })),
    ];
    for _ in 0..2 {
        let mail = sink.clone();
        tasks.push(tokio::spawn(invite_load(
            load.clone(),
            invitees.clone(),
            move || mail.received().len(),
        )));
    }
    let started = [("email", 1), ("sms", 1), ("invite", 10)];
    eventually("codes and invitations acknowledged", || {
        load.acked_at_least(&started).then_some(())
    })
    .await;
    tasks.push(tokio::spawn(confirm_load(load.clone(), pending)));
    tasks.push(tokio::spawn(verify_load(load.clone(), active)));
    tasks.push(tokio::spawn(recovery_load(load.clone(), recovery)));
    for _ in 0..5_000 {
        let fast = ["confirm", "verify", "recovery"];
        let through: usize = {
            let a = load.acked.lock().unwrap();
            fast.iter()
                .map(|k| a.per_kind.get(k).copied().unwrap_or(0))
                .sum()
        };
        if through >= fast.len() * N / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let log = stop_without_panics(server); // SIGKILL
    load.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = std::mem::take(&mut *load.acked.lock().unwrap());
    let busy: Vec<&str> = log.lines().filter(|l| l.contains("busy")).collect();
    assert!(acked.wrong.is_empty(), "{:#?}\n{busy:#?}", acked.wrong);

    // What the kill left in the database, before anything touches it again.
    let at_kill = site.outbox().await;
    for id in &acked.invited {
        assert!(
            at_kill.contains_key(id),
            "acknowledged invitation {id} lost"
        );
    }

    let server = site.serve();
    let api = Api::new(&server, &key);
    for (user, factor) in &acked.confirmed {
        assert_eq!(api.factor_status(user, factor).await, "active", "{user}");
    }
    for (user, code, factor) in &acked.codes {
        let a = api.verify(user, code, factor.as_deref()).await;
        assert!(a.is(200) && !a.flag("verified"), "{user} replayed: {a:?}");
    }
    for (user, code) in &acked.recovery {
        let a = api.try_recover(user, code).await.unwrap();
        assert!(a.is(200) && !a.flag("verified"), "{user} replayed: {a:?}");
    }

    // Every message queued before the kill goes out: once, or (delivery is at least once)
    // again only if a worker was sending it when the process died.
    let mut stats = Value::Null;
    let drained = poll(None, || {
        stats = futures_block(api.outbox_stats());
        (stats["pending"] == 0 && stats["sending"] == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the outbox did not drain: {stats}");
    let failed = api.get("/outbox?status=failed").await.body;
    assert_eq!(stats["failed"], 0, "{stats} {failed}");
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for m in sink.received() {
        let id = m["message_id"].as_str().unwrap();
        let id = id.trim_start_matches('<').trim_end_matches('>');
        *delivered.entry(id.to_string()).or_default() += 1;
    }
    for r in sms.requests() {
        let id = r.header("i-twilio-idempotency-token").unwrap();
        *delivered.entry(id).or_default() += 1;
    }
    for (id, row) in &at_kill {
        assert!(
            delivered.contains_key(id),
            "{} message {id} never delivered: {row:?}",
            row.channel
        );
    }
    for (id, n) in &delivered {
        let row = at_kill.get(id);
        assert!(
            *n == 1 || row.is_some_and(Row::may_repeat),
            "message {id} delivered {n} times, {row:?} at the kill"
        );
    }

    // The restarted server still takes a fresh code.
    let f = &email[0];
    let before = mailed_codes(&sink, &f.to).len();
    let path = format!("/users/{}/factors/{}/send-code", f.user, f.factor);
    assert!(api.post(&path, json!({})).await.is(202));
    let code = eventually("a fresh code", || {
        mailed_codes(&sink, &f.to).get(before).cloned()
    })
    .await;
    assert!(api
        .verify(&f.user, &code, Some(&f.factor))
        .await
        .flag("verified"));
    stop_without_panics(server);
    eprintln!(
        "acknowledged before the kill: {} confirmations, {} codes, {} recovery codes, \
         {} invitations; {} messages in the outbox, {} being sent",
        acked.confirmed.len(),
        acked.codes.len(),
        acked.recovery.len(),
        acked.invited.len(),
        at_kill.len(),
        at_kill.values().filter(|r| r.status == "sending").count()
    );
}

/// Runs a future to completion from inside a synchronous closure of an async test.
fn futures_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged_on_sqlite() {
    kill_under_load(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_nothing_acknowledged_on_postgres() {
    let db = PgDatabase::fresh().await;
    kill_under_load(Db::Postgres(db.url.clone())).await;
}

// ------------------------------------------------------------------------------ SQLite busy

/// Another process holding the SQLite database's write lock (`BEGIN EXCLUSIVE` from Python's
/// own sqlite3 module) until told to let go.
struct WriteLock {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

const LOCKER: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
c.execute("ROLLBACK")
print("released", flush=True)
"#;

impl WriteLock {
    fn take(db: &std::path::Path) -> Self {
        use std::process::{Command, Stdio};
        let mut child = Command::new("python3")
            .args(["-c", LOCKER])
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the process that locks the database");
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut lock = Self { child, stdout };
        assert_eq!(lock.line(), "locked");
        lock
    }

    fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    fn release(mut self) {
        use std::io::Write;
        self.child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(b"go\n")
            .unwrap();
        assert_eq!(self.line(), "released");
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_by_another_process_answers_503_then_recovers_untouched() {
    let site = Site::new(Db::Sqlite, "");
    let key = site.tenant();
    let server = site.serve();
    let api = Api::new(&server, &key);
    api.user("alice").await;
    let t = api.totp("alice").await;
    api.confirm_a_step_back(&t).await;
    let (code, wrong) = (t.code(0), t.wrong_code());
    let writes = [
        (
            "/users",
            json!({"external_id": "bob", "email": "bob@example.com"}),
        ),
        ("/users/alice/invite", json!({})),
        ("/users/alice/verify", json!({ "code": code })),
        ("/users/alice/verify", json!({ "code": wrong })),
        ("/users/alice/factors/totp", json!({})),
    ];

    // Reads go on beside the lock (WAL).
    let lock = WriteLock::take(&site.data().join("twofold.db"));
    let a = api.get("/users/alice").await;
    assert!(a.is(200), "{a:?}");

    // These writes and a burst of user creations, all sent at once, wait out the server's 5 s
    // busy timeout and are refused together: the lock goes as soon as the first 503 is in,
    // so a write left queued behind the first refusal would succeed instead.
    use futures_util::StreamExt;
    let bulk: Vec<(&str, Value)> = (0..200)
        .map(|n| ("/users", json!({ "external_id": format!("bulk{n}") })))
        .collect();
    let sent = std::time::Instant::now();
    let mut pending: futures_util::stream::FuturesUnordered<_> = writes
        .iter()
        .chain(&bulk)
        .map(|(path, body)| {
            let api = &api;
            async move { (*path, api.post(path, body.clone()).await) }
        })
        .collect();
    let mut answers = vec![pending.next().await.unwrap()];
    tokio::task::block_in_place(|| lock.release());
    while let Some(a) = pending.next().await {
        answers.push(a);
    }
    eprintln!(
        "{} writes answered 503 within {:?}",
        answers.len(),
        sent.elapsed()
    );
    for (path, a) in &answers {
        assert!(a.is_unavailable(), "{path}: {a:?}");
    }

    // The same requests, nothing restarted: the refused code was not spent, the wrong one
    // not counted twice.
    let mut after = Vec::new();
    for (path, body) in &writes {
        after.push(api.post(path, body.clone()).await);
    }
    let got: Vec<(u16, Value)> = after
        .iter()
        .map(|a| (a.status, a.body["verified"].clone()))
        .collect();
    assert_eq!(
        got,
        [
            (201, Value::Null),
            (202, Value::Null),
            (200, json!(true)),
            (200, json!(false)),
            (201, Value::Null),
        ],
        "{after:?}"
    );
    stop_without_panics(server);
}

// ---------------------------------------------------------------- PostgreSQL restarted

/// Renews `user`'s recovery codes again and again, each time with one of the codes the last
/// renewal returned, until stopped. A 503 leaves the code unknown-spent (the commit may have
/// happened before the connection died), so the chain ends on the first refusal after one.
async fn recovery_chain(load: Arc<Load>, user: String, mut code: String) {
    let mut after_503 = false;
    while !load.stop.load(Ordering::SeqCst) {
        let Ok(a) = load.api.try_recover(&user, &code).await else {
            return;
        };
        if !load.expect_or_unavailable("recovery", &a, 200) {
            after_503 |= a.is_unavailable();
            continue;
        }
        if !a.flag("verified") {
            if !after_503 {
                load.acked
                    .lock()
                    .unwrap()
                    .wrong
                    .push("recovery chain broken".into());
            }
            return;
        }
        let next = strings(&a.body["recovery_codes"])[0].clone();
        load.ack("recovery", |acked| {
            acked.recovery.push((user.clone(), code))
        });
        code = next;
        after_503 = false;
    }
}

/// One kind of request again and again until stopped; `request(n)` gives the n-th.
async fn steady(
    load: Arc<Load>,
    kind: &'static str,
    want: u16,
    request: impl Fn(usize) -> (String, Value),
) {
    for n in 0.. {
        if load.stop.load(Ordering::SeqCst) {
            return;
        }
        let (path, body) = request(n);
        let Ok(a) = load.api.try_post(&path, body).await else {
            return;
        };
        if !load.expect_or_unavailable(kind, &a, want) {
            continue;
        }
        if a.flag("verified") {
            let mut acked = load.acked.lock().unwrap();
            acked.wrong.push(format!("{kind}: verified"));
        } else {
            load.ack(kind, |_| {});
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load_answers_503_then_recovers_by_itself() {
    let pg = tokio::task::spawn_blocking(PgServer::start_plain)
        .await
        .unwrap();
    let site = Site::new(Db::Postgres(pg.url("127.0.0.1", "sslmode=disable")), "");
    let key = site.tenant();
    let server = site.serve();
    let api = Api::new(&server, &key);
    let mut factors = HashMap::new();
    let mut recovery = HashMap::new();
    for user in ["a", "b", "rec", "wrongy"] {
        api.user(user).await;
        let t = api.totp(user).await;
        recovery.insert(user, api.confirm_a_step_back(&t).await);
        factors.insert(user, t);
    }
    let a_code = factors["a"].code(0);
    assert!(api.verify("a", &a_code, None).await.flag("verified"));

    let load = Arc::new(Load {
        api: api.clone(),
        acked: Mutex::default(),
        stop: AtomicBool::new(false),
    });
    let wrong = factors["wrongy"].wrong_code();
    let tasks = vec![
        tokio::spawn(steady(load.clone(), "invite", 202, |_| {
            ("/users/a/invite".into(), json!({}))
        })),
        tokio::spawn(steady(load.clone(), "user", 201, |n| {
            (
                "/users".into(),
                json!({ "external_id": format!("load{n}") }),
            )
        })),
        tokio::spawn(steady(load.clone(), "wrong code", 200, move |_| {
            ("/users/wrongy/verify".into(), json!({ "code": wrong }))
        })),
        tokio::spawn(recovery_chain(
            load.clone(),
            "rec".into(),
            recovery["rec"][0].clone(),
        )),
    ];
    let running = [
        ("invite", 3),
        ("user", 3),
        ("wrong code", 3),
        ("recovery", 3),
    ];
    eventually("the load to run", || {
        load.acked_at_least(&running).then_some(())
    })
    .await;

    tokio::task::block_in_place(|| pg.stop());
    // Down for certain: each kind of write is refused the same way.
    let b_code = factors["b"].code(0);
    let probes = [
        ("/users", json!({"external_id": "probe"})),
        ("/users/a/invite", json!({})),
        ("/users/b/verify", json!({ "code": b_code })),
    ];
    for (path, body) in &probes {
        let sent = std::time::Instant::now();
        let a = api.post(path, body.clone()).await;
        assert!(a.is_unavailable(), "{path}: {a:?}");
        eprintln!(
            "{path} answered 503 in {:?} while PostgreSQL was down",
            sent.elapsed()
        );
    }
    eventually("the load refused while PostgreSQL is down", || {
        (load.count("unavailable") >= 10).then_some(())
    })
    .await;

    tokio::task::block_in_place(|| pg.start_again());
    // Nothing restarted on Twofold's side: the pool reconnects.
    let before = load.count("invite");
    eventually("the load to go through again", || {
        (load.count("invite") >= before + 3 && load.count("user") >= 3).then_some(())
    })
    .await;
    load.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let refused = load.count("unavailable");
    let acked = std::mem::take(&mut *load.acked.lock().unwrap());
    assert!(acked.wrong.is_empty(), "{:#?}", acked.wrong);

    // The code refused during the outage was not spent; now it verifies, once. Nothing
    // accepted before, during or after the restart is accepted again.
    assert!(api.verify("b", &b_code, None).await.flag("verified"));
    for (user, code) in [("a", &a_code), ("b", &b_code)] {
        let a = api.verify(user, code, None).await;
        assert!(a.is(200) && !a.flag("verified"), "{user} replayed: {a:?}");
    }
    assert!(!acked.recovery.is_empty());
    for (user, code) in &acked.recovery {
        let a = api.try_recover(user, code).await.unwrap();
        assert!(a.is(200) && !a.flag("verified"), "{user} replayed: {a:?}");
    }
    stop_without_panics(server);
    eprintln!(
        "{refused} answers 503 while PostgreSQL was down; {} recovery renewals in the chain",
        acked.recovery.len()
    );
}

// ------------------------------------------------------------------ SMS provider down and back

/// tests/delivery.rs covers the mail server refusing connections across a server restart, and
/// one 429 from the SMS provider. Here the SMS provider is down for a while in every way it
/// can be (nothing listening, then 500s, then 503s) with several messages waiting: each is
/// retried on a doubling backoff that the outbox shows, and goes out once when it is back.
/// In-process, on the test's clock, so the backoff is walked through without waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_provider_refusing_then_failing_then_back_gets_each_message_once() {
    use common::spawn_app_with;
    use twofold_core::ports::Clock;
    use twofold_delivery::{Secret, SmsProvider};
    const BASE_MS: i64 = 4_000;
    let port = free_port();
    let app = spawn_app_with(move |c| {
        c.sms.provider = SmsProvider::Twilio;
        c.sms.twilio.base_url = format!("http://127.0.0.1:{port}");
        c.sms.twilio.account_sid = Some("AC0123456789".into());
        c.sms.twilio.auth_token = Some(Secret::new("token-xyz"));
        c.sms.twilio.from = Some("+15005550006".into());
        c.delivery.poll_interval_ms = 50;
        c.delivery.backoff_base_secs = (BASE_MS / 1000) as u64;
    })
    .await;
    let key = app.tenant("acme").await;
    let mut factors = HashMap::new();
    for i in 0..3 {
        let (user, phone) = (format!("u{i}"), format!("+44770090{:04}", 200 + i));
        app.user("acme", &key, &user).await;
        let (s, body) = app
            .post(
                &format!("/v1/tenants/acme/users/{user}/factors/sms"),
                &key,
                json!({ "phone": phone }),
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{body}");
        factors.insert(
            phone,
            (user, body["factor"]["id"].as_str().unwrap().to_string()),
        );
    }

    // Each failed attempt n leaves the message pending, with its error, due again after a
    // delay in [d/2, d] where d = BASE_MS · 2^(n-1): the backoff, read from the outbox.
    let failed_attempt = |n: i32, error: &'static str| {
        let app = &app;
        let key = key.clone();
        async move {
            let mut page = Value::Null;
            let settled = poll(None, || {
                page = futures_block(app.get("/v1/tenants/acme/outbox", &key)).1;
                let m = page["messages"].as_array()?;
                m.iter()
                    .all(|m| {
                        m["status"] == "pending"
                            && m["attempts"] == n
                            && m["last_error"].as_str().is_some_and(|e| e.contains(error))
                    })
                    .then_some(())
            })
            .await;
            assert!(settled.is_some(), "attempt {n} ({error}): {page}");
            let d = BASE_MS << (n - 1);
            let now = app.clock.now_ms();
            for m in page["messages"].as_array().unwrap() {
                let delay = m["next_attempt_at"].as_i64().unwrap() - now;
                assert!(
                    (d / 2..=d).contains(&delay),
                    "attempt {n}: due in {delay} ms"
                );
            }
            d
        }
    };
    // Nothing listens on the provider's port.
    let wait = failed_attempt(1, "Twilio").await;
    // It comes back answering errors: 500 to the next three requests, 503 to three more.
    let provider = MockHttp::start_on(port).await;
    for status in [500, 500, 500, 503, 503, 503] {
        provider.answer(
            status,
            r#"{"code": 20500, "message": "Internal Server Error"}"#,
        );
    }
    app.advance_secs(wait / 1000);
    let wait = failed_attempt(2, "500").await;
    app.advance_secs(wait / 1000);
    let wait = failed_attempt(3, "503").await;
    // Healthy again (the script is used up: 201 from now on).
    app.advance_secs(wait / 1000);
    let stats = eventually("every message sent", || {
        let s = futures_block(app.get("/v1/tenants/acme/outbox/stats", &key)).1;
        (s["sent"] == 3 && s["pending"] == 0 && s["failed"] == 0).then_some(s)
    })
    .await;
    assert_eq!(stats["sending"], 0, "{stats}");

    // Three tries each reached the provider, with the same idempotency token; only the last
    // was accepted, so each phone got its code once. The code works.
    let requests = provider.requests();
    let mut tries: HashMap<String, Vec<String>> = HashMap::new();
    for r in &requests {
        let token = r.header("i-twilio-idempotency-token").unwrap();
        tries
            .entry(r.form_value("To").unwrap())
            .or_default()
            .push(token);
    }
    assert_eq!(requests.len(), 9, "{tries:?}");
    for (phone, tokens) in &tries {
        assert_eq!(tokens.len(), 3, "{phone}");
        assert!(
            tokens.iter().all(|t| *t == tokens[0]),
            "{phone}: {tokens:?}"
        );
    }
    let accepted: Vec<String> = requests[6..]
        .iter()
        .map(|r| r.form_value("To").unwrap())
        .collect();
    assert_eq!(
        accepted.iter().collect::<HashSet<_>>(),
        factors.keys().collect::<HashSet<_>>()
    );
    let phone = &accepted[0];
    let code = six_digits(&requests[6].form_value("Body").unwrap()).unwrap();
    let (user, factor) = &factors[phone];
    let (_, body) = app
        .post(
            &format!("/v1/tenants/acme/users/{user}/factors/{factor}/confirm"),
            &key,
            json!({ "code": code }),
        )
        .await;
    assert_eq!(body["confirmed"], true, "{body}");
}
