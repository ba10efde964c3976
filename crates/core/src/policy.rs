//! An organisation's two-step verification policy, and the login decision it leads to.
//!
//! Everything here is pure: the decision takes the policy, what is known about the user and
//! the login, and `now`, and returns what the integrator must do next. The service gathers
//! those inputs fresh from the store at the moment of each login (SECURITY.md INV-10), so a
//! policy change or a removed factor is in force at the very next login.
//!
//! ```text
//!  enforcement off ─────────────────────────────────────────────▶ allow (not_required)
//!  SSO login and SSO exempt ────────────────────────────────────▶ allow (sso_exempt)
//!  2FA applies to this user? ── no ─────────────────────────────▶ allow (not_required)
//!        │ yes (required for them, optional, or they enrolled)
//!        ▼
//!  has a usable factor (an active factor of an enabled method)?
//!        │ yes                                     │ no
//!        ▼                                         ▼
//!  all locked ──▶ deny (locked)             required and past the deadline (or none)?
//!  client can't do 2FA ──▶ deny                 yes ─▶ client can't do 2FA ─▶ deny
//!  trusted device ──▶ allow (trusted_device)        └──▶ enroll_required
//!  otherwise ──▶ challenge                      in the reminder window, or optional
//!                                                   ─▶ skipped today ─▶ allow (skipped)
//!                                                   └──▶ enroll_offered (deadline, days left)
//!                                               before the reminder window
//!                                                   ─▶ allow (not_required_yet)
//! ```

use crate::error::CoreError;
use serde::{Deserialize, Serialize};

pub const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;

/// A second-factor method an organisation can enable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// An authenticator app (TOTP). Offered first whenever it is enabled.
    Totp,
    Sms,
    Email,
    /// A security key or passkey (WebAuthn): the one phishing-resistant method, since the
    /// browser binds its answer to the origin it is shown on.
    Webauthn,
}

impl Method {
    pub const ALL: [Method; 4] = [Method::Totp, Method::Sms, Method::Email, Method::Webauthn];

    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Totp => "totp",
            Method::Sms => "sms",
            Method::Email => "email",
            Method::Webauthn => "webauthn",
        }
    }

    /// Resistant to phishing (NIST SP 800-63B 3.2.5): a code can be typed into a look-alike
    /// page and relayed; a WebAuthn answer is signed over the page's origin.
    pub fn phishing_resistant(&self) -> bool {
        matches!(self, Method::Webauthn)
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Enforcement {
    Off,
    /// Users may enrol; those who have are challenged.
    Optional,
    /// Required for users whose profile is listed; optional for nobody else.
    RequiredForProfiles {
        profiles: Vec<String>,
    },
    RequiredForAll,
}

/// An application of the integrator that users sign in through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientApp {
    pub id: String,
    /// False for clients that cannot show a second step (old desktop apps, IMAP, …).
    pub supports_2fa: bool,
    /// Users may create app passwords for this client (only for one that cannot show a
    /// second step): its way in while 2FA is required.
    #[serde(default)]
    pub app_passwords: bool,
}

/// A tenant's 2FA settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub methods: Vec<Method>,
    pub enforcement: Enforcement,
    /// From when 2FA is mandatory (Unix ms, UTC); `None`: from the next login.
    pub mandatory_from: Option<i64>,
    /// Days before `mandatory_from` in which users are reminded at login.
    pub reminder_days: u32,
    /// "Remember this device" lifetime; `None`: not offered.
    pub remember_device_days: Option<u32>,
    pub sso_exempt: bool,
    /// Hours after which sessions of users newly required to use 2FA are revoked, unless they
    /// completed 2FA.
    pub revoke_sessions_after_hours: u32,
    /// How long a "later" at the reminder is remembered.
    pub skip_hours: u32,
    pub clients: Vec<ClientApp>,
    /// Risk-based prompting (off unless the tenant turns it on).
    #[serde(default)]
    pub risk: crate::risk::RiskSettings,
    /// Profiles (e.g. `admin`) for whom only a phishing-resistant method counts once 2FA is
    /// mandatory: 2FA is required for them whatever the enforcement mode (unless off), and
    /// from `mandatory_from` on their codes no longer sign them in, only a security key does.
    /// Until then a code still does, so nobody drops to password-only while switching.
    #[serde(default)]
    pub phishing_resistant_profiles: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            methods: vec![Method::Totp],
            enforcement: Enforcement::Off,
            mandatory_from: None,
            reminder_days: 14,
            remember_device_days: None,
            sso_exempt: true,
            revoke_sessions_after_hours: 24,
            skip_hours: 24,
            clients: Vec::new(),
            risk: crate::risk::RiskSettings::default(),
            phishing_resistant_profiles: Vec::new(),
        }
    }
}

