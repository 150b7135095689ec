//! Opening a video and indexing it: the true frame count, each frame's presentation timestamp and
//! the keyframes, read once by decoding the whole stream (what `ffprobe -count_frames` does).
//!
//! Frame `i` is the `i`-th frame the decoder outputs when decoding from the start, which is the
//! numbering of `ffmpeg -i f -f rawvideo -pix_fmt rgb24 -` (passthrough: no frame is dropped or
//! duplicated). The decode planner maps frames it decodes after a seek back to these indices
//! through their timestamps.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

use ffmpeg::{codec, format, media, Rational};
use ffmpeg_next as ffmpeg;

use crate::error::{ClipError, Result};

static INIT: Once = Once::new();

/// Initialise FFmpeg once per process. FFmpeg's own log is silenced unless `C3D_DISTILL_FFMPEG_LOG`
/// is set (to `error`, `warning`, `info` or `debug`): our errors carry the cause themselves, and a
/// data set with a few broken files should not flood the training log.
pub fn init() {
    INIT.call_once(|| {
        let _ = ffmpeg::init();
        let level = match std::env::var("C3D_DISTILL_FFMPEG_LOG").as_deref() {
            Ok("debug") => ffmpeg::util::log::Level::Debug,
            Ok("info") => ffmpeg::util::log::Level::Info,
            Ok("warning") => ffmpeg::util::log::Level::Warning,
            Ok("error") => ffmpeg::util::log::Level::Error,
            _ => ffmpeg::util::log::Level::Quiet,
        };
        ffmpeg::util::log::set_level(level);
    });
}

/// Demuxers that accept almost any bytes and "decode" them as pictures. A text file would be read by
/// the ANSI-art demuxer as a video of rendered characters; for a video loader that is a wrong file.
const REFUSED_DEMUXERS: &[&str] = &["tty"];

/// An opened container with its best video stream selected.
pub struct Opened {
    pub input: format::context::Input,
    pub stream_index: usize,
    pub time_base: Rational,
}

/// Open `path` and pick its video stream, with every failure turned into a `ClipError` naming the file.
pub fn open(path: &Path) -> Result<Opened> {
    init();
    if !path.exists() {
        return Err(ClipError::NotFound {
            path: path.to_path_buf(),
        });
    }
    if path.is_dir() {
        return Err(ClipError::decode(path, "is a directory, not a video file"));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => return Err(ClipError::decode(path, "empty file (0 bytes)")),
        Err(e) => return Err(ClipError::decode(path, format!("cannot read: {e}"))),
        _ => {}
    }
    let input = format::input(path)
        .map_err(|e| ClipError::decode(path, format!("not a readable video container ({e})")))?;
    let demuxer = input.format().name().to_string();
    if REFUSED_DEMUXERS.contains(&demuxer.as_str()) {
        return Err(ClipError::decode(
            path,
            format!("not a video: FFmpeg recognises it only as '{demuxer}' (text)"),
        ));
    }
    let stream = input.streams().best(media::Type::Video).ok_or_else(|| {
        ClipError::decode(
            path,
            format!(
                "no video stream (container '{demuxer}' has {} other stream(s))",
                input.streams().count()
            ),
        )
    })?;
    let stream_index = stream.index();
    let time_base = stream.time_base();
    Ok(Opened {
        input,
        stream_index,
        time_base,
    })
}

/// Demuxers whose header alone describes the video stream (codec, size, extradata, time base), so
/// that a file already indexed can be opened for decoding without `avformat_find_stream_info`,
/// which decodes frames to probe the streams (for H.264 in MP4 it costs more than decoding a clip).
const HEADER_DEMUXERS: &[&str] = &["avi", "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"];

/// Open an indexed video for decoding: the container header only when it agrees with the index
/// (same stream, codec and frame size), else as `open`.
pub fn open_indexed(path: &Path, index: &VideoIndex) -> Result<Opened> {
    use std::os::unix::ffi::OsStrExt;
    init();
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return open(path);
    };
    let mut ctx = std::ptr::null_mut();
    // SAFETY: ctx starts null as avformat_open_input requires; on failure it frees and nulls it.
    let ret = unsafe {
        ffmpeg::ffi::avformat_open_input(
            &mut ctx,
            c_path.as_ptr(),
            std::ptr::null(),
            std::ptr::null_mut(),
        )
    };
    if ret < 0 || ctx.is_null() {
        return open(path); // gives the error its full cause
    }
    // SAFETY: ctx is an opened input context; Input closes it on drop.
    let input = unsafe { format::context::Input::wrap(ctx) };
    if !HEADER_DEMUXERS.contains(&input.format().name()) {
        return open(path);
    }
    let Some(stream) = input.stream(index.stream_index) else {
        return open(path);
    };
    let par = stream.parameters();
    // SAFETY: the parameters belong to a stream of the open input.
    let (w, h) = unsafe { ((*par.as_ptr()).width, (*par.as_ptr()).height) };
    if par.medium() != media::Type::Video || par.id() != index.codec_id || w <= 0 || h <= 0 {
        return open(path);
    }
    let time_base = stream.time_base();
    if (time_base.numerator(), time_base.denominator()) != index.time_base {
        return open(path);
    }
    Ok(Opened {
        input,
        stream_index: index.stream_index,
        time_base,
    })
}

