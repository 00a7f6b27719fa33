//! The generated server-like world both benches use: 5/8 incompressible 4 MiB "region"
//! files in `world/region*`, 3/8 log-like text in `logs/`.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::Path;

pub const FILE: usize = 4 << 20;

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// 5/8 incompressible "region" files, 3/8 log/config-like text.
pub fn generate(root: &Path, total_mib: usize) -> std::io::Result<u64> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let files = total_mib / 4;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; FILE];
    for i in 0..files {
        if i % 8 < 5 {
            let dir = root.join(format!("world/region{}", i % 3));
            fs::create_dir_all(&dir)?;
            rng.fill(&mut buf);
            fs::write(dir.join(format!("r.{}.{}.mca", i / 7, i % 7)), &buf)?;
        } else {
            let dir = root.join(format!("logs/{}", i % 4));
            fs::create_dir_all(&dir)?;
            let mut f = std::io::BufWriter::new(fs::File::create(dir.join(format!("{i}.log")))?);
            let mut written = 0;
            while written < FILE {
                let line = format!(
                    "[{:02}:{:02}:{:02}] [Server thread/INFO]: Player{} moved to x={} y={} z={} in world\n",
                    rng.next() % 24,
                    rng.next() % 60,
                    rng.next() % 60,
                    rng.next() % 50,
                    (rng.next() % 20000) as i64 - 10000,
                    rng.next() % 256,
                    (rng.next() % 20000) as i64 - 10000
                );
                let take = line.len().min(FILE - written);
                f.write_all(&line.as_bytes()[..take])?;
                written += take;
            }
            f.flush()?;
        }
        bytes += FILE as u64;
    }
    Ok(bytes)
}
