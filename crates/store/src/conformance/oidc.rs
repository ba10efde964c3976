//! Conformance checks for the OpenID Connect provider: clients per tenant, signing keys,
//! login-hint `jti`s and authorization codes spent once even in parallel, hosted logins, the
//! two sealed columns in a rotation sweep, and pruning.

use super::logins::{applied, apply, STATE_CHANGED};
use super::*;
use twofold_core::keys::SealedColumn;
use twofold_core::messaging::*;
use twofold_core::oidc::*;
use twofold_core::service::keys::sweep_sealed;
use twofold_crypto::{KeyMaterial, Keyring};

fn client(t: &Tenant, app: &str, sealed: Vec<u8>) -> OidcClient {
    OidcClient {
        id: OidcClient::client_id(&t.slug, app),
        tenant_id: t.id,
        app_id: app.into(),
        redirect_uris: vec![
            "https://app.example.com/cb".into(),
            "http://localhost/cb".into(),
        ],
        sealed_secret: sealed,
        created_at: 1_000,
        secret_at: 1_000,
    }
}

fn code(t: &Tenant, u: &User, hash: &[u8], at: i64) -> AuthCode {
    AuthCode {
        code_hash: hash.to_vec(),
        tenant_id: t.id,
        client_id: OidcClient::client_id(&t.slug, "web"),
        redirect_uri: "https://app.example.com/cb".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        user_id: u.id,
        subject: u.external_id.clone(),
        amr: "pwd,otp".into(),
        acr: ACR_2FA.into(),
        auth_time: at,
        session_id: Some("ses_1".into()),
        created_at: at,
        expires_at: at + CODE_TTL_MS,
        used_at: None,
    }
}

fn jti(t: &Tenant, jti: &str, expires_at: i64) -> Effect {
    Effect::UseHintJti {
        client_id: OidcClient::client_id(&t.slug, "web"),
        jti: jti.into(),
        tenant_id: t.id,
        expires_at,
    }
}

pub async fn oidc_clients_round_trip_per_tenant(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let other = tenant(&s, "globex").await;
    let c = client(&t, "web", vec![7; 40]);
    applied(&s, &t, vec![Effect::InsertOidcClient(c.clone())], 1_000).await;
    let r = apply(&s, &t, vec![Effect::InsertOidcClient(c.clone())], 1_000).await;
    assert_eq!(r, Err(StoreError::Conflict("oidc_client_exists")));
    let theirs = client(&other, "web", vec![8; 40]);
    applied(&s, &other, vec![Effect::InsertOidcClient(theirs)], 1_000).await;
    assert_eq!(s.oidc_client("acme.web").await.unwrap(), Some(c.clone()));
    assert_eq!(s.oidc_clients(t.id).await.unwrap(), vec![c.clone()]);
    // Another tenant's id changes nothing of this one.
    let wrong = Effect::SetOidcRedirectUris {
        id: "acme.web".into(),
        tenant_id: other.id,
        redirect_uris: vec!["https://evil.example/cb".into()],
    };
    assert_eq!(
        apply(&s, &other, vec![wrong], 2_000).await,
        Err(STATE_CHANGED)
    );
    let uris = vec!["https://new.example.com/cb".to_string()];
    let set = Effect::SetOidcRedirectUris {
        id: "acme.web".into(),
        tenant_id: t.id,
        redirect_uris: uris.clone(),
    };
    let rotate = Effect::SetOidcSecret {
        id: "acme.web".into(),
        tenant_id: t.id,
        sealed_secret: vec![9; 40],
        at: 3_000,
    };
    applied(&s, &t, vec![set, rotate], 3_000).await;
    let now = s.oidc_client("acme.web").await.unwrap().unwrap();
    assert_eq!(
        (now.redirect_uris, now.sealed_secret, now.secret_at),
        (uris, vec![9; 40], 3_000)
    );
    let delete = |tenant_id| Effect::DeleteOidcClient {
        id: "acme.web".into(),
        tenant_id,
    };
    assert_eq!(
        apply(&s, &t, vec![delete(other.id)], 4_000).await,
        Err(STATE_CHANGED)
    );
    applied(&s, &t, vec![delete(t.id)], 4_000).await;
    assert_eq!(s.oidc_client("acme.web").await.unwrap(), None);
    assert_eq!(s.oidc_clients(other.id).await.unwrap().len(), 1);
    // Signing keys: the oldest first.
    for (kid, at) in [("k2", 20), ("k1", 10)] {
        let key = SigningKey {
            kid: kid.into(),
            sealed_key: vec![1; 50],
            created_at: at,
        };
        applied(&s, &t, vec![Effect::InsertSigningKey(key)], at).await;
    }
    let kids: Vec<String> = s
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, vec!["k1", "k2"]);
}

pub async fn parallel_uses_of_one_hint_jti_succeed_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            apply(&s, &t, vec![jti(&t, "jti-one", 120_000)], 1_000).await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ok += 1,
            Err(e) => assert_eq!(e, StoreError::Conflict("hint_replayed")),
        }
    }
    assert_eq!(ok, 1);
    // Another client may use the same jti; the audit row of a refused one is not written.
    let other = Effect::UseHintJti {
        client_id: "acme.imap".into(),
        jti: "jti-one".into(),
        tenant_id: t.id,
        expires_at: 120_000,
    };
    applied(&s, &t, vec![other], 1_000).await;
}

