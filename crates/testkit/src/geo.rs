//! A real MaxMind DB for the geo tests, written by `fixtures/make_mmdb.py` with the PyPI
//! package `mmdb-writer`, and the table of what it holds.
//!
//! Unlike the rest of the kit this returns errors instead of panicking, so a caller can tell
//! "mmdb-writer is not installed" apart from a failing test.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One network of the fixture database; `fixtures/make_mmdb.py` documents the same table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoFixtureEntry {
    pub network: &'static str,
    /// An address inside `network`.
    pub sample: &'static str,
    /// What a reader should report: `country.iso_code`, else `registered_country.iso_code`,
    /// upper case; `None` when there is no valid code.
    pub country: Option<&'static str>,
    /// (latitude, longitude), `None` when absent or off the globe.
    pub coords: Option<(f64, f64)>,
}

pub const LONDON: (f64, f64) = (51.5074, -0.1278);
pub const SYDNEY: (f64, f64) = (-33.8688, 151.2093);
pub const NEW_YORK: (f64, f64) = (40.7128, -74.0060);
pub const PARIS: (f64, f64) = (48.8566, 2.3522);
pub const TOKYO: (f64, f64) = (35.6762, 139.6503);
pub const BERLIN: (f64, f64) = (52.5200, 13.4050);

const fn entry(
    network: &'static str,
    sample: &'static str,
    country: Option<&'static str>,
    coords: Option<(f64, f64)>,
) -> GeoFixtureEntry {
    GeoFixtureEntry {
        network,
        sample,
        country,
        coords,
    }
}

/// What [`geo_fixture`] writes.
pub const GEO_FIXTURE: &[GeoFixtureEntry] = &[
    entry("203.0.113.0/24", "203.0.113.7", Some("GB"), Some(LONDON)),
    entry("198.51.100.0/24", "198.51.100.7", Some("AU"), Some(SYDNEY)),
    entry("192.0.2.0/24", "192.0.2.7", Some("US"), Some(NEW_YORK)),
    entry("100.64.0.0/16", "100.64.1.7", Some("FR"), Some(PARIS)),
    entry("100.65.0.0/16", "100.65.1.7", Some("JP"), Some(TOKYO)),
    // Only a registered country, no location.
    entry("100.66.0.0/16", "100.66.1.7", Some("SE"), None),
    // A lower-case code (reported upper case) and a latitude of 95° (dropped).
    entry("198.18.0.0/24", "198.18.0.7", Some("NL"), None),
    entry("2001:db8:1::/48", "2001:db8:1::7", Some("DE"), Some(BERLIN)),
    entry("2001:db8:2::/48", "2001:db8:2::7", Some("JP"), Some(TOKYO)),
];

/// Addresses the fixture does not cover.
pub const GEO_FIXTURE_ABSENT: &[&str] = &[
    "8.8.8.8",
    "10.0.0.1",
    "203.0.114.1",
    "2001:db8:ffff::1",
    "::1",
];

/// Writes the fixture database into `dir` and returns its path. Fails with a message that says
/// what to install when python3 or `mmdb-writer` is missing.
pub fn geo_fixture(dir: &Path) -> io::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("make_mmdb.py");
    let out = dir.join("twofold-test-city.mmdb");
    let output = Command::new("python3")
        .arg(&script)
        .arg(&out)
        .output()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot run python3 {} (is python3 installed?): {e}",
                    script.display()
                ),
            )
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = if stderr.contains("mmdb_writer") || stderr.contains("netaddr") {
            format!(
                "the geo test fixture needs the PyPI package mmdb-writer: run \
                 `python3 -m pip install mmdb-writer` (scripts/test.sh installs it)\n{stderr}"
            )
        } else {
            format!("{} failed ({}):\n{stderr}", script.display(), output.status)
        };
        return Err(io::Error::other(message));
    }
    Ok(out)
}
