//! `read_clips`: many clips, from many videos, into one preallocated batch tensor.
//!
//! Clips are grouped by video so that all clips of one video are decoded in one forward pass (the
//! planner in `decode.rs` sees the union of their frames). Groups run in parallel on a rayon pool;
//! each writes straight into its clips' disjoint parts of the output buffer, which the Python side
//! then hands to numpy without a copy.
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use crate::cache;
use crate::decode::{self, Pass};
use crate::error::{try_zeroed, ClipError, Result, Zeroed};
use crate::fork::{self, PerProcess};
use crate::pool::{self, Pooled};
use crate::transform::{
    self, check_target, Geometry, Layout, Lut, Norm, Region, Resize, RgbImage, Sample, Scaler,
    MAX_SIDE,
};
use crate::video::VideoIndex;

/// One clip: a video and the frames to take from it, in clip order (repeats allowed).
#[derive(Debug, Clone)]
pub struct ClipRequest {
    pub path: PathBuf,
    pub frames: Vec<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    Never,
    Always,
    /// Each clip is mirrored with probability 1/2, drawn from (seed, clip position).
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    U8,
    F32,
}

/// Everything about the output except the clips themselves.
#[derive(Debug, Clone)]
pub struct Spec {
    pub resize: Resize,
    /// (height, width) of the crop window; `None` keeps the resized frame whole.
    pub crop: Option<(u32, u32)>,
    pub random_crop: bool,
    pub flip: Flip,
    pub seed: u64,
    pub layout: Layout,
    pub dtype: DType,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            resize: Resize::Fixed(128, 171),
            crop: Some((112, 112)),
            random_crop: false,
            flip: Flip::Never,
            seed: 0,
            layout: Layout::Ncthw,
            dtype: DType::U8,
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }
}

/// The batch buffer, flat, in the layout's order.
pub enum Data {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

pub struct Batch {
    pub data: Data,
    /// (N, ...) where N counts the clips that succeeded.
    pub shape: Vec<usize>,
    /// Positions (in the request) of the clips in the batch, in order.
    pub ok: Vec<usize>,
    /// Positions of the clips that failed, with why (only with `skip`).
    pub failed: Vec<(usize, ClipError)>,
}

/// The most `threads` a call may ask for. Each is an OS thread (rayon worker) or an FFmpeg decoder
/// thread; far beyond the cores they only add switching and memory (512 made a 16-frame read 10x slower
/// and 0.9 GB larger, 10,000 stalled the machine: docs/robustness_findings.md #3).
pub const MAX_THREADS: usize = 256;

/// FFmpeg decoder threads per video at most: FFmpeg's own automatic choice stops at 16 too, and a
/// video's frame threads each hold reference frames.
pub const MAX_DECODER_THREADS: usize = 16;

/// Pools kept alive at once (most recently used first). A process usually reads with one or two
/// thread counts (a DataLoader worker's 1, the main process's default); any other count builds a
/// pool that is dropped, with its threads, once it falls out of this list.
const POOL_CACHE: usize = 2;

/// Rayon workers for `threads`: videos decoded at once. Beyond 4x the cores more workers only
/// switch; the remainder of `threads` still goes to FFmpeg's decoder threads.
fn pool_size(threads: usize) -> usize {
    threads.min(4 * default_threads()).max(1)
}

/// The decoding pools (see `Pools`).
pub(crate) static DECODE_POOLS: Pools = Pools::new("c3d-clips");

/// A rayon pool of `pool_size(threads)` workers for decoding, kept for reuse (see `Pools`).
pub(crate) fn pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    DECODE_POOLS.get(threads)
}

/// Rayon pools of `pool_size(threads)` workers, kept for reuse: building one per call would cost
/// more than a small batch. At most `POOL_CACHE` pools live at once (least recently used dropped).
/// The pools belong to the process that built them: a child made by `fork` (a DataLoader worker,
/// say) inherits the list but not the threads, so it must build its own, or it would wait forever on
/// threads that do not exist. The list itself is per process too (`fork.rs`): its lock is held while
/// a pool starts its threads, and a child forked meanwhile must not wait for it; the child leaves
/// the inherited list, locked or not, untouched (dropping those pools would signal threads that are
/// not there). Each user of pools (decoding here, the conv kernel in `conv.rs`) has its own `Pools`,
/// so that one's work never queues behind the other's.
pub(crate) struct Pools {
    /// Thread name prefix.
    name: &'static str,
    /// The pools by size, most recently used first.
    pools: PerProcess<PoolList>,
}

