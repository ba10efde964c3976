//! Conformance checks for security keys (WebAuthn): a key's label and credential id round-trip
//! and the credential is registered once across the whole server; a ceremony is spent once, by
//! its user, before it expires (even in parallel, and inside an accepted step) and pruned once
//! expired; a key's sealed credential is replaced and the key locked with a version bump; a key
//! counts as its own method in rollouts and its credential is resealed by a key rotation.

use super::logins::{applied, apply, STATE_CHANGED};
use super::*;
use twofold_core::keys::SealedColumn;
use twofold_core::messaging::Effect;
use twofold_core::policy::Method;
use twofold_core::rollout::{MethodGroup, MethodSet};
use twofold_core::service::keys::sweep_sealed;
use twofold_core::webauthn::{CeremonyPurpose, WebauthnChallenge, CEREMONY_TTL_MS};
use twofold_crypto::{KeyMaterial, Keyring};

const REGISTERED: StoreError = StoreError::Conflict("credential_registered");

/// An active security key of `u` holding the WebAuthn credential `credential`.
fn key(t: &Tenant, u: &User, id: &str, credential: &[u8]) -> Factor {
    let mut f = factor(t, u, id, FactorStatus::Active);
    f.kind = "webauthn".into();
    f.label = Some(format!("Blue YubiKey {id}"));
    f.credential_id = Some(credential.to_vec());
    f.sealed_secret = vec![9; 64];
    f
}

async fn enrol(s: &DynStore, t: &Tenant, f: Factor) -> StoreResult<()> {
    s.insert_factor(f, 10, audit("factor.enrol", Some(t.id), 3))
        .await
}

/// A sign-in ceremony of `u` made at `at`, live for [`CEREMONY_TTL_MS`].
fn ceremony(t: &Tenant, u: &User, id: &str, at: i64) -> WebauthnChallenge {
    WebauthnChallenge {
        id: id.into(),
        tenant_id: t.id,
        user_id: u.id,
        purpose: CeremonyPurpose::SignIn.as_str().into(),
        binding: "lgn_1".into(),
        state: r#"{"ast":{"challenge":"c2lnbi1pbg"}}"#.into(),
        created_at: at,
        expires_at: at + CEREMONY_TTL_MS,
        used_at: None,
    }
}

fn spend(id: &str, u: &User, at: i64) -> Effect {
    Effect::UseWebauthnChallenge {
        id: id.into(),
        user_id: u.id,
        at,
    }
}

async fn used_at(s: &DynStore, id: &str) -> Option<i64> {
    s.webauthn_challenge(id).await.unwrap().unwrap().used_at
}

