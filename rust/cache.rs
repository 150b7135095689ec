//! In-process cache of video indexes, keyed by path and video stream and checked against the file's
//! modification time and size on every use (a stat call), so a file replaced on disk is indexed
//! again.
//!
//! A loader visits each video once per epoch; without the cache every visit would re-read the
//! packets (or decode the whole video, for `probe`'s exact index). Bounded by bytes (`MAX_BYTES`)
//! and entries, the oldest entries leaving first.
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::error::{ClipError, Result};
use crate::fork::{self, PerProcess};
use crate::video::{self, VideoIndex};

/// Bytes of indexes kept at most; beyond it the oldest entries go first. An index holds 8 bytes per
/// frame (its timestamp) and 8 per keyframe, so 16 per frame for intra-only video (MJPEG, ProRes),
/// plus about 300 bytes per entry: UCF101 (13k videos of ~190 frames) needs ~25 MB, but one
/// hour-long 60 fps intra-only video alone 3.5 MB, and a set of such videos would otherwise grow
/// without a bound other than the entry count.
const MAX_BYTES: usize = 256 << 20;
/// Entries kept at most, however small.
const MAX_ENTRIES: usize = 100_000;

type Stamp = (Option<SystemTime>, u64);

/// A file and the video stream asked of it (`None`: FFmpeg's best), as `video::open` takes them.
type Key = (PathBuf, Option<usize>);

struct Entry {
    stamp: Stamp,
    index: Arc<VideoIndex>,
    /// When it was stored (matches its item in `Cache::order`).
    seq: u64,
    /// What it costs (`cost`).
    bytes: usize,
}

/// The indexes by key, with their insertion order for eviction.
#[derive(Default)]
struct Cache {
    map: HashMap<Key, Entry>,
    /// (seq, key), oldest first. An item whose seq is not its key's entry's any more (the key was
    /// stored again since) is stale and skipped.
    order: VecDeque<(u64, Key)>,
    next_seq: u64,
    /// Sum of the entries' `bytes`.
    bytes: usize,
}

/// Memory an entry holds: the index's vectors and strings, the key and order copies of the path,
/// and the entry and its map and queue slots.
fn cost(path: &Path, index: &VideoIndex) -> usize {
    std::mem::size_of::<VideoIndex>()
        + std::mem::size_of::<Entry>()
        + std::mem::size_of::<(u64, Key)>()
        + 2 * std::mem::size_of::<Key>()
        + 2 * path.as_os_str().len()
        + index.path.as_os_str().len()
        + index.codec.capacity()
        + index.frame_pts.capacity() * std::mem::size_of::<i64>()
        + index.keyframes.capacity() * std::mem::size_of::<usize>()
}

impl Cache {
    fn get(&self, key: &Key, stamp: &Stamp) -> Option<Arc<VideoIndex>> {
        self.map
            .get(key)
            .filter(|e| e.stamp == *stamp)
            .map(|e| e.index.clone())
    }

    /// Keep `index` for `key`, then drop the oldest entries while over `max_bytes` or
    /// `max_entries`. An index larger than `max_bytes` on its own is not kept (it would only push
    /// every other entry out).
    fn insert(
        &mut self,
        key: &Key,
        stamp: Stamp,
        index: Arc<VideoIndex>,
        max_bytes: usize,
        max_entries: usize,
    ) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= old.bytes;
        }
        let bytes = cost(&key.0, &index);
        if bytes > max_bytes {
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.map.insert(
            key.clone(),
            Entry {
                stamp,
                index,
                seq,
                bytes,
            },
        );
        self.order.push_back((seq, key.clone()));
        self.bytes += bytes;
        while self.bytes > max_bytes || self.map.len() > max_entries {
            let Some((seq, p)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&p).is_some_and(|e| e.seq == seq) {
                let e = self.map.remove(&p).expect("just found");
                self.bytes -= e.bytes;
            }
        }
        // Stale items pile up when keys are stored again (an exact index replacing one read from
        // the packets): rebuild the order from the entries once they outnumber the live ones.
        if self.order.len() > 2 * self.map.len() + 64 {
            let mut live: Vec<(u64, Key)> =
                self.map.iter().map(|(k, e)| (e.seq, k.clone())).collect();
            live.sort_unstable_by_key(|x| x.0);
            self.order = live.into();
        }
    }
}

impl fork::Emptiness for Cache {
    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Per process (`fork.rs`): a child forked while a thread of its parent held the lock starts with an
/// empty cache of its own instead of waiting for ever; otherwise it keeps the parent's indexes.
static CACHE: PerProcess<Cache> = PerProcess::new(fork::adopt);

fn cache() -> &'static Mutex<Cache> {
    CACHE.get()
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

fn lookup(key: &Key, stamp: &Stamp) -> Option<Arc<VideoIndex>> {
    // A poisoned lock only means another thread panicked while holding it; the map is still valid.
    cache()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key, stamp)
}

