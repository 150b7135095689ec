//! c3d-distill's clip pipeline: plain Rust over FFmpeg (ffmpeg-next), usable and tested without
//! Python. The PyO3 bindings live in `python.rs` alone, behind the `python` feature.
//!
//! `video` opens and indexes a file, `cache` keeps indexes per process, `decode` plans and runs the
//! decoding of the frames a group of clips needs, `transform` turns a decoded frame into its place
//! in the batch, `clips` runs groups of clips in parallel into one buffer, and `buffers` recycles
//! those buffers. `threads` bounds the thread counts and keeps the rayon thread pools (`fork` keeps
//! the locked state of both per process, so a forked child never waits on a lock its parent held).
//! `conv` is the one model-side piece: the SP students' temporal conv + ReLU + max-pool fused in an
//! AVX-512 kernel, used by the Python fast path on the CPU.
pub mod buffers;
pub mod cache;
pub mod clips;
pub mod conv;
pub mod decode;
pub mod error;
mod fork;
pub mod threads;
pub mod transform;
pub mod video;

#[cfg(feature = "python")]
mod python;

pub use clips::{read_clips, Batch, ClipRequest, DType, Data, Flip, Spec};
pub use error::{ClipError, Result};
pub use transform::{Channels, Layout, Resize};
pub use video::{probe, VideoIndex};
