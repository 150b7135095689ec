//! Opening a video: its container, the video stream asked for, and a decoder for it.
use std::path::Path;
use std::sync::Once;

use ffmpeg::{codec, format, media, Rational};
use ffmpeg_next as ffmpeg;

use super::VideoIndex;
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

/// An opened container with one of its video streams selected.
pub struct Opened {
    pub input: format::context::Input,
    /// The stream's index among all of the container's streams.
    pub stream_index: usize,
    /// Its position among the container's video streams (what `stream` counts, as `-map 0:v:N`).
    pub video_stream: usize,
    pub time_base: Rational,
}

/// Open `path` and select its video stream `stream` (the position among the file's video streams,
/// 0 being the first; `None`: the one FFmpeg rates best, as `ffmpeg` picks), with every failure
/// turned into a `ClipError` naming the file. A `stream` beyond the file's video streams is an
/// invalid argument naming `stream` and the file.
pub fn open(path: &Path, stream: Option<usize>) -> Result<Opened> {
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
    let videos: Vec<usize> = input
        .streams()
        .filter(|s| s.parameters().medium() == media::Type::Video)
        .map(|s| s.index())
        .collect();
    if videos.is_empty() {
        return Err(ClipError::decode(
            path,
            format!(
                "no video stream (container '{demuxer}' has {} other stream(s))",
                input.streams().count()
            ),
        ));
    }
    let video_stream = match stream {
        Some(n) if n < videos.len() => n,
        Some(n) => {
            let which = match videos.len() {
                1 => "stream=0".to_string(),
                k => format!("stream=0 to {}", k - 1),
            };
            return Err(ClipError::invalid(
                "stream",
                format!(
                    "{n} is out of range: {} has {} video stream(s) ({which})",
                    path.display(),
                    videos.len()
                ),
            ));
        }
        None => {
            let best = input
                .streams()
                .best(media::Type::Video)
                .map_or(videos[0], |s| s.index());
            videos.iter().position(|&i| i == best).unwrap_or(0)
        }
    };
    let stream_index = videos[video_stream];
    let time_base = input
        .stream(stream_index)
        .map_or(Rational(0, 1), |s| s.time_base());
    Ok(Opened {
        input,
        stream_index,
        video_stream,
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
        return open(path, Some(index.video_stream));
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
        return open(path, Some(index.video_stream)); // gives the error its full cause
    }
    // SAFETY: ctx is an opened input context; Input closes it on drop.
    let input = unsafe { format::context::Input::wrap(ctx) };
    if !HEADER_DEMUXERS.contains(&input.format().name()) {
        return open(path, Some(index.video_stream));
    }
    let Some(stream) = input.stream(index.stream_index) else {
        return open(path, Some(index.video_stream));
    };
    let par = stream.parameters();
    // SAFETY: the parameters belong to a stream of the open input.
    let (w, h) = unsafe { ((*par.as_ptr()).width, (*par.as_ptr()).height) };
    if par.medium() != media::Type::Video || par.id() != index.codec_id || w <= 0 || h <= 0 {
        return open(path, Some(index.video_stream));
    }
    let time_base = stream.time_base();
    if (time_base.numerator(), time_base.denominator()) != index.time_base {
        return open(path, Some(index.video_stream));
    }
    Ok(Opened {
        input,
        stream_index: index.stream_index,
        video_stream: index.video_stream,
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
