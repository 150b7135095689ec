//! Indexing a video: the true frame count, each frame's presentation timestamp and the keyframes,
//! read once by decoding the whole stream (what `ffprobe -count_frames` does), or from the packets
//! where they can be trusted (`packets`). `open` opens a file and selects its video stream.
//!
//! Frame `i` is the `i`-th frame the decoder outputs when decoding from the start, which is the
//! numbering of `ffmpeg -i f -f rawvideo -pix_fmt rgb24 -` (passthrough: no frame is dropped or
//! duplicated). The decode planner maps frames it decodes after a seek back to these indices
//! through their timestamps.
mod open;
mod packets;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use ffmpeg::{codec, format, Rational};
use ffmpeg_next as ffmpeg;

use crate::error::{ClipError, Result};

pub use open::{decoder, init, open, open_indexed, read_packet, Opened};
pub use packets::index_packets;

/// What `probe` returns, plus what the decode planner needs (`frame_pts`).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoIndex {
    pub path: PathBuf,
    pub width: u32,
    pub height: u32,
    /// Average frame rate from the container (falls back to the stream's base rate, then to the
    /// frame count over the duration).
    pub fps: f64,
    /// Frames that really decode.
    pub num_frames: usize,
    /// Seconds.
    pub duration: f64,
    /// FFmpeg's short codec name, e.g. "h264", "mpeg4".
    pub codec: String,
    /// Indices (presentation order) of the frames that are keyframes.
    pub keyframes: Vec<usize>,
    /// Best-effort presentation timestamp of every frame, in the stream's time base, in frame order.
    /// A frame the decoder gives no timestamp gets the previous one's plus one frame period.
    pub frame_pts: Vec<i64>,
    /// The stream's time base as (num, den).
    pub time_base: (i32, i32),
    /// The stream's start time in its time base (0 where the container does not say): frame times
    /// in seconds count from it, as `ffmpeg -ss` does.
    pub start_pts: i64,
    /// `frame_pts` are the timestamps the decoder itself gives each frame, all present and strictly
    /// increasing, so a frame decoded after a seek can be numbered by looking its timestamp up. When
    /// false the reader never seeks: it decodes from the start and counts.
    pub pts_reliable: bool,
    /// The video stream's index in the container, its position among the container's video
    /// streams, and its codec (for `open_indexed`).
    pub stream_index: usize,
    pub video_stream: usize,
    pub codec_id: codec::Id,
    /// Built by decoding every frame (the ground truth). When false it was read from the packets
    /// alone (`index_packets`); the reader checks each frame it decodes against it and rebuilds the
    /// index by decoding when they disagree.
    pub exact: bool,
}

/// Upper bound on consecutive demux/decode errors of damaged data, after which the video is taken
/// to end (see `probe`). A corrupt file can make every read fail; this keeps it from spinning.
const MAX_CONSECUTIVE_ERRORS: usize = 64;

impl VideoIndex {
    /// Each frame's presentation time in seconds from the stream's start, in frame order: the
    /// exact rational `(pts - start) * num / den` rounded once, so that a time that is a decimal
    /// number of seconds (1.2 s in a 1/12800 time base) is the same double as the literal `1.2`.
    pub fn times(&self) -> Vec<f64> {
        let (num, den) = self.time_base;
        if den == 0 {
            return vec![0.0; self.frame_pts.len()];
        }
        // In i128: a damaged file's timestamps may lie far enough apart to overflow i64.
        self.frame_pts
            .iter()
            .map(|&p| {
                let ticks = (i128::from(p) - i128::from(self.start_pts)) * i128::from(num);
                ticks as f64 / f64::from(den)
            })
            .collect()
    }
}

/// How `av_read_frame` / `avcodec_send_packet` reads a packet: `read_packet`, or a stand-in that
/// injects errors (tests).
type ReadPacket<'a> = dyn FnMut(
        &mut ffmpeg::Packet,
        &mut format::context::Input,
    ) -> std::result::Result<(), ffmpeg::Error>
    + 'a;

