//! The test kit: real components for the store, delivery and server tests. A real SMTP server
//! process (Python's aiosmtpd, `fixtures/smtp_sink.py`), a private CA and server certificate,
//! a scriptable local HTTP server speaking whatever an SMS provider speaks, a fresh
//! PostgreSQL database per test ([`PgDatabase`]), a private PostgreSQL server, with TLS or one a
//! test can stop and start ([`PgServer`]), a MaxMind DB written by a third-party writer for the
//! geo tests ([`geo::geo_fixture`]), and headless Chromium driven over WebDriver
//! ([`browser::Browser`]).
//!
//! Test support only (a dev-dependency): it fails loudly instead of returning errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod browser;
pub mod geo;
mod pg_server;
pub use geo::geo_fixture;
pub use pg_server::PgServer;
/// The name the TLS tests know it by.
pub type PgTlsServer = PgServer;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Fails (never skips) when the SMTP server the tests need is not installed.
pub fn require_aiosmtpd() {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "these tests need python3 with aiosmtpd: run `python3 -m pip install aiosmtpd` \
         (scripts/test.sh installs it)"
    );
}

/// A port that was free a moment ago (for "the server is down" tests, which need to know the
/// port before anything listens on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ------------------------------------------------------------------------------ certificates

/// A private CA and a server certificate it signed, for `localhost` and `127.0.0.1`.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn test_pki() -> TestPki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Twofold test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
    );
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    TestPki { dir, ca, cert, key }
}

// ------------------------------------------------------------------------------- SMTP server

#[derive(Default)]
pub struct SinkOptions<'a> {
    /// 0: any free port.
    pub port: u16,
    /// `plain`, `starttls` or `tls`; default plain.
    pub mode: Option<&'static str>,
    pub pki: Option<&'a TestPki>,
    pub auth: Option<(&'a str, &'a str)>,
    /// Reply code, text, and `rcpt` or `data`.
    pub fail: Option<(u16, &'a str, &'a str)>,
}

