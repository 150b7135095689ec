//! The fused transform from a decoded frame to its place in the output tensor:
//! swscale converts the decoder's pixel format straight to RGB24 at the target size (one pass, the
//! same scaler and flags as `ffmpeg -vf scale=w:h`), then one loop crops, flips, converts to the
//! output type (through a 256-entry table per channel, so float32 normalisation costs a lookup) and
//! writes the pixels in the requested layout into the final array.
//!
//! `geometry` places crop windows, `scale` drives swscale into the RGB image of `image`,
//! `colour` holds the value arithmetic (YUV→RGB coefficients, the per-channel tables, float
//! normalisation) and `writer` puts converted pixels where a layout wants them. This file is the
//! face the reader sees: the output's layout and resize target, and their limits.
mod colour;
mod geometry;
mod image;
mod scale;
mod writer;

use crate::error::{ClipError, Result};

pub use colour::{float_lut, identity_lut, Lut, Norm, Sample};
pub use geometry::{Geometry, Region};
pub use image::RgbImage;
pub use scale::Scaler;
pub use writer::write_frame;

/// Memory order of one clip in the output (the batch dimension N always comes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// (N, C, T, H, W): what 3D convolutions take; viewed as (N, C·T, H, W) it is the folded input.
    Ncthw,
    /// (N, T, C, H, W).
    Ntchw,
    /// (N, T, H, W, C): frames as images.
    Nthwc,
}

impl Layout {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "NCTHW" => Ok(Layout::Ncthw),
            "NTCHW" => Ok(Layout::Ntchw),
            "NTHWC" => Ok(Layout::Nthwc),
            _ => Err(ClipError::invalid(
                "layout",
                format!("{s:?} is not one of 'NCTHW', 'NTCHW', 'NTHWC'"),
            )),
        }
    }

    /// Shape of one clip of `t` frames of `h`×`w`.
    pub fn clip_shape(self, t: usize, h: usize, w: usize) -> [usize; 4] {
        match self {
            Layout::Ncthw => [3, t, h, w],
            Layout::Ntchw => [t, 3, h, w],
            Layout::Nthwc => [t, h, w, 3],
        }
    }
}

/// Order of the three colour channels along the output's channel axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channels {
    #[default]
    Rgb,
    /// What OpenCV-trained models (and Caffe's C3D weights) take.
    Bgr,
}

impl Channels {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "RGB" => Ok(Channels::Rgb),
            "BGR" => Ok(Channels::Bgr),
            _ => Err(ClipError::invalid(
                "channels",
                format!("{s:?} is not 'RGB' or 'BGR'"),
            )),
        }
    }

    /// Three things in R, G, B order put in output order; as every order here is its own inverse,
    /// also output order back to R, G, B.
    pub fn arrange<X>(self, [r, g, b]: [X; 3]) -> [X; 3] {
        match self {
            Channels::Rgb => [r, g, b],
            Channels::Bgr => [b, g, r],
        }
    }
}

/// How frames are resized before cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Keep the decoded size.
    Keep,
    /// Exactly (height, width).
    Fixed(u32, u32),
    /// Scale so the shorter side has this length, keeping the aspect ratio (rounded).
    ShortSide(u32),
}

impl Resize {
    /// The (height, width) a `width`×`height` video is scaled to.
    pub fn target(self, width: u32, height: u32) -> (u32, u32) {
        match self {
            Resize::Keep => (height, width),
            Resize::Fixed(h, w) => (h, w),
            Resize::ShortSide(s) => {
                let round = |x: f64| (x.round() as u32).max(1);
                if height <= width {
                    (s, round(width as f64 * s as f64 / height as f64))
                } else {
                    (round(height as f64 * s as f64 / width as f64), s)
                }
            }
        }
    }
}

/// The largest frame side `size` and `crop` accept: FFmpeg's common codec limit (H.264 level 6.2 and
/// libx264 stop at 16384 too). A larger request is a mistake, and would otherwise reach the allocator.
pub const MAX_SIDE: u32 = 16384;

/// Check a resize target (`arg` names the argument it came from): each side at most `MAX_SIDE`, and
/// within FFmpeg's image limit `av_image_check_size` — `8 * (w + 128) * (h + 128) < i32::MAX` — which
/// swscale enforces on its output (beyond it a resize fails with EINVAL, blamed on the file).
pub fn check_target(h: u32, w: u32, arg: &str) -> Result<()> {
    if h > MAX_SIDE || w > MAX_SIDE {
        return Err(ClipError::invalid(
            arg,
            format!("({h}, {w}): a frame side may be at most {MAX_SIDE}"),
        ));
    }
    if 8 * (u64::from(w) + 128) * (u64::from(h) + 128) >= i32::MAX as u64 {
        return Err(ClipError::invalid(
            arg,
            format!(
                "({h}, {w}): beyond the largest frame FFmpeg can scale to (8 * (w + 128) * (h + 128) must be below 2**31 - 1)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_side_keeps_aspect() {
        assert_eq!(Resize::ShortSide(128).target(320, 240), (128, 171));
        assert_eq!(Resize::ShortSide(128).target(240, 320), (171, 128));
        assert_eq!(Resize::Fixed(10, 20).target(320, 240), (10, 20));
        assert_eq!(Resize::Keep.target(320, 240), (240, 320));
    }
}