type PoolList = Vec<(usize, Arc<rayon::ThreadPool>)>;

impl Pools {
    pub(crate) const fn new(name: &'static str) -> Self {
        Pools {
            name,
            pools: PerProcess::new(fork::keep_none),
        }
    }

    pub(crate) fn get(&self, threads: usize) -> Result<Arc<rayon::ThreadPool>> {
        let size = pool_size(threads);
        let mut pools = self.pools.get().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = pools.iter().position(|(n, _)| *n == size) {
            let entry = pools.remove(i);
            let p = entry.1.clone();
            pools.insert(0, entry);
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
        pools.insert(0, (size, p.clone()));
        // Dropping the last Arc of an evicted pool ends its threads once they are idle (a call
        // still running on it holds its own Arc).
        pools.truncate(POOL_CACHE);
        Ok(p)
    }

    /// The list's lock, held (for the fork tests: `_clips._hold_locks_for_test`).
    #[cfg(feature = "python")]
    pub(crate) fn hold_lock(&'static self) -> Box<dyn std::any::Any> {
        Box::new(self.pools.get().lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Threads to use when the caller does not say: the cores this process may run on.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// splitmix64: a tiny, well-mixed generator; the stream for a clip depends on (seed, position) only,
/// so a clip's random crop and flip do not change with the thread count or the batch's other clips.
struct Rng(u64);

impl Rng {
    fn for_clip(seed: u64, position: usize) -> Self {
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        let s = r.next() ^ (position as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        Rng(s)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..=n.
    fn up_to(&mut self, n: usize) -> usize {
        (self.next() % (n as u64 + 1)) as usize
    }
}

/// Crop placement and flip of the clip at `position`, for a resized frame of `sh`×`sw`.
fn geometry(spec: &Spec, position: usize, sh: usize, sw: usize, ch: usize, cw: usize) -> Geometry {
    let mut rng = Rng::for_clip(spec.seed, position);
    let (top, left) = if spec.random_crop {
        let top = rng.up_to(sh - ch);
        (top, rng.up_to(sw - cw))
    } else {
        // Centre, rounding half to even like torchvision's CenterCrop (int(round(x))).
        let centre = |d: usize| ((d as f64) / 2.0).round_ties_even() as usize;
        (centre(sh - ch), centre(sw - cw))
    };
    let flip = match spec.flip {
        Flip::Never => false,
        Flip::Always => true,
        Flip::Random => rng.next() >> 63 == 1,
    };
    Geometry {
        top,
        left,
        height: ch,
        width: cw,
        flip,
    }
}

/// The clips of one video.
struct Group {
    path: PathBuf,
    /// Positions of its clips in the request.
    clips: Vec<usize>,
}

fn group_by_video(clips: &[ClipRequest]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut by_path: HashMap<&Path, usize> = HashMap::new();
    for (pos, c) in clips.iter().enumerate() {
        let g = *by_path.entry(c.path.as_path()).or_insert_with(|| {
            groups.push(Group {
                path: c.path.clone(),
                clips: Vec::new(),
            });
            groups.len() - 1
        });
        groups[g].clips.push(pos);
    }
    groups
}

fn check_frames(
    path: &Path,
    position: usize,
    frames: &[i64],
    num_frames: usize,
) -> Result<Vec<usize>> {
    frames
        .iter()
        .map(|&f| {
            if f < 0 || f as u64 >= num_frames as u64 {
                Err(ClipError::invalid(
                    format!("clips[{position}]"),
                    format!(
                        "frame index {f} out of range for {} ({num_frames} frames)",
                        path.display()
                    ),
                ))
            } else {
                Ok(f as usize)
            }
        })
        .collect()
}

/// The text a panic carried (a `&str` or `String` payload).
pub fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Read `clips` into one batch. With `skip`, clips that fail are left out and reported; otherwise
/// the first failure (in clip order) is returned as the error. `cancel` stops the work early
/// (→ `ClipError::Interrupted`).
pub fn read_clips(
    clips: &[ClipRequest],
    spec: &Spec,
    threads: usize,
    skip: bool,
    cancel: &AtomicBool,
) -> Result<Batch> {
    validate_spec(clips, spec, threads)?;
    let t_len = clips[0].frames.len();
    let pool = pool(threads)?;
    let groups = group_by_video(clips);

    // Phase 1: the index of every video (cached after the first visit), in parallel; a video that
    // must be decoded to be indexed gets its share of the threads, as for decoding below.
    let index_threads = (threads / groups.len().max(1)).clamp(1, MAX_DECODER_THREADS);
    let indexes: Vec<Result<Arc<VideoIndex>>> = pool.install(|| {
        groups
            .par_iter()
            .with_max_len(1)
            .map(|g| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(ClipError::Interrupted);
                }
                catch_unwind(AssertUnwindSafe(|| {
                    cache::index(&g.path, index_threads, cancel)
                }))
                .unwrap_or_else(|p| {
                    Err(ClipError::decode(
                        &g.path,
                        format!("internal error (Rust panic: {})", panic_message(p)),
                    ))
                })
            })
            .collect()
    });
    if cancel.load(Ordering::Relaxed)
        || indexes
            .iter()
            .any(|r| matches!(r, Err(ClipError::Interrupted)))
    {
        return Err(ClipError::Interrupted);
    }

    // Output frame size: fixed by crop or size, else it must agree across the videos.
    let mut out_hw: Option<(usize, usize)> = spec.crop.map(|(h, w)| (h as usize, w as usize));
    if out_hw.is_none() {
        if let Resize::Fixed(h, w) = spec.resize {
            out_hw = Some((h as usize, w as usize));
        }
    }
    if out_hw.is_none() {
        let mut sizes: Vec<(usize, usize, &Path)> = Vec::new();
        for (g, idx) in groups.iter().zip(&indexes) {
            if let Ok(idx) = idx {
                let (h, w) = spec.resize.target(idx.width, idx.height);
                sizes.push((h as usize, w as usize, &g.path));
            }
        }
        if let Some(&(h, w, p)) = sizes.first() {
            if let Some(&(h2, w2, p2)) = sizes.iter().find(|s| (s.0, s.1) != (h, w)) {
                return Err(ClipError::invalid(
                    "size",
                    format!(
                        "clips of different frame sizes cannot share a batch ({} gives {h}x{w}, {} gives {h2}x{w2}); give size=(h, w) or crop",
                        p.display(),
                        p2.display()
                    ),
                ));
            }
            out_hw = Some((h, w));
        }
    }
    let (oh, ow) = out_hw.unwrap_or((0, 0));

    // Per clip: frames checked against the index, crop window placed.
    let mut failed: Vec<(usize, ClipError)> = Vec::new();
    let mut jobs: Vec<GroupJob> = Vec::new();
    for (g, idx) in groups.into_iter().zip(indexes) {
        let idx = match idx {
            Ok(i) => i,
            Err(e) => {
                for &pos in &g.clips {
                    failed.push((pos, clone_err(&e)));
                }
                continue;
            }
        };
        let (sh, sw) = spec.resize.target(idx.width, idx.height);
        // A short side can scale a narrow video's long side beyond what FFmpeg can scale to.
        if let Err(e) = check_target(sh, sw, "size") {
            let msg = format!("{e} (clips of {})", g.path.display());
            for &pos in &g.clips {
                failed.push((pos, ClipError::invalid("size", msg.clone())));
            }
            continue;
        }
        let (sh, sw) = (sh as usize, sw as usize);
        let mut members = Vec::new();
        for &pos in &g.clips {
            if oh > sh || ow > sw {
                failed.push((
                    pos,
                    ClipError::invalid(
                        "crop",
                        format!("{oh}x{ow} is larger than the resized frame {sh}x{sw} of clips[{pos}] ({})", g.path.display()),
                    ),
                ));
                continue;
            }
            match check_frames(&g.path, pos, &clips[pos].frames, idx.num_frames) {
                Ok(frames) => members.push(Member {
                    pos,
                    frames,
                    geom: geometry(spec, pos, sh, sw, oh, ow),
                }),
                Err(e) => failed.push((pos, e)),
            }
        }
        if !members.is_empty() {
            jobs.push(GroupJob {
                path: g.path,
                index: idx,
                target: (sh, sw),
                members,
            });
        }
    }

    let n_jobs = jobs.len().max(1);
    let decoder_threads = (threads / n_jobs).clamp(1, MAX_DECODER_THREADS);
    // The batch's size, checked before anything is allocated: a mistaken batch size or `size` must
    // come back as MemoryError naming the shape, not abort the process.
    let mut shape = vec![clips.len()];
    shape.extend(spec.layout.clip_shape(t_len, oh, ow));
    let elem = match spec.dtype {
        DType::U8 => 1u128,
        DType::F32 => 4,
    };
    let bytes = shape.iter().map(|&d| d as u128).product::<u128>() * elem;
    let dtype_name = match spec.dtype {
        DType::U8 => "uint8",
        DType::F32 => "float32",
    };
    let batch_what = || format!("read_clips: a {dtype_name} batch of shape {shape:?}");
    if bytes > isize::MAX as u128 {
        return Err(ClipError::OutOfMemory {
            what: batch_what(),
            bytes,
        });
    }
    let per_clip = 3 * t_len * oh * ow;
    let ctx = Ctx {
        spec,
        t_len,
        per_clip,
        decoder_threads,
        cancel,
    };
    let (data, group_failures) = match spec.dtype {
        DType::U8 => {
            let lut = transform::identity_lut();
            let (buf, f) = run_groups(&pool, clips.len(), &jobs, &ctx, &lut, batch_what)?;
            (Data::U8(buf), f)
        }
        DType::F32 => {
            let lut = transform::float_lut(spec.mean, spec.std);
            let (buf, f) = run_groups(&pool, clips.len(), &jobs, &ctx, &lut, batch_what)?;
            (Data::F32(buf), f)
        }
    };
    if cancel.load(Ordering::Relaxed)
        || group_failures
            .iter()
            .any(|(_, e)| matches!(e, ClipError::Interrupted))
    {
        return Err(ClipError::Interrupted);
    }
    failed.extend(group_failures);
    failed.sort_by_key(|f| f.0);
    if !skip {
        if let Some((_, e)) = failed.into_iter().next() {
            return Err(e);
        }
        failed = Vec::new();
    }

    // Leave out the failed clips: move the good ones down over them (no copy when none failed).
    let is_failed: Vec<bool> = {
        let mut v = vec![false; clips.len()];
        for (p, _) in &failed {
            v[*p] = true;
        }
        v
    };
    let ok: Vec<usize> = (0..clips.len()).filter(|p| !is_failed[*p]).collect();
    let data = match data {
        Data::U8(v) => Data::U8(compact(v, &ok, per_clip)),
        Data::F32(v) => Data::F32(compact(v, &ok, per_clip)),
    };
    shape[0] = ok.len();
    Ok(Batch {
        data,
        shape,
        ok,
        failed,
    })
}

fn validate_spec(clips: &[ClipRequest], spec: &Spec, threads: usize) -> Result<()> {
    if clips.is_empty() {
        return Err(ClipError::invalid("clips", "no clips given"));
    }
    let t_len = clips[0].frames.len();
    if t_len == 0 {
        return Err(ClipError::invalid(
            "clips",
            format!(
                "clips[0] ({}) has no frame indices",
                clips[0].path.display()
            ),
        ));
    }
    if let Some((i, c)) = clips
        .iter()
        .enumerate()
        .find(|(_, c)| c.frames.len() != t_len)
    {
        return Err(ClipError::invalid(
            "clips",
            format!("all clips must have the same number of frames: clips[0] has {t_len}, clips[{i}] ({}) has {}", c.path.display(), c.frames.len()),
        ));
    }
    if threads == 0 {
        return Err(ClipError::invalid("threads", "must be at least 1"));
    }
    if threads > MAX_THREADS {
        return Err(ClipError::invalid(
            "threads",
            format!("{threads} is more than {MAX_THREADS}"),
        ));
    }
    match spec.resize {
        Resize::Fixed(h, w) if h == 0 || w == 0 => {
            return Err(ClipError::invalid(
                "size",
                format!("({h}, {w}) has a zero side"),
            ))
        }
        Resize::Fixed(h, w) => check_target(h, w, "size")?,
        Resize::ShortSide(0) => return Err(ClipError::invalid("size", "short side 0")),
        Resize::ShortSide(s) if s > MAX_SIDE => {
            return Err(ClipError::invalid(
                "size",
                format!("short side {s}: a frame side may be at most {MAX_SIDE}"),
            ))
        }
        _ => {}
    }
    if let Some((h, w)) = spec.crop {
        if h == 0 || w == 0 {
            return Err(ClipError::invalid(
                "crop",
                format!("({h}, {w}) has a zero side"),
            ));
        }
        if h > MAX_SIDE || w > MAX_SIDE {
            return Err(ClipError::invalid(
                "crop",
                format!("({h}, {w}): a frame side may be at most {MAX_SIDE}"),
            ));
        }
    }
    if spec.dtype == DType::F32 && spec.std.iter().any(|s| *s == 0.0 || !s.is_finite()) {
        return Err(ClipError::invalid(
            "std",
            format!("{:?}: every value must be finite and non-zero", spec.std),
        ));
    }
    if spec.mean.iter().any(|m| !m.is_finite()) {
        return Err(ClipError::invalid(
            "mean",
            format!("{:?}: every value must be finite", spec.mean),
        ));
    }
    Ok(())
}

fn clone_err(e: &ClipError) -> ClipError {
    match e {
        ClipError::NotFound { path } => ClipError::NotFound { path: path.clone() },
        ClipError::Decode { path, cause } => ClipError::Decode {
            path: path.clone(),
            cause: cause.clone(),
        },
        ClipError::InvalidArgument { arg, msg } => ClipError::InvalidArgument {
            arg: arg.clone(),
            msg: msg.clone(),
        },
        ClipError::OutOfMemory { what, bytes } => ClipError::OutOfMemory {
            what: what.clone(),
            bytes: *bytes,
        },
        ClipError::Interrupted => ClipError::Interrupted,
    }
}

fn compact<T: Copy>(mut v: Vec<T>, ok: &[usize], per_clip: usize) -> Vec<T> {
    for (dst, &src) in ok.iter().enumerate() {
        if dst != src {
            v.copy_within(src * per_clip..(src + 1) * per_clip, dst * per_clip);
        }
    }
    v.truncate(ok.len() * per_clip);
    v
}

struct Member {
    pos: usize,
    frames: Vec<usize>,
    geom: Geometry,
}

struct GroupJob {
    path: PathBuf,
    index: Arc<VideoIndex>,
    /// Resized (height, width) before cropping.
    target: (usize, usize),
    members: Vec<Member>,
}

struct Ctx<'a> {
    spec: &'a Spec,
    t_len: usize,
    per_clip: usize,
    decoder_threads: usize,
    cancel: &'a AtomicBool,
}

/// Ask for transparent huge pages on a large fresh buffer: a float32 batch of 16 C3D clips is 38 MB,
/// which as 4 KiB pages costs ~9,400 page faults on first write (measured: ~15% of the CPU time of
/// `read_clips`); 2 MiB pages cut that 512-fold. Only a hint: without THP nothing changes.
fn advise_huge_pages<T>(buf: &mut [T]) {
    const HUGE: usize = 2 << 20;
    let bytes = std::mem::size_of_val(buf);
    if bytes < 2 * HUGE {
        return;
    }
    let start = buf.as_mut_ptr() as usize;
    let aligned = start.div_ceil(HUGE) * HUGE;
    let end = (start + bytes) / HUGE * HUGE;
    if end > aligned {
        // SAFETY: the range lies inside `buf`, page-aligned; MADV_HUGEPAGE changes no contents.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            )
        };
    }
}

/// Allocate the batch and fill it, one task per video; returns the buffer and the failed clips.
#[allow(clippy::type_complexity)]
fn run_groups<T: Zeroed + Pooled + Sample + Send + Sync>(
    pool: &rayon::ThreadPool,
    n_clips: usize,
    jobs: &[GroupJob],
    ctx: &Ctx,
    lut: &Lut<T>,
    what: impl FnOnce() -> String,
) -> Result<(Vec<T>, Vec<(usize, ClipError)>)> {
    // A recycled buffer when one fits (every element of a returned clip is written; failed clips
    // are compacted away), else zero-filled by the allocator (calloc: fresh pages cost nothing
    // until written); a refusal is an error, not an abort. The caller has checked that the size
    // fits in isize.
    let mut buf: Vec<T> = match pool::take(n_clips * ctx.per_clip) {
        Some(v) => v,
        None => {
            let mut v = try_zeroed(n_clips * ctx.per_clip, what)?;
            advise_huge_pages(&mut v);
            v
        }
    };
    let mut slots: Vec<Option<&mut [T]>> = if ctx.per_clip == 0 {
        (0..n_clips).map(|_| None).collect()
    } else {
        buf.chunks_mut(ctx.per_clip).map(Some).collect()
    };
    let tasks: Vec<(&GroupJob, Vec<&mut [T]>)> = jobs
        .iter()
        .map(|j| {
            (
                j,
                j.members
                    .iter()
                    .map(|m| slots[m.pos].take().unwrap_or_default())
                    .collect(),
            )
        })
        .collect();
    let failures: Vec<(usize, ClipError)> = pool.install(|| {
        tasks
            .into_par_iter()
            .with_max_len(1)
            .flat_map_iter(|(job, mut outs)| {
                let r = catch_unwind(AssertUnwindSafe(|| read_group(job, &mut outs, ctx, lut)))
                    .unwrap_or_else(|p| {
                        Err(ClipError::decode(
                            &job.path,
                            format!("internal error (Rust panic: {})", panic_message(p)),
                        ))
                    });
                match r {
                    Ok(()) => Vec::new(),
                    Err(e) => job.members.iter().map(|m| (m.pos, clone_err(&e))).collect(),
                }
            })
            .collect()
    });
    Ok((buf, failures))
}

/// Decode one video's frames once and write every clip of the group.
fn read_group<T: Sample>(
    job: &GroupJob,
    outs: &mut [&mut [T]],
    ctx: &Ctx,
    lut: &Lut<T>,
) -> Result<()> {
    if ctx.cancel.load(Ordering::Relaxed) {
        return Err(ClipError::Interrupted);
    }
    if ctx.per_clip == 0 {
        return Ok(());
    }
    // (frame, member, t) sorted by frame: where each decoded frame goes.
    let mut targets: Vec<(usize, usize, usize)> = Vec::new();
    for (mi, m) in job.members.iter().enumerate() {
        for (t, &f) in m.frames.iter().enumerate() {
            targets.push((f, mi, t));
        }
    }
    targets.sort_unstable();
    let mut wanted: Vec<usize> = targets.iter().map(|x| x.0).collect();
    wanted.dedup();

    let (sh, sw) = job.target;
    let mut img: Option<RgbImage> = None; // only on the routes that go through RGB24
    let mut scaler = Scaler::acquire(sw as u32, sh as u32);
    let norm = Norm {
        mean: ctx.spec.mean,
        std: ctx.spec.std,
    };
    let path = job.path.as_path();
    let mut on_frame = |i: usize, frame: &ffmpeg_next::frame::Video| -> Result<()> {
        let start = targets.partition_point(|x| x.0 < i);
        let here = || targets[start..].iter().take_while(|x| x.0 == i);
        // Only the crop windows that take this frame need converting (57% of a 128x171 frame
        // for one 112 crop).
        let region = here()
            .map(|&(_, mi, _)| Region::of(&job.members[mi].geom))
            .reduce(Region::union)
            .unwrap_or(Region::full(sw, sh));
        let decode_err = |e: String| ClipError::decode(path, e);
        if scaler.run_fused(frame, region).map_err(decode_err)? {
            for &(_, mi, t) in here() {
                let geom = &job.members[mi].geom;
                scaler.write_fused(geom, t, ctx.t_len, ctx.spec.layout, &norm, outs[mi]);
            }
            return Ok(());
        }
        let img = match &mut img {
            Some(img) => img,
            None => img.insert(RgbImage::try_new(sw, sh)?),
        };
        scaler.run_region(frame, img, region).map_err(decode_err)?;
        for &(_, mi, t) in here() {
            transform::write_frame(
                img,
                &job.members[mi].geom,
                t,
                ctx.t_len,
                ctx.spec.layout,
                lut,
                outs[mi],
            );
        }
        Ok(())
    };

    // First the fast way: the cached index (read from packets, usually), the file opened from its
    // header, seeking. On any disagreement between the index and what decodes, retry more
    // carefully, one step at a time: a full open, then the exact index (every frame decoded once),
    // then no seeking at all (decode from the start and count, which is the definition).
    let result = decode_with_retries(path, &job.index, &wanted, ctx, &mut on_frame);
    scaler.release();
    result
}

fn decode_with_retries(
    path: &Path,
    index: &Arc<VideoIndex>,
    wanted: &[usize],
    ctx: &Ctx,
    on_frame: &mut dyn FnMut(usize, &ffmpeg_next::frame::Video) -> Result<()>,
) -> Result<()> {
    let mut index = index.clone();
    let mut route = decode::Route {
        header_only: true,
        seek: true,
    };
    let mut why = String::new();
    loop {
        if let Some(&last) = wanted.last() {
            if last >= index.num_frames {
                return Err(ClipError::decode(
                    path,
                    format!(
                        "frame {last} does not decode: the video has {} decodable frames ({why})",
                        index.num_frames
                    ),
                ));
            }
        }
        match decode::decode_frames(
            path,
            &index,
            wanted,
            ctx.decoder_threads,
            route,
            ctx.cancel,
            on_frame,
        )? {
            Pass::Done => return Ok(()),
            Pass::Mismatch(msg) => {
                decode::MISMATCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                why = msg;
                if route.header_only {
                    route.header_only = false;
                } else if !index.exact {
                    index = cache::exact_index(path, ctx.decoder_threads, ctx.cancel)?;
                } else if route.seek {
                    route.seek = false;
                } else {
                    return Err(ClipError::decode(
                        path,
                        format!("frames do not decode consistently ({why})"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::video::tests::make_video;

    #[test]
    fn rng_depends_on_seed_and_position_only() {
        let a: Vec<u64> = (0..4).map(|p| Rng::for_clip(1, p).next()).collect();
        let b: Vec<u64> = (0..4).map(|p| Rng::for_clip(1, p).next()).collect();
        assert_eq!(a, b);
        assert_ne!(Rng::for_clip(1, 0).next(), Rng::for_clip(2, 0).next());
        assert_ne!(a[0], a[1]);
    }

    #[test]
    fn allocation_failures_are_errors_not_aborts() {
        // Beyond isize: Layout::array refuses; near the address space: the allocator refuses.
        for n in [usize::MAX / 2, 1 << 60] {
            // black_box: else LLVM may elide an allocation that is never used, and call it a success.
            let r = std::hint::black_box(try_zeroed::<f32>(n, || "test buffer".into()));
            assert!(
                matches!(&r, Err(ClipError::OutOfMemory { bytes, .. }) if *bytes == n as u128 * 4),
                "{n}"
            );
        }
        assert_eq!(try_zeroed::<u8>(5, String::new).unwrap(), vec![0u8; 5]);
        assert!(matches!(
            std::hint::black_box(RgbImage::try_new(1 << 40, 1 << 40)),
            Err(ClipError::OutOfMemory { .. })
        ));
    }

    #[test]
    fn sizes_and_threads_beyond_the_limits_name_the_argument() {
        let clips = vec![ClipRequest {
            path: PathBuf::from("/nope.avi"),
            frames: vec![0],
        }];
        let cancel = AtomicBool::new(false);
        let arg_of =
            |spec: &Spec, threads: usize| match read_clips(&clips, spec, threads, true, &cancel) {
                Err(ClipError::InvalidArgument { arg, .. }) => arg,
                other => panic!("{:?}", other.map(|b| b.shape)),
            };
        for resize in [
            Resize::Fixed(MAX_SIDE + 1, 8),
            Resize::Fixed(16384, 16384), // each side allowed, the area beyond FFmpeg's limit
            Resize::ShortSide(MAX_SIDE + 1),
        ] {
            let spec = Spec {
                resize,
                ..Spec::default()
            };
            assert_eq!(arg_of(&spec, 1), "size", "{resize:?}");
        }
        let spec = Spec {
            crop: Some((8, MAX_SIDE + 1)),
            ..Spec::default()
        };
        assert_eq!(arg_of(&spec, 1), "crop");
        assert_eq!(arg_of(&Spec::default(), MAX_THREADS + 1), "threads");
        assert!(check_target(16000, 16000, "size").is_ok());
    }

    #[test]
    fn a_batch_beyond_memory_is_an_error_naming_its_shape() {
        let path = make_video(
            "clips_oom.avi",
            &["-frames:v", "3", "-c:v", "mpeg4", "-s", "64x48"],
        );
        let clips = vec![
            ClipRequest {
                path,
                frames: vec![0; 100_000],
            };
            200
        ];
        let spec = Spec {
            resize: Resize::Fixed(16000, 16000),
            crop: None,
            dtype: DType::F32,
            ..Spec::default()
        };
        let cancel = AtomicBool::new(false);
        match read_clips(&clips, &spec, 2, false, &cancel) {
            Err(e @ ClipError::OutOfMemory { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("[200, 3, 100000, 16000, 16000]"), "{msg}");
                assert!(
                    msg.contains(&(200u128 * 3 * 100_000 * 16000 * 16000 * 4).to_string()),
                    "{msg}"
                );
            }
            other => panic!("{:?}", other.map(|b| b.shape)),
        }
    }

    #[test]
    fn pools_are_few_and_bounded() {
        let a = pool(1).unwrap();
        for k in 1..=6 {
            pool(k).unwrap();
        }
        assert_eq!(pool_size(10_000), 4 * default_threads());
        assert_eq!(pool_size(1), 1);
        // 1 fell out of the cache: a new pool, not the first one.
        assert!(!Arc::ptr_eq(&a, &pool(1).unwrap()) || 4 * default_threads() <= 1);
    }

    #[test]
    fn compact_moves_survivors_down() {
        let v = vec![0, 0, 1, 1, 2, 2, 3, 3];
        assert_eq!(compact(v, &[1, 3], 2), vec![1, 1, 3, 3]);
    }

    #[test]
    fn reads_a_batch_and_reports_bad_clips() {
        let path = make_video(
            "clips_mpeg4.avi",
            &["-frames:v", "50", "-c:v", "mpeg4", "-g", "12", "-q:v", "4"],
        );
        let cancel = AtomicBool::new(false);
        let clips = vec![
            ClipRequest {
                path: path.clone(),
                frames: vec![30, 31, 32, 33],
            },
            ClipRequest {
                path: PathBuf::from("/nope.avi"),
                frames: vec![0, 1, 2, 3],
            },
            ClipRequest {
                path: path.clone(),
                frames: vec![3, 2, 1, 1],
            },
            ClipRequest {
                path: path.clone(),
                frames: vec![0, 1, 2, 99],
            },
        ];
        let spec = Spec {
            dtype: DType::F32,
            ..Spec::default()
        };
        let b = read_clips(&clips, &spec, 2, true, &cancel).unwrap();
        assert_eq!(b.shape, vec![2, 3, 4, 112, 112]);
        assert_eq!(b.ok, vec![0, 2]);
        assert_eq!(b.failed.iter().map(|f| f.0).collect::<Vec<_>>(), vec![1, 3]);
        assert!(matches!(b.failed[0].1, ClipError::NotFound { .. }));
        assert!(matches!(b.failed[1].1, ClipError::InvalidArgument { .. }));
        let Data::F32(v) = b.data else { panic!() };
        assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
        // Frames 1 and 1 of the second clip are the same frame.
        let plane = 112 * 112;
        let frame = |n: usize, c: usize, t: usize| {
            &v[((n * 3 + c) * 4 + t) * plane..((n * 3 + c) * 4 + t + 1) * plane]
        };
        assert_eq!(frame(1, 0, 2), frame(1, 0, 3));
        assert_ne!(frame(1, 0, 0), frame(1, 0, 1));
        // Without skip the first failure is the error.
        assert!(matches!(
            read_clips(&clips, &spec, 2, false, &cancel),
            Err(ClipError::NotFound { .. })
        ));
    }
}
