//! Cryptography at rest for Twofold.
//!
//! Two separate keys, never mixed (SECURITY.md, "Keyed hashes"):
//! - the **sealing keyring** (AES-256-GCM) encrypts secrets that must be read back: TOTP seeds,
//!   later vault secrets. Sealed blobs carry a format version and the id of the key that sealed
//!   them, so the active key can rotate while old blobs stay readable.
//! - the **hashing key** (HMAC-SHA-256) turns codes, recovery codes, API keys and tokens into
//!   lookup hashes. A plain hash of a six-digit code is reversed instantly; a keyed hash is not.
//!   It has its own id and is not rotated with the sealing keys, so stored hashes stay valid.
//!
//! Everything here is pure computation; reading key files is the caller's business.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Format version of sealed blobs; bump when the layout changes.
const SEAL_VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("a key must be 32 bytes (64 hex characters), got {0} characters")]
    BadKeyLength(usize),
    #[error("a key must be hexadecimal")]
    BadKeyHex,
    #[error("sealed blob is malformed")]
    Malformed,
    #[error("sealed blob has unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("no key with id {0} in the keyring")]
    UnknownKey(String),
    #[error("sealed blob failed authentication (tampered, wrong key or wrong owner)")]
    Unauthentic,
}

/// 32 bytes of key material, wiped from memory on drop and never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyMaterial([u8; 32]);

impl KeyMaterial {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses 64 hex characters (surrounding whitespace ignored), the format of key files and
    /// of the `TWOFOLD_MASTER_KEY` / `TWOFOLD_HASHING_KEY` variables.
    pub fn from_hex(s: &str) -> Result<Self, CryptoError> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(CryptoError::BadKeyLength(s.len()));
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hi = hex_val(chunk[0]).ok_or(CryptoError::BadKeyHex)?;
            let lo = hex_val(chunk[1]).ok_or(CryptoError::BadKeyHex)?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A short public identifier derived from the key, so blobs and hashes can name their key
    /// without revealing it.
    pub fn id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"twofold-key-id-v1")
            .chain_update(self.0)
            .finalize();
        hex(&digest[..KEY_ID_LEN / 2])
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyMaterial(id={}, redacted)", self.id())
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 0xf) as usize] as char);
    }
    s
}

/// The sealing keys known to this process: one active key seals, any known key unseals.
///
/// Holding several keys is what makes rotation possible without downtime: a blob names the key
/// that sealed it, so while a cluster moves from key A to key B every node holds both, reads
/// blobs under either, and seals under the one the cluster has made active.
#[derive(Clone)]
pub struct Keyring {
    active: String,
    keys: HashMap<String, Aes256Gcm>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("keys", &ids)
            .finish()
    }
}

impl Keyring {
    pub fn new(active: KeyMaterial) -> Self {
        let id = active.id();
        let mut keys = HashMap::new();
        keys.insert(id.clone(), Aes256Gcm::new((&active.0).into()));
        Self { active: id, keys }
    }

    /// A keyring of `keys` sealing under the key with id `active`, which must be one of them.
    pub fn from_keys(
        keys: impl IntoIterator<Item = KeyMaterial>,
        active: &str,
    ) -> Result<Self, CryptoError> {
        let mut ring = Self {
            active: active.to_string(),
            keys: HashMap::new(),
        };
        for key in keys {
            ring.add(key);
        }
        ring.set_active(active)?;
        Ok(ring)
    }

    /// Adds a key that can unseal but does not seal (a retired or not-yet-active key).
    pub fn add(&mut self, key: KeyMaterial) {
        self.keys.insert(key.id(), Aes256Gcm::new((&key.0).into()));
    }

    /// Makes the held key `id` the one that seals. A key this keyring lacks is refused: sealing
    /// under it would be impossible, and naming it active anyway would fail every later seal.
    pub fn set_active(&mut self, id: &str) -> Result<(), CryptoError> {
        if !self.keys.contains_key(id) {
            return Err(CryptoError::UnknownKey(id.to_string()));
        }
        self.active = id.to_string();
        Ok(())
    }

    pub fn active_id(&self) -> &str {
        &self.active
    }

