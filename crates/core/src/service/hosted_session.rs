//! Twofold's own signed-in pages: the admin console (an org admin) and the security settings
//! of the account pages (any user of the tenant), both reached through the same hosted second
//! step as any sign-in, and always with a second factor. [`Audience`] is what differs.
//!
//! ```text
//!   integrator: /{console,account}/sso?client_id&login_hint_token ─┐ (hint checked, jti spent)
//!   operator:   twofold console link → /console/start?link ─────────┤ (console only)
//!                                                                    ▼
//!   console: admin? ──no──▶ refused   pending login + hosted login row (client
//!                                     `{slug}.@console|@account`, redirect /…/callback,
//!                                     PKCE verifier and state in the browser's cookie)
//!                                                                    │
//!        factor active ──▶ hosted challenge   none ──▶ hosted enrolment (required)
//!                                                                    │ right code
//!                                                                    ▼
//!   /…/callback: state, code spent with PKCE ──▶ session (`client_id` `@console|@account`)
//! ```
//!
//! These sessions are ordinary session rows, so they die with the user's credential
//! generation, sign-out everywhere and revocation like any other; every request checks the
//! session's audience (a console cookie never opens the account pages, nor the reverse) and,
//! for the console, that the user is still an admin. The policy's "remember this device" and
//! skip never apply here.

use super::login::new_id;
use super::oidc::{HintRefused, TokenError};
use super::*;
use crate::login::{PendingLogin, Session};
use crate::oidc::{HostedLogin, OidcClient};
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey, EncodingKey, Header, Validation};

/// The client app part of a console login's client id (`{slug}.@console`): client app ids
/// may not start with `@`, so no registered client can be it.
pub const CONSOLE_APP: &str = "@console";
/// The client app part of an account-pages login's client id (`{slug}.@account`).
pub const ACCOUNT_APP: &str = "@account";
/// A console link from the CLI is good for this long, once.
pub const LINK_TTL_MS: i64 = 15 * 60 * 1000;
/// A console session ends this long after sign-in, whatever the activity (the idle timeout
/// of sessions applies too).
pub const CONSOLE_SESSION_TTL_MS: i64 = 8 * 3600 * 1000;
/// An account-pages session is shorter: its user came to change a few settings, and each
/// sensitive one asks for a fresh code anyway.
pub const ACCOUNT_SESSION_TTL_MS: i64 = 3600 * 1000;
pub(super) const SESSION_PREFIX: &str = "tfs";

/// Who one of Twofold's own signed-in areas is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The admin console: org admins only.
    Console,
    /// The security settings: any user of the tenant, for their own account.
    Account,
}

impl Audience {
    /// The client app marker of its logins, and the `client_id` of its sessions.
    pub fn app(self) -> &'static str {
        match self {
            Audience::Console => CONSOLE_APP,
            Audience::Account => ACCOUNT_APP,
        }
    }

    /// Where its pages live (the callback is `{path}/callback`).
    pub fn path(self) -> &'static str {
        match self {
            Audience::Console => "/console",
            Audience::Account => "/account",
        }
    }

    /// The prefix of its audit actions (`console.login`, `account.session`, …).
    fn action(self, what: &str) -> String {
        format!("{}.{what}", &self.app()[1..])
    }

    fn admins_only(self) -> bool {
        self == Audience::Console
    }

    fn session_ttl_ms(self) -> i64 {
        match self {
            Audience::Console => CONSOLE_SESSION_TTL_MS,
            Audience::Account => ACCOUNT_SESSION_TTL_MS,
        }
    }

    /// The audience of a hosted login, if it is one of Twofold's own (no "remember this
    /// device", no skipping: always a second factor).
    pub(super) fn of_login(hosted: &HostedLogin) -> Option<Audience> {
        match OidcClient::split_id(&hosted.client_id)?.1 {
            CONSOLE_APP => Some(Audience::Console),
            ACCOUNT_APP => Some(Audience::Account),
            _ => None,
        }
    }

    /// How the hosted pages name it ("Signing in to the admin console").
    pub(super) fn name(self) -> &'static str {
        match self {
            Audience::Console => "the admin console",
            Audience::Account => "your security settings",
        }
    }
}

