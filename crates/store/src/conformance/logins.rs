//! Conformance checks for the login flow: tenant policies and their proposals, pending logins
//! (INV-04), sessions and remembered devices with the user's credential generation (INV-06),
//! and [`Store::apply`].

use super::messaging::{
    accepted_by, assert_issued, audit_trail, consume, consume_code, issue, issue_code, row,
    COOLDOWN, TTL,
};
use super::*;
use twofold_core::login::*;
use twofold_core::messaging::*;

pub(super) const STATE_CHANGED: StoreError = StoreError::Conflict("state_changed");
const LOGIN_TTL: i64 = 10 * 60 * 1000;
const SESSION_TTL: i64 = 12 * 60 * 60 * 1000;

pub(super) async fn admin(s: &DynStore, t: &Tenant, ext: &str) -> User {
    s.create_user(
        NewUser {
            tenant_id: t.id,
            external_id: ext.into(),
            email: Some(format!("{ext}@example.com")),
            phone: None,
            profile: None,
            is_admin: true,
            created_at: 2,
        },
        audit("user.create", Some(t.id), 2),
    )
    .await
    .unwrap()
}

/// Applies `effects` with an audit row of action `login.test` at `at`.
pub(super) async fn apply(
    s: &DynStore,
    t: &Tenant,
    effects: Vec<Effect>,
    at: i64,
) -> StoreResult<()> {
    s.apply(effects, audit("login.test", Some(t.id), at)).await
}

pub(super) async fn applied(s: &DynStore, t: &Tenant, effects: Vec<Effect>, at: i64) {
    apply(s, t, effects, at).await.unwrap();
}