/// Index `path` by decoding every frame once, with `threads` FFmpeg decoder threads (the caller's
/// share of its threads: not 0, which would let FFmpeg start up to 16 per video even in a
/// DataLoader worker reading with one thread, on each of the thread pool's workers at once).
/// `stream` selects the video stream as `open` does. `cancel` set (Ctrl-C) stops it at the next
/// packet with `ClipError::Interrupted`.
///
/// Errors, and where the video ends:
/// - a read error that says nothing about the file's bytes (an I/O error, out of memory, anything
///   but end of file and FFmpeg's "invalid data") is an error naming the file, the cause and how
///   far indexing got: taking the frames read so far for the whole video would leave a short
///   index, cached, that the next attempt contradicts; so is a decoder out of memory;
/// - damaged data (the demuxer's "invalid data", a packet the decoder rejects) is passed over, but
///   after `MAX_CONSECUTIVE_ERRORS` in a row the video is taken to end there. That is how a
///   truncated download ends (the demuxer fails on each packet past the cut): its index holds the
///   frames before, which decode the same way every time (one thread), so it is exact and cached.
///   (The `ffmpeg` command stops at a file's first read error of any kind.)
pub fn probe(
    path: &Path,
    stream: Option<usize>,
    threads: usize,
    cancel: &AtomicBool,
) -> Result<VideoIndex> {
    probe_reading(path, stream, threads, cancel, &mut read_packet)
}

/// The error for a failure that is not the file's data (see `probe`).
fn not_the_data(path: &Path, what: &str, frames: usize, e: ffmpeg::Error) -> ClipError {
    ClipError::decode(
        path,
        format!("{what} error after {frames} frames, while indexing: {e}"),
    )
}

/// `probe` reading its packets through `read`.
fn probe_reading(
    path: &Path,
    stream: Option<usize>,
    threads: usize,
    cancel: &AtomicBool,
    read: &mut ReadPacket,
) -> Result<VideoIndex> {
    let mut opened = open(path, stream)?;
    let (start, period) = start_and_period(&opened);
    let mut dec = decoder(path, &opened, threads.max(1))?;
    let codec = dec
        .codec()
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| format!("{:?}", dec.id()).to_lowercase());

    let mut frame = ffmpeg::frame::Video::empty();
    let mut frame_pts: Vec<i64> = Vec::new();
    let mut key_flags: Vec<bool> = Vec::new();
    let mut width = 0u32;
    let mut height = 0u32;
    let mut errors = 0usize;
    let mut last_error = String::new();
    let mut missing_pts = false;

    let mut drain =
        |dec: &mut ffmpeg::decoder::Video, frame_pts: &mut Vec<i64>, key_flags: &mut Vec<bool>| {
            while dec.receive_frame(&mut frame).is_ok() {
                // A frame without any timestamp (the last B-frame of an MPEG-4 AVI, say) is
                // taken to follow the previous one by a frame period, which keeps the index
                // strictly ordered and the frame's time in seconds close to the truth.
                let ts = match frame.timestamp() {
                    Some(t) => t,
                    None => {
                        missing_pts = true;
                        frame_pts.last().map_or(start, |p| p.saturating_add(period))
                    }
                };
                frame_pts.push(ts);
                key_flags.push(frame.is_key());
                if width == 0 {
                    width = frame.width();
                    height = frame.height();
                }
            }
        };

    let mut packet = ffmpeg::Packet::empty();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(ClipError::Interrupted);
        }
        match read(&mut packet, &mut opened.input) {
            Ok(()) => {
                if packet.stream() != opened.stream_index {
                    continue;
                }
                match dec.send_packet(&packet) {
                    Ok(()) => errors = 0,
                    Err(
                        e @ ffmpeg::Error::Other {
                            errno: libc::ENOMEM,
                        },
                    ) => {
                        return Err(not_the_data(path, "decoder", frame_pts.len(), e));
                    }
                    Err(e) => {
                        errors += 1;
                        last_error = format!("decode error: {e}");
                    }
                }
                drain(&mut dec, &mut frame_pts, &mut key_flags);
            }
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => {
                errors += 1;
                last_error = format!("read error: {}", ffmpeg::Error::InvalidData);
            }
            // Not the data: and FFmpeg's I/O errors are sticky, retrying would spin.
            Err(e) => return Err(not_the_data(path, "read", frame_pts.len(), e)),
        }
        if errors >= MAX_CONSECUTIVE_ERRORS {
            break; // damaged from here on: the video ends here (see above)
        }
    }
    let _ = dec.send_eof();
    drain(&mut dec, &mut frame_pts, &mut key_flags);

    if frame_pts.is_empty() {
        let why = if last_error.is_empty() {
            "no frame could be decoded".to_string()
        } else {
            format!("no frame could be decoded ({last_error})")
        };
        return Err(ClipError::decode(path, why));
    }

    // Presentation order is the decoder's output order; timestamps must increase along it for the
    // planner's binary search. Repair the rare non-monotonic stream by forcing strict increase; such
    // a stream's timestamps cannot number frames after a seek, so the reader will not seek in it.
    let mut pts_reliable = !missing_pts;
    for i in 1..frame_pts.len() {
        if frame_pts[i] <= frame_pts[i - 1] {
            frame_pts[i] = frame_pts[i - 1] + 1;
            pts_reliable = false;
        }
    }
    let index = finish_index(
        path,
        &opened,
        codec,
        width,
        height,
        frame_pts,
        &key_flags,
        pts_reliable,
        true,
    );
    Ok(index)
}

