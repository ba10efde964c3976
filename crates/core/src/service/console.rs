//! The admin console's way in (issue #6): an org admin reaches it through the same hosted
//! second step as any sign-in, and always with a second factor.
//!
//! ```text
//!   integrator: /console/sso?client_id&login_hint_token ─┐ (hint checked, jti spent)
//!   operator:   twofold console link → /console/start?link ─┤ (link checked, jti spent)
//!                                                          ▼
//!        admin? ──no──▶ refused        console login: pending login + hosted login row
//!                                      (client `{slug}.@console`, redirect /console/callback,
//!                                       PKCE verifier and state in the browser's cookie)
//!                                                          │
//!        factor active ──▶ hosted challenge   none ──▶ hosted enrolment (required)
//!                                                          │ right code
//!                                                          ▼
//!        /console/callback: state, code spent with PKCE ──▶ console session (cookie)
//! ```
//!
//! The console session is an ordinary session row (`client_id` [`CONSOLE_SESSION`]), so it
//! dies with the admin's credential generation, sign-out everywhere and revocation like any
//! other; every request also checks the user is still an admin. The policy's "remember this
//! device" and skip never apply here.

use super::login::new_id;
use super::oidc::{HintRefused, TokenError};
use super::*;
use crate::login::{PendingLogin, Session};
use crate::oidc::{HostedLogin, OidcClient};
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey, EncodingKey, Header, Validation};

/// The client app part of a console login's client id (`{slug}.@console`): client app ids
/// may not start with `@`, so no registered client can be it.
pub const CONSOLE_APP: &str = "@console";
/// The `client_id` of console sessions.
pub const CONSOLE_SESSION: &str = "@console";
/// A console link from the CLI is good for this long, once.
pub const LINK_TTL_MS: i64 = 15 * 60 * 1000;
/// A console session ends this long after sign-in, whatever the activity (the idle timeout
/// of sessions applies too).
pub const CONSOLE_SESSION_TTL_MS: i64 = 8 * 3600 * 1000;
const SESSION_PREFIX: &str = "tfs";

/// What the browser needs to go on to the hosted second step. No `Debug`: tokens.
pub struct ConsoleStart {
    /// The pending login (the hosted pages' cookie).
    pub login: IssuedToken,
    /// True: the admin has no factor yet and enrols first.
    pub enroll: bool,
    /// The PKCE verifier and state the callback checks (the console's cookie).
    pub verifier: String,
    pub state: String,
}

/// A signed-in admin, as every console request sees them.
#[derive(Debug, Clone)]
pub struct ConsoleAdmin {
    pub actor: Actor,
    pub tenant: Arc<Tenant>,
    pub user: User,
    pub session_id: String,
}

/// A CLI console link's claims (HS256 under a key derived from the hashing key).
#[derive(serde::Serialize, serde::Deserialize)]
struct LinkClaims {
    /// Tenant id.
    tid: i64,
    /// User id of the admin.
    uid: i64,
    exp: i64,
    jti: String,
}

/// The one refusal for a console sign-in that cannot start: nothing about why (the audit row
/// has it), so the links cannot be used to learn who is an admin.
fn cannot_start() -> CoreError {
    CoreError::Forbidden("this console sign-in is not valid: ask for a new link")
}

/// Whether a hosted login is a console sign-in (no "remember this device", no skipping).
pub(super) fn is_console_login(hosted: &HostedLogin) -> bool {
    OidcClient::split_id(&hosted.client_id).is_some_and(|(_, app)| app == CONSOLE_APP)
}

impl Twofold {
    fn console_redirect_uri(&self) -> String {
        format!("{}/console/callback", self.oidc_issuer())
    }

    /// The HS256 key of console links: derived from the hashing key, so every node shares it
    /// and nothing new is kept.
    fn link_key(&self) -> Vec<u8> {
        self.token_hash("console-link", "twofold console link key v1")
    }