fn proposal(t: &Tenant, admin: &User, id: &str, base_version: i64, at: i64) -> Proposal {
    Proposal {
        id: id.into(),
        tenant_id: t.id,
        admin_user_id: admin.id,
        payload: format!(r#"{{"proposal":"{id}"}}"#),
        payload_hash: id.as_bytes().to_vec(),
        base_version,
        state: ProposalState::Pending,
        created_at: at,
        expires_at: at + TTL,
    }
}

fn set_state(id: &str, from: ProposalState, to: ProposalState, at: i64) -> Effect {
    Effect::SetProposalState {
        id: id.into(),
        from,
        to,
        at,
    }
}

fn set_policy(t: &Tenant, json: &str, expected_version: i64, at: i64) -> Effect {
    Effect::SetPolicy {
        tenant_id: t.id,
        json: json.into(),
        expected_version,
        at,
    }
}

async fn state_of(s: &DynStore, id: &str) -> ProposalState {
    s.proposal(id).await.unwrap().unwrap().state
}

pub(super) fn token(tag: &str, n: u32) -> Vec<u8> {
    let mut t = format!("{tag}:{n}:").into_bytes();
    t.resize(32, b'.');
    t
}

fn pending(t: &Tenant, u: &User, id: &str, generation: i64, at: i64) -> PendingLogin {
    PendingLogin {
        id: id.into(),
        token_hash: token(id, 0),
        tenant_id: t.id,
        user_id: u.id,
        generation,
        decision: "challenge".into(),
        primary: "password".into(),
        client_id: Some("web".into()),
        ip: Some("192.0.2.7".into()),
        user_agent: Some("Mozilla/5.0".into()),
        created_at: at,
        expires_at: at + LOGIN_TTL,
        completed_at: None,
        device: Some("dev_x".into()),
        country: Some("GB".into()),
    }
}

async fn start(s: &DynStore, t: &Tenant, login: PendingLogin) {
    let at = login.created_at;
    s.start_login(login, audit("login.start", Some(t.id), at))
        .await
        .unwrap();
}

pub(super) fn session(t: &Tenant, u: &User, n: u32, at: i64) -> Session {
    Session {
        id: format!("ses_{n}"),
        token_hash: token("ses", n),
        tenant_id: t.id,
        user_id: u.id,
        generation: u.generation,
        amr: "pwd,otp".into(),
        second_factor: true,
        client_id: Some("web".into()),
        ip: Some("192.0.2.7".into()),
        created_at: at,
        last_seen_at: at,
        expires_at: at + SESSION_TTL,
        revoked_at: None,
        revoke_reason: None,
    }
}

fn device(t: &Tenant, u: &User, n: u32, at: i64) -> TrustedDevice {
    TrustedDevice {
        id: format!("dev_{n}"),
        token_hash: token("dev", n),
        tenant_id: t.id,
        user_id: u.id,
        generation: u.generation,
        label: "Firefox on Linux".into(),
        created_at: at,
        expires_at: at + 30 * 24 * 60 * 60 * 1000,
        last_used_at: None,
        revoked_at: None,
    }
}

fn complete(login_id: &str, at: i64) -> Effect {
    Effect::CompleteLogin {
        login_id: login_id.into(),
        at,
    }
}

fn revoke_session(id: &str, u: &User, at: i64) -> Effect {
    Effect::RevokeSession {
        id: id.into(),
        user_id: u.id,
        at,
        reason: "user".into(),
    }
}

fn revoke_device(id: &str, u: &User, at: i64) -> Effect {
    Effect::RevokeDevice {
        id: id.into(),
        user_id: u.id,
        at,
    }
}

pub(super) async fn the_user(s: &DynStore, u: &User) -> User {
    s.user(u.tenant_id, &u.external_id).await.unwrap().unwrap()
}

fn is_conflict<T: std::fmt::Debug>(r: &StoreResult<T>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

pub async fn generation_and_skip_are_kept_on_the_user(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let alice = user(&s, &t, "alice").await;
    assert_eq!((alice.generation, alice.skip_until), (0, None));
    assert_eq!(the_user(&s, &alice).await, alice);
    applied(
        &s,
        &t,
        vec![
            Effect::BumpGeneration { user_id: alice.id },
            Effect::BumpGeneration { user_id: alice.id },
            Effect::SetSkip {
                user_id: alice.id,
                until: 5_000,
            },
        ],
        100,
    )
    .await;
    let now = the_user(&s, &alice).await;
    assert_eq!((now.generation, now.skip_until), (2, Some(5_000)));
    assert_eq!(s.user_by_id(alice.id).await.unwrap(), Some(now.clone()));
    assert_eq!(
        s.user_with_factors(t.id, "alice").await.unwrap(),
        Some((now.clone(), vec![]))
    );
    assert_eq!(s.list_users(t.id, None, 10).await.unwrap(), vec![now]);
    assert_eq!(s.user_by_id(alice.id + 1_000).await.unwrap(), None);
    for missing in [
        Effect::BumpGeneration {
            user_id: alice.id + 1_000,
        },
        Effect::SetSkip {
            user_id: alice.id + 1_000,
            until: 1,
        },
    ] {
        assert_eq!(apply(&s, &t, vec![missing], 200).await, Err(STATE_CHANGED));
    }
    assert_eq!(audit_trail(&s, &t, "login.test").await.len(), 1);
}

pub async fn admins_are_listed_per_tenant(s: DynStore) {
    let a = tenant(&s, "acme").await;
    let b = tenant(&s, "beta").await;
    let root = admin(&s, &a, "root").await;
    user(&s, &a, "alice").await;
    let ops = admin(&s, &a, "ops").await;
    admin(&s, &b, "other").await;
    assert_eq!(s.admins_of(a.id).await.unwrap(), vec![root, ops]);
    let c = tenant(&s, "gamma").await;
    assert!(s.admins_of(c.id).await.unwrap().is_empty());
}

pub async fn policy_versions_move_one_at_a_time(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let other = tenant(&s, "beta").await;
    assert_eq!(s.policy(t.id).await.unwrap(), None);
    applied(&s, &t, vec![set_policy(&t, "v1", 0, 100)], 100).await;
    let v1 = StoredPolicy {
        tenant_id: t.id,
        json: "v1".into(),
        version: 1,
        updated_at: 100,
    };
    assert_eq!(s.policy(t.id).await.unwrap(), Some(v1.clone()));
    for (expected, why) in [
        (0, "a second first write"),
        (2, "a version from the future"),
    ] {
        assert_eq!(
            apply(&s, &t, vec![set_policy(&t, "lost", expected, 150)], 150).await,
            Err(STATE_CHANGED),
            "{why}"
        );
        assert_eq!(s.policy(t.id).await.unwrap(), Some(v1.clone()), "{why}");
    }
    applied(&s, &t, vec![set_policy(&t, "v2", 1, 200)], 200).await;
    let v2 = StoredPolicy {
        json: "v2".into(),
        version: 2,
        updated_at: 200,
        ..v1
    };
    assert_eq!(s.policy(t.id).await.unwrap(), Some(v2.clone()));
    assert_eq!(
        apply(&s, &t, vec![set_policy(&t, "stale", 1, 300)], 300).await,
        Err(STATE_CHANGED),
        "written over a version that has moved on"
    );
    assert_eq!(s.policy(t.id).await.unwrap(), Some(v2));
    assert_eq!(s.policy(other.id).await.unwrap(), None);
    assert_eq!(
        audit_trail(&s, &t, "login.test").await.len(),
        2,
        "refusals write nothing"
    );
    // Parallel first writes: one wins.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (s, other) = (s.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            apply(
                &s,
                &other,
                vec![set_policy(&other, &format!("p{i}"), 0, 10)],
                10,
            )
            .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e, STATE_CHANGED),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(s.policy(other.id).await.unwrap().unwrap().version, 1);
}

