//! The timed verify runs: C workers POSTing `/verify` for T seconds, either as fast as the
//! server answers (closed loop) or at a fixed rate (open loop, `--rate`).
//!
//! In the open loop, request `n` is due at `start + n / rate` whatever happened before, and
//! its latency is measured from that due time: when every worker is busy, the wait for a free
//! one counts too, so a slow server shows in the percentiles instead of silently lowering the
//! rate ("coordinated omission").

use crate::api::{error_chain, unix_secs, unix_secs_f64, Api, BenchUser};
use hdrhistogram::Histogram;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Valid,
    Wrong,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Wrong => "wrong",
        }
    }
}

/// Hands out users so that each is used at most once per TOTP step: the server refuses a second
/// success in the same step (replay protection), and the confirmation already used a step.
pub struct Scheduler {
    period: u64,
    state: Mutex<SchedState>,
}

struct SchedState {
    step: u64,
    cursor: usize,
    last_used: Vec<u64>,
    /// When the users ran out in the current step.
    exhausted_since: Option<Instant>,
    starved: Duration,
}

impl Scheduler {
    pub fn new(users: &[BenchUser]) -> Self {
        let period = users
            .first()
            .map(|u| u64::from(u.params.period.max(1)))
            .unwrap_or(30);
        Self {
            period,
            state: Mutex::new(SchedState {
                step: 0,
                cursor: 0,
                last_used: users.iter().map(|u| u.confirmed_step).collect(),
                exhausted_since: None,
                starved: Duration::ZERO,
            }),
        }
    }

    /// A user not yet used in the current step and that step, or the unix second at which the
    /// next step starts when every user has been used in this one.
    fn take(&self) -> Result<(usize, u64), u64> {
        let step = unix_secs() / self.period;
        let Ok(mut st) = self.state.lock() else {
            return Err((step + 1) * self.period);
        };
        if step > st.step {
            st.step = step;
            st.cursor = 0;
            if let Some(t) = st.exhausted_since.take() {
                st.starved += t.elapsed();
            }
        }
        while st.cursor < st.last_used.len() {
            let i = st.cursor;
            st.cursor += 1;
            if st.last_used[i] < step {
                st.last_used[i] = step;
                return Ok((i, step));
            }
        }
        st.exhausted_since.get_or_insert_with(Instant::now);
        Err((step + 1) * self.period)
    }

    /// Seconds to wait so that a run of `duration` seconds starts with every user available
    /// and stays within one TOTP step (when it is not longer than a step); `None` to start now.
    ///
    /// Staying within a step matters: users would become available again at the next step
    /// while the server still has them cached, and the run would measure cache hits.
    pub fn wait_before_run(&self, duration: f64) -> Option<f64> {
        let now = unix_secs_f64();
        let step = (now as u64) / self.period;
        let left = ((step + 1) * self.period) as f64 - now;
        let st = self.state.lock().ok()?;
        let pool_full = !st.last_used.iter().any(|&s| s >= step);
        let fits = duration + 0.5 <= left || duration > self.period as f64;
        if pool_full && fits {
            None
        } else {
            Some(left)
        }
    }

    pub fn period(&self) -> u64 {
        self.period
    }

    /// Wall time during which every user had been used in the current step; resets it.
    fn finish(&self) -> Duration {
        match self.state.lock() {
            Ok(mut st) => {
                if let Some(t) = st.exhausted_since.take() {
                    st.starved += t.elapsed();
                }
                std::mem::take(&mut st.starved)
            }
            Err(_) => Duration::ZERO,
        }
    }
}

/// Counters of one worker, merged at the end.
struct WorkerStats {
    hist: Histogram<u64>,
    verified: u64,
    not_verified: u64,
    /// Non-2xx answers by status code.
    http_errors: BTreeMap<u16, u64>,
    transport_errors: u64,
    first_errors: Vec<String>,
    starved: Duration,
    /// Open loop: requests that were due while no user was available (not sent).
    skipped: u64,
}

impl WorkerStats {
    fn new() -> Result<Self, String> {
        Ok(Self {
            // 1 µs .. 60 s at 3 significant digits.
            hist: Histogram::new_with_bounds(1, 60_000_000, 3)
                .map_err(|e| format!("cannot create histogram: {e}"))?,
            verified: 0,
            not_verified: 0,
            http_errors: BTreeMap::new(),
            transport_errors: 0,
            first_errors: Vec::new(),
            starved: Duration::ZERO,
            skipped: 0,
        })
    }

