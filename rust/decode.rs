//! The decode planner: given the sorted, distinct frame numbers a group of clips needs from one
//! video, decode each of them exactly once, in increasing order, seeking forward to the keyframe at
//! or before the next needed frame whenever that skips decoding, and never seeking backwards.
//!
//! Frame numbers are those of `ffmpeg -i f -f rawvideo -` (the decoder's output order from the
//! start). Decoding from the start they are counted; after a seek they are found by looking the
//! decoded frame's timestamp up in the video's index. Every step is checked so that a frame is never
//! numbered wrongly:
//! - after a seek, frames before the target keyframe (open-GOP leading pictures, which may refer to
//!   the previous GOP) are dropped, and the first frame kept must be a keyframe at or before the next
//!   needed frame, and the decoder must agree that it is one (a container that flags a P-frame as
//!   a keyframe is caught here); a demuxer that landed late is asked again for an earlier keyframe;
//! - frames kept after a seek must follow each other in the index without a gap;
//! - any disagreement with the index ends the pass with `Pass::Mismatch`, and the caller retries
//!   with the exact index (decoded once) and finally without seeking at all.
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ffmpeg_next as ffmpeg;

use crate::error::{ClipError, Result};
use crate::video::{self, VideoIndex};

/// Process-wide counters, for tests and profiling (`_native.stats()`): frames that came out of
/// decoders, seeks, and passes that disagreed with the index and were retried.
pub static FRAMES_DECODED: AtomicU64 = AtomicU64::new(0);
pub static SEEKS: AtomicU64 = AtomicU64::new(0);
pub static MISMATCHES: AtomicU64 = AtomicU64::new(0);

/// How a pass over the video ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    /// Every wanted frame was handed to the callback.
    Done,
    /// The decoded frames did not match the index (the message says how); nothing handed out so far
    /// can be trusted, the caller must retry.
    Mismatch(String),
}

/// Where numbering comes from.
enum Mode {
    /// Decoding from the start of the file: the next frame out is frame `next`.
    Counting { next: usize },
    /// After a seek to keyframe `key`: frames are numbered by timestamp; `last` is the last one kept.
    Seeked {
        key: usize,
        last: Option<usize>,
        retries: usize,
    },
}

/// Seeks that land after the wanted frame are retried this many times, each from an earlier keyframe,
/// before the pass restarts from the beginning of the file.
const MAX_SEEK_RETRIES: usize = 3;
/// Consecutive packets the decoder may reject before the file is declared undecodable.
const MAX_CONSECUTIVE_ERRORS: usize = 64;

/// The keyframe at or before frame `i` (keyframes are sorted and start with 0).
pub fn key_at_or_before(keyframes: &[usize], i: usize) -> usize {
    match keyframes.binary_search(&i) {
        Ok(k) => keyframes[k],
        Err(0) => 0,
        Err(k) => keyframes[k - 1],
    }
}

struct Decoding<'a> {
    path: &'a Path,
    index: &'a VideoIndex,
    opened: video::Opened,
    dec: ffmpeg::decoder::Video,
    mode: Mode,
    allow_seek: bool,
    threads: usize,
    /// Frames whose packets were sent with non-reference frames discarded (see `discard_for`): such
    /// a frame may never come out, so numbering may jump over it. `None`: nothing is discarded.
    skippable: Option<Vec<bool>>,
    /// The decoder's current `skip_frame` is AVDISCARD_NONREF.
    discarding: bool,
}

impl<'a> Decoding<'a> {
    fn start(
        path: &'a Path,
        index: &'a VideoIndex,
        threads: usize,
        allow_seek: bool,
        header_only: bool,
    ) -> Result<Self> {
        let opened = if header_only {
            video::open_indexed(path, index)?
        } else {
            video::open(path, Some(index.video_stream))?
        };
        let dec = video::decoder(path, &opened, threads)?;
        Ok(Decoding {
            path,
            index,
            opened,
            dec,
            mode: Mode::Counting { next: 0 },
            skippable: None,
            discarding: false,
            allow_seek,
            threads,
        })
    }

    /// Position after the last frame numbered (the next frame decoding forward would give).
    fn position(&self) -> usize {
        match self.mode {
            Mode::Counting { next } => next,
            Mode::Seeked { key, last, .. } => last.map_or(key, |l| l + 1),
        }
    }

