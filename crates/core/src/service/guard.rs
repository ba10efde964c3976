//! Attempt limits in layers, on top of the per-(user, factor) counters of
//! [`crate::throttle`]: failures are also counted per end-user IP and per tenant, in the
//! store (so every node sees the same counts), and the user hears of repeated failures and of
//! a lock. Restarting a login never refreshes any of them: none is keyed by the login.

use super::*;
use crate::messaging::{Effect, SendLimit};
use crate::security::Undo;

const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Wrong codes allowed per end-user IP per hour, across users and tenants. Only applied
    /// where the IP is known and vouched for: the one the integrator passes for the login, or
    /// the socket / trusted proxy on the hosted pages (INV-08), never the integrator's own
    /// back end calling the API.
    pub ip_failures_per_hour: u32,
    /// Wrong codes allowed per tenant per hour: caps an attacker spraying guesses across many
    /// users, each below the per-factor limit. Reaching it refuses every code of the tenant
    /// for the rest of the hour, so it is set far above normal typing mistakes.
    pub tenant_failures_per_hour: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            ip_failures_per_hour: 100,
            tenant_failures_per_hour: 10_000,
        }
    }
}

impl Twofold {
    /// The failure budgets of an attempt in `tenant` from `meta`'s end-user IP. Confirming a
    /// new factor is not charged to them: it proves nothing about anyone else's account, and a
    /// user withdrawing and re-enrolling a factor of their own must not be able to fill the
    /// tenant's budget and so lock everyone else out.
    pub(crate) fn budgets(&self, tenant: &Tenant, meta: &RequestMeta) -> Vec<SendLimit> {
        let cfg = &self.config.throttle;
        let mut limits = vec![SendLimit {
            scope: format!("fail-tenant:{}", tenant.id),
            max: cfg.tenant_failures_per_hour,
            window_ms: HOUR_MS,
        }];
        // Per tenant too: one tenant's traffic must not use up an address's allowance at
        // another.
        if let Some(ip) = meta.client_ip.as_deref() {
            limits.push(SendLimit {
                scope: format!("fail-ip:{}:{ip}", tenant.id),
                max: cfg.ip_failures_per_hour,
                window_ms: HOUR_MS,
            });
        }
        limits
    }

    /// The notices that ride on a failed attempt: when it starts the factor's backoff (the
    /// user learns someone is guessing before anything is locked), and when it locks it.
    pub(crate) fn failure_notices(
        &self,
        on: &On<'_>,
        factor: Option<&Factor>,
    ) -> Result<(Vec<Effect>, Vec<Effect>), CoreError> {
        let on_backoff = self.notice(
            on,
            &format!(
                "{} wrong codes in a row were entered for a two-step verification method; \
                 further tries are slowed down",
                crate::throttle::BACKOFF_AFTER
            ),
            factor,
            Undo::Nothing,
        )?;
        let on_lock = self.notice(
            on,
            "a two-step verification method was locked after too many wrong codes",
            factor,
            Undo::Nothing,
        )?;
        Ok((on_backoff, on_lock))
    }
}
