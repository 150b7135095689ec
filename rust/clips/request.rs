//! What a caller asks `read_clips` for, and what it gets back.
use std::path::PathBuf;

use crate::error::ClipError;
use crate::transform::{Channels, Layout, Resize};

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
    /// Order of the channel axis; `mean` and `std` are in this order.
    pub channels: Channels,
    pub dtype: DType,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The video stream read from every file, as `video::open` selects it (`None`: FFmpeg's best).
    pub stream: Option<usize>,
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
            channels: Channels::Rgb,
            dtype: DType::U8,
            mean: [0.0; 3],
            std: [1.0; 3],
            stream: None,
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