/// Unix milliseconds of UTC midnight on a `YYYY-MM-DD` date (proleptic Gregorian; years
/// 1970–9999), for deadlines typed into a form. `None` for anything else.
pub fn utc_date_ms(date: &str) -> Option<i64> {
    let mut parts = date.splitn(3, '-');
    let mut num = |len: usize| {
        parts
            .next()
            .filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i64>().ok())
    };
    let (y, m, d) = (num(4)?, num(2)?, num(2)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if y < 1970 || !(1..=12).contains(&m) || d < 1 || d > month_days[(m - 1) as usize] {
        return None;
    }
    // Days from 1970-01-01 (H. Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some((era * 146_097 + doe - 719_468) * DAY_MS)
}

fn invalid(field: &'static str, message: impl Into<String>) -> CoreError {
    CoreError::Invalid {
        field,
        message: message.into(),
    }
}

impl Policy {
    /// Checks the settings and puts them in canonical form (methods in offering order, no
    /// duplicates), so that equal policies hash equal. Returns warnings for the admin.
    pub fn validate(mut self) -> Result<(Self, Vec<String>), CoreError> {
        self.methods.sort();
        self.methods.dedup();
        if self.enforcement != Enforcement::Off && self.methods.is_empty() {
            return Err(invalid(
                "methods",
                "enable at least one method while two-step verification is on",
            ));
        }
        if let Enforcement::RequiredForProfiles { profiles } = &mut self.enforcement {
            for p in profiles.iter() {
                crate::types::Profile::parse(p)?;
            }
            profiles.sort();
            profiles.dedup();
            if profiles.is_empty() || profiles.len() > 100 {
                return Err(invalid("profiles", "name 1 to 100 profiles"));
            }
        }
        if self.reminder_days > 365 {
            return Err(invalid("reminder_days", "must be at most 365"));
        }
        if let Some(d) = self.remember_device_days {
            if !(1..=365).contains(&d) {
                return Err(invalid("remember_device_days", "must be 1 to 365"));
            }
        }
        if self.revoke_sessions_after_hours > 24 * 90 {
            return Err(invalid(
                "revoke_sessions_after_hours",
                "must be at most 2160 (90 days)",
            ));
        }
        if !(1..=24 * 30).contains(&self.skip_hours) {
            return Err(invalid("skip_hours", "must be 1 to 720"));
        }
        // Year 9999 at the latest: later dates only overflow the arithmetic built on them.
        if self
            .mandatory_from
            .is_some_and(|t| !(0..=253_402_300_799_000).contains(&t))
        {
            return Err(invalid(
                "mandatory_from",
                "must be a date between 1970 and 9999 (Unix milliseconds)",
            ));
        }
        self.clients.sort_by(|a, b| a.id.cmp(&b.id));
        if self.clients.windows(2).any(|w| w[0].id == w[1].id) {
            return Err(invalid("clients", "client ids must be unique"));
        }
        if self.clients.len() > 100 {
            return Err(invalid("clients", "at most 100 client apps"));
        }
        for c in &self.clients {
            if c.app_passwords && c.supports_2fa {
                return Err(invalid(
                    "clients",
                    "app passwords are only for client apps that cannot show a second step \
                     (supports_2fa false)",
                ));
            }
            let ok = (1..=64).contains(&c.id.len())
                && c.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !ok {
                return Err(invalid(
                    "clients",
                    "a client id is 1 to 64 characters of A-Z a-z 0-9 - _ .",
                ));
            }
        }
        self.risk.validate()?;
        let pr = &mut self.phishing_resistant_profiles;
        for p in pr.iter() {
            crate::types::Profile::parse(p)?;
        }
        pr.sort();
        pr.dedup();
        if pr.len() > 100 {
            return Err(invalid(
                "phishing_resistant_profiles",
                "name at most 100 profiles",
            ));
        }
        if !pr.is_empty() && !self.methods.iter().any(Method::phishing_resistant) {
            return Err(invalid(
                "phishing_resistant_profiles",
                "enable security keys (webauthn) to require a phishing-resistant method",
            ));
        }
        let mut warnings = Vec::new();
        if self.enforcement != Enforcement::Off && !self.methods.contains(&Method::Totp) {
            warnings.push(
                "only SMS and/or email are enabled: these are the weakest methods (codes can be \
                 intercepted or phished); enable the authenticator app as well"
                    .to_string(),
            );
        }
        Ok((self, warnings))
    }

