//! Threads: how many a call may ask for, and the rayon thread pools that run the work, kept for
//! reuse because building one per call would cost more than a small batch.
//!
//! Each user of thread pools (decoding in `clips`, the conv kernel in `conv`) has its own
//! `ThreadPools`, so that one's work never queues behind the other's.
use std::sync::Arc;

use crate::error::{ClipError, Result};
use crate::fork::{self, PerProcess};

/// The most `threads` a call may ask for. Each is an OS thread (rayon worker) or an FFmpeg decoder
/// thread; far beyond the cores they only add switching and memory (512 made a 16-frame read 10x slower
/// and 0.9 GB larger, 10,000 stalled the machine; docs/robustness.md).
pub const MAX_THREADS: usize = 256;

/// FFmpeg decoder threads per video at most: FFmpeg's own automatic choice stops at 16 too, and a
/// video's frame threads each hold reference frames.
pub const MAX_DECODER_THREADS: usize = 16;

/// Thread pools kept alive at once (most recently used first). A process usually reads with one or
/// two thread counts (a DataLoader worker's 1, the main process's default); any other count builds a
/// thread pool that is dropped, with its threads, once it falls out of this list.
const MAX_KEPT: usize = 2;

/// Threads to use when the caller does not say: the cores this process may run on.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Rayon workers for `threads`: videos decoded at once. Beyond 4x the cores more workers only
/// switch; the remainder of `threads` still goes to FFmpeg's decoder threads.
fn workers(threads: usize) -> usize {
    threads.min(4 * default_threads()).max(1)
}

/// The decoding thread pools (see `ThreadPools`).
pub(crate) static DECODE_THREAD_POOLS: ThreadPools = ThreadPools::new("c3d-clips");

/// A rayon thread pool of `workers(threads)` workers for decoding, kept for reuse (see
/// `ThreadPools`).
pub(crate) fn decode_thread_pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    DECODE_THREAD_POOLS.get(threads)
}

/// Rayon thread pools of `workers(threads)` workers, kept for reuse. At most `MAX_KEPT` live at
/// once (least recently used dropped). They belong to the process that built them: a child made by
/// `fork` (a DataLoader worker, say) inherits the list but not the threads, so it must build its
/// own, or it would wait forever on threads that do not exist. The list itself is per process too
/// (`fork.rs`): its lock is held while a thread pool starts its threads, and a child forked
/// meanwhile must not wait for it; the child leaves the inherited list, locked or not, untouched
/// (dropping those thread pools would signal threads that are not there).
pub(crate) struct ThreadPools {
    /// Thread name prefix.
    name: &'static str,
    /// The thread pools by worker count, most recently used first.
    kept: PerProcess<KeptList>,
}

type KeptList = Vec<(usize, Arc<rayon::ThreadPool>)>;

impl ThreadPools {
    pub(crate) const fn new(name: &'static str) -> Self {
        ThreadPools {
            name,
            kept: PerProcess::new(fork::keep_none),
        }
    }

    pub(crate) fn get(&self, threads: usize) -> Result<Arc<rayon::ThreadPool>> {
        let size = workers(threads);
        let mut kept = self.kept.get().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = kept.iter().position(|(n, _)| *n == size) {
            let entry = kept.remove(i);
            let p = entry.1.clone();
            kept.insert(0, entry);
            return Ok(p);
        }
        let name = self.name;
        let p = rayon::ThreadPoolBuilder::new()
            .num_threads(size)
            .thread_name(move |i| format!("{name}-{i}"))
            .build()
            .map_err(|e| {
                ClipError::invalid("threads", format!("cannot start {size} threads: {e}"))
            })?;
        let p = Arc::new(p);
        kept.insert(0, (size, p.clone()));
        // Dropping the last Arc of an evicted thread pool ends its threads once they are idle (a
        // call still running on it holds its own Arc).
        kept.truncate(MAX_KEPT);
        Ok(p)
    }

    /// The list's lock, held (for the fork tests: `_native._hold_locks_for_test`).
    #[cfg(feature = "python")]
    pub(crate) fn hold_lock(&'static self) -> Box<dyn std::any::Any> {
        Box::new(self.kept.get().lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_few_and_bounded() {
        let a = decode_thread_pool(1).unwrap();
        for k in 1..=6 {
            decode_thread_pool(k).unwrap();
        }
        assert_eq!(workers(10_000), 4 * default_threads());
        assert_eq!(workers(1), 1);
        // 1 fell out of the list: a new thread pool, not the first one.
        assert!(!Arc::ptr_eq(&a, &decode_thread_pool(1).unwrap()) || 4 * default_threads() <= 1);
    }
}
