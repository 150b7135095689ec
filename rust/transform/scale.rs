//! swscale, driven for the reader: contexts built once per source format and kept per thread,
//! the two-step resize that beats swscale's direct route to RGB24, into the RGB image (`image.rs`).
use std::ptr;

use ffmpeg::ffi;
use ffmpeg_next as ffmpeg;

use super::colour::{Norm, Sample, YuvTables};
use super::geometry::{Geometry, Region};
use super::image::RgbImage;
use super::writer;
use super::{Channels, Layout};

/// swscale from the decoder's frames to RGB24 at a fixed target size.
///
/// Resizing goes in two steps: a bicubic resize to 8-bit YUV 4:2:2 at the target size, then an
/// unscaled YUV→RGB24 conversion. That is what swscale does inside a direct resize to RGB24 (its
/// packed-RGB output computes chroma at half width and full height, with the same filters), but the
/// direct route runs its vertical filter and colour conversion in per-pixel C code, while the planar
/// route uses swscale's SIMD filters and its table-driven converter: about 3× faster here, and equal
/// to `ffmpeg -vf scale=w:h` up to the rounding of the intermediate planes (measured in
/// tests/clips/test_exactness.py). Without a resize, or for non-YUV sources, one direct conversion is used.
pub struct Scaler {
    direct: *mut ffi::SwsContext,
    resize: *mut ffi::SwsContext,
    convert: *mut ffi::SwsContext,
    mid: Option<ffmpeg::frame::Video>,
    /// YUV 4:4:4 → RGB in Rust, for odd widths (swscale's full-chroma converter is per-pixel C code
    /// that costs more than the resize itself; a table lookup per component does the same sums).
    tables: Option<Box<YuvTables>>,
    key: (i32, i32, i32, i32, i32),
    dst_w: u32,
    dst_h: u32,
}

// SAFETY: the contexts are only used by the thread that owns the Scaler.
unsafe impl Send for Scaler {}

/// Largest work frame (H·W·3 bytes at the target size) a thread keeps between calls: 1080p.
const SPARE_MAX_BYTES: usize = 1920 * 1088 * 3;

thread_local! {
    static SPARE: std::cell::RefCell<Option<Scaler>> = const { std::cell::RefCell::new(None) };
}

/// The pixel format as FFmpeg's enum. SAFETY: `v` must come from FFmpeg (a decoded frame's format).
unsafe fn pix_fmt(v: i32) -> ffi::AVPixelFormat {
    std::mem::transmute::<i32, ffi::AVPixelFormat>(v)
}

/// `C3D_DISTILL_EXACT_RESIZE=1` makes every resize take swscale's direct route: bit-identical to
/// `ffmpeg -vf scale=w:h`, slower.
fn exact_resize() -> bool {
    static EXACT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *EXACT.get_or_init(|| {
        std::env::var("C3D_DISTILL_EXACT_RESIZE").is_ok_and(|v| !v.is_empty() && v != "0")
    })
}

/// For a YUV format with three colour planes and chroma subsampled horizontally (4:2:0, 4:2:2,
/// 4:1:1, where the two-step route is verified against the direct one): whether it is one of the
/// full-range "yuvj" formats. `None` for anything else.
fn yuv_kind(fmt: ffi::AVPixelFormat) -> Option<bool> {
    // SAFETY: av_pix_fmt_desc_get returns null or a pointer to a static descriptor.
    let desc = unsafe { ffi::av_pix_fmt_desc_get(fmt).as_ref()? };
    let flags = desc.flags as u64;
    let not_yuv =
        (ffi::AV_PIX_FMT_FLAG_RGB | ffi::AV_PIX_FMT_FLAG_PAL | ffi::AV_PIX_FMT_FLAG_BAYER) as u64;
    if flags & not_yuv != 0
        || flags & ffi::AV_PIX_FMT_FLAG_PLANAR as u64 == 0
        || desc.nb_components < 3
        || desc.log2_chroma_w == 0
    {
        return None;
    }
    use ffi::AVPixelFormat::*;
    Some(matches!(
        fmt,
        AV_PIX_FMT_YUVJ420P
            | AV_PIX_FMT_YUVJ422P
            | AV_PIX_FMT_YUVJ444P
            | AV_PIX_FMT_YUVJ440P
            | AV_PIX_FMT_YUVJ411P
    ))
}

