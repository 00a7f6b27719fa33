//! Test data: bytes that do not compress, like a world's region files.

/// `len` incompressible bytes (xorshift64*), like region files; the same `seed` gives the
/// same bytes. Big worlds make archive and restore take long enough to interrupt.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}
