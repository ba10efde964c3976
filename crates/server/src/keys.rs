//! Loads the sealing keyring and the hashing key, creating them on first start.
//!
//! Key files hold 64 hex characters and are created with mode 0600 inside the data directory
//! (itself 0700). A node's master keyring is every key it can find:
//!
//! | source | role |
//! |---|---|
//! | `master_key` (config, `TWOFOLD_MASTER_KEY`), else `<data_dir>/master.key` | the primary key |
//! | `master_keys` (config, `TWOFOLD_MASTER_KEYS`) | more keys |
//! | `<data_dir>/keys/<id>.key` | more keys; `twofold key rotate` writes new ones here |
//!
//! Which key seals is the cluster's choice, kept in the database (`sealing_keys`, see
//! `twofold_core::keys`); until a rotation has made one active, every node seals under its
//! primary key, which all nodes share. So an install from before rotation existed (one
//! `master.key`, or `master_key` in the environment) starts exactly as it did. A new key file
//! is only created when no key exists at all (the first start).
//!
//! The hashing key is separate, single and never rotated: the hashes it made of API keys,
//! codes and tokens cannot be recomputed without the secrets they hide.

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
    #[error("key file {path} holds key {id}, not the key its name says: rename it to {id}.key")]
    Misnamed { path: PathBuf, id: String },
    #[error(
        "the cluster seals under master key {id}, which this keyring lacks (it holds {held}): \
         copy {id}.key from another node's <data_dir>/keys/ into {dir} (mode 0600), or add \
         the key to master_keys (TWOFOLD_MASTER_KEYS), then try again"
    )]
    MissingActive {
        id: String,
        held: String,
        dir: PathBuf,
    },
    #[error(
        "no primary master key: the keyring holds {held}, but neither master_key nor \
         master.key names the key that seals, and the database names none. Restore \
         master.key (or set master_key) to the key the other nodes seal under"
    )]
    NoPrimary { held: String },
    #[error("no master key: {0}")]
    NoKey(String),
}