/// Read the next packet into `packet`, releasing the one it held: `av_read_frame` overwrites its
/// argument without unreferencing it, so reusing a packet with ffmpeg-next's `Packet::read` leaks
/// every packet's buffer (measured: ~10 KB per opened video).
pub fn read_packet(
    packet: &mut ffmpeg::Packet,
    input: &mut format::context::Input,
) -> std::result::Result<(), ffmpeg::Error> {
    use ffmpeg::packet::Mut;
    // SAFETY: the packet is valid; unref leaves it blank, as av_read_frame expects.
    unsafe { ffmpeg::ffi::av_packet_unref(packet.as_mut_ptr()) };
    packet.read(input)
}

/// A decoder for the selected stream. `threads` = 1 keeps one clip on one core, which is what the
/// batch reader wants (it parallelises across clips); 0 lets FFmpeg choose.
pub fn decoder(path: &Path, opened: &Opened, threads: usize) -> Result<ffmpeg::decoder::Video> {
    let stream = opened
        .input
        .stream(opened.stream_index)
        .ok_or_else(|| ClipError::decode(path, "video stream vanished"))?;
    let mut ctx = codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| ClipError::decode(path, format!("bad codec parameters ({e})")))?;
    ctx.set_threading(codec::threading::Config {
        kind: codec::threading::Type::Frame,
        count: threads,
        ..Default::default()
    });
    let id = ctx.id();
    ctx.decoder()
        .video()
        .map_err(|e| ClipError::decode(path, format!("no decoder for codec {id:?} ({e})")))
}

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
    pub frame_pts: Vec<i64>,
    /// The stream's time base as (num, den).
    pub time_base: (i32, i32),
    /// `frame_pts` are the timestamps the decoder itself gives each frame, all present and strictly
    /// increasing, so a frame decoded after a seek can be numbered by looking its timestamp up. When
    /// false the reader never seeks: it decodes from the start and counts.
    pub pts_reliable: bool,
    /// The video stream's index in the container, and its codec (for `open_indexed`).
    pub stream_index: usize,
    pub codec_id: codec::Id,
    /// Built by decoding every frame (the ground truth). When false it was read from the packets
    /// alone (`index_packets`); the reader checks each frame it decodes against it and rebuilds the
    /// index by decoding when they disagree.
    pub exact: bool,
}