pub async fn parallel_exchanges_of_one_code_succeed_once(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    let row = code(&t, &u, b"hash-1", 1_000);
    applied(&s, &t, vec![Effect::InsertAuthCode(row.clone())], 1_000).await;
    assert_eq!(s.auth_code(b"hash-1").await.unwrap(), Some(row.clone()));
    assert_eq!(s.auth_code(b"hash-2").await.unwrap(), None);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let spend = Effect::UseAuthCode {
                code_hash: b"hash-1".to_vec(),
                at: 2_000,
            };
            apply(&s, &t, vec![spend], 2_000).await
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
    let spent = s.auth_code(b"hash-1").await.unwrap().unwrap();
    assert_eq!(spent.used_at, Some(2_000));
    // An expired code is never spent.
    let late = code(&t, &u, b"hash-late", 1_000);
    applied(&s, &t, vec![Effect::InsertAuthCode(late)], 1_000).await;
    let spend = Effect::UseAuthCode {
        code_hash: b"hash-late".to_vec(),
        at: 1_000 + CODE_TTL_MS,
    };
    assert_eq!(apply(&s, &t, vec![spend], 1_000).await, Err(STATE_CHANGED));
    let audits = s
        .list_audit(AuditQuery {
            tenant_id: Some(t.id),
            user_id: None,
            action: Some("login.test".into()),
            before_id: None,
            limit: 100,
        })
        .await
        .unwrap();
    // Two inserts and one spend committed; the refused spends left no audit row.
    assert_eq!(audits.len(), 3);
}

pub async fn hosted_logins_round_trip_and_spent_state_is_pruned(s: DynStore) {
    let t = tenant(&s, "acme").await;
    let u = user(&s, &t, "alice").await;
    let hosted = HostedLogin {
        login_id: "lgn_1".into(),
        tenant_id: t.id,
        client_id: "acme.web".into(),
        redirect_uri: "https://app.example.com/cb".into(),
        state: Some("xyz".into()),
        nonce: None,
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        created_at: 1_000,
        expires_at: 601_000,
    };
    applied(
        &s,
        &t,
        vec![Effect::InsertHostedLogin(hosted.clone())],
        1_000,
    )
    .await;
    assert_eq!(s.hosted_login("lgn_1").await.unwrap(), Some(hosted));
    assert_eq!(s.hosted_login("lgn_2").await.unwrap(), None);
    applied(&s, &t, vec![jti(&t, "jti-a", 121_000)], 1_000).await;
    applied(
        &s,
        &t,
        vec![Effect::InsertAuthCode(code(&t, &u, b"h", 1_000))],
        1_000,
    )
    .await;
    // Nothing has expired before 61 s; by 700 s everything has.
    assert_eq!(s.prune_oidc(61_000).await.unwrap(), 0);
    assert_eq!(s.prune_oidc(700_000).await.unwrap(), 3);
    assert_eq!(s.hosted_login("lgn_1").await.unwrap(), None);
    // A pruned jti is past its hint's expiry, so using it again is harmless.
    applied(&s, &t, vec![jti(&t, "jti-a", 121_000)], 1_000).await;
}

pub async fn a_rotation_sweep_reseals_oidc_secrets_and_signing_keys(s: DynStore) {
    let (old, new) = (KeyMaterial::generate(), KeyMaterial::generate());
    let old_ring = Keyring::new(old.clone());
    let t = tenant(&s, "acme").await;
    let owner = OidcClient::seal_owner(t.id, "acme.web");
    let sealed = old_ring.seal(b"client-secret", &owner).unwrap();
    applied(
        &s,
        &t,
        vec![Effect::InsertOidcClient(client(&t, "web", sealed))],
        1_000,
    )
    .await;
    let key = SigningKey {
        kid: "kid-1".into(),
        sealed_key: old_ring
            .seal(b"pkcs8", &SigningKey::seal_owner("kid-1"))
            .unwrap(),
        created_at: 1_000,
    };
    applied(&s, &t, vec![Effect::InsertSigningKey(key)], 1_000).await;
    let both = Keyring::from_keys([old.clone(), new.clone()], &new.id()).unwrap();
    let census = sweep_sealed(&*s, Some(&both), 10, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(census.resealed, 2, "{census:?}");
    assert!(census.unreadable.is_empty(), "{census:?}");
    let only_new = Keyring::new(new);
    let c = s.oidc_client("acme.web").await.unwrap().unwrap();
    assert_eq!(
        only_new.unseal(&c.sealed_secret, &owner).unwrap(),
        b"client-secret"
    );
    let k = s.signing_keys().await.unwrap().remove(0);
    assert_eq!(
        only_new
            .unseal(&k.sealed_key, &SigningKey::seal_owner("kid-1"))
            .unwrap(),
        b"pkcs8"
    );
    for column in [SealedColumn::OidcClientSecret, SealedColumn::OidcSigningKey] {
        let rows = s.sealed_rows(column, None, 10).await.unwrap();
        assert_eq!(rows.len(), 1, "{column:?}");
    }
}