pub fn ensure_data_dir(dir: &Path) -> Result<(), KeyError> {
    ensure_private_dir(dir).map_err(|source| KeyError::DataDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Creates `dir` (mode 0700) if it is missing.
fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// The key in file `path`, `None` if there is no such file. A file others may read is refused:
/// whoever can read a master key can read every seed.
fn read_key_file(path: &Path) -> Result<Option<KeyMaterial>, KeyError> {
    let file_err = |source| KeyError::File {
        path: path.to_path_buf(),
        source,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_err(e)),
    };
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
    KeyMaterial::from_hex(&text)
        .map(Some)
        .map_err(|source| KeyError::Bad {
            what: path.display().to_string(),
            source,
        })
}

/// Writes `key` to a new file `path`, mode 0600; never replaces an existing file.
fn create_key_file(path: &Path, key: &KeyMaterial) -> Result<(), KeyError> {
    let file_err = |source| KeyError::File {
        path: path.to_path_buf(),
        source,
    };
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
    Ok(())
}

fn load_or_create(path: &Path) -> Result<KeyMaterial, KeyError> {
    match read_key_file(path)? {
        Some(key) => Ok(key),
        None => {
            let key = KeyMaterial::generate();
            create_key_file(path, &key)?;
            Ok(key)
        }
    }
}

fn from_config(hex: &str, what: &str) -> Result<KeyMaterial, KeyError> {
    KeyMaterial::from_hex(hex).map_err(|source| KeyError::Bad {
        what: what.to_string(),
        source,
    })
}

/// Where a master key came from: what `key status` shows and what `key retire` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `master_key` (config file or `TWOFOLD_MASTER_KEY`).
    Config,
    /// One of `master_keys` (config file or `TWOFOLD_MASTER_KEYS`).
    ConfigList,
    /// A key file: `master.key` or `keys/<id>.key`.
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Config => f.write_str("master_key (config or TWOFOLD_MASTER_KEY)"),
            KeySource::ConfigList => f.write_str("master_keys (config or TWOFOLD_MASTER_KEYS)"),
            KeySource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Every master key a node found, with where each came from.
#[derive(Debug)]
pub struct MasterKeys {
    keys: Vec<(KeyMaterial, KeySource)>,
    /// The key this node seals under while the database names none.
    primary: Option<String>,
}

impl MasterKeys {
    /// Ids with their sources, in the order found.
    pub fn sources(&self) -> impl Iterator<Item = (String, &KeySource)> {
        self.keys.iter().map(|(k, s)| (k.id(), s))
    }

    pub fn source_of(&self, id: &str) -> Option<&KeySource> {
        self.keys.iter().find(|(k, _)| k.id() == id).map(|(_, s)| s)
    }

    pub fn holds(&self, id: &str) -> bool {
        self.source_of(id).is_some()
    }

    pub fn primary(&self) -> Option<&str> {
        self.primary.as_deref()
    }

    fn held(&self) -> String {
        let ids: Vec<String> = self.keys.iter().map(|(k, _)| k.id()).collect();
        ids.join(", ")
    }

    /// Adds a key found later (one `key rotate` just wrote); the first source of an id wins.
    pub fn add(&mut self, key: KeyMaterial, source: KeySource) {
        if !self.holds(&key.id()) {
            self.keys.push((key, source));
        }
    }

    /// The keyring sealing under `active` (the database's choice), or under the primary key
    /// when the database names none.
    pub fn keyring(&self, active: Option<&str>, keys_dir: &Path) -> Result<Keyring, KeyError> {
        let active = match (active, self.primary()) {
            (Some(id), _) => id,
            (None, Some(primary)) => primary,
            (None, None) => return Err(KeyError::NoPrimary { held: self.held() }),
        };
        Keyring::from_keys(self.keys.iter().map(|(k, _)| k.clone()), active).map_err(|_| {
            KeyError::MissingActive {
                id: active.to_string(),
                held: self.held(),
                dir: keys_dir.to_path_buf(),
            }
        })
    }
}

/// `<data_dir>/keys`: the keyring directory, beside the legacy `master.key`.
pub fn keys_dir(config: &Config) -> PathBuf {
    config.data_dir.join("keys")
}

/// Every master key of this node (see the module documentation). With `create`, a first
/// start with no key anywhere creates `master.key`; a reload never creates one.
pub fn master_keys(config: &Config, create: bool) -> Result<MasterKeys, KeyError> {
    ensure_data_dir(&config.data_dir)?;
    let mut found = MasterKeys {
        keys: Vec::new(),
        primary: None,
    };
    let legacy = config.data_dir.join("master.key");
    match &config.master_key {
        Some(hex) => {
            let key = from_config(hex, "master_key")?;
            found.primary = Some(key.id());
            found.add(key, KeySource::Config);
        }
        None => {
            if let Some(key) = read_key_file(&legacy)? {
                found.primary = Some(key.id());
                found.add(key, KeySource::File(legacy.clone()));
            }
        }
    }
    for (i, hex) in config.master_keys.iter().enumerate() {
        found.add(
            from_config(hex, &format!("master_keys[{i}]"))?,
            KeySource::ConfigList,
        );
    }
    for path in key_files(&keys_dir(config))? {
        if let Some(key) = read_key_file(&path)? {
            if path.file_stem().and_then(|s| s.to_str()) != Some(key.id().as_str()) {
                return Err(KeyError::Misnamed { path, id: key.id() });
            }
            found.add(key, KeySource::File(path));
        }
    }
    if found.keys.is_empty() {
        if !create {
            return Err(KeyError::NoKey(format!(
                "{} is missing and nothing else holds a master key",
                legacy.display()
            )));
        }
        let key = load_or_create(&legacy)?;
        found.primary = Some(key.id());
        found.add(key, KeySource::File(legacy));
    }
    // Alone, any key is the primary: a keyring whose master.key was retired after a rotation.
    if found.primary.is_none() && found.keys.len() == 1 {
        found.primary = found.keys.first().map(|(k, _)| k.id());
    }
    Ok(found)
}

/// The `*.key` files of `dir`, sorted (none when it does not exist).
fn key_files(dir: &Path) -> Result<Vec<PathBuf>, KeyError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(KeyError::File {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| KeyError::File {
                path: dir.to_path_buf(),
                source,
            })?
            .path();
        if path.extension().is_some_and(|e| e == "key") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Generates a master key into `<data_dir>/keys/<id>.key` (directory 0700, file 0600).
pub fn write_new_key(config: &Config) -> Result<(KeyMaterial, PathBuf), KeyError> {
    let dir = keys_dir(config);
    ensure_private_dir(&dir).map_err(|source| KeyError::File {
        path: dir.clone(),
        source,
    })?;
    let key = KeyMaterial::generate();
    let path = dir.join(format!("{}.key", key.id()));
    create_key_file(&path, &key)?;
    Ok((key, path))
}

/// The hashing key (`hashing_key`, else `<data_dir>/hashing.key`, created if missing).
pub fn hasher(config: &Config) -> Result<Hasher, KeyError> {
    ensure_data_dir(&config.data_dir)?;
    let key = match config.hashing_key.as_deref() {
        Some(hex) => from_config(hex, "hashing_key")?,
        None => load_or_create(&config.data_dir.join("hashing.key"))?,
    };
    Ok(Hasher::new(key))
}

/// The keyring (sealing under the primary key) and hasher for this data directory, as a node
/// has them before it learns the cluster's active key.
pub fn load(config: &Config) -> Result<(Keyring, Hasher), KeyError> {
    let ring = master_keys(config, true)?.keyring(None, &keys_dir(config))?;
    Ok((ring, hasher(config)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn config_in(dir: &tempfile::TempDir) -> Config {
        Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        }
    }

    #[test]
    fn keys_are_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(&dir);
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

    #[test]
    fn a_keyring_is_master_key_plus_the_keys_directory_and_the_config_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config_in(&dir);
        let (first, _) = load(&config).unwrap();
        let primary = first.active_id().to_string();
        let (new, path) = write_new_key(&config).unwrap();
        assert_eq!(path, keys_dir(&config).join(format!("{}.key", new.id())));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&path), mode(&keys_dir(&config))), (0o600, 0o700));
        let extra = KeyMaterial::generate();
        config.master_keys = vec![extra.to_hex()];

        let keys = master_keys(&config, false).unwrap();
        assert_eq!(
            keys.primary(),
            Some(primary.as_str()),
            "master.key stays primary"
        );
        assert_eq!(
            keys.source_of(&new.id()),
            Some(&KeySource::File(path.clone()))
        );
        assert_eq!(keys.source_of(&extra.id()), Some(&KeySource::ConfigList));
        let ring = keys.keyring(None, &keys_dir(&config)).unwrap();
        assert_eq!(ring.active_id(), primary);
        assert!(ring.holds(&new.id()) && ring.holds(&extra.id()));
        // The database's choice wins; a key nobody here holds is an error saying what to copy.
        let ring = keys.keyring(Some(&new.id()), &keys_dir(&config)).unwrap();
        assert_eq!(ring.active_id(), new.id());
        let missing = keys.keyring(Some("0badc0de"), &keys_dir(&config));
        assert!(
            matches!(&missing, Err(KeyError::MissingActive { id, .. }) if id == "0badc0de"),
            "{missing:?}"
        );
        assert!(missing.unwrap_err().to_string().contains("0badc0de.key"));

        // master.key retired after a rotation: the one key left is primary, and nothing new
        // is created in its place.
        std::fs::remove_file(config.data_dir.join("master.key")).unwrap();
        config.master_keys.clear();
        let keys = master_keys(&config, true).unwrap();
        assert_eq!(keys.primary(), Some(new.id().as_str()));
        assert!(!config.data_dir.join("master.key").exists());
        // A renamed file is refused rather than trusted under the wrong id.
        std::fs::rename(&path, keys_dir(&config).join("00000000.key")).unwrap();
        assert!(matches!(
            master_keys(&config, true),
            Err(KeyError::Misnamed { .. })
        ));
    }

    #[test]
    fn a_reload_never_creates_a_key_and_several_keys_need_a_primary() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(&dir);
        assert!(matches!(
            master_keys(&config, false),
            Err(KeyError::NoKey(_))
        ));
        assert!(!config.data_dir.join("master.key").exists());
        write_new_key(&config).unwrap();
        write_new_key(&config).unwrap();
        let keys = master_keys(&config, true).unwrap();
        assert_eq!(keys.primary(), None);
        assert!(matches!(
            keys.keyring(None, &keys_dir(&config)),
            Err(KeyError::NoPrimary { .. })
        ));
        assert!(!config.data_dir.join("master.key").exists());
    }
}
