//! What `twofold demo` sets up in Twofold on its first start: the tenant, its users (with the
//! passwords the demo app checks itself, as any integrator checks its own), the client app and
//! the organisation's 2FA settings. Each user shows one part of the product.

use twofold_core::policy::{ClientApp, Enforcement, Method, Policy, DAY_MS};

pub const TENANT: &str = "demo";
pub const TENANT_NAME: &str = "Demo Corp";
/// The client app in the policy, registered for OpenID Connect as `demo.portal`.
pub const CLIENT_APP: &str = "portal";
/// The profile of the organisation's administrators.
pub const ADMIN_PROFILE: &str = "admins";
/// Days until two-step verification becomes mandatory for everyone.
pub const GRACE_DAYS: i64 = 14;

/// The OpenID Connect client id of [`CLIENT_APP`] (Twofold names clients `tenant.app`).
pub fn client_id() -> String {
    format!("{TENANT}.{CLIENT_APP}")
}

/// A demo user.
#[derive(Debug, Clone, Copy)]
pub struct DemoUser {
    /// The user's name, also their external id in Twofold.
    pub name: &'static str,
    /// Public on purpose: the demo shows it on its sign-in page.
    pub password: &'static str,
    pub admin: bool,
    pub profile: Option<&'static str>,
    /// A phone for text messages (a UK drama number: it reaches nobody).
    pub phone: Option<&'static str>,
    /// Methods set up for the user on the first start, codes read from the mailbox.
    pub set_up: &'static [Method],
    /// What signing in as this user shows, for the sign-in page and the banner.
    pub story: &'static str,
}

impl DemoUser {
    pub fn email(&self) -> String {
        format!("{}@{TENANT}.test", self.name)
    }
}

pub const USERS: [DemoUser; 3] = [
    DemoUser {
        name: "alice",
        password: "wonderland",
        admin: true,
        profile: Some(ADMIN_PROFILE),
        phone: None,
        set_up: &[],
        story: "an administrator: sets up an authenticator app and gets recovery codes, then \
                opens the admin console",
    },
    DemoUser {
        name: "bob",
        password: "builder",
        admin: false,
        profile: None,
        phone: None,
        set_up: &[],
        story: "sees the countdown: 14 days left to set up two-step verification, or Later",
    },
    DemoUser {
        name: "carol",
        password: "christmas",
        admin: false,
        profile: None,
        phone: Some("+447700900123"),
        set_up: &[Method::Email, Method::Sms],
        story: "already uses codes by email and text message: read them in the Mailbox",
    },
];

/// The user called `name`.
pub fn user(name: &str) -> Option<&'static DemoUser> {
    USERS.iter().find(|u| u.name == name)
}

/// The organisation's settings: two-step verification mandatory for everyone from midnight
/// (UTC) [`GRACE_DAYS`] days after `now_ms`, a date as an admin would pick it (users see the
/// countdown until then), with the authenticator app, text messages and email, and "remember
/// this device" for 30 days.
///
/// Twofold's policy has one mandatory date for every profile it covers, so the
/// administrators have the same grace period as everyone else.
pub fn policy(now_ms: i64) -> Policy {
    Policy {
        methods: vec![Method::Totp, Method::Sms, Method::Email],
        enforcement: Enforcement::RequiredForAll,
        mandatory_from: Some((now_ms.div_euclid(DAY_MS) + GRACE_DAYS) * DAY_MS),
        reminder_days: GRACE_DAYS as u32,
        remember_device_days: Some(30),
        clients: vec![ClientApp {
            id: CLIENT_APP.into(),
            supports_2fa: true,
            app_passwords: false,
        }],
        ..Policy::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_is_valid_and_everyone_is_in_the_countdown_from_the_start() {
        let now = 1_795_651_200_000;
        let (p, warnings) = policy(now).validate().unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            twofold_core::policy::days_until(p.mandatory_from.unwrap(), now + DAY_MS - 1),
            GRACE_DAYS
        );
        for u in USERS {
            assert!(
                matches!(
                    twofold_core::policy::phase(&p, u.profile, now),
                    twofold_core::policy::Phase::Reminder { .. }
                ),
                "{}",
                u.name
            );
        }
        assert!(p.client(CLIENT_APP).is_some_and(|c| c.supports_2fa));
        assert_eq!(client_id(), "demo.portal");
    }

    #[test]
    fn users_are_known_by_name_with_an_address_of_the_demo() {
        assert_eq!(user("carol").unwrap().email(), "carol@demo.test");
        assert!(user("mallory").is_none());
        assert_eq!(USERS.iter().filter(|u| u.admin).count(), 1);
    }
}