/// A bicubic swscale context; null when swscale cannot do the conversion.
fn sws(
    sw: i32,
    sh: i32,
    src: ffi::AVPixelFormat,
    dw: i32,
    dh: i32,
    dst: ffi::AVPixelFormat,
) -> *mut ffi::SwsContext {
    // SAFETY: plain constructor with no filters or parameters.
    unsafe {
        ffi::sws_getContext(
            sw,
            sh,
            src,
            dw,
            dh,
            dst,
            ffi::SWS_BICUBIC,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null(),
        )
    }
}

/// As the scale filter of `ffmpeg` does (in_color_matrix=auto, in_range=auto): the YUV→RGB matrix
/// and range the frame declares, where it declares them.
fn set_colour(ctx: *mut ffi::SwsContext, f: &ffi::AVFrame) {
    let mut inv_table: *mut i32 = ptr::null_mut();
    let mut table: *mut i32 = ptr::null_mut();
    let (mut src_range, mut dst_range, mut brightness, mut contrast, mut saturation) =
        (0, 0, 0, 0, 0);
    // SAFETY: ctx is a live context; the out-pointers are valid locals.
    unsafe {
        if ffi::sws_getColorspaceDetails(
            ctx,
            &mut inv_table,
            &mut src_range,
            &mut table,
            &mut dst_range,
            &mut brightness,
            &mut contrast,
            &mut saturation,
        ) < 0
        {
            return;
        }
        let inv = ffi::sws_getCoefficients(f.colorspace as i32);
        if f.color_range != ffi::AVColorRange::AVCOL_RANGE_UNSPECIFIED {
            src_range = (f.color_range == ffi::AVColorRange::AVCOL_RANGE_JPEG) as i32;
        }
        ffi::sws_setColorspaceDetails(
            ctx, inv, src_range, table, dst_range, brightness, contrast, saturation,
        );
    }
}

impl Scaler {
    pub fn new(dst_w: u32, dst_h: u32) -> Self {
        Scaler {
            direct: ptr::null_mut(),
            resize: ptr::null_mut(),
            convert: ptr::null_mut(),
            mid: None,
            tables: None,
            key: (0, 0, 0, 0, 0),
            dst_w,
            dst_h,
        }
    }

    /// A scaler to `dst_w` × `dst_h`, reusing this thread's last one when it has that target: building
    /// bicubic swscale contexts costs about as much as converting a frame, and a batch visits many
    /// videos of the same format. Hand it back with `release`.
    pub fn acquire(dst_w: u32, dst_h: u32) -> Self {
        SPARE
            .with(|s| s.borrow_mut().take())
            .filter(|s| (s.dst_w, s.dst_h) == (dst_w, dst_h))
            .unwrap_or_else(|| Scaler::new(dst_w, dst_h))
    }

    /// Keep this scaler for the thread's next `acquire`, unless its work frame is large: a rayon
    /// worker keeps its spare until the thread ends (`clear_cache` does not reach other threads'
    /// locals), and 4×cores threads each holding a 4K frame would be gigabytes. At those sizes
    /// rebuilding the contexts costs little next to converting the frame.
    pub fn release(self) {
        if (self.dst_w as usize) * (self.dst_h as usize) * 3 <= SPARE_MAX_BYTES {
            SPARE.with(|s| *s.borrow_mut() = Some(self));
        }
    }

    /// Convert all of `frame` into `out` (which must be dst_w × dst_h); the reader itself always
    /// passes the crop windows to `run_region`.
    #[cfg(test)]
    pub fn run(
        &mut self,
        frame: &ffmpeg::frame::Video,
        out: &mut RgbImage,
    ) -> std::result::Result<(), String> {
        let all = Region::full(out.width, out.height);
        self.run_region(frame, out, all)
    }