    /// Seek the demuxer to keyframe `key` (a frame number) and reset the decoder. Returns false when
    /// the demuxer refused, in which case the caller keeps decoding forward (always correct).
    fn seek_to(&mut self, key: usize, retries: usize) -> bool {
        let ts = self.index.frame_pts[key];
        // SAFETY: the context belongs to the open input; stream index and timestamps are in range for
        // avformat_seek_file (max_ts = ts asks for a position at or before the keyframe).
        let ret = unsafe {
            ffmpeg::ffi::avformat_seek_file(
                self.opened.input.as_mut_ptr(),
                self.opened.stream_index as i32,
                i64::MIN,
                ts,
                ts,
                0,
            )
        };
        if ret < 0 {
            self.allow_seek = false;
            return false;
        }
        self.dec.flush();
        SEEKS.fetch_add(1, Ordering::Relaxed);
        self.mode = Mode::Seeked {
            key,
            last: None,
            retries,
        };
        true
    }

    /// Start over from the first byte with counting (reopening is the only seek every file supports).
    fn restart(&mut self) -> Result<()> {
        self.opened = video::open(self.path, Some(self.index.video_stream))?;
        self.dec = video::decoder(self.path, &self.opened, self.threads)?;
        self.mode = Mode::Counting { next: 0 };
        self.allow_seek = false;
        Ok(())
    }
}

/// What to do with a frame that came out of the decoder.
enum Step {
    /// Not needed (or not trusted): drop it.
    Skip,
    /// Frame number `i`.
    Frame(usize),
    /// The seek landed after the wanted frame: seek again from an earlier keyframe.
    Reseek,
    Mismatch(String),
}

/// How a pass opens and walks the file; each retry after a `Pass::Mismatch` is more conservative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Open from the container header alone (`video::open_indexed`).
    pub header_only: bool,
    /// Seek forward to keyframes (else decode from the start and count).
    pub seek: bool,
}