/// What the browser needs to go on to the hosted second step. No `Debug`: tokens.
pub struct SignInStart {
    /// The pending login (the hosted pages' cookie).
    pub login: IssuedToken,
    /// True: the user has no factor yet and enrols first.
    pub enroll: bool,
    /// The PKCE verifier and state the callback checks (the area's own cookie).
    pub verifier: String,
    pub state: String,
}

/// A signed-in user of the console or the account pages, as every request there sees them.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub audience: Audience,
    /// `Admin` in the console, `User` on the account pages.
    pub actor: Actor,
    pub tenant: Arc<Tenant>,
    pub user: User,
    pub session_id: String,
    /// The session's methods and end, carried over when a change of the user's own renews it.
    amr: String,
    expires_at: i64,
}

impl SignedIn {
    /// What a security key's fresh proof on the account pages is bound to: this session and
    /// the one change (`remove:<factor>`, `recovery_codes`, ...), so an answer made for one
    /// change proves no other.
    pub fn proof_binding(&self, change: &str) -> String {
        format!("{}|{change}", self.session_id)
    }
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

/// The one refusal for a sign-in that cannot start: nothing about why (the audit row has
/// it), so the links cannot be used to learn who is an admin.
fn cannot_start() -> CoreError {
    CoreError::Forbidden("this sign-in is not valid: ask for a new link")
}

impl Twofold {
    fn callback_uri(&self, audience: Audience) -> String {
        format!("{}{}/callback", self.oidc_issuer(), audience.path())
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
    ) -> Result<SignInStart, CoreError> {
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
        let login = (&actor, meta, &tenant, "link", user_agent);
        self.own_login(Audience::Console, login, user).await
    }

    /// `/{console,account}/sso?client_id&login_hint_token`: the integrator sends a user it
    /// has signed in, with a login hint like `/oidc/authorize` takes.
    pub async fn sign_in_from_hint(
        &self,
        audience: Audience,
        meta: &RequestMeta,
        client_id: &str,
        hint: &str,
        user_agent: Option<String>,
    ) -> Result<SignInStart, CoreError> {
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
        let login = (&actor, meta, &tenant, primary, user_agent);
        self.own_login(audience, login, user).await
    }