    /// Convert `frame` into `out` (which must be dst_w × dst_h); only `region` is sure to be
    /// written (the rest may be left as it was).
    pub fn run_region(
        &mut self,
        frame: &ffmpeg::frame::Video,
        out: &mut RgbImage,
        region: Region,
    ) -> std::result::Result<(), String> {
        debug_assert!(region.y1 <= out.height && region.x1 <= out.width);
        debug_assert_eq!(
            (out.width, out.height),
            (self.dst_w as usize, self.dst_h as usize)
        );
        // SAFETY: `frame` is a decoded video frame; its pointer stays valid for this call.
        let f = unsafe { &*frame.as_ptr() };
        self.ensure(f)?;
        let dst = [
            out.data_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        ];
        let dst_stride = [out.stride as i32, 0, 0, 0];
        let (h, dh) = (f.height, self.dst_h as i32);
        // SAFETY: source planes/strides come from the decoder for a frame of f.width × f.height; the
        // intermediate frame was allocated for dst_w × dst_h in the context's format; the
        // destination holds dst_h rows of `stride` bytes plus slack.
        let rows = unsafe {
            let src = f.data.as_ptr() as *const *const u8;
            if let Some(mid) = self.mid.as_mut() {
                let m = &mut *mid.as_mut_ptr();
                if self.tables.is_some() && (region.y0 > 0 || region.y1 < dh as usize) {
                    // Only the region's rows of the intermediate are read: resize just those
                    // (swscale's slice API, the same filter per output row as a whole-frame call).
                    resize_rows(self.resize, frame.as_ptr(), mid.as_mut_ptr(), region, dh)?;
                } else {
                    let r = ffi::sws_scale(
                        self.resize,
                        src,
                        f.linesize.as_ptr(),
                        0,
                        h,
                        m.data.as_ptr(),
                        m.linesize.as_ptr(),
                    );
                    if r != dh {
                        return Err(format!("swscale resized {r} of {dh} rows"));
                    }
                }
                if let Some(t) = self.tables.as_deref() {
                    t.convert(m, out, region);
                    dh
                } else {
                    let msrc = m.data.as_ptr() as *const *const u8;
                    ffi::sws_scale(
                        self.convert,
                        msrc,
                        m.linesize.as_ptr(),
                        0,
                        dh,
                        dst.as_ptr(),
                        dst_stride.as_ptr(),
                    )
                }
            } else {
                ffi::sws_scale(
                    self.direct,
                    src,
                    f.linesize.as_ptr(),
                    0,
                    h,
                    dst.as_ptr(),
                    dst_stride.as_ptr(),
                )
            }
        };
        if rows != dh {
            return Err(format!("swscale produced {rows} of {dh} rows"));
        }
        Ok(())
    }

    /// The fused route, where it applies (a resize whose YUV 4:4:4 intermediate is converted here,
    /// i.e. an odd target width such as 171): resize `region`'s rows of `frame` into the
    /// intermediate and return true; `write_fused` then converts and writes each crop straight into
    /// the batch, with no RGB image between. False (and nothing done) on the other routes.
    pub fn run_fused(
        &mut self,
        frame: &ffmpeg::frame::Video,
        region: Region,
    ) -> std::result::Result<bool, String> {
        // SAFETY: `frame` is a decoded video frame; its pointer stays valid for this call.
        let f = unsafe { &*frame.as_ptr() };
        self.ensure(f)?;
        let Some(mid) = self.mid.as_mut() else {
            return Ok(false);
        };
        if self.tables.is_none() {
            return Ok(false);
        }
        // SAFETY: the context was built for this frame's size and format and the intermediate's.
        unsafe {
            resize_rows(
                self.resize,
                frame.as_ptr(),
                mid.as_mut_ptr(),
                region,
                self.dst_h as i32,
            )?
        };
        Ok(true)
    }

    /// After `run_fused` returned true: write frame `t` of a clip of `t_len` frames into `out` (the
    /// clip's part of the batch), cropped and flipped per `g`, in `layout` and `channels` order. The
    /// same values as `run_region` + `write_frame` (`Sample::from_level` equals the lookup table's
    /// entry).
    #[allow(clippy::too_many_arguments)]
    pub fn write_fused<T: Sample>(
        &self,
        g: &Geometry,
        t: usize,
        t_len: usize,
        layout: Layout,
        channels: Channels,
        norm: &Norm,
        out: &mut [T],
    ) {
        let (Some(mid), Some(tables)) = (self.mid.as_ref(), self.tables.as_deref()) else {
            return;
        };
        debug_assert!(
            g.top + g.height <= self.dst_h as usize && g.left + g.width <= self.dst_w as usize
        );
        // SAFETY: `mid` owns a valid AVFrame, allocated for dst_w × dst_h in a planar 8-bit 4:4:4
        // format (the tables exist only on that route), and the window lies inside it.
        unsafe {
            writer::write_yuv_frame(
                &*mid.as_ptr(),
                tables,
                g,
                t,
                t_len,
                layout,
                channels,
                norm,
                out,
            )
        }
    }

