//! Risk assessment of a login: is it *familiar* (a device or a network the user has signed in
//! from before, in a country they sign in from) and is it *impossible travel* (too far from
//! the previous login for the time between them)?
//!
//! Pure: the caller gathers the signal (client IP from the socket or a trusted proxy only,
//! SECURITY.md INV-08; country and coordinates from the geo database; the remembered-device
//! id), the user's recent successful logins and `now`, and gets an [`Assessment`] with the
//! reasons behind it. A familiar login is what lets an `adaptive` tenant skip the second step,
//! so every doubt falls on the side of "not familiar": a skipped challenge is the costly
//! mistake, an extra challenge is not.
//!
//! ```text
//!  no IP ───────────────────────────────────────────────▶ not familiar [no_ip]
//!  no successful login ever ────────────────────────────▶ not familiar [first_login]
//!  none in the last familiar_days ──────────────────────▶ not familiar [no_recent_logins]
//!  otherwise, each rule adds its reason:
//!    device id present:  ≥ familiar_logins with it ──▶ familiar_device │ else new_device
//!    country known:      ≥ familiar_logins from this /24 (/48) in this country
//!                                                   ──▶ familiar_network │ else new_network
//!                        country not among the window's ──▶ new_country (vetoes)
//!    country unknown:    ──▶ unknown_country (the network rule cannot apply)
//!  familiar = (familiar_device or familiar_network) and not new_country
//!  and, whatever came before (even with no IP): faster than max_travel_kmh since the
//!  latest login with coordinates ──▶ impossible_travel (vetoes) [impossible_travel]
//! ```
//!
//! The tenant's [`RiskMode`] is not consulted here: the assessment is computed the same way in
//! both modes (an impossible-travel or new-country notice is worth auditing even for tenants
//! that never skip the second step), and the login decision skips the challenge only when the
//! mode is [`RiskMode::Adaptive`] and the login is familiar.

use crate::error::CoreError;
use crate::policy::DAY_MS;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Mean earth radius (km) used by [`distance_km`].
pub const EARTH_RADIUS_KM: f64 = 6371.0;

/// Two logins closer than this are never impossible travel: geo-IP places a whole metro area
/// (and often a whole region) at one point, and its error is tens of kilometres.
pub const MIN_TRAVEL_KM: f64 = 50.0;

const HOUR_MS: f64 = 3_600_000.0;

/// Whether the tenant lets familiar logins skip the second step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskMode {
    /// Every login that needs 2FA is challenged (the assessment is still computed, for audit).
    #[default]
    Off,
    /// A familiar login without impossible travel may skip the challenge.
    Adaptive,
}

impl RiskMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            RiskMode::Off => "off",
            RiskMode::Adaptive => "adaptive",
        }
    }
}

/// Per-tenant risk settings, stored inside the tenant's policy JSON: every field has a default
/// so that policies saved before this existed read as "off".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RiskSettings {
    pub mode: RiskMode,
    /// Successful logins needed before a device or network counts as familiar.
    pub familiar_logins: u32,
    /// How far back (days) those logins may be.
    pub familiar_days: u32,
    /// Faster than this (km/h) between two logins is impossible travel. 900 is an airliner.
    pub max_travel_kmh: u32,
}

impl Default for RiskSettings {
    fn default() -> Self {
        Self {
            mode: RiskMode::Off,
            familiar_logins: 2,
            familiar_days: 30,
            max_travel_kmh: 900,
        }
    }
}

fn invalid(message: impl Into<String>) -> CoreError {
    CoreError::Invalid {
        field: "risk",
        message: message.into(),
    }
}

impl RiskSettings {
    /// Bounds that keep the rules meaningful: one login is the least evidence there can be, a
    /// year the longest memory worth having, and below 100 km/h a train ride would look
    /// impossible while above 10,000 km/h nothing would.
    pub fn validate(&self) -> Result<(), CoreError> {
        if !(1..=100).contains(&self.familiar_logins) {
            return Err(invalid("familiar_logins must be 1 to 100"));
        }
        if !(1..=365).contains(&self.familiar_days) {
            return Err(invalid("familiar_days must be 1 to 365"));
        }
        if !(100..=10_000).contains(&self.max_travel_kmh) {
            return Err(invalid("max_travel_kmh must be 100 to 10000"));
        }
        Ok(())
    }
}

