//! Test data: bytes that do not compress, like a world's region files.

/// `len` incompressible bytes (xorshift), like region files; the same `seed` gives the
/// same bytes. Big worlds make archive and restore take long enough to interrupt.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