pub async fn a_new_proposal_supersedes_the_pending_one(s: DynStore) {
    use ProposalState::*;
    let t = tenant(&s, "acme").await;
    let root = admin(&s, &t, "root").await;
    let b = tenant(&s, "beta").await;
    let boss = admin(&s, &b, "boss").await;
    assert_eq!(s.proposal("prp_1").await.unwrap(), None);
    let p1 = proposal(&t, &root, "prp_1", 0, 100);
    applied(&s, &t, vec![Effect::InsertProposal(p1.clone())], 100).await;
    assert_eq!(s.proposal("prp_1").await.unwrap(), Some(p1));
    applied(
        &s,
        &b,
        vec![Effect::InsertProposal(proposal(&b, &boss, "prp_b", 0, 100))],
        100,
    )
    .await;
    applied(
        &s,
        &t,
        vec![Effect::InsertProposal(proposal(&t, &root, "prp_2", 0, 200))],
        200,
    )
    .await;
    assert_eq!(state_of(&s, "prp_1").await, Superseded);
    assert_eq!(state_of(&s, "prp_2").await, Pending);
    assert_eq!(
        state_of(&s, "prp_b").await,
        Pending,
        "another tenant's proposal"
    );
    assert_eq!(
        apply(
            &s,
            &t,
            vec![set_state("prp_1", Pending, Confirmed, 300)],
            300
        )
        .await,
        Err(STATE_CHANGED),
        "a superseded proposal cannot be confirmed"
    );
    applied(
        &s,
        &t,
        vec![set_state("prp_2", Pending, Confirmed, 300)],
        300,
    )
    .await;
    applied(
        &s,
        &t,
        vec![Effect::InsertProposal(proposal(&t, &root, "prp_3", 1, 400))],
        400,
    )
    .await;
    assert_eq!(
        state_of(&s, "prp_2").await,
        Confirmed,
        "only pending ones are superseded"
    );
    // A duplicate id is refused and supersedes nothing.
    let dup = apply(
        &s,
        &t,
        vec![Effect::InsertProposal(proposal(&t, &root, "prp_1", 1, 500))],
        500,
    )
    .await;
    assert!(is_conflict(&dup), "{dup:?}");
    assert_eq!(state_of(&s, "prp_3").await, Pending);
    assert_eq!(s.proposal("prp_1").await.unwrap().unwrap().created_at, 100);
}

pub async fn a_proposal_moves_only_from_its_state_before_expiry(s: DynStore) {
    use ProposalState::*;
    let t = tenant(&s, "acme").await;
    let root = admin(&s, &t, "root").await;
    let p = proposal(&t, &root, "prp_1", 0, 1_000);
    let end = p.expires_at;
    applied(&s, &t, vec![Effect::InsertProposal(p)], 1_000).await;
    for (e, why) in [
        (
            set_state("prp_1", Confirmed, Superseded, 2_000),
            "wrong from",
        ),
        (set_state("prp_1", Pending, Confirmed, end), "expired"),
        (
            set_state("prp_1", Pending, Confirmed, end + 1),
            "long expired",
        ),
        (
            set_state("prp_9", Pending, Confirmed, 2_000),
            "no such proposal",
        ),
    ] {
        assert_eq!(
            apply(&s, &t, vec![e], 2_000).await,
            Err(STATE_CHANGED),
            "{why}"
        );
        assert_eq!(state_of(&s, "prp_1").await, Pending, "{why}");
    }
    applied(
        &s,
        &t,
        vec![set_state("prp_1", Pending, Confirmed, end - 1)],
        2_000,
    )
    .await;
    assert_eq!(state_of(&s, "prp_1").await, Confirmed);
    assert_eq!(
        apply(
            &s,
            &t,
            vec![set_state("prp_1", Pending, Confirmed, 2_001)],
            2_001
        )
        .await,
        Err(STATE_CHANGED),
        "confirmed once"
    );
}

