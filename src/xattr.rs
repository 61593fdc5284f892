//! Extended attributes through the merged view (the kernel's xattrs.c
//! concern).
//!
//! Rules served (docs/semantics.md "Extended attributes",
//! "Copy-up"): the mount's own `overlay.*` names are stored escaped
//! (`markers::xattr_in_layer`), the other private names (the other
//! namespace's `overlay.*`, `user.fuseoverlayfs.*`) are hidden from get/list
//! and cannot be set or removed; set/remove copy the object up first; only
//! the topmost object's xattrs show.

use crate::copy_up::{self, CopyUp};
use crate::dircache::DirFd;
use crate::lookup::{Entry, split};
use crate::markers::{xattr_in_layer, xattr_in_view};
use crate::stack::Stack;
use crate::sys::{self, XTarget, err};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// A private name of the other namespace reads as absent (ENODATA) and
/// cannot be set (EOPNOTSUPP): marks we obey may not be written through us.
const HIDDEN: i32 = libc::ENODATA;
const REFUSED: i32 = libc::EOPNOTSUPP;

/// Is `real` our mark on a nested overlay's whiteout (a 0/0 device, see
/// `markers::mark_nested_whiteout`)? It is not the object's own xattr: the
/// merged view shows the plain device a filesystem's whiteout is, and it
/// cannot be changed through the mount, which would make it ours.
fn nested_mark(stack: &Stack, entry: &Entry, real: &OsStr) -> bool {
    entry.st.st_mode & libc::S_IFMT == libc::S_IFCHR
        && entry.st.st_rdev == 0
        && real == stack.xattr_ns.name("overlay.whiteout")
}

/// Whether the mount serves extended attributes at all: with `noxattrs`,
/// every xattr request answers EOPNOTSUPP before anything is looked up.
pub fn enabled(stack: &Stack) -> io::Result<()> {
    if stack.view.noxattrs {
        return Err(err(libc::EOPNOTSUPP));
    }
    Ok(())
}

/// The directory holding the topmost object of `entry` (at `path`) in
/// its layer, and its name there; `dir` where the caller has it open.
fn object(
    stack: &Stack,
    path: &Path,
    entry: &Entry,
    dir: Option<DirFd>,
) -> io::Result<(DirFd, OsString)> {
    let (parent, n) = split(path);
    match dir {
        Some(d) => Ok((d, entry.top_name(stack, &n).to_os_string())),
        None => entry.top_dir(stack, &parent, &n),
    }
}

/// `dir`: the directory holding the object in its layer, if the caller
/// has it open already.
pub fn get(
    stack: &Stack,
    path: &Path,
    entry: &Entry,
    dir: Option<DirFd>,
    name: &OsStr,
) -> io::Result<Vec<u8>> {
    let real = xattr_in_layer(stack.xattr_ns, name)
        .filter(|r| !nested_mark(stack, entry, r))
        .ok_or_else(|| err(HIDDEN))?;
    let (dir, n) = object(stack, path, entry, dir)?;
    let v = sys::getxattr(XTarget::At(dir.as_fd(), &n), &real)?;
    Ok(stack.stored_xattr(entry.layer, &real, v))
}

pub fn list(
    stack: &Stack,
    path: &Path,
    entry: &Entry,
    dir: Option<DirFd>,
) -> io::Result<Vec<OsString>> {
    let (dir, n) = object(stack, path, entry, dir)?;
    Ok(sys::listxattr(XTarget::At(dir.as_fd(), &n))?
        .into_iter()
        .filter(|x| !nested_mark(stack, entry, x))
        .filter_map(|x| xattr_in_view(stack.xattr_ns, &x))
        .collect())
}

pub fn set(
    stack: &Stack,
    path: &Path,
    entry: &Entry,
    name: &OsStr,
    value: &[u8],
    flags: i32,
) -> io::Result<()> {
    stack.upper_or_erofs()?;
    let real = xattr_in_layer(stack.xattr_ns, name)
        .filter(|r| !nested_mark(stack, entry, r))
        .ok_or_else(|| err(REFUSED))?;
    let up = copy_up::copy_up(stack, path, entry, CopyUp { data: true })?;
    let (_, n) = split(path);
    let obj = sys::Pinned::expect(up.as_fd(), &n, entry.st.st_mode)?;
    sys::setxattr(obj.xattrs(up.as_fd(), &n), &real, value, flags)
}

pub fn remove(stack: &Stack, path: &Path, entry: &Entry, name: &OsStr) -> io::Result<()> {
    stack.upper_or_erofs()?;
    let real = xattr_in_layer(stack.xattr_ns, name)
        .filter(|r| !nested_mark(stack, entry, r))
        .ok_or_else(|| err(HIDDEN))?;
    // Like the kernel: removing an absent xattr fails without a copy-up.
    if !entry.in_upper(stack) {
        get(stack, path, entry, None, name)?;
    }
    let up = copy_up::copy_up(stack, path, entry, CopyUp { data: true })?;
    let (_, n) = split(path);
    let obj = sys::Pinned::expect(up.as_fd(), &n, entry.st.st_mode)?;
    sys::removexattr(obj.xattrs(up.as_fd(), &n), &real)
}

/// The same calls on an object known only by an open fd on its upper file
/// (an O_TMPFILE file not linked yet, or one unlinked while open): a nested
/// overlay's copy-up marks its tmpfile before it links it in.
pub fn get_fd(stack: &Stack, fd: BorrowedFd, name: &OsStr) -> io::Result<Vec<u8>> {
    let real = xattr_in_layer(stack.xattr_ns, name).ok_or_else(|| err(HIDDEN))?;
    sys::getxattr(XTarget::Fd(fd), &real)
}

pub fn list_fd(stack: &Stack, fd: BorrowedFd) -> io::Result<Vec<OsString>> {
    Ok(sys::listxattr(XTarget::Fd(fd))?
        .into_iter()
        .filter_map(|x| xattr_in_view(stack.xattr_ns, &x))
        .collect())
}

pub fn set_fd(
    stack: &Stack,
    fd: BorrowedFd,
    name: &OsStr,
    value: &[u8],
    flags: i32,
) -> io::Result<()> {
    stack.upper_or_erofs()?;
    let real = xattr_in_layer(stack.xattr_ns, name).ok_or_else(|| err(REFUSED))?;
    sys::setxattr(XTarget::Fd(fd), &real, value, flags)
}

pub fn remove_fd(stack: &Stack, fd: BorrowedFd, name: &OsStr) -> io::Result<()> {
    stack.upper_or_erofs()?;
    let real = xattr_in_layer(stack.xattr_ns, name).ok_or_else(|| err(HIDDEN))?;
    sys::removexattr(XTarget::Fd(fd), &real)
}