    /// Whether this keyring can unseal blobs sealed under key `id`.
    pub fn holds(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// The ids of every held key, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.keys.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// `blob` sealed again under the active key with the same `owner`, or `None` when it
    /// already is under the active key. The plaintext is wiped before returning.
    pub fn reseal(&self, blob: &[u8], owner: &str) -> Result<Option<Vec<u8>>, CryptoError> {
        if Self::key_id_of(blob) == Some(self.active.as_str()) {
            return Ok(None);
        }
        let plain = zeroize::Zeroizing::new(self.unseal(blob, owner)?);
        self.seal(&plain, owner).map(Some)
    }

    /// Seals `plaintext`; `owner` is bound in as associated data (e.g. `totp:tenant:user:factor`),
    /// so a blob copied onto another row fails to unseal instead of lending its secret.
    pub fn seal(&self, plaintext: &[u8], owner: &str) -> Result<Vec<u8>, CryptoError> {
        let cipher = self
            .keys
            .get(&self.active)
            .ok_or_else(|| CryptoError::UnknownKey(self.active.clone()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let header = header(&self.active, &nonce);
        let aad = aad(&header, owner);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Malformed)?;
        let mut out = header;
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn unseal(&self, blob: &[u8], owner: &str) -> Result<Vec<u8>, CryptoError> {
        let header_len = 1 + KEY_ID_LEN + NONCE_LEN;
        if blob.len() < header_len + 16 {
            return Err(CryptoError::Malformed);
        }
        if blob[0] != SEAL_VERSION {
            return Err(CryptoError::UnsupportedVersion(blob[0]));
        }
        let key_id =
            std::str::from_utf8(&blob[1..1 + KEY_ID_LEN]).map_err(|_| CryptoError::Malformed)?;
        let cipher = self
            .keys
            .get(key_id)
            .ok_or_else(|| CryptoError::UnknownKey(key_id.to_string()))?;
        let nonce = &blob[1 + KEY_ID_LEN..header_len];
        let aad = aad(&blob[..header_len], owner);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: &blob[header_len..],
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Unauthentic)
    }

    /// The key id a blob was sealed under, for rotation bookkeeping.
    pub fn key_id_of(blob: &[u8]) -> Option<&str> {
        blob.get(1..1 + KEY_ID_LEN)
            .and_then(|b| std::str::from_utf8(b).ok())
    }
}

/// A keyring that can be replaced while requests use it: a node swaps in a reloaded keyring
/// (on `SIGHUP`, or when a rotation asks for a key it lacks) or moves its active key when the
/// cluster does, and every holder of a clone sees the change at its next seal or unseal.
/// Readers take a cheap snapshot (`Arc` clone under a read lock), so a replacement never waits
/// for a slow unseal and an unseal never sees half a keyring.
#[derive(Clone)]
pub struct SharedKeyring(Arc<RwLock<Arc<Keyring>>>);

impl fmt::Debug for SharedKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.current().fmt(f)
    }
}

impl From<Keyring> for SharedKeyring {
    fn from(ring: Keyring) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(ring))))
    }
}

impl SharedKeyring {
    /// The keyring as it is now. A lock poisoned by a panicking writer still holds a whole
    /// keyring (writers only swap an `Arc`), so it is used rather than failing every request.
    pub fn current(&self) -> Arc<Keyring> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `ring` in place for every clone of this handle.
    pub fn replace(&self, ring: Keyring) {
        let ring = Arc::new(ring);
        match self.0.write() {
            Ok(mut g) => *g = ring,
            Err(poisoned) => *poisoned.into_inner() = ring,
        }
    }

    pub fn seal(&self, plaintext: &[u8], owner: &str) -> Result<Vec<u8>, CryptoError> {
        self.current().seal(plaintext, owner)
    }

    pub fn unseal(&self, blob: &[u8], owner: &str) -> Result<Vec<u8>, CryptoError> {
        self.current().unseal(blob, owner)
    }

    pub fn active_id(&self) -> String {
        self.current().active_id().to_string()
    }
}

fn header(key_id: &str, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut h = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN);
    h.push(SEAL_VERSION);
    h.extend_from_slice(key_id.as_bytes());
    h.extend_from_slice(nonce);
    h
}