/// The selected stream's start time (0 when unknown) and one frame period (at least 1), both in
/// its time base.
fn start_and_period(opened: &Opened) -> (i64, i64) {
    let Some(stream) = opened.input.stream(opened.stream_index) else {
        return (0, 1);
    };
    let start = match stream.start_time() {
        ffmpeg::ffi::AV_NOPTS_VALUE => 0,
        s => s,
    };
    let tb = opened.time_base;
    let rate = [stream.avg_frame_rate(), stream.rate()]
        .into_iter()
        .find(|r| r.numerator() > 0 && r.denominator() > 0);
    let period = match rate {
        Some(r) if tb.numerator() > 0 && tb.denominator() > 0 => {
            let ticks = f64::from(tb.denominator()) * f64::from(r.denominator())
                / (f64::from(tb.numerator()) * f64::from(r.numerator()));
            (ticks.round() as i64).max(1)
        }
        _ => 1,
    };
    (start, period)
}

/// Container-level facts (fps, duration) around a frame list, shared by both ways of indexing.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish_index(
    path: &Path,
    opened: &Opened,
    codec: String,
    width: u32,
    height: u32,
    frame_pts: Vec<i64>,
    key_flags: &[bool],
    pts_reliable: bool,
    exact: bool,
) -> VideoIndex {
    let stream = opened
        .input
        .stream(opened.stream_index)
        .expect("stream index checked in open()");
    let tb = opened.time_base;
    let num_frames = frame_pts.len();
    let rate = |r: Rational| {
        if r.numerator() > 0 && r.denominator() > 0 {
            Some(f64::from(r))
        } else {
            None
        }
    };
    let stream_duration = if stream.duration() > 0 && tb.denominator() > 0 {
        Some(stream.duration() as f64 * f64::from(tb))
    } else {
        None
    };
    let container_duration = if opened.input.duration() > 0 {
        Some(opened.input.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE))
    } else {
        None
    };
    let duration_hdr = stream_duration.or(container_duration);
    let fps = rate(stream.avg_frame_rate())
        .or_else(|| rate(stream.rate()))
        .or_else(|| {
            duration_hdr
                .filter(|d| *d > 0.0)
                .map(|d| num_frames as f64 / d)
        })
        .unwrap_or(0.0);
    let duration = duration_hdr.unwrap_or_else(|| {
        if fps > 0.0 {
            num_frames as f64 / fps
        } else {
            0.0
        }
    });
    let mut keyframes: Vec<usize> = key_flags
        .iter()
        .enumerate()
        .filter(|(_, k)| **k)
        .map(|(i, _)| i)
        .collect();
    if keyframes.first() != Some(&0) {
        // The first decodable frame is where decoding starts from; treat it as a seek point.
        keyframes.insert(0, 0);
    }

    VideoIndex {
        path: path.to_path_buf(),
        width,
        height,
        fps,
        num_frames,
        duration,
        codec,
        keyframes,
        frame_pts,
        time_base: (tb.numerator(), tb.denominator()),
        start_pts: start_and_period(opened).0,
        pts_reliable,
        stream_index: opened.stream_index,
        video_stream: opened.video_stream,
        codec_id: stream.parameters().id(),
        exact,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::process::Command;

    /// Encode a test pattern with the ffmpeg command into a temp folder (shared by the crate's tests).
    pub(crate) fn make_video(name: &str, args: &[&str]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("c3d_distill_rust_tests_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        if !path.exists() {
            let status = Command::new("ffmpeg")
                .args([
                    "-y",
                    "-v",
                    "error",
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=size=320x240:rate=25",
                ])
                .args(args)
                .arg(&path)
                .status()
                .expect("the ffmpeg command is needed by the tests (make install provides it)");
            assert!(status.success());
        }
        path
    }

    #[test]
    fn probe_counts_frames_and_keyframes() {
        let path = make_video(
            "probe_h264.mp4",
            &["-frames:v", "40", "-c:v", "libx264", "-g", "10", "-bf", "2"],
        );
        let idx = probe(&path, None, 1, &AtomicBool::new(false)).unwrap();
        assert_eq!(idx.num_frames, 40);
        assert_eq!((idx.width, idx.height), (320, 240));
        assert_eq!(idx.keyframes, vec![0, 10, 20, 30]);
        assert_eq!(idx.codec, "h264");
        assert!((idx.fps - 25.0).abs() < 1e-9);
        assert!(idx.frame_pts.windows(2).all(|w| w[0] < w[1]));
        // 25 fps: frame i at i / 25 s, each the double of the decimal literal.
        let times = idx.times();
        assert_eq!(
            (times[0], times[1], times[10], times[39]),
            (0.0, 0.04, 0.4, 1.56)
        );
    }

    #[test]
    fn read_errors_end_indexing_only_when_they_are_the_files_data() {
        let path = make_video(
            "probe_read_errors.mp4",
            &["-frames:v", "30", "-c:v", "libx264", "-g", "10"],
        );
        let no = AtomicBool::new(false);
        // A read that fails after 10 packets with `error`, for good.
        let failing = |error: ffmpeg::Error| {
            let mut n = 0;
            move |p: &mut ffmpeg::Packet, input: &mut format::context::Input| {
                n += 1;
                if n > 10 {
                    Err(error)
                } else {
                    read_packet(p, input)
                }
            }
        };
        // An I/O error or no memory: an error naming the file and the cause, not a 10-frame index.
        for (errno, cause) in [
            (libc::EIO, "Input/output error"),
            (libc::ENOMEM, "Cannot allocate memory"),
        ] {
            let mut read = failing(ffmpeg::Error::Other { errno });
            let err = probe_reading(&path, None, 1, &no, &mut read).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, ClipError::Decode { .. }), "{msg}");
            assert!(msg.contains("probe_read_errors.mp4"), "{msg}");
            assert!(
                msg.contains(cause) && msg.contains("while indexing"),
                "{msg}"
            );
        }
        // Damaged data from packet 11 on (how a truncated download reads): the video ends there.
        let mut read = failing(ffmpeg::Error::InvalidData);
        let idx = probe_reading(&path, None, 1, &no, &mut read).unwrap();
        assert_eq!(idx.num_frames, 10);
        assert_eq!(probe(&path, None, 1, &no).unwrap().num_frames, 30);
        // Cancelled: stops at once.
        let yes = AtomicBool::new(true);
        assert!(matches!(
            probe(&path, None, 1, &yes),
            Err(ClipError::Interrupted)
        ));
        assert!(matches!(
            index_packets(&path, None, &yes),
            Err(ClipError::Interrupted)
        ));
    }

    #[test]
    fn a_stream_beyond_the_files_is_an_argument_error() {
        let path = make_video(
            "probe_one_stream.mp4",
            &["-frames:v", "5", "-c:v", "libx264"],
        );
        let no = AtomicBool::new(false);
        assert_eq!(probe(&path, Some(0), 1, &no).unwrap().video_stream, 0);
        match probe(&path, Some(1), 1, &no) {
            Err(ClipError::InvalidArgument { arg, msg }) => {
                assert_eq!(arg, "stream");
                assert!(msg.contains("probe_one_stream.mp4"), "{msg}");
            }
            other => panic!("{:?}", other.map(|i| i.num_frames)),
        }
    }

    #[test]
    fn missing_and_garbage_files_are_errors() {
        let no = AtomicBool::new(false);
        assert!(matches!(
            probe(Path::new("/definitely/not/here.mp4"), None, 1, &no),
            Err(ClipError::NotFound { .. })
        ));
        let junk = std::env::temp_dir().join(format!("c3d_junk_{}.avi", std::process::id()));
        std::fs::write(&junk, vec![7u8; 10_000]).unwrap();
        let err = probe(&junk, None, 1, &no).unwrap_err();
        assert!(matches!(err, ClipError::Decode { .. }));
        assert!(err.to_string().contains("c3d_junk_"));
        std::fs::remove_file(junk).unwrap();
    }
}
