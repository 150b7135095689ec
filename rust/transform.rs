//! The fused transform from a decoded frame to its place in the output tensor:
//! swscale converts the decoder's pixel format straight to RGB24 at the target size (one pass, the
//! same scaler and flags as `ffmpeg -vf scale=w:h`), then one loop crops, flips, converts to the
//! output type (through a 256-entry table per channel, so float32 normalisation costs a lookup) and
//! writes the pixels in the requested layout into the final array.
use std::ptr;

use ffmpeg::ffi;
use ffmpeg_next as ffmpeg;

use crate::error::{ClipError, Result};

/// Memory order of one clip in the output (the batch dimension N always comes first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// (N, C, T, H, W): what 3D convolutions take; viewed as (N, C·T, H, W) it is the folded input.
    Ncthw,
    /// (N, T, C, H, W).
    Ntchw,
    /// (N, T, H, W, C): frames as images.
    Nthwc,
}

impl Layout {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "NCTHW" => Ok(Layout::Ncthw),
            "NTCHW" => Ok(Layout::Ntchw),
            "NTHWC" => Ok(Layout::Nthwc),
            _ => Err(ClipError::invalid(
                "layout",
                format!("{s:?} is not one of 'NCTHW', 'NTCHW', 'NTHWC'"),
            )),
        }
    }

    /// Shape of one clip of `t` frames of `h`×`w`.
    pub fn clip_shape(self, t: usize, h: usize, w: usize) -> [usize; 4] {
        match self {
            Layout::Ncthw => [3, t, h, w],
            Layout::Ntchw => [t, 3, h, w],
            Layout::Nthwc => [t, h, w, 3],
        }
    }
}

/// How frames are resized before cropping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Keep the decoded size.
    Keep,
    /// Exactly (height, width).
    Fixed(u32, u32),
    /// Scale so the shorter side has this length, keeping the aspect ratio (rounded).
    ShortSide(u32),
}

impl Resize {
    /// The (height, width) a `width`×`height` video is scaled to.
    pub fn target(self, width: u32, height: u32) -> (u32, u32) {
        match self {
            Resize::Keep => (height, width),
            Resize::Fixed(h, w) => (h, w),
            Resize::ShortSide(s) => {
                let round = |x: f64| (x.round() as u32).max(1);
                if height <= width {
                    (s, round(width as f64 * s as f64 / height as f64))
                } else {
                    (round(height as f64 * s as f64 / width as f64), s)
                }
            }
        }
    }
}

/// Where one clip's crop window sits in the resized frame, and whether it is mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
    pub flip: bool,
}

/// A frame converted to packed RGB24 at the target size, rows `stride` bytes apart.
pub struct RgbImage {
    buf: Vec<u8>,
    offset: usize,
    pub width: usize,
    pub height: usize,
    pub stride: usize,
}

impl RgbImage {
    pub fn new(width: usize, height: usize) -> Self {
        // Rows 64-byte aligned, plus a spare row: swscale's SIMD paths want aligned rows and may
        // write a little past the last pixel of a row.
        let stride = (width * 3).div_ceil(64) * 64;
        let buf = vec![0u8; stride * (height + 1) + 64];
        let offset = buf.as_ptr().align_offset(64);
        RgbImage {
            buf,
            offset,
            width,
            height,
            stride,
        }
    }

    pub fn row(&self, y: usize) -> &[u8] {
        let start = self.offset + y * self.stride;
        &self.buf[start..start + self.width * 3]
    }

    fn data_mut(&mut self) -> *mut u8 {
        // SAFETY: offset < 64 and the buffer holds 64 spare bytes.
        unsafe { self.buf.as_mut_ptr().add(self.offset) }
    }
}

/// A swscale context from one decoded format/size to RGB24 at a fixed target size, rebuilt when the
/// decoded frames change format or size mid-stream.
pub struct Scaler {
    ctx: *mut ffi::SwsContext,
    key: (i32, i32, i32, i32, i32),
    dst_w: u32,
    dst_h: u32,
}

// SAFETY: the context is only used by the thread that owns the Scaler.
unsafe impl Send for Scaler {}

impl Scaler {
    pub fn new(dst_w: u32, dst_h: u32) -> Self {
        Scaler {
            ctx: ptr::null_mut(),
            key: (0, 0, 0, 0, 0),
            dst_w,
            dst_h,
        }
    }

