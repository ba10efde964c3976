//! Webhooks: integrators subscribe to events (a login decided, a factor enrolled or removed,
//! a session revoked, the policy changed) and receive them as JSON POSTs signed with
//! HMAC-SHA256 over the timestamp and body (the scheme of `twofold-delivery`'s `sms` module:
//! `X-Twofold-Timestamp`, `X-Twofold-Signature: v1=<hex>`), with `X-Twofold-Event` and an
//! `Idempotency-Key` equal to the event's `id`. Events go through the outbox, so they are
//! retried with backoff and, where they describe a change, queued in the same transaction.

use super::*;
use crate::login::Webhook;
use crate::messaging::*;

/// The events one can subscribe to.
pub const EVENTS: [&str; 7] = [
    "login.decided",
    "factor.enrolled",
    "factor.removed",
    "session.revoked",
    "policy.changed",
    "user.reported",
    "user.2fa_disabled",
];

/// What an integrator sees of a webhook (never its secret after creation).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: i64,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        Self {
            id: w.id.clone(),
            url: w.url.clone(),
            events: w.events.clone(),
            created_at: w.created_at,
        }
    }
}

/// The associated data binding a sealed signing secret to its webhook.
pub(crate) fn secret_owner(id: &str) -> String {
    format!("webhook:{id}")
}

/// `https://` anywhere; plain `http://` only to this machine (development, tests).
fn parse_url(url: &str) -> Result<String, CoreError> {
    let bad = |m: &str| CoreError::Invalid {
        field: "url",
        message: m.to_string(),
    };
    if url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(
            "must be a URL of at most 2048 characters without spaces",
        ));
    }
    let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"];
    let host_ok = |rest: &str| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !host.contains('@')
    };
    match url.strip_prefix("https://") {
        Some(rest) if host_ok(rest) => Ok(url.to_string()),
        _ if local.iter().any(|p| {
            url.strip_prefix(p)
                .is_some_and(|r| r.is_empty() || r.starts_with([':', '/']))
        }) =>
        {
            Ok(url.to_string())
        }
        _ => Err(bad(
            "must be an https:// URL (plain http only to localhost), without credentials",
        )),
    }
}

impl Twofold {
    /// Subscribes a URL to events; the signing secret is returned once.
    pub async fn create_webhook(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        url: &str,
        events: &[String],
    ) -> Result<(WebhookView, String), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let url = parse_url(url)?;
        let mut events: Vec<String> = events.to_vec();
        events.sort();
        events.dedup();
        if events.is_empty() || events.iter().any(|e| !EVENTS.contains(&e.as_str())) {
            return Err(CoreError::Invalid {
                field: "events",
                message: format!("name one or more of: {}", EVENTS.join(", ")),
            });
        }
        let id = format!(
            "whk_{}",
            base32::encode(&twofold_crypto::random_bytes(16)).to_ascii_lowercase()
        );
        let secret = format!("whsec_{}", twofold_crypto::random_token(32));
        let hook = Webhook {
            sealed_secret: self.keyring.seal(secret.as_bytes(), &secret_owner(&id))?,
            id,
            tenant_id: tenant.id,
            url,
            events,
            created_at: self.now(),
        };
        let mut audit = self.audit(actor, meta, "webhook.create", Some(tenant.id));
        audit.reason = Some(hook.id.clone());
        let view = WebhookView::from(&hook);
        self.store
            .apply(vec![Effect::InsertWebhook(hook)], audit)
            .await?;
        Ok((view, secret))
    }

    pub async fn list_webhooks(
        &self,
        actor: &Actor,
        slug: &str,
    ) -> Result<Vec<WebhookView>, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        Ok(self
            .store
            .webhooks_of(tenant.id)
            .await?
            .iter()
            .map(WebhookView::from)
            .collect())
    }

    pub async fn delete_webhook(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        id: &str,
    ) -> Result<(), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let mut audit = self.audit(actor, meta, "webhook.delete", Some(tenant.id));
        audit.reason = Some(id.chars().take(40).collect());
        let effect = Effect::DeleteWebhook {
            id: id.to_string(),
            tenant_id: tenant.id,
        };
        self.store
            .apply(vec![effect], audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => CoreError::NotFound("webhook"),
                e => e.into(),
            })
    }

    /// The outbox messages that deliver `event` to the tenant's subscribed webhooks.
    pub(crate) async fn event_messages(
        &self,
        tenant: &Tenant,
        event: &str,
        data: serde_json::Value,
    ) -> Result<Vec<NewMessage>, CoreError> {
        let hooks = self.store.webhooks_of(tenant.id).await?;
        let now = self.now();
        let mut out = Vec::new();
        for hook in hooks.iter().filter(|h| h.events.iter().any(|e| e == event)) {
            let secret = self
                .keyring
                .unseal(&hook.sealed_secret, &secret_owner(&hook.id))?;
            let message_id = notices::new_message_id();
            let payload = serde_json::json!({
                "id": message_id,
                "event": event,
                "tenant": tenant.slug,
                "at": now,
                "data": data,
            });
            let mut params = MessageParams::new();
            params.insert("event".into(), event.to_string());
            params.insert("payload".into(), payload.to_string());
            params.insert(
                "secret".into(),
                String::from_utf8_lossy(&secret).into_owned(),
            );
            params.insert("tenant_slug".into(), tenant.slug.clone());
            let json = serde_json::to_vec(&params)
                .map_err(|e| CoreError::Internal(format!("event parameters: {e}")))?;
            out.push(NewMessage {
                sealed_params: self.keyring.seal(&json, &params_owner(&message_id))?,
                message_id,
                tenant_id: tenant.id,
                user_id: None,
                channel: Channel::Webhook,
                destination: hook.url.clone(),
                template: TemplateKind::Event,
                created_at: now,
            });
        }
        Ok(out)
    }

    /// The same, as effects to apply with the change the event describes.
    pub(crate) async fn event_effects(
        &self,
        tenant: &Tenant,
        event: &str,
        data: serde_json::Value,
    ) -> Result<Vec<Effect>, CoreError> {
        Ok(self
            .event_messages(tenant, event, data)
            .await?
            .into_iter()
            .map(Effect::Enqueue)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_url;

    #[test]
    fn webhook_urls() {
        for ok in [
            "https://hooks.example.com/twofold",
            "http://127.0.0.1:8081/x",
            "http://localhost/x",
        ] {
            assert!(parse_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://hooks.example.com/x",
            "http://localhost.evil.com/x",
            "https://user:pw@example.com/",
            "ftp://example.com",
            "https://",
            "https://a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
