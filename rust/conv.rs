//! One fused float32 kernel for the SP students' first two stages on the CPU: the temporal (3,1,1)
//! conv (padding (1,0,0)) + bias + ReLU + the max-pool that follows it ((1,2,2) after conv1, (2,2,2)
//! after conv2), on channels-last memory, with AVX-512.
//!
//! Why fused and hand-written: at full resolution these convs have few channels (64→64 at 112²,
//! 128→128 at 56²), so PyTorch's oneDNN conv writes a 411 MB / 205 MB activation that the pool then
//! reads again — memory traffic of the same order as the arithmetic on a 2-core machine, and pool1
//! alone cost ~35 ms a batch of 8. Here each output tile stays in registers until it is pooled, so only
//! the pooled quarter (or eighth) is ever written, and a job walks the frames of one band of rows so
//! each input frame is read from memory once (the three frames a tile needs stay in L2). A first
//! version without the pool (branch experiment/rust-conv) was only as fast as oneDNN; the gain is the
//! traffic. No maintained Rust crate offers a convolution over strided segments with a pooling
//! epilogue (gemm / matrixmultiply would need an im2col copy or three accumulating calls per frame,
//! and still a separate pool), so the kernel is ~80 lines of `std::arch` intrinsics; where AVX-512F
//! is missing, the Python side keeps PyTorch's path.
//!
//! Memory: input (N, T, H, W, C) — PyTorch's channels-last-3d (N, C, T, H, W) — output
//! (N, T/pt, H/2, W/2, Cout) (floors, as max-pool without padding gives).
use rayon::prelude::*;

use crate::error::{ClipError, Result};
use crate::threads::ThreadPools;

/// Output channels per register tile (two 16-lane registers).
const NR: usize = 32;
/// Input columns per full register tile: 2 rows × 6 columns × 2 registers = 24 accumulators, which
/// pool to 3 output pixels.
const COLS: usize = 6;

/// True when this CPU can run the kernel (AVX-512F); otherwise callers use PyTorch.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Input channel counts the kernel is compiled for (its inner loop length is a constant). Wider
/// convs (256 channels at 28², sp's conv3b) measured no faster than oneDNN + pool: their frames are
/// small, and a tile's 96 KB of weights no longer fit in L1.
pub fn supported_channels(c: usize) -> bool {
    matches!(c, 32 | 64 | 128)
}

/// Shape of one call: input (n, t, h, w, c), `cout` output channels, temporal pool `pt` (1 or 2); the
/// spatial pool is always 2×2, stride 2.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n: usize,
    pub t: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub cout: usize,
    pub pt: usize,
}

impl Shape {
    /// (t, h, w) of the pooled output (`pt` must be 1 or 2: `check` and the Python binding see to
    /// that before calling this).
    pub fn out_dims(&self) -> (usize, usize, usize) {
        (self.t / self.pt.max(1), self.h / 2, self.w / 2)
    }

    /// Values in the output, `None` when the count overflows.
    pub fn out_len(&self) -> Option<usize> {
        let (to, ho, wo) = self.out_dims();
        product(&[self.n, to, ho, wo, self.cout])
    }

    /// Values in the input, `None` when the count overflows.
    pub fn in_len(&self) -> Option<usize> {
        product(&[self.n, self.t, self.h, self.w, self.c])
    }
}

/// The product of `dims`, `None` on overflow (a wrapped size could pass the length checks and let
/// the kernel read or write out of bounds).
fn product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn invalid(why: String) -> ClipError {
    // Named as Python calls it (`_native.kernel_temporal_conv_pool`), where these errors surface.
    ClipError::invalid("kernel_temporal_conv_pool", why)
}

fn check(s: &Shape, input: usize, weight: usize, bias: usize, out: usize) -> Result<()> {
    if !available() {
        return Err(invalid("this CPU has no AVX-512F".into()));
    }
    if !supported_channels(s.c) {
        return Err(invalid(format!(
            "input channels {} not in 32, 64, 128",
            s.c
        )));
    }
    if s.cout == 0 || !s.cout.is_multiple_of(NR) {
        return Err(invalid(format!(
            "output channels {} not a multiple of {NR}",
            s.cout
        )));
    }
    if s.pt != 1 && s.pt != 2 {
        return Err(invalid(format!("temporal pool {} is not 1 or 2", s.pt)));
    }
    let (to, ho, wo) = s.out_dims();
    if s.n == 0 || to == 0 || ho == 0 || wo == 0 {
        return Err(invalid(format!("shape {s:?} pools to an empty output")));
    }
    let (Some(in_len), Some(out_len)) = (s.in_len(), s.out_len()) else {
        return Err(invalid(format!("shape {s:?} is beyond the address space")));
    };
    if input != in_len {
        return Err(invalid(format!(
            "input has {input} values, shape {s:?} needs {in_len}"
        )));
    }
    if product(&[s.cout, s.c, 3]) != Some(weight) || bias != s.cout {
        return Err(invalid(format!(
            "weight {weight} / bias {bias} values do not match {s:?}"
        )));
    }
    if out != out_len {
        return Err(invalid(format!(
            "output has {out} values, expected {out_len}"
        )));
    }
    Ok(())
}

