//! In-memory caches that keep the verify hot path off the read pool.
//!
//! A cache may be stale, but never unsafe: every consume is a conditional write that checks the
//! factor's status and version in the store (INV-01), so a cached copy of a removed, replaced or
//! re-drifted factor yields `Stale`, and the caller reloads. Entries also expire after a TTL so
//! factors enrolled through another node become visible.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

/// A TTL map with a size bound; cheap clones of `Arc` values under a read lock.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl_ms: i64,
    max_entries: usize,
    map: RwLock<HashMap<K, (i64, Arc<V>)>>,
}

impl<K: Eq + Hash + Clone, V> TtlCache<K, V> {
    pub fn new(ttl_ms: i64, max_entries: usize) -> Self {
        Self {
            ttl_ms,
            max_entries,
            map: RwLock::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &K, now: i64) -> Option<Arc<V>> {
        let map = self.map.read().ok()?;
        map.get(key)
            .filter(|(at, _)| now - *at < self.ttl_ms && now >= *at)
            .map(|(_, v)| v.clone())
    }

    pub fn insert(&self, key: K, value: Arc<V>, now: i64) {
        if let Ok(mut map) = self.map.write() {
            if map.len() >= self.max_entries && !map.contains_key(&key) {
                // Bounded memory: drop expired entries, and everything if that is not enough.
                let ttl = self.ttl_ms;
                map.retain(|_, (at, _)| now - *at < ttl);
                if map.len() >= self.max_entries {
                    map.clear();
                }
            }
            map.insert(key, (now, value));
        }
    }

    pub fn remove(&self, key: &K) {
        if let Ok(mut map) = self.map.write() {
            map.remove(key);
        }
    }

    pub fn clear(&self) {
        if let Ok(mut map) = self.map.write() {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_are_bounded() {
        let c: TtlCache<u32, u32> = TtlCache::new(100, 2);
        c.insert(1, Arc::new(10), 0);
        assert_eq!(c.get(&1, 99).as_deref(), Some(&10));
        assert_eq!(c.get(&1, 100), None);
        c.insert(2, Arc::new(20), 0);
        c.insert(3, Arc::new(30), 50);
        assert!(c.get(&3, 60).is_some());
        c.remove(&3);
        assert!(c.get(&3, 60).is_none());
    }
}
