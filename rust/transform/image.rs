//! The RGB image swscale fills and the writer reads: packed RGB24, rows 64-byte aligned.
use crate::error::{try_zeroed, Result};

/// A frame converted to packed RGB24 at the target size, rows `stride` bytes apart.
pub struct RgbImage {
    buf: Vec<u8>,
    offset: usize,
    pub width: usize,
    pub height: usize,
    pub stride: usize,
}

impl RgbImage {
    /// Panics if the buffer cannot be allocated; `try_new` reports that instead.
    pub fn new(width: usize, height: usize) -> Self {
        Self::try_new(width, height).expect("RgbImage::new")
    }

    /// An image buffer, or `ClipError::OutOfMemory` (→ `MemoryError`) when it cannot be allocated.
    pub fn try_new(width: usize, height: usize) -> Result<Self> {
        // Rows 64-byte aligned, plus a spare row: swscale's SIMD paths want aligned rows and may
        // write a little past the last pixel of a row.
        let stride = width
            .checked_mul(3)
            .map(|b| b.div_ceil(64) * 64)
            .unwrap_or(usize::MAX);
        let len = stride
            .checked_mul(height.saturating_add(1))
            .and_then(|b| b.checked_add(64))
            .unwrap_or(usize::MAX);
        let buf = try_zeroed::<u8>(len, || {
            format!("a {height}x{width} RGB frame buffer for resizing")
        })?;
        let offset = buf.as_ptr().align_offset(64);
        Ok(RgbImage {
            buf,
            offset,
            width,
            height,
            stride,
        })
    }

    pub fn row(&self, y: usize) -> &[u8] {
        let start = self.offset + y * self.stride;
        &self.buf[start..start + self.width * 3]
    }

    pub(super) fn row_mut(&mut self, y: usize) -> &mut [u8] {
        let start = self.offset + y * self.stride;
        &mut self.buf[start..start + self.width * 3]
    }

    pub(super) fn data_mut(&mut self) -> *mut u8 {
        // SAFETY: offset < 64 and the buffer holds 64 spare bytes.
        unsafe { self.buf.as_mut_ptr().add(self.offset) }
    }
}
