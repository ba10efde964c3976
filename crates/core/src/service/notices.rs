//! Building messages for the outbox: one-time code messages, security notices and setup
//! invitations. Parameters are sealed here; the delivery worker renders them later.

use super::{Actor, On, Twofold};
use crate::error::CoreError;
use crate::messaging::*;
use crate::model::{Factor, Tenant};
use crate::security::Undo;

/// A phone number with all but its country prefix and last three digits hidden:
/// `+447700900123` → `+44•••••••123`. Enough for a user to recognise their own number, not
/// enough to call it.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.trim_start_matches('+').chars().collect();
    if digits.len() < 6 {
        return "•••".into();
    }
    let head: String = digits[..2].iter().collect();
    let tail: String = digits[digits.len() - 3..].iter().collect();
    format!("+{head}{}{tail}", "•".repeat(digits.len() - 5))
}

/// An email address with the local part hidden after its first character:
/// `alice@example.com` → `a••••@example.com`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}••••@{domain}")
        }
        None => "••••".into(),
    }
}

/// The masked destination of an SMS or email factor.
pub fn mask_destination(kind: &str, destination: &str) -> String {
    if kind == "sms" {
        mask_phone(destination)
    } else {
        mask_email(destination)
    }
}

/// How a factor is named in a notice: "authenticator app", "SMS to +44•••…123".
pub fn describe_factor(f: &Factor) -> String {
    match (f.kind.as_str(), f.destination.as_deref()) {
        ("sms", Some(d)) => format!("text messages to {}", mask_phone(d)),
        ("email", Some(d)) => format!("email codes to {}", mask_email(d)),
        _ => "authenticator app".into(),
    }
}

/// `2026-11-26 05:37 UTC` from Unix milliseconds, without a date library: days to civil date
/// after Howard Hinnant's `civil_from_days`.
pub fn human_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

pub(crate) fn new_message_id() -> String {
    format!(
        "{}@twofold",
        twofold_otp::base32::encode(&twofold_crypto::random_bytes(16)).to_ascii_lowercase()
    )
}

impl Twofold {
    /// A sealed message for the outbox, with the tenant's names filled in.
    pub(crate) fn message(
        &self,
        tenant: &Tenant,
        user_id: Option<i64>,
        channel: Channel,
        destination: &str,
        template: TemplateKind,
        mut params: MessageParams,
    ) -> Result<NewMessage, CoreError> {
        params.insert("tenant_name".into(), tenant.name.clone());
        params.insert("tenant_slug".into(), tenant.slug.clone());
        params.insert(
            "sender_name".into(),
            tenant
                .sender_name
                .clone()
                .unwrap_or_else(|| tenant.name.clone()),
        );
        let message_id = new_message_id();
        let json = serde_json::to_vec(&params)
            .map_err(|e| CoreError::Internal(format!("message parameters: {e}")))?;
        let sealed_params = self.keyring.seal(&json, &params_owner(&message_id))?;
        Ok(NewMessage {
            message_id,
            tenant_id: tenant.id,
            user_id,
            channel,
            destination: destination.to_string(),
            template,
            sealed_params,
            created_at: self.now(),
        })
    }

    /// A security notice to the user's email address, with its "this wasn't me" link: the
    /// effects that store the link and queue the message, to ride in the transaction of the
    /// change itself. None when the user has no address (the change is still audited).
    /// `change` says what happened in plain words; `undo` what the link puts back.
    pub(crate) fn notice(
        &self,
        on: &On<'_>,
        change: &str,
        factor: Option<&Factor>,
        undo: Undo,
    ) -> Result<Vec<Effect>, CoreError> {
        let On {
            actor,
            meta,
            tenant,
            user,
        } = *on;
        let Some(email) = user.email.as_deref() else {
            return Ok(Vec::new());
        };
        let from = match actor {
            Actor::Operator { .. } | Actor::Cli => "an administrator of this service".to_string(),
            Actor::Admin { external_id, .. } => {
                format!("{external_id}, an administrator of your organisation")
            }
            Actor::System => "Twofold itself".to_string(),
            Actor::User { .. } => match meta.client_ip.as_deref() {
                Some(ip) => format!("you, in your security settings, from {ip}"),
                None => "you, in your security settings".to_string(),
            },
            Actor::Tenant { .. } | Actor::Hosted { .. } => match meta.ip.as_deref() {
                Some(ip) => format!("a request from {ip}"),
                None => "your organisation's application".to_string(),
            },
        };
        let now = self.now();
        let (link, token) = self.revert_link(tenant.id, user.id, change, &undo, now)?;
        let mut params = MessageParams::new();
        params.insert("change".into(), change.to_string());
        params.insert("when".into(), human_utc(now));
        params.insert("where".into(), from);
        params.insert(
            "revert_url".into(),
            format!(
                "{}/wasnt-me/{token}",
                self.config.public_url.trim_end_matches('/')
            ),
        );
        if let Some(f) = factor {
            params.insert("factor".into(), describe_factor(f));
        }
        let message = self.message(
            tenant,
            Some(user.id),
            Channel::Email,
            email,
            TemplateKind::SecurityNotice,
            params,
        )?;
        Ok(vec![
            Effect::InsertRevertLink(link),
            Effect::Enqueue(message),
        ])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_little() {
        assert_eq!(mask_phone("+447700900123"), "+44•••••••123");
        assert!(!mask_phone("+447700900123").contains("7700900"));
        assert_eq!(mask_phone("+1"), "•••");
        assert_eq!(mask_email("alice@example.com"), "a••••@example.com");
        assert_eq!(mask_email("nonsense"), "••••");
    }

    #[test]
    fn human_dates_including_after_2038() {
        assert_eq!(human_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(human_utc(1_795_671_455_000), "2026-11-26 05:37 UTC");
        assert_eq!(human_utc(2_147_483_648_000), "2038-01-19 03:14 UTC");
        assert_eq!(human_utc(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
