//! The `twofold` binary as real processes: the CLI run to completion, `twofold serve` started
//! on a free port (and stopped, or signalled, by the test), blocking HTTP calls to it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn twofold(data_dir: &Path, args: &[&str]) -> Output {
    twofold_with_env(data_dir, args, &[])
}

/// A CLI command with more environment variables (e.g. `TWOFOLD_DATABASE_URL`).
pub fn twofold_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twofold"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("TWOFOLD_LISTEN")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn token(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("tfk_"))
        .unwrap()
        .to_string()
}

/// Starts `twofold serve` on a free port and waits for its "listening" log line.
pub struct Server {
    child: std::process::Child,
    pub addr: String,
    /// The "twofold listening" log line.
    pub started: serde_json::Value,
    log: std::sync::mpsc::Receiver<String>,
}

impl Server {
    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Log lines received so far, without waiting.
    pub fn logged(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// Stops the server and returns everything it logged.
    pub fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut all = String::new();
        while let Ok(line) = self.log.recv_timeout(Duration::from_millis(500)) {
            all.push_str(&line);
            all.push('\n');
        }
        all
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(cwd: &Path, extra: &[&str]) -> Server {
    serve_with_env(cwd, extra, &[])
}

/// `serve` with more `TWOFOLD_*` (or other) environment variables.
pub fn serve_with_env(cwd: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twofold"))
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .current_dir(cwd)
        .env("TWOFOLD_LOG_FORMAT", "json")
        .env("TWOFOLD_LOG_LEVEL", "debug")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains("twofold listening") {
                let started: serde_json::Value = serde_json::from_str(&line).unwrap();
                let addr = started["fields"]["addr"].as_str().unwrap().to_string();
                return Server {
                    child,
                    addr,
                    started,
                    log: rx,
                };
            }
            seen.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start: {seen:?}");
}

/// Blocking JSON calls to a server, for tests that drive processes rather than async code.
pub struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl Http {
    pub fn new(addr: &str) -> Self {
        Self {
            rt: tokio::runtime::Runtime::new().unwrap(),
            client: reqwest::Client::new(),
            base: format!("http://{addr}"),
        }
    }

    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.rt.block_on(async {
            let mut req = self
                .client
                .request(method, format!("{}{path}", self.base))
                .bearer_auth(key);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
            )
        })
    }

    pub fn get(&self, path: &str, key: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, key, None)
    }

    pub fn post(&self, path: &str, key: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, key, Some(body))
    }
}
