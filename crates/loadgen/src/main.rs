//! `twofold-loadgen`: provisions users with TOTP factors through the REST API of a running
//! Twofold server, then hammers `POST /v1/tenants/{t}/users/{u}/verify` with valid and/or
//! wrong codes and reports throughput, latency percentiles and (optionally) the server's RSS.
//!
//! ```text
//! twofold-loadgen --url http://127.0.0.1:8080 --api-key tfk_... --users 200000 \
//!     --concurrency 64 --duration 10 --mode both --server-pid 1234 --json out.json
//! ```
//!
//! Several nodes on one PostgreSQL database (`scripts/bench-multinode.sh`): `--url` lists them,
//! `--nodes 1,2,3` runs with the first 1, 2 and 3 of them, `--server-pid` names each node's
//! process and `--pg-pid`/`--pg-url` PostgreSQL's, for CPU time and transactions per request.
//!
//! Open loop (`scripts/soak.sh`): `--rate 2000` sends 2,000 requests per second on a fixed
//! schedule, with at most `--concurrency` in flight, and measures each latency from when the
//! request was due.
//!
//! Replay protection lets each (user, TOTP step) succeed once, so the valid run hands out each
//! user at most once per 30 s step; with too few users the workers wait for the next step
//! ("starved") and the report says how many users would have been enough.

mod api;
mod cpu;
mod pg;
mod rss;
mod run;

use api::{Api, BenchUser};
use clap::{Parser, ValueEnum};
use run::{Kind, Plan, RunReport, Scheduler};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Only current, valid codes (each accepted once).
    Valid,
    /// Only wrong codes (throttling kicks in after 5 failures per user; still answers 200).
    Wrong,
    /// The valid run, then the wrong run (in this order: wrong codes throttle the users).
    Both,
}

