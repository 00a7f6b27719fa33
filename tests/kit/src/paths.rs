//! Where things are: the repository, the test peers, the Python that runs `mcstatus`, and
//! a fresh temporary directory per test.

use std::path::{Path, PathBuf};

use crate::ports::free_port;

/// The repository's root (this crate lives in `tests/kit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `tests/peers`: the npm and PyPI peers (see tests/peers/README.md).
pub fn peers_dir() -> PathBuf {
    repo_root().join("tests/peers")
}

/// The Python with mcstatus installed (scripts/install-test-deps.sh makes `.venv`).
pub fn python() -> PathBuf {
    std::env::var("WARDEN_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".venv/bin/python"))
}

/// A new directory under the system's temp dir, unique to this process and call.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "warden-test-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}