/// Upper bound on consecutive demux/decode errors of damaged data, after which the video is taken
/// to end (see `probe`). A corrupt file can make every read fail; this keeps it from spinning.
const MAX_CONSECUTIVE_ERRORS: usize = 64;

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
/// `cancel` set (Ctrl-C) stops it at the next packet with `ClipError::Interrupted`.
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
pub fn probe(path: &Path, threads: usize, cancel: &AtomicBool) -> Result<VideoIndex> {
    probe_reading(path, threads, cancel, &mut read_packet)
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
    threads: usize,
    cancel: &AtomicBool,
    read: &mut ReadPacket,
) -> Result<VideoIndex> {
    let mut opened = open(path)?;
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
                // Frames without any timestamp get the next integer after the previous one, so that the
                // index stays strictly ordered.
                let ts = match frame.timestamp() {
                    Some(t) => t,
                    None => {
                        missing_pts = true;
                        frame_pts.last().map_or(0, |p| p + 1)
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

/// Codecs whose packets in a file-based container are one shown frame each, so the packets alone
/// number the frames the way decoding does: H.264/HEVC access units, MPEG-4 part 2 without B-frames
/// (checked below: packed B-frames break this), intra-only codecs, and VP9/AV1 whose hidden frames
/// the WebM/MP4 mappings require to be packed with a shown one.
const PACKET_INDEXED_CODECS: &[codec::Id] = &[
    codec::Id::H264,
    codec::Id::HEVC,
    codec::Id::MPEG4,
    codec::Id::MJPEG,
    codec::Id::VP9,
    codec::Id::AV1,
    codec::Id::MPEG1VIDEO,
    codec::Id::MPEG2VIDEO,
    codec::Id::PRORES,
    codec::Id::FFV1,
    codec::Id::RAWVIDEO,
];

/// Index `path` from its packets alone (no decoding: the cost of reading the file), or `Ok(None)`
/// when the packets cannot be trusted to number frames like the decoder: an unlisted codec, a
/// packet without a timestamp or marked corrupt/discard, duplicate timestamps, a read error, or a
/// first frame (in presentation order) that is not a keyframe. The caller then uses `probe`.
///
/// Such an index has `exact = false`: the reader compares every frame it decodes with it and falls
/// back to `probe` on the first disagreement. `cancel` as for `probe`.
pub fn index_packets(path: &Path, cancel: &AtomicBool) -> Result<Option<VideoIndex>> {
    let mut opened = open(path)?;
    let (id, width, height, video_delay) = {
        let stream = opened
            .input
            .stream(opened.stream_index)
            .expect("stream index checked in open()");
        let par = stream.parameters();
        // SAFETY: the parameters belong to a stream of the open input and outlive this block.
        let raw = unsafe { &*par.as_ptr() };
        (par.id(), raw.width, raw.height, raw.video_delay)
    };
    if !PACKET_INDEXED_CODECS.contains(&id) || width <= 0 || height <= 0 {
        return Ok(None);
    }
    if id == codec::Id::MPEG4 && video_delay > 0 {
        return Ok(None); // B-frames: AVI gives no pts and "packed bitstream" packets hold two frames.
    }
    let demuxer = opened.input.format().name().to_string();
    if demuxer.contains("h264")
        || demuxer.contains("hevc")
        || demuxer.contains("mpegts")
        || demuxer.contains("mpeg")
    {
        // Raw elementary streams and MPEG-PS/TS carry partial or estimated timestamps.
        return Ok(None);
    }
    let mut packets: Vec<(i64, bool)> = Vec::new();
    let mut packet = ffmpeg::Packet::empty();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(ClipError::Interrupted);
        }
        match read_packet(&mut packet, &mut opened.input) {
            Ok(()) => {
                if packet.stream() != opened.stream_index {
                    continue;
                }
                let flags = packet.flags();
                if packet.is_corrupt()
                    || (flags.bits() & ffmpeg::ffi::AV_PKT_FLAG_DISCARD) != 0
                    || packet.size() == 0
                {
                    return Ok(None);
                }
                match packet.pts() {
                    Some(pts) => packets.push((pts, packet.is_key())),
                    None => return Ok(None),
                }
            }
            Err(ffmpeg::Error::Eof) => break,
            Err(_) => return Ok(None),
        }
    }
    if packets.is_empty() {
        return Ok(None);
    }
    packets.sort_unstable_by_key(|p| p.0);
    if packets.windows(2).any(|w| w[0].0 == w[1].0) || !packets[0].1 {
        return Ok(None);
    }
    let codec = ffmpeg::decoder::find(id)
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| format!("{id:?}").to_lowercase());
    let frame_pts: Vec<i64> = packets.iter().map(|p| p.0).collect();
    let key_flags: Vec<bool> = packets.iter().map(|p| p.1).collect();
    Ok(Some(finish_index(
        path,
        &opened,
        codec,
        width as u32,
        height as u32,
        frame_pts,
        &key_flags,
        true,
        false,
    )))
}

/// Container-level facts (fps, duration) around a frame list, shared by both ways of indexing.
#[allow(clippy::too_many_arguments)]
fn finish_index(
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
        pts_reliable,
        stream_index: opened.stream_index,
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
        let idx = probe(&path, 1, &AtomicBool::new(false)).unwrap();
        assert_eq!(idx.num_frames, 40);
        assert_eq!((idx.width, idx.height), (320, 240));
        assert_eq!(idx.keyframes, vec![0, 10, 20, 30]);
        assert_eq!(idx.codec, "h264");
        assert!((idx.fps - 25.0).abs() < 1e-9);
        assert!(idx.frame_pts.windows(2).all(|w| w[0] < w[1]));
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
            let err = probe_reading(&path, 1, &no, &mut read).unwrap_err();
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
        let idx = probe_reading(&path, 1, &no, &mut read).unwrap();
        assert_eq!(idx.num_frames, 10);
        assert_eq!(probe(&path, 1, &no).unwrap().num_frames, 30);
        // Cancelled: stops at once.
        let yes = AtomicBool::new(true);
        assert!(matches!(probe(&path, 1, &yes), Err(ClipError::Interrupted)));
        assert!(matches!(
            index_packets(&path, &yes),
            Err(ClipError::Interrupted)
        ));
    }

    #[test]
    fn missing_and_garbage_files_are_errors() {
        let no = AtomicBool::new(false);
        assert!(matches!(
            probe(Path::new("/definitely/not/here.mp4"), 1, &no),
            Err(ClipError::NotFound { .. })
        ));
        let junk = std::env::temp_dir().join(format!("c3d_junk_{}.avi", std::process::id()));
        std::fs::write(&junk, vec![7u8; 10_000]).unwrap();
        let err = probe(&junk, 1, &no).unwrap_err();
        assert!(matches!(err, ClipError::Decode { .. }));
        assert!(err.to_string().contains("c3d_junk_"));
        std::fs::remove_file(junk).unwrap();
    }
}
