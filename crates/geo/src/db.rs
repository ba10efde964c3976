//! Country and coordinates of an IP address from a MaxMind DB file, read into memory once.

use crate::GeoError;
use maxminddb::{path, Reader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What the database says about one address. Both fields are `None` for an address it does
/// not cover (private ranges, new allocations) and for any record that does not look right.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoInfo {
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<String>,
    /// (latitude, longitude) in degrees, both present and on the globe.
    pub coords: Option<(f64, f64)>,
}

/// An open MaxMind DB (GeoIP2/GeoLite2 City or Country format).
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    path: PathBuf,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb")
            .field("path", &self.path)
            .field("database_type", &self.database_type())
            .field("build_epoch", &self.build_epoch())
            .finish()
    }
}

impl GeoDb {
    /// Reads the whole file into memory and verifies it (search tree, data section, metadata),
    /// so a truncated or corrupted download fails here, at start-up, naming the file, instead
    /// of silently answering "unknown" for every login. Verifying a full City database takes a
    /// moment; it is done once.
    pub fn open(path: impl AsRef<Path>) -> Result<GeoDb, GeoError> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| GeoError::Read {
            path: path.clone(),
            source,
        })?;
        let corrupt = |e: maxminddb::MaxMindDbError| GeoError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        };
        let reader = Reader::from_source(bytes).map_err(corrupt)?;
        reader.verify().map_err(corrupt)?;
        Ok(GeoDb { reader, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The metadata's `database_type`, e.g. `GeoLite2-City`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the database was built (Unix seconds): operators should hear about a stale one.
    pub fn build_epoch(&self) -> u64 {
        self.reader.metadata().build_epoch
    }

    /// Country (`country`, else `registered_country`: the registry's country is a better
    /// guess than none, e.g. for satellite and some mobile ranges) and coordinates (`location`).
    /// IPv4-mapped IPv6 addresses are looked up as IPv4, which a database without MaxMind's
    /// `::ffff:0:0/96` alias would otherwise miss. Any lookup or decoding error reads as
    /// "unknown".
    pub fn lookup(&self, ip: IpAddr) -> GeoInfo {
        let Ok(found) = self.reader.lookup(ip.to_canonical()) else {
            return GeoInfo::default();
        };
        if !found.has_data() {
            return GeoInfo::default();
        }
        // Field by field, so one odd field elsewhere in the record costs only itself.
        let text = |p: &[maxminddb::PathElement<'_>]| found.decode_path::<String>(p).ok().flatten();
        let number = |p: &[maxminddb::PathElement<'_>]| found.decode_path::<f64>(p).ok().flatten();
        let country = text(&path!["country", "iso_code"])
            .and_then(|c| iso_country(&c))
            .or_else(|| {
                text(&path!["registered_country", "iso_code"]).and_then(|c| iso_country(&c))
            });
        let coords = match (
            number(&path!["location", "latitude"]),
            number(&path!["location", "longitude"]),
        ) {
            (Some(lat), Some(lon))
                if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
            {
                Some((lat, lon))
            }
            _ => None,
        };
        GeoInfo { country, coords }
    }
}

/// Two ASCII letters, upper-cased; anything else is not a country code.
pub(crate) fn iso_country(code: &str) -> Option<String> {
    (code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| code.to_ascii_uppercase())
}