    /// Convert `frame` into `out` (which must be dst_w × dst_h).
    pub fn run(
        &mut self,
        frame: &ffmpeg::frame::Video,
        out: &mut RgbImage,
    ) -> std::result::Result<(), String> {
        debug_assert_eq!(
            (out.width, out.height),
            (self.dst_w as usize, self.dst_h as usize)
        );
        // SAFETY: `frame` is a decoded video frame; its pointer stays valid for this call.
        let f = unsafe { &*frame.as_ptr() };
        let key = (
            f.width,
            f.height,
            f.format,
            f.colorspace as i32,
            f.color_range as i32,
        );
        if self.ctx.is_null() || key != self.key {
            self.rebuild(f)?;
            self.key = key;
        }
        let dst = [
            out.data_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        ];
        let dst_stride = [out.stride as i32, 0, 0, 0];
        // SAFETY: source planes/strides come from the decoder for a frame of f.width × f.height; the
        // destination holds dst_h rows of `stride` bytes plus slack.
        let rows = unsafe {
            ffi::sws_scale(
                self.ctx,
                f.data.as_ptr() as *const *const u8,
                f.linesize.as_ptr(),
                0,
                f.height,
                dst.as_ptr(),
                dst_stride.as_ptr(),
            )
        };
        if rows != self.dst_h as i32 {
            return Err(format!("swscale produced {rows} of {} rows", self.dst_h));
        }
        Ok(())
    }

    fn rebuild(&mut self, f: &ffi::AVFrame) -> std::result::Result<(), String> {
        self.free();
        if f.width <= 0 || f.height <= 0 {
            return Err(format!("decoded frame has size {}x{}", f.width, f.height));
        }
        // SAFETY: plain constructor; a null return is handled below. The pixel format value comes
        // from the decoder, so it is a valid AVPixelFormat.
        unsafe {
            let fmt: ffi::AVPixelFormat = std::mem::transmute::<i32, ffi::AVPixelFormat>(f.format);
            self.ctx = ffi::sws_getContext(
                f.width,
                f.height,
                fmt,
                self.dst_w as i32,
                self.dst_h as i32,
                ffi::AVPixelFormat::AV_PIX_FMT_RGB24,
                ffi::SWS_BICUBIC,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null(),
            );
            if self.ctx.is_null() {
                return Err(format!(
                    "swscale cannot convert pixel format {:?} to RGB24",
                    fmt
                ));
            }
            // As the scale filter of `ffmpeg` does (in_color_matrix=auto, in_range=auto): the
            // frame's own matrix and range, when it declares them.
            let mut inv_table: *mut i32 = ptr::null_mut();
            let mut table: *mut i32 = ptr::null_mut();
            let (mut src_range, mut dst_range, mut brightness, mut contrast, mut saturation) =
                (0, 0, 0, 0, 0);
            if ffi::sws_getColorspaceDetails(
                self.ctx,
                &mut inv_table,
                &mut src_range,
                &mut table,
                &mut dst_range,
                &mut brightness,
                &mut contrast,
                &mut saturation,
            ) >= 0
            {
                let inv = ffi::sws_getCoefficients(f.colorspace as i32);
                if f.color_range != ffi::AVColorRange::AVCOL_RANGE_UNSPECIFIED {
                    src_range = (f.color_range == ffi::AVColorRange::AVCOL_RANGE_JPEG) as i32;
                }
                ffi::sws_setColorspaceDetails(
                    self.ctx, inv, src_range, table, dst_range, brightness, contrast, saturation,
                );
            }
        }
        Ok(())
    }

    fn free(&mut self) {
        if !self.ctx.is_null() {
            // SAFETY: allocated by sws_getContext and not used after this.
            unsafe { ffi::sws_freeContext(self.ctx) };
            self.ctx = ptr::null_mut();
        }
    }
}

impl Drop for Scaler {
    fn drop(&mut self) {
        self.free();
    }
}

/// Per-channel lookup from a byte to the output value.
pub type Lut<T> = [[T; 256]; 3];

pub fn identity_lut() -> Lut<u8> {
    let mut l = [[0u8; 256]; 3];
    for c in l.iter_mut() {
        for (v, x) in c.iter_mut().enumerate() {
            *x = v as u8;
        }
    }
    l
}

