//! Argument checks: the limits of `threads`, `size` and `crop`, finite `mean` and `std`, and frame
//! indices against a video's index. They run before anything is allocated, so a mistaken request is
//! a `ValueError` naming the argument rather than a failed allocation or an FFmpeg error blamed on
//! the file.
use std::path::Path;

use super::request::{ClipRequest, DType, Spec};
use crate::error::{ClipError, Result};
use crate::threads::MAX_THREADS;
use crate::transform::{check_target, Resize, MAX_SIDE};

/// The request's own mistakes, caught before any file is opened: each names the argument at fault.
pub(super) fn validate_spec(clips: &[ClipRequest], spec: &Spec, threads: usize) -> Result<()> {
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

/// `frames` of the clip at `position` as indices into a video of `num_frames` frames.
pub(super) fn check_frames(
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
