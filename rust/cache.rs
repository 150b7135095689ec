//! In-process cache of video indexes, keyed by path and checked against the file's modification time
//! and size on every use (a stat call), so a file replaced on disk is indexed again.
//!
//! A loader visits each video once per epoch; without the cache every visit would re-read the
//! packets (or decode the whole video, for `probe`'s exact index).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use crate::error::{ClipError, Result};
use crate::video::{self, VideoIndex};

/// Entries kept before the cache is emptied. An index costs about 10 bytes per frame, so this bounds
/// the cache to a few hundred MB even for long videos; UCF101 (13k videos) fits many times over.
const MAX_ENTRIES: usize = 100_000;

type Stamp = (Option<SystemTime>, u64);
type Cache = Mutex<HashMap<PathBuf, (Stamp, Arc<VideoIndex>)>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn stamp(path: &Path) -> Result<Stamp> {
    match std::fs::metadata(path) {
        Ok(m) => Ok((m.modified().ok(), m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ClipError::NotFound {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(ClipError::decode(path, format!("cannot read: {e}"))),
    }
}

fn lookup(path: &Path, stamp: &Stamp) -> Option<Arc<VideoIndex>> {
    // A poisoned lock only means another thread panicked while holding it; the map is still valid.
    let map = cache().lock().unwrap_or_else(|e| e.into_inner());
    map.get(path)
        .filter(|(s, _)| s == stamp)
        .map(|(_, idx)| idx.clone())
}

fn store(path: &Path, stamp: Stamp, index: VideoIndex) -> Arc<VideoIndex> {
    let index = Arc::new(index);
    let mut map = cache().lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(path.to_path_buf(), (stamp, index.clone()));
    index
}

/// The index of `path`: from the cache, else read from the packets when they can be trusted
/// (`video::index_packets`), else by decoding (`video::probe`, with `threads` decoder threads).
/// `cancel` stops either at its next packet (`ClipError::Interrupted`).
pub fn index(path: &Path, threads: usize, cancel: &AtomicBool) -> Result<Arc<VideoIndex>> {
    let st = stamp(path)?;
    if let Some(idx) = lookup(path, &st) {
        return Ok(idx);
    }
    let idx = match video::index_packets(path, cancel)? {
        Some(idx) => idx,
        None => video::probe(path, threads, cancel)?,
    };
    Ok(store(path, st, idx))
}

/// The exact index of `path` (every frame decoded once, with `threads` decoder threads), replacing a
/// packet-based one in the cache.
pub fn exact_index(path: &Path, threads: usize, cancel: &AtomicBool) -> Result<Arc<VideoIndex>> {
    let st = stamp(path)?;
    if let Some(idx) = lookup(path, &st).filter(|i| i.exact) {
        return Ok(idx);
    }
    let idx = video::probe(path, threads, cancel)?;
    Ok(store(path, st, idx))
}

/// Forget every cached index (tests; or after rewriting files in place within the same second).
pub fn clear() {
    cache().lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Number of cached indexes.
pub fn len() -> usize {
    cache().lock().unwrap_or_else(|e| e.into_inner()).len()
}