    /// Build the contexts for `f`'s size, format and colours unless they already are.
    fn ensure(&mut self, f: &ffi::AVFrame) -> std::result::Result<(), String> {
        let key = (
            f.width,
            f.height,
            f.format,
            f.colorspace as i32,
            f.color_range as i32,
        );
        if (self.direct.is_null() && self.resize.is_null()) || key != self.key {
            self.rebuild(f)?;
            self.key = key;
        }
        Ok(())
    }

    fn rebuild(&mut self, f: &ffi::AVFrame) -> std::result::Result<(), String> {
        self.free();
        if f.width <= 0 || f.height <= 0 {
            return Err(format!("decoded frame has size {}x{}", f.width, f.height));
        }
        // SAFETY: the format comes from the decoder.
        let fmt = unsafe { pix_fmt(f.format) };
        let (dw, dh) = (self.dst_w as i32, self.dst_h as i32);
        let rgb = ffi::AVPixelFormat::AV_PIX_FMT_RGB24;
        let same_size = (f.width, f.height) == (dw, dh);
        let two_step = !same_size && !exact_resize();
        if let (true, Some(full_range)) = (two_step, yuv_kind(fmt)) {
            // swscale computes the chroma of packed RGB at half width, except for an odd output
            // width, where it switches to full-width chroma: the intermediate follows suit.
            let mid_fmt = match (dw % 2 == 1, full_range) {
                (false, false) => ffi::AVPixelFormat::AV_PIX_FMT_YUV422P,
                (false, true) => ffi::AVPixelFormat::AV_PIX_FMT_YUVJ422P,
                (true, false) => ffi::AVPixelFormat::AV_PIX_FMT_YUV444P,
                (true, true) => ffi::AVPixelFormat::AV_PIX_FMT_YUVJ444P,
            };
            self.resize = sws(f.width, f.height, fmt, dw, dh, mid_fmt);
            if dw % 2 == 1 {
                let full = match f.color_range {
                    ffi::AVColorRange::AVCOL_RANGE_UNSPECIFIED => full_range,
                    r => r == ffi::AVColorRange::AVCOL_RANGE_JPEG,
                };
                self.tables = Some(Box::new(YuvTables::new(f.colorspace as i32, full)));
            } else {
                self.convert = sws(dw, dh, mid_fmt, dw, dh, rgb);
            }
            if !self.resize.is_null() && (self.tables.is_some() || !self.convert.is_null()) {
                let mid = ffmpeg::frame::Video::new(
                    ffmpeg::format::Pixel::from(mid_fmt),
                    self.dst_w,
                    self.dst_h,
                );
                // av_frame_get_buffer's failure is not reported by `Video::new`: a null plane
                // means the intermediate frame could not be allocated (swscale would write to null).
                // SAFETY: `mid` owns a valid AVFrame.
                if unsafe { (*mid.as_ptr()).data[0].is_null() } {
                    self.free();
                    return Err(format!(
                        "cannot allocate a {}x{} intermediate frame for resizing (out of memory)",
                        self.dst_h, self.dst_w
                    ));
                }
                self.mid = Some(mid);
                if !self.convert.is_null() {
                    set_colour(self.convert, f);
                }
                return Ok(());
            }
            self.free();
        }
        self.direct = sws(f.width, f.height, fmt, dw, dh, rgb);
        if self.direct.is_null() {
            return Err(format!(
                "swscale cannot convert pixel format {fmt:?} to RGB24"
            ));
        }
        set_colour(self.direct, f);
        Ok(())
    }

