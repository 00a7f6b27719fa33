//! Archive storage for sleeping servers: zstd, manifest, verify before delete (issue 3).