/// What is known about the login being assessed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoginSignal {
    /// Unix ms.
    pub at: i64,
    /// The client IP as resolved from the socket or a trusted proxy; `None` when it is missing
    /// or could not be parsed (high risk, INV-08).
    pub ip: Option<IpAddr>,
    /// ISO 3166-1 alpha-2, upper case; `None` when the geo database does not know the IP.
    pub country: Option<String>,
    /// (latitude, longitude) in degrees.
    pub coords: Option<(f64, f64)>,
    /// The stable id of a valid remembered-device token presented with this login, or of the
    /// integrator's own id for the device.
    pub device: Option<String>,
    /// `device` is a remembered-device token Twofold issued (random, ours), not an id the
    /// integrator chose.
    pub device_issued: bool,
    /// [`ua_family`] of the User-Agent. Not used by the rules (it is trivially chosen by the
    /// client and changes with browser updates); kept for the audit trail and notices.
    pub ua_family: Option<String>,
}

/// One earlier successful login of the same user, as the store keeps it (the network already
/// computed with [`network_of`], never the full IP).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PastLogin {
    pub at: i64,
    pub network: Option<String>,
    pub country: Option<String>,
    pub coords: Option<(f64, f64)>,
    pub device: Option<String>,
    pub ua_family: Option<String>,
}

/// Why a login was judged as it was. The strings are stable: they go to the audit log and the
/// API answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskReason {
    /// No usable client IP: never familiar.
    NoIp,
    /// The user has no successful login at all.
    FirstLogin,
    /// The user has successful logins, but none in the last `familiar_days`.
    NoRecentLogins,
    /// The geo database does not know the IP: the network rule cannot apply.
    UnknownCountry,
    FamiliarDevice,
    NewDevice,
    FamiliarNetwork,
    NewNetwork,
    /// The country is not among those of the recent logins: vetoes familiarity.
    NewCountry,
    /// Too fast since the previous login with coordinates: vetoes familiarity.
    ImpossibleTravel,
}

impl RiskReason {
    pub const ALL: [RiskReason; 10] = [
        RiskReason::NoIp,
        RiskReason::FirstLogin,
        RiskReason::NoRecentLogins,
        RiskReason::UnknownCountry,
        RiskReason::FamiliarDevice,
        RiskReason::NewDevice,
        RiskReason::FamiliarNetwork,
        RiskReason::NewNetwork,
        RiskReason::NewCountry,
        RiskReason::ImpossibleTravel,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            RiskReason::NoIp => "no_ip",
            RiskReason::FirstLogin => "first_login",
            RiskReason::NoRecentLogins => "no_recent_logins",
            RiskReason::UnknownCountry => "unknown_country",
            RiskReason::FamiliarDevice => "familiar_device",
            RiskReason::NewDevice => "new_device",
            RiskReason::FamiliarNetwork => "familiar_network",
            RiskReason::NewNetwork => "new_network",
            RiskReason::NewCountry => "new_country",
            RiskReason::ImpossibleTravel => "impossible_travel",
        }
    }
}

/// The outcome of [`assess`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// A known device or network in a known country, and no impossible travel.
    pub familiar: bool,
    pub impossible_travel: bool,
    /// Speed since the previous login with coordinates, when both have coordinates and are at
    /// least [`MIN_TRAVEL_KM`] apart; `u32::MAX` when they happened at the same instant.
    pub travel_kmh: Option<u32>,
    /// Every rule's outcome, in a fixed order (see the module diagram); never empty.
    pub reasons: Vec<RiskReason>,
}

impl Assessment {
    pub fn has(&self, reason: RiskReason) -> bool {
        self.reasons.contains(&reason)
    }
}

