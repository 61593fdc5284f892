//! Whiteouts and opaque marks: which on-disk forms a mount obeys (its
//! [`MarkPolicy`], the one place that decides), and the kernel's form written.
//!
//! Rules served (docs/semantics.md "Markers on disk"):
//! read 0/0 character devices always, but for a nested overlay's whiteout
//! (one carrying the escaped `overlay.overlay.whiteout`); with
//! `marks=kernel` (a root mount's default) only the mount's own xattr
//! namespace (`trusted.overlay.*`, or
//! `user.overlay.*` with `userxattr`), as the kernel overlayfs; with
//! `marks=all` (an unprivileged mount's default, and the tools') also the
//! other namespace, `user.fuseoverlayfs.opaque` and the OCI/AUFS files
//! `.wh.NAME` and `.wh..wh..opq` (both in lowers; the latter also in the
//! upper, where unprivileged fuse-overlayfs writes it). Write 0/0 whiteouts
//! (xattr whiteout where mknod is refused) and `overlay.opaque=y` in the
//! mount's namespace. A failure to read a mark is an error, never "no mark".

use crate::options::Marks;
use crate::sys::{self, Stat, XTarget};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Which xattr namespace carries the overlay's private marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrNs {
    Trusted,
    User,
}

impl XattrNs {
    pub fn prefix(self) -> &'static str {
        match self {
            XattrNs::Trusted => "trusted.overlay.",
            XattrNs::User => "user.overlay.",
        }
    }
    pub fn name(self, suffix: &str) -> OsString {
        OsString::from(format!("{}{}", self.prefix(), suffix))
    }
}

pub const AUFS_PREFIX: &[u8] = b".wh.";
pub const AUFS_OPAQUE: &str = ".wh..wh..opq";
const FUSEOVERLAYFS_OPAQUE: &str = "user.fuseoverlayfs.opaque";

/// The marks on a directory that steer a lookup below it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirMarks {
    /// Opaque: no lower directory merges into it.
    pub opaque: bool,
    /// The raw `overlay.redirect` value, unchecked (see `lookup`).
    pub redirect: Option<Box<[u8]>>,
}

/// Which marks a mount obeys. A mark is obeyed only where whoever could
/// write it may decide what the mount shows: a root mount's lowers may hold
/// files an ordinary user owns, and `user.*` xattrs and `.wh.` files are
/// theirs to write, so by default only the mount's own namespace counts
/// (`trusted.*` needs CAP_SYS_ADMIN), as in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkPolicy {
    /// The mount's own namespace: always obeyed.
    pub ns: XattrNs,
    /// Also the other namespace, `user.fuseoverlayfs.opaque` and AUFS files.
    pub foreign: bool,
    /// The daemon is not root: it may be refused what the kernel, reading
    /// with the mounter's rights, would see (see [`MarkPolicy::absent`]).
    pub unprivileged: bool,
}

impl MarkPolicy {
    /// The policy of a mount: `marks` as asked, else `kernel` for a root
    /// daemon and `all` for an unprivileged one (everything it can read
    /// there is the user's own view: any mark it obeys, the user could as
    /// well have left out of the layers it mounts).
    pub fn new(ns: XattrNs, marks: Option<Marks>, unprivileged: bool) -> Self {
        let marks = marks.unwrap_or(if unprivileged {
            Marks::All
        } else {
            Marks::Kernel
        });
        MarkPolicy {
            ns,
            foreign: marks == Marks::All,
            unprivileged,
        }
    }

    /// Every form, as the tools read unpacked layers and uppers of any kind.
    pub fn all() -> Self {
        MarkPolicy {
            ns: XattrNs::User,
            foreign: true,
            unprivileged: sys::geteuid() != 0,
        }
    }