/// Decode the frames in `wanted` (sorted, distinct, each < `index.num_frames`) and hand each to
/// `on_frame(i, frame)` in increasing order. `threads` is the decoder's own thread count.
pub fn decode_frames(
    path: &Path,
    index: &VideoIndex,
    wanted: &[usize],
    threads: usize,
    route: Route,
    cancel: &AtomicBool,
    on_frame: &mut dyn FnMut(usize, &ffmpeg::frame::Video) -> Result<()>,
) -> Result<Pass> {
    if wanted.is_empty() {
        return Ok(Pass::Done);
    }
    debug_assert!(wanted.windows(2).all(|w| w[0] < w[1]));
    let mut s = Decoding::start(
        path,
        index,
        threads,
        route.seek && index.pts_reliable,
        route.header_only,
    )?;
    // Non-reference frames that are not wanted need not be decoded at all (nothing refers to them),
    // which for long GOPs with B-frames saves a large share of the decoding. Only with one decoder
    // thread (the option then applies packet by packet), a timestamp index to number the frames
    // that do come out, on the fast route (the last retry decodes everything and counts), and for
    // codecs whose "non-reference" means that no frame at all refers to it (`discards_safely`).
    if threads == 1 && route.seek && index.pts_reliable && discards_safely(index.codec_id) {
        s.skippable = Some(vec![false; index.num_frames]);
    }
    let mut next = 0usize; // position in `wanted`
    let mut frame = ffmpeg::frame::Video::empty();
    let mut packet = ffmpeg::Packet::empty();
    let mut errors = 0usize;
    let mut last_error = String::new();
    let mut at_eof = false;

    // Seek forward when the keyframe before the next wanted frame lies ahead of where decoding is.
    let plan_seek = |s: &mut Decoding, next_frame: usize, retries: usize| {
        if !s.allow_seek {
            return;
        }
        let key = key_at_or_before(&s.index.keyframes, next_frame);
        if key > 0 && key > s.position() {
            s.seek_to(key, retries);
        }
    };
    plan_seek(&mut s, wanted[0], 0);

    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(ClipError::Interrupted);
        }
        // Feed one packet (or the end of stream) to the decoder.
        if !at_eof {
            match video::read_packet(&mut packet, &mut s.opened.input) {
                Ok(()) => {
                    if packet.stream() != s.opened.stream_index {
                        continue;
                    }
                    discard_for(&mut s, &packet, wanted);
                    match s.dec.send_packet(&packet) {
                        Ok(()) => errors = 0,
                        Err(e) => {
                            errors += 1;
                            last_error = format!("decode error: {e}");
                        }
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    at_eof = true;
                    let _ = s.dec.send_eof();
                }
                Err(e) => {
                    errors += 1;
                    last_error = format!("read error: {e}");
                    if !matches!(e, ffmpeg::Error::InvalidData) {
                        at_eof = true;
                        let _ = s.dec.send_eof();
                    }
                }
            }
            if errors >= MAX_CONSECUTIVE_ERRORS {
                return Err(ClipError::decode(
                    path,
                    format!("too many consecutive errors ({last_error})"),
                ));
            }
        }

        // Take every frame the decoder has ready.
        let mut got_any = false;
        while s.dec.receive_frame(&mut frame).is_ok() {
            got_any = true;
            FRAMES_DECODED.fetch_add(1, Ordering::Relaxed);
            let step = number(&mut s, &frame, wanted[next]);
            match step {
                Step::Skip => {}
                Step::Mismatch(msg) => return Ok(Pass::Mismatch(msg)),
                Step::Reseek => {
                    let Mode::Seeked { key, retries, .. } = s.mode else {
                        unreachable!()
                    };
                    if retries >= MAX_SEEK_RETRIES || key == 0 {
                        s.restart()?;
                    } else {
                        let earlier = key_at_or_before(&index.keyframes, key - 1);
                        if earlier == 0 || !s.seek_to(earlier, retries + 1) {
                            s.restart()?;
                        }
                    }
                    at_eof = false;
                    break;
                }
                Step::Frame(i) => {
                    if i == wanted[next] {
                        on_frame(i, &frame)?;
                        next += 1;
                        if next == wanted.len() {
                            return Ok(Pass::Done);
                        }
                        plan_seek(&mut s, wanted[next], 0);
                        if matches!(s.mode, Mode::Seeked { last: None, .. }) {
                            at_eof = false;
                            break; // the decoder was flushed: its remaining frames are gone
                        }
                    } else if i > wanted[next] {
                        return Ok(Pass::Mismatch(format!(
                            "frame {} was never decoded (jumped to {i})",
                            wanted[next]
                        )));
                    }
                }
            }
        }
        if at_eof && !got_any {
            return Ok(Pass::Mismatch(format!(
                "the stream ended before frame {} (index: {} frames{})",
                wanted[next],
                index.num_frames,
                if last_error.is_empty() {
                    String::new()
                } else {
                    format!("; {last_error}")
                }
            )));
        }
    }
}

/// Codecs for which FFmpeg's AVDISCARD_NONREF drops only frames that no other frame refers to, so
/// that every frame still decoded is identical to a full decode:
/// - H.264: it drops NAL units with `nal_ref_idc == 0`, which the standard forbids any picture to
///   use for prediction (FFmpeg decodes no SVC/MVC layers that could);
/// - MPEG-1/2 and MPEG-4 part 2: it drops B-pictures / B-VOPs, which are never references.
///
/// HEVC is left out on purpose: FFmpeg drops every TRAIL_N, TSA_N, STSA_N, RADL_N and RASL_N
/// picture, but those are only *sub-layer* non-reference pictures: with several temporal layers a
/// picture of a higher layer may refer to them, and skipping one gives wrong pixels under the right
/// timestamp, which no later check can notice. (tests/clips/test_exactness.py shows it on a stream whose
/// referenced pictures are labelled TRAIL_N.) Other codecs (VP8/VP9/AV1, ...) are not listed
/// because their decoders' handling of the option was not verified; they simply decode everything.
fn discards_safely(id: ffmpeg::codec::Id) -> bool {
    use ffmpeg::codec::Id;
    matches!(id, Id::H264 | Id::MPEG1VIDEO | Id::MPEG2VIDEO | Id::MPEG4)
}