/// A code whose subject is a proposal: no factor row, the code's own limits only.
pub async fn a_code_for_a_proposal_confirms_it_once(s: DynStore) {
    use ProposalState::*;
    let t = tenant(&s, "acme").await;
    let root = admin(&s, &t, "root").await;
    let p1 = proposal(&t, &root, "prp_1", 0, 1_000);
    applied(&s, &t, vec![Effect::InsertProposal(p1.clone())], 1_000).await;
    let confirm_code = |p: &Proposal, code: u8, now: i64| {
        let mut i = issue(&t, &root, &p.id, CodePurpose::Verify, code, now);
        i.code.action_hash = Some(p.payload_hash.clone());
        i
    };
    let present = |p: &Proposal, code: u8, now: i64| {
        let mut c = consume(&t, &root, &p.id, CodePurpose::Verify, code, now);
        c.action_hash = Some(p.payload_hash.clone());
        c.on_success = vec![
            set_state(&p.id, Pending, Confirmed, now),
            set_policy(&t, &p.payload, p.base_version, now),
        ];
        c
    };
    assert_issued(&s, confirm_code(&p1, 7, 1_000)).await;
    assert_eq!(
        consume_code(&s, present(&p1, 8, 1_100)).await,
        rejected(RejectReason::WrongCode)
    );
    let mut other_action = present(&p1, 7, 1_150);
    other_action.action_hash = Some(b"another payload".to_vec());
    assert_eq!(
        consume_code(&s, other_action).await,
        rejected(RejectReason::WrongCode)
    );
    assert_eq!(s.policy(t.id).await.unwrap(), None);
    assert_eq!(
        consume_code(&s, present(&p1, 7, 1_200)).await,
        accepted_by("prp_1")
    );
    assert_eq!(state_of(&s, "prp_1").await, Confirmed);
    let policy = s.policy(t.id).await.unwrap().unwrap();
    assert_eq!((policy.json, policy.version), (p1.payload.clone(), 1));
    assert_eq!(
        consume_code(&s, present(&p1, 7, 1_300)).await,
        rejected(RejectReason::Replayed)
    );
    assert_eq!(s.policy(t.id).await.unwrap().unwrap().version, 1);
    assert!(
        s.factors_of(root.id).await.unwrap().is_empty(),
        "no factor was made or needed"
    );

    // Five wrong tries kill the code, right or not afterwards.
    let p2 = Proposal {
        expires_at: 2_000 + 3 * TTL,
        ..proposal(&t, &root, "prp_2", 1, 2_000)
    };
    applied(&s, &t, vec![Effect::InsertProposal(p2.clone())], 2_000).await;
    let now = 1_000 + COOLDOWN;
    assert_issued(&s, confirm_code(&p2, 5, now)).await;
    for i in 0..CODE_MAX_ATTEMPTS {
        assert_eq!(
            consume_code(&s, present(&p2, 6, now + 1 + i64::from(i))).await,
            rejected(RejectReason::WrongCode)
        );
    }
    assert_eq!(
        consume_code(&s, present(&p2, 5, now + 100)).await,
        rejected(RejectReason::NoCode),
        "dead after five wrong tries"
    );
    assert_eq!(state_of(&s, "prp_2").await, Pending);
    assert_eq!(s.policy(t.id).await.unwrap().unwrap().version, 1);
    assert_eq!(
        issue_code(&s, confirm_code(&p2, 9, now + COOLDOWN)).await,
        IssueOutcome::Refused {
            reason: SendRefusal::Exhausted,
            retry_at: now + TTL
        },
        "no fresh tries while the dead code lives"
    );

    // A code whose effects no longer hold stays unconsumed.
    let later = now + TTL;
    assert_issued(&s, confirm_code(&p2, 9, later)).await;
    applied(&s, &t, vec![set_policy(&t, "moved on", 1, later)], later).await;
    assert_eq!(
        s.consume_code(present(&p2, 9, later + 1)).await,
        Err(STATE_CHANGED)
    );
    assert_eq!(state_of(&s, "prp_2").await, Pending);
    let mut retry = present(&p2, 9, later + 2);
    retry.on_success = vec![set_state("prp_2", Pending, Superseded, later + 2)];
    assert_eq!(consume_code(&s, retry).await, accepted_by("prp_2"));

    let trail = audit_trail(&s, &t, "code.verify").await;
    let wrong = trail
        .iter()
        .filter(|r| **r == row("denied", Some("wrong_code")))
        .count();
    assert_eq!(wrong, 2 + CODE_MAX_ATTEMPTS as usize);
    assert_eq!(trail.iter().filter(|r| r.0 == "ok").count(), 2);
}

