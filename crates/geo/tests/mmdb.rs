//! GeoDb against a real .mmdb written by a third-party writer (PyPI `mmdb-writer`, through
//! `twofold_testkit::geo_fixture`), plus the files it must refuse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::path::PathBuf;
use twofold_geo::{GeoDb, GeoError, GeoInfo};
use twofold_testkit::geo::{GEO_FIXTURE, GEO_FIXTURE_ABSENT, LONDON};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The fixture in a fresh directory; fails (never skips) without mmdb-writer.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = twofold_testkit::geo_fixture(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, path)
}

#[test]
fn every_fixture_network_reads_as_documented() {
    let (_dir, path) = fixture();
    let db = GeoDb::open(&path).unwrap();
    assert_eq!(db.database_type(), "GeoIP2-City");
    assert!(db.build_epoch() > 1_600_000_000);
    assert_eq!(db.path(), path.as_path());
    for e in GEO_FIXTURE {
        let expected = GeoInfo {
            country: e.country.map(String::from),
            coords: e.coords,
        };
        assert_eq!(
            db.lookup(ip(e.sample)),
            expected,
            "{} ({})",
            e.sample,
            e.network
        );
    }
}

#[test]
fn edges_of_a_network_and_absent_addresses() {
    let (_dir, path) = fixture();
    let db = GeoDb::open(&path).unwrap();
    let gb = |s: &str| db.lookup(ip(s)).country;
    assert_eq!(gb("203.0.113.0").as_deref(), Some("GB"));
    assert_eq!(gb("203.0.113.255").as_deref(), Some("GB"));
    assert_eq!(gb("203.0.112.255"), None);
    assert_eq!(gb("203.0.114.0"), None);
    assert_eq!(
        gb("2001:db8:1:ffff:ffff:ffff:ffff:ffff").as_deref(),
        Some("DE")
    );
    assert_eq!(gb("2001:db8:3::").as_deref(), None);
    for s in GEO_FIXTURE_ABSENT {
        assert_eq!(db.lookup(ip(s)), GeoInfo::default(), "{s}");
    }
}

#[test]
fn ipv4_mapped_ipv6_reads_as_ipv4() {
    let (_dir, path) = fixture();
    let db = GeoDb::open(&path).unwrap();
    let info = db.lookup(ip("::ffff:203.0.113.7"));
    assert_eq!(info.country.as_deref(), Some("GB"));
    assert_eq!(info.coords, Some(LONDON));
}

#[test]
fn a_missing_file_is_a_read_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("GeoLite2-City.mmdb");
    match GeoDb::open(&path) {
        Err(e @ GeoError::Read { .. }) => {
            assert!(e.to_string().contains("GeoLite2-City.mmdb"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn corrupted_files_are_refused_naming_them() {
    let (dir, path) = fixture();
    let good = std::fs::read(&path).unwrap();
    let marker = b"\xab\xcd\xefMaxMind.com";
    let meta = good
        .windows(marker.len())
        .rposition(|w| w == marker)
        .unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("not a database", b"hello, world\n".repeat(100)),
        ("truncated to half", good[..good.len() / 2].to_vec()),
        (
            "metadata cut short",
            good[..meta + marker.len() + 3].to_vec(),
        ),
    ];
    // Zeroed search tree: every lookup would point nowhere.
    let mut tree = good.clone();
    tree[..60].fill(0xff);
    cases.push(("search tree overwritten", tree));
    for (name, bytes) in cases {
        let bad = dir.path().join("corrupt.mmdb");
        std::fs::write(&bad, &bytes).unwrap();
        match GeoDb::open(&bad) {
            Err(e @ GeoError::Corrupt { .. }) => {
                assert!(e.to_string().contains("corrupt.mmdb"), "{name}: {e}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    // Whatever a damaged file holds, opening it and looking addresses up must not panic:
    // either it is refused or every answer is some GeoInfo.
    let (dir, path) = fixture();
    let good = std::fs::read(&path).unwrap();
    let bad = dir.path().join("flipped.mmdb");
    let probes: Vec<IpAddr> = GEO_FIXTURE
        .iter()
        .map(|e| ip(e.sample))
        .chain(GEO_FIXTURE_ABSENT.iter().map(|s| ip(s)))
        .collect();
    for i in (0..good.len()).step_by(7) {
        let mut bytes = good.clone();
        bytes[i] ^= 0x5a;
        std::fs::write(&bad, &bytes).unwrap();
        if let Ok(db) = GeoDb::open(&bad) {
            for p in &probes {
                let _ = db.lookup(*p);
            }
        }
    }
}
