//! Where an organisation stands in its 2FA rollout: who has enrolled, who still may, and who
//! is past the deadline. Admins watch this while 2FA goes from "optional" to "required"
//! (the console's progress view); integrators read it through the API.
//!
//! Pure: the status follows from the current policy, the user's profile, the methods of their
//! active factors and `now`, by the same rules as the login decision ([`crate::policy::phase`]),
//! so the report never says "enrolled" of a user whom the next login would send to enrolment.
//!
//! ```text
//!  an active factor of a method the org enables ─────────▶ enrolled
//!  otherwise, 2FA required for the user's profile:
//!      before the deadline (reminder window or earlier) ─▶ pending
//!      at or after the deadline, or no deadline ─────────▶ overdue (next login must enrol)
//!  otherwise, enforcement optional ───────────────────────▶ optional
//!  otherwise ─────────────────────────────────────────────▶ not_required
//! ```

use crate::policy::{phase, Enforcement, Method, Phase, Policy, DAY_MS};
use serde::Serialize;

/// The methods of a user's active factors, as a small set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MethodSet(u8);

impl MethodSet {
    /// The bit of a method; stores compute the same bits in SQL (see [`MethodSet::from_bits`]).
    pub const fn bit(m: Method) -> u8 {
        match m {
            Method::Totp => 1,
            Method::Sms => 2,
            Method::Email => 4,
            Method::Webauthn => 8,
        }
    }

    /// From the bits a store computed; bits of no known method are dropped.
    pub fn from_bits(bits: i64) -> Self {
        Self((bits & 15) as u8)
    }

