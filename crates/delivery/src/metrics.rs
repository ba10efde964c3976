//! Delivery counters, rendered in the Prometheus text exposition format (version 0.0.4).
//!
//! Counters only count what this process did since it started; queue depth and age come from
//! the store ([`twofold_core::messaging::OutboxStats`]) and are the server's to export.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use twofold_core::messaging::Channel;

/// What became of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// A transient failure; another attempt is scheduled.
    Retried,
    /// Given up: permanent failure, too many attempts, or unreadable parameters.
    Failed,
}

const CHANNELS: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Webhook];

fn index(c: Channel) -> usize {
    match c {
        Channel::Email => 0,
        Channel::Sms => 1,
        Channel::Webhook => 2,
    }
}

/// Counters of delivery outcomes, by channel. Shared between the worker and the metrics
/// endpoint.
#[derive(Debug, Default)]
pub struct DeliveryMetrics {
    sent: [AtomicU64; 3],
    retried: [AtomicU64; 3],
    failed: [AtomicU64; 3],
}

impl DeliveryMetrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&self, channel: Channel, outcome: Outcome) {
        let counters = match outcome {
            Outcome::Sent => &self.sent,
            Outcome::Retried => &self.retried,
            Outcome::Failed => &self.failed,
        };
        counters[index(channel)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, channel: Channel, outcome: Outcome) -> u64 {
        let counters = match outcome {
            Outcome::Sent => &self.sent,
            Outcome::Retried => &self.retried,
            Outcome::Failed => &self.failed,
        };
        counters[index(channel)].load(Ordering::Relaxed)
    }

    /// `# HELP`, `# TYPE` and one line per channel for each counter, newline-terminated.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        for (name, help, outcome) in [
            (
                "twofold_messages_sent_total",
                "Messages handed to the mail server or SMS provider.",
                Outcome::Sent,
            ),
            (
                "twofold_messages_retried_total",
                "Delivery attempts that failed transiently and were rescheduled.",
                Outcome::Retried,
            ),
            (
                "twofold_messages_failed_total",
                "Messages given up after a permanent failure or too many attempts.",
                Outcome::Failed,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for c in CHANNELS {
                let _ = writeln!(
                    out,
                    "{name}{{channel=\"{}\"}} {}",
                    c.as_str(),
                    self.get(c, outcome)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_for_every_channel() {
        let m = DeliveryMetrics::new();
        m.record(Channel::Email, Outcome::Sent);
        m.record(Channel::Email, Outcome::Sent);
        m.record(Channel::Sms, Outcome::Retried);
        m.record(Channel::Sms, Outcome::Failed);
        let text = m.render_prometheus();
        assert!(text.contains("twofold_messages_sent_total{channel=\"email\"} 2\n"));
        assert!(text.contains("twofold_messages_sent_total{channel=\"sms\"} 0\n"));
        assert!(text.contains("twofold_messages_retried_total{channel=\"sms\"} 1\n"));
        assert!(text.contains("twofold_messages_failed_total{channel=\"sms\"} 1\n"));
        assert!(text.contains("# TYPE twofold_messages_failed_total counter\n"));
        assert!(text.contains("twofold_messages_sent_total{channel=\"webhook\"} 0\n"));
        // Three counters, each with HELP, TYPE and one line per channel (email, sms, webhook).
        assert_eq!(text.lines().count(), 15);
    }
}