/// Assesses one login against the user's history; see the module's diagram.
///
/// Only history from `now - familiar_days` on counts towards familiarity (a later entry, from a
/// node whose clock runs ahead, counts too). The travel check uses the latest earlier login
/// with coordinates whatever its age: an old one only ever yields a slow speed.
pub fn assess(
    settings: &RiskSettings,
    signal: &LoginSignal,
    history: &[PastLogin],
    now: i64,
) -> Assessment {
    let mut reasons = Vec::new();
    let mut familiar = false;
    // Unvalidated settings must not turn "zero matching logins" into "familiar".
    let needed = settings.familiar_logins.max(1) as usize;
    let window_start = now.saturating_sub(i64::from(settings.familiar_days).saturating_mul(DAY_MS));
    let recent: Vec<&PastLogin> = history.iter().filter(|p| p.at >= window_start).collect();
    let country = signal.country.as_deref();

    match signal.ip {
        // INV-08: a login whose address is unknown can be from anywhere; a device token alone
        // does not make it familiar (it may be a stolen token replayed through a path that
        // hides the address).
        None => reasons.push(RiskReason::NoIp),
        Some(_) if history.is_empty() => reasons.push(RiskReason::FirstLogin),
        Some(_) if recent.is_empty() => reasons.push(RiskReason::NoRecentLogins),
        Some(ip) => {
            let mut known_device = false;
            if let Some(device) = signal.device.as_deref() {
                let n = recent
                    .iter()
                    .filter(|p| p.device.as_deref() == Some(device))
                    .count();
                known_device = n >= needed;
                reasons.push(if known_device {
                    RiskReason::FamiliarDevice
                } else {
                    RiskReason::NewDevice
                });
            }
            let mut known_network = false;
            let mut new_country = false;
            match country {
                // Geo databases miss some ranges (new allocations, some mobile carriers). The
                // network rule needs the country, so it cannot vouch here; the device rule
                // still can, but only for a token Twofold issued (a remembered device): an
                // integrator's own device id may be guessable, so it needs a known country.
                None => {
                    reasons.push(RiskReason::UnknownCountry);
                    known_device &= signal.device_issued;
                }
                Some(c) => {
                    let network = network_of(ip);
                    let n = recent
                        .iter()
                        .filter(|p| {
                            p.network.as_deref() == Some(network.as_str())
                                && same_country(p.country.as_deref(), c)
                        })
                        .count();
                    known_network = n >= needed;
                    reasons.push(if known_network {
                        RiskReason::FamiliarNetwork
                    } else {
                        RiskReason::NewNetwork
                    });
                    // Past logins with no country (before geo data existed) count as "not
                    // this country": one challenged login then records it.
                    new_country = !recent.iter().any(|p| same_country(p.country.as_deref(), c));
                    if new_country {
                        reasons.push(RiskReason::NewCountry);
                    }
                }
            }
            familiar = (known_device || known_network) && !new_country;
        }
    }

    let (impossible_travel, travel_kmh) = travel(settings, signal, history);
    if impossible_travel {
        familiar = false;
        reasons.push(RiskReason::ImpossibleTravel);
    }
    Assessment {
        familiar,
        impossible_travel,
        travel_kmh,
        reasons,
    }
}

fn same_country(past: Option<&str>, now: &str) -> bool {
    past.is_some_and(|p| p.eq_ignore_ascii_case(now))
}

/// Coordinates that are finite and on the globe; anything else is treated as absent.
fn valid_coords(c: Option<(f64, f64)>) -> Option<(f64, f64)> {
    c.filter(|(lat, lon)| {
        lat.is_finite()
            && lon.is_finite()
            && (-90.0..=90.0).contains(lat)
            && (-180.0..=180.0).contains(lon)
    })
}

/// (impossible, speed) against the latest other login with coordinates.
fn travel(
    settings: &RiskSettings,
    signal: &LoginSignal,
    history: &[PastLogin],
) -> (bool, Option<u32>) {
    let Some(here) = valid_coords(signal.coords) else {
        return (false, None);
    };
    let Some((then_at, there)) = history
        .iter()
        .filter_map(|p| valid_coords(p.coords).map(|c| (p.at, c)))
        .max_by_key(|(at, _)| *at)
    else {
        return (false, None);
    };
    let km = distance_km(here, there);
    if km < MIN_TRAVEL_KM {
        return (false, None);
    }
    // Out-of-order entries (clock skew between nodes) are as far apart as the other way round.
    let hours = signal.at.abs_diff(then_at) as f64 / HOUR_MS;
    let kmh = if hours > 0.0 {
        km / hours
    } else {
        f64::INFINITY
    };
    // `as` saturates: infinity becomes u32::MAX.
    let speed = kmh as u32;
    (kmh > f64::from(settings.max_travel_kmh.max(1)), Some(speed))
}

/// The network a login came from, as the history stores it: an IPv4 /24 or an IPv6 /48 (what
/// one home, office or mobile carrier's customer typically holds), never the full address.
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as seen on dual-stack sockets) is the IPv4 address.
pub fn network_of(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{net}/48")
        }
    }
}

