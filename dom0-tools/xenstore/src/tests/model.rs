//! The simple model the properties compare against: a map from absolute
//! path to value, every ancestor of a node present.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::path::{is_under, parent};
use crate::Store;

pub type Tree = BTreeMap<String, String>;

/// `path` and its missing ancestors (below an existing one, `/` always
/// existing), top-down.
pub fn missing_chain(t: &Tree, path: &str) -> Vec<String> {
    let mut chain = Vec::new();
    let mut p = String::from(path);
    while p != "/" && !t.contains_key(&p) {
        chain.push(p.clone());
        p = String::from(parent(&p));
    }
    chain.reverse();
    chain
}

/// WRITE in the model.
pub fn write(t: &mut Tree, path: &str, value: &str) {
    for p in missing_chain(t, path) {
        t.insert(p, String::new());
    }
    t.insert(String::from(path), String::from(value));
}

/// RM in the model: `Err` is ENOENT (neither node nor parent exists).
/// Returns the removed paths.
pub fn rm(t: &mut Tree, path: &str) -> Result<Vec<String>, ()> {
    if !t.contains_key(path) {
        let up = parent(path);
        return if up == "/" || t.contains_key(up) {
            Ok(Vec::new())
        } else {
            Err(())
        };
    }
    let gone: Vec<String> = t.keys().filter(|k| is_under(k, path)).cloned().collect();
    for k in &gone {
        t.remove(k);
    }
    Ok(gone)
}

/// The store's committed nodes at or under `root`, as the model sees them.
pub fn snapshot(s: &Store, root: &str) -> Tree {
    s.paths()
        .filter(|p| is_under(p, root))
        .map(|p| {
            (
                String::from(p),
                String::from_utf8(s.read_committed(p).unwrap_or_default().to_vec()).unwrap(),
            )
        })
        .collect()
}