/// An aiosmtpd process; killed when dropped.
pub struct SmtpSink {
    child: tokio::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl SmtpSink {
    pub async fn start(opts: SinkOptions<'_>) -> SmtpSink {
        require_aiosmtpd();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(fixture("smtp_sink.py"))
            .arg("--port")
            .arg(opts.port.to_string())
            .arg("--dir")
            .arg(dir.path())
            .arg("--mode")
            .arg(opts.mode.unwrap_or("plain"));
        if let Some(pki) = opts.pki {
            cmd.arg("--cert").arg(&pki.cert).arg("--key").arg(&pki.key);
        }
        if let Some((u, p)) = opts.auth {
            cmd.args(["--user", u, "--password", p]);
        }
        if let Some((code, text, at)) = opts.fail {
            cmd.args([
                "--fail-code",
                &code.to_string(),
                "--fail-text",
                text,
                "--fail-at",
                at,
            ]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start python3 (install python3 and aiosmtpd)");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        let read = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::io::BufReader::new(stdout).read_line(&mut line),
        )
        .await;
        let port: u16 = match read {
            Ok(Ok(_)) => line.trim().parse().unwrap_or_else(|_| {
                panic!("smtp_sink.py did not print its port (got {line:?}); see its stderr above")
            }),
            _ => panic!("smtp_sink.py did not start within 20 s"),
        };
        SmtpSink { child, port, dir }
    }

    /// A server speaking `starttls` or `tls` with the certificate of `pki`, requiring SMTP AUTH
    /// as `auth` when given.
    pub async fn start_tls(
        mode: &'static str,
        pki: &TestPki,
        auth: Option<(&str, &str)>,
    ) -> SmtpSink {
        SmtpSink::start(SinkOptions {
            mode: Some(mode),
            pki: Some(pki),
            auth,
            ..Default::default()
        })
        .await
    }

    /// What Python's `email` package parsed of each message received so far, in order.
    pub fn received(&self) -> Vec<Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// The raw bytes of the `n`th message (1-based).
    pub fn raw(&self, n: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{n:06}.eml"))).unwrap()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Parses an `.eml` file with the same Python code the sink uses.
pub fn parse_eml(path: &Path) -> Value {
    require_aiosmtpd();
    let out = std::process::Command::new("python3")
        .arg(fixture("smtp_sink.py"))
        .arg("--parse")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

// ------------------------------------------------------------------------------- HTTP server

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
    /// `application/x-www-form-urlencoded` pairs, decoded.
    pub fn form(&self) -> Vec<(String, String)> {
        let body = std::str::from_utf8(&self.body).unwrap();
        body.split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let dec = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8()
                        .unwrap()
                        .into_owned()
                };
                (dec(k), dec(v))
            })
            .collect()
    }
    pub fn form_value(&self, key: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

#[derive(Clone, Default)]
struct HttpState {
    requests: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<VecDeque<(u16, String)>>>,
}

/// A local HTTP server that records every request and answers from a script: each request
/// takes the next `(status, body)`, and once the script is empty it answers 201 `{}`.
pub struct MockHttp {
    pub base_url: String,
    state: HttpState,
    task: tokio::task::JoinHandle<()>,
}

impl MockHttp {
    pub async fn start() -> MockHttp {
        Self::start_on(0).await
    }

    /// The same on a given port, e.g. one a server was already configured with while nothing
    /// listened on it (a provider that was down and comes back).
    pub async fn start_on(port: u16) -> MockHttp {
        let state = HttpState::default();
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MockHttp {
            base_url: format!("http://{addr}"),
            state,
            task,
        }
    }

    pub fn answer(&self, status: u16, body: &str) {
        self.state
            .script
            .lock()
            .unwrap()
            .push_back((status, body.to_string()));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for MockHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    axum::extract::State(state): axum::extract::State<HttpState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    state.requests.lock().unwrap().push(Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers,
        body,
    });
    let (status, body) = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or((201, "{}".to_string()));
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body,
    )
}

// -------------------------------------------------------------------------------- PostgreSQL

/// The server test databases are created on when `TWOFOLD_TEST_PG_URL` is unset.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn pg_admin_url() -> String {
    std::env::var("TWOFOLD_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

/// A connection to `url`, or a failure (never a skip) that says how to get a server.
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url
        .parse()
        .unwrap_or_else(|e| panic!("TWOFOLD_TEST_PG_URL is not a PostgreSQL URL: {e}"));
    config.connect_timeout(Duration::from_secs(5));
    match config.connect(tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => panic!(
            "PostgreSQL is not reachable at {hosts:?} port {ports:?} ({e}; {cause}).\n\
             These tests need a PostgreSQL server where this user may CREATE DATABASE:\n\
             run scripts/test.sh (it installs and starts one), or start the installed cluster\n\
             (`pg_ctlcluster --skip-systemctl-redirect <version> main start`), or set\n\
             TWOFOLD_TEST_PG_URL (default {DEFAULT_PG_URL}) to a server that is running.",
            hosts = config.get_hosts(),
            ports = config.get_ports(),
            cause = std::error::Error::source(&e)
                .map(|c| c.to_string())
                .unwrap_or_default(),
        ),
    }
}

/// `url` pointing at database `name` instead (URL or `key=value` form).
fn with_database(url: &str, name: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (rest, params) = match rest.split_once('?') {
                Some((rest, params)) => (rest, format!("?{params}")),
                None => (rest, String::new()),
            };
            let authority = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{authority}/{name}{params}")
        }
        None => format!("{url} dbname={name}"),
    }
}

/// An empty database of its own for one test (`twofold_t_<random>`), created through the
/// server named by `TWOFOLD_TEST_PG_URL` (default [`DEFAULT_PG_URL`]) and dropped, with any
/// connection still open to it, when this value is dropped. Without a reachable server it
/// fails and says how to get one: these tests never skip.
pub struct PgDatabase {
    pub name: String,
    /// The database's URL, for `PgStore::connect` or a server's `database_url`.
    pub url: String,
}

impl PgDatabase {
    pub async fn fresh() -> Self {
        let admin = pg_admin_url();
        let client = pg_client(&admin).await;
        let name = format!("twofold_t_{:016x}", rand::random::<u64>());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot CREATE DATABASE {name}: {e:?}"));
        Self {
            url: with_database(&admin, &name),
            name,
        }
    }

    /// A plain connection to this database, for SQL a test runs behind the store's back.
    pub async fn client(&self) -> tokio_postgres::Client {
        pg_client(&self.url).await
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs on the test's runtime, which cannot block on a future: a short-lived
        // thread with a runtime of its own does it.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async { pg_client(&pg_admin_url()).await.batch_execute(&sql).await })
                .ok()
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_test_database_replaces_only_the_database_name() {
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres?sslmode=disable", "t1"),
            "postgres://u:p@h:5/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h", "t1"), "postgresql://h/t1");
        assert_eq!(
            with_database("host=h user=u", "t1"),
            "host=h user=u dbname=t1"
        );
    }
}