    /// `twofold console link`: a one-time link that starts a console sign-in for this admin
    /// (the operator vouches for the first step; the second is still asked).
    pub async fn mint_console_link(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        admin: &str,
    ) -> Result<(String, i64), CoreError> {
        if !actor.is_operator() {
            return Err(CoreError::Forbidden(
                "only an operator may mint console links",
            ));
        }
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, admin).await?;
        if !user.is_admin {
            return Err(CoreError::Invalid {
                field: "admin",
                message: "is not an admin of this tenant (appoint one with user create --admin \
                          or a confirmed proposal)"
                    .into(),
            });
        }
        let now = self.now();
        let claims = LinkClaims {
            tid: tenant.id,
            uid: user.id,
            exp: (now + LINK_TTL_MS) / 1000,
            jti: new_id("lnk"),
        };
        let token = jsonwebtoken::encode(
            &Header::new(JwtAlg::HS256),
            &claims,
            &EncodingKey::from_secret(&self.link_key()),
        )
        .map_err(|e| CoreError::Internal(format!("cannot sign a console link: {e}")))?;
        let mut audit = self.audit(actor, meta, "console.link", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.reason = Some(claims.jti.clone());
        self.store.append_audit(audit).await?;
        Ok((
            format!("{}/console/start?link={token}", self.oidc_issuer()),
            now + LINK_TTL_MS,
        ))
    }