/// Pack PyTorch's (Cout, C, 3, 1, 1) weight into [Cout/NR][3][C][NR]: for each frame offset and input
/// channel, the NR output channels of one tile are contiguous (two aligned-size loads per K step).
fn pack(weight: &[f32], cout: usize, c: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; cout * c * 3];
    for co in 0..cout {
        let (chunk, j) = (co / NR, co % NR);
        for ci in 0..c {
            for s in 0..3 {
                out[((chunk * 3 + s) * c + ci) * NR + j] = weight[(co * c + ci) * 3 + s];
            }
        }
    }
    out
}

/// The output pointer, shared by jobs that write disjoint pooled rows.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: job (n, yo) writes only output row yo of clip n, for every pooled frame; jobs never overlap.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// The kernel's own rayon thread pools (as many workers as `threads`, within `read_clips`'s bounds),
/// not `read_clips`'s: a `ClipLoader` prefetch thread in the same process keeps the decoding thread
/// pools busy with whole videos, and a model's forward pass on a shared one would queue its conv
/// behind them.
fn thread_pool(threads: usize) -> Result<std::sync::Arc<rayon::ThreadPool>> {
    CONV_THREAD_POOLS.get(threads)
}

/// The kernel's thread pools (see `thread_pool`).
pub(crate) static CONV_THREAD_POOLS: ThreadPools = ThreadPools::new("c3d-conv");

/// max-pool(pt, 2, 2)(ReLU(conv(3,1,1)(x) + bias)): `input` (N, T, H, W, C), `weight` (Cout, C, 3)
/// in PyTorch's memory order, `out` (N, T/pt, H/2, W/2, Cout). Frames or rows the pool's floor drops
/// are not computed. `threads`: workers of the kernel's own thread pool (see `thread_pool`).
pub fn temporal_conv_pool(
    input: &[f32],
    shape: Shape,
    weight: &[f32],
    bias: &[f32],
    out: &mut [f32],
    threads: usize,
) -> Result<()> {
    check(&shape, input.len(), weight.len(), bias.len(), out.len())?;
    let packed = pack(weight, shape.cout, shape.c);
    let (_, ho, _) = shape.out_dims();
    let outp = OutPtr(out.as_mut_ptr());
    let workers = thread_pool(threads)?;
    workers.install(|| {
        (0..shape.n * ho).into_par_iter().for_each(|job| {
            let o = outp;
            // SAFETY: sizes checked by `check`; AVX-512F checked there too; this job's writes are
            // its own output row (see OutPtr).
            unsafe { run_job(input, &shape, &packed, bias, o.0, job / ho, job % ho) }
        })
    });
    Ok(())
}

/// All pooled frames of output row `yo` of clip `n`.
///
/// # Safety
/// `input`, `packed`, `bias` and the output at `out` have the sizes `check` verified; AVX-512F.
unsafe fn run_job(
    input: &[f32],
    s: &Shape,
    packed: &[f32],
    bias: &[f32],
    out: *mut f32,
    n: usize,
    yo: usize,
) {
    let (to, ho, wo) = s.out_dims();
    let frame = s.h * s.w * s.c;
    let row = s.w * s.c;
    for t in 0..to * s.pt {
        // The frames t-1, t, t+1 that exist (zero padding elsewhere): (weight slice, row 2·yo of it).
        let mut segs = [(0usize, std::ptr::null::<f32>()); 3];
        let mut nseg = 0;
        for k in 0..3 {
            let src = t + k;
            if src >= 1 && src <= s.t {
                let off = (n * s.t + src - 1) * frame + 2 * yo * row;
                segs[nseg] = (k, input.as_ptr().add(off));
                nseg += 1;
            }
        }
        let first = t % s.pt == 0;
        let orow = out.add(((n * to + t / s.pt) * ho + yo) * wo * s.cout);
        for chunk in 0..s.cout / NR {
            let b = packed.as_ptr().add(chunk * 3 * s.c * NR);
            let bias = bias.as_ptr().add(chunk * NR);
            let mut x0 = 0;
            while x0 + 2 <= 2 * wo {
                let cols = COLS.min(2 * wo - x0);
                let tile = Tile {
                    segs: &segs[..nseg],
                    col: x0 * s.c,
                    row,
                    b,
                    bias,
                    out: orow.add((x0 / 2) * s.cout + chunk * NR),
                    ostride: s.cout,
                    first,
                };
                dispatch(s.c, cols, &tile);
                x0 += cols;
            }
        }
    }
}

