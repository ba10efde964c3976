//! Samples the server's resident memory from `/proc/PID/status` every 100 ms.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// `VmRSS` and `VmHWM` (peak RSS over the process's life), in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub fn read(pid: u32) -> Result<Mem, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!("cannot read {path}: {e}; is --server-pid the id of the running server?")
    })?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss_kib), Some(hwm_kib)) => Ok(Mem { rss_kib, hwm_kib }),
        _ => Err(format!(
            "{path} has no VmRSS/VmHWM lines; is the process a zombie?"
        )),
    }
}

/// A background thread that keeps the largest `VmRSS` seen since the last [`Sampler::reset`].
pub struct Sampler {
    pid: u32,
    stop: Arc<AtomicBool>,
    phase_peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    pub fn start(pid: u32) -> Result<Self, String> {
        read(pid)?;
        let stop = Arc::new(AtomicBool::new(false));
        let phase_peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), phase_peak.clone());
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Ok(m) = read(pid) {
                        p.fetch_max(m.rss_kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .map_err(|e| format!("cannot start the RSS sampler thread: {e}"))?;
        Ok(Self {
            pid,
            stop,
            phase_peak,
            thread: Some(thread),
        })
    }

    /// Starts a new phase: the peak restarts from the current RSS.
    pub fn reset(&self) {
        let now = read(self.pid).map(|m| m.rss_kib).unwrap_or(0);
        self.phase_peak.store(now, Ordering::Relaxed);
    }

    /// Largest RSS sampled since the last reset, including one last sample now.
    pub fn phase_peak(&self) -> u64 {
        if let Ok(m) = read(self.pid) {
            self.phase_peak.fetch_max(m.rss_kib, Ordering::Relaxed);
        }
        self.phase_peak.load(Ordering::Relaxed)
    }

    pub fn now(&self) -> Option<Mem> {
        read(self.pid).ok()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_status() {
        let m = super::read(std::process::id());
        assert!(m.is_ok_and(|m| m.rss_kib > 0 && m.hwm_kib >= m.rss_kib));
    }
}