    fn note_error(&mut self, e: String) {
        if self.first_errors.len() < 3 {
            self.first_errors.push(e);
        }
    }
}

/// The result of one run.
#[derive(Debug, serde::Serialize)]
pub struct RunReport {
    pub mode: &'static str,
    pub concurrency: usize,
    /// Nodes the workers were spread over.
    pub nodes: usize,
    /// Open loop: the requests per second asked for (`None`: closed loop).
    pub rate_rps: Option<f64>,
    /// Open loop: requests that fell due while every user had been used in the current TOTP
    /// step, so none was sent (provision more users).
    pub skipped: u64,
    pub duration_s: f64,
    pub requests: u64,
    /// Answers `{"verified":true}`.
    pub verified: u64,
    /// Answers `{"verified":false}`.
    pub not_verified: u64,
    /// Failures that should not happen: `verified:false` in the valid run, `verified:true` in
    /// the wrong run.
    pub unexpected: u64,
    pub http_errors: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub errors: u64,
    /// Completed requests (any answer) per second of the whole run.
    pub throughput_rps: f64,
    /// Expected answers per second of the whole run.
    pub good_rps: f64,
    /// Expected answers per second while users were available (valid run only).
    pub good_rps_unstarved: f64,
    pub latency_us: Latency,
    /// Wall seconds during which every user had already been used in the current TOTP step.
    pub starved_s: f64,
    /// Sum over workers of seconds spent waiting for the next step.
    pub starved_worker_s: f64,
    pub peak_rss_kib: Option<u64>,
    /// Cores used on average by the server, the load generator and the rest of the machine.
    pub cpu: Option<crate::cpu::Usage>,
    /// Server CPU time per request, in microseconds (all `--server-pid`s together).
    pub server_cpu_us_per_request: Option<f64>,
    /// PostgreSQL's CPU time per request (postmaster and its children), in microseconds.
    pub postgres_cpu_us_per_request: Option<f64>,
    /// PostgreSQL transactions (commits + rollbacks in the database) per request.
    pub postgres_xacts_per_request: Option<f64>,
    /// PostgreSQL WAL bytes written per request.
    pub postgres_wal_bytes_per_request: Option<f64>,
    pub sample_errors: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

fn wrong_code(code: &str, digits: u8) -> String {
    let modulo = 10u64.pow(u32::from(digits));
    let n = code.parse::<u64>().unwrap_or(0);
    format!("{:0width$}", (n + 1) % modulo, width = usize::from(digits))
}

/// What one timed run does: which codes, with how many workers, for how long, spread over how
/// many nodes (the first `nodes` of `--url`; worker `w` sends to node `w % nodes`).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub kind: Kind,
    pub concurrency: usize,
    pub nodes: usize,
    pub duration: Duration,
    /// Requests per second in an open loop (`concurrency` is then the most in flight at once);
    /// `None`: each worker sends its next request when the last one is answered.
    pub rate: Option<f64>,
}

/// The due times of an open-loop run: request `n` at `start + n / rate`.
struct Pacer {
    start: Instant,
    interval: Duration,
    next: AtomicU64,
}

impl Pacer {
    fn new(start: Instant, rate: f64) -> Self {
        Self {
            start,
            interval: Duration::from_secs_f64(1.0 / rate.max(1e-3)),
            next: AtomicU64::new(0),
        }
    }

    /// When the next request not yet claimed by a worker is due.
    fn claim(&self) -> Instant {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.start + self.interval.mul_f64(n as f64)
    }
}

/// How often a run prints its progress: every second, or every 10 s in runs over a minute.
fn progress_every(duration: Duration) -> Duration {
    if duration > Duration::from_secs(60) {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(1)
    }
}

