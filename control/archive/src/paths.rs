//! Tar entry paths come from untrusted places (a container's data directory, or a tampered
//! archive), so every path and link target is checked lexically before anything touches the
//! filesystem: no absolute paths, no `..`, no link that resolves outside the tree.

use crate::error::{ArchiveError, Result};
use std::path::{Component, Path};

fn unsafe_path(path: &str, reason: &str) -> ArchiveError {
    ArchiveError::UnsafePath {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// Normalise a tar entry path to the manifest form (`a/b/c`), rejecting anything that could
/// escape the extraction root. `Ok(None)` for the root itself (`.`, `./`).
pub(crate) fn normalize_entry_path(path: &Path) -> Result<Option<String>> {
    let shown = path.to_string_lossy();
    let Some(s) = path.to_str() else {
        return Err(ArchiveError::Unsupported {
            path: shown.into_owned(),
            reason: "path is not valid UTF-8".into(),
        });
    };
    if s.contains('\0') {
        return Err(unsafe_path(s, "contains NUL"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => match p.to_str() {
                Some(p) => parts.push(p),
                None => return Err(unsafe_path(s, "path is not valid UTF-8")),
            },
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_path(s, "contains `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_path(s, "absolute path"))
            }
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    Ok(Some(parts.join("/")))
}

/// Check that a symlink at `link_path` (normalised, relative to the root) pointing at
/// `target` resolves inside the root, judged lexically (intermediate symlinks are refused
/// separately at extraction time, so lexical is enough).
pub(crate) fn check_symlink_target(link_path: &str, target: &Path) -> Result<String> {
    let Some(t) = target.to_str() else {
        return Err(ArchiveError::Unsupported {
            path: link_path.to_string(),
            reason: "symlink target is not valid UTF-8".into(),
        });
    };
    if t.is_empty() {
        return Err(unsafe_path(link_path, "empty symlink target"));
    }
    // the link lives in its parent directory; depth = number of parent segments
    let mut depth: usize = link_path.split('/').count() - 1;
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return Err(unsafe_path(
                        link_path,
                        &format!("symlink target `{t}` escapes the archive root"),
                    ));
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_path(
                    link_path,
                    &format!("symlink target `{t}` is absolute"),
                ))
            }
        }
    }
    Ok(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize() {
        let n = |p: &str| normalize_entry_path(Path::new(p));
        assert_eq!(n("./a/b/").unwrap().as_deref(), Some("a/b"));
        assert_eq!(n("a//b").unwrap().as_deref(), Some("a/b"));
        assert_eq!(n("./").unwrap(), None);
        assert_eq!(
            n("wörld/r.0.0.mca").unwrap().as_deref(),
            Some("wörld/r.0.0.mca")
        );
        for bad in ["../x", "a/../../x", "a/..", "/etc/passwd"] {
            assert!(
                matches!(n(bad), Err(ArchiveError::UnsafePath { .. })),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn symlinks() {
        let c = |l: &str, t: &str| check_symlink_target(l, Path::new(t));
        assert!(c("a/link", "../b").is_ok());
        assert!(c("a/b/link", "../../c").is_ok());
        assert!(c("link", "sub/./x").is_ok());
        assert!(c("link", "../x").is_err());
        assert!(c("a/link", "../../x").is_err());
        assert!(c("a/link", "b/../../../x").is_err());
        assert!(c("link", "/etc").is_err());
        assert!(c("link", "").is_err());
    }
}
