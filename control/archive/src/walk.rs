//! The one walk over a server's directory, shared by archives and backups: sorted and
//! depth-first (deterministic output, every directory before what it contains), symlinks
//! kept as links whose targets must stay inside the tree, and anything that is not a
//! file, directory or symlink refused rather than silently dropped.

use crate::error::{ArchiveError, IoContext, Result};
use crate::paths::check_symlink_target;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// What an entry of the tree is.
pub(crate) enum Kind {
    Dir,
    File,
    /// A symlink and its (checked, relative) target.
    Symlink(String),
}

/// One entry of the tree, handed to the visitor in walk order.
pub(crate) struct Item {
    /// `/`-separated path relative to the root (the manifest form).
    pub rel: String,
    /// Where it is on disk.
    pub full: PathBuf,
    /// `symlink_metadata` of the entry.
    pub md: fs::Metadata,
    pub kind: Kind,
}

/// Visits every entry below `root` (not `root` itself).
pub(crate) fn walk(root: &Path, mut visit: impl FnMut(Item) -> Result<()>) -> Result<()> {
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut children: Vec<_> = fs::read_dir(&dir)
            .ctx(|| format!("listing {}", dir.display()))?
            .collect::<io::Result<_>>()
            .ctx(|| format!("listing {}", dir.display()))?;
        children.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for child in children {
            let name = child.file_name();
            let Some(name) = name.to_str() else {
                return Err(ArchiveError::Unsupported {
                    path: child.path().display().to_string(),
                    reason: "file name is not valid UTF-8".into(),
                });
            };
            let path = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let full = child.path();
            let md = fs::symlink_metadata(&full).ctx(|| format!("stat {}", full.display()))?;
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                subdirs.push((full.clone(), path.clone()));
                Kind::Dir
            } else if ft.is_file() {
                Kind::File
            } else if ft.is_symlink() {
                let target =
                    fs::read_link(&full).ctx(|| format!("reading link {}", full.display()))?;
                Kind::Symlink(check_symlink_target(&path, &target)?)
            } else {
                return Err(ArchiveError::Unsupported {
                    path,
                    reason: "not a regular file, directory or symlink".into(),
                });
            };
            visit(Item {
                rel: path,
                full,
                md,
                kind,
            })?;
        }
        // reverse so the stack pops them in sorted order
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(())
}
