#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! TLS to PostgreSQL against a real server: a private PostgreSQL ([`PgTlsServer`]) whose
//! certificate the test CA signed for `localhost` and `127.0.0.1`, and whose `pg_hba.conf`
//! admits TCP connections only over TLS. One test, one server (starting one takes a second or
//! two): every `sslmode` in turn.

use std::sync::Arc;
use twofold_core::ports::StoreError;
use twofold_store::conformance::{self, DynStore};
use twofold_store::PgStore;
use twofold_testkit::{test_pki, PgTlsServer};

/// The store's error for `url`, which must not connect.
async fn refused(url: &str) -> String {
    match PgStore::connect(url).await {
        Ok(_) => panic!("connected with {url}"),
        Err(StoreError::Backend(m)) => m,
        Err(e) => panic!("{url}: expected a clear error, got {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_against_a_server_that_requires_tls() {
    let pki = test_pki();
    let server = PgTlsServer::start(&pki);
    let ca = pki.ca.display().to_string();
    let full = format!("sslmode=verify-full&sslrootcert={ca}");

    // verify-full with the CA, by the certificate's name and by its address: the store works
    // (two pools accept one TOTP step and one code once, as two nodes would).
    let by_name: DynStore = Arc::new(
        PgStore::connect(&server.url("localhost", &full))
            .await
            .unwrap(),
    );
    let by_addr: DynStore = Arc::new(
        PgStore::connect(&server.url("127.0.0.1", &full))
            .await
            .unwrap(),
    );
    conformance::two_handles_accept_a_step_and_a_code_once(by_name.clone(), by_addr.clone()).await;
    let admin = server.admin().await;
    let row = admin
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'twofold'",
            &[],
        )
        .await
        .unwrap();
    let (tls, all): (i64, i64) = (row.get(0), row.get(1));
    assert!(all > 0 && tls == all, "{tls} of {all} connections use TLS");
    drop((by_name, by_addr));

    // A host name the certificate does not name (the address is still the server's): refused
    // by verify-full, accepted by verify-ca, which checks only the chain.
    let wrong_name = |params: &str| {
        format!(
            "postgres://postgres@db.example:{}/postgres?hostaddr=127.0.0.1&{params}",
            server.port
        )
    };
    let m = refused(&wrong_name(&full)).await;
    assert!(
        m.contains("TLS") && m.contains("not valid for name") && m.contains("db.example"),
        "{m}"
    );
    PgStore::connect(&wrong_name(&format!("sslmode=verify-ca&sslrootcert={ca}")))
        .await
        .unwrap();

    // Without the CA: verify-full wants one; the public roots and another CA do not vouch for
    // the server.
    let m = refused(&server.url("localhost", "sslmode=verify-full")).await;
    assert!(m.contains("needs sslrootcert"), "{m}");
    let m = refused(&server.url("localhost", "sslmode=verify-full&sslrootcert=system")).await;
    assert!(
        m.contains("UnknownIssuer") && m.contains("sslrootcert"),
        "{m}"
    );
    // (Another test CA has the same name, so rustls finds it and reports a bad signature.)
    let other = test_pki();
    let not_ours = |m: &str| m.contains("UnknownIssuer") || m.contains("BadSignature");
    let m = refused(&server.url(
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={}", other.ca.display()),
    ))
    .await;
    assert!(not_ours(&m) && m.contains("sslrootcert"), "{m}");
    // A CA file given to `require` checks the chain, as in libpq.
    let m = refused(&server.url(
        "localhost",
        &format!("sslmode=require&sslrootcert={}", other.ca.display()),
    ))
    .await;
    assert!(not_ours(&m) && m.contains("sslrootcert"), "{m}");

    // require encrypts without checking the certificate: it connects whatever the name.
    PgStore::connect(&wrong_name("sslmode=require"))
        .await
        .unwrap();
    // prefer (also the default) uses TLS when the server offers it.
    PgStore::connect(&server.url("127.0.0.1", "sslmode=prefer"))
        .await
        .unwrap();
    PgStore::connect(&server.url("127.0.0.1", ""))
        .await
        .unwrap();

    // disable: the server admits TCP only over TLS (`hostssl`), so it refuses.
    let m = refused(&server.url("127.0.0.1", "sslmode=disable")).await;
    assert!(
        m.contains("no pg_hba.conf entry") && m.contains("no encryption"),
        "{m}"
    );
}