fn store(key: &Key, stamp: Stamp, mut index: VideoIndex) -> Arc<VideoIndex> {
    // The vectors grew by pushing: give back their spare capacity before they are kept.
    index.frame_pts.shrink_to_fit();
    index.keyframes.shrink_to_fit();
    let index = Arc::new(index);
    cache().lock().unwrap_or_else(|e| e.into_inner()).insert(
        key,
        stamp,
        index.clone(),
        MAX_BYTES,
        MAX_ENTRIES,
    );
    index
}

/// The index of video stream `stream` of `path` (as `video::open` selects it): from the cache, else
/// read from the packets when they can be trusted (`video::index_packets`), else by decoding
/// (`video::probe`, with `threads` decoder threads). `cancel` stops either at its next packet
/// (`ClipError::Interrupted`).
pub fn index(
    path: &Path,
    stream: Option<usize>,
    threads: usize,
    cancel: &AtomicBool,
) -> Result<Arc<VideoIndex>> {
    let st = stamp(path)?;
    let key = (path.to_path_buf(), stream);
    if let Some(idx) = lookup(&key, &st) {
        return Ok(idx);
    }
    let idx = match video::index_packets(path, stream, cancel)? {
        Some(idx) => idx,
        None => video::probe(path, stream, threads, cancel)?,
    };
    Ok(store(&key, st, idx))
}

/// The exact index of `stream` of `path` (every frame decoded once, with `threads` decoder
/// threads), replacing a packet-based one in the cache.
pub fn exact_index(
    path: &Path,
    stream: Option<usize>,
    threads: usize,
    cancel: &AtomicBool,
) -> Result<Arc<VideoIndex>> {
    let st = stamp(path)?;
    let key = (path.to_path_buf(), stream);
    if let Some(idx) = lookup(&key, &st).filter(|i| i.exact) {
        return Ok(idx);
    }
    let idx = video::probe(path, stream, threads, cancel)?;
    Ok(store(&key, st, idx))
}

/// Forget every cached index (tests; or after rewriting files in place within the same second).
pub fn clear() {
    let mut c = cache().lock().unwrap_or_else(|e| e.into_inner());
    *c = Cache::default();
}

/// Number of cached indexes.
pub fn len() -> usize {
    cache().lock().unwrap_or_else(|e| e.into_inner()).map.len()
}

/// Bytes the cached indexes hold (as counted against `MAX_BYTES`).
pub fn bytes() -> usize {
    cache().lock().unwrap_or_else(|e| e.into_inner()).bytes
}

/// The cache's lock, held (for the fork tests: `_native._hold_locks_for_test`).
#[cfg(feature = "python")]
pub(crate) fn hold_lock() -> Box<dyn std::any::Any> {
    Box::new(cache().lock().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ffmpeg_next::codec;

    fn index(frames: usize, intra: bool) -> Arc<VideoIndex> {
        Arc::new(VideoIndex {
            path: PathBuf::from("/v.mp4"),
            width: 2,
            height: 2,
            fps: 25.0,
            num_frames: frames,
            duration: frames as f64 / 25.0,
            codec: "h264".into(),
            keyframes: if intra {
                (0..frames).collect()
            } else {
                vec![0]
            },
            frame_pts: (0..frames as i64).collect(),
            time_base: (1, 25),
            start_pts: 0,
            pts_reliable: true,
            stream_index: 0,
            video_stream: 0,
            codec_id: codec::Id::H264,
            exact: true,
        })
    }

    #[test]
    fn bytes_are_bounded_and_the_oldest_go_first() {
        let st: Stamp = (None, 1);
        let p = |i: usize| (PathBuf::from(format!("/videos/{i}.mp4")), None);
        let one = cost(&p(0).0, &index(1000, false));
        assert!((8000..9000).contains(&one), "{one}");
        // Intra-only: a keyframe per frame, twice the bytes.
        assert!(cost(&p(0).0, &index(1000, true)) > 16_000);
        let mut c = Cache::default();
        let budget = 3 * one + one / 2;
        for i in 0..5 {
            c.insert(&p(i), st, index(1000, false), budget, 100);
        }
        let mut kept: Vec<_> = c.map.keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, vec![p(2), p(3), p(4)]);
        assert_eq!(c.bytes, 3 * one);
        // Storing 2 again makes it the newest: 3 goes next.
        c.insert(&p(2), st, index(1000, false), budget, 100);
        c.insert(&p(5), st, index(1000, false), budget, 100);
        assert!(c.get(&p(3), &st).is_none());
        assert!(c.get(&p(2), &st).is_some() && c.get(&p(5), &st).is_some());
        assert!(
            c.get(&p(5), &(None, 2)).is_none(),
            "another stamp is a miss"
        );
        // One index beyond the budget is not kept and pushes nothing out.
        c.insert(&p(9), st, index(10_000, false), budget, 100);
        assert!(c.get(&p(9), &st).is_none());
        assert_eq!(c.map.len(), 3);
        // The entry count bounds too; stale order items do not pile up.
        for round in 0..50 {
            for i in 0..4 {
                c.insert(&p(i), st, index(10 + round, false), usize::MAX, 3);
            }
        }
        assert_eq!(c.map.len(), 3);
        assert!(c.order.len() <= 2 * 3 + 64);
        assert_eq!(c.bytes, c.map.values().map(|e| e.bytes).sum::<usize>());
    }
}