/// Before sending `packet`: discard it if it is a non-reference frame (the decoder decides that)
/// of a frame that is not wanted; remember that the frame may then be missing from the output.
fn discard_for(s: &mut Decoding, packet: &ffmpeg::Packet, wanted: &[usize]) {
    let Some(skippable) = s.skippable.as_mut() else {
        return;
    };
    let frame = packet
        .pts()
        .and_then(|pts| s.index.frame_pts.binary_search(&pts).ok());
    let discard = match frame {
        Some(i) if wanted.binary_search(&i).is_err() && !packet.is_key() => {
            skippable[i] = true;
            true
        }
        _ => false,
    };
    if discard != s.discarding {
        // SAFETY: the decoder context is open; skip_frame is read when the next packet is decoded
        // (one thread, so no frame is in flight elsewhere).
        unsafe {
            (*s.dec.as_mut_ptr()).skip_frame = if discard {
                ffmpeg::ffi::AVDiscard::AVDISCARD_NONREF
            } else {
                ffmpeg::ffi::AVDiscard::AVDISCARD_DEFAULT
            };
        }
        s.discarding = discard;
    }
}

/// Whether every frame in `from..to` may have been discarded (true for an empty range).
fn all_skippable(skippable: &Option<Vec<bool>>, from: usize, to: usize) -> bool {
    to <= from
        || skippable
            .as_ref()
            .is_some_and(|v| v[from..to].iter().all(|x| *x))
}

/// Number a decoded frame according to the decoding's mode, checking it against the index.
fn number(s: &mut Decoding, frame: &ffmpeg::frame::Video, wanted_next: usize) -> Step {
    let index = s.index;
    let skippable = &s.skippable;
    match &mut s.mode {
        Mode::Counting { next } if skippable.is_some() => {
            // Frames may have been discarded: number by timestamp, and allow only those gaps.
            let i = match frame
                .timestamp()
                .map(|ts| index.frame_pts.binary_search(&ts))
            {
                Some(Ok(i)) => i,
                _ => {
                    return Step::Mismatch(format!(
                        "frame after {} has timestamp {:?}, not in the index",
                        *next,
                        frame.timestamp()
                    ))
                }
            };
            if i < *next || !all_skippable(skippable, *next, i) {
                return Step::Mismatch(format!(
                    "decoding from the start, frame {} was followed by frame {i}",
                    *next
                ));
            }
            *next = i + 1;
            Step::Frame(i)
        }
        Mode::Counting { next } => {
            let i = *next;
            *next += 1;
            if i >= index.num_frames {
                return Step::Mismatch(format!(
                    "decoded more frames than the index's {}",
                    index.num_frames
                ));
            }
            if index.pts_reliable && frame.timestamp() != Some(index.frame_pts[i]) {
                return Step::Mismatch(format!(
                    "frame {i} has timestamp {:?}, the index says {}",
                    frame.timestamp(),
                    index.frame_pts[i]
                ));
            }
            Step::Frame(i)
        }
        Mode::Seeked { key, last, .. } => {
            let Some(ts) = frame.timestamp() else {
                return Step::Mismatch("a frame without timestamp after a seek".into());
            };
            let i = match index.frame_pts.binary_search(&ts) {
                Ok(i) => i,
                Err(_) => {
                    return Step::Mismatch(format!(
                        "timestamp {ts} after a seek is not in the index"
                    ))
                }
            };
            match *last {
                None => {
                    if i < *key {
                        return Step::Skip; // leading picture of an open GOP: may refer to the previous GOP
                    }
                    if i > wanted_next || index.keyframes.binary_search(&i).is_err() {
                        return Step::Reseek; // landed late, or not on a keyframe
                    }
                    if !frame.is_key() {
                        // The index (from the container's flags, for a packet index) calls this
                        // frame a keyframe, but the decoder does not: it was decoded without its
                        // references and its pixels are garbage. Only the exact index, whose
                        // keyframes are the decoder's own, can be trusted for this file.
                        return Step::Mismatch(format!(
                            "frame {i}, a keyframe in the index, decoded as a {:?} frame that is \
                             not a keyframe",
                            frame.kind()
                        ));
                    }
                }
                Some(l) => {
                    if i <= l || !all_skippable(skippable, l + 1, i) {
                        return Step::Mismatch(format!(
                            "after a seek frame {} was followed by frame {i}",
                            l
                        ));
                    }
                }
            }
            *last = Some(i);
            Step::Frame(i)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_lookup() {
        let k = [0, 12, 24];
        assert_eq!(key_at_or_before(&k, 0), 0);
        assert_eq!(key_at_or_before(&k, 11), 0);
        assert_eq!(key_at_or_before(&k, 12), 12);
        assert_eq!(key_at_or_before(&k, 23), 12);
        assert_eq!(key_at_or_before(&k, 1000), 24);
    }
}
