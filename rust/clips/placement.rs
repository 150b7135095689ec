//! Where each clip's crop window sits and whether it is mirrored: a pure function of the spec and
//! the clip's position in the request.
use super::request::{Flip, Spec};
use crate::transform::Geometry;

/// splitmix64: a tiny, well-mixed generator; the stream for a clip depends on (seed, position) only,
/// so a clip's random crop and flip do not change with the thread count or the batch's other clips.
struct Rng(u64);

impl Rng {
    fn for_clip(seed: u64, position: usize) -> Self {
        let mut r = Rng(seed ^ 0x9E37_79B9_7F4A_7C15);
        let s = r.next() ^ (position as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        Rng(s)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..=n.
    fn up_to(&mut self, n: usize) -> usize {
        (self.next() % (n as u64 + 1)) as usize
    }
}

/// Crop placement and flip of the clip at `position`, for a resized frame of `sh`×`sw`.
pub(super) fn geometry(
    spec: &Spec,
    position: usize,
    sh: usize,
    sw: usize,
    ch: usize,
    cw: usize,
) -> Geometry {
    let mut rng = Rng::for_clip(spec.seed, position);
    let (top, left) = if spec.random_crop {
        let top = rng.up_to(sh - ch);
        (top, rng.up_to(sw - cw))
    } else {
        // Centre, rounding half to even like torchvision's CenterCrop (int(round(x))).
        let centre = |d: usize| ((d as f64) / 2.0).round_ties_even() as usize;
        (centre(sh - ch), centre(sw - cw))
    };
    let flip = match spec.flip {
        Flip::Never => false,
        Flip::Always => true,
        Flip::Random => rng.next() >> 63 == 1,
    };
    Geometry {
        top,
        left,
        height: ch,
        width: cw,
        flip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_depends_on_seed_and_position_only() {
        let a: Vec<u64> = (0..4).map(|p| Rng::for_clip(1, p).next()).collect();
        let b: Vec<u64> = (0..4).map(|p| Rng::for_clip(1, p).next()).collect();
        assert_eq!(a, b);
        assert_ne!(Rng::for_clip(1, 0).next(), Rng::for_clip(2, 0).next());
        assert_ne!(a[0], a[1]);
    }
}
