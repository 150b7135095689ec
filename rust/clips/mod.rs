//! `read_clips`: many clips, from many videos, into one preallocated batch tensor.
//!
//! Clips are grouped by video so that all clips of one video are decoded in one forward pass (the
//! planner in `decode.rs` sees the union of their frames). Groups run in parallel on a rayon
//! thread pool; each writes straight into its clips' disjoint parts of the output buffer, which the
//! Python side then hands to numpy without a copy.
mod placement;
mod read;
mod request;
mod validate;

pub use read::read_clips;
pub use request::{Batch, ClipRequest, DType, Data, Flip, Spec};

#[cfg(test)]
mod tests;
