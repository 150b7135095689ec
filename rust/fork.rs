//! Process-wide state that survives `fork` without hanging the child.
//!
//! A `ClipLoader` prefetch thread reads clips in the parent while a torch DataLoader forks its
//! workers; a `std::sync::Mutex` held by one of the parent's threads at that moment stays locked
//! forever in the child, where that thread does not exist, and the child's first read would wait on
//! it for ever. So every lock-protected static here (the index cache, the rayon thread pool lists,
//! the recycled batch buffers) belongs to the process that created it: a `PerProcess` remembers
//! that pid, and a child (a different `getpid()`) publishes a fresh state of its own before it
//! locks anything, without touching the inherited lock. The inherited state is leaked, never
//! dropped: its lock may be held, and dropping what it holds may not be safe either (a rayon thread
//! pool inherited through fork has no threads behind it, and dropping it would signal threads that
//! are not here). When the inherited lock turns out to be free, no thread was changing the state at
//! the fork, so the child adopts its contents (`PerProcess::new`'s `inherit`): a forked DataLoader
//! worker keeps the indexes its parent cached, as it did before.
//!
//! Chosen over `pthread_atfork` handlers that take every lock before a fork: those would make every
//! fork of the process (any `subprocess` too) wait for the locks, and a lock in the parent held for
//! long (a thread pool starting its threads) would stall it. The only handler here is a child one
//! that bumps a fork generation (one atomic add, async-signal-safe): a state belongs to the process
//! whose pid *and* generation it recorded. The pid alone could be reused: a child that never
//! touched the state could fork a grandchild given its long-dead grandparent's pid. The generation
//! alone would miss a child made by a raw `clone` that runs no handlers. The normal path costs one
//! `getpid` and two atomic loads per access, next to the stat call or thread pool work each access
//! already makes.
use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, Once, TryLockError};

/// How many forks separate this process from the first one that used a `PerProcess` (counted by the
/// `pthread_atfork` child handler, registered on first use).
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();

extern "C" fn count_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// This process's identity for `PerProcess`: its pid and fork generation.
fn identity() -> (u32, u64) {
    (std::process::id(), FORK_GENERATION.load(Ordering::Relaxed))
}

/// A `Mutex<T>` per process; `get` returns the calling process's.
pub(crate) struct PerProcess<T> {
    current: AtomicPtr<Owned<T>>,
    /// Moves what a child keeps from the inherited state (first argument, whose lock was free at the
    /// fork) into its own fresh one (second).
    inherit: fn(&mut T, &mut T),
    /// Shared between threads as a `Mutex<T>` is: `Sync` only for `T: Send` (an `AtomicPtr` alone
    /// would be `Sync` for any `T`).
    _shares: PhantomData<Mutex<T>>,
}

struct Owned<T> {
    /// `identity()` of the process that made it.
    owner: (u32, u64),
    state: Mutex<T>,
}

impl<T: Default> PerProcess<T> {
    pub(crate) const fn new(inherit: fn(&mut T, &mut T)) -> Self {
        PerProcess {
            current: AtomicPtr::new(std::ptr::null_mut()),
            inherit,
            _shares: PhantomData,
        }
    }

    /// This process's state; created on first use, and anew in a child made by `fork`.
    #[inline]
    pub(crate) fn get(&self) -> &Mutex<T> {
        let me = identity();
        let cur = self.current.load(Ordering::Acquire);
        // SAFETY: a published `Owned` is never freed (see `replace`), so `cur` is null or valid.
        match unsafe { cur.as_ref() } {
            Some(owned) if owned.owner == me => &owned.state,
            _ => self.replace(cur),
        }
    }