/// One register tile: input columns `col..` (in floats) of the two rows at each segment pointer.
struct Tile<'a> {
    segs: &'a [(usize, *const f32)],
    col: usize,
    row: usize,
    b: *const f32,
    bias: *const f32,
    out: *mut f32,
    ostride: usize,
    first: bool,
}

unsafe fn dispatch(c: usize, cols: usize, t: &Tile) {
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! by_cols {
            ($c:literal) => {
                match cols {
                    6 => avx512::tile::<$c, 6>(t),
                    4 => avx512::tile::<$c, 4>(t),
                    2 => avx512::tile::<$c, 2>(t),
                    _ => unreachable!("tiles cover an even number of columns"),
                }
            };
        }
        match c {
            32 => by_cols!(32),
            64 => by_cols!(64),
            128 => by_cols!(128),
            _ => unreachable!("checked by supported_channels"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (c, cols, t);
        unreachable!("checked by available");
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Tile, NR};
    use std::arch::x86_64::*;

    /// acc[r][j] = Σ_segments Σ_l A_r[j·C + l] · B[s][l][..NR] over 2 rows × X columns, then per
    /// 2×2 window: max, + bias, ReLU, and a store (or, for the second frame of a temporal pool, a max
    /// with what the first frame stored). `max(a) + b == max(a + b)` exactly (rounding is monotone).
    ///
    /// # Safety
    /// AVX-512F; each segment pointer has `col + (X-1)·C + C` readable floats in both rows (`row`
    /// apart); `b` has 3·C·NR floats per frame offset; `out` has X/2 pixels at stride `ostride`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::needless_range_loop)] // j indexes the input columns and both rows' accumulators
    pub unsafe fn tile<const C: usize, const X: usize>(t: &Tile) {
        let zero = _mm512_setzero_ps();
        let mut acc = [[[zero; 2]; X]; 2];
        for &(k, base) in t.segs {
            let a0 = base.add(t.col);
            let a1 = a0.add(t.row);
            let bk = t.b.add(k * C * NR);
            for l in 0..C {
                let w0 = _mm512_loadu_ps(bk.add(l * NR));
                let w1 = _mm512_loadu_ps(bk.add(l * NR + 16));
                for j in 0..X {
                    let x = _mm512_set1_ps(*a0.add(j * C + l));
                    acc[0][j][0] = _mm512_fmadd_ps(x, w0, acc[0][j][0]);
                    acc[0][j][1] = _mm512_fmadd_ps(x, w1, acc[0][j][1]);
                    let y = _mm512_set1_ps(*a1.add(j * C + l));
                    acc[1][j][0] = _mm512_fmadd_ps(y, w0, acc[1][j][0]);
                    acc[1][j][1] = _mm512_fmadd_ps(y, w1, acc[1][j][1]);
                }
            }
        }
        let bias = [_mm512_loadu_ps(t.bias), _mm512_loadu_ps(t.bias.add(16))];
        for p in 0..X / 2 {
            for h in 0..2 {
                let m = _mm512_max_ps(
                    _mm512_max_ps(acc[0][2 * p][h], acc[0][2 * p + 1][h]),
                    _mm512_max_ps(acc[1][2 * p][h], acc[1][2 * p + 1][h]),
                );
                let mut v = _mm512_max_ps(_mm512_add_ps(m, bias[h]), zero);
                let o = t.out.add(p * t.ostride + 16 * h);
                if !t.first {
                    v = _mm512_max_ps(v, _mm512_loadu_ps(o));
                }
                _mm512_storeu_ps(o, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n).map(|_| lcg(&mut s)).collect()
    }

    /// The definition: conv, bias, ReLU at every input position, then the max over each window.
    fn reference(x: &[f32], s: &Shape, w: &[f32], bias: &[f32]) -> Vec<f32> {
        let (to, ho, wo) = s.out_dims();
        let mut out = vec![f32::NEG_INFINITY; s.out_len().unwrap()];
        for n in 0..s.n {
            for t in 0..to * s.pt {
                for y in 0..ho * 2 {
                    for xx in 0..wo * 2 {
                        for co in 0..s.cout {
                            let mut acc = bias[co] as f64;
                            for k in 0..3 {
                                let st = t as isize + k as isize - 1;
                                if st < 0 || st >= s.t as isize {
                                    continue;
                                }
                                for ci in 0..s.c {
                                    let i =
                                        (((n * s.t + st as usize) * s.h + y) * s.w + xx) * s.c + ci;
                                    acc += x[i] as f64 * w[(co * s.c + ci) * 3 + k] as f64;
                                }
                            }
                            let v = acc.max(0.0) as f32;
                            let o =
                                (((n * to + t / s.pt) * ho + y / 2) * wo + xx / 2) * s.cout + co;
                            out[o] = out[o].max(v);
                        }
                    }
                }
            }
        }
        out
    }

    fn check_against_reference(s: Shape) {
        let x = rand(s.n * s.t * s.h * s.w * s.c, 1);
        let w = rand(s.cout * s.c * 3, 2);
        let bias = rand(s.cout, 3);
        let mut y = vec![f32::NAN; s.out_len().unwrap()];
        temporal_conv_pool(&x, s, &w, &bias, &mut y, 2).unwrap();
        let want = reference(&x, &s, &w, &bias);
        for (i, (g, r)) in y.iter().zip(&want).enumerate() {
            assert!((g - r).abs() < 1e-4, "{s:?} at {i}: {g} vs {r}");
        }
    }

    #[test]
    fn matches_the_definition() {
        if !available() {
            return;
        }
        // Odd sizes: a 4- and a 2-column tile, a row and a frame the pool drops, both pools.
        check_against_reference(Shape {
            n: 2,
            t: 5,
            h: 5,
            w: 22,
            c: 64,
            cout: 64,
            pt: 1,
        });
        check_against_reference(Shape {
            n: 1,
            t: 5,
            h: 4,
            w: 20,
            c: 32,
            cout: 96,
            pt: 2,
        });
        check_against_reference(Shape {
            n: 1,
            t: 1,
            h: 2,
            w: 2,
            c: 128,
            cout: 32,
            pt: 1,
        });
    }

    #[test]
    fn runs_while_the_decoding_pool_is_busy() {
        use std::sync::mpsc;
        use std::time::Duration;
        // Hold the one-worker decoding thread pool, as a ClipLoader prefetch thread decoding would.
        let decoding = crate::threads::decode_thread_pool(1).unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let busy = std::thread::spawn(move || {
            decoding.install(move || {
                started_tx.send(()).unwrap();
                let _ = release_rx.recv_timeout(Duration::from_secs(60));
            })
        });
        started_rx.recv().unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let s = Shape {
                n: 1,
                t: 2,
                h: 2,
                w: 2,
                c: 32,
                cout: 32,
                pt: 1,
            };
            let r = if available() {
                let mut y = vec![0.0; s.out_len().unwrap()];
                let (x, w, b) = (vec![1.0; 2 * 4 * 32], vec![0.5; 32 * 32 * 3], vec![0.0; 32]);
                temporal_conv_pool(&x, s, &w, &b, &mut y, 1).map(|_| y[0])
            } else {
                thread_pool(1).map(|p| p.install(|| 32.0))
            };
            let _ = done_tx.send(r.map_err(|e| e.to_string()));
        });
        let r = done_rx.recv_timeout(Duration::from_secs(20));
        release_tx.send(()).unwrap();
        busy.join().unwrap();
        // Two frames of ones, weights 0.5 over 32 channels: 2 x 32 x 0.5 = 32 at every output.
        assert_eq!(
            r,
            Ok(Ok(32.0)),
            "the conv waited for the decoding thread pool"
        );
    }

    #[test]
    fn bad_shapes_are_errors() {
        if !available() {
            return;
        }
        let s = Shape {
            n: 1,
            t: 2,
            h: 4,
            w: 4,
            c: 64,
            cout: 64,
            pt: 1,
        };
        let (x, w, b) = (
            vec![0.0; 2 * 16 * 64],
            vec![0.0; 64 * 64 * 3],
            vec![0.0; 64],
        );
        let mut y = vec![0.0; s.out_len().unwrap()];
        assert!(temporal_conv_pool(&x[1..], s, &w, &b, &mut y, 1).is_err());
        assert!(temporal_conv_pool(&x, Shape { c: 3, ..s }, &w, &b, &mut y, 1).is_err());
        assert!(temporal_conv_pool(&x, Shape { pt: 3, ..s }, &w, &b, &mut y, 1).is_err());
        assert!(temporal_conv_pool(&x, Shape { h: 1, ..s }, &w, &b, &mut y, 1).is_err());
        assert!(temporal_conv_pool(&x, s, &w, &b, &mut y[1..], 1).is_err());
        // No division by a zero pool, and sizes whose product wraps are refused, not wrapped.
        assert!(temporal_conv_pool(&x, Shape { pt: 0, ..s }, &w, &b, &mut y, 1).is_err());
        let huge = Shape {
            n: 1 << 62,
            t: 4,
            ..s
        };
        let err = temporal_conv_pool(&x, huge, &w, &b, &mut y, 1).unwrap_err();
        assert!(err.to_string().contains("address space"), "{err}");
    }
}
