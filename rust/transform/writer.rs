//! Where converted pixels go: one clip's frame, cropped and maybe mirrored, into its part of the
//! batch in the requested layout. Written row by row into the final array, so a batch is never
//! transposed or copied after decoding.
use ffmpeg_next::ffi;

use super::colour::{yuv_rows, Lut, Norm, Sample, YuvTables};
use super::geometry::Geometry;
use super::image::RgbImage;
use super::{Channels, Layout};

/// Write frame `t` of a clip of `t_len` frames from `img` into `out` (the clip's part of the batch),
/// cropping and flipping per `g`, in `layout` and `channels` order. `lut[k]` converts the values of
/// output channel `k` (so mean and std are in output order).
#[allow(clippy::too_many_arguments)]
pub fn write_frame<T: Copy>(
    img: &RgbImage,
    g: &Geometry,
    t: usize,
    t_len: usize,
    layout: Layout,
    channels: Channels,
    lut: &Lut<T>,
    out: &mut [T],
) {
    // One copy of the loops per channel order, with the source channel of each output channel a
    // constant, so that the order costs nothing per pixel.
    match channels {
        Channels::Rgb => write_in::<T, 0, 1, 2>(img, g, t, t_len, layout, lut, out),
        Channels::Bgr => write_in::<T, 2, 1, 0>(img, g, t, t_len, layout, lut, out),
    }
}

/// `write_frame` with output channel k taken from RGB channel `Ck`.
fn write_in<T: Copy, const C0: usize, const C1: usize, const C2: usize>(
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
                        d[0] = lut[0][s[C0] as usize];
                        d[1] = lut[1][s[C1] as usize];
                        d[2] = lut[2][s[C2] as usize];
                    }
                } else {
                    for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                        d[0] = lut[0][s[C0] as usize];
                        d[1] = lut[1][s[C1] as usize];
                        d[2] = lut[2][s[C2] as usize];
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
                // Split borrows: three disjoint rows of the output, one per output channel.
                let (q0, q1, q2) = three_rows(out, p0 + o, p1 + o, p2 + o, w);
                if g.flip {
                    for (x, s) in src.chunks_exact(3).rev().enumerate() {
                        q0[x] = lut[0][s[C0] as usize];
                        q1[x] = lut[1][s[C1] as usize];
                        q2[x] = lut[2][s[C2] as usize];
                    }
                } else {
                    for (x, s) in src.chunks_exact(3).enumerate() {
                        q0[x] = lut[0][s[C0] as usize];
                        q1[x] = lut[1][s[C1] as usize];
                        q2[x] = lut[2][s[C2] as usize];
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

/// Frame `t` of a clip of `t_len` frames, converted from the YUV 4:4:4 `frame` with `tables` and
/// written into `out` where `write_frame` would put it, in `channels` order with `norm` in that
/// order: the fused route, with no RGB image between.
///
/// # Safety
/// `frame` is a planar 8-bit frame whose three planes each hold rows `g.top..g.top + g.height` of at
/// least `g.left + g.width` bytes at their linesize.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn write_yuv_frame<T: Sample>(
    frame: &ffi::AVFrame,
    tables: &YuvTables,
    g: &Geometry,
    t: usize,
    t_len: usize,
    layout: Layout,
    channels: Channels,
    norm: &Norm,
    out: &mut [T],
) {
    const CHUNK: usize = 64;
    let (h, w) = (g.height, g.width);
    let plane = h * w;
    // Where channel c of pixel (y, x) of this frame goes.
    let (base, step_c, step_x) = match layout {
        Layout::Ncthw => (t * plane, t_len * plane, 1),
        Layout::Ntchw => (t * 3 * plane, plane, 1),
        Layout::Nthwc => (t * plane * 3, 1, 3),
    };
    let row_len = w * step_x;
    let (mut r, mut gg, mut b) = ([0f32; CHUNK], [0f32; CHUNK], [0f32; CHUNK]);
    for y in 0..h {
        let row = g.top + y;
        // SAFETY: the window's rows and columns lie inside `frame`'s planes (the caller's promise).
        let yuv = unsafe { yuv_rows(frame, row, g.left, w) };
        let row_base = base + y * row_len;
        let mut s = 0;
        while s < w {
            let n = CHUNK.min(w - s);
            tables.levels(&yuv, s, n, &mut r, &mut gg, &mut b);
            // Output channel c: the levels of the RGB channel `channels` puts there.
            for (c, q) in channels.arrange([&r, &gg, &b]).into_iter().enumerate() {
                let dst = &mut out[row_base + c * step_c..];
                if step_x == 1 {
                    if g.flip {
                        // Pixel s + i lands at column w - 1 - (s + i).
                        let d = &mut dst[w - s - n..w - s];
                        for (o, &v) in d.iter_mut().rev().zip(&q[..n]) {
                            *o = T::from_level(v, c, norm);
                        }
                    } else {
                        for (o, &v) in dst[s..s + n].iter_mut().zip(&q[..n]) {
                            *o = T::from_level(v, c, norm);
                        }
                    }
                } else {
                    for (i, &v) in q[..n].iter().enumerate() {
                        let x = if g.flip { w - 1 - (s + i) } else { s + i };
                        dst[x * 3] = T::from_level(v, c, norm);
                    }
                }
            }
            s += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::identity_lut;

    fn image(w: usize, h: usize) -> RgbImage {
        let mut img = RgbImage::new(w, h);
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    img.row_mut(y)[x * 3 + c] = (y * 50 + x * 7 + c) as u8;
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
        for channels in [Channels::Rgb, Channels::Bgr] {
            let mut a = vec![0u8; 3 * t_len * 12];
            let mut b = a.clone();
            let mut c = a.clone();
            write_frame(&img, &g, t, t_len, Layout::Ncthw, channels, &lut, &mut a);
            write_frame(&img, &g, t, t_len, Layout::Ntchw, channels, &lut, &mut b);
            write_frame(&img, &g, t, t_len, Layout::Nthwc, channels, &lut, &mut c);
            for ch in 0..3 {
                // Output channel ch holds RGB channel `rgb`.
                let rgb = channels.arrange([0, 1, 2])[ch];
                for y in 0..3 {
                    for x in 0..4 {
                        let src = img.row(1 + y)[(2 + (3 - x)) * 3 + rgb];
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
}
