//! GGML tensor encodings found in GGUF files, and their conversion to f32: plain F32, F16 and
//! BF16, and the block formats Q4_0, Q4_1 and Q8_0 (32 values per block sharing an f16 scale,
//! plus an f16 minimum for Q4_1).

use half::{bf16, f16};

/// A GGML tensor type this crate can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
}

impl GgmlType {
    /// The type with GGML id `id`, or `Err(id)` for one this crate does not decode.
    pub fn from_id(id: u32) -> Result<Self, u32> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            30 => GgmlType::BF16,
            other => return Err(other),
        })
    }

    /// Values per block.
    pub fn block_len(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0 => 32,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 2 + 16,
            GgmlType::Q4_1 => 2 + 2 + 16,
            GgmlType::Q8_0 => 2 + 32,
        }
    }

    /// The bytes `n` values take, or `None` when `n` is not a whole number of blocks (or the
    /// byte count overflows).
    pub fn byte_len(self, n: usize) -> Option<usize> {
        if n.is_multiple_of(self.block_len()) {
            (n / self.block_len()).checked_mul(self.block_bytes())
        } else {
            None
        }
    }

    /// Decodes `bytes` (exactly [`GgmlType::byte_len`] long) into f32 values.
    pub fn dequantize(self, bytes: &[u8]) -> Vec<f32> {
        let f16_at = |b: &[u8], i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
        let blocks = bytes.chunks_exact(self.block_bytes());
        match self {
            GgmlType::F32 => blocks
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            GgmlType::F16 => blocks.map(|b| f16_at(b, 0)).collect(),
            GgmlType::BF16 => blocks
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            GgmlType::Q4_0 => {
                let mut out = Vec::with_capacity(bytes.len() / 18 * 32);
                for b in blocks {
                    let d = f16_at(b, 0);
                    let qs = &b[2..18];
                    out.extend(qs.iter().map(|&q| ((q & 0x0f) as i32 - 8) as f32 * d));
                    out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
                }
                out
            }
            GgmlType::Q4_1 => {
                let mut out = Vec::with_capacity(bytes.len() / 20 * 32);
                for b in blocks {
                    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                    let qs = &b[4..20];
                    out.extend(qs.iter().map(|&q| (q & 0x0f) as f32 * d + m));
                    out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
                }
                out
            }
            GgmlType::Q8_0 => {
                let mut out = Vec::with_capacity(bytes.len() / 34 * 32);
                for b in blocks {
                    let d = f16_at(b, 0);
                    out.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d));
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn q4_1_low_nibbles_first_then_high() {
        let mut block = Vec::new();
        block.extend(f16_bytes(0.5)); // d
        block.extend(f16_bytes(-1.0)); // m
        block.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
        let v = GgmlType::Q4_1.dequantize(&block);
        assert_eq!(v.len(), 32);
        for j in 0..16 {
            assert_eq!(v[j], j as f32 * 0.5 - 1.0);
            assert_eq!(v[16 + j], (15 - j) as f32 * 0.5 - 1.0);
        }
    }

    #[test]
    fn q8_0_and_q4_0_are_signed() {
        let mut block = Vec::new();
        block.extend(f16_bytes(0.25));
        block.extend((0..32).map(|i: i32| (i - 16) as i8 as u8));
        let v = GgmlType::Q8_0.dequantize(&block);
        assert_eq!(v[0], -4.0);
        assert_eq!(v[31], 15.0 * 0.25);

        let mut block = Vec::new();
        block.extend(f16_bytes(2.0));
        block.extend(std::iter::repeat_n(0x80u8, 16)); // low nibble 0, high nibble 8
        let v = GgmlType::Q4_0.dequantize(&block);
        assert_eq!((v[0], v[16]), (-16.0, 0.0));
    }

    #[test]
    fn sizes_and_ids() {
        assert_eq!(GgmlType::Q4_1.byte_len(64), Some(40));
        assert_eq!(GgmlType::Q8_0.byte_len(33), None);
        assert_eq!(GgmlType::F16.byte_len(3), Some(6));
        assert_eq!(GgmlType::F32.byte_len(usize::MAX / 2), None);
        assert_eq!(GgmlType::from_id(3), Ok(GgmlType::Q4_1));
        assert_eq!(GgmlType::from_id(12), Err(12));
        let v = GgmlType::BF16.dequantize(&bf16::from_f32(1.5).to_le_bytes());
        assert_eq!(v, vec![1.5]);
    }
}
