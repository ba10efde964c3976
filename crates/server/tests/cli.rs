//! The `twofold` binary as an operator uses it: real processes on a real data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::process::*;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn serve_with_no_config_creates_its_data_dir_and_answers() {
    let cwd = tempfile::tempdir().unwrap();
    let server = serve(cwd.path(), &[]);
    let data = cwd.path().join("twofold-data");
    assert!(data.join("twofold.db").exists());
    assert!(data.join("master.key").exists());
    let body = raw_http::get(&format!("http://{}/healthz", server.addr));
    assert_eq!(body, "ok");
}

mod raw_http {
    /// A tiny blocking GET over std, so this test file needs no async runtime.
    pub fn get(url: &str) -> String {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
    }
}

#[test]
fn operator_commands_work_beside_a_running_server() {
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("twofold-data");
    let data_arg = data.to_str().unwrap();
    let server = serve(cwd.path(), &["--data-dir", data_arg]);

    let out = stdout(&twofold(
        &data,
        &["tenant", "create", "--slug", "acme", "--name", "Acme"],
    ));
    assert!(out.contains("created tenant acme"));
    let tenant_key = token(&out);
    let out = stdout(&twofold(
        &data,
        &["apikey", "create", "--operator", "--label", "ops"],
    ));
    let op_key = token(&out);
    assert_ne!(op_key, tenant_key);
    stdout(&twofold(
        &data,
        &[
            "user",
            "create",
            "--tenant",
            "acme",
            "--external-id",
            "alice",
            "--email",
            "a@example.com",
        ],
    ));

    // The running server sees what the CLI wrote, and accepts the CLI-minted key.
    let http = Http::new(&server.addr);
    let (status, body) = http.get("/v1/tenants/acme/users/alice", &tenant_key);
    assert_eq!(status, 200, "{body}");
    let post = |path: String, body: serde_json::Value| http.post(&path, &op_key, body).1;
    let enrol = post(
        "/v1/tenants/acme/users/alice/factors/totp".into(),
        serde_json::json!({}),
    );
    let uri = enrol["otpauth_uri"].as_str().unwrap();
    let factor = enrol["factor_id"].as_str().unwrap();

    // `otp code` prints the current code of a URI, equal to the OTP engine's.
    let key = twofold_otp::uri::KeyUri::parse(uri).unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = stdout(&twofold(&data, &["otp", "code", "--uri", uri]));
    let code = code.trim();
    let expected: Vec<String> = [before, before + 1]
        .iter()
        .map(|t| twofold_otp::totp_at_time(&key.secret, *t, &key.params()))
        .collect();
    assert!(
        expected.iter().any(|c| c == code),
        "{code} not in {expected:?}"
    );

    let listed = stdout(&twofold(
        &data,
        &["factor", "list", "--tenant", "acme", "--user", "alice"],
    ));
    assert!(
        listed.contains(factor) && listed.contains("pending"),
        "{listed}"
    );
    let out = stdout(&twofold(
        &data,
        &[
            "factor", "unlock", "--tenant", "acme", "--user", "alice", "--factor", factor,
        ],
    ));
    assert!(out.contains("unlocked"));

    let keys = stdout(&twofold(&data, &["apikey", "list", "--tenant", "acme"]));
    let key_id = keys.split_whitespace().next().unwrap().to_string();
    stdout(&twofold(&data, &["apikey", "revoke", &key_id]));
    assert!(stdout(&twofold(&data, &["apikey", "list", "--tenant", "acme"])).contains("revoked"));
    let out = twofold(&data, &["apikey", "revoke", &key_id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("api_key not found"));
    stdout(&twofold(&data, &["migrate"]));

    // Confirm over HTTP too, then check the debug log holds no code, seed or key.
    let code = stdout(&twofold(&data, &["otp", "code", "--uri", uri]));
    let confirmed = post(
        format!("/v1/tenants/acme/users/alice/factors/{factor}/confirm"),
        serde_json::json!({"code": code.trim()}),
    );
    assert_eq!(confirmed["confirmed"], true);
    let recovery: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();

    // Operator controls: 2FA off for one user, then (only with --yes) for the whole tenant.
    let out = stdout(&twofold(
        &data,
        &["user", "disable-2fa", "--tenant", "acme", "--user", "alice"],
    ));
    assert!(
        out.contains("two-step verification is off for alice"),
        "{out}"
    );
    let listed = stdout(&twofold(
        &data,
        &["factor", "list", "--tenant", "acme", "--user", "alice"],
    ));
    assert!(listed.trim().is_empty(), "{listed}");
    let (_, left) = http.get("/v1/tenants/acme/users/alice/recovery-codes", &tenant_key);
    assert_eq!(left["remaining"], 0);
    let out = twofold(&data, &["tenant", "disable-2fa", "--slug", "acme"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    let out = stdout(&twofold(
        &data,
        &["tenant", "disable-2fa", "--slug", "acme", "--yes"],
    ));
    assert!(
        out.contains("two-step verification is off for acme"),
        "{out}"
    );
    let (_, policy) = http.get("/v1/tenants/acme/policy", &tenant_key);
    assert_eq!(policy["policy"]["enforcement"]["mode"], "off");
    let (_, audit) = http.get(
        "/v1/tenants/acme/audit?action=user.2fa_disable",
        &tenant_key,
    );
    assert_eq!(audit["events"][0]["actor"], "cli", "{audit}");
    let log = server.stop();
    assert!(
        log.contains("/confirm"),
        "the debug log records requests: {log}"
    );
    let secret = enrol["secret"].as_str().unwrap();
    for needle in [secret, &op_key, &tenant_key, &op_key[20..]] {
        assert!(!log.contains(needle), "log leaks {needle}");
    }
    for code in &recovery {
        assert!(!log.contains(code.as_str()), "log leaks a recovery code");
    }
    assert!(!contains_number(&log, code.trim()), "log leaks the code");
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `twofold backup` beside a server that keeps writing, then the documented restore: the copy
/// and the two keys in a new data directory. The restored server has everything committed
/// before the snapshot and nothing half-done: users created one after the other come back as
/// an unbroken prefix, and the TOTP factor verifies (its sealed seed survived, and the master
/// key unseals it).
#[test]
fn backup_while_serving_restores_to_a_working_server() {
    use std::os::unix::fs::PermissionsExt;
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("twofold-data");
    let server = serve(cwd.path(), &["--data-dir", data.to_str().unwrap()]);
    let op_key = token(&stdout(&twofold(
        &data,
        &["apikey", "create", "--operator"],
    )));
    let http = Http::new(&server.addr);
    let (s, t) = http.post(
        "/v1/tenants",
        &op_key,
        serde_json::json!({"slug": "acme", "name": "Acme"}),
    );
    assert_eq!(s, 201, "{t}");
    let key = t["api_key"]["token"].as_str().unwrap().to_string();
    let (s, u) = http.post(
        "/v1/tenants/acme/users",
        &key,
        serde_json::json!({"external_id": "alice", "email": "alice@example.com"}),
    );
    assert_eq!(s, 201, "{u}");
    let (s, enrol) = http.post(
        "/v1/tenants/acme/users/alice/factors/totp",
        &key,
        serde_json::json!({}),
    );
    assert_eq!(s, 201, "{enrol}");
    let factor = enrol["factor_id"].as_str().unwrap().to_string();
    let otp = twofold_otp::uri::KeyUri::parse(enrol["otpauth_uri"].as_str().unwrap()).unwrap();
    // Confirm with the previous step's code (not too close to a step's end, so no drift is
    // learned): the current step stays free for the restored server to accept.
    while unix_now() % 30 > 26 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let previous = twofold_otp::totp_at_time(&otp.secret, unix_now() - 30, &otp.params());
    let (s, c) = http.post(
        &format!("/v1/tenants/acme/users/alice/factors/{factor}/confirm"),
        &key,
        serde_json::json!({ "code": previous }),
    );
    assert_eq!((s, &c["confirmed"]), (200, &serde_json::json!(true)), "{c}");

    // Writes go on during the backup: users w0, w1, … one after the other.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (addr, k, flag) = (server.addr.clone(), key.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let http = Http::new(&addr);
        let mut n = 0;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let (s, body) = http.post(
                "/v1/tenants/acme/users",
                &k,
                serde_json::json!({ "external_id": format!("w{n:05}") }),
            );
            assert_eq!(s, 201, "{body}");
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(300));
    let file = cwd.path().join("backups").join("twofold.db");
    std::fs::create_dir(file.parent().unwrap()).unwrap();
    let out = stdout(&twofold(&data, &["backup", "--to", file.to_str().unwrap()]));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(out.contains("backup written to"), "{out}");
    assert!(
        out.contains("holds no key") && out.contains(data.join("master.key").to_str().unwrap()),
        "the output says loudly that the keys are not in it: {out}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // An existing file is replaced only with --force.
    let first = std::fs::read(&file).unwrap();
    let again = twofold(&data, &["backup", "--to", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), first, "left as it was");

    // Restore as docs/DEPLOYMENT.md says: the copy as twofold.db, no -wal/-shm, the same keys.
    let restored = cwd.path().join("restored");
    std::fs::create_dir(&restored).unwrap();
    std::fs::set_permissions(&restored, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(&file, restored.join("twofold.db")).unwrap();
    for k in ["master.key", "hashing.key"] {
        std::fs::copy(data.join(k), restored.join(k)).unwrap();
        std::fs::set_permissions(restored.join(k), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let second = serve(cwd.path(), &["--data-dir", restored.to_str().unwrap()]);
    let http2 = Http::new(&second.addr);
    let (s, users) = http2.get("/v1/tenants/acme/users?limit=500", &key);
    assert_eq!(s, 200, "{users}");
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "alice");
    let copied = names.len() - 1;
    let prefix: Vec<String> = (0..copied).map(|n| format!("w{n:05}")).collect();
    assert_eq!(names[1..], prefix, "an unbroken prefix of the writes");
    assert!(copied > 0 && copied <= written, "{copied} of {written}");
    let code = twofold_otp::totp_at_time(&otp.secret, unix_now(), &otp.params());
    let (s, v) = http2.post(
        "/v1/tenants/acme/users/alice/verify",
        &key,
        serde_json::json!({ "code": code }),
    );
    assert_eq!((s, v), (200, serde_json::json!({"verified": true})));

    // --force replaces the file with a newer copy.
    stdout(&twofold(
        &data,
        &["backup", "--to", file.to_str().unwrap(), "--force"],
    ));
    assert_ne!(std::fs::read(&file).unwrap(), first);
}

/// Whether `digits` stands in `text` as a whole number (not inside a longer one, such as a
/// timestamp's fraction).
fn contains_number(text: &str, digits: &str) -> bool {
    text.match_indices(digits).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + digits.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// The same commands and `serve` on PostgreSQL (`--database-url` or `TWOFOLD_DATABASE_URL`):
/// nothing goes to SQLite, `backup` points at pg_dump, and no output shows a password.
#[test]
fn commands_and_serve_work_on_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(twofold_testkit::PgDatabase::fresh());
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("twofold-data");
    let on_pg = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--database-url", &db.url]);
        twofold(&data, &all)
    };
    let migrated = stdout(&on_pg(&["migrate"]));
    assert!(
        migrated.contains("postgres://") && migrated.contains(&db.name),
        "{migrated}"
    );
    assert!(token(&stdout(&on_pg(&[
        "tenant", "create", "--slug", "acme", "--name", "Acme"
    ])))
    .starts_with("tfk_"));
    assert!(!data.join("twofold.db").exists(), "nothing in SQLite");
    let out = Command::new(env!("CARGO_BIN_EXE_twofold"))
        .args(["apikey", "list", "--tenant", "acme", "--data-dir"])
        .arg(&data)
        .env("TWOFOLD_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert_eq!(stdout(&out).lines().count(), 1);

    let file = cwd.path().join("backup.db");
    let out = on_pg(&["backup", "--to", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("pg_dump"), "{err}");
    assert!(!file.exists());

    let server = serve(cwd.path(), &["--database-url", &db.url]);
    assert_eq!(
        raw_http::get(&format!("http://{}/readyz", server.addr)),
        "ready"
    );
    let database = server.started["fields"]["database"].clone();
    assert!(
        database
            .as_str()
            .unwrap()
            .ends_with(&format!("/{}", db.name)),
        "{database}"
    );
    // The driver's debug lines carry every statement's parameters: they stay out of the log.
    let log = server.stop();
    assert!(!log.contains("tokio_postgres"), "{log}");

    // A password in the URL never reaches an error message (or a log line).
    let out = twofold(
        &data,
        &[
            "migrate",
            "--database-url",
            "postgres://app:hunter2@127.0.0.1:1/twofold",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("postgres://app@127.0.0.1:1/twofold") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let out = twofold(
        &data,
        &["tenant", "create", "--slug", "Not Valid", "--name", "x"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("slug"));
    let out = twofold(
        &data,
        &["user", "create", "--tenant", "ghost", "--external-id", "a"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant not found"));
    let out = twofold(
        &data,
        &["otp", "code", "--uri", "otpauth://totp/x?secret=!!"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--uri"));
    let out = twofold(&data, &["apikey", "create"]);
    assert!(!out.status.success());

    let config = dir.path().join("twofold.toml");
    std::fs::write(
        &config,
        "audit_retention_days = 30\nlisten_adress = \"x\"\n",
    )
    .unwrap();
    let out = twofold(&data, &["migrate", "--config", config.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown key `listen_adress`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_twofold"))
        .args(["migrate", "--data-dir", data.to_str().unwrap()])
        .env("TWOFOLD_LISTEN", "nowhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TWOFOLD_LISTEN"));
}

#[test]
fn a_newcomer_reads_codes_from_the_development_outbox() {
    let cwd = tempfile::tempdir().unwrap();
    let data = cwd.path().join("twofold-data");
    let server = serve(cwd.path(), &[]);
    let key = token(&stdout(&twofold(
        &data,
        &["tenant", "create", "--slug", "acme", "--name", "Acme"],
    )));
    stdout(&twofold(
        &data,
        &[
            "user",
            "create",
            "--tenant",
            "acme",
            "--external-id",
            "alice",
            "--email",
            "alice@example.com",
        ],
    ));
    let out = stdout(&twofold(
        &data,
        &[
            "tenant",
            "messaging",
            "--slug",
            "acme",
            "--sender-name",
            "Acme Security",
            "--sms-countries",
            "44,+1",
        ],
    ));
    assert!(
        out.contains("Acme Security") && out.contains("+44, +1"),
        "{out}"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let enrolled: serde_json::Value = rt.block_on(async {
        client
            .post(format!("{base}/v1/tenants/acme/users/alice/factors/sms"))
            .bearer_auth(&key)
            .json(&serde_json::json!({"phone": "+447700900123"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(enrolled["code_sent"]["channel"], "sms", "{enrolled}");

    // The text message lands as a file under the data directory, with the code in it.
    let sms_dir = data.join("dev-outbox").join("sms");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let found = std::fs::read_dir(&sms_dir).ok().and_then(|mut d| {
            d.find_map(|e| {
                e.ok()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "txt"))
            })
        });
        if let Some(e) = found {
            break std::fs::read_to_string(e.path()).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no SMS file in {}",
            sms_dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("To: +447700900123"), "{text}");
    let code: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_string();

    let stats = stdout(&twofold(&data, &["outbox", "stats", "--tenant", "acme"]));
    assert!(stats.contains("sent 1"), "{stats}");
    let list = stdout(&twofold(&data, &["outbox", "list", "--status", "sent"]));
    assert!(list.contains("sms\tcode\t+44•••••••123"), "{list}");
    assert!(!list.contains("7700900"), "{list}");
    let out = twofold(&data, &["outbox", "retry", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no failed message"));
    let out = twofold(&data, &["outbox", "list", "--status", "lost"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pending, sending, sent or failed"));

    // The log says where messages go, and never carries the code.
    let log = server.stop();
    assert!(log.contains("dev-outbox"), "{log}");
    assert!(!contains_number(&log, &code), "log leaks the code");
}

#[test]
fn vault_commands_add_list_print_codes_and_manage_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    stdout(&twofold(
        data,
        &["tenant", "create", "--slug", "acme", "--name", "Acme"],
    ));
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    stdout(&twofold(
        data,
        &[
            "vault",
            "add",
            "--tenant",
            "acme",
            "--name",
            "gh",
            "--owner",
            "ci-bot",
            "--service",
            "--secret",
            secret,
            "--algorithm",
            "SHA256",
            "--digits",
            "8",
            "--period",
            "60",
        ],
    ));
    let list = stdout(&twofold(data, &["vault", "list", "--tenant", "acme"]));
    assert!(
        list.contains("\"name\":\"gh\"") && !list.contains(secret),
        "{list}"
    );
    let before = unix_now();
    let out = stdout(&twofold(data, &["vault", "code", "gh", "--tenant", "acme"]));
    let after = unix_now();
    let mut words = out.split_whitespace();
    let (code, left) = (words.next().unwrap(), words.next().unwrap());
    let want = |t: u64| {
        let o = Command::new("oathtool")
            .args([
                "--totp=SHA256",
                "-d",
                "8",
                "-s",
                "60",
                "-N",
                &format!("@{t}"),
                "-b",
                secret,
            ])
            .output()
            .unwrap();
        String::from_utf8(o.stdout).unwrap().trim().to_string()
    };
    assert!(code == want(before) || code == want(after), "{out}");
    let secs: u64 = left.trim_end_matches("s").parse().unwrap();
    assert!((1..=60).contains(&secs), "{out}");
    stdout(&twofold(
        data,
        &["vault", "group", "create", "robots", "--tenant", "acme"],
    ));
    stdout(&twofold(
        data,
        &[
            "vault", "group", "set", "gh", "--tenant", "acme", "--group", "robots",
        ],
    ));
    let t = stdout(&twofold(
        data,
        &[
            "vault", "token", "create", "--tenant", "acme", "--group", "robots",
        ],
    ));
    assert!(t.trim().starts_with("tfv_"), "{t}");
    let tokens = stdout(&twofold(
        data,
        &["vault", "token", "list", "--tenant", "acme"],
    ));
    let id = tokens
        .split('"')
        .find(|w| w.starts_with("vtk_"))
        .unwrap()
        .to_string();
    stdout(&twofold(
        data,
        &["vault", "token", "revoke", &id, "--tenant", "acme"],
    ));
    let tokens = stdout(&twofold(
        data,
        &["vault", "token", "list", "--tenant", "acme"],
    ));
    assert!(!tokens.contains("\"revoked_at\":null"), "{tokens}");
}