#[derive(Debug, Parser)]
#[command(
    name = "twofold-loadgen",
    version,
    about = "Load generator for Twofold's verify endpoint"
)]
struct Args {
    /// Base URL of the server; several (comma-separated) are nodes sharing one database, over
    /// which the workers are spread (worker w sends to node w mod N).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    url: Vec<String>,
    /// Run with the first N nodes of --url, for each N of this list (e.g. 1,2,3); default: all.
    #[arg(long, value_delimiter = ',')]
    nodes: Option<Vec<usize>>,
    /// An operator API key (`tfk_...`); used once to create a fresh `bench-<random>` tenant.
    #[arg(long, env = "TWOFOLD_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Users to provision. A valid-code run (aligned to a TOTP step) needs about
    /// throughput x duration of them, else it waits for the next step ("starved").
    #[arg(long, default_value_t = 2000)]
    users: usize,
    /// Concurrent requests (workers) during the timed runs; a list such as 16,64,256 runs each
    /// level on the same users (all valid-code runs first, then all wrong-code runs).
    #[arg(long, value_delimiter = ',', default_value = "64")]
    concurrency: Vec<usize>,
    /// Seconds per timed run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Open loop: send this many requests per second on a fixed schedule (at most
    /// --concurrency in flight; latency counted from when each was due) instead of each worker
    /// sending its next request when the last is answered. A valid-code run needs about
    /// rate x 30 s users.
    #[arg(long, value_name = "N")]
    rate: Option<f64>,
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// The server's process: its CPU time per request is reported, and its RSS sampled
    /// (/proc/PID/status) every 100 ms. With several --url, one PID per node in the same order
    /// (comma-separated); RSS is sampled for the first.
    #[arg(long, value_name = "PID", value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// PostgreSQL's postmaster: the CPU time of it and all its processes per request.
    #[arg(long, value_name = "PID")]
    pg_pid: Option<u32>,
    /// The servers' PostgreSQL database (plain TCP): transactions and WAL bytes per request,
    /// from pg_stat_database and the WAL position (each run then ends with an 11 s pause for
    /// the statistics to settle).
    #[arg(long, value_name = "postgres://URL")]
    pg_url: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Concurrent workers while provisioning users [default: min(concurrency, 32)].
    #[arg(long)]
    provision_concurrency: Option<usize>,
    /// TOTP period of the provisioned factors, 15-300 s. A valid-code run needs about
    /// throughput x period users (one use per user per step): a shorter period needs fewer.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(15..=300))]
    totp_period: u32,
    /// Runtime threads of the load generator [default: number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
    /// Start valid-code runs at once instead of waiting (up to one TOTP period) for a step in
    /// which no user has been used yet.
    #[arg(long)]
    no_align: bool,
    /// Seconds between the end of one run and the start of the next, so that the server's
    /// factor cache (30 s by default) has expired and every user's first verification in a run
    /// loads it from the database, as it does for real users who log in now and then.
    /// 0 disables.
    #[arg(long, default_value_t = 31)]
    cool_down: u64,
    /// Before each valid-code run (or the first wrong-code run), send one wrong code per user
    /// so that the server has every user cached: measures the warm-cache path. Use with
    /// `--cool-down 0` and a server cache TTL longer than warm-up + one TOTP step + the run
    /// (e.g. TWOFOLD_CACHE_TTL_MS=120000).
    #[arg(long)]
    warm_up: bool,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    url: Vec<String>,
    tenant: String,
    users: usize,
    concurrency: Vec<usize>,
    duration_s: u64,
    loadgen_threads: usize,
    cpus: usize,
    provision_s: f64,
    provision_users_per_s: f64,
    server_idle_rss_kib: Option<u64>,
    server_rss_after_provision_kib: Option<u64>,
    server_peak_rss_kib: Option<u64>,
    runs: Vec<RunReport>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = validate(&args) {
        eprintln!("twofold-loadgen: {e}");
        return ExitCode::from(2);
    }
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let threads = args.threads.unwrap_or(cpus).max(1);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("twofold-loadgen: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(real_main(args, threads, cpus)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("twofold-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn validate(a: &Args) -> Result<(), String> {
    if a.users == 0 {
        return Err("--users must be at least 1".into());
    }
    if a.concurrency.is_empty() || a.concurrency.iter().any(|&c| c == 0 || c > 10_000) {
        return Err("--concurrency must be between 1 and 10000 (or a list like 16,64,256)".into());
    }
    if a.duration == 0 {
        return Err("--duration must be at least 1 second".into());
    }
    if a.rate
        .is_some_and(|r| !(r.is_finite() && r > 0.0 && r <= 1_000_000.0))
    {
        return Err(
            "--rate must be a number of requests per second above 0, at most 1000000".into(),
        );
    }
    if let Some(nodes) = &a.nodes {
        if nodes.iter().any(|&n| n == 0 || n > a.url.len()) {
            return Err(format!(
                "--nodes must list numbers between 1 and the {} nodes given with --url",
                a.url.len()
            ));
        }
    }
    if a.server_pid.len() > a.url.len() {
        return Err("--server-pid: at most one PID per --url".into());
    }
    if !a.api_key.starts_with("tfk_") {
        return Err(
            "--api-key should be an operator key like tfk_...; create one with `twofold apikey create --operator`"
                .into(),
        );
    }
    Ok(())
}

async fn real_main(args: Args, threads: usize, cpus: usize) -> Result<(), String> {
    let bases = args
        .url
        .iter()
        .map(|u| {
            reqwest::Url::parse(u)
                .map_err(|e| format!("--url {u}: {e}; pass e.g. http://127.0.0.1:8080"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let base = bases
        .first()
        .cloned()
        .ok_or("--url: give at least one base URL")?;
    let max_concurrency = args.concurrency.iter().copied().max().unwrap_or(64);
    let client = api::client(max_concurrency.max(64))?;

    let sampler = match args.server_pid.first() {
        Some(&pid) => Some(rss::Sampler::start(pid)?),
        None => None,
    };
    let pg_stats = match &args.pg_url {
        Some(url) => Some(pg::Stats::connect(url).await?),
        None => None,
    };
    let idle = sampler.as_ref().and_then(|s| s.now());
    if let Some(m) = idle {
        eprintln!("server RSS at start: {:.1} MiB", mib(m.rss_kib));
    }

    let operator = Api {
        client: client.clone(),
        base: base.clone(),
        auth: api::bearer(&args.api_key)?,
    };
    let (slug, token) = api::create_tenant(&operator)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!("created tenant {slug}");
    let tenant = Api {
        client,
        base,
        auth: api::bearer(&token)?,
    };

    let workers = args
        .provision_concurrency
        .unwrap_or(max_concurrency.min(32))
        .max(1);
    eprintln!(
        "provisioning {} users (create, enrol TOTP, confirm) with {workers} workers...",
        args.users
    );
    let (users, took) = api::provision(
        &tenant,
        &bases,
        &slug,
        args.users,
        workers,
        args.totp_period,
    )
    .await?;
    let provision_s = took.as_secs_f64();
    eprintln!(
        "provisioned {} users in {provision_s:.1}s ({:.0} users/s, {:.0} requests/s)",
        users.len(),
        users.len() as f64 / provision_s.max(1e-9),
        3.0 * users.len() as f64 / provision_s.max(1e-9)
    );
    let after_provision = sampler.as_ref().and_then(|s| s.now());

    let users: Arc<Vec<BenchUser>> = Arc::new(users);
    let scheduler = Arc::new(Scheduler::new(&users));
    let kinds: &[Kind] = match args.mode {
        Mode::Valid => &[Kind::Valid],
        Mode::Wrong => &[Kind::Wrong],
        Mode::Both => &[Kind::Valid, Kind::Wrong],
    };
    let mut runs = Vec::new();
    // Provisioning leaves the last users cached: the first run cools down too.
    let mut last_run_end = Some(std::time::Instant::now());
    let node_counts = args.nodes.clone().unwrap_or(vec![bases.len()]);
    let mut plans = Vec::new();
    for &kind in kinds {
        for &nodes in &node_counts {
            for &concurrency in &args.concurrency {
                plans.push(Plan {
                    kind,
                    concurrency,
                    nodes,
                    duration: Duration::from_secs(args.duration),
                    rate: args.rate,
                });
            }
        }
    }
    // Wrong-code runs continue the round robin where the previous one stopped.
    let round_robin = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let duration = Duration::from_secs(args.duration);
    for plan in plans {
        let Plan {
            kind,
            concurrency,
            nodes,
            ..
        } = plan;
        if let Some(end) = last_run_end {
            let ready = end + Duration::from_secs(args.cool_down);
            let now = std::time::Instant::now();
            if ready > now {
                eprintln!(
                    "cooling down {:.0}s so the server's cached factors expire (--cool-down)",
                    (ready - now).as_secs_f64()
                );
                tokio::time::sleep_until(ready.into()).await;
            }
        }
        // In --mode both the wrong-code runs follow warm valid-code runs: no second warm-up
        // (a cache hit does not extend an entry's TTL, so it would not help anyway).
        let first_wrong = kind == Kind::Wrong && args.mode == Mode::Wrong && runs.is_empty();
        if args.warm_up && (kind == Kind::Valid || first_wrong) {
            eprintln!(
                "warm-up: one wrong code for each of {} users...",
                users.len()
            );
            let took = run::warm_up(&tenant, users.clone(), concurrency, nodes).await?;
            eprintln!(
                "warm-up took {:.1}s ({:.0} req/s)",
                took.as_secs_f64(),
                users.len() as f64 / took.as_secs_f64().max(1e-9)
            );
        }
        if kind == Kind::Valid && !args.no_align {
            if let Some(wait) = scheduler.wait_before_run(duration.as_secs_f64()) {
                eprintln!(
                    "waiting {wait:.0}s for the next TOTP step, so that every user is available \
                     and the run stays within one step (--no-align starts at once)"
                );
                tokio::time::sleep(Duration::from_secs_f64(wait + 0.05)).await;
            }
        }
        let pace = args
            .rate
            .map(|r| format!(" at {r:.0} requests/s (open loop)"))
            .unwrap_or_default();
        eprintln!(
            "{} codes: {concurrency} workers on {nodes} node(s) for {}s{pace}...",
            kind.name(),
            args.duration
        );
        if let Some(s) = &sampler {
            s.reset();
        }
        let pg_before = match &pg_stats {
            Some(s) => Some(s.read().await?),
            None => None,
        };
        let before = cpu::snapshot(&args.server_pid, args.pg_pid);
        let mut r = run::run(
            plan,
            &tenant,
            users.clone(),
            Some(scheduler.clone()),
            round_robin.clone(),
        )
        .await?;
        let usage = cpu::usage(&before, &cpu::snapshot(&args.server_pid, args.pg_pid));
        last_run_end = Some(std::time::Instant::now());
        let per_request =
            |cores: Option<f64>| cores.map(|c| c * r.duration_s * 1e6 / (r.requests.max(1) as f64));
        r.server_cpu_us_per_request = per_request(usage.server_cores);
        r.postgres_cpu_us_per_request = per_request(usage.postgres_cores);
        if let (Some(stats), Some(a)) = (&pg_stats, pg_before) {
            eprintln!(
                "waiting {}s for PostgreSQL's statistics to settle",
                pg::STATS_SETTLE.as_secs()
            );
            tokio::time::sleep(pg::STATS_SETTLE).await;
            let b = stats.read().await?;
            let n = r.requests.max(1) as f64;
            r.postgres_xacts_per_request = Some((b.xacts - a.xacts) as f64 / n);
            r.postgres_wal_bytes_per_request = Some((b.wal_bytes - a.wal_bytes) as f64 / n);
        }
        r.cpu = Some(usage);
        r.peak_rss_kib = sampler.as_ref().map(|s| s.phase_peak());
        print_run(&r, users.len(), args.duration.min(scheduler.period()));
        runs.push(r);
    }

    let end = sampler.as_ref().and_then(|s| s.now());
    let report = Report {
        url: args.url.clone(),
        tenant: slug,
        users: users.len(),
        concurrency: args.concurrency.clone(),
        duration_s: args.duration,
        loadgen_threads: threads,
        cpus,
        provision_s,
        provision_users_per_s: users.len() as f64 / provision_s.max(1e-9),
        server_idle_rss_kib: idle.map(|m| m.rss_kib),
        server_rss_after_provision_kib: after_provision.map(|m| m.rss_kib),
        server_peak_rss_kib: end.map(|m| m.hwm_kib),
        runs,
    };
    print_summary(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| format!("cannot encode the JSON report: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    let failed: u64 = report.runs.iter().map(|r| r.errors + r.unexpected).sum();
    if failed > 0 {
        return Err(format!(
            "{failed} requests failed or were answered unexpectedly; see the samples above and the server log"
        ));
    }
    Ok(())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn print_run(r: &RunReport, users: usize, window_s: u64) {
    let l = &r.latency_us;
    println!();
    println!(
        "== {} codes: {} workers on {} node(s), {:.1}s",
        r.mode, r.concurrency, r.nodes, r.duration_s
    );
    println!(
        "   requests {}  ({:.0} req/s)   verified:true {}   verified:false {}",
        r.requests, r.throughput_rps, r.verified, r.not_verified
    );
    if let Some(rate) = r.rate_rps {
        println!(
            "   open loop at {rate:.0} req/s: {} due requests not sent for lack of an unused user{}",
            r.skipped,
            if r.skipped > 0 {
                " (provision more --users: rate x 30 s + 20%)"
            } else {
                ""
            }
        );
    }
    println!(
        "   latency  p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (mean {:.2} ms)",
        l.p50 as f64 / 1e3,
        l.p99 as f64 / 1e3,
        l.p999 as f64 / 1e3,
        l.max as f64 / 1e3,
        l.mean / 1e3
    );
    let unexpected = match r.mode {
        "valid" => "verified:false (should be 0)",
        _ => "verified:true (should be 0)",
    };
    println!(
        "   errors   {} (HTTP {:?}, transport {})   unexpected {unexpected}: {}",
        r.errors, r.http_errors, r.transport_errors, r.unexpected
    );
    if let Some(kib) = r.peak_rss_kib {
        println!("   server peak RSS during run {:.1} MiB", mib(kib));
    }
    if let Some(u) = &r.cpu {
        let f = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "?".into());
        println!(
            "   CPU cores used: server {}, load generator {}, other processes {} (machine {}){}",
            f(u.server_cores),
            f(u.loadgen_cores),
            f(u.other_cores),
            f(u.machine_cores),
            r.server_cpu_us_per_request
                .map(|us| format!("; server CPU per request {us:.0} us"))
                .unwrap_or_default()
        );
        if u.node_cores.len() > 1 {
            let parts: Vec<String> = u.node_cores.iter().map(|&c| f(c)).collect();
            println!("   server cores by node: {}", parts.join(", "));
        }
        if let Some(pg) = u.postgres_cores {
            println!(
                "   PostgreSQL: {pg:.2} cores, CPU per request {}, transactions per request {}, \
                 WAL per request {}",
                r.postgres_cpu_us_per_request
                    .map(|us| format!("{us:.0} us"))
                    .unwrap_or_else(|| "?".into()),
                r.postgres_xacts_per_request
                    .map(|x| format!("{x:.2}"))
                    .unwrap_or_else(|| "?".into()),
                r.postgres_wal_bytes_per_request
                    .map(|b| format!("{b:.0} B"))
                    .unwrap_or_else(|| "?".into()),
            );
        }
        if !u.server_threads.is_empty() {
            let parts: Vec<String> = u
                .server_threads
                .iter()
                .map(|(name, c)| format!("{name} {c:.2}"))
                .collect();
            println!("   server cores by thread: {}", parts.join(", "));
        }
        if u.other_cores.is_some_and(|o| o > 0.25) {
            println!(
                "   warning: other processes used {} cores during this run; the numbers are disturbed, rerun on a quiet machine",
                f(u.other_cores)
            );
        }
    }
    for e in &r.sample_errors {
        println!("   sample error: {e}");
    }
    if r.starved_s > 0.05 {
        if r.verified == 0 {
            println!(
                "   starved {:.1}s: all {users} users were already used (or confirmed) in this \
                 TOTP step. Hint: drop --no-align, or provision more --users.",
                r.starved_s
            );
        } else {
            let want = (r.good_rps_unstarved * window_s as f64 * 1.2).ceil() as u64;
            println!(
                "   starved {:.1}s: all {users} users had been used in the current TOTP step; \
                 {:.0} verifications/s while users were available. \
                 Hint: pass --users {want} (throughput x {window_s} s + 20%) to measure without waiting.",
                r.starved_s, r.good_rps_unstarved
            );
        }
    }
}

fn print_summary(rep: &Report) {
    println!();
    println!(
        "summary: tenant {}, {} users, {}s per run, loadgen {} threads on {} CPUs",
        rep.tenant, rep.users, rep.duration_s, rep.loadgen_threads, rep.cpus
    );
    println!(
        "{:<6} {:>5} {:>5} {:>9} {:>8} {:>8} {:>7} {:>7} {:>8} {:>8} {:>7} {:>8} {:>9} {:>8} {:>7} {:>6} {:>6}",
        "mode",
        "nodes",
        "conc",
        "requests",
        "req/s",
        "ok/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors",
        "starved",
        "peak MiB",
        "srv CPU",
        "pg CPU",
        "xact",
        "other"
    );
    for r in &rep.runs {
        let l = &r.latency_us;
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "{:<6} {:>5} {:>5} {:>9} {:>8.0} {:>8.0} {:>7.2} {:>7.2} {:>8.2} {:>8.2} {:>7} {:>7.1}s {:>9} {:>8} {:>7} {:>6} {:>6}",
            r.mode,
            r.nodes,
            r.concurrency,
            r.requests,
            r.throughput_rps,
            r.good_rps,
            l.p50 as f64 / 1e3,
            l.p99 as f64 / 1e3,
            l.p999 as f64 / 1e3,
            l.max as f64 / 1e3,
            r.errors + r.unexpected,
            r.starved_s,
            r.peak_rss_kib
                .map(|k| format!("{:.1}", mib(k)))
                .unwrap_or_else(|| "-".into()),
            or_dash(r.server_cpu_us_per_request.map(|us| format!("{us:.0}us"))),
            or_dash(r.postgres_cpu_us_per_request.map(|us| format!("{us:.0}us"))),
            or_dash(r.postgres_xacts_per_request.map(|x| format!("{x:.2}"))),
            r.cpu
                .as_ref()
                .and_then(|u| u.other_cores)
                .map(|c| format!("{c:.2}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    println!(
        "(srv CPU = CPU time of all server nodes per request; pg CPU = PostgreSQL's; xact = \
         PostgreSQL transactions per request; other = cores used by other processes)"
    );
    if let (Some(idle), Some(peak)) = (rep.server_idle_rss_kib, rep.server_peak_rss_kib) {
        println!(
            "server RSS: {:.1} MiB at start, {:.1} MiB after provisioning, {:.1} MiB peak (VmHWM)",
            mib(idle),
            mib(rep.server_rss_after_provision_kib.unwrap_or(0)),
            mib(peak)
        );
    }
}