    /// The overlay namespaces whose marks count.
    fn namespaces(&self) -> &'static [XattrNs] {
        match (self.foreign, self.ns) {
            (true, _) => &[XattrNs::Trusted, XattrNs::User],
            (false, XattrNs::Trusted) => &[XattrNs::Trusted],
            (false, XattrNs::User) => &[XattrNs::User],
        }
    }

    /// The xattrs that make a directory opaque with the value `y`.
    pub fn opaque_names(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = self.namespaces().iter().map(|n| n.name("opaque")).collect();
        if self.foreign {
            v.push(FUSEOVERLAYFS_OPAQUE.into());
        }
        v
    }

    /// The xattrs that make an empty regular file a whiteout.
    pub fn whiteout_names(&self) -> Vec<OsString> {
        self.namespaces()
            .iter()
            .map(|n| n.name("whiteout"))
            .collect()
    }

    /// The escaped whiteout xattrs: on a 0/0 character device they say it
    /// is not ours but a nested overlay's whiteout (made through the mount
    /// by mknod or RENAME_WHITEOUT), an ordinary device in the merged view.
    fn nested_whiteout_names(&self) -> Vec<OsString> {
        self.namespaces()
            .iter()
            .map(|n| n.name("overlay.whiteout"))
            .collect()
    }

    /// Are AUFS `.wh.` files markers?
    pub fn aufs(&self) -> bool {
        self.foreign
    }

    /// Is `name` a marker in a layer of this kind? Lowers (unpacked image
    /// layers) use every AUFS form; in the upper only `.wh..wh..opq` counts
    /// (unprivileged fuse-overlayfs writes it there), so a user's own `.wh.x`
    /// file stays an ordinary file. Without AUFS marks, none is.
    pub fn is_marker_in(&self, name: &OsStr, upper: bool) -> bool {
        if !self.aufs() {
            false
        } else if upper {
            name == OsStr::new(AUFS_OPAQUE)
        } else {
            is_aufs_marker(name)
        }
    }

    /// Does this failure to read a mark mean "no mark"? ENODATA, ENOENT and
    /// ENOTSUP do. EACCES does for an unprivileged daemon, which cannot read
    /// what it may not search or read (its listing shows such names as
    /// read, see readdir.rs); for root it is a real refusal. Anything else
    /// (EIO, EMFILE...) is not an answer and must not reveal lower names.
    pub fn absent(&self, e: &io::Error) -> bool {
        match sys::errno(e) {
            libc::ENODATA | libc::ENOENT | libc::ENOTSUP | libc::ENOTDIR => true,
            libc::EACCES => self.unprivileged,
            _ => false,
        }
    }

    /// Is the object `name` in `dir` (already stat'ed) a whiteout?
    pub fn is_whiteout(&self, dir: BorrowedFd, name: &OsStr, st: &Stat) -> io::Result<bool> {
        match st.st_mode & libc::S_IFMT {
            libc::S_IFCHR if st.st_rdev == 0 => {
                Ok(!self.has_any_xattr(XTarget::At(dir, name), &self.nested_whiteout_names())?)
            }
            libc::S_IFCHR => Ok(false),
            libc::S_IFREG if st.st_size == 0 => {
                self.has_any_xattr(XTarget::At(dir, name), &self.whiteout_names())
            }
            _ => Ok(false),
        }
    }

    fn has_any_xattr(&self, t: XTarget, names: &[OsString]) -> io::Result<bool> {
        for n in names {
            match sys::getxattr(t, n) {
                Ok(_) => return Ok(true),
                Err(e) if self.absent(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Does `.wh.NAME` exist in the lower directory `dir` (AUFS marks only)?
    pub fn aufs_whiteout(&self, dir: BorrowedFd, name: &OsStr) -> io::Result<bool> {
        let w = aufs_whiteout_name(name);
        if !self.aufs() || w.as_bytes().len() > 255 {
            return Ok(false);
        }
        match sys::fstatat(dir, &w) {
            Ok(_) => Ok(true),
            Err(e) if self.absent(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Is the directory `name` in `dir` opaque? The `.wh..wh..opq` check
    /// counts with AUFS marks (`is_marker_in` says where it is a marker).
    pub fn is_opaque(&self, dir: BorrowedFd, name: &OsStr) -> io::Result<bool> {
        Ok(self.dir_marks(dir, name)?.opaque)
    }

    /// The marks of the directory `name` in `dir` that steer a lookup
    /// below it: opaque, and `overlay.redirect` (in the namespaces this
    /// mount obeys), read with one listxattr for an unmarked directory.
    pub fn dir_marks(&self, dir: BorrowedFd, name: &OsStr) -> io::Result<DirMarks> {
        let t = XTarget::At(dir, name);
        let mut marks = DirMarks::default();
        match sys::listxattr(t) {
            Ok(names) => {
                let obeyed = self.opaque_names();
                for n in names.iter().filter(|n| obeyed.contains(n)) {
                    match sys::getxattr(t, n) {
                        Ok(v) if v == b"y" => marks.opaque = true,
                        Ok(_) => {}
                        Err(e) if self.absent(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                let redirects: Vec<OsString> = self
                    .namespaces()
                    .iter()
                    .map(|n| n.name("redirect"))
                    .collect();
                for n in names.iter().filter(|n| redirects.contains(n)) {
                    match sys::getxattr(t, n) {
                        Ok(v) => {
                            marks.redirect = Some(v.into());
                            break;
                        }
                        Err(e) if self.absent(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            // A filesystem without xattrs has no xattr marks.
            Err(e) if self.absent(&e) => {}
            Err(e) => return Err(e),
        }
        if marks.opaque || !self.aufs() {
            return Ok(marks);
        }
        let d = sys::openat(dir, name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        match sys::fstatat(d.as_fd(), OsStr::new(AUFS_OPAQUE)) {
            Ok(_) => marks.opaque = true,
            Err(e) if self.absent(&e) => {}
            Err(e) => return Err(e),
        }
        Ok(marks)
    }

    /// Does the directory `dir` say it holds xattr whiteouts (`opaque=x`)?
    /// The kernel looks for them only there; so do we, to keep listing cheap.
    pub fn holds_xattr_whiteouts(&self, dir: BorrowedFd) -> io::Result<bool> {
        for ns in self.namespaces() {
            match sys::getxattr(XTarget::Fd(dir), &ns.name("opaque")) {
                Ok(v) if v == b"x" => return Ok(true),
                Ok(_) => {}
                Err(e) if self.absent(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

/// Names that belong to the overlay and never show through the merged view.
/// An escaped name (`trusted.overlay.overlay.*`) is not one: it is a nested
/// overlay's mark, stored as data (kernel >= 6.7).
pub fn is_private_xattr(name: &OsStr) -> bool {
    let b = name.as_bytes();
    let private = b.starts_with(b"trusted.overlay.")
        || b.starts_with(b"user.overlay.")
        || b.starts_with(b"user.fuseoverlayfs.");
    private
        && !b.starts_with(b"trusted.overlay.overlay.")
        && !b.starts_with(b"user.overlay.overlay.")
}

/// The name in the layers of the merged view's xattr `name`, as the kernel
/// escapes it: the mount's own `overlay.` names gain one more `overlay.`
/// (`trusted.overlay.opaque` -> `trusted.overlay.overlay.opaque`), so an
/// overlay mounted inside this one keeps its marks without them becoming
/// ours. `None`: a private name, which the merged view does not have.
pub fn xattr_in_layer(ns: XattrNs, name: &OsStr) -> Option<OsString> {
    let b = name.as_bytes();
    let own = ns.prefix().as_bytes();
    if let Some(rest) = b.strip_prefix(own) {
        let mut v = ns.name("overlay.").into_vec();
        v.extend_from_slice(rest);
        return Some(OsString::from_vec(v));
    }
    (!is_private_xattr(name)).then(|| name.to_os_string())
}

/// The merged view's name of the layer xattr `real` (the inverse of
/// [`xattr_in_layer`]); `None` for a private name, which stays hidden.
pub fn xattr_in_view(ns: XattrNs, real: &OsStr) -> Option<OsString> {
    let b = real.as_bytes();
    if let Some(rest) = b.strip_prefix(ns.name("overlay.").as_bytes()) {
        let mut v = ns.prefix().as_bytes().to_vec();
        v.extend_from_slice(rest);
        return Some(OsString::from_vec(v));
    }
    (!is_private_xattr(real)).then(|| real.to_os_string())
}

/// `.wh.NAME` -> `NAME` (not for the opaque marker itself).
pub fn aufs_target(name: &OsStr) -> Option<&OsStr> {
    let b = name.as_bytes();
    if b.starts_with(AUFS_PREFIX) && name != OsStr::new(AUFS_OPAQUE) {
        Some(OsStr::from_bytes(&b[AUFS_PREFIX.len()..]))
    } else {
        None
    }
}

/// `NAME` -> `.wh.NAME`: the AUFS whiteout that would hide NAME.
pub fn aufs_whiteout_name(name: &OsStr) -> OsString {
    let mut w = AUFS_PREFIX.to_vec();
    w.extend_from_slice(name.as_bytes());
    OsString::from_vec(w)
}

pub fn is_aufs_marker(name: &OsStr) -> bool {
    name.as_bytes().starts_with(AUFS_PREFIX)
}

/// What writing a mark needs of the mount: its work directory, fresh
/// names there, its namespace, and the count of whiteouts made. The stack
/// provides it; a trait, so that this module sits below the stack, whose
/// lookups obey the marks.
pub trait Workdir {
    fn work(&self) -> io::Result<BorrowedFd<'_>>;
    fn tmp_name(&self) -> OsString;
    fn xattr_ns(&self) -> XattrNs;
    fn whiteout_made(&self);
}

/// The whiteout in workdir/work that every new whiteout is a link to.
const SHARED_WHITEOUT: &str = "#whiteout";

/// Make a 0/0 character device `name` in `dir`: a hard link to one shared
/// whiteout in work, as the kernel overlayfs does (a link costs a tenth of
/// a new inode here), or a mknod of its own where linking fails.
fn mknod_whiteout(stack: &impl Workdir, dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    if let Ok(work) = stack.work() {
        let shared = OsStr::new(SHARED_WHITEOUT);
        for _ in 0..2 {
            match sys::linkat(work, shared, dir, name) {
                Ok(()) => return Ok(()),
                Err(e) if sys::errno(&e) == libc::EEXIST => return Err(e),
                Err(e) if sys::errno(&e) == libc::ENOENT => {
                    let _ = sys::mknodat(work, shared, libc::S_IFCHR, 0);
                }
                Err(e) if sys::errno(&e) == libc::EMLINK => {
                    // Full: a fresh shared whiteout replaces it.
                    let tmp = stack.tmp_name();
                    if sys::mknodat(work, &tmp, libc::S_IFCHR, 0).is_ok()
                        && sys::renameat2(work, &tmp, work, shared, 0).is_err()
                    {
                        let _ = sys::unlinkat(work, &tmp, false);
                    }
                }
                Err(_) => break,
            }
        }
    }
    sys::mknodat(dir, name, libc::S_IFCHR, 0)
}

/// Build a whiteout under workdir/work and return its temporary name. The
/// caller renames it into place, so the upper layer never shows a half-made
/// one.
pub fn make_tmp_whiteout(stack: &impl Workdir) -> io::Result<OsString> {
    let work = stack.work()?;
    let tmp = stack.tmp_name();
    match mknod_whiteout(stack, work, &tmp) {
        Ok(()) => Ok(tmp),
        Err(e) if matches!(sys::errno(&e), libc::EPERM | libc::EOPNOTSUPP) => {
            // Fallback where a 0/0 device is refused: the kernel's xattr form.
            let fd = sys::openat(work, &tmp, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, 0)?;
            let name = stack.xattr_ns().name("whiteout");
            sys::setxattr(XTarget::Fd(fd.as_fd()), &name, b"y", 0)?;
            Ok(tmp)
        }
        Err(e) => Err(e),
    }
}

/// Mark the 0/0 device `name` in `dir` (just made in work) as a nested
/// overlay's whiteout, so that we show it rather than obey it. Only the
/// mount's own namespace can hold it: `user.*` xattrs are refused on
/// devices, so a `userxattr` mount answers EPERM, as before.
pub fn mark_nested_whiteout(stack: &impl Workdir, dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    let n = stack.xattr_ns().name("overlay.whiteout");
    sys::setxattr(XTarget::At(dir, name), &n, b"y", 0).map_err(|e| match sys::errno(&e) {
        libc::EPERM | libc::EOPNOTSUPP | libc::EACCES => sys::err(libc::EPERM),
        _ => e,
    })
}

/// After an xattr whiteout lands in `dir`, the kernel wants the parent to
/// say so (`overlay.opaque=x`), or it ignores the whiteout.
pub fn note_xattr_whiteout(
    stack: &impl Workdir,
    parent: BorrowedFd,
    name: &OsStr,
) -> io::Result<()> {
    let st = sys::fstatat(parent, name)?;
    if sys::is_reg(&st) {
        let n = stack.xattr_ns().name("opaque");
        let t = XTarget::Fd(parent);
        if sys::getxattr(t, &n).is_err() {
            sys::setxattr(t, &n, b"x", 0)?;
        }
    }
    Ok(())
}

/// The redirect this mount itself wrote (or the kernel, in its namespace)
/// on an upper directory, if any.
pub fn own_redirect(stack: &impl Workdir, dir: XTarget) -> io::Result<Option<Vec<u8>>> {
    match sys::getxattr(dir, &stack.xattr_ns().name("redirect")) {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(sys::errno(&e), libc::ENODATA | libc::ENOTSUP) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Record on an upper directory where its lower part is (see
/// `dir_ops::rename`), as the kernel's redirect_dir=on does.
pub fn set_redirect(stack: &impl Workdir, dir: XTarget, value: &[u8]) -> io::Result<()> {
    sys::setxattr(dir, &stack.xattr_ns().name("redirect"), value, 0)?;
    tracing::debug!(redirect = ?OsStr::from_bytes(value), "redirect set");
    Ok(())
}

/// Mark an upper directory opaque.
pub fn set_opaque(stack: &impl Workdir, dir: XTarget) -> io::Result<()> {
    sys::setxattr(dir, &stack.xattr_ns().name("opaque"), b"y", 0)?;
    tracing::debug!(
        xattr = ?stack.xattr_ns().name("opaque"),
        "opaque mark set: no lower directory of this name may merge into it"
    );
    Ok(())
}

/// Put a whiteout at `name` in the upper directory `parent`, atomically
/// replacing whatever non-directory is there.
pub fn whiteout_at(stack: &impl Workdir, parent: BorrowedFd, name: &OsStr) -> io::Result<()> {
    // Where the name is free in the upper, one mknod makes the whiteout
    // whole or not at all. Replacing an upper object, or the xattr form,
    // is built in work first and renamed over.
    match mknod_whiteout(stack, parent, name) {
        Ok(()) => {}
        Err(e)
            if matches!(
                sys::errno(&e),
                libc::EEXIST | libc::EPERM | libc::EOPNOTSUPP
            ) =>
        {
            let tmp = make_tmp_whiteout(stack)?;
            let work = stack.work()?;
            if let Err(e) = sys::renameat2(work, &tmp, parent, name, 0) {
                let _ = sys::unlinkat(work, &tmp, false);
                return Err(e);
            }
            note_xattr_whiteout(stack, parent, name)?;
        }
        Err(e) => return Err(e),
    }
    stack.whiteout_made();
    tracing::debug!(name = ?name, "whiteout created: a lower layer still has this name, so removing it must hide it");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_overlay_xattrs_are_escaped_like_the_kernel() {
        let t = XattrNs::Trusted;
        let n = |s: &str| OsString::from(s);
        let l = |s: &str| xattr_in_layer(t, OsStr::new(s));
        let v = |s: &str| xattr_in_view(t, OsStr::new(s));
        assert_eq!(
            l("trusted.overlay.opaque"),
            Some(n("trusted.overlay.overlay.opaque"))
        );
        assert_eq!(
            v("trusted.overlay.overlay.opaque"),
            Some(n("trusted.overlay.opaque"))
        );
        assert_eq!(v("trusted.overlay.opaque"), None);
        assert_eq!(l("user.overlay.opaque"), None);
        assert_eq!(l("user.x"), Some(n("user.x")));
        let u = XattrNs::User;
        assert_eq!(
            xattr_in_layer(u, OsStr::new("user.overlay.whiteout")),
            Some(n("user.overlay.overlay.whiteout"))
        );
        assert_eq!(
            xattr_in_layer(u, OsStr::new("trusted.overlay.opaque")),
            None
        );
    }
}