    fn free(&mut self) {
        for ctx in [&mut self.direct, &mut self.resize, &mut self.convert] {
            if !ctx.is_null() {
                // SAFETY: allocated by sws_getContext and not used after this.
                unsafe { ffi::sws_freeContext(*ctx) };
                *ctx = ptr::null_mut();
            }
        }
        self.mid = None;
        self.tables = None;
    }
}

/// Resize rows `region.y0..region.y1` (widened to swscale's slice alignment) of `src` into `dst`.
///
/// # Safety
/// `ctx` is a live context built for `src`'s size and format and `dst`'s (allocated, refcounted).
unsafe fn resize_rows(
    ctx: *mut ffi::SwsContext,
    src: *const ffi::AVFrame,
    dst: *mut ffi::AVFrame,
    region: Region,
    dst_h: i32,
) -> std::result::Result<(), String> {
    let align = ffi::sws_receive_slice_alignment(ctx).max(1) as usize;
    let y0 = region.y0 / align * align;
    let y1 = (region.y1.div_ceil(align) * align).min(dst_h as usize);
    let err = |what: &str, e: i32| format!("swscale {what} failed ({})", ffmpeg::Error::from(e));
    let r = ffi::sws_frame_start(ctx, dst, src);
    if r < 0 {
        return Err(err("frame start", r));
    }
    let mut r = ffi::sws_send_slice(ctx, 0, (*src).height as u32);
    if r >= 0 {
        r = ffi::sws_receive_slice(ctx, y0 as u32, (y1 - y0) as u32);
    }
    ffi::sws_frame_end(ctx);
    if r < 0 {
        return Err(err("slice", r));
    }
    Ok(())
}

impl Drop for Scaler {
    fn drop(&mut self) {
        self.free();
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bench {
    use super::*;

    /// `cargo test --release -- --ignored --nocapture sws_speed`: what each swscale route costs.
    #[test]
    #[ignore]
    fn sws_speed() {
        for (sf, sw, sh, dw, dh) in [
            (
                ffi::AVPixelFormat::AV_PIX_FMT_YUV420P,
                320u32,
                240u32,
                171u32,
                128u32,
            ),
            (ffi::AVPixelFormat::AV_PIX_FMT_YUV444P, 171, 128, 171, 128),
            (ffi::AVPixelFormat::AV_PIX_FMT_YUV422P, 172, 128, 172, 128),
        ] {
            println!("from {sf:?} {sw}x{sh} to {dw}x{dh}");
            let src = ffmpeg::frame::Video::new(ffmpeg::format::Pixel::from(sf), sw, sh);
            for (name, fmt) in [
                ("rgb24", ffi::AVPixelFormat::AV_PIX_FMT_RGB24),
                ("yuv444p", ffi::AVPixelFormat::AV_PIX_FMT_YUV444P),
                ("yuv420p", ffi::AVPixelFormat::AV_PIX_FMT_YUV420P),
                ("gbrp", ffi::AVPixelFormat::AV_PIX_FMT_GBRP),
            ] {
                for (fname, flags) in [
                    ("bicubic", ffi::SWS_BICUBIC),
                    ("bilinear", ffi::SWS_BILINEAR),
                    ("area", ffi::SWS_AREA),
                ] {
                    let mut dst =
                        ffmpeg::frame::Video::new(ffmpeg::format::Pixel::from(fmt), dw, dh);
                    unsafe {
                        let ctx = ffi::sws_getContext(
                            sw as i32,
                            sh as i32,
                            sf,
                            dw as i32,
                            dh as i32,
                            fmt,
                            flags,
                            ptr::null_mut(),
                            ptr::null_mut(),
                            ptr::null(),
                        );
                        let s = &*src.as_ptr();
                        let d = &mut *dst.as_mut_ptr();
                        let n = 2000;
                        let t = std::time::Instant::now();
                        for _ in 0..n {
                            ffi::sws_scale(
                                ctx,
                                s.data.as_ptr() as *const *const u8,
                                s.linesize.as_ptr(),
                                0,
                                sh as i32,
                                d.data.as_ptr(),
                                d.linesize.as_ptr(),
                            );
                        }
                        println!(
                            "  {name:8} {fname:8} {:.1} us/frame",
                            t.elapsed().as_secs_f64() * 1e6 / n as f64
                        );
                        ffi::sws_freeContext(ctx);
                    }
                }
            }
        }
    }
}