    /// Whether 2FA is mandatory for a user with this profile (at some date).
    pub fn required_for(&self, profile: Option<&str>) -> bool {
        let listed = |profiles: &[String]| profile.is_some_and(|p| profiles.iter().any(|q| q == p));
        match &self.enforcement {
            Enforcement::Off => false,
            Enforcement::RequiredForAll => true,
            Enforcement::RequiredForProfiles { profiles } => {
                listed(profiles) || listed(&self.phishing_resistant_profiles)
            }
            Enforcement::Optional => listed(&self.phishing_resistant_profiles),
        }
    }

    /// Whether only a phishing-resistant method counts for this profile.
    pub fn phishing_resistant_for(&self, profile: Option<&str>) -> bool {
        self.enforcement != Enforcement::Off
            && profile.is_some_and(|p| self.phishing_resistant_profiles.iter().any(|q| q == p))
    }

    /// Only a phishing-resistant method signs this profile in now: what a code earned before
    /// (a remembered device, a familiar network, an app password) no longer stands in for it.
    pub fn keys_only(&self, profile: Option<&str>, now: i64) -> bool {
        self.phishing_resistant_for(profile) && phase(self, profile, now) == Phase::Required
    }

    /// The methods that sign this user in (and that they may enrol) at `now`: the enabled
    /// ones, narrowed to the phishing-resistant ones once 2FA is mandatory for a profile that
    /// needs them.
    pub fn allowed_methods(&self, profile: Option<&str>, now: i64) -> Vec<Method> {
        let strict = self.keys_only(profile, now);
        self.methods
            .iter()
            .copied()
            .filter(|m| !strict || m.phishing_resistant())
            .collect()
    }

    pub fn client(&self, id: &str) -> Option<&ClientApp> {
        self.clients.iter().find(|c| c.id == id)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrimaryMethod {
    Password,
    Sso,
}

impl PrimaryMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "password" => Some(Self::Password),
            "sso" => Some(Self::Sso),
            _ => None,
        }
    }
}

/// What the decision needs to know about the user and this login.
#[derive(Debug, Clone)]
pub struct LoginFacts<'a> {
    pub profile: Option<&'a str>,
    /// (method, locked) of each active factor.
    pub factors: Vec<(Method, bool)>,
    pub primary: PrimaryMethod,
    /// `None` when the integrator named no client app.
    pub client_supports_2fa: Option<bool>,
    /// A valid "remember this device" token for this user and credential generation.
    pub trusted_device: bool,
    /// The tenant's risk rules are on and found this login familiar (a known device, or a
    /// known network in a known country, and no impossible travel).
    pub familiar: bool,
    /// Until when an earlier "later" at the reminder holds.
    pub skipped_until: Option<i64>,
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowReason {
    NotRequired,
    /// Required later; the reminder window has not begun.
    NotRequiredYet,
    SsoExempt,
    TrustedDevice,
    /// The user chose "later" at the reminder.
    Skipped,
    /// The second step was completed.
    SecondFactor,
    /// A client that cannot show a second step presented the user's app password for it.
    AppPassword,
    /// Risk-based prompting: a familiar device or network (see [`crate::risk`]).
    Familiar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    ClientUnsupported,
    Locked,
    /// An app password was presented that is not a live one of this user for this client.
    AppPasswordInvalid,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Allow {
        reason: AllowReason,
    },
    Challenge {
        methods: Vec<Method>,
    },
    EnrollRequired {
        methods: Vec<Method>,
    },
    EnrollOffered {
        methods: Vec<Method>,
        deadline: Option<i64>,
        days_left: Option<i64>,
    },
    Deny {
        reason: DenyReason,
    },
}

impl AllowReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            AllowReason::NotRequired => "not_required",
            AllowReason::NotRequiredYet => "not_required_yet",
            AllowReason::SsoExempt => "sso_exempt",
            AllowReason::TrustedDevice => "trusted_device",
            AllowReason::Skipped => "skipped",
            AllowReason::SecondFactor => "second_factor",
            AllowReason::AppPassword => "app_password",
            AllowReason::Familiar => "familiar",
        }
    }
}

impl DenyReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            DenyReason::ClientUnsupported => "client_unsupported",
            DenyReason::Locked => "locked",
            DenyReason::AppPasswordInvalid => "app_password_invalid",
        }
    }
}

impl Decision {
    /// Why an `allow` or `deny`, for the answer and the audit row.
    pub fn reason(&self) -> Option<String> {
        match self {
            Decision::Allow { reason } => Some(reason.as_str().into()),
            Decision::Deny { reason } => Some(reason.as_str().into()),
            _ => None,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Challenge { .. } => "challenge",
            Decision::EnrollRequired { .. } => "enroll_required",
            Decision::EnrollOffered { .. } => "enroll_offered",
            Decision::Deny { .. } => "deny",
        }
    }
}