/// A coarse "browser/os" family of a User-Agent, e.g. `chrome/windows`, `safari/ios`: enough
/// to say "a new sign-in from Firefox on Linux", never the full string (which, with its exact
/// versions, is close to a fingerprint). `None` for an empty header.
pub fn ua_family(user_agent: &str) -> Option<String> {
    let ua = user_agent.trim();
    if ua.is_empty() {
        return None;
    }
    let has = |needle: &str| ua.contains(needle);
    // Order matters: Edge and Opera also say "Chrome", Chrome also says "Safari".
    let browser = if has("Edg/") || has("EdgA/") || has("EdgiOS/") || has("Edge/") {
        "edge"
    } else if has("OPR/") || has("Opera") {
        "opera"
    } else if has("Firefox/") || has("FxiOS/") {
        "firefox"
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
        "chrome"
    } else if has("Safari/") && has("Version/") {
        "safari"
    } else {
        "other"
    };
    let os = if has("iPhone") || has("iPad") || has("iPod") {
        "ios"
    } else if has("Android") {
        "android"
    } else if has("Windows") {
        "windows"
    } else if has("CrOS") {
        "chromeos"
    } else if has("Macintosh") || has("Mac OS X") {
        "macos"
    } else if has("Linux") || has("X11") {
        "linux"
    } else {
        "other"
    };
    Some(format!("{browser}/{os}"))
}

