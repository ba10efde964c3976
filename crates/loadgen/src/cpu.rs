//! CPU accounting from `/proc`: how much CPU the servers (each node), PostgreSQL, the load
//! generator and everything else on the machine used during a run. On a shared machine the
//! "other" share says whether a neighbour disturbed the measurement.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// Linux reports `/proc` CPU times in USER_HZ ticks, which is 100 on every mainstream arch.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone)]
pub struct Snapshot {
    at: Instant,
    /// utime + stime of each server (node), in ticks.
    servers: Vec<Option<u64>>,
    /// CPU ticks of PostgreSQL: see [`postgres_ticks`].
    postgres: Option<u64>,
    /// utime + stime of this process.
    me: Option<u64>,
    /// Busy and total ticks of all CPUs together.
    busy: Option<u64>,
    /// The server's threads: id → (name, CPU ticks).
    server_threads: BTreeMap<u32, (String, u64)>,
}

/// Cores used on average during a run (1.0 = one core fully busy).
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    /// All servers (nodes) together.
    pub server_cores: Option<f64>,
    /// Each server, in `--server-pid` order.
    pub node_cores: Vec<Option<f64>>,
    /// The PostgreSQL server (`--pg-pid`) with all its processes.
    pub postgres_cores: Option<f64>,
    pub loadgen_cores: Option<f64>,
    pub machine_cores: Option<f64>,
    /// Machine minus servers, PostgreSQL and load generator.
    pub other_cores: Option<f64>,
    /// The (first) server's cores by thread name; threads that exited during the run are
    /// missing.
    pub server_threads: BTreeMap<String, f64>,
}

fn process_ticks(pid: &str) -> Option<u64> {
    stat_ticks(&format!("/proc/{pid}/stat")).map(|(_, t)| t)
}

/// The fields of a `/proc/.../stat` file: the command name, and the fields after it (`state`
/// first, so field N of proc(5) is at index N - 3).
fn stat_fields(path: &str) -> Option<(String, Vec<u64>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let name = text.get(text.find('(')? + 1..text.rfind(')')?)?.to_string();
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    // The state is a letter: 0 keeps the indexes.
    let fields = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Some((name, fields))
}

/// The command name and utime(14) + stime(15).
fn stat_ticks(path: &str) -> Option<(String, u64)> {
    let (name, f) = stat_fields(path)?;
    Some((name, f.get(11)? + f.get(12)?))
}

/// PostgreSQL's CPU ticks: the postmaster's own and its reaped children's (utime, stime,
/// cutime(16), cstime(17)), plus every live child's (backends, checkpointer, WAL writer,
/// autovacuum...). A backend that exits moves its time into the postmaster's `cutime`, so the
/// total only grows.
fn postgres_ticks(postmaster: u32) -> Option<u64> {
    let (_, f) = stat_fields(&format!("/proc/{postmaster}/stat"))?;
    let mut total = f.get(11)? + f.get(12)? + f.get(13)? + f.get(14)?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some((_, f)) = stat_fields(&format!("/proc/{pid}/stat")) {
            // ppid(4) is index 1.
            if f.get(1).copied() == Some(u64::from(postmaster)) {
                total += f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0);
            }
        }
    }
    Some(total)
}

fn thread_ticks(pid: u32) -> BTreeMap<u32, (String, u64)> {
    let mut threads = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return threads;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let path = entry.path().join("stat");
        if let Some(stat) = path.to_str().and_then(stat_ticks) {
            threads.insert(tid, stat);
        }
    }
    threads
}

fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    // counted in user.
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some(total.saturating_sub(idle))
}

pub fn snapshot(server_pids: &[u32], postgres_pid: Option<u32>) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        servers: server_pids
            .iter()
            .map(|p| process_ticks(&p.to_string()))
            .collect(),
        postgres: postgres_pid.and_then(postgres_ticks),
        me: process_ticks("self"),
        busy: machine_busy_ticks(),
        server_threads: server_pids
            .first()
            .map(|&p| thread_ticks(p))
            .unwrap_or_default(),
    }
}

pub fn usage(a: &Snapshot, b: &Snapshot) -> Usage {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let cores = |x: Option<u64>, y: Option<u64>| -> Option<f64> {
        Some(y?.saturating_sub(x?) as f64 / TICKS_PER_SEC / secs)
    };
    let node_cores: Vec<Option<f64>> = a
        .servers
        .iter()
        .zip(&b.servers)
        .map(|(x, y)| cores(*x, *y))
        .collect();
    let server = match node_cores.is_empty() {
        true => None,
        false => node_cores.iter().copied().sum::<Option<f64>>(),
    };
    let postgres = cores(a.postgres, b.postgres);
    let me = cores(a.me, b.me);
    let machine = cores(a.busy, b.busy);
    let other = match (machine, server, me) {
        (Some(m), Some(s), Some(l)) => Some((m - s - l - postgres.unwrap_or(0.0)).max(0.0)),
        _ => None,
    };
    // Per thread id, then summed by name: threads that start during the run count from zero,
    // threads that exit during it are missed.
    let mut server_threads: BTreeMap<String, f64> = BTreeMap::new();
    for (tid, (name, t)) in &b.server_threads {
        let before = a.server_threads.get(tid).map(|(_, t)| *t).unwrap_or(0);
        *server_threads.entry(name.clone()).or_insert(0.0) +=
            t.saturating_sub(before) as f64 / TICKS_PER_SEC / secs;
    }
    server_threads.retain(|_, c| *c >= 0.005);
    Usage {
        server_cores: server,
        node_cores,
        postgres_cores: postgres,
        loadgen_cores: me,
        machine_cores: machine,
        other_cores: other,
        server_threads,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn reads_own_and_machine_ticks() {
        assert!(super::process_ticks("self").is_some());
        assert!(super::machine_busy_ticks().is_some());
    }

    #[test]
    fn a_process_tree_counts_the_parent_and_its_children() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let tree = super::postgres_ticks(me).unwrap();
        assert!(tree >= super::process_ticks("self").unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(super::postgres_ticks(u32::MAX).is_none());
    }
}