pub async fn a_security_key_round_trips_and_its_credential_is_registered_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let other = tenant(&s, "globex").await;
    let alice = user(&s, &t, "alice").await;
    let bob = user(&s, &other, "bob").await;
    let k = key(&t, &alice, "fac_key1", b"cred-1");
    enrol(&s, &t, k.clone()).await.unwrap();
    assert_eq!(s.factors_of(alice.id).await.unwrap(), vec![k.clone()]);
    assert_eq!(
        s.user_with_factors(t.id, "alice").await.unwrap(),
        Some((alice.clone(), vec![k.clone()]))
    );

    // The same credential again: for another tenant's user, for the same user, as a restored
    // factor, or with other effects in one transaction, of which nothing stays.
    let theirs = key(&other, &bob, "fac_key2", b"cred-1");
    assert_eq!(enrol(&s, &other, theirs.clone()).await, Err(REGISTERED));
    let again = key(&t, &alice, "fac_key3", b"cred-1");
    assert_eq!(enrol(&s, &t, again).await, Err(REGISTERED));
    let restore = Effect::RestoreFactor(theirs.clone());
    assert_eq!(apply(&s, &other, vec![restore], 10).await, Err(REGISTERED));
    let with_ceremony = vec![
        Effect::InsertWebauthnChallenge(ceremony(&other, &bob, "wac_reg", 10)),
        Effect::InsertFactor {
            factor: theirs,
            max_per_user: 10,
        },
    ];
    assert_eq!(apply(&s, &other, with_ceremony, 10).await, Err(REGISTERED));
    assert_eq!(s.webauthn_challenge("wac_reg").await.unwrap(), None);
    assert!(s.factors_of(bob.id).await.unwrap().is_empty());
    let audits = s
        .list_audit(AuditQuery {
            tenant_id: Some(other.id),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        audits
            .iter()
            .all(|e| !["factor.enrol", "login.test"].contains(&e.record.action.as_str())),
        "no audit row of a refused registration: {audits:?}"
    );
    assert_eq!(
        s.factors_of(alice.id).await.unwrap(),
        vec![k],
        "the first key is untouched"
    );

    // A duplicate factor id is still that conflict; other credentials and factors without
    // one (any number of them) are fine.
    let same_id = key(&t, &alice, "fac_key1", b"cred-9");
    assert_eq!(
        enrol(&s, &t, same_id).await,
        Err(StoreError::Conflict("factor_exists"))
    );
    enrol(&s, &other, key(&other, &bob, "fac_key2", b"cred-2"))
        .await
        .unwrap();
    for id in ["fac_t1", "fac_t2"] {
        enrol(&s, &other, factor(&other, &bob, id, FactorStatus::Active))
            .await
            .unwrap();
    }
    let bobs = s.factors_of(bob.id).await.unwrap();
    let credentials: Vec<Option<&[u8]>> = bobs.iter().map(|f| f.credential_id.as_deref()).collect();
    assert_eq!(credentials, vec![Some(&b"cred-2"[..]), None, None]);
    assert_eq!(bobs[1].label, None);

    // A removed key frees its credential.
    assert!(s
        .delete_factor(
            "fac_key1",
            None,
            audit("factor.delete", Some(t.id), 20),
            None
        )
        .await
        .unwrap());
    enrol(&s, &other, key(&other, &bob, "fac_key4", b"cred-1"))
        .await
        .unwrap();
}