    /// From factor kinds (`totp`, `sms`, `email`, `webauthn`); other kinds are not 2FA methods.
    pub fn from_kinds<'a>(kinds: impl IntoIterator<Item = &'a str>) -> Self {
        kinds
            .into_iter()
            .filter_map(Method::parse)
            .fold(Self::default(), |s, m| s.with(m))
    }

    pub fn with(self, m: Method) -> Self {
        Self(self.0 | Self::bit(m))
    }

    pub fn contains(self, m: Method) -> bool {
        self.0 & Self::bit(m) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Method> {
        Method::ALL.into_iter().filter(move |m| self.contains(*m))
    }

    /// Only the methods that sign this profile in at `now` ([`Policy::allowed_methods`]).
    pub fn usable(self, policy: &Policy, profile: Option<&str>, now: i64) -> Self {
        let allowed = policy.allowed_methods(profile, now);
        self.iter()
            .filter(|m| allowed.contains(m))
            .fold(Self::default(), |s, m| s.with(m))
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// One user's place in the rollout; see the module's diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    Enrolled,
    Pending,
    Overdue,
    Optional,
    NotRequired,
}

impl RolloutStatus {
    pub const ALL: [RolloutStatus; 5] = [
        Self::Enrolled,
        Self::Pending,
        Self::Overdue,
        Self::Optional,
        Self::NotRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrolled => "enrolled",
            Self::Pending => "pending",
            Self::Overdue => "overdue",
            Self::Optional => "optional",
            Self::NotRequired => "not_required",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// See the module's diagram.
pub fn status(
    policy: &Policy,
    profile: Option<&str>,
    methods: MethodSet,
    now: i64,
) -> RolloutStatus {
    if policy.enforcement == Enforcement::Off {
        return RolloutStatus::NotRequired;
    }
    if !methods.usable(policy, profile, now).is_empty() {
        return RolloutStatus::Enrolled;
    }
    match phase(policy, profile, now) {
        Phase::Required => RolloutStatus::Overdue,
        Phase::Reminder { .. } | Phase::BeforeReminder => RolloutStatus::Pending,
        Phase::NotRequired if policy.enforcement == Enforcement::Optional => {
            RolloutStatus::Optional
        }
        Phase::NotRequired => RolloutStatus::NotRequired,
    }
}

/// Users who share a profile and a set of active methods, as a store counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodGroup {
    pub profile: Option<String>,
    pub methods: MethodSet,
    pub users: u64,
}

/// The rollout at a glance.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RolloutReport {
    pub total: u64,
    pub enrolled: u64,
    pub pending: u64,
    pub overdue: u64,
    pub optional: u64,
    pub not_required: u64,
    /// Users with an active factor of each method (a user with two methods counts twice;
    /// methods the org no longer enables are counted too, so admins see who relies on them).
    pub by_method: MethodCounts,
    /// When 2FA became or becomes mandatory; `None` for "from the next login" or not at all.
    pub deadline: Option<i64>,
    /// Whole days until the deadline, rounded up; 0 once it has passed.
    pub days_left: Option<i64>,
    /// Enrolled users among those for whom 2FA is required or optional, in per cent (one
    /// decimal); `None` when there are none.
    pub progress_percent: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MethodCounts {
    pub totp: u64,
    pub sms: u64,
    pub email: u64,
    pub webauthn: u64,
}

/// Sums the groups a store counted into the report.
pub fn summarize(policy: &Policy, groups: &[MethodGroup], now: i64) -> RolloutReport {
    let mut r = RolloutReport::default();
    for g in groups {
        r.total += g.users;
        let slot = match status(policy, g.profile.as_deref(), g.methods, now) {
            RolloutStatus::Enrolled => &mut r.enrolled,
            RolloutStatus::Pending => &mut r.pending,
            RolloutStatus::Overdue => &mut r.overdue,
            RolloutStatus::Optional => &mut r.optional,
            RolloutStatus::NotRequired => &mut r.not_required,
        };
        *slot += g.users;
        for m in g.methods.iter() {
            match m {
                Method::Totp => r.by_method.totp += g.users,
                Method::Sms => r.by_method.sms += g.users,
                Method::Email => r.by_method.email += g.users,
                Method::Webauthn => r.by_method.webauthn += g.users,
            }
        }
    }
    if policy.enforcement != Enforcement::Off {
        r.deadline = policy.mandatory_from;
        r.days_left = policy
            .mandatory_from
            .map(|d| ((d - now).max(0) + DAY_MS - 1) / DAY_MS);
    }
    let in_scope = r.enrolled + r.pending + r.overdue + r.optional;
    if in_scope > 0 {
        r.progress_percent = Some((r.enrolled as f64 * 1000.0 / in_scope as f64).round() / 10.0);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn policy(enforcement: Enforcement, deadline: Option<i64>) -> Policy {
        Policy {
            methods: vec![Method::Totp, Method::Sms],
            enforcement,
            mandatory_from: deadline,
            ..Policy::default()
        }
    }

    fn set(kinds: &[&str]) -> MethodSet {
        MethodSet::from_kinds(kinds.iter().copied())
    }

    #[test]
    fn method_sets_keep_known_methods_only() {
        let s = set(&["totp", "email", "u2f", "totp"]);
        assert!(s.contains(Method::Totp) && s.contains(Method::Email));
        assert!(!s.contains(Method::Sms) && !s.contains(Method::Webauthn));
        assert_eq!(s, MethodSet::from_bits(1 | 4 | 64));
        assert_eq!(s.iter().collect::<Vec<_>>(), [Method::Totp, Method::Email]);
        let keys = set(&["webauthn"]);
        assert_eq!(keys, MethodSet::from_bits(8));
        assert_eq!(keys.iter().collect::<Vec<_>>(), [Method::Webauthn]);
        assert!(MethodSet::default().is_empty());
    }

    /// A profile that needs keys is enrolled with an app only until the date; after it, it is
    /// overdue until it has a key, like the login decision says.
    #[test]
    fn keys_only_profiles_are_overdue_with_an_app_after_the_date() {
        let now = 1_800_000_000_000;
        let p = |from| Policy {
            methods: vec![Method::Totp, Method::Webauthn],
            phishing_resistant_profiles: vec!["admin".into()],
            mandatory_from: from,
            ..Policy::default()
        };
        let optional = Policy {
            enforcement: Enforcement::Optional,
            ..p(Some(now + DAY_MS))
        };
        let app = set(&["totp"]);
        assert_eq!(
            status(&optional, Some("admin"), app, now),
            RolloutStatus::Enrolled
        );
        assert_eq!(
            status(&optional, Some("admin"), app, now + DAY_MS),
            RolloutStatus::Overdue
        );
        let key = set(&["webauthn"]);
        assert_eq!(
            status(&optional, Some("admin"), key, now + DAY_MS),
            RolloutStatus::Enrolled
        );
        assert_eq!(
            status(&optional, Some("staff"), app, now + DAY_MS),
            RolloutStatus::Enrolled
        );
        assert_eq!(
            status(&optional, Some("staff"), MethodSet::default(), now),
            RolloutStatus::Optional
        );
    }

    /// Enforcement, deadline, profile, factor kinds, expected status.
    type Case<'a> = (
        Enforcement,
        Option<i64>,
        Option<&'a str>,
        &'a [&'a str],
        RolloutStatus,
    );

    #[test]
    fn the_status_table() {
        use RolloutStatus::*;
        let later = Some(NOW + 30 * DAY_MS);
        let soon = Some(NOW + DAY_MS);
        let past = Some(NOW - 1);
        let admins = Enforcement::RequiredForProfiles {
            profiles: vec!["admin".into()],
        };
        let cases: &[Case] = &[
            (Enforcement::Off, None, None, &["totp"], NotRequired),
            (Enforcement::Off, None, None, &[], NotRequired),
            (Enforcement::Optional, None, None, &[], Optional),
            (Enforcement::Optional, None, None, &["sms"], Enrolled),
            // An email factor while the org enables only TOTP and SMS cannot be used.
            (Enforcement::Optional, None, None, &["email"], Optional),
            (Enforcement::RequiredForAll, None, None, &[], Overdue),
            (Enforcement::RequiredForAll, past, None, &[], Overdue),
            (Enforcement::RequiredForAll, soon, None, &[], Pending),
            (Enforcement::RequiredForAll, later, None, &[], Pending),
            (Enforcement::RequiredForAll, past, None, &["totp"], Enrolled),
            (Enforcement::RequiredForAll, past, None, &["email"], Overdue),
            (admins.clone(), past, Some("admin"), &[], Overdue),
            (admins.clone(), past, Some("staff"), &[], NotRequired),
            (admins.clone(), past, None, &[], NotRequired),
            (admins, past, Some("staff"), &["totp"], Enrolled),
        ];
        for (i, (enf, deadline, profile, kinds, want)) in cases.iter().enumerate() {
            let p = policy(enf.clone(), *deadline);
            assert_eq!(status(&p, *profile, set(kinds), NOW), *want, "case {i}");
        }
    }

    #[test]
    fn the_deadline_turns_pending_into_overdue_at_the_exact_millisecond() {
        let deadline = NOW + 5 * DAY_MS;
        let p = policy(Enforcement::RequiredForAll, Some(deadline));
        assert_eq!(
            status(&p, None, set(&[]), deadline - 1),
            RolloutStatus::Pending
        );
        assert_eq!(status(&p, None, set(&[]), deadline), RolloutStatus::Overdue);
    }

    #[test]
    fn summaries_count_every_user_once_and_methods_per_user() {
        let p = Policy {
            enforcement: Enforcement::RequiredForProfiles {
                profiles: vec!["admin".into()],
            },
            mandatory_from: Some(NOW + DAY_MS + 1),
            ..policy(Enforcement::Off, None)
        };
        let g = |profile: Option<&str>, kinds: &[&str], users| MethodGroup {
            profile: profile.map(str::to_string),
            methods: set(kinds),
            users,
        };
        let groups = [
            g(Some("admin"), &["totp", "sms"], 3),
            g(Some("admin"), &[], 2),
            g(Some("staff"), &[], 10),
            g(None, &["totp"], 1),
        ];
        let r = summarize(&p, &groups, NOW);
        assert_eq!(r.total, 16);
        assert_eq!((r.enrolled, r.pending, r.overdue), (4, 2, 0));
        assert_eq!((r.optional, r.not_required), (0, 10));
        assert_eq!(
            (r.by_method.totp, r.by_method.sms, r.by_method.email),
            (4, 3, 0)
        );
        assert_eq!(r.deadline, Some(NOW + DAY_MS + 1));
        assert_eq!(
            r.days_left,
            Some(2),
            "a day and a millisecond round up to two days"
        );
        assert_eq!(r.progress_percent, Some(66.7));

        let after = summarize(&p, &groups, NOW + 2 * DAY_MS);
        assert_eq!(
            (after.pending, after.overdue, after.days_left),
            (0, 2, Some(0))
        );
    }

    #[test]
    fn an_org_without_2fa_reports_no_deadline_and_no_progress() {
        let p = policy(Enforcement::Off, Some(NOW));
        let r = summarize(
            &p,
            &[MethodGroup {
                profile: None,
                methods: set(&["totp"]),
                users: 4,
            }],
            NOW,
        );
        assert_eq!((r.total, r.not_required, r.by_method.totp), (4, 4, 4));
        assert_eq!(
            (r.deadline, r.days_left, r.progress_percent),
            (None, None, None)
        );
        assert_eq!(summarize(&p, &[], NOW), RolloutReport::default());
    }
}
