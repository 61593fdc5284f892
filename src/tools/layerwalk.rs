//! Walk one layer directory (never following symlinks) and classify each
//! entry with the library's marker rules: shared by `diff` and `export`.

use crate::markers::{self, MarkPolicy};
use crate::sys::{self, Stat};
use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// One entry of a layer, in walk order (parents before children, sorted).
pub struct Item {
    pub rel: PathBuf,
    pub st: Stat,
    pub kind: ItemKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    /// A whiteout in any form: the name is deleted.
    Whiteout,
    Dir {
        opaque: bool,
    },
    Other,
}

/// Walk `root` reading marks as `marks` says; AUFS markers (where obeyed)
/// are folded into the entries they describe.
pub fn walk(root: &Path, marks: &MarkPolicy) -> std::io::Result<Vec<Item>> {
    let fd = sys::open_path(root, libc::O_PATH | libc::O_DIRECTORY)?;
    let mut out = Vec::new();
    walk_dir(marks, fd.as_fd(), Path::new(""), &mut out)?;
    Ok(out)
}

fn walk_dir(
    marks: &MarkPolicy,
    root: std::os::fd::BorrowedFd,
    rel: &Path,
    out: &mut Vec<Item>,
) -> std::io::Result<()> {
    let dir = sys::open_dir(root, rel)?;
    let rd = sys::openat(
        dir.as_fd(),
        std::ffi::OsStr::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )?;
    let mut names: Vec<OsString> = sys::read_dir_fd(rd)?.into_iter().map(|e| e.name).collect();
    names.sort();
    for n in names {
        // An upper's AUFS whiteouts count too: diff and export read
        // layers, not a mount's upper.
        let aufs = marks.is_marker_in(&n, false);
        if aufs && n == markers::AUFS_OPAQUE {
            continue;
        }
        let child = rel.join(&n);
        if let Some(target) = markers::aufs_target(&n).filter(|_| aufs) {
            let st = sys::fstatat(dir.as_fd(), &n)?;
            out.push(Item {
                rel: rel.join(target),
                st,
                kind: ItemKind::Whiteout,
            });
            continue;
        }
        let st = sys::fstatat(dir.as_fd(), &n)?;
        if marks.is_whiteout(dir.as_fd(), &n, &st)? {
            out.push(Item {
                rel: child,
                st,
                kind: ItemKind::Whiteout,
            });
        } else if sys::is_dir(&st) {
            let opaque = marks.is_opaque(dir.as_fd(), &n)?;
            out.push(Item {
                rel: child.clone(),
                st,
                kind: ItemKind::Dir { opaque },
            });
            walk_dir(marks, root, &child, out)?;
        } else {
            out.push(Item {
                rel: child,
                st,
                kind: ItemKind::Other,
            });
        }
    }
    Ok(())
}
