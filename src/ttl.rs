//! A small map whose entries are good for a fixed time, bounded in size: what the request
//! path remembers (memberships, records) instead of reading the graph again.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries remembered at most by default (beyond, expired ones go, then all).
const MAX_ENTRIES: usize = 10_000;

/// Values good for `ttl` after they were inserted; a zero `ttl` remembers nothing.
pub struct TtlMap<K, V> {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> TtlMap<K, V> {
    /// An empty map whose entries last `ttl`, holding at most [`MAX_ENTRIES`].
    pub fn new(ttl: Duration) -> Self {
        Self::bounded(ttl, MAX_ENTRIES)
    }

    /// An empty map whose entries last `ttl`, holding at most `max` (for large values).
    pub fn bounded(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How many entries it holds (expired ones included until they are dropped).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The value of `key`, if inserted less than the TTL ago.
    pub fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// Remembers `value` for `key` from now.
    pub fn insert(&self, key: K, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.max {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.max {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// Forgets `key`.
    pub fn remove<Q: Eq + Hash + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_zero_remembers_nothing() {
        let m = TtlMap::new(Duration::from_millis(50));
        m.insert("a", 1);
        assert_eq!(m.get(&"a"), Some(1));
        m.remove(&"a");
        assert_eq!(m.get(&"a"), None);
        m.insert("b", 2);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(m.get(&"b"), None);
        let off = TtlMap::new(Duration::ZERO);
        off.insert("c", 3);
        assert_eq!(off.get(&"c"), None);
        let full = TtlMap::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 5 {
            full.insert(i, i);
        }
        assert!(full.len() <= MAX_ENTRIES);
        let small = TtlMap::bounded(Duration::from_secs(60), 3);
        for i in 0..5 {
            small.insert(i, i);
        }
        assert!(small.len() <= 3);
        assert_eq!(small.get(&4), Some(4), "the newest entry is kept");
    }
}
