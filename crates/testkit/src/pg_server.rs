//! A private PostgreSQL server for tests that need what the shared one cannot give: TLS with
//! the test CA's certificate and a `pg_hba.conf` that admits TCP connections only over TLS
//! (`hostssl`), or a plain server the test may stop and start again (the fault tests restart
//! the database under a running Twofold). Made with the server's own `initdb` and `pg_ctl` in
//! a temporary directory, on a free port; stopped and deleted when dropped.
//!
//! PostgreSQL refuses to run as root: as root (CI, the test script) the server runs as the
//! `postgres` user that the Debian package creates, through `runuser`.

use crate::TestPki;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// Where `initdb` and `pg_ctl` are: `TWOFOLD_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian), else `pg_config --bindir`, else `$PATH`.
fn bin_dir() -> Option<PathBuf> {
    let has_initdb = |d: &Path| d.join("initdb").is_file();
    if let Some(d) = std::env::var_os("TWOFOLD_TEST_PG_BIN") {
        return Some(PathBuf::from(d)).filter(|d| has_initdb(d));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, d)| has_initdb(d))
        .collect();
    debian.sort();
    if let Some((_, d)) = debian.pop() {
        return Some(d);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|d| has_initdb(d));
    from_pg_config.or_else(|| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .find(|d| has_initdb(d))
    })
}

fn id(args: &[&str]) -> Option<u32> {
    let out = Command::new("id").args(args).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// A PostgreSQL server of the test's own; see the module docs.
pub struct PgServer {
    pub port: u16,
    /// The directory of its Unix socket (trusted, for [`PgServer::admin`]).
    pub socket_dir: PathBuf,
    data: PathBuf,
    bin: PathBuf,
    /// `Some("postgres")` when the tests run as root.
    run_as: Option<&'static str>,
    _dir: tempfile::TempDir,
}

impl PgServer {
    /// Starts a server with `pki`'s certificate (for `localhost` and `127.0.0.1`), listening on
    /// 127.0.0.1 only. Takes a second or two: `initdb` without fsync, a small configuration.
    pub fn start(pki: &TestPki) -> Self {
        Self::launch(Some(pki))
    }

    /// Starts a server without TLS that trusts every connection from 127.0.0.1.
    pub fn start_plain() -> Self {
        Self::launch(None)
    }

    fn launch(pki: Option<&TestPki>) -> Self {
        let bin = bin_dir().unwrap_or_else(|| {
            panic!(
                "these tests need PostgreSQL's server programs (initdb, pg_ctl): install the \
                 postgresql package (scripts/test.sh does), or set TWOFOLD_TEST_PG_BIN to the \
                 directory that holds them"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let run_as = (id(&["-u"]) == Some(0)).then_some("postgres");
        if let Some(user) = run_as {
            let (uid, gid) = (id(&["-u", user]), id(&["-g", user]));
            assert!(
                uid.is_some(),
                "running as root, and there is no `{user}` user to run PostgreSQL as \
                 (the postgresql package creates it)"
            );
            std::os::unix::fs::chown(dir.path(), uid, gid).unwrap();
        }
        let data = dir.path().join("data");
        let mut server = Self {
            port: 0,
            socket_dir: dir.path().to_path_buf(),
            data,
            bin,
            run_as,
            _dir: dir,
        };
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&server.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let (hba, ssl): (&[u8], &str) = match pki {
            Some(pki) => {
                for (name, from) in [("server.pem", &pki.cert), ("server.key", &pki.key)] {
                    server.write(name, &std::fs::read(from).unwrap());
                }
                (
                    b"local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
                    "ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n",
                )
            }
            None => (
                b"local all all trust\nhost all all 127.0.0.1/32 trust\n",
                "ssl = off\n",
            ),
        };
        server.write("pg_hba.conf", hba);
        // A free port can be taken between the probe and the start: try a few.
        for attempt in 0.. {
            server.port = crate::free_port();
            let conf = format!(
                "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
                 {ssl}fsync = off\nshared_buffers = 16MB\nmax_connections = 40\n",
                server.port,
                path_str(&server.socket_dir)
            );
            server.write("postgresql.auto.conf", conf.as_bytes());
            let out = server.pg_ctl_start();
            if out.status.success() {
                break;
            }
            let log = server.log();
            assert!(
                attempt < 3 && log.contains("could not bind"),
                "pg_ctl start failed: {}{}\nserver log:\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        server
    }

    /// `pg_ctl start`, waiting until the server accepts connections.
    fn pg_ctl_start(&self) -> Output {
        let log = self.socket_dir.join("server.log");
        self.try_run(
            "pg_ctl",
            &[
                "-D",
                path_str(&self.data),
                "-l",
                path_str(&log),
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.socket_dir.join("server.log")).unwrap_or_default()
    }

    /// Stops the server as an operator restarting it would (`pg_ctl stop -m fast`: open
    /// transactions are rolled back, clients are disconnected), and waits until it is down.
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", path_str(&self.data), "-m", "fast", "-w", "stop"],
        );
    }

    /// Starts the stopped server again on the same port and data; returns once it accepts
    /// connections.
    pub fn start_again(&self) {
        let out = self.pg_ctl_start();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// `postgres://postgres@{host}:{port}/postgres?{params}`.
    pub fn url(&self, host: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{params}", self.port)
    }

    /// A superuser connection over the Unix socket (no TLS), for checks behind the store's back.
    pub async fn admin(&self) -> tokio_postgres::Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    /// Writes a file into the data directory, private to the server's user (PostgreSQL refuses
    /// a key file others can read).
    fn write(&self, name: &str, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.data.join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Some(user) = self.run_as {
            std::os::unix::fs::chown(&path, id(&["-u", user]), id(&["-g", user])).unwrap();
        }
    }

    fn try_run(&self, program: &str, args: &[&str]) -> Output {
        let program = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        // -D and the configuration say where and on which port; the environment must not.
        cmd.args(args)
            .env_remove("PGDATA")
            .env_remove("PGPORT")
            .current_dir("/");
        cmd.output().unwrap()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let out = self.try_run(program, args);
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let out = self.try_run(
            "pg_ctl",
            &["-D", path_str(&self.data), "-m", "immediate", "-w", "stop"],
        );
        if !out.status.success() {
            eprintln!(
                "could not stop the test PostgreSQL server in {}",
                self.data.display()
            );
        }
        // Give the postmaster's children a moment to go before the directory is removed.
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