/// Runs `concurrency` workers for `duration`, printing progress every second.
pub async fn run(
    plan: Plan,
    api: &Api,
    users: Arc<Vec<BenchUser>>,
    scheduler: Option<Arc<Scheduler>>,
    round_robin: Arc<AtomicUsize>,
) -> Result<RunReport, String> {
    let Plan {
        kind,
        concurrency,
        nodes,
        duration,
        rate,
    } = plan;
    let nodes = nodes.max(1);
    let start = Instant::now();
    let pacer = rate.map(|r| Arc::new(Pacer::new(start, r)));
    let deadline = start + duration;
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let scheduler = match (kind, scheduler) {
        (Kind::Valid, Some(s)) => Some(s),
        (Kind::Valid, None) => Some(Arc::new(Scheduler::new(&users))),
        (Kind::Wrong, _) => None,
    };
    let mut handles = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let node = w % nodes;
        let (api, users, scheduler) = (api.clone(), users.clone(), scheduler.clone());
        let (done, errors, round_robin) = (done.clone(), errors.clone(), round_robin.clone());
        let pacer = pacer.clone();
        handles.push(tokio::spawn(async move {
            let mut st = WorkerStats::new()?;
            let json = HeaderValue::from_static("application/json");
            while Instant::now() < deadline {
                let due = match &pacer {
                    Some(p) => {
                        let due = p.claim();
                        if due >= deadline {
                            break;
                        }
                        tokio::time::sleep_until(due.into()).await;
                        Some(due)
                    }
                    None => None,
                };
                let (i, code) = match &scheduler {
                    Some(s) => match s.take() {
                        Ok((i, step)) => {
                            let u = &users[i];
                            (i, twofold_otp::totp_at_step(&u.secret, step, &u.params))
                        }
                        Err(_) if due.is_some() => {
                            // The open loop keeps its schedule: this request is not sent.
                            st.skipped += 1;
                            continue;
                        }
                        Err(next_step_at) => {
                            // Every user has succeeded in this step: wait for the next one.
                            let wait = (next_step_at as f64 - unix_secs_f64()).max(0.001);
                            let until =
                                (Instant::now() + Duration::from_secs_f64(wait)).min(deadline);
                            let t = Instant::now();
                            tokio::time::sleep_until(until.into()).await;
                            st.starved += t.elapsed();
                            continue;
                        }
                    },
                    None => {
                        let i = round_robin.fetch_add(1, Ordering::Relaxed) % users.len();
                        let u = &users[i];
                        let right = twofold_otp::totp_at_time(&u.secret, unix_secs(), &u.params);
                        (i, wrong_code(&right, u.params.digits))
                    }
                };
                let body = format!("{{\"code\":\"{code}\"}}");
                // Open loop: from when the request was due, waiting for a worker included.
                let t0 = due.unwrap_or_else(Instant::now);
                let sent = api
                    .client
                    .post(users[i].verify_urls[node].clone())
                    .header(AUTHORIZATION, api.auth.clone())
                    .header(CONTENT_TYPE, json.clone())
                    .body(body)
                    .send()
                    .await;
                let outcome = match sent {
                    Ok(resp) => {
                        let status = resp.status();
                        resp.bytes().await.map(|b| (status, b))
                    }
                    Err(e) => Err(e),
                };
                let micros = t0.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                st.hist.saturating_record(micros.max(1));
                done.fetch_add(1, Ordering::Relaxed);
                match outcome {
                    Ok((status, body)) if status.is_success() => {
                        if memchr_verified_true(&body) {
                            st.verified += 1;
                        } else {
                            st.not_verified += 1;
                        }
                    }
                    Ok((status, body)) => {
                        *st.http_errors.entry(status.as_u16()).or_default() += 1;
                        errors.fetch_add(1, Ordering::Relaxed);
                        st.note_error(format!(
                            "HTTP {status}: {}",
                            String::from_utf8_lossy(&body)
                                .chars()
                                .take(200)
                                .collect::<String>()
                        ));
                    }
                    Err(e) => {
                        st.transport_errors += 1;
                        errors.fetch_add(1, Ordering::Relaxed);
                        st.note_error(error_chain(&e));
                    }
                }
            }
            Ok::<WorkerStats, String>(st)
        }));
    }

    let progress = {
        let (done, errors) = (done.clone(), errors.clone());
        let name = kind.name();
        tokio::spawn(async move {
            let every = progress_every(duration);
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            let mut last = 0;
            loop {
                tick.tick().await;
                let d = done.load(Ordering::Relaxed);
                eprintln!(
                    "  {name}: {:>5.1}s  {d:>9} requests  {:>7.0} req/s in the last {}s  {} errors",
                    start.elapsed().as_secs_f64(),
                    (d - last) as f64 / every.as_secs_f64(),
                    every.as_secs(),
                    errors.load(Ordering::Relaxed)
                );
                last = d;
            }
        })
    };

    let mut total = WorkerStats::new()?;
    let mut task_errors = Vec::new();
    for h in handles {
        match h.await {
            Ok(Ok(s)) => {
                total
                    .hist
                    .add(&s.hist)
                    .map_err(|e| format!("cannot merge histograms: {e}"))?;
                total.verified += s.verified;
                total.not_verified += s.not_verified;
                for (k, v) in s.http_errors {
                    *total.http_errors.entry(k).or_default() += v;
                }
                total.transport_errors += s.transport_errors;
                total.starved += s.starved;
                total.skipped += s.skipped;
                for e in s.first_errors {
                    total.note_error(e);
                }
            }
            Ok(Err(e)) => task_errors.push(e),
            Err(e) => task_errors.push(format!("worker task failed: {e}")),
        }
    }
    progress.abort();
    if let Some(e) = task_errors.into_iter().next() {
        return Err(e);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let starved = scheduler
        .as_ref()
        .map(|s| s.finish().as_secs_f64().min(elapsed))
        .unwrap_or(0.0);
    let h = &total.hist;
    let http: u64 = total.http_errors.values().sum();
    let requests = h.len();
    let (good, unexpected) = match kind {
        Kind::Valid => (total.verified, total.not_verified),
        Kind::Wrong => (total.not_verified, total.verified),
    };
    Ok(RunReport {
        mode: kind.name(),
        concurrency,
        nodes,
        rate_rps: rate,
        skipped: total.skipped,
        duration_s: elapsed,
        requests,
        verified: total.verified,
        not_verified: total.not_verified,
        unexpected,
        http_errors: total.http_errors,
        transport_errors: total.transport_errors,
        errors: http + total.transport_errors,
        throughput_rps: requests as f64 / elapsed.max(1e-9),
        good_rps: good as f64 / elapsed.max(1e-9),
        good_rps_unstarved: good as f64 / (elapsed - starved).max(1e-9),
        latency_us: Latency {
            mean: h.mean(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        },
        starved_s: starved,
        starved_worker_s: total.starved.as_secs_f64(),
        peak_rss_kib: None,
        cpu: None,
        server_cpu_us_per_request: None,
        postgres_cpu_us_per_request: None,
        postgres_xacts_per_request: None,
        postgres_wal_bytes_per_request: None,
        sample_errors: total.first_errors,
    })
}

/// Sends one wrong code for every user to each of the first `nodes` nodes, so that every node
/// has every user's factors cached (for measuring the warm-cache path). Returns the time taken.
/// Each user gets one counted failure per node, which its next success resets.
pub async fn warm_up(
    api: &Api,
    users: Arc<Vec<BenchUser>>,
    concurrency: usize,
    nodes: usize,
) -> Result<Duration, String> {
    let nodes = nodes.max(1);
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(concurrency);
    for _ in 0..concurrency.min(users.len()).max(1) {
        let (api, users, next) = (api.clone(), users.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(u) = users.get(i / nodes) else {
                    return Ok::<(), String>(());
                };
                let right = twofold_otp::totp_at_time(&u.secret, unix_secs(), &u.params);
                let resp = api
                    .client
                    .post(u.verify_urls[i % nodes].clone())
                    .header(AUTHORIZATION, api.auth.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .body(format!(
                        "{{\"code\":\"{}\"}}",
                        wrong_code(&right, u.params.digits)
                    ))
                    .send()
                    .await
                    .map_err(|e| format!("warm-up request failed: {}", error_chain(&e)))?;
                let status = resp.status();
                let _ = resp.bytes().await;
                if !status.is_success() {
                    return Err(format!("warm-up request answered HTTP {status}"));
                }
            }
        }));
    }
    for h in handles {
        h.await.map_err(|e| format!("warm-up task failed: {e}"))??;
    }
    Ok(start.elapsed())
}

/// `{"verified":true}` without a JSON parser on the hot path (the server's answer is compact).
fn memchr_verified_true(body: &[u8]) -> bool {
    body.windows(15).any(|w| w == b"\"verified\":true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_code_differs_and_keeps_width() {
        assert_eq!(wrong_code("000123", 6), "000124");
        assert_eq!(wrong_code("999999", 6), "000000");
        assert_eq!(wrong_code("12345678", 8), "12345679");
    }

    #[test]
    fn the_open_loop_schedule_is_fixed_by_the_rate() {
        let start = Instant::now();
        let p = Pacer::new(start, 400.0);
        let due: Vec<Duration> = (0..5).map(|_| p.claim() - start).collect();
        assert_eq!(due[0], Duration::ZERO);
        for w in due.windows(2) {
            assert!(
                (w[1] - w[0]).as_nanos().abs_diff(2_500_000) < 1_000,
                "{w:?}"
            );
        }
        assert_eq!(
            progress_every(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
        assert_eq!(
            progress_every(Duration::from_secs(600)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn verified_true_is_found() {
        assert!(memchr_verified_true(br#"{"verified":true}"#));
        assert!(!memchr_verified_true(br#"{"verified":false}"#));
    }
}
