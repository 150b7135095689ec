//! Recycled batch buffers.
//!
//! A float32 batch of 16 clips of 16×112×112 is 38.5 MB. Fresh memory of that size comes from the
//! kernel as zero pages, and faulting them in and zeroing them cost about 6% of a `read_clips` call
//! on the "ucf" workload (`perf`: `clear_page_erms` and page faults). The Python side hands a batch
//! back here when numpy (and any torch tensor made from it) lets go of it, so a training loop's next
//! batch reuses memory that is already mapped. Reused contents are stale; the reader writes every
//! element of every clip it returns (failed clips are compacted away), so no zeroing is needed.
//!
//! Bounded: at most `MAX_BUFFERS` buffers and `MAX_BYTES` in all; `clear()` (Python's
//! `clear_cache()`) frees them. Locks are only ever tried, never waited on (a busy list only means a
//! fresh buffer). The kept list is per process (`fork.rs`): a DataLoader worker forked while one of
//! the parent's threads held the lock gets a list of its own, instead of one that stays locked (and
//! unused) for its whole life; forked at any other time it keeps the parent's buffers.
use std::sync::{MutexGuard, TryLockResult};

use crate::fork::{self, PerProcess};

/// Buffers kept: a ClipLoader with prefetch 2 has a few batches in flight.
pub const MAX_BUFFERS: usize = 6;
/// Bytes kept in all.
pub const MAX_BYTES: usize = 512 << 20;

/// A kept buffer of one of the batch element types.
pub enum Buf {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

impl Buf {
    fn bytes(&self) -> usize {
        match self {
            Buf::U8(v) => v.capacity(),
            Buf::F32(v) => v.capacity() * 4,
        }
    }
}

/// Oldest first.
static KEPT: PerProcess<Vec<Buf>> = PerProcess::new(fork::adopt);

/// This process's buffers, if no other thread is at them.
fn try_kept() -> TryLockResult<MutexGuard<'static, Vec<Buf>>> {
    KEPT.get().try_lock()
}

/// Element types whose buffers are kept for reuse.
pub trait Recyclable: Copy + Default + Sized {
    fn wrap(v: Vec<Self>) -> Buf;
    fn unwrap(b: &Buf) -> Option<&Vec<Self>>;
    fn into_vec(b: Buf) -> Option<Vec<Self>>;
}

macro_rules! recyclable {
    ($t:ty, $variant:ident) => {
        impl Recyclable for $t {
            fn wrap(v: Vec<Self>) -> Buf {
                Buf::$variant(v)
            }
            fn unwrap(b: &Buf) -> Option<&Vec<Self>> {
                match b {
                    Buf::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn into_vec(b: Buf) -> Option<Vec<Self>> {
                match b {
                    Buf::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}

recyclable!(u8, U8);
recyclable!(f32, F32);

/// A kept buffer of exactly `len` elements (stale contents), if one fits: capacity at least `len`
/// and at most twice it (a much larger buffer stays for a batch of its own size).
pub fn take<T: Recyclable>(len: usize) -> Option<Vec<T>> {
    if len == 0 {
        return None;
    }
    let mut kept = try_kept().ok()?;
    let i = kept.iter().rposition(|b| {
        T::unwrap(b).is_some_and(|v| v.capacity() >= len && v.capacity() / 2 <= len)
    })?;
    let mut v = T::into_vec(kept.remove(i))?;
    drop(kept);
    if v.len() > len {
        v.truncate(len);
    } else {
        v.resize(len, T::default()); // only the part never handed out before is written
    }
    Some(v)
}

/// Keep `v` for a later `take` (or drop it when the list is busy); the oldest buffers go first
/// when over `MAX_BUFFERS` or `MAX_BYTES`.
pub fn give<T: Recyclable>(v: Vec<T>) {
    let b = T::wrap(v);
    if b.bytes() == 0 || b.bytes() > MAX_BYTES {
        return;
    }
    let Ok(mut kept) = try_kept() else {
        return;
    };
    kept.push(b);
    while kept.len() > MAX_BUFFERS || kept.iter().map(Buf::bytes).sum::<usize>() > MAX_BYTES {
        kept.remove(0);
    }
}

/// Free every kept buffer.
pub fn clear() {
    if let Ok(mut kept) = try_kept() {
        *kept = Vec::new();
    }
}

/// The kept list's lock, held (for the fork tests: `_native._hold_locks_for_test`); None when another
/// thread has it.
#[cfg(feature = "python")]
pub(crate) fn hold_lock() -> Option<Box<dyn std::any::Any>> {
    match try_kept() {
        Ok(g) => Some(Box::new(g)),
        Err(std::sync::TryLockError::Poisoned(e)) => Some(Box::new(e.into_inner())),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// Bytes kept now.
pub fn kept_bytes() -> usize {
    try_kept()
        .map(|p| p.iter().map(Buf::bytes).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_within_bounds() {
        // One test touches the process-wide list, so the checks run in sequence.
        clear();
        let mut a = vec![7u8; 1000];
        let ptr = a.as_mut_ptr();
        give(a);
        assert!(
            take::<u8>(3000).is_none(),
            "too small a buffer is not handed out"
        );
        assert!(
            take::<u8>(400).is_none(),
            "a buffer over twice the request stays"
        );
        let b = take::<u8>(600).expect("kept buffer");
        assert_eq!((b.len(), b.as_ptr()), (600, ptr as *const u8));
        give(b);
        let c = take::<u8>(1000).unwrap();
        assert_eq!(c.len(), 1000);
        assert!(take::<u8>(1000).is_none(), "a buffer is handed out once");
        for _ in 0..MAX_BUFFERS + 3 {
            give(vec![0f32; 10]);
        }
        assert_eq!(KEPT.get().lock().unwrap().len(), MAX_BUFFERS);
        give(vec![0u8; MAX_BYTES + 1]);
        assert!(kept_bytes() <= MAX_BYTES);
        clear();
        assert_eq!(kept_bytes(), 0);
    }
}