pub async fn a_pending_login_completes_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    let l1 = pending(&t, &u, "lgn_1", 0, 1_000);
    start(&s, &t, l1.clone()).await;
    assert_eq!(
        s.pending_login(&l1.token_hash).await.unwrap(),
        Some(l1.clone())
    );
    assert_eq!(s.pending_login(&token("lgn_x", 0)).await.unwrap(), None);
    let dup = s
        .start_login(l1.clone(), audit("login.start", Some(t.id), 1_001))
        .await;
    assert!(is_conflict(&dup), "{dup:?}");
    let other_id = PendingLogin {
        id: "lgn_other".into(),
        ..l1.clone()
    };
    let dup = s
        .start_login(other_id, audit("login.start", Some(t.id), 1_001))
        .await;
    assert!(is_conflict(&dup), "the same token twice: {dup:?}");
    assert_eq!(audit_trail(&s, &t, "login.start").await.len(), 1);

    let s1 = session(&t, &u, 1, 2_000);
    applied(
        &s,
        &t,
        vec![complete("lgn_1", 2_000), Effect::InsertSession(s1.clone())],
        2_000,
    )
    .await;
    assert_eq!(
        s.pending_login(&l1.token_hash)
            .await
            .unwrap()
            .unwrap()
            .completed_at,
        Some(2_000)
    );
    assert_eq!(s.session(&s1.token_hash).await.unwrap(), Some(s1));
    let s2 = session(&t, &u, 2, 2_001);
    assert_eq!(
        apply(
            &s,
            &t,
            vec![complete("lgn_1", 2_001), Effect::InsertSession(s2.clone())],
            2_001
        )
        .await,
        Err(STATE_CHANGED),
        "a pending token is worth one session"
    );
    assert_eq!(s.session(&s2.token_hash).await.unwrap(), None);

    let l2 = pending(&t, &u, "lgn_2", 0, 3_000);
    start(&s, &t, l2.clone()).await;
    for at in [l2.expires_at, l2.expires_at + 1] {
        assert_eq!(
            apply(&s, &t, vec![complete("lgn_2", at)], at).await,
            Err(STATE_CHANGED),
            "expired"
        );
    }
    assert_eq!(
        apply(&s, &t, vec![complete("lgn_none", 3_000)], 3_000).await,
        Err(STATE_CHANGED)
    );

    // A factor change between the first and the second step kills the login.
    start(&s, &t, pending(&t, &u, "lgn_3", 0, 4_000)).await;
    applied(
        &s,
        &t,
        vec![Effect::BumpGeneration { user_id: u.id }],
        4_100,
    )
    .await;
    assert_eq!(
        apply(&s, &t, vec![complete("lgn_3", 4_200)], 4_200).await,
        Err(STATE_CHANGED),
        "started under an older generation"
    );
    start(&s, &t, pending(&t, &u, "lgn_4", 1, 4_300)).await;
    applied(&s, &t, vec![complete("lgn_4", 4_400)], 4_400).await;
    assert_eq!(
        apply(&s, &t, vec![complete("lgn_2", l2.expires_at - 1)], 4_500).await,
        Err(STATE_CHANGED),
        "live, but its generation is gone"
    );
    assert_eq!(audit_trail(&s, &t, "login.test").await.len(), 3);
}

pub async fn parallel_completions_mint_one_session(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    start(&s, &t, pending(&t, &u, "lgn_1", 0, 1_000)).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, t, u) = (s.clone(), t.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            let at = 2_000 + i64::from(i);
            let effects = vec![
                complete("lgn_1", at),
                Effect::InsertSession(session(&t, &u, i, at)),
            ];
            apply(&s, &t, effects, at).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e, STATE_CHANGED),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(s.sessions_of(u.id).await.unwrap().len(), 1);
    assert_eq!(audit_trail(&s, &t, "login.test").await.len(), 1);
}

