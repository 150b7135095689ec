//! Where a clip's crop window sits in the resized frame, and which part of a frame the windows
//! that take it need (so conversion can skip the rest).

/// Where one clip's crop window sits in the resized frame, and whether it is mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
    pub flip: bool,
}

/// The part of a resized frame that is needed (rows `y0..y1`, columns `x0..x1`): the union of the
/// crop windows that take the frame. Conversion to RGB may skip what lies outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub y0: usize,
    pub y1: usize,
    pub x0: usize,
    pub x1: usize,
}

impl Region {
    pub fn full(width: usize, height: usize) -> Self {
        Region {
            y0: 0,
            y1: height,
            x0: 0,
            x1: width,
        }
    }

    pub fn of(g: &Geometry) -> Self {
        Region {
            y0: g.top,
            y1: g.top + g.height,
            x0: g.left,
            x1: g.left + g.width,
        }
    }

    pub fn union(self, o: Region) -> Self {
        Region {
            y0: self.y0.min(o.y0),
            y1: self.y1.max(o.y1),
            x0: self.x0.min(o.x0),
            x1: self.x1.max(o.x1),
        }
    }
}