/// Where a user stands against the mandatory date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    NotRequired,
    BeforeReminder,
    Reminder { deadline: i64 },
    Required,
}

pub fn phase(policy: &Policy, profile: Option<&str>, now: i64) -> Phase {
    if !policy.required_for(profile) {
        return Phase::NotRequired;
    }
    match policy.mandatory_from {
        None => Phase::Required,
        Some(deadline) if now >= deadline => Phase::Required,
        Some(deadline) if now >= deadline - i64::from(policy.reminder_days) * DAY_MS => {
            Phase::Reminder { deadline }
        }
        Some(_) => Phase::BeforeReminder,
    }
}

/// The login decision; see the module's diagram.
pub fn decide(policy: &Policy, facts: &LoginFacts<'_>) -> Decision {
    use Decision::*;
    if policy.enforcement == Enforcement::Off {
        return Allow {
            reason: AllowReason::NotRequired,
        };
    }
    if facts.primary == PrimaryMethod::Sso && policy.sso_exempt {
        return Allow {
            reason: AllowReason::SsoExempt,
        };
    }
    let allowed = policy.allowed_methods(facts.profile, facts.now);
    let usable: Vec<(Method, bool)> = facts
        .factors
        .iter()
        .copied()
        .filter(|(m, _)| allowed.contains(m))
        .collect();
    let phase = phase(policy, facts.profile, facts.now);
    let optional = policy.enforcement == Enforcement::Optional;
    let client_ok = facts.client_supports_2fa != Some(false);
    if !usable.is_empty() {
        if usable.iter().all(|(_, locked)| *locked) {
            return Deny {
                reason: DenyReason::Locked,
            };
        }
        // A client that cannot show the second step must not become the way around it.
        if !client_ok {
            return Deny {
                reason: DenyReason::ClientUnsupported,
            };
        }
        let keys_only = policy.keys_only(facts.profile, facts.now);
        if facts.trusted_device && policy.remember_device_days.is_some() && !keys_only {
            return Allow {
                reason: AllowReason::TrustedDevice,
            };
        }
        if facts.familiar && policy.risk.mode == crate::risk::RiskMode::Adaptive && !keys_only {
            return Allow {
                reason: AllowReason::Familiar,
            };
        }
        let mut methods: Vec<Method> = usable
            .iter()
            .filter(|(_, locked)| !locked)
            .map(|(m, _)| *m)
            .collect();
        methods.sort();
        methods.dedup();
        return Challenge { methods };
    }
    let skipped = facts.skipped_until.is_some_and(|t| t > facts.now);
    match phase {
        Phase::Required if !client_ok => Deny {
            reason: DenyReason::ClientUnsupported,
        },
        Phase::Required => EnrollRequired { methods: allowed },
        Phase::Reminder { .. } | Phase::NotRequired if skipped => Allow {
            reason: AllowReason::Skipped,
        },
        // Offering enrolment needs a client that can show it.
        Phase::Reminder { .. } | Phase::NotRequired if !client_ok => Allow {
            reason: if matches!(phase, Phase::Reminder { .. }) {
                AllowReason::NotRequiredYet
            } else {
                AllowReason::NotRequired
            },
        },
        Phase::Reminder { deadline } => EnrollOffered {
            methods: allowed,
            deadline: Some(deadline),
            days_left: Some((deadline - facts.now + DAY_MS - 1) / DAY_MS),
        },
        Phase::NotRequired if optional => EnrollOffered {
            methods: allowed,
            deadline: None,
            days_left: None,
        },
        Phase::NotRequired => Allow {
            reason: AllowReason::NotRequired,
        },
        Phase::BeforeReminder => Allow {
            reason: AllowReason::NotRequiredYet,
        },
    }
}

/// Whether "later" may be chosen now: never once 2FA is mandatory for the user.
pub fn may_skip(policy: &Policy, profile: Option<&str>, now: i64) -> bool {
    !matches!(phase(policy, profile, now), Phase::Required)
}

/// When a skip chosen at `now` stops holding.
pub fn skip_until(policy: &Policy, now: i64) -> i64 {
    now + i64::from(policy.skip_hours) * HOUR_MS
}

/// What a user who has no factor may do, at `now`, instead of enrolling: the answer behind
/// the hosted enrolment page's "Later" / "Not now" (and the same rule as [`may_skip`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postpone {
    /// Two-step verification is mandatory for the user now: enrol (or give up the sign-in).
    Never,
    /// The organisation lets users choose: "Not now", and no date to count down to.
    Optional,
    /// Mandatory from `deadline`, which is `days` calendar days away ([`days_until`]).
    Until { deadline: i64, days: i64 },
}

