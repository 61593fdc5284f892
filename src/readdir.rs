//! Merged directory listings (the kernel's readdir.c concern).
//!
//! Rules served (docs/semantics.md "Directory listings"): upper first, then
//! lowers in order; each name once, from its topmost layer; whiteouts hide
//! the name; an opaque directory stops the merge (its lowers are already cut
//! by lookup); markers never show; `d_ino` is the `st_ino` stat reports.

use crate::lookup::{DirRef, visit_order};
use crate::markers;
use crate::stack::Stack;
use crate::stack::child_path;
use crate::sys;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;

/// One name of a merged listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedEntry {
    pub name: OsString,
    /// `DT_*` type of the topmost object.
    pub dtype: u8,
    pub layer: usize,
    /// Overlay inode number (equals what lookup/stat report).
    pub ino: u64,
}

/// List the merged directory `dir` (without `.` and `..`).
pub fn read_merged(stack: &Stack, dir: &DirRef) -> io::Result<Vec<MergedEntry>> {
    let mut seen: HashSet<OsString> = HashSet::new();
    let mut out = Vec::new();
    for (l, path) in visit_order(stack, dir) {
        let dfd = match stack.dir(l, path) {
            Ok(d) => d,
            Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => continue,
            Err(e) => return Err(e),
        };
        let rd = open_listing(stack, l, dfd.as_fd(), path)?;
        // The kernel only looks for xattr whiteouts where the parent says
        // it holds some (overlay.opaque=x); so do we, to keep listing cheap.
        let xattr_wh = stack.marks(l).holds_xattr_whiteouts(dfd.as_fd())?;
        let mut aufs_hidden = Vec::new();
        for e in sys::read_dir_fd(rd)? {
            if stack.marks(l).is_marker_in(&e.name, stack.is_upper(l)) {
                if let Some(t) = markers::aufs_target(&e.name) {
                    aufs_hidden.push(t.to_os_string());
                }
                continue;
            }
            if seen.contains(&e.name) {
                continue;
            }
            let mut dtype = e.dtype;
            let mut real_ino = e.ino;
            // Lower regular files are stat'ed: a hard-linked one gets a
            // per-path inode number, and an empty one may be an xattr
            // whiteout (hidden here exactly as lookup hides it).
            let is_lower = !stack.is_upper(l);
            let needs_stat = dtype == libc::DT_UNKNOWN
                || dtype == libc::DT_CHR
                || (dtype == libc::DT_REG && (xattr_wh || is_lower));
            let mut ino = None;
            // Without search permission on the directory (an unprivileged
            // daemon) nothing can be stat'ed: list the name as read, except
            // a character device, taken for the whiteout it almost always
            // is (the kernel, checking with the mounter's rights, hides it).
            let st = if needs_stat {
                match sys::fstatat(dfd.as_fd(), &e.name) {
                    Ok(st) => Some(st),
                    Err(err) if sys::errno(&err) == libc::EACCES && stack.marks(l).unprivileged => {
                        None
                    }
                    // Gone since the listing: left out.
                    Err(err) if sys::errno(&err) == libc::ENOENT => continue,
                    // Unknown: it may be a whiteout, so dropping the name
                    // could let a lower one show. The listing fails instead.
                    Err(err) => return Err(err),
                }
            } else {
                None
            };
            if st.is_none() && dtype == libc::DT_CHR {
                seen.insert(e.name);
                continue;
            }
            if let Some(st) = st {
                if stack.marks(l).is_whiteout(dfd.as_fd(), &e.name, &st)? {
                    seen.insert(e.name);
                    continue;
                }
                dtype = dtype_of(st.st_mode);
                real_ino = st.st_ino;
                ino = Some(stack.inos.ino_at(l, &child_path(path, &e.name), &st));
            }
            seen.insert(e.name.clone());
            out.push(MergedEntry {
                ino: ino.unwrap_or_else(|| stack.inos.ino(l, real_ino)),
                name: e.name,
                dtype,
                layer: l,
            });
        }
        seen.extend(aufs_hidden);
    }
    Ok(out)
}

/// A reader opened the merged directory `dir` to list it: move the upper
/// directory's atime as the mount's rule says. Done at open, since the
/// kernel may answer the listing from its cache; every listing the daemon
/// reads itself is O_NOATIME. Returns whether the atime moved.
pub fn accessed(stack: &Stack, dir: &DirRef) -> io::Result<bool> {
    if !stack.has_upper || stack.atime_never(true) {
        return Ok(false);
    }
    let dfd = match stack.upper_dir(dir.path) {
        Ok(d) => d,
        Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => return Ok(false),
        Err(e) => return Err(e),
    };
    let flags = libc::O_RDONLY | libc::O_DIRECTORY;
    let fd = sys::openat(dfd.as_fd(), OsStr::new("."), flags, 0)?;
    let before = sys::fstat(fd.as_fd())?;
    sys::touch_listing(fd.as_fd())?;
    let after = sys::fstat(fd.as_fd())?;
    Ok((before.st_atime, before.st_atime_nsec) != (after.st_atime, after.st_atime_nsec))
}

/// Is the merged directory `entry`, found as `name` in `parent`, empty
/// (the ENOTEMPTY check of rmdir and rename)?
pub fn is_empty(
    stack: &Stack,
    parent: &std::path::Path,
    name: &OsStr,
    entry: &crate::lookup::Entry,
) -> io::Result<bool> {
    let path = child_path(parent, name);
    let lowers = entry.lowers(stack);
    let dir = DirRef {
        path: &path,
        lowers: &lowers,
    };
    Ok(read_merged(stack, &dir)?.is_empty())
}

/// Open a layer's directory for reading (as "." of `dfd`, so listing and
/// stat'ing see one directory), without touching its atime where the
/// kernel lets us.
fn open_listing(
    stack: &Stack,
    layer: usize,
    dfd: std::os::fd::BorrowedFd,
    path: &std::path::Path,
) -> io::Result<std::os::fd::OwnedFd> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY;
    match sys::open_noatime(dfd, OsStr::new("."), flags) {
        // No search permission (a 0600 directory, an unprivileged daemon):
        // still listable, opened by its path from the layer root.
        Err(e) if sys::errno(&e) == libc::EACCES => {
            let root = stack.layers[layer].root.as_fd();
            match sys::open_beneath(root, path, flags | libc::O_NOATIME) {
                Err(e) if sys::errno(&e) == libc::EPERM => sys::open_beneath(root, path, flags),
                r => r,
            }
        }
        r => r,
    }
}

pub fn dtype_of(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFREG => libc::DT_REG,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        _ => libc::DT_UNKNOWN,
    }
}