pub async fn sessions_round_trip_and_revoke_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let alice = user(&s, &t, "alice").await;
    let bob = user(&s, &t, "bob").await;
    let ses: Vec<Session> = (1..=3)
        .map(|n| session(&t, &alice, n, 1_000 * i64::from(n)))
        .collect();
    for x in &ses {
        applied(&s, &t, vec![Effect::InsertSession(x.clone())], x.created_at).await;
    }
    let bobs = session(&t, &bob, 9, 1_500);
    applied(&s, &t, vec![Effect::InsertSession(bobs.clone())], 1_500).await;
    for x in &ses {
        assert_eq!(s.session(&x.token_hash).await.unwrap(), Some(x.clone()));
    }
    assert_eq!(s.session(&token("ses", 7)).await.unwrap(), None);
    let newest_first: Vec<Session> = ses.iter().rev().cloned().collect();
    assert_eq!(s.sessions_of(alice.id).await.unwrap(), newest_first);
    assert_eq!(s.sessions_of(bob.id).await.unwrap(), vec![bobs]);
    let dup = Session {
        id: "ses_dup".into(),
        ..ses[0].clone()
    };
    let r = apply(&s, &t, vec![Effect::InsertSession(dup)], 4_000).await;
    assert!(is_conflict(&r), "the same token twice: {r:?}");
    assert_eq!(s.sessions_of(alice.id).await.unwrap().len(), 3);

    assert_eq!(
        apply(&s, &t, vec![revoke_session("ses_2", &bob, 5_000)], 5_000).await,
        Err(STATE_CHANGED),
        "another user's session"
    );
    assert_eq!(
        s.session(&ses[1].token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
    applied(&s, &t, vec![revoke_session("ses_2", &alice, 5_000)], 5_000).await;
    let revoked = s.session(&ses[1].token_hash).await.unwrap().unwrap();
    assert_eq!(
        (revoked.revoked_at, revoked.revoke_reason.as_deref()),
        (Some(5_000), Some("user"))
    );
    for (id, why) in [("ses_2", "revoked once"), ("ses_none", "no such session")] {
        assert_eq!(
            apply(&s, &t, vec![revoke_session(id, &alice, 6_000)], 6_000).await,
            Err(STATE_CHANGED),
            "{why}"
        );
    }
    assert_eq!(
        s.session(&ses[1].token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(5_000)
    );
    assert_eq!(
        s.sessions_of(alice.id).await.unwrap().len(),
        3,
        "revoked sessions are listed"
    );
}

pub async fn devices_round_trip_and_revoke_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let alice = user(&s, &t, "alice").await;
    let bob = user(&s, &t, "bob").await;
    let devs: Vec<TrustedDevice> = (1..=3)
        .map(|n| device(&t, &alice, n, 1_000 * i64::from(n)))
        .collect();
    for d in &devs {
        applied(&s, &t, vec![Effect::InsertDevice(d.clone())], d.created_at).await;
    }
    let bobs = device(&t, &bob, 9, 1_500);
    applied(&s, &t, vec![Effect::InsertDevice(bobs.clone())], 1_500).await;
    for d in &devs {
        assert_eq!(s.device(&d.token_hash).await.unwrap(), Some(d.clone()));
    }
    assert_eq!(s.device(&token("dev", 7)).await.unwrap(), None);
    let newest_first: Vec<TrustedDevice> = devs.iter().rev().cloned().collect();
    assert_eq!(s.devices_of(alice.id).await.unwrap(), newest_first);
    assert_eq!(s.devices_of(bob.id).await.unwrap(), vec![bobs]);
    let dup = TrustedDevice {
        id: "dev_dup".into(),
        ..devs[0].clone()
    };
    let r = apply(&s, &t, vec![Effect::InsertDevice(dup)], 4_000).await;
    assert!(is_conflict(&r), "the same token twice: {r:?}");

    assert_eq!(
        apply(&s, &t, vec![revoke_device("dev_1", &bob, 5_000)], 5_000).await,
        Err(STATE_CHANGED),
        "another user's device"
    );
    assert_eq!(
        s.device(&devs[0].token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
    applied(&s, &t, vec![revoke_device("dev_1", &alice, 5_000)], 5_000).await;
    for (id, why) in [("dev_1", "revoked once"), ("dev_none", "no such device")] {
        assert_eq!(
            apply(&s, &t, vec![revoke_device(id, &alice, 6_000)], 6_000).await,
            Err(STATE_CHANGED),
            "{why}"
        );
    }
    assert_eq!(
        s.device(&devs[0].token_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(5_000)
    );
    assert_eq!(s.devices_of(alice.id).await.unwrap().len(), 3);
}

pub async fn touch_moves_last_seen_forward_only(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    let x = session(&t, &u, 1, 1_000);
    applied(&s, &t, vec![Effect::InsertSession(x.clone())], 1_000).await;
    let last_seen = || async {
        s.session(&x.token_hash)
            .await
            .unwrap()
            .unwrap()
            .last_seen_at
    };
    assert!(s.touch_session("ses_1", 5_000).await.unwrap());
    assert_eq!(last_seen().await, 5_000);
    assert!(s.touch_session("ses_1", 3_000).await.unwrap());
    assert_eq!(
        last_seen().await,
        5_000,
        "a late request does not move it back"
    );
    applied(&s, &t, vec![revoke_session("ses_1", &u, 6_000)], 6_000).await;
    assert!(!s.touch_session("ses_1", 9_000).await.unwrap());
    assert_eq!(last_seen().await, 5_000);
    assert!(!s.touch_session("ses_none", 9_000).await.unwrap());
    assert_eq!(
        audit_trail(&s, &t, "login.test").await.len(),
        2,
        "touching is not audited"
    );
}

pub async fn a_failed_apply_changes_nothing(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let root = admin(&s, &t, "root").await;
    let u = user(&s, &t, "alice").await;
    let kept = session(&t, &u, 1, 500);
    applied(&s, &t, vec![Effect::InsertSession(kept.clone())], 500).await;
    start(&s, &t, pending(&t, &u, "lgn_1", 0, 1_000)).await;
    let everything = || {
        vec![
            Effect::SetSkip {
                user_id: u.id,
                until: 9_000,
            },
            complete("lgn_1", 2_000),
            Effect::BumpGeneration { user_id: u.id },
            set_policy(&t, "v1", 0, 2_000),
            Effect::InsertProposal(proposal(&t, &root, "prp_1", 0, 2_000)),
            Effect::InsertSession(session(&t, &u, 2, 2_000)),
            Effect::InsertDevice(device(&t, &u, 1, 2_000)),
            revoke_session("ses_1", &u, 2_000),
            Effect::Enqueue(NewMessage {
                message_id: "notice@test".into(),
                tenant_id: t.id,
                user_id: Some(u.id),
                channel: Channel::Email,
                destination: "alice@example.com".into(),
                template: TemplateKind::SecurityNotice,
                sealed_params: vec![1; 16],
                created_at: 2_000,
            }),
        ]
    };
    let dup_device = Effect::InsertDevice(TrustedDevice {
        id: "dev_2".into(),
        ..device(&t, &u, 1, 2_000)
    });
    for (last, why) in [
        (
            revoke_device("dev_none", &u, 2_000),
            "a failed precondition",
        ),
        (dup_device, "a duplicate token"),
    ] {
        let mut effects = everything();
        effects.push(last);
        let r = apply(&s, &t, effects, 2_000).await;
        assert!(is_conflict(&r), "{why}: {r:?}");
        assert_eq!(the_user(&s, &u).await, u, "{why}");
        assert_eq!(s.policy(t.id).await.unwrap(), None, "{why}");
        assert_eq!(s.proposal("prp_1").await.unwrap(), None, "{why}");
        let login = s.pending_login(&token("lgn_1", 0)).await.unwrap().unwrap();
        assert_eq!(login.completed_at, None, "{why}");
        assert_eq!(
            s.sessions_of(u.id).await.unwrap(),
            vec![kept.clone()],
            "{why}"
        );
        assert!(s.devices_of(u.id).await.unwrap().is_empty(), "{why}");
        let queued = s
            .list_messages(MessageQuery {
                tenant_id: Some(t.id),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(queued.is_empty(), "{why}");
        assert_eq!(audit_trail(&s, &t, "login.test").await.len(), 1, "{why}");
    }
    // The same effects alone go through, all together.
    applied(&s, &t, everything(), 2_000).await;
    let now = the_user(&s, &u).await;
    assert_eq!((now.generation, now.skip_until), (1, Some(9_000)));
    assert_eq!(s.sessions_of(u.id).await.unwrap().len(), 2);
    assert_eq!(audit_trail(&s, &t, "login.test").await.len(), 2);
}

fn webhook(t: &Tenant, id: &str, events: &[&str], at: i64) -> Webhook {
    Webhook {
        id: id.into(),
        tenant_id: t.id,
        url: format!("https://hooks.example.com/{id}"),
        sealed_secret: vec![7; 40],
        events: events.iter().map(|e| e.to_string()).collect(),
        created_at: at,
    }
}

pub async fn webhooks_round_trip_per_tenant_and_delete_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let other = tenant(&s, "other").await;
    let a = webhook(&t, "whk_a", &["login.decided", "factor.enrolled"], 1_000);
    let b = webhook(&t, "whk_b", &["policy.changed"], 2_000);
    applied(&s, &t, vec![Effect::InsertWebhook(a.clone())], 1_000).await;
    applied(&s, &t, vec![Effect::InsertWebhook(b.clone())], 2_000).await;
    applied(
        &s,
        &other,
        vec![Effect::InsertWebhook(webhook(
            &other,
            "whk_c",
            &["x"],
            3_000,
        ))],
        3_000,
    )
    .await;
    assert_eq!(
        s.webhooks_of(t.id).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    let dup = apply(&s, &t, vec![Effect::InsertWebhook(a.clone())], 4_000).await;
    assert!(is_conflict(&dup), "{dup:?}");
    // Another tenant's id cannot delete it.
    let r = apply(
        &s,
        &other,
        vec![Effect::DeleteWebhook {
            id: "whk_a".into(),
            tenant_id: other.id,
        }],
        5_000,
    )
    .await;
    assert_eq!(r, Err(StoreError::Conflict("state_changed")));
    applied(
        &s,
        &t,
        vec![Effect::DeleteWebhook {
            id: "whk_a".into(),
            tenant_id: t.id,
        }],
        6_000,
    )
    .await;
    assert_eq!(s.webhooks_of(t.id).await.unwrap(), vec![b]);
    assert_eq!(s.webhooks_of(other.id).await.unwrap().len(), 1);
}

// ------------------------------------------------------------ two handles on one database
//
// Not in `conformance_tests!`: like the `two_handles_*` checks in `messaging`, this needs two
// independent handles on the same database (two processes, or two nodes).

/// Completions of one pending login through two handles mint one session; a completion racing
/// a generation bump on the other handle either commits (before the bump) or is refused, and
/// after the bump nothing completes it.
pub async fn two_handles_complete_a_login_once(a: DynStore, b: DynStore) {
    let t = tenant(&a, "acme").await;
    let u = user(&a, &t, "alice").await;
    start(&a, &t, pending(&t, &u, "lgn_1", 0, 1_000)).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (t, u) = (t.clone(), u.clone());
        tasks.push(tokio::spawn(async move {
            let at = 2_000 + i64::from(i);
            let effects = vec![
                complete("lgn_1", at),
                Effect::InsertSession(session(&t, &u, i, at)),
            ];
            apply(&s, &t, effects, at).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e, STATE_CHANGED),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(b.sessions_of(u.id).await.unwrap().len(), 1);

    // Each round: a login of the current generation, completed through one handle while the
    // other bumps the generation.
    for round in 0..10u32 {
        let generation = the_user(&a, &u).await.generation;
        let id = format!("lgn_r{round}");
        let at = 10_000 + i64::from(round) * 100;
        let login = PendingLogin {
            token_hash: token(&id, round),
            ..pending(&t, &u, &id, generation, at)
        };
        start(&a, &t, login.clone()).await;
        let (first, second) = if round % 2 == 0 {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let (tc, tb, user_id) = (t.clone(), t.clone(), u.id);
        let complete_it =
            tokio::spawn(
                async move { apply(&first, &tc, vec![complete(&id, at + 1)], at + 1).await },
            );
        let bump = tokio::spawn(async move {
            apply(
                &second,
                &tb,
                vec![Effect::BumpGeneration { user_id }],
                at + 1,
            )
            .await
        });
        let completed = complete_it.await.unwrap();
        bump.await.unwrap().unwrap();
        let now = a.pending_login(&login.token_hash).await.unwrap().unwrap();
        match completed {
            Ok(()) => assert_eq!(now.completed_at, Some(at + 1)),
            Err(e) => {
                assert_eq!(e, STATE_CHANGED);
                assert_eq!(now.completed_at, None);
            }
        }
        assert_eq!(the_user(&b, &u).await.generation, generation + 1);
        // Completing after the bump is refused, through either handle.
        assert_eq!(
            apply(&b, &t, vec![complete(&login.id, at + 2)], at + 2).await,
            Err(STATE_CHANGED)
        );
    }
}
