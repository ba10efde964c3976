//! Risk-based prompting in the login decision, where the tenant turns it on
//! ([`crate::risk::RiskMode::Adaptive`]): the login is located (geo-IP, when configured),
//! assessed against the user's recent successful logins, and every decision carries the
//! reasons. Successful logins are recorded in the history in the transaction that mints their
//! session. The rules themselves are pure, in [`crate::risk`].

use super::*;
use crate::messaging::Effect;
use crate::policy::Policy;
use crate::risk::{self, Assessment, LoginSignal, PastLogin, RiskMode};
use crate::security::{from_e4, to_e4, LoginRecord, Undo};
use std::net::IpAddr;

/// Most history rows read per decision: more than any sane `familiar_logins`.
const HISTORY_LIMIT: u32 = 500;

/// Where a login comes from, as far as it is known.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Whence<'a> {
    pub ip: Option<IpAddr>,
    /// The integrator's country hint.
    pub country: Option<&'a str>,
    /// A remembered-device id or the keyed hash of the integrator's device id.
    pub device: Option<&'a str>,
    /// `device` is a remembered device (a token Twofold issued).
    pub device_issued: bool,
    pub user_agent: Option<&'a str>,
}

/// What the decision learned about the login's risk.
#[derive(Debug, Clone)]
pub struct RiskView {
    pub assessment: Assessment,
    /// The login's country, when known.
    pub country: Option<String>,
}

impl Twofold {
    /// Installs the geo-IP database (set once, at start).
    pub fn set_geo(&self, geo: Arc<dyn GeoLookup>) {
        let _ = self.geo.set(geo);
    }

    fn locate(&self, ip: Option<IpAddr>) -> (Option<String>, Option<(f64, f64)>) {
        match (ip, self.geo.get()) {
            (Some(ip), Some(geo)) => geo.locate(ip),
            _ => (None, None),
        }
    }

    /// The stable, tenant-scoped id of a device the integrator names (its own per-browser
    /// id): only a keyed hash is kept, so the history holds no identifier of the integrator's.
    pub(crate) fn device_key(&self, tenant_id: i64, device_id: &str) -> String {
        let h = self
            .hasher
            .hash("device", format!("{tenant_id}:{device_id}").as_bytes());
        let hex: String = h.0[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("dvk_{hex}")
    }

    /// Where the login is: the geo-IP database's answer, with the integrator's country hint
    /// filling a gap (the database wins).
    fn place(&self, from: &Whence<'_>) -> (Option<String>, Option<(f64, f64)>) {
        let (country, coords) = self.locate(from.ip);
        (country.or(from.country.map(str::to_string)), coords)
    }

    /// The history row for a login completed with a second factor (or a recovery code), if the
    /// tenant's risk rules are on. Only such logins are recorded: a login let in without a
    /// code (not required, familiar, an app password, a remembered device) proves nothing
    /// about where the user is, and recording it would let familiarity renew itself.
    pub(crate) fn login_record(
        &self,
        policy: &Policy,
        user: &User,
        from: &Whence<'_>,
        now: i64,
    ) -> Option<Effect> {
        if policy.risk.mode == RiskMode::Off {
            return None;
        }
        let (country, coords) = self.place(from);
        Some(Effect::InsertLoginRecord(LoginRecord {
            tenant_id: user.tenant_id,
            user_id: user.id,
            at: now,
            ip: from.ip.map(|a| a.to_string()),
            network: from.ip.map(risk::network_of),
            country,
            lat_e4: coords.and_then(|c| to_e4(c.0)),
            lon_e4: coords.and_then(|c| to_e4(c.1)),
            device: from.device.map(str::to_string),
            ua_family: from.user_agent.and_then(risk::ua_family),
            generation: user.generation,
        }))
    }

    /// Assesses a login when the tenant's risk rules are on; `None` otherwise.
    pub(crate) async fn assess_login(
        &self,
        policy: &Policy,
        user: &User,
        from: &Whence<'_>,
        now: i64,
    ) -> Result<Option<RiskView>, CoreError> {
        let settings = &policy.risk;
        if settings.mode == RiskMode::Off {
            return Ok(None);
        }
        let (country, coords) = self.place(from);
        // Older rows too (the rules tell "no recent logins" from "first login", and the travel
        // check wants the latest located one); the pruner keeps at most a year.
        let history: Vec<PastLogin> = self
            .store
            .login_history(user.id, 0, HISTORY_LIMIT)
            .await?
            .into_iter()
            // What was learnt before a reset or "this wasn't me" vouches for nothing (INV-06).
            .filter(|r| r.generation == user.generation)
            .map(|r| PastLogin {
                at: r.at,
                network: r.network,
                country: r.country,
                coords: r
                    .lat_e4
                    .zip(r.lon_e4)
                    .map(|(a, b)| (from_e4(a), from_e4(b))),
                device: r.device,
                ua_family: r.ua_family,
            })
            .collect();
        let signal = LoginSignal {
            at: now,
            ip: from.ip,
            country: country.clone(),
            coords,
            device: from.device.map(str::to_string),
            device_issued: from.device_issued,
            ua_family: from.user_agent.and_then(risk::ua_family),
        };
        Ok(Some(RiskView {
            assessment: risk::assess(settings, &signal, &history, now),
            country,
        }))
    }

    /// Deletes login history older than a year and a day: the longest look-back a tenant can
    /// configure is a year.
    pub async fn prune_login_history(&self) -> Result<u64, CoreError> {
        let cutoff = self.now() - 366 * crate::policy::DAY_MS;
        Ok(self.store.prune_login_history(cutoff).await?)
    }

    /// The notice of a login that would mean impossible travel: a code is asked, and the user
    /// can say it was not them.
    pub(crate) fn travel_notice(
        &self,
        on: &On<'_>,
        view: &RiskView,
    ) -> Result<Vec<Effect>, CoreError> {
        let from = view
            .country
            .as_deref()
            .map(|c| format!(" from {c}"))
            .unwrap_or_default();
        let speed = match view.assessment.travel_kmh {
            Some(u32::MAX) | None => String::new(),
            Some(kmh) => format!(" (about {kmh} km/h)"),
        };
        self.notice(
            on,
            &format!(
                "a sign-in to your account was attempted{from}, too far from your previous \
                 sign-in for the time between them{speed}; a code was asked"
            ),
            None,
            Undo::Nothing,
        )
    }
}