fn aad(header: &[u8], owner: &str) -> Vec<u8> {
    let mut a = header.to_vec();
    a.extend_from_slice(owner.as_bytes());
    a
}

/// Keyed hashing of codes and tokens (HMAC-SHA-256 under the dedicated hashing key).
#[derive(Clone)]
pub struct Hasher {
    id: String,
    key: KeyMaterial,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hasher(id={})", self.id)
    }
}

/// A keyed hash; compared only in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyedHash(pub [u8; 32]);

impl KeyedHash {
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        other.len() == 32 && bool::from(self.0.ct_eq(other))
    }
}

impl fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyedHash(..)")
    }
}

impl Hasher {
    pub fn new(key: KeyMaterial) -> Self {
        Self { id: key.id(), key }
    }

    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// `purpose` separates domains (an API-key hash can never equal a code hash).
    pub fn hash(&self, purpose: &str, value: &[u8]) -> KeyedHash {
        // HMAC pads a short key with zeros to the 64-byte block (RFC 2104), so doing it here
        // gives the same MAC through a constructor that cannot fail: no fallback value.
        let mut block = zeroize::Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(&self.key.0);
        let mut mac = <Hmac<Sha256> as KeyInit>::new(&(*block).into());
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        let mut out = [0u8; 32];
        out.copy_from_slice(&mac.finalize().into_bytes());
        KeyedHash(out)
    }
}

/// Fills `n` bytes from the operating system's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut v);
    v
}

