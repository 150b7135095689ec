//! c3d-distill's clip pipeline: plain Rust over FFmpeg (ffmpeg-next), usable and tested without
//! Python. The PyO3 bindings live in `python.rs` alone, behind the `python` feature.
pub mod error;
pub mod video;

#[cfg(feature = "python")]
mod python;

pub use error::{ClipError, Result};
pub use video::{probe, VideoIndex};