    /// `/console/start?link=…`: a CLI link, spent once, starts the admin's console sign-in.
    pub async fn console_from_link(
        &self,
        meta: &RequestMeta,
        link: &str,
        user_agent: Option<String>,
    ) -> Result<ConsoleStart, CoreError> {
        let now = self.now();
        let mut validation = Validation::new(JwtAlg::HS256);
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let claims = (link.len() <= 2048)
            .then(|| {
                jsonwebtoken::decode::<LinkClaims>(
                    link,
                    &DecodingKey::from_secret(&self.link_key()),
                    &validation,
                )
                .ok()
            })
            .flatten()
            .map(|d| d.claims)
            .filter(|c| c.exp * 1000 > now)
            .ok_or_else(cannot_start)?;
        let tenant = self
            .store
            .tenant_by_id(claims.tid)
            .await?
            .ok_or_else(cannot_start)?;
        let user = self
            .store
            .user_by_id(claims.uid)
            .await?
            .filter(|u| u.tenant_id == tenant.id)
            .ok_or_else(cannot_start)?;
        let actor = Actor::Cli;
        let mut audit = self.audit(&actor, meta, "console.link.use", Some(tenant.id));
        audit.user_id = Some(user.id);
        audit.reason = Some(claims.jti.clone());
        match self
            .store
            .apply(
                vec![Effect::UseHintJti {
                    client_id: OidcClient::client_id(&tenant.slug, CONSOLE_APP),
                    jti: claims.jti.clone(),
                    tenant_id: tenant.id,
                    expires_at: claims.exp.saturating_mul(1000),
                }],
                audit.clone(),
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::Conflict("hint_replayed")) => {
                audit.outcome = "denied".into();
                audit.reason = Some("link_replayed".into());
                self.store.append_audit(audit).await?;
                return Err(cannot_start());
            }
            Err(e) => return Err(e.into()),
        }
        self.console_login(&actor, meta, &tenant, user, "link", user_agent)
            .await
    }

    /// `/console/sso?client_id&login_hint_token`: the integrator sends an admin it has
    /// signed in, with a login hint like `/oidc/authorize` takes.
    pub async fn console_from_hint(
        &self,
        meta: &RequestMeta,
        client_id: &str,
        hint: &str,
        user_agent: Option<String>,
    ) -> Result<ConsoleStart, CoreError> {
        if OidcClient::split_id(client_id).is_none() {
            return Err(cannot_start());
        }
        let client = self
            .store
            .oidc_client(client_id)
            .await?
            .ok_or_else(cannot_start)?;
        let tenant = self
            .store
            .tenant_by_id(client.tenant_id)
            .await?
            .ok_or_else(cannot_start)?;
        let actor = Actor::Hosted {
            tenant_id: tenant.id,
            client_id: client.id.clone(),
        };
        let now = self.now();
        let claims = match self
            .spend_hint(&actor, meta, &tenant, &client, hint, now)
            .await
        {
            Ok(c) => c,
            Err(HintRefused::Core(e)) => return Err(e),
            Err(_) => return Err(cannot_start()),
        };
        let Ok(user) = self.user_in(&tenant, &claims.sub).await else {
            return Err(cannot_start());
        };
        let primary = if claims.primary == "sso" {
            "sso"
        } else {
            "pwd"
        };
        self.console_login(&actor, meta, &tenant, user, primary, user_agent)
            .await
    }

    /// Starts the admin's second step: the challenge if they have an active factor, the
    /// enrolment if they have none; never a login without one.
    async fn console_login(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: &Tenant,
        user: User,
        primary: &str,
        user_agent: Option<String>,
    ) -> Result<ConsoleStart, CoreError> {
        let now = self.now();
        let mut audit = self.audit(actor, meta, "console.login", Some(tenant.id));
        audit.user_id = Some(user.id);
        if !user.is_admin {
            audit.outcome = "denied".into();
            audit.reason = Some("not_admin".into());
            self.store.append_audit(audit).await?;
            return Err(cannot_start());
        }
        let factors = self.store.factors_of(user.id).await?;
        let active: Vec<&Factor> = factors
            .iter()
            .filter(|f| f.status == FactorStatus::Active)
            .collect();
        let usable = active.iter().any(|f| f.locked_at.is_none())
            || (!active.is_empty() && self.store.recovery_codes_left(user.id).await? > 0);
        let decision = match (active.is_empty(), usable) {
            (true, _) => "enroll_required",
            (false, true) => "challenge",
            (false, false) => {
                audit.outcome = "denied".into();
                audit.reason = Some("locked".into());
                self.store.append_audit(audit).await?;
                return Err(CoreError::Forbidden(
                    "every sign-in method of this admin is locked: ask an operator to unlock it",
                ));
            }
        };
        audit.outcome = decision.into();
        let (token, token_hash) = self.mint_token("tfl");
        let login = PendingLogin {
            id: new_id("lgn"),
            token_hash,
            tenant_id: tenant.id,
            user_id: user.id,
            generation: user.generation,
            decision: decision.into(),
            primary: primary.into(),
            client_id: None,
            ip: meta.client_ip.clone(),
            user_agent: user_agent.map(|ua| ua.chars().take(256).collect()),
            created_at: now,
            expires_at: now + self.config.login.pending_ttl_ms,
            completed_at: None,
            device: None,
            country: None,
        };
        let verifier = twofold_crypto::random_token(32);
        let state = twofold_crypto::random_token(16);
        let hosted = HostedLogin {
            login_id: login.id.clone(),
            tenant_id: tenant.id,
            client_id: OidcClient::client_id(&tenant.slug, CONSOLE_APP),
            redirect_uri: self.console_redirect_uri(),
            state: Some(state.clone()),
            nonce: None,
            code_challenge: crate::oidc::pkce_challenge(&verifier),
            created_at: now,
            expires_at: login.expires_at,
        };
        let issued = IssuedToken {
            id: login.id.clone(),
            token,
            expires_at: login.expires_at,
        };
        let mut row = self.audit(actor, meta, "oidc.hosted.start", Some(tenant.id));
        row.reason = Some(login.id.clone());
        self.store.start_login(login, audit).await?;
        self.store
            .apply(vec![Effect::InsertHostedLogin(hosted)], row)
            .await?;
        Ok(ConsoleStart {
            login: issued,
            enroll: decision == "enroll_required",
            verifier,
            state,
        })
    }

    /// `/console/callback`: the code the hosted second step minted, spent with the PKCE
    /// verifier from the browser's cookie, becomes a console session. The login's own session
    /// is revoked in the same transaction: the console cookie is the only one left.
    pub async fn console_exchange(
        &self,
        meta: &RequestMeta,
        code: &str,
        verifier: &str,
    ) -> Result<IssuedToken, CoreError> {
        let refused = || {
            CoreError::conflict(
                "invalid_console_code",
                "this console sign-in is over or expired: sign in again",
            )
        };
        let now = self.now();
        // The tenant comes from the code row; spending checks it belongs to the console.
        let hash = self.token_hash("tfc", code);
        let probe = match code.starts_with("tfc_") && code.len() <= 100 {
            true => self.store.auth_code(&hash).await?,
            false => None,
        }
        .ok_or_else(refused)?;
        let tenant = self
            .store
            .tenant_by_id(probe.tenant_id)
            .await?
            .ok_or_else(refused)?;
        let client_id = OidcClient::client_id(&tenant.slug, CONSOLE_APP);
        let actor = Actor::Hosted {
            tenant_id: tenant.id,
            client_id: client_id.clone(),
        };
        let row = match self
            .spend_code(
                &actor,
                meta,
                tenant.id,
                &client_id,
                code,
                &self.console_redirect_uri(),
                verifier,
                now,
            )
            .await
        {
            Ok(r) => r,
            Err(TokenError::Core(e)) => return Err(e),
            Err(_) => return Err(refused()),
        };
        let user = self
            .store
            .user_by_id(row.user_id)
            .await?
            .filter(|u| u.is_admin)
            .ok_or_else(refused)?;
        let (token, token_hash) = self.mint_token(SESSION_PREFIX);
        let session = Session {
            id: new_id("ses"),
            token_hash,
            tenant_id: tenant.id,
            user_id: user.id,
            generation: user.generation,
            amr: row.amr.clone(),
            second_factor: true,
            client_id: Some(CONSOLE_SESSION.into()),
            ip: meta.client_ip.clone(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + CONSOLE_SESSION_TTL_MS.min(self.config.login.session_ttl_ms),
            revoked_at: None,
            revoke_reason: None,
        };
        let issued = IssuedToken {
            id: session.id.clone(),
            token,
            expires_at: session.expires_at,
        };
        let mut effects = vec![Effect::InsertSession(session)];
        effects.extend(row.session_id.iter().map(|id| Effect::RevokeSession {
            id: id.clone(),
            user_id: user.id,
            at: now,
            reason: "console_signed_in".into(),
        }));
        let mut audit = self.audit(
            &Self::admin_actor(&tenant, &user),
            meta,
            "console.session",
            Some(tenant.id),
        );
        audit.user_id = Some(user.id);
        audit.reason = Some(issued.id.clone());
        self.store.apply(effects, audit).await?;
        Ok(issued)
    }

    fn admin_actor(tenant: &Tenant, user: &User) -> Actor {
        Actor::Admin {
            tenant_id: tenant.id,
            user_id: user.id,
            external_id: user.external_id.clone(),
        }
    }

    /// The admin behind a console cookie, if the session is live, is a console session with
    /// a second factor, and its user is still an admin. A live session's idle timer restarts.
    pub async fn console_admin(&self, token: &str) -> Result<Option<ConsoleAdmin>, CoreError> {
        if crate::tokens::parse(crate::tokens::TokenKind::Session, token).is_none() {
            return Ok(None);
        }
        let Some(s) = self
            .store
            .session(&self.token_hash(SESSION_PREFIX, token))
            .await?
            .filter(|s| s.client_id.as_deref() == Some(CONSOLE_SESSION) && s.second_factor)
        else {
            return Ok(None);
        };
        let Some(user) = self
            .store
            .user_by_id(s.user_id)
            .await?
            .filter(|u| u.is_admin && u.tenant_id == s.tenant_id)
        else {
            return Ok(None);
        };
        let now = self.now();
        if !self.session_view(&s, &user, now).active {
            return Ok(None);
        }
        let Some(tenant) = self.store.tenant_by_id(s.tenant_id).await? else {
            return Ok(None);
        };
        self.store.touch_session(&s.id, now).await?;
        Ok(Some(ConsoleAdmin {
            actor: Self::admin_actor(&tenant, &user),
            tenant: Arc::new(tenant),
            user,
            session_id: s.id,
        }))
    }

    /// "Sign out" in the console: its session ends (audited).
    pub async fn console_sign_out(
        &self,
        meta: &RequestMeta,
        admin: &ConsoleAdmin,
    ) -> Result<(), CoreError> {
        let mut audit = self.audit(
            &admin.actor,
            meta,
            "console.sign_out",
            Some(admin.tenant.id),
        );
        audit.user_id = Some(admin.user.id);
        let effects = vec![Effect::RevokeSession {
            id: admin.session_id.clone(),
            user_id: admin.user.id,
            at: self.now(),
            reason: "signed_out".into(),
        }];
        match self.store.apply(effects, audit).await {
            Ok(()) | Err(StoreError::Conflict("state_changed")) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