pub fn postpone(policy: &Policy, profile: Option<&str>, now: i64) -> Postpone {
    let until = |deadline| Postpone::Until {
        deadline,
        days: days_until(deadline, now),
    };
    match phase(policy, profile, now) {
        Phase::Required => Postpone::Never,
        Phase::Reminder { deadline } => until(deadline),
        // Before the reminder window a login is not asked to enrol; a login that was (the
        // policy changed meanwhile) still counts down to the date.
        Phase::BeforeReminder => policy.mandatory_from.map_or(Postpone::Optional, until),
        Phase::NotRequired => Postpone::Optional,
    }
}

/// The number of calendar days (UTC) from `now` to `deadline`: 0 when the deadline is later
/// today, 1 when it is tomorrow. Calendar days rather than 24-hour periods, so the count
/// agrees with the date shown beside it ("in 1 day, on 2026-12-10 00:00 UTC"); for a deadline
/// at midnight UTC (a date, the usual case) it equals the decision's rounded-up `days_left`.
pub fn days_until(deadline: i64, now: i64) -> i64 {
    (deadline.div_euclid(DAY_MS) - now.div_euclid(DAY_MS)).max(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    #[test]
    fn form_dates_are_utc_midnights() {
        assert_eq!(utc_date_ms("1970-01-01"), Some(0));
        // 2026-11-26T00:00:00Z
        assert_eq!(utc_date_ms("2026-11-26"), Some(1_795_651_200_000));
        assert_eq!(utc_date_ms("2024-02-29"), Some(1_709_164_800_000));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-00-10",
            "26-11-26",
            "2026-11-26x",
            "",
            "2026/11/26",
        ] {
            assert_eq!(utc_date_ms(bad), None, "{bad}");
        }
    }
    use super::*;
    use AllowReason::*;
    use Decision::*;

    const NOW: i64 = 1_795_651_200_000;

    fn policy(enforcement: Enforcement, mandatory_from: Option<i64>) -> Policy {
        Policy {
            methods: vec![Method::Totp, Method::Sms],
            enforcement,
            mandatory_from,
            remember_device_days: Some(30),
            ..Policy::default()
        }
    }

    /// The enforcement × profile × phase × SSO × client × device × factors table.
    #[test]
    fn the_decision_table() {
        let all = Enforcement::RequiredForAll;
        let admins = Enforcement::RequiredForProfiles {
            profiles: vec!["admin".into()],
        };
        let deadline_past = Some(NOW - DAY_MS);
        let in_window = Some(NOW + 3 * DAY_MS + 1);
        let far = Some(NOW + 60 * DAY_MS);
        let totp = vec![(Method::Totp, false)];
        let locked = vec![(Method::Totp, true)];
        let email_only = vec![(Method::Email, false)];
        let none: Vec<(Method, bool)> = vec![];
        let challenge = Challenge {
            methods: vec![Method::Totp],
        };
        let enroll = EnrollRequired {
            methods: vec![Method::Totp, Method::Sms],
        };
        let offered = |deadline: Option<i64>, days: Option<i64>| EnrollOffered {
            methods: vec![Method::Totp, Method::Sms],
            deadline,
            days_left: days,
        };
        let deny_client = Deny {
            reason: DenyReason::ClientUnsupported,
        };
        use PrimaryMethod::{Password as Pw, Sso};
        // (enforcement, mandatory_from, profile, primary, client 2fa, trusted, skipped, factors) → decision
        type Row<'a> = (
            Enforcement,
            Option<i64>,
            Option<&'a str>,
            PrimaryMethod,
            Option<bool>,
            bool,
            bool,
            &'a Vec<(Method, bool)>,
            Decision,
        );
        let allow = |reason| Allow { reason };
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            // Off: nobody is asked, even with factors.
            (Enforcement::Off, None, None, Pw, None, false, false, &totp, allow(NotRequired)),
            // Required for all, deadline passed or none.
            (all.clone(), None, None, Pw, None, false, false, &totp, challenge.clone()),
            (all.clone(), deadline_past, None, Pw, None, false, false, &none, enroll.clone()),
            (all.clone(), None, None, Pw, Some(true), false, false, &none, enroll.clone()),
            (all.clone(), None, None, Pw, Some(false), false, false, &none, deny_client.clone()),
            (all.clone(), None, None, Pw, Some(false), false, false, &totp, deny_client.clone()),
            (all.clone(), None, None, Pw, None, true, false, &totp, allow(TrustedDevice)),
            (all.clone(), None, None, Pw, None, true, false, &none, enroll.clone()),
            (all.clone(), None, None, Pw, None, false, false, &locked, Deny { reason: DenyReason::Locked }),
            (all.clone(), None, None, Pw, None, false, true, &none, enroll.clone()),
            // A factor of a method switched off does not count.
            (all.clone(), None, None, Pw, None, false, false, &email_only, enroll.clone()),
            // SSO exempt.
            (all.clone(), None, None, Sso, None, false, false, &none, allow(SsoExempt)),
            (all.clone(), None, None, Sso, Some(false), false, false, &totp, allow(SsoExempt)),
            // Reminder window: offered with the days left, skippable; a client without 2FA
            // passes for now.
            (all.clone(), in_window, None, Pw, None, false, false, &none, offered(in_window, Some(4))),
            (all.clone(), in_window, None, Pw, None, false, true, &none, allow(Skipped)),
            (all.clone(), in_window, None, Pw, Some(false), false, false, &none, allow(NotRequiredYet)),
            (all.clone(), in_window, None, Pw, None, false, false, &totp, challenge.clone()),
            // Before the reminder window.
            (all.clone(), far, None, Pw, None, false, false, &none, allow(NotRequiredYet)),
            (all.clone(), far, None, Pw, None, false, false, &totp, challenge.clone()),
            // Required for profiles.
            (admins.clone(), None, Some("admin"), Pw, None, false, false, &none, enroll.clone()),
            (admins.clone(), None, Some("staff"), Pw, None, false, false, &none, allow(NotRequired)),
            (admins.clone(), None, None, Pw, None, false, false, &none, allow(NotRequired)),
            (admins.clone(), None, Some("staff"), Pw, None, false, false, &totp, challenge.clone()),
            (admins.clone(), None, Some("staff"), Pw, Some(false), false, false, &none, allow(NotRequired)),
            // Optional.
            (Enforcement::Optional, None, None, Pw, None, false, false, &none, offered(None, None)),
            (Enforcement::Optional, None, None, Pw, None, false, true, &none, allow(Skipped)),
            (Enforcement::Optional, None, None, Pw, None, false, false, &totp, challenge.clone()),
            (Enforcement::Optional, None, None, Pw, Some(false), false, false, &totp, deny_client.clone()),
            (Enforcement::Optional, None, None, Pw, Some(false), false, false, &none, allow(NotRequired)),
        ];
        for (
            i,
            (
                enforcement,
                mandatory_from,
                profile,
                primary,
                client,
                trusted,
                skipped,
                factors,
                want,
            ),
        ) in rows.into_iter().enumerate()
        {
            let p = policy(enforcement, mandatory_from);
            let facts = LoginFacts {
                profile,
                factors: factors.clone(),
                primary,
                client_supports_2fa: client,
                trusted_device: trusted,
                familiar: false,
                skipped_until: skipped.then_some(NOW + HOUR_MS),
                now: NOW,
            };
            assert_eq!(decide(&p, &facts), want, "row {i}: {facts:?}");
        }
    }

    /// Profiles that need a phishing-resistant method: required for them in every mode but
    /// off; until the deadline their codes still sign them in (nobody drops to password-only
    /// while switching); from then only a security key does, and enrolment offers only keys.
    #[test]
    fn phishing_resistant_profiles_count_only_keys_once_mandatory() {
        let deadline = NOW + 5 * DAY_MS;
        let p = |enforcement, from| Policy {
            methods: vec![Method::Totp, Method::Webauthn],
            phishing_resistant_profiles: vec!["admin".into()],
            ..policy(enforcement, from)
        };
        let facts = |profile, factors: Vec<(Method, bool)>, now| LoginFacts {
            profile,
            factors,
            primary: PrimaryMethod::Password,
            client_supports_2fa: None,
            trusted_device: false,
            familiar: false,
            skipped_until: None,
            now,
        };
        let totp = || vec![(Method::Totp, false)];
        let both = || vec![(Method::Totp, false), (Method::Webauthn, false)];
        let keys_only = EnrollRequired {
            methods: vec![Method::Webauthn],
        };
        let optional = p(Enforcement::Optional, Some(deadline));
        // Before the deadline an admin's app still works; after it, it no longer counts.
        let before = facts(Some("admin"), totp(), NOW);
        assert_eq!(
            decide(&optional, &before),
            Challenge {
                methods: vec![Method::Totp]
            }
        );
        let after = facts(Some("admin"), totp(), deadline);
        assert_eq!(decide(&optional, &after), keys_only);
        // With a key too, only the key is asked for.
        let with_key = facts(Some("admin"), both(), deadline);
        assert_eq!(
            decide(&optional, &with_key),
            Challenge {
                methods: vec![Method::Webauthn]
            }
        );
        // A device remembered after a code does not stand in for the key.
        let remembered = LoginFacts {
            trusted_device: true,
            familiar: true,
            ..facts(Some("admin"), both(), deadline)
        };
        assert_eq!(
            decide(&optional, &remembered),
            Challenge {
                methods: vec![Method::Webauthn]
            }
        );
        assert!(
            optional.keys_only(Some("admin"), deadline) && !optional.keys_only(Some("admin"), NOW)
        );
        // Someone else keeps every method, and stays optional.
        let staff = facts(Some("staff"), totp(), deadline);
        assert_eq!(
            decide(&optional, &staff),
            Challenge {
                methods: vec![Method::Totp]
            }
        );
        assert!(optional.required_for(Some("admin")) && !optional.required_for(Some("staff")));
        assert_eq!(
            optional.allowed_methods(Some("admin"), deadline),
            [Method::Webauthn]
        );
        assert_eq!(
            optional.allowed_methods(None, deadline),
            [Method::Totp, Method::Webauthn]
        );
        // Off is off for everyone.
        let off = p(Enforcement::Off, None);
        assert!(!off.required_for(Some("admin")) && !off.phishing_resistant_for(Some("admin")));
        assert_eq!(
            decide(&off, &facts(Some("admin"), totp(), NOW)),
            Allow {
                reason: AllowReason::NotRequired
            }
        );
        // Without a date it holds from the next login.
        let now = p(Enforcement::RequiredForAll, None);
        assert_eq!(decide(&now, &facts(Some("admin"), totp(), NOW)), keys_only);
        // The setting needs keys enabled, and names valid profiles.
        let no_keys = Policy {
            methods: vec![Method::Totp],
            ..p(Enforcement::Optional, None)
        };
        assert!(no_keys.validate().is_err());
        let bad = Policy {
            phishing_resistant_profiles: vec!["a b".into()],
            ..p(Enforcement::Optional, None)
        };
        assert!(bad.validate().is_err());
        let (ok, _) = Policy {
            phishing_resistant_profiles: vec!["admin".into(), "admin".into()],
            ..p(Enforcement::Optional, None)
        }
        .validate()
        .unwrap();
        assert_eq!(ok.phishing_resistant_profiles, ["admin"]);
    }

    #[test]
    fn phases_turn_at_the_exact_millisecond() {
        let deadline = NOW + 14 * DAY_MS;
        let p = policy(Enforcement::RequiredForAll, Some(deadline));
        assert_eq!(phase(&p, None, NOW - 1), Phase::BeforeReminder);
        assert_eq!(phase(&p, None, NOW), Phase::Reminder { deadline });
        assert_eq!(phase(&p, None, deadline - 1), Phase::Reminder { deadline });
        assert_eq!(phase(&p, None, deadline), Phase::Required);
        assert!(may_skip(&p, None, deadline - 1));
        assert!(!may_skip(&p, None, deadline));
        // Days left round up: one millisecond before the deadline is "1 day".
        let facts = |now| LoginFacts {
            profile: None,
            factors: vec![],
            primary: PrimaryMethod::Password,
            client_supports_2fa: None,
            trusted_device: false,
            familiar: false,
            skipped_until: None,
            now,
        };
        assert!(matches!(
            decide(&p, &facts(deadline - 1)),
            Decision::EnrollOffered {
                days_left: Some(1),
                ..
            }
        ));
        // Dates after 2038.
        let late = 4_102_444_800_000; // 2100-01-01
        let p = policy(Enforcement::RequiredForAll, Some(late));
        assert_eq!(
            phase(&p, None, late - 1),
            Phase::Reminder { deadline: late }
        );
        assert_eq!(phase(&p, None, late), Phase::Required);
    }

    #[test]
    fn the_countdown_counts_calendar_days_and_ends_at_the_deadline() {
        // NOW is midnight UTC; a deadline ten days on at midnight.
        let deadline = NOW + 10 * DAY_MS;
        let p = policy(Enforcement::RequiredForAll, Some(deadline));
        let until = |days| Postpone::Until { deadline, days };
        assert_eq!(postpone(&p, None, NOW), until(10));
        assert_eq!(postpone(&p, None, NOW + 13 * HOUR_MS), until(10));
        // The last day: tomorrow at midnight is "1 day", like the rounded-up days_left.
        assert_eq!(postpone(&p, None, deadline - 1), until(1));
        assert_eq!(postpone(&p, None, deadline), Postpone::Never);
        // A deadline in the afternoon: "today" in its morning, "1 day" the evening before.
        let afternoon = NOW + 15 * HOUR_MS;
        let p = policy(Enforcement::RequiredForAll, Some(afternoon));
        let today = Postpone::Until {
            deadline: afternoon,
            days: 0,
        };
        assert_eq!(postpone(&p, None, NOW + 9 * HOUR_MS), today);
        assert_eq!(
            postpone(&p, None, NOW - 3 * HOUR_MS),
            Postpone::Until {
                deadline: afternoon,
                days: 1
            }
        );
        assert_eq!(postpone(&p, None, afternoon), Postpone::Never);
        // Optional: no date; required with no date: never; before the reminder window the
        // date still counts down.
        let p = policy(Enforcement::Optional, None);
        assert_eq!(postpone(&p, None, NOW), Postpone::Optional);
        let p = policy(Enforcement::RequiredForAll, None);
        assert_eq!(postpone(&p, None, NOW), Postpone::Never);
        let far = NOW + 40 * DAY_MS;
        let p = policy(Enforcement::RequiredForAll, Some(far));
        assert_eq!(
            postpone(&p, None, NOW),
            Postpone::Until {
                deadline: far,
                days: 40
            }
        );
        // The rule is may_skip's.
        for now in [NOW, far - 1, far, far + DAY_MS] {
            assert_eq!(
                postpone(&p, None, now) != Postpone::Never,
                may_skip(&p, None, now)
            );
        }
        // After 2038, and never negative.
        let late = 4_102_444_800_000; // 2100-01-01
        assert_eq!(days_until(late, late - DAY_MS), 1);
        assert_eq!(days_until(NOW, NOW + DAY_MS), 0);
    }

    #[test]
    fn trusted_devices_count_only_where_the_tenant_allows_them() {
        let mut p = policy(Enforcement::RequiredForAll, None);
        p.remember_device_days = None;
        let facts = LoginFacts {
            profile: None,
            factors: vec![(Method::Totp, false)],
            primary: PrimaryMethod::Password,
            client_supports_2fa: None,
            trusted_device: true,
            familiar: false,
            skipped_until: None,
            now: NOW,
        };
        assert!(matches!(decide(&p, &facts), Decision::Challenge { .. }));
    }

    #[test]
    fn a_familiar_login_skips_the_code_only_in_adaptive_mode_and_never_past_a_lock() {
        let mut p = policy(Enforcement::RequiredForAll, None);
        let facts = |factors: Vec<(Method, bool)>, client| LoginFacts {
            profile: None,
            factors,
            primary: PrimaryMethod::Password,
            client_supports_2fa: client,
            trusted_device: false,
            familiar: true,
            skipped_until: None,
            now: NOW,
        };
        let totp = vec![(Method::Totp, false)];
        assert!(matches!(
            decide(&p, &facts(totp.clone(), None)),
            Decision::Challenge { .. }
        ));
        p.risk.mode = crate::risk::RiskMode::Adaptive;
        assert_eq!(
            decide(&p, &facts(totp.clone(), None)),
            Decision::Allow {
                reason: AllowReason::Familiar
            }
        );
        // Familiarity never opens a locked account, a client that cannot do 2FA, or skips
        // enrolment.
        assert!(matches!(
            decide(&p, &facts(vec![(Method::Totp, true)], None)),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            decide(&p, &facts(totp, Some(false))),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            decide(&p, &facts(vec![], None)),
            Decision::EnrollRequired { .. }
        ));
    }

    #[test]
    fn validation_canonicalises_and_warns() {
        let (p, warnings) = Policy {
            methods: vec![Method::Sms, Method::Sms],
            enforcement: Enforcement::RequiredForProfiles {
                profiles: vec!["b".into(), "a".into(), "a".into()],
            },
            ..Policy::default()
        }
        .validate()
        .unwrap();
        assert_eq!(p.methods, vec![Method::Sms]);
        assert_eq!(
            p.enforcement,
            Enforcement::RequiredForProfiles {
                profiles: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(warnings.len(), 1);
        for bad in [
            Policy {
                methods: vec![],
                enforcement: Enforcement::Optional,
                ..Policy::default()
            },
            Policy {
                enforcement: Enforcement::RequiredForProfiles { profiles: vec![] },
                ..Policy::default()
            },
            Policy {
                remember_device_days: Some(0),
                ..Policy::default()
            },
            Policy {
                skip_hours: 0,
                ..Policy::default()
            },
            Policy {
                clients: vec![
                    ClientApp {
                        id: "x".into(),
                        supports_2fa: true,
                        app_passwords: false,
                    },
                    ClientApp {
                        id: "x".into(),
                        supports_2fa: false,
                        app_passwords: false,
                    },
                ],
                ..Policy::default()
            },
            Policy {
                clients: vec![ClientApp {
                    id: "web".into(),
                    supports_2fa: true,
                    app_passwords: true,
                }],
                ..Policy::default()
            },
        ] {
            assert!(bad.clone().validate().is_err(), "{bad:?}");
        }
    }
}
