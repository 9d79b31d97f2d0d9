//! Warnings that would otherwise repeat on every list or watch event.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// Bound on remembered keys, so a namespace full of junk cannot grow memory.
const MAX_REMEMBERED: usize = 4096;

/// Logs, once per key, that a key in the namespace was not understood.
pub(crate) fn skipped_key(key: &[u8]) {
    static SEEN: OnceLock<Mutex<HashSet<Vec<u8>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashSet::new()));
    let first = match seen.lock() {
        Ok(mut set) if set.len() < MAX_REMEMBERED => set.insert(key.to_vec()),
        Ok(_) => false,
        Err(_) => false,
    };
    if first {
        log::warn!(
            "os-lively: skipping key {:?}: not a record or index key this library understands",
            String::from_utf8_lossy(key)
        );
    }
}
