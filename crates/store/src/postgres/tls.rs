//! TLS to PostgreSQL: the `sslmode` and `sslrootcert` settings of `database_url`, with libpq's
//! meanings, through rustls with the ring provider (no OpenSSL).
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | – |
//! | `prefer` (default) | when the server offers TLS, else plain | no (chain only with `sslrootcert`) |
//! | `require` | always, or no connection | no (chain only with `sslrootcert`) |
//! | `verify-ca` | always | chain to `sslrootcert` |
//! | `verify-full` | always | chain to `sslrootcert`, and the host name in the URL |
//!
//! Without a checked certificate TLS protects only against passive eavesdroppers: anyone who
//! can intercept the connection can present a certificate of their own. As in libpq, giving
//! `sslrootcert` to `prefer` or `require` also checks the chain (`verify-ca`).
//! `sslrootcert=system` trusts the Mozilla root programme (webpki-roots, compiled in) instead of
//! a file, for providers whose certificates come from a public CA.
//!
//! tokio-postgres parses the rest of the URL; it knows only `disable`, `prefer` and `require`
//! and no `sslrootcert`, so those two settings are taken out of the URL first.

use super::StoreError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::SslMode as DriverMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How a connection uses TLS, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, StoreError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // `allow` (plain first, TLS only if refused) has no use here.
            other => {
                return Err(StoreError::Backend(format!(
                    "invalid sslmode `{other}` in the PostgreSQL URL: use disable, prefer, \
                     require, verify-ca or verify-full"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
    /// The Mozilla root programme compiled into the binary (`sslrootcert=system`).
    System,
}

/// The TLS settings of a URL, and the URL without them (for tokio-postgres to parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// Whether the URL named the mode (else it is the default, `prefer`).
    pub explicit: bool,
    pub root: Option<RootCerts>,
}

/// Splits `sslmode` and `sslrootcert` off `url` (`postgres://…?sslmode=…` or `key=value`
/// form); returns the rest of the URL and the settings.
pub fn split(url: &str) -> Result<(String, TlsSettings), StoreError> {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: String| -> Result<bool, StoreError> {
        match key {
            "sslmode" => mode = Some(SslMode::parse(&value)?),
            "sslrootcert" if value == "system" => root = Some(RootCerts::System),
            "sslrootcert" => root = Some(RootCerts::File(PathBuf::from(value))),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.contains("://") {
        split_uri(url, &mut take)?
    } else {
        split_key_values(url, &mut take)?
    };
    let settings = TlsSettings {
        mode: mode.unwrap_or(SslMode::Prefer),
        explicit: mode.is_some(),
        root,
    };
    Ok((rest, settings))
}

type Take<'a> = dyn FnMut(&str, String) -> Result<bool, StoreError> + 'a;

/// `postgres://…?a=1&sslmode=x&b=2` → `postgres://…?a=1&b=2`.
fn split_uri(url: &str, take: &mut Take<'_>) -> Result<String, StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_string());
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| StoreError::Backend("invalid PostgreSQL connection URL".into()))?;
        if !take(key, value.into_owned())? {
            kept.push(pair);
        }
    }
    Ok(if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

/// `host=h sslmode=x dbname='a b'` → `host=h dbname='a b'`: libpq's quoting (single quotes,
/// backslash escapes), every other pair kept as written.
fn split_key_values(url: &str, take: &mut Take<'_>) -> Result<String, StoreError> {
    let invalid = || StoreError::Backend("invalid PostgreSQL connection string".into());
    let mut kept = Vec::new();
    let mut chars = url.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut key = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        chars.next_if(|(_, c)| *c == '=').ok_or_else(invalid)?;
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let quoted = chars.next_if(|(_, c)| *c == '\'').is_some();
        let mut end = url.len();
        loop {
            match chars.next() {
                None if quoted => return Err(invalid()),
                None => break,
                Some((_, '\\')) => value.push(chars.next().ok_or_else(invalid)?.1),
                Some((i, '\'')) if quoted => {
                    end = i + 1;
                    break;
                }
                Some((i, c)) if !quoted && c.is_whitespace() => {
                    end = i;
                    break;
                }
                Some((_, c)) => value.push(c),
            }
        }
        if !take(&key, value)? {
            kept.push(&url[start..end]);
        }
    }
    Ok(kept.join(" "))
}

/// The driver's mode and the connector for `settings`. The root certificates are read here, so
/// a missing or empty `sslrootcert` file stops the connection with a message that names it.
pub fn connector(settings: &TlsSettings) -> Result<(DriverMode, MakeRustlsConnect), StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let check = match (settings.mode, &settings.root) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(StoreError::Backend(format!(
                "sslmode={} needs sslrootcert: the path of the CA certificate (PEM) that signed \
                 the PostgreSQL server's certificate, or sslrootcert=system for a public CA",
                settings.mode.as_str()
            )))
        }
        (SslMode::VerifyFull, Some(root)) => Check::ChainAndName(webpki(root, &provider)?),
        (SslMode::Disable, _) | (SslMode::Prefer | SslMode::Require, None) => Check::Nothing,
        (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, Some(root)) => {
            Check::Chain(webpki(root, &provider)?)
        }
    };
    let verifier = Arc::new(Verifier {
        check,
        provider: provider.clone(),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Backend(format!("TLS settings: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let mode = match settings.mode {
        SslMode::Disable => DriverMode::Disable,
        SslMode::Prefer => DriverMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverMode::Require,
    };
    Ok((mode, MakeRustlsConnect::new(config)))
}

fn webpki(
    root: &RootCerts,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, StoreError> {
    let mut roots = RootCertStore::empty();
    match root {
        RootCerts::System => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        RootCerts::File(path) => {
            let bad =
                |why: String| StoreError::Backend(format!("sslrootcert {}: {why}", path.display()));
            let pem = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(bad("holds no certificate (expected PEM)".into()));
            }
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| StoreError::Backend(format!("TLS settings: {e}")))
}

/// What is checked of the server's certificate, beyond the handshake signature that proves
/// the server holds the certificate's key (which alone proves nothing about who it is).
#[derive(Debug)]
enum Check {
    /// `prefer`/`require` without `sslrootcert`: any certificate, as libpq.
    Nothing,
    /// `verify-ca`: the chain must lead to a trusted root, whatever host name the certificate
    /// is for. rustls checks the name last, after the chain and validity dates, so a name
    /// mismatch is the only error that means "the chain was fine".
    Chain(Arc<WebPkiServerVerifier>),
    /// `verify-full`: the chain and the host name.
    ChainAndName(Arc<WebPkiServerVerifier>),
}

#[derive(Debug)]
struct Verifier {
    check: Check,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let webpki = match &self.check {
            Check::Nothing => return Ok(ServerCertVerified::assertion()),
            Check::Chain(v) | Check::ChainAndName(v) => v,
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if matches!(self.check, Check::Chain(_)) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why a TLS handshake failed, in words an operator can act on; `None` when `e` is not a TLS
/// failure, or is one only because the connection was lost (then it is `Busy` like any other
/// lost connection).
pub(crate) fn failure(e: &tokio_postgres::Error) -> Option<String> {
    if !e.to_string().starts_with("error performing TLS handshake") {
        return None;
    }
    let cause = std::error::Error::source(e)?;
    if let Some(io) = cause.downcast_ref::<std::io::Error>() {
        // tokio-rustls reports rustls' own errors (certificates, alerts) as InvalidData.
        if io.kind() != std::io::ErrorKind::InvalidData {
            return None;
        }
    }
    let text = cause.to_string();
    let hint = if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        " (is sslrootcert the CA that signed the server's certificate?)"
    } else if text.contains("not valid for name") {
        " (the server's certificate does not name the host in database_url; connect by the \
         name it was issued for)"
    } else if text.contains("does not support TLS") {
        " (turn on ssl in postgresql.conf, or use sslmode=disable/prefer on a private network)"
    } else {
        ""
    };
    Some(format!(
        "TLS with the PostgreSQL server failed: {text}{hint}"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn settings(mode: SslMode, explicit: bool, root: Option<RootCerts>) -> TlsSettings {
        TlsSettings {
            mode,
            explicit,
            root,
        }
    }

    #[test]
    fn tls_settings_come_out_of_the_url_and_the_rest_stays() {
        let (rest, s) = split(
            "postgres://u:p@db:5432/app?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p@db:5432/app?application_name=x&connect_timeout=3"
        );
        let ca = Some(RootCerts::File("/etc/ca.pem".into()));
        assert_eq!(s, settings(SslMode::VerifyFull, true, ca));

        let (rest, s) = split("postgres://db/app").unwrap();
        assert_eq!(rest, "postgres://db/app");
        assert_eq!(s, settings(SslMode::Prefer, false, None));

        let (rest, s) = split("postgresql://db/app?sslmode=require&sslrootcert=system").unwrap();
        assert_eq!(rest, "postgresql://db/app");
        assert_eq!(s, settings(SslMode::Require, true, Some(RootCerts::System)));
    }

    #[test]
    fn key_value_form_with_quotes() {
        let (rest, s) =
            split("host=db sslmode = verify-ca dbname='my app' sslrootcert='/a b/c\\'a.pem'")
                .unwrap();
        assert_eq!(rest, "host=db dbname='my app'");
        let ca = Some(RootCerts::File("/a b/c'a.pem".into()));
        assert_eq!(s, settings(SslMode::VerifyCa, true, ca));
        assert!(split("host=db sslmode").is_err());
        assert!(split("host='db").is_err());
    }

    #[test]
    fn bad_settings_say_what_to_do() {
        let err = split("postgres://db/app?sslmode=allow").unwrap_err();
        assert!(err.to_string().contains("verify-full"), "{err}");
        let err = connector(&settings(SslMode::VerifyFull, true, None))
            .err()
            .unwrap();
        assert!(err.to_string().contains("needs sslrootcert"), "{err}");
        let missing = Some(RootCerts::File("/nonexistent/ca.pem".into()));
        let err = connector(&settings(SslMode::VerifyCa, true, missing))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = connector(&settings(
            SslMode::VerifyFull,
            true,
            Some(RootCerts::File(empty)),
        ))
        .err()
        .unwrap();
        assert!(err.to_string().contains("holds no certificate"), "{err}");
        for mode in [SslMode::Disable, SslMode::Prefer, SslMode::Require] {
            assert!(connector(&settings(mode, true, None)).is_ok());
        }
        assert!(connector(&settings(
            SslMode::VerifyFull,
            true,
            Some(RootCerts::System)
        ))
        .is_ok());
    }
}
