//! Where a login comes from, as input to the risk assessment (`twofold_core::risk`).
//!
//! - [`client_ip`]: the client's address, taken from the socket, or from `X-Forwarded-For` only
//!   as far as configured [`TrustedProxies`] vouch for it (SECURITY.md INV-08; the spoofed and
//!   garbage headers of authentik CVE-2024-47070 are the tests).
//! - [`GeoDb`]: the country and coordinates of an address, from a MaxMind DB file (GeoIP2 or
//!   GeoLite2, City or Country; any database with the same record shape works).
//!
//! Nothing here panics on any input, whether a header, an address or a database file.

mod client_ip;
mod db;

pub use client_ip::{
    client_ip, country_from_header, resolve_client_ip, ClientIp, TrustedProxies, MAX_FORWARDED_HOPS,
};
pub use db::{GeoDb, GeoInfo};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The database file is missing or unreadable.
    #[error("cannot read the geo database {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid MaxMind DB (truncated, corrupted, another format).
    #[error("{} is not a valid MaxMind database (.mmdb): {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    /// An entry of the trusted proxy list is not an address or CIDR we accept.
    #[error("trusted proxy {entry:?}: {message}")]
    TrustedProxy { entry: String, message: String },
}