pub async fn a_ceremony_is_spent_once_by_its_user_before_it_expires(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let alice = user(&s, &t, "alice").await;
    let mallory = user(&s, &t, "mallory").await;
    let c = ceremony(&t, &alice, "wac_1", 1_000);
    applied(
        &s,
        &t,
        vec![Effect::InsertWebauthnChallenge(c.clone())],
        1_000,
    )
    .await;
    assert_eq!(
        s.webauthn_challenge("wac_1").await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(s.webauthn_challenge("wac_2").await.unwrap(), None);
    let dup = vec![Effect::InsertWebauthnChallenge(c.clone())];
    assert_eq!(
        apply(&s, &t, dup, 1_000).await,
        Err(StoreError::Conflict("webauthn_challenge_exists"))
    );

    // Another user's answer, one at the expiry and one to an unknown ceremony spend nothing.
    for refused in [
        spend("wac_1", &mallory, 2_000),
        spend("wac_1", &alice, c.expires_at),
        spend("wac_missing", &alice, 2_000),
    ] {
        assert_eq!(
            apply(&s, &t, vec![refused], 2_000).await,
            Err(STATE_CHANGED)
        );
    }
    assert_eq!(used_at(&s, "wac_1").await, None);
    applied(&s, &t, vec![spend("wac_1", &alice, 2_000)], 2_000).await;
    assert_eq!(used_at(&s, "wac_1").await, Some(2_000));
    assert_eq!(
        apply(&s, &t, vec![spend("wac_1", &alice, 2_001)], 2_001).await,
        Err(STATE_CHANGED),
        "a ceremony answers once"
    );
    assert_eq!(used_at(&s, "wac_1").await, Some(2_000));

    // Parallel answers: exactly one spends it.
    let c = ceremony(&t, &alice, "wac_par", 3_000);
    applied(&s, &t, vec![Effect::InsertWebauthnChallenge(c)], 3_000).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (s, t, alice) = (s.clone(), t.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            apply(&s, &t, vec![spend("wac_par", &alice, 4_000 + i)], 4_000).await
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
}

pub async fn a_key_gets_a_new_secret_and_a_lock_with_a_version_bump(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    enrol(&s, &t, key(&t, &u, "fac_key", b"cred"))
        .await
        .unwrap();
    let new_secret = |bytes: Vec<u8>| Effect::SetFactorSecret {
        factor_id: "fac_key".into(),
        sealed_secret: bytes,
    };
    let lock = |at| Effect::LockFactor {
        factor_id: "fac_key".into(),
        at,
    };
    applied(&s, &t, vec![new_secret(vec![7; 80])], 1_000).await;
    let f = the_factor(&s, &u).await;
    assert_eq!(
        (f.sealed_secret, f.version, f.locked_at),
        (vec![7; 80], 2, None)
    );

    // Answering a ceremony and moving the counter are one transaction: a spent ceremony
    // leaves the credential as it was.
    let c = ceremony(&t, &u, "wac_1", 1_000);
    applied(&s, &t, vec![Effect::InsertWebauthnChallenge(c)], 1_000).await;
    let answer = |at, bytes| vec![spend("wac_1", &u, at), new_secret(bytes)];
    applied(&s, &t, answer(2_000, vec![8; 80]), 2_000).await;
    assert_eq!(
        apply(&s, &t, answer(3_000, vec![6; 80]), 3_000).await,
        Err(STATE_CHANGED)
    );
    let f = the_factor(&s, &u).await;
    assert_eq!((f.sealed_secret, f.version), (vec![8; 80], 3));

    // The first lock's time stays; each lock moves the version (cached copies must reload).
    applied(&s, &t, vec![lock(5_000)], 5_000).await;
    let f = the_factor(&s, &u).await;
    assert_eq!((f.locked_at, f.version), (Some(5_000), 4));
    applied(&s, &t, vec![lock(6_000)], 6_000).await;
    let f = the_factor(&s, &u).await;
    assert_eq!((f.locked_at, f.version), (Some(5_000), 5));
    assert!(s
        .unlock_factor("fac_key", audit("factor.unlock", Some(t.id), 7_000), vec![])
        .await
        .unwrap());
    assert_eq!(the_factor(&s, &u).await.locked_at, None);

    for missing in [
        Effect::SetFactorSecret {
            factor_id: "fac_gone".into(),
            sealed_secret: vec![1],
        },
        Effect::LockFactor {
            factor_id: "fac_gone".into(),
            at: 8_000,
        },
    ] {
        assert_eq!(
            apply(&s, &t, vec![missing], 8_000).await,
            Err(STATE_CHANGED)
        );
    }
}

/// The new effects also ride on an accepted TOTP step (`Attempt::on_accept`), in its
/// transaction: a spent ceremony there leaves the step unconsumed.
pub async fn webauthn_effects_ride_on_the_accepted_step(s: DynStore) {
    let (t, u) = setup(&s).await;
    let c = ceremony(&t, &u, "wac_1", 500);
    applied(&s, &t, vec![Effect::InsertWebauthnChallenge(c)], 500).await;
    let mut a = attempt(1_000, Some(50), 1);
    a.on_accept = vec![spend("wac_1", &u, 1_000)];
    assert_eq!(s.attempt(a).await.unwrap(), accepted());
    assert_eq!(used_at(&s, "wac_1").await, Some(1_000));
    let mut a = attempt(1_001, Some(51), 1);
    a.on_accept = vec![
        Effect::LockFactor {
            factor_id: "fac_a".into(),
            at: 1_001,
        },
        spend("wac_1", &u, 1_001),
    ];
    assert_eq!(s.attempt(a).await, Err(STATE_CHANGED));
    let f = the_factor(&s, &u).await;
    assert_eq!(
        (f.last_step, f.locked_at),
        (50, None),
        "nothing of it stays"
    );
}

pub async fn expired_ceremonies_are_pruned_and_live_ones_kept(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    for (id, at) in [("wac_a", 0), ("wac_b", 100_000), ("wac_c", 200_000)] {
        let c = ceremony(&t, &u, id, at);
        applied(&s, &t, vec![Effect::InsertWebauthnChallenge(c)], at).await;
    }
    applied(&s, &t, vec![spend("wac_b", &u, 150_000)], 150_000).await;
    assert_eq!(
        s.prune_webauthn_challenges(CEREMONY_TTL_MS).await.unwrap(),
        0,
        "a ceremony expiring at that instant is kept"
    );
    // Spent or not, an expired ceremony goes.
    assert_eq!(
        s.prune_webauthn_challenges(100_000 + CEREMONY_TTL_MS + 1)
            .await
            .unwrap(),
        2
    );
    assert_eq!(s.webauthn_challenge("wac_a").await.unwrap(), None);
    assert_eq!(s.webauthn_challenge("wac_b").await.unwrap(), None);
    assert!(s.webauthn_challenge("wac_c").await.unwrap().is_some());
}

pub async fn a_security_key_counts_as_the_webauthn_method_in_rollouts(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let ann = user(&s, &t, "ann").await;
    let bob = user(&s, &t, "bob").await;
    let cat = user(&s, &t, "cat").await;
    enrol(&s, &t, key(&t, &ann, "f1", b"cred-ann"))
        .await
        .unwrap();
    enrol(&s, &t, factor(&t, &ann, "f2", FactorStatus::Active))
        .await
        .unwrap();
    enrol(&s, &t, key(&t, &bob, "f3", b"cred-bob"))
        .await
        .unwrap();
    let mut pending = key(&t, &cat, "f4", b"cred-cat");
    pending.status = FactorStatus::Pending;
    enrol(&s, &t, pending).await.unwrap();

    let keys_only = MethodSet::default().with(Method::Webauthn);
    let both = keys_only.with(Method::Totp);
    let mut groups = s.rollout_groups(t.id).await.unwrap();
    groups.sort_by_key(|g| g.methods);
    let group = |methods, users| MethodGroup {
        profile: None,
        methods,
        users,
    };
    assert_eq!(
        groups,
        vec![
            group(MethodSet::default(), 1),
            group(keys_only, 1),
            group(both, 1)
        ]
    );
    let mut methods = s
        .active_methods(t.id, &[ann.id, bob.id, cat.id])
        .await
        .unwrap();
    methods.sort();
    assert_eq!(methods, vec![(ann.id, both), (bob.id, keys_only)]);
    assert!(methods.iter().all(|(_, m)| m.contains(Method::Webauthn)));
}

/// A key's sealed credential is a factor secret like a TOTP seed: the rotation sweep finds it
/// and reseals it under the new key, bound to the same owner.
pub async fn a_rotation_sweep_reseals_security_keys(s: DynStore) {
    let (old, new) = (KeyMaterial::generate(), KeyMaterial::generate());
    let old_ring = Keyring::new(old.clone());
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    let owner = Factor::seal_owner(t.id, u.id, "fac_key");
    let mut k = key(&t, &u, "fac_key", b"cred");
    k.sealed_secret = old_ring.seal(b"credential-json", &owner).unwrap();
    enrol(&s, &t, k).await.unwrap();
    let rows = s
        .sealed_rows(SealedColumn::FactorSecret, None, 10)
        .await
        .unwrap();
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, vec!["fac_key"]);

    let both = Keyring::from_keys([old, new.clone()], &new.id()).unwrap();
    let census = sweep_sealed(&*s, Some(&both), 10, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(census.resealed, 1, "{census:?}");
    assert!(census.unreadable.is_empty(), "{census:?}");
    let f = the_factor(&s, &u).await;
    assert_eq!(
        Keyring::new(new).unseal(&f.sealed_secret, &owner).unwrap(),
        b"credential-json"
    );
    assert_eq!(f.credential_id.as_deref(), Some(&b"cred"[..]));
}