/// `(v / 255 - mean[c]) / std[c]`.
pub fn float_lut(mean: [f32; 3], std: [f32; 3]) -> Lut<f32> {
    let mut l = [[0f32; 256]; 3];
    for (c, ch) in l.iter_mut().enumerate() {
        for (v, x) in ch.iter_mut().enumerate() {
            *x = (v as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    l
}

/// Write frame `t` of a clip of `t_len` frames from `img` into `out` (the clip's part of the batch),
/// cropping and flipping per `g`, in `layout`.
pub fn write_frame<T: Copy>(
    img: &RgbImage,
    g: &Geometry,
    t: usize,
    t_len: usize,
    layout: Layout,
    lut: &Lut<T>,
    out: &mut [T],
) {
    let (h, w) = (g.height, g.width);
    debug_assert!(g.top + h <= img.height && g.left + w <= img.width);
    match layout {
        Layout::Nthwc => {
            let frame = &mut out[t * h * w * 3..(t + 1) * h * w * 3];
            for (y, dst) in frame.chunks_exact_mut(w * 3).enumerate() {
                let src = &img.row(g.top + y)[g.left * 3..(g.left + w) * 3];
                if g.flip {
                    for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3).rev()) {
                        d[0] = lut[0][s[0] as usize];
                        d[1] = lut[1][s[1] as usize];
                        d[2] = lut[2][s[2] as usize];
                    }
                } else {
                    for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                        d[0] = lut[0][s[0] as usize];
                        d[1] = lut[1][s[1] as usize];
                        d[2] = lut[2][s[2] as usize];
                    }
                }
            }
        }
        Layout::Ncthw | Layout::Ntchw => {
            // Plane c of frame t starts at plane_start(c); rows are w apart.
            let plane = h * w;
            let plane_start = |c: usize| match layout {
                Layout::Ncthw => (c * t_len + t) * plane,
                _ => (t * 3 + c) * plane,
            };
            let (p0, p1, p2) = (plane_start(0), plane_start(1), plane_start(2));
            for y in 0..h {
                let src = &img.row(g.top + y)[g.left * 3..(g.left + w) * 3];
                let o = y * w;
                // Split borrows: three disjoint rows of the output.
                let (r, g_, b) = three_rows(out, p0 + o, p1 + o, p2 + o, w);
                if g.flip {
                    for (x, s) in src.chunks_exact(3).rev().enumerate() {
                        r[x] = lut[0][s[0] as usize];
                        g_[x] = lut[1][s[1] as usize];
                        b[x] = lut[2][s[2] as usize];
                    }
                } else {
                    for (x, s) in src.chunks_exact(3).enumerate() {
                        r[x] = lut[0][s[0] as usize];
                        g_[x] = lut[1][s[1] as usize];
                        b[x] = lut[2][s[2] as usize];
                    }
                }
            }
        }
    }
}

/// Three disjoint mutable rows of length `w` at increasing offsets a < b < c.
fn three_rows<T>(
    out: &mut [T],
    a: usize,
    b: usize,
    c: usize,
    w: usize,
) -> (&mut [T], &mut [T], &mut [T]) {
    debug_assert!(a + w <= b && b + w <= c);
    let (head, rest) = out.split_at_mut(b);
    let (mid, tail) = rest.split_at_mut(c - b);
    (&mut head[a..a + w], &mut mid[..w], &mut tail[..w])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_side_keeps_aspect() {
        assert_eq!(Resize::ShortSide(128).target(320, 240), (128, 171));
        assert_eq!(Resize::ShortSide(128).target(240, 320), (171, 128));
        assert_eq!(Resize::Fixed(10, 20).target(320, 240), (10, 20));
        assert_eq!(Resize::Keep.target(320, 240), (240, 320));
    }

    fn image(w: usize, h: usize) -> RgbImage {
        let mut img = RgbImage::new(w, h);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let i = img.offset + y * img.stride + x * 3 + c;
                    img.buf[i] = (y * 50 + x * 7 + c) as u8;
                }
            }
        }
        img
    }

    #[test]
    fn layouts_agree() {
        let img = image(6, 5);
        let g = Geometry {
            top: 1,
            left: 2,
            height: 3,
            width: 4,
            flip: true,
        };
        let lut = identity_lut();
        let (t_len, t) = (2, 1);
        let mut a = vec![0u8; 3 * t_len * 12];
        let mut b = a.clone();
        let mut c = a.clone();
        write_frame(&img, &g, t, t_len, Layout::Ncthw, &lut, &mut a);
        write_frame(&img, &g, t, t_len, Layout::Ntchw, &lut, &mut b);
        write_frame(&img, &g, t, t_len, Layout::Nthwc, &lut, &mut c);
        for ch in 0..3 {
            for y in 0..3 {
                for x in 0..4 {
                    let src = img.row(1 + y)[(2 + (3 - x)) * 3 + ch];
                    assert_eq!(a[((ch * t_len + t) * 3 + y) * 4 + x], src);
                    assert_eq!(b[((t * 3 + ch) * 3 + y) * 4 + x], src);
                    assert_eq!(c[((t * 3 + y) * 4 + x) * 3 + ch], src);
                }
            }
        }
        // Frame 0 untouched.
        assert!(a[..12].iter().all(|v| *v == 0));
    }
}
