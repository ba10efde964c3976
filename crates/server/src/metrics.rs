//! Prometheus metrics without a registry dependency: request counts by route and status class,
//! latency histograms by route, and verification outcomes. Hot-path updates are atomic adds
//! under a read lock.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct RouteStats {
    by_class: [AtomicU64; 5],
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    routes: RwLock<HashMap<(String, String), Arc<RouteStats>>>,
    verifications: RwLock<HashMap<(&'static str, &'static str), Arc<AtomicU64>>>,
}

fn get_or_insert<K: Eq + std::hash::Hash + Clone, V: Default>(
    map: &RwLock<HashMap<K, Arc<V>>>,
    key: &K,
) -> Option<Arc<V>> {
    if let Some(v) = map.read().ok()?.get(key) {
        return Some(v.clone());
    }
    let mut w = map.write().ok()?;
    Some(w.entry(key.clone()).or_default().clone())
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let Some(stats) = get_or_insert(&self.routes, &(method.to_string(), route.to_string()))
        else {
            return;
        };
        let class = ((status / 100).clamp(1, 5) - 1) as usize;
        stats.by_class[class].fetch_add(1, Ordering::Relaxed);
        stats.count.fetch_add(1, Ordering::Relaxed);
        stats
            .sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            stats.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `kind` is `verify`, `confirm` or `resync`; `outcome` a verdict label.
    pub fn observe_verification(&self, kind: &'static str, outcome: &'static str) {
        if let Some(c) = get_or_insert(&self.verifications, &(kind, outcome)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP twofold_http_requests_total HTTP requests by route and status class.\n",
        );
        out.push_str("# TYPE twofold_http_requests_total counter\n");
        let mut hist = String::new();
        hist.push_str("# HELP twofold_http_request_duration_seconds Request latency by route.\n");
        hist.push_str("# TYPE twofold_http_request_duration_seconds histogram\n");
        if let Ok(routes) = self.routes.read() {
            let mut keys: Vec<_> = routes.keys().collect();
            keys.sort();
            for key in keys {
                let Some(s) = routes.get(key) else { continue };
                let (method, route) = key;
                for (i, c) in s.by_class.iter().enumerate() {
                    let n = c.load(Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(
                            out,
                            "twofold_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{}xx\"}} {n}",
                            i + 1
                        );
                    }
                }
                let mut cumulative = 0;
                for (b, c) in BUCKETS.iter().zip(&s.buckets) {
                    cumulative += c.load(Ordering::Relaxed);
                    let _ = writeln!(
                        hist,
                        "twofold_http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{route}\",le=\"{b}\"}} {cumulative}"
                    );
                }
                let count = s.count.load(Ordering::Relaxed);
                let _ = writeln!(
                    hist,
                    "twofold_http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{route}\",le=\"+Inf\"}} {count}"
                );
                let _ = writeln!(
                    hist,
                    "twofold_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{route}\"}} {}",
                    s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
                );
                let _ = writeln!(
                    hist,
                    "twofold_http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\"}} {count}"
                );
            }
        }
        out.push_str(&hist);
        out.push_str("# HELP twofold_verifications_total Code checks by kind and outcome.\n");
        out.push_str("# TYPE twofold_verifications_total counter\n");
        if let Ok(v) = self.verifications.read() {
            let mut keys: Vec<_> = v.keys().collect();
            keys.sort();
            for key in keys {
                if let Some(c) = v.get(key) {
                    let _ = writeln!(
                        out,
                        "twofold_verifications_total{{kind=\"{}\",outcome=\"{}\"}} {}",
                        key.0,
                        key.1,
                        c.load(Ordering::Relaxed)
                    );
                }
            }
        }
        out
    }
}

/// Queue depth (read from the store, so it covers every node's queue), delivery results of
/// this node's worker, and code sends refused by cooldown or caps.
pub async fn render_messaging(out: &mut String, state: &crate::state::AppState) {
    out.push_str("# HELP twofold_code_sends_refused_total Code sends refused, by reason.\n");
    out.push_str("# TYPE twofold_code_sends_refused_total counter\n");
    for (reason, n) in state.core.refusals().snapshot() {
        let _ = writeln!(
            out,
            "twofold_code_sends_refused_total{{reason=\"{reason}\"}} {n}"
        );
    }
    match state.core.store().outbox_stats(None).await {
        Ok(stats) => {
            out.push_str("# HELP twofold_outbox_messages Messages in the outbox, by status.\n");
            out.push_str("# TYPE twofold_outbox_messages gauge\n");
            for (status, n) in [
                ("pending", stats.pending),
                ("sending", stats.sending),
                ("sent", stats.sent),
                ("failed", stats.failed),
            ] {
                let _ = writeln!(out, "twofold_outbox_messages{{status=\"{status}\"}} {n}");
            }
            let _ = writeln!(
                out,
                "# HELP twofold_outbox_oldest_unsent_timestamp_seconds When the oldest unsent message was queued (0: none).\n\
                 # TYPE twofold_outbox_oldest_unsent_timestamp_seconds gauge\n\
                 twofold_outbox_oldest_unsent_timestamp_seconds {}",
                stats.oldest_unsent_at.unwrap_or(0) / 1000
            );
        }
        Err(e) => tracing::warn!(error = %e, "metrics: cannot read outbox stats"),
    }
    if let Some(d) = &state.delivery {
        out.push_str(&d.render_prometheus());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.observe_request("POST", "/v1/x", 200, 0.0007);
        m.observe_request("POST", "/v1/x", 404, 0.003);
        m.observe_verification("verify", "replayed");
        let text = m.render();
        assert!(text.contains(
            "twofold_http_requests_total{method=\"POST\",route=\"/v1/x\",status=\"2xx\"} 1"
        ));
        assert!(text.contains("status=\"4xx\"} 1"));
        assert!(text.contains("le=\"0.001\"} 1"));
        assert!(text.contains("le=\"0.005\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(
            text.contains("twofold_verifications_total{kind=\"verify\",outcome=\"replayed\"} 1")
        );
    }
}
