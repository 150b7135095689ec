//! Pixel values: YUV→RGB with swscale's coefficients (for the routes that convert in Rust), and
//! from an RGB level to the output element (a lookup table per channel, or the same arithmetic
//! inline where the fused route has no table to look in).
use ffmpeg_next::ffi;

use super::geometry::Region;
use super::image::RgbImage;

/// Row `row`, columns `x0..x0 + w`, of the three planes of a planar 8-bit frame.
///
/// # Safety
/// Each plane of `m` holds at least `row + 1` rows of at least `x0 + w` bytes at its linesize.
pub(super) unsafe fn yuv_rows(m: &ffi::AVFrame, row: usize, x0: usize, w: usize) -> [&[u8]; 3] {
    let at = |p: usize| m.data[p].add(row * m.linesize[p] as usize + x0);
    [0, 1, 2].map(|p| std::slice::from_raw_parts(at(p), w))
}

/// YUV → RGB with swscale's coefficients for the frame's matrix and range, in f32 arithmetic that
/// the compiler vectorises (a table-driven loop cost ~6 ns a pixel here, more than swscale's resize):
/// each component is `floor(cy·(Y − oy) + c·(U|V − 128) + ½)` clipped to 0..=255, which is
/// swscale's 16.16 fixed-point sum up to ties.
pub(super) struct YuvTables {
    /// cy, −cy·oy + ½, crv, −cgu, −cgv, cbu (the chroma ones per unit of U or V − 128).
    cy: f32,
    y0: f32,
    rv: f32,
    gu: f32,
    gv: f32,
    bu: f32,
}

impl YuvTables {
    pub(super) fn new(colorspace: i32, full_range: bool) -> Self {
        // SAFETY: sws_getCoefficients returns a pointer to 4 static ints (any input is valid).
        let inv = unsafe { std::slice::from_raw_parts(ffi::sws_getCoefficients(colorspace), 4) };
        // [crv, cbu, cgu, cgv] in 16.16 for limited-range chroma; as swscale, scale them for full range.
        let (cy, oy, cs) = if full_range {
            (1.0, 0.0, 224.0 / 255.0)
        } else {
            (255.0 / 219.0, 16.0, 1.0)
        };
        let k = |c: i32| (c as f64 * cs / 65536.0) as f32;
        YuvTables {
            cy: cy as f32,
            y0: (0.5 - cy * oy) as f32,
            rv: k(inv[0]),
            gu: -k(inv[2]),
            gv: -k(inv[3]),
            bu: k(inv[1]),
        }
    }

    /// The RGB levels (0..=255, whole numbers as f32) of pixels `s..s + n` of a Y, U, V row.
    #[inline]
    pub(super) fn levels(
        &self,
        yuv: &[&[u8]; 3],
        s: usize,
        n: usize,
        r: &mut [f32],
        g: &mut [f32],
        b: &mut [f32],
    ) {
        let (ys, us, vs) = (&yuv[0][s..s + n], &yuv[1][s..s + n], &yuv[2][s..s + n]);
        let n = n.min(r.len()).min(g.len()).min(b.len());
        // Truncation is floor for the clamped (non-negative) sums.
        // SAFETY: clamped to 0..=255, so the value is finite and fits an i32 (no NaN reaches
        // here: every input is a byte).
        let lv = |v: f32| unsafe { v.clamp(0.0, 255.0).to_int_unchecked::<i32>() } as f32;
        for i in 0..n {
            let yy = self.cy * ys[i] as f32 + self.y0;
            let u = us[i] as f32 - 128.0;
            let v = vs[i] as f32 - 128.0;
            r[i] = lv(yy + self.rv * v);
            g[i] = lv(yy + self.gu * u + self.gv * v);
            b[i] = lv(yy + self.bu * u);
        }
    }

    /// Convert `region` of a YUV 4:4:4 8-bit frame (out.width × out.height) into `out`.
    pub(super) fn convert(&self, m: &ffi::AVFrame, out: &mut RgbImage, region: Region) {
        const CHUNK: usize = 64;
        let (x0, x1) = (region.x0.min(out.width), region.x1.min(out.width));
        let w = x1.saturating_sub(x0);
        if w == 0 {
            return;
        }
        let (mut r, mut g, mut b) = ([0f32; CHUNK], [0f32; CHUNK], [0f32; CHUNK]);
        for row in region.y0..region.y1.min(out.height) {
            // SAFETY: the intermediate holds dst_h rows of dst_w bytes per plane and the window lies
            // inside it.
            let yuv = unsafe { yuv_rows(m, row, x0, w) };
            let dst = &mut out.row_mut(row)[x0 * 3..x1 * 3];
            for (c, d) in dst.chunks_mut(3 * CHUNK).enumerate() {
                let n = d.len() / 3;
                let s = c * CHUNK;
                self.levels(&yuv, s, n, &mut r, &mut g, &mut b);
                for (i, p) in d.chunks_exact_mut(3).enumerate() {
                    p[0] = r[i] as u8;
                    p[1] = g[i] as u8;
                    p[2] = b[i] as u8;
                }
            }
        }
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

/// Normalisation of float output: `(v / 255 - mean[c]) / std[c]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Norm {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// An output element made from an RGB level (a whole number 0..=255 held in an f32).
pub trait Sample: Copy {
    /// Equal to the lookup table's entry for that level (`identity_lut` / `float_lut`): the same
    /// operations in the same order.
    fn from_level(q: f32, c: usize, norm: &Norm) -> Self;
}

impl Sample for u8 {
    #[inline(always)]
    fn from_level(q: f32, _c: usize, _norm: &Norm) -> Self {
        // SAFETY: q is a whole number in 0..=255.
        unsafe { q.to_int_unchecked::<i32>() as u8 }
    }
}

impl Sample for f32 {
    #[inline(always)]
    fn from_level(q: f32, c: usize, norm: &Norm) -> Self {
        (q / 255.0 - norm.mean[c]) / norm.std[c]
    }
}
