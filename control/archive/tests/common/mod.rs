//! Shared fixtures: a generated server-like tree, a tree fingerprint for byte-identical
//! comparisons, and (from warden-testkit) a real S3-compatible server (moto) for the S3
//! tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use warden_archive::sha256_hex;
use warden_testkit::incompressible;

/// Nested dirs, empty files, a 20 MiB random file, unicode names, an internal symlink,
/// an empty directory and a non-default mode.
pub fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("world/region")).unwrap();
    fs::create_dir_all(root.join("world/DIM-1/region")).unwrap();
    fs::create_dir_all(root.join("plugins/Wörld Édit/日本語")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(
        root.join("world/region/r.0.0.mca"),
        incompressible(20 << 20, 1),
    )
    .unwrap();
    fs::write(
        root.join("world/DIM-1/region/r.-1.0.mca"),
        incompressible(300_000, 2),
    )
    .unwrap();
    fs::write(root.join("world/session.lock"), b"").unwrap();
    fs::write(
        root.join("plugins/Wörld Édit/日本語/😀 emoji.yml"),
        "clé: välue\n".repeat(500),
    )
    .unwrap();
    fs::write(root.join("plugins/Wörld Édit/empty.txt"), b"").unwrap();
    fs::write(
        root.join("server.properties"),
        "motd=A Minecraft Server\n".repeat(100),
    )
    .unwrap();
    let long = format!("{}/{}.dat", "d".repeat(90), "n".repeat(120));
    fs::create_dir_all(root.join(&long).parent().unwrap()).unwrap();
    fs::write(root.join(&long), b"long name").unwrap();
    fs::write(
        root.join("start.sh"),
        b"#!/bin/sh\nexec java -jar server.jar\n",
    )
    .unwrap();
    fs::set_permissions(root.join("start.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("world/session.lock", root.join("lock-link")).unwrap();
}

/// path → "dir" | "file <sha256>" | "symlink <target>", plus file modes: equal fingerprints
/// mean byte-identical trees.
pub fn fingerprint(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
        let md = fs::symlink_metadata(&p).unwrap();
        if md.file_type().is_symlink() {
            out.insert(
                rel,
                format!("symlink {}", fs::read_link(&p).unwrap().display()),
            );
        } else if md.is_dir() {
            out.insert(rel, format!("dir {:o}", md.permissions().mode() & 0o777));
            walk(root, &p, out);
        } else {
            let data = fs::read(&p).unwrap();
            out.insert(
                rel,
                format!(
                    "file {:o} {}",
                    md.permissions().mode() & 0o777,
                    sha256_hex(&data)
                ),
            );
        }
    }
}

/// Flip one byte in the middle of a file.
pub fn flip_byte(path: &Path) {
    let mut data = fs::read(path).unwrap();
    let i = data.len() / 2;
    data[i] ^= 0x01;
    fs::write(path, data).unwrap();
}

/// Sibling directories left behind by a restore of `target` (must be none after failure).
pub fn restoring_siblings(target: &Path) -> Vec<PathBuf> {
    let name = target.file_name().unwrap().to_str().unwrap().to_string();
    fs::read_dir(target.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with(&format!("{name}.restoring-"))
        })
        .collect()
}

#[allow(unused_imports)]
pub use warden_testkit::S3Server;
