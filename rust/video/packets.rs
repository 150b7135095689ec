//! Indexing from the packets alone, where the codec and container make each packet one shown
//! frame: the cost of reading the file instead of decoding it.
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use ffmpeg::codec;
use ffmpeg_next as ffmpeg;

use super::{finish_index, open, read_packet, VideoIndex};
use crate::error::{ClipError, Result};

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
/// back to `probe` on the first disagreement. `stream` and `cancel` as for `probe`.
pub fn index_packets(
    path: &Path,
    stream: Option<usize>,
    cancel: &AtomicBool,
) -> Result<Option<VideoIndex>> {
    let mut opened = open(path, stream)?;
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