/// Equality of two byte strings in time that depends only on their lengths (for tokens of a
/// fixed, public length, such as CSRF tokens).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A random token for bearer use: URL-safe base64 without padding.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_owner_binding() {
        let ring = Keyring::new(KeyMaterial::generate());
        let blob = ring.seal(b"seed-bytes", "totp:1:2:f").unwrap();
        assert_eq!(ring.unseal(&blob, "totp:1:2:f").unwrap(), b"seed-bytes");
        assert_eq!(
            ring.unseal(&blob, "totp:1:3:f"),
            Err(CryptoError::Unauthentic)
        );
        assert!(!blob.windows(10).any(|w| w == b"seed-bytes"));
    }

    #[test]
    fn tampered_blob_is_rejected() {
        let ring = Keyring::new(KeyMaterial::generate());
        let mut blob = ring.seal(b"secret", "o").unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 1;
        assert_eq!(ring.unseal(&blob, "o"), Err(CryptoError::Unauthentic));
        blob[0] = 9;
        assert_eq!(
            ring.unseal(&blob, "o"),
            Err(CryptoError::UnsupportedVersion(9))
        );
        assert_eq!(ring.unseal(&blob[..5], "o"), Err(CryptoError::Malformed));
    }

    #[test]
    fn old_keys_still_unseal_after_rotation() {
        let old = KeyMaterial::generate();
        let new = KeyMaterial::generate();
        let ring_old = Keyring::new(old.clone());
        let blob = ring_old.seal(b"x", "o").unwrap();
        let mut ring_new = Keyring::new(new);
        assert!(matches!(
            ring_new.unseal(&blob, "o"),
            Err(CryptoError::UnknownKey(_))
        ));
        ring_new.add(old.clone());
        assert_eq!(ring_new.unseal(&blob, "o").unwrap(), b"x");
        assert_eq!(Keyring::key_id_of(&blob), Some(old.id().as_str()));
    }

    #[test]
    fn a_keyring_of_several_keys_seals_under_the_active_one_and_opens_all() {
        let (a, b) = (KeyMaterial::generate(), KeyMaterial::generate());
        let mut ring = Keyring::from_keys([a.clone(), b.clone()], &a.id()).unwrap();
        assert_eq!(ring.ids(), {
            let mut ids = vec![a.id(), b.id()];
            ids.sort();
            ids
        });
        assert!(ring.holds(&a.id()) && ring.holds(&b.id()) && !ring.holds("00000000"));
        let under_a = ring.seal(b"seed", "o").unwrap();
        assert_eq!(Keyring::key_id_of(&under_a), Some(a.id().as_str()));

        ring.set_active(&b.id()).unwrap();
        let under_b = ring.seal(b"seed", "o").unwrap();
        assert_eq!(Keyring::key_id_of(&under_b), Some(b.id().as_str()));
        assert_eq!(ring.unseal(&under_a, "o").unwrap(), b"seed");
        assert_eq!(ring.unseal(&under_b, "o").unwrap(), b"seed");

        // A key the ring lacks can never become active, nor can a ring start with one.
        let stranger = KeyMaterial::generate().id();
        assert_eq!(
            ring.set_active(&stranger),
            Err(CryptoError::UnknownKey(stranger.clone()))
        );
        assert_eq!(ring.active_id(), b.id());
        assert!(matches!(
            Keyring::from_keys([a.clone()], &stranger),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn reseal_moves_a_blob_to_the_active_key_with_the_same_owner_only() {
        let (old, new) = (KeyMaterial::generate(), KeyMaterial::generate());
        let blob = Keyring::new(old.clone())
            .seal(b"seed", "totp:1:2:f")
            .unwrap();
        let ring = Keyring::from_keys([old.clone(), new.clone()], &new.id()).unwrap();
        let moved = ring.reseal(&blob, "totp:1:2:f").unwrap().unwrap();
        assert_eq!(Keyring::key_id_of(&moved), Some(new.id().as_str()));
        assert_eq!(ring.unseal(&moved, "totp:1:2:f").unwrap(), b"seed");
        // Still bound to its owner, and readable without the old key.
        assert_eq!(
            ring.unseal(&moved, "totp:1:3:f"),
            Err(CryptoError::Unauthentic)
        );
        assert_eq!(
            Keyring::new(new).unseal(&moved, "totp:1:2:f").unwrap(),
            b"seed"
        );
        // Already under the active key: nothing to do. The wrong owner never re-seals.
        assert_eq!(ring.reseal(&moved, "totp:1:2:f"), Ok(None));
        assert_eq!(
            ring.reseal(&blob, "totp:9:9:f"),
            Err(CryptoError::Unauthentic)
        );
    }

    #[test]
    fn a_shared_keyring_is_replaced_for_every_clone() {
        let (a, b) = (KeyMaterial::generate(), KeyMaterial::generate());
        let shared = SharedKeyring::from(Keyring::new(a.clone()));
        let other = shared.clone();
        let under_a = other.seal(b"x", "o").unwrap();
        shared.replace(Keyring::from_keys([a.clone(), b.clone()], &b.id()).unwrap());
        assert_eq!(other.active_id(), b.id());
        let under_b = other.seal(b"x", "o").unwrap();
        assert_eq!(Keyring::key_id_of(&under_b), Some(b.id().as_str()));
        assert_eq!(other.unseal(&under_a, "o").unwrap(), b"x");
        assert!(format!("{other:?}").contains(&b.id()));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let k = KeyMaterial::generate();
        assert_eq!(KeyMaterial::from_hex(&k.to_hex()).unwrap().id(), k.id());
        assert_eq!(
            KeyMaterial::from_hex("abc").unwrap_err(),
            CryptoError::BadKeyLength(3)
        );
        assert_eq!(
            KeyMaterial::from_hex(&"zz".repeat(32)).unwrap_err(),
            CryptoError::BadKeyHex
        );
        assert!(!format!("{k:?}").contains(&k.to_hex()));
    }

    #[test]
    fn keyed_hash_is_rfc2104_hmac_of_the_key() {
        let key = KeyMaterial::from_bytes([7u8; 32]);
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&[7u8; 32]).unwrap();
        reference.update(b"code\x00123456");
        let expected: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(Hasher::new(key).hash("code", b"123456").0, expected);
    }

    #[test]
    fn keyed_hash_separates_purposes_and_keys() {
        let h = Hasher::new(KeyMaterial::generate());
        let a = h.hash("code", b"123456");
        assert!(a.ct_eq(&h.hash("code", b"123456").0));
        assert!(!a.ct_eq(&h.hash("apikey", b"123456").0));
        let h2 = Hasher::new(KeyMaterial::generate());
        assert!(!a.ct_eq(&h2.hash("code", b"123456").0));
        assert!(!a.ct_eq(&[0u8; 5]));
    }
}
