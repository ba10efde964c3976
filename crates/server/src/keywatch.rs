//! The node's side of master key rotation (the procedure is in `twofold_core::keys`).
//!
//! Every `key_heartbeat_ms` each `twofold serve` process:
//! 1. reads the cluster's key state from the database;
//! 2. re-reads its key files if a rotation waits for a key it lacks, or if it got `SIGHUP`;
//! 3. seals under the cluster's active key from then on, if it holds it;
//! 4. reports the key ids it holds and the one it seals under (`node_keys`).
//!
//! `twofold key rotate` reads those reports: it makes a key active only once every live node
//! holds it, and re-seals only once every live node seals under it. Heartbeats use the wall
//! clock, not the injected one: they are compared across processes and with the operator's
//! command, never with the rules time-travelling tests exercise.

use crate::config::Config;
use crate::keys;
use std::sync::Arc;
use std::time::Duration;
use twofold_core::keys::{KeyState, NodeKeys};
use twofold_core::ports::{Clock, SystemClock};
use twofold_core::Twofold;
use twofold_crypto::Keyring;

/// Rows of nodes not seen for this long are deleted (by the hourly pruning).
pub const FORGET_NODES_AFTER_MS: i64 = 86_400_000;

pub struct KeyWatch {
    core: Arc<Twofold>,
    /// To re-read the key files (keys from the environment cannot change in a running
    /// process; those come with a restart).
    config: Config,
    node_id: String,
    started_at: i64,
    every: Duration,
    /// The pending and active keys already warned about (lacking them), so each problem is
    /// logged once, not every beat.
    warned_pending: Option<String>,
    warned_active: Option<String>,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

/// `host/listen-address/pid`: unique among running processes, and says where to look.
fn node_id(listen: std::net::SocketAddr) -> String {
    let host = twofold_delivery::worker::host_name();
    format!("{host}/{listen}/{}", std::process::id())
}

impl KeyWatch {
    /// Takes over `SIGHUP` at once, so a signal sent as soon as the node logs that it listens
    /// reloads the keyring instead of ending the process (the default action).
    pub fn new(core: Arc<Twofold>, config: &Config, listen: std::net::SocketAddr) -> Self {
        #[cfg(unix)]
        let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; key reloads wait for rotations");
                None
            }
        };
        Self {
            core,
            config: config.clone(),
            node_id: node_id(listen),
            started_at: SystemClock.now_ms(),
            every: Duration::from_millis(config.key_heartbeat_ms.max(100)),
            warned_pending: None,
            warned_active: None,
            #[cfg(unix)]
            hangup,
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Beats until the task is aborted: every `every`, and at once on `SIGHUP`.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reload = tokio::select! {
                _ = tick.tick() => false,
                _ = hangup(&mut self) => true,
            };
            if reload {
                tracing::info!("SIGHUP: reloading the master keyring");
            }
            self.beat(reload).await;
        }
    }

    /// One heartbeat; failures are logged and the next beat tries again.
    pub async fn beat(&mut self, reload: bool) {
        let store = self.core.store().clone();
        let state = match store.key_state().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the key state; will retry");
                return;
            }
        };
        let ring = self.core.keyring().current();
        let lacks_pending = state.pending.as_ref().filter(|p| !ring.holds(p)).cloned();
        if reload || lacks_pending.is_some() {
            self.reload(&state, &ring, reload);
        }
        self.follow_active(&state);
        if let Some(p) = lacks_pending.filter(|p| !self.core.keyring().current().holds(p)) {
            if self.warned_pending.as_ref() != Some(&p) {
                tracing::warn!(
                    key_id = %p,
                    dir = %keys::keys_dir(&self.config).display(),
                    "a key rotation waits for this node to hold master key {p}: copy {p}.key \
                     into the keys directory (it is re-read every heartbeat)"
                );
                self.warned_pending = Some(p);
            }
        }
        let ring = self.core.keyring().current();
        let report = NodeKeys {
            node_id: self.node_id.clone(),
            key_ids: ring.ids(),
            sealing_key_id: ring.active_id().to_string(),
            started_at: self.started_at,
            seen_at: SystemClock.now_ms(),
        };
        if let Err(e) = store.report_node_keys(report).await {
            tracing::warn!(error = %e, "cannot report this node's keys; will retry");
        }
    }

    /// Re-reads the key files and puts the result in place, still sealing under the key the
    /// cluster chose (or the one in use). A keyring that lacks it is refused whole: keeping
    /// the old one loses nothing, sealing under a missing key would fail every request.
    fn reload(&self, state: &KeyState, ring: &Keyring, asked: bool) {
        let sealing = state
            .active
            .clone()
            .unwrap_or_else(|| ring.active_id().to_string());
        let loaded = keys::master_keys(&self.config, false)
            .and_then(|k| k.keyring(Some(&sealing), &keys::keys_dir(&self.config)));
        match loaded {
            Ok(new) if new.ids() == ring.ids() && new.active_id() == ring.active_id() => {
                if asked {
                    tracing::info!(keys = ?new.ids(), "master keyring unchanged");
                }
            }
            Ok(new) => {
                tracing::info!(
                    keys = ?new.ids(),
                    before = ?ring.ids(),
                    sealing = %new.active_id(),
                    "master keyring reloaded"
                );
                self.core.keyring().replace(new);
            }
            Err(e) => tracing::error!(
                error = %e,
                "master keyring not reloaded; keeping the keys loaded before"
            ),
        }
    }

    /// Seals under the cluster's active key, once this node holds it.
    fn follow_active(&mut self, state: &KeyState) {
        let Some(active) = &state.active else {
            return;
        };
        let ring = self.core.keyring().current();
        if ring.active_id() == active {
            return;
        }
        let mut moved = (*ring).clone();
        match moved.set_active(active) {
            Ok(()) => {
                tracing::info!(key_id = %active, before = %ring.active_id(), "now sealing under the cluster's active master key");
                self.core.keyring().replace(moved);
            }
            Err(_) if self.warned_active.as_ref() != Some(active) => {
                tracing::error!(
                    key_id = %active,
                    sealing = %ring.active_id(),
                    "the cluster seals under master key {active}, which this node lacks; it \
                     keeps sealing under {} until {active}.key is in its keys directory and it \
                     gets SIGHUP",
                    ring.active_id()
                );
                self.warned_active = Some(active.clone());
            }
            Err(_) => {}
        }
    }
}

/// The next `SIGHUP`, or never where there is none.
async fn hangup(w: &mut KeyWatch) {
    #[cfg(unix)]
    if let Some(s) = w.hangup.as_mut() {
        if s.recv().await.is_some() {
            return;
        }
    }
    let _ = w;
    std::future::pending::<()>().await
}
