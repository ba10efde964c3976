//! Loads the sealing and hashing keys, creating them on first start.
//!
//! Key files hold 64 hex characters and are created with mode 0600 inside the data directory
//! (itself 0700). The sealing key may also come from config/environment; then no file is made.

use crate::config::Config;
use std::io::Write;
use std::path::{Path, PathBuf};
use twofold_crypto::{Hasher, KeyMaterial, Keyring};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot create data directory {path}: {source}; create it or pass --data-dir")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read or write key file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key {what} is unusable: {source}")]
    Bad {
        what: String,
        source: twofold_crypto::CryptoError,
    },
    #[error("key file {path} is readable by others (mode {mode:o}); run: chmod 600 {path}")]
    Permissions { path: PathBuf, mode: u32 },
}

pub fn ensure_data_dir(dir: &Path) -> Result<(), KeyError> {
    let err = |source| KeyError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        }
    }
    Ok(())
}

fn load_or_create(path: &Path) -> Result<KeyMaterial, KeyError> {
    let file_err = |source| KeyError::File {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)
                    .map_err(file_err)?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeyError::Permissions {
                        path: path.to_path_buf(),
                        mode,
                    });
                }
            }
            KeyMaterial::from_hex(&text).map_err(|source| KeyError::Bad {
                what: path.display().to_string(),
                source,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyMaterial::generate();
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(file_err)?;
            f.write_all(format!("{}\n", key.to_hex()).as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(file_err)?;
            tracing::info!(path = %path.display(), key_id = %key.id(), "created key file");
            Ok(key)
        }
        Err(e) => Err(file_err(e)),
    }
}

fn from_config_or_file(
    value: Option<&str>,
    what: &str,
    path: PathBuf,
) -> Result<KeyMaterial, KeyError> {
    match value {
        Some(hex) => KeyMaterial::from_hex(hex).map_err(|source| KeyError::Bad {
            what: what.to_string(),
            source,
        }),
        None => load_or_create(&path),
    }
}

/// The keyring and hasher for this data directory.
pub fn load(config: &Config) -> Result<(Keyring, Hasher), KeyError> {
    ensure_data_dir(&config.data_dir)?;
    let master = from_config_or_file(
        config.master_key.as_deref(),
        "master_key",
        config.data_dir.join("master.key"),
    )?;
    let hashing = from_config_or_file(
        config.hashing_key.as_deref(),
        "hashing_key",
        config.data_dir.join("hashing.key"),
    )?;
    Ok((Keyring::new(master), Hasher::new(hashing)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let (ring, hasher) = load(&config).unwrap();
        let path = config.data_dir.join("master.key");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (ring2, hasher2) = load(&config).unwrap();
        assert_eq!(ring.active_id(), ring2.active_id());
        assert_eq!(hasher.key_id(), hasher2.key_id());
        assert_ne!(ring.active_id(), hasher.key_id(), "two distinct keys");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load(&config), Err(KeyError::Permissions { .. })));
    }
}