/// Great-circle distance in km between two (latitude, longitude) points in degrees
/// (haversine on a sphere of radius [`EARTH_RADIUS_KM`]; within 0.5 % of the ellipsoid, which
/// is far better than geo-IP). NaN in, NaN out; never panics.
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let dlat = (b.0 - a.0).to_radians();
    let dlon = (b.1 - a.1).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    // Rounding can push h a hair above 1 for antipodal points; asin would then give NaN.
    // (`clamp` keeps NaN as NaN, where `min` would turn it into 1.)
    2.0 * EARTH_RADIUS_KM * h.clamp(0.0, 1.0).sqrt().asin()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use RiskReason::*;

    const NOW: i64 = 1_795_651_200_000;
    const MIN: i64 = 60_000;
    const HOUR: i64 = 3_600_000;
    const LONDON: (f64, f64) = (51.5074, -0.1278);
    const SYDNEY: (f64, f64) = (-33.8688, 151.2093);
    const PARIS: (f64, f64) = (48.8566, 2.3522);
    /// 20 km from central London: the same metro area.
    const CROYDON: (f64, f64) = (51.3762, -0.0982);

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    /// A login at `now` from `ip` in `country` with `device`.
    fn signal(ip_: Option<IpAddr>, country: Option<&str>, device: Option<&str>) -> LoginSignal {
        LoginSignal {
            at: NOW,
            ip: ip_,
            country: country.map(Into::into),
            coords: None,
            device: device.map(Into::into),
            device_issued: true,
            ua_family: Some("firefox/linux".into()),
        }
    }

    fn at(s: LoginSignal, coords: (f64, f64)) -> LoginSignal {
        LoginSignal {
            coords: Some(coords),
            ..s
        }
    }

    /// `n` logins `ago` ms before NOW (one minute apart) from `network` in `country`.
    fn past(
        n: usize,
        ago: i64,
        network: &str,
        country: Option<&str>,
        device: Option<&str>,
    ) -> Vec<PastLogin> {
        (0..n)
            .map(|i| PastLogin {
                at: NOW - ago - i as i64 * MIN,
                network: Some(network.into()),
                country: country.map(Into::into),
                coords: None,
                device: device.map(Into::into),
                ua_family: Some("firefox/linux".into()),
            })
            .collect()
    }

    fn with_coords(mut h: Vec<PastLogin>, coords: (f64, f64)) -> Vec<PastLogin> {
        for p in &mut h {
            p.coords = Some(coords);
        }
        h
    }

    fn cat(parts: Vec<Vec<PastLogin>>) -> Vec<PastLogin> {
        parts.into_iter().flatten().collect()
    }

    const GB_NET: &str = "203.0.113.0/24";
    const AU_NET: &str = "198.51.100.0/24";
    const DAY: i64 = DAY_MS;

    struct Row {
        name: &'static str,
        signal: LoginSignal,
        history: Vec<PastLogin>,
        familiar: bool,
        impossible: bool,
        reasons: Vec<RiskReason>,
    }

    fn rows() -> Vec<Row> {
        let gb = Some("GB");
        let d1 = Some("dev-1");
        let gb_ip = ip("203.0.113.7");
        let other_gb_ip = ip("192.0.2.10");
        let row = |name, signal, history, familiar, impossible, reasons| Row {
            name,
            signal,
            history,
            familiar,
            impossible,
            reasons,
        };
        vec![
            // ---- the first login and an empty window
            row(
                "first login ever",
                signal(gb_ip, gb, None),
                vec![],
                false,
                false,
                vec![FirstLogin],
            ),
            row(
                "first login, with a device id",
                signal(gb_ip, gb, d1),
                vec![],
                false,
                false,
                vec![FirstLogin],
            ),
            row(
                "history only older than the window",
                signal(gb_ip, gb, d1),
                past(5, 31 * DAY, GB_NET, gb, d1),
                false,
                false,
                vec![NoRecentLogins],
            ),
            // ---- device rule
            row(
                "familiar device, new network in a known country",
                signal(other_gb_ip, gb, d1),
                past(2, DAY, GB_NET, gb, d1),
                true,
                false,
                vec![FamiliarDevice, NewNetwork],
            ),
            row(
                "device seen once: below the threshold",
                signal(other_gb_ip, gb, d1),
                past(1, DAY, GB_NET, gb, d1),
                false,
                false,
                vec![NewDevice, NewNetwork],
            ),
            row(
                "device seen twice, but once outside the window",
                signal(other_gb_ip, gb, d1),
                cat(vec![
                    past(1, DAY, GB_NET, gb, d1),
                    past(1, 40 * DAY, GB_NET, gb, d1),
                ]),
                false,
                false,
                vec![NewDevice, NewNetwork],
            ),
            row(
                "logins exactly at the window's start still count",
                signal(other_gb_ip, gb, d1),
                cat(vec![
                    past(1, 30 * DAY, GB_NET, gb, d1),
                    past(1, 30 * DAY, GB_NET, gb, d1),
                ]),
                true,
                false,
                vec![FamiliarDevice, NewNetwork],
            ),
            row(
                "a device never seen, nor the network",
                signal(other_gb_ip, gb, Some("dev-2")),
                past(5, DAY, GB_NET, gb, d1),
                false,
                false,
                vec![NewDevice, NewNetwork],
            ),
            // ---- network rule
            row(
                "familiar network in the same country, no device",
                signal(gb_ip, gb, None),
                past(2, DAY, GB_NET, gb, None),
                true,
                false,
                vec![FamiliarNetwork],
            ),
            row(
                "familiar network, new device: the network vouches",
                signal(gb_ip, gb, Some("dev-2")),
                past(2, DAY, GB_NET, gb, d1),
                true,
                false,
                vec![NewDevice, FamiliarNetwork],
            ),
            row(
                "familiar device and network",
                signal(gb_ip, gb, d1),
                past(3, 2 * HOUR, GB_NET, gb, d1),
                true,
                false,
                vec![FamiliarDevice, FamiliarNetwork],
            ),
            row(
                "network seen once: below the threshold",
                signal(gb_ip, gb, None),
                past(1, DAY, GB_NET, gb, None),
                false,
                false,
                vec![NewNetwork],
            ),
            row(
                "network seen, but only before the window",
                signal(gb_ip, gb, None),
                cat(vec![
                    past(1, DAY, AU_NET, gb, None),
                    past(5, 60 * DAY, GB_NET, gb, None),
                ]),
                false,
                false,
                vec![NewNetwork],
            ),
            row(
                "same network seen in another country (geo data moved): new country",
                signal(gb_ip, gb, None),
                past(3, DAY, GB_NET, Some("FR"), None),
                false,
                false,
                vec![NewNetwork, NewCountry],
            ),
            // ---- country
            row(
                "new country vetoes a familiar device",
                signal(ip("198.51.100.4"), Some("AU"), d1),
                past(3, DAY, GB_NET, gb, d1),
                false,
                false,
                vec![FamiliarDevice, NewNetwork, NewCountry],
            ),
            row(
                "country compared case-insensitively",
                signal(gb_ip, Some("gb"), None),
                past(2, DAY, GB_NET, gb, None),
                true,
                false,
                vec![FamiliarNetwork],
            ),
            row(
                "history without countries (before geo data): the country is new",
                signal(gb_ip, gb, d1),
                past(3, DAY, GB_NET, None, d1),
                false,
                false,
                vec![FamiliarDevice, NewNetwork, NewCountry],
            ),
            row(
                "unknown country, familiar device: the device still vouches",
                signal(gb_ip, None, d1),
                past(2, DAY, GB_NET, gb, d1),
                true,
                false,
                vec![FamiliarDevice, UnknownCountry],
            ),
            row(
                "unknown country, familiar device id chosen by the integrator: not enough",
                LoginSignal {
                    device_issued: false,
                    ..signal(gb_ip, None, d1)
                },
                past(2, DAY, GB_NET, gb, d1),
                false,
                false,
                vec![FamiliarDevice, UnknownCountry],
            ),
            row(
                "known country, familiar device id chosen by the integrator: vouches",
                LoginSignal {
                    device_issued: false,
                    ..signal(gb_ip, gb, d1)
                },
                past(2, DAY, "198.51.100.0/24", gb, d1),
                true,
                false,
                vec![FamiliarDevice, NewNetwork],
            ),
            row(
                "unknown country, familiar network: the network rule cannot apply",
                signal(gb_ip, None, None),
                past(5, DAY, GB_NET, None, None),
                false,
                false,
                vec![UnknownCountry],
            ),
            row(
                "unknown country, new device",
                signal(gb_ip, None, Some("dev-2")),
                past(5, DAY, GB_NET, gb, d1),
                false,
                false,
                vec![NewDevice, UnknownCountry],
            ),
            // ---- no IP
            row(
                "IP missing, familiar device and network: never familiar",
                signal(None, gb, d1),
                past(5, DAY, GB_NET, gb, d1),
                false,
                false,
                vec![NoIp],
            ),
            row(
                "IP missing, first login",
                signal(None, None, None),
                vec![],
                false,
                false,
                vec![NoIp],
            ),
            // ---- IPv6 and IPv4-mapped addresses
            row(
                "IPv6: another address in the same /48 is the familiar network",
                signal(ip("2001:db8:1:ffff::5"), Some("DE"), None),
                past(2, DAY, "2001:db8:1::/48", Some("DE"), None),
                true,
                false,
                vec![FamiliarNetwork],
            ),
            row(
                "IPv6: the neighbouring /48 is a new network",
                signal(ip("2001:db8:2::5"), Some("DE"), None),
                past(2, DAY, "2001:db8:1::/48", Some("DE"), None),
                false,
                false,
                vec![NewNetwork],
            ),
            row(
                "IPv4-mapped IPv6 is the IPv4 network",
                signal(ip("::ffff:203.0.113.99"), gb, None),
                past(2, DAY, GB_NET, gb, None),
                true,
                false,
                vec![FamiliarNetwork],
            ),
            // ---- travel
            row(
                "London then Sydney 1 h later: impossible, even with a familiar device",
                at(signal(ip("198.51.100.4"), Some("AU"), d1), SYDNEY),
                cat(vec![
                    with_coords(past(2, HOUR, GB_NET, gb, d1), LONDON),
                    with_coords(past(2, 10 * DAY, AU_NET, Some("AU"), d1), SYDNEY),
                ]),
                false,
                true,
                vec![FamiliarDevice, FamiliarNetwork, ImpossibleTravel],
            ),
            row(
                "London then Sydney 30 h later: a flight",
                at(signal(ip("198.51.100.4"), Some("AU"), d1), SYDNEY),
                cat(vec![
                    with_coords(past(1, 30 * HOUR, GB_NET, gb, d1), LONDON),
                    with_coords(past(2, 10 * DAY, AU_NET, Some("AU"), d1), SYDNEY),
                ]),
                true,
                false,
                vec![FamiliarDevice, FamiliarNetwork],
            ),
            row(
                "London then Paris 10 min later: impossible",
                at(signal(gb_ip, gb, d1), PARIS),
                with_coords(past(2, 10 * MIN, GB_NET, gb, d1), LONDON),
                false,
                true,
                vec![FamiliarDevice, FamiliarNetwork, ImpossibleTravel],
            ),
            row(
                "only the latest login with coordinates counts (older Sydney ignored)",
                at(signal(gb_ip, gb, d1), LONDON),
                cat(vec![
                    with_coords(past(2, HOUR, GB_NET, gb, d1), LONDON),
                    with_coords(past(1, 2 * HOUR, AU_NET, gb, d1), SYDNEY),
                ]),
                true,
                false,
                vec![FamiliarDevice, FamiliarNetwork],
            ),
            row(
                "latest login without coordinates is skipped for travel",
                at(signal(gb_ip, gb, d1), SYDNEY),
                cat(vec![
                    past(2, MIN, GB_NET, gb, d1),
                    with_coords(past(1, 2 * HOUR, GB_NET, gb, d1), LONDON),
                ]),
                false,
                true,
                vec![FamiliarDevice, FamiliarNetwork, ImpossibleTravel],
            ),
            row(
                "same instant, same place: fine",
                at(signal(gb_ip, gb, d1), LONDON),
                with_coords(past(2, 0, GB_NET, gb, d1), LONDON),
                true,
                false,
                vec![FamiliarDevice, FamiliarNetwork],
            ),
            row(
                "same instant, London and Paris: impossible",
                at(signal(gb_ip, gb, d1), PARIS),
                with_coords(past(1, 0, GB_NET, gb, d1), LONDON),
                false,
                true,
                vec![NewDevice, NewNetwork, ImpossibleTravel],
            ),
            row(
                "same metro area one minute later: never impossible",
                at(signal(gb_ip, gb, d1), CROYDON),
                with_coords(past(2, MIN, GB_NET, gb, d1), LONDON),
                true,
                false,
                vec![FamiliarDevice, FamiliarNetwork],
            ),
            row(
                "a later history entry (clock skew) is as far in time as an earlier one",
                at(signal(gb_ip, gb, d1), SYDNEY),
                with_coords(past(2, -HOUR, GB_NET, gb, d1), LONDON),
                false,
                true,
                vec![FamiliarDevice, FamiliarNetwork, ImpossibleTravel],
            ),
            row(
                "IP missing and impossible travel: both reported",
                at(signal(None, None, None), SYDNEY),
                with_coords(past(1, HOUR, GB_NET, gb, None), LONDON),
                false,
                true,
                vec![NoIp, ImpossibleTravel],
            ),
            row(
                "invalid coordinates are ignored",
                at(signal(gb_ip, gb, d1), (f64::NAN, 200.0)),
                with_coords(past(2, MIN, GB_NET, gb, d1), LONDON),
                true,
                false,
                vec![FamiliarDevice, FamiliarNetwork],
            ),
        ]
    }

    #[test]
    fn the_assessment_table() {
        let settings = RiskSettings {
            mode: RiskMode::Adaptive,
            ..RiskSettings::default()
        };
        for r in rows() {
            let a = assess(&settings, &r.signal, &r.history, NOW);
            assert_eq!(
                (a.familiar, a.impossible_travel, &a.reasons),
                (r.familiar, r.impossible, &r.reasons),
                "row: {}",
                r.name
            );
            assert!(!a.reasons.is_empty(), "row: {}", r.name);
            assert_eq!(
                a.travel_kmh.is_some() && a.impossible_travel,
                r.impossible,
                "row: {}",
                r.name
            );
            // The mode does not change the assessment, only what the caller does with it.
            let off = assess(&RiskSettings::default(), &r.signal, &r.history, NOW);
            assert_eq!(off, a, "row (mode off): {}", r.name);
        }
    }

    #[test]
    fn travel_speeds() {
        let s = RiskSettings::default();
        let sig = at(signal(ip("198.51.100.4"), Some("AU"), None), SYDNEY);
        let speed = |ago: i64| {
            assess(
                &s,
                &sig,
                &with_coords(past(1, ago, GB_NET, Some("GB"), None), LONDON),
                NOW,
            )
            .travel_kmh
            .unwrap()
        };
        assert!((16_900..17_100).contains(&speed(HOUR)), "{}", speed(HOUR));
        assert!(
            (560..572).contains(&speed(30 * HOUR)),
            "{}",
            speed(30 * HOUR)
        );
        assert_eq!(speed(0), u32::MAX);
        // Within the metro radius: no speed is reported at all.
        let near = at(signal(ip("203.0.113.1"), Some("GB"), None), CROYDON);
        let h = with_coords(past(1, MIN, GB_NET, Some("GB"), None), LONDON);
        assert_eq!(assess(&s, &near, &h, NOW).travel_kmh, None);
        // The threshold is the tenant's: 566 km/h is too fast for a tenant that allows 500.
        let slow = RiskSettings {
            max_travel_kmh: 500,
            ..s.clone()
        };
        let h = with_coords(past(1, 30 * HOUR, GB_NET, Some("GB"), None), LONDON);
        assert!(assess(&slow, &sig, &h, NOW).impossible_travel);
        assert!(!assess(&s, &sig, &h, NOW).impossible_travel);
    }

    #[test]
    fn unvalidated_zero_threshold_never_makes_zero_logins_familiar() {
        let s = RiskSettings {
            familiar_logins: 0,
            ..RiskSettings::default()
        };
        let sig = signal(ip("203.0.113.7"), Some("GB"), Some("dev-9"));
        let h = past(1, DAY, AU_NET, Some("GB"), Some("dev-1"));
        let a = assess(&s, &sig, &h, NOW);
        assert!(!a.familiar);
        assert_eq!(a.reasons, vec![NewDevice, NewNetwork]);
    }

    #[test]
    fn networks() {
        let cases = [
            ("203.0.113.77", "203.0.113.0/24"),
            ("10.1.2.3", "10.1.2.0/24"),
            ("::ffff:203.0.113.77", "203.0.113.0/24"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1::/48"),
            ("2001:db8:1::", "2001:db8:1::/48"),
            ("::1", "::/48"),
            ("fe80::1", "fe80::/48"),
        ];
        for (addr, net) in cases {
            assert_eq!(network_of(addr.parse().unwrap()), net, "{addr}");
        }
    }

    #[test]
    fn user_agent_families() {
        let cases = [
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", Some("chrome/windows")),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.56", Some("edge/windows")),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0", Some("firefox/linux")),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", Some("safari/macos")),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", Some("safari/ios")),
            ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1", Some("chrome/ios")),
            ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Mobile Safari/537.36", Some("chrome/android")),
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 OPR/111.0.0.0", Some("opera/windows")),
            ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", Some("chrome/chromeos")),
            ("curl/8.8.0", Some("other/other")),
            ("", None),
            ("   ", None),
        ];
        for (ua, family) in cases {
            assert_eq!(ua_family(ua).as_deref(), family, "{ua}");
        }
        // Never the full string, whatever its size.
        let long = "x".repeat(100_000);
        assert_eq!(ua_family(&long).as_deref(), Some("other/other"));
    }

    #[test]
    fn distances() {
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol;
        assert!(
            close(distance_km(LONDON, SYDNEY), 16_993.0, 30.0),
            "{}",
            distance_km(LONDON, SYDNEY)
        );
        assert!(close(distance_km(LONDON, PARIS), 343.5, 2.0));
        assert_eq!(distance_km(LONDON, LONDON), 0.0);
        assert!(close(
            distance_km(SYDNEY, LONDON),
            distance_km(LONDON, SYDNEY),
            1e-6
        ));
        // Antipodes: half the circumference, not NaN.
        let half = std::f64::consts::PI * EARTH_RADIUS_KM;
        assert!(close(distance_km((0.0, 0.0), (0.0, 180.0)), half, 1e-6));
        assert!(close(distance_km((90.0, 0.0), (-90.0, 0.0)), half, 1e-6));
        assert!(distance_km((f64::NAN, 0.0), LONDON).is_nan());
    }

    #[test]
    fn settings_defaults_serde_and_bounds() {
        let d: RiskSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(d, RiskSettings::default());
        assert_eq!(d.mode, RiskMode::Off);
        assert_eq!(
            (d.familiar_logins, d.familiar_days, d.max_travel_kmh),
            (2, 30, 900)
        );
        let a: RiskSettings =
            serde_json::from_str(r#"{"mode":"adaptive","familiar_days":7}"#).unwrap();
        assert_eq!(a.mode, RiskMode::Adaptive);
        assert_eq!(a.familiar_days, 7);
        assert_eq!(a.familiar_logins, 2);
        assert!(serde_json::from_str::<RiskSettings>(r#"{"mode":"strict"}"#).is_err());
        assert_eq!(serde_json::to_value(&a).unwrap()["mode"], "adaptive");
        assert!(d.validate().is_ok());
        let bad = [
            RiskSettings {
                familiar_logins: 0,
                ..d.clone()
            },
            RiskSettings {
                familiar_logins: 101,
                ..d.clone()
            },
            RiskSettings {
                familiar_days: 0,
                ..d.clone()
            },
            RiskSettings {
                familiar_days: 366,
                ..d.clone()
            },
            RiskSettings {
                max_travel_kmh: 99,
                ..d.clone()
            },
            RiskSettings {
                max_travel_kmh: 10_001,
                ..d.clone()
            },
        ];
        for s in bad {
            let got = s.validate();
            assert!(
                matches!(got, Err(CoreError::Invalid { field: "risk", .. })),
                "{s:?}: {got:?}"
            );
        }
    }

    #[test]
    fn reason_strings_are_the_serde_names() {
        for r in RiskReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        let a = Assessment {
            familiar: false,
            impossible_travel: true,
            travel_kmh: Some(16_993),
            reasons: vec![NoIp, ImpossibleTravel],
        };
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"familiar":false,"impossible_travel":true,"travel_kmh":16993,"reasons":["no_ip","impossible_travel"]}"#
        );
    }
}
