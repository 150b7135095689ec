//! `read_clips`' orchestration: the videos' indexes in parallel, each clip checked and placed, the
//! batch allocated (or recycled) once, then one task per video decodes its frames a single time
//! and writes every clip of the group, with retries down to plain decoding when the fast route and
//! the index disagree.
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use super::placement::geometry;
use super::request::{Batch, ClipRequest, DType, Data, Spec};
use super::validate::{check_frames, validate_spec};
use crate::buffers::{self, Recyclable};
use crate::cache;
use crate::decode::{self, Pass};
use crate::error::{panic_message, try_zeroed, ClipError, Result, Zeroed};
use crate::threads::{decode_thread_pool, MAX_DECODER_THREADS};
use crate::transform::{
    self, check_target, Geometry, Lut, Norm, Region, Resize, RgbImage, Sample, Scaler,
};
use crate::video::VideoIndex;

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
    let workers = decode_thread_pool(threads)?;
    let groups = group_by_video(clips);

    // Phase 1: the index of every video (cached after the first visit), in parallel; a video that
    // must be decoded to be indexed gets its share of the threads, as for decoding below.
    let index_threads = (threads / groups.len().max(1)).clamp(1, MAX_DECODER_THREADS);
    let indexes: Vec<Result<Arc<VideoIndex>>> = workers.install(|| {
        groups
            .par_iter()
            .with_max_len(1)
            .map(|g| {
                if cancel.load(Ordering::Relaxed) {
                    return Err(ClipError::Interrupted);
                }
                catch_unwind(AssertUnwindSafe(|| {
                    cache::index(&g.path, spec.stream, index_threads, cancel)
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
            let (buf, f) = run_groups(&workers, clips.len(), &jobs, &ctx, &lut, batch_what)?;
            (Data::U8(buf), f)
        }
        DType::F32 => {
            let lut = transform::float_lut(spec.mean, spec.std);
            let (buf, f) = run_groups(&workers, clips.len(), &jobs, &ctx, &lut, batch_what)?;
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
fn run_groups<T: Zeroed + Recyclable + Sample + Send + Sync>(
    workers: &rayon::ThreadPool,
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
    let mut buf: Vec<T> = match buffers::take(n_clips * ctx.per_clip) {
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
    let failures: Vec<(usize, ClipError)> = workers.install(|| {
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
                let (layout, channels) = (ctx.spec.layout, ctx.spec.channels);
                scaler.write_fused(geom, t, ctx.t_len, layout, channels, &norm, outs[mi]);
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
                ctx.spec.channels,
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
                    index =
                        cache::exact_index(path, ctx.spec.stream, ctx.decoder_threads, ctx.cancel)?;
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

    #[test]
    fn compact_moves_survivors_down() {
        let v = vec![0, 0, 1, 1, 2, 2, 3, 3];
        assert_eq!(compact(v, &[1, 3], 2), vec![1, 1, 3, 3]);
    }
}
