//! CPU accounting from `/proc`: how much CPU the server, the load generator and everything else
//! on the machine used during a run. On a shared machine the "other" share says whether a
//! neighbour disturbed the measurement.

use serde::Serialize;
use std::time::Instant;

/// Linux reports `/proc` CPU times in USER_HZ ticks, which is 100 on every mainstream arch.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    /// utime + stime of the server, in ticks.
    server: Option<u64>,
    /// utime + stime of this process.
    me: Option<u64>,
    /// Busy and total ticks of all CPUs together.
    busy: Option<u64>,
}

/// Cores used on average during a run (1.0 = one core fully busy).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub server_cores: Option<f64>,
    pub loadgen_cores: Option<f64>,
    pub machine_cores: Option<f64>,
    /// Machine minus server minus load generator.
    pub other_cores: Option<f64>,
}

fn process_ticks(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ... utime(14) stime(15) → indexes 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
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

pub fn snapshot(server_pid: Option<u32>) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        server: server_pid.and_then(|p| process_ticks(&p.to_string())),
        me: process_ticks("self"),
        busy: machine_busy_ticks(),
    }
}

pub fn usage(a: &Snapshot, b: &Snapshot) -> Usage {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let cores = |x: Option<u64>, y: Option<u64>| -> Option<f64> {
        Some(y?.saturating_sub(x?) as f64 / TICKS_PER_SEC / secs)
    };
    let server = cores(a.server, b.server);
    let me = cores(a.me, b.me);
    let machine = cores(a.busy, b.busy);
    let other = match (machine, server, me) {
        (Some(m), Some(s), Some(l)) => Some((m - s - l).max(0.0)),
        _ => None,
    };
    Usage {
        server_cores: server,
        loadgen_cores: me,
        machine_cores: machine,
        other_cores: other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_and_machine_ticks() {
        assert!(super::process_ticks("self").is_some());
        assert!(super::machine_busy_ticks().is_some());
    }
}