    /// Starts the user's second step: the challenge if they have an active factor, the
    /// enrolment if they have none; never a login without one. `login` is who starts it, the
    /// request, the tenant, the first step (`pwd`, `sso`, `link`) and the browser.
    async fn own_login(
        &self,
        audience: Audience,
        login: (&Actor, &RequestMeta, &Tenant, &str, Option<String>),
        user: User,
    ) -> Result<SignInStart, CoreError> {
        let (actor, meta, tenant, primary, user_agent) = login;
        let now = self.now();
        let mut audit = self.audit(actor, meta, &audience.action("login"), Some(tenant.id));
        audit.user_id = Some(user.id);
        if audience.admins_only() && !user.is_admin {
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
                    "every sign-in method of this account is locked: ask an administrator to \
                     unlock it",
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
            client_id: OidcClient::client_id(&tenant.slug, audience.app()),
            redirect_uri: self.callback_uri(audience),
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
        Ok(SignInStart {
            login: issued,
            enroll: decision == "enroll_required",
            verifier,
            state,
        })
    }

    /// `/{console,account}/callback`: the code the hosted second step minted, spent with the
    /// PKCE verifier from the browser's cookie, becomes the area's session. The login's own
    /// session is revoked in the same transaction: the area's cookie is the only one left.
    pub async fn sign_in_exchange(
        &self,
        audience: Audience,
        meta: &RequestMeta,
        code: &str,
        verifier: &str,
    ) -> Result<IssuedToken, CoreError> {
        let refused = || {
            CoreError::conflict(
                "invalid_sign_in_code",
                "this sign-in is over or expired: sign in again",
            )
        };
        let now = self.now();
        // The tenant comes from the code row; spending checks it belongs to this audience.
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
        let client_id = OidcClient::client_id(&tenant.slug, audience.app());
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
                &self.callback_uri(audience),
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
            .filter(|u| u.is_admin || !audience.admins_only())
            .ok_or_else(refused)?;
        let expires_at = now
            + audience
                .session_ttl_ms()
                .min(self.config.login.session_ttl_ms);
        let (session, issued) = self.area_session(
            &user,
            &row.amr,
            audience,
            meta.client_ip.clone(),
            now,
            expires_at,
        );
        let mut effects = vec![Effect::InsertSession(session)];
        effects.extend(row.session_id.iter().map(|id| Effect::RevokeSession {
            id: id.clone(),
            user_id: user.id,
            at: now,
            reason: audience.action("signed_in"),
        }));
        let mut audit = self.audit(
            &Self::actor_of(audience, &tenant, &user),
            meta,
            &audience.action("session"),
            Some(tenant.id),
        );
        audit.user_id = Some(user.id);
        audit.reason = Some(issued.id.clone());
        self.store.apply(effects, audit).await?;
        Ok(issued)
    }

    fn actor_of(audience: Audience, tenant: &Tenant, user: &User) -> Actor {
        match audience {
            Audience::Console => Actor::Admin {
                tenant_id: tenant.id,
                user_id: user.id,
                external_id: user.external_id.clone(),
            },
            Audience::Account => Actor::User {
                tenant_id: tenant.id,
                user_id: user.id,
                external_id: user.external_id.clone(),
            },
        }
    }

    /// The user behind an area's cookie, if the session is live, belongs to this audience,
    /// was opened with a second factor, and (console) its user is still an admin. A live
    /// session's idle timer restarts.
    pub async fn signed_in(
        &self,
        audience: Audience,
        token: &str,
    ) -> Result<Option<SignedIn>, CoreError> {
        if crate::tokens::parse(crate::tokens::TokenKind::Session, token).is_none() {
            return Ok(None);
        }
        let Some(s) = self
            .store
            .session(&self.token_hash(SESSION_PREFIX, token))
            .await?
            .filter(|s| s.client_id.as_deref() == Some(audience.app()) && s.second_factor)
        else {
            return Ok(None);
        };
        let Some(user) = self
            .store
            .user_by_id(s.user_id)
            .await?
            .filter(|u| u.tenant_id == s.tenant_id && (u.is_admin || !audience.admins_only()))
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
        Ok(Some(SignedIn {
            audience,
            actor: Self::actor_of(audience, &tenant, &user),
            tenant: Arc::new(tenant),
            user,
            session_id: s.id,
            amr: s.amr,
            expires_at: s.expires_at,
        }))
    }

    /// "Sign out" in the console or the account pages: that session ends (audited).
    pub async fn sign_out_of(&self, meta: &RequestMeta, who: &SignedIn) -> Result<(), CoreError> {
        let action = who.audience.action("sign_out");
        let mut audit = self.audit(&who.actor, meta, &action, Some(who.tenant.id));
        audit.user_id = Some(who.user.id);
        let effects = vec![Effect::RevokeSession {
            id: who.session_id.clone(),
            user_id: who.user.id,
            at: self.now(),
            reason: "signed_out".into(),
        }];
        match self.store.apply(effects, audit).await {
            Ok(()) | Err(StoreError::Conflict("state_changed")) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A second-factor session of `audience` for `user` (its `amr` as stored, e.g.
    /// `pwd,otp`), ending at `expires_at`.
    fn area_session(
        &self,
        user: &User,
        amr: &str,
        audience: Audience,
        ip: Option<String>,
        now: i64,
        expires_at: i64,
    ) -> (Session, IssuedToken) {
        let (mut session, mut issued) =
            self.new_session(user, &[amr], true, Some(audience.app().into()), ip, now);
        session.expires_at = expires_at;
        issued.expires_at = expires_at;
        (session, issued)
    }

    /// A change of the user's own that ends all their sessions (a factor removed, the phone
    /// changed) keeps the one they made it from: these effects, in the change's transaction,
    /// replace `who`'s session with one of the user's next generation (same methods, same
    /// end); the old token dies with the rest. The new token is for the browser's cookie.
    pub(crate) fn carry_session_over(&self, who: &SignedIn) -> (IssuedToken, Vec<Effect>) {
        let now = self.now();
        let (mut session, issued) =
            self.area_session(&who.user, &who.amr, who.audience, None, now, who.expires_at);
        // The next generation: the change bumps the user's, and this session must outlive it.
        session.generation = who.user.generation + 1;
        let effects = vec![
            Effect::RevokeSession {
                id: who.session_id.clone(),
                user_id: who.user.id,
                at: now,
                reason: "renewed".into(),
            },
            Effect::InsertSession(session),
        ];
        (issued, effects)
    }
}
