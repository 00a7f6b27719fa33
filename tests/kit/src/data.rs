//! Test data: bytes that do not compress, like a world's region files, and a directory
//! tree read into memory to compare worlds byte for byte.

use std::collections::BTreeMap;
use std::path::Path;

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

/// Every file below `root`: relative path → contents.
pub fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read a directory") {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .expect("below root")
                    .display()
                    .to_string();
                out.insert(rel, std::fs::read(&p).expect("read a file"));
            }
        }
    }
    out
}