    #[cold]
    fn replace(&self, mut cur: *mut Owned<T>) -> &Mutex<T> {
        ATFORK.call_once(|| {
            // SAFETY: registers a handler that only does an atomic add. A failure (ENOMEM) leaves the
            // pid check alone, as before the handler existed.
            unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
        });
        let me = identity();
        let fresh = Box::into_raw(Box::new(Owned {
            owner: me,
            state: Mutex::new(T::default()),
        }));
        loop {
            match self
                .current
                .compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => {
                    // SAFETY: as in `get`.
                    if let Some(owned) = unsafe { now.as_ref() }.filter(|o| o.owner == me) {
                        // Another thread of this process published first; `fresh` was never shared.
                        drop(unsafe { Box::from_raw(fresh) });
                        return &owned.state;
                    }
                    cur = now;
                }
            }
        }
        // SAFETY: just published, and never freed from now on.
        let fresh = unsafe { &*fresh };
        // SAFETY: as in `get`. Only the thread that replaced `cur` ever gets here with it, so a lock
        // that cannot be taken was held at the fork by a thread that is not in this process.
        if let Some(inherited) = unsafe { cur.as_ref() } {
            let old = match inherited.state.try_lock() {
                Ok(g) => Some(g),
                Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(mut old) = old {
                let mut new = fresh.state.lock().unwrap_or_else(|e| e.into_inner());
                (self.inherit)(&mut old, &mut new);
            }
        }
        &fresh.state
    }
}

/// `PerProcess::new`'s `inherit` for state a child keeps: the inherited contents, unless this
/// process has filled its own already (another thread of the child got there first).
pub(crate) fn adopt<T: Emptiness>(old: &mut T, new: &mut T) {
    if new.is_empty() {
        std::mem::swap(old, new);
    }
}

/// `PerProcess::new`'s `inherit` for state a child must not use (rayon thread pools: no threads
/// behind them in the child): the inherited state stays, leaked, where it was.
pub(crate) fn keep_none<T>(_old: &mut T, _new: &mut T) {}

/// Whether a state holds nothing yet (for `adopt`).
pub(crate) trait Emptiness {
    fn is_empty(&self) -> bool;
}

impl<T> Emptiness for Vec<T> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    static HELD: PerProcess<Vec<u32>> = PerProcess::new(adopt);
    static FREE: PerProcess<Vec<u32>> = PerProcess::new(adopt);
    static REUSED: PerProcess<Vec<u32>> = PerProcess::new(keep_none);

    /// Fork; the child runs `f` and exits 0 when it returns true. The parent waits at most 20 s
    /// (then kills the child) and returns the child's exit status, or None when it hung.
    fn in_child(f: impl FnOnce() -> bool) -> Option<i32> {
        // SAFETY: the child only runs `f` (locks of this module, allocation) and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(false);
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: plain waitpid on our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                return Some(libc::WEXITSTATUS(status));
            }
            if start.elapsed() > Duration::from_secs(20) {
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_child_never_waits_on_a_lock_held_at_the_fork() {
        HELD.get().lock().unwrap().push(1);
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _g = HELD.get().lock().unwrap();
            held_tx.send(()).unwrap();
            let _ = done_rx.recv_timeout(Duration::from_secs(30));
        });
        held_rx.recv().unwrap();
        // The child starts with a state of its own (the parent's, mid-change for all it knows, stays).
        let status = in_child(|| {
            let fresh = HELD.get().lock().unwrap().is_empty();
            HELD.get().lock().unwrap().push(2);
            fresh && *HELD.get().lock().unwrap() == vec![2]
        });
        done_tx.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(
            status,
            Some(0),
            "the child hung (None) or saw the parent's state"
        );
        assert_eq!(
            *HELD.get().lock().unwrap(),
            vec![1],
            "the parent's state is its own"
        );
    }

    #[test]
    fn a_child_keeps_state_whose_lock_was_free() {
        FREE.get().lock().unwrap().extend([7, 8]);
        let status = in_child(|| *FREE.get().lock().unwrap() == vec![7, 8]);
        assert_eq!(status, Some(0));
        FREE.get().lock().unwrap().push(9);
        assert_eq!(*FREE.get().lock().unwrap(), vec![7, 8, 9]);
    }

    #[test]
    fn a_process_with_the_owners_pid_but_a_later_fork_generation_gets_its_own_state() {
        REUSED.get().lock().unwrap().push(1); // registers the atfork handler
        let parent_generation = identity().1;
        let status = in_child(|| {
            // The handler ran in this child.
            let counted = identity().1 == parent_generation + 1;
            let mine = REUSED.get() as *const _;
            REUSED.get().lock().unwrap().push(2);
            // What a grandchild given this pid again (after this process is gone) would see: the same
            // pid, one more fork. Simulated here, where the pid cannot be chosen.
            FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
            let again = REUSED.get();
            counted && !std::ptr::eq(mine, again) && again.lock().unwrap().is_empty()
        });
        assert_eq!(status, Some(0));
        assert_eq!(*REUSED.get().lock().unwrap(), vec![1]);
    }
}
