//! Namespace changes (the kernel's dir.c concern): create, mkdir, mknod,
//! symlink, link, unlink, rmdir, rename.
//!
//! Rules served (docs/semantics.md "Creating and removing names", "Rename"):
//! creating over a whiteout replaces it atomically (a directory created so is
//! opaque); removing a name a lower layer still has leaves a whiteout, a
//! pure-upper name is simply removed; rmdir answers ENOTEMPTY while the merged
//! view lists entries; a directory that comes from or merges with a lower
//! layer answers EXDEV to rename; new objects belong to the caller.

use crate::copy_up::{self, CopyUp};
use crate::dircache::DirFd;
use crate::lookup::{self, DirRef, Entry, LayerPath};
use crate::markers;
use crate::perms;
use crate::readdir;
use crate::stack::{self, Stack, child_path};
use crate::sys::{self, XTarget, err, errno};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Who is asking: new objects get this owner.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The caller's umask, applied here unless the parent directory has a
    /// default ACL (then the ACL decides, as on any filesystem).
    pub umask: u32,
}

/// What to create.
#[derive(Debug, Clone)]
pub enum NewObject {
    /// A regular file, opened with these flags (O_CREAT/O_EXCL implied).
    File {
        mode: u32,
        flags: i32,
    },
    Dir {
        mode: u32,
    },
    /// mknod: fifo, socket, device (mode carries the type).
    Node {
        mode: u32,
        rdev: u64,
    },
    Symlink {
        target: OsString,
    },
}

impl NewObject {
    fn with_umask(&self, umask: u32) -> NewObject {
        let keep = |m: u32| (m & libc::S_IFMT) | (m & 0o7777 & !umask);
        match self {
            NewObject::File { mode, flags } => NewObject::File {
                mode: keep(*mode),
                flags: *flags,
            },
            NewObject::Dir { mode } => NewObject::Dir { mode: keep(*mode) },
            NewObject::Node { mode, rdev } => NewObject::Node {
                mode: keep(*mode),
                rdev: *rdev,
            },
            NewObject::Symlink { target } => NewObject::Symlink {
                target: target.clone(),
            },
        }
    }
}

/// State of one name in the upper layer.
enum UpperName {
    Absent,
    Whiteout,
    Present(sys::Stat),
}

fn upper_name(stack: &Stack, parent: BorrowedFd, name: &OsStr) -> io::Result<UpperName> {
    match sys::fstatat(parent, name) {
        Ok(st) if stack.marks(0).is_whiteout(parent, name, &st)? => Ok(UpperName::Whiteout),
        Ok(st) => Ok(UpperName::Present(st)),
        Err(e) if errno(&e) == libc::ENOENT => Ok(UpperName::Absent),
        Err(e) => Err(e),
    }
}

/// The owner a new object gets: the caller, but the group of a setgid parent.
fn owner_for(stack: &Stack, parent: BorrowedFd, who: Caller) -> io::Result<(u32, u32, bool)> {
    let mut pst = sys::fstat(parent)?;
    stack.as_stored(0, XTarget::Fd(parent), &mut pst);
    let sgid = pst.st_mode & libc::S_ISGID != 0;
    Ok((who.uid, if sgid { pst.st_gid } else { who.gid }, sgid))
}

/// Build `obj` named `name` in directory `dir` (the upper parent or the work
/// dir), owned by `owner`. Returns an fd for new regular files, and the
/// object's stat once made.
fn make(
    dir: BorrowedFd,
    name: &OsStr,
    obj: &NewObject,
    owner: (u32, u32, bool),
    acl: bool,
    record: Option<&'static str>,
) -> io::Result<(Option<OwnedFd>, sys::Stat)> {
    let mut fd = None;
    let (uid, gid, sgid) = owner;
    match obj {
        NewObject::File { mode, flags } => {
            let acc = flags & (libc::O_ACCMODE | libc::O_APPEND);
            // With a record the inode stays the daemon's to use.
            let own = if record.is_some() { 0o600 } else { 0 };
            fd = Some(sys::openat(
                dir,
                name,
                acc | libc::O_CREAT | libc::O_EXCL,
                mode & 0o7777 | own,
            )?);
        }
        NewObject::Dir { mode } => {
            let own = if record.is_some() { 0o700 } else { 0 };
            sys::mkdirat(dir, name, mode & 0o7777 | own)?
        }
        NewObject::Node { mode, rdev } => sys::mknodat(dir, name, *mode, *rdev)?,
        NewObject::Symlink { target } => sys::symlinkat(target, dir, name)?,
    }
    let mut cur = sys::fstatat(dir, name)?;
    if let Some(rec_name) = record.filter(|_| perms::carries(&cur)) {
        // fuse-overlayfs's xattr_permissions: owner and mode asked for go
        // to the record; the inode keeps the daemon as owner.
        let perm = match obj {
            NewObject::Dir { mode } => mode & 0o7777 | if sgid { libc::S_ISGID } else { 0 },
            NewObject::File { mode, .. } | NewObject::Node { mode, .. } => mode & 0o7777,
            NewObject::Symlink { .. } => 0o777,
        };
        let mode = cur.st_mode & libc::S_IFMT | perm;
        let r = perms::Record { uid, gid, mode };
        if let Err(e) = perms::write(rec_name, XTarget::At(dir, name), r) {
            let _ = sys::unlinkat(dir, name, matches!(obj, NewObject::Dir { .. }));
            return Err(e);
        }
        r.show(&mut cur);
        return Ok((fd, cur));
    }
    if cur.st_uid != uid || cur.st_gid != gid {
        match sys::fchownat(dir, name, uid, gid) {
            Ok(()) => cur = sys::fstatat(dir, name)?,
            Err(e) if errno(&e) == libc::EPERM && sys::geteuid() != 0 => {}
            Err(e) => {
                let _ = sys::unlinkat(dir, name, matches!(obj, NewObject::Dir { .. }));
                return Err(e);
            }
        }
    }
    // chown cleared set-id bits and a work-dir build missed setgid
    // inheritance: put back exactly what was asked for.
    let want = match obj {
        NewObject::File { mode, .. } | NewObject::Node { mode, .. } => Some(mode & 0o7777),
        NewObject::Dir { mode } => Some((mode & 0o7777) | if sgid { libc::S_ISGID } else { 0 }),
        NewObject::Symlink { .. } => None,
    };
    if let Some(m) = want
        && !acl
        && cur.st_mode & 0o7777 != m
    {
        sys::fchmodat(dir, name, m)?;
        cur = sys::fstatat(dir, name)?;
    }
    Ok((fd, cur))
}

/// Create a new object. Fails with EEXIST if the merged view has the name.
pub fn create(
    stack: &Stack,
    dir: &DirRef,
    name: &OsStr,
    obj: &NewObject,
    who: Caller,
) -> io::Result<(Entry, Option<OwnedFd>)> {
    stack.upper_or_erofs()?;
    // A 0/0 character device made through the mount is a nested overlay's
    // whiteout (its upper lives in this mount), not ours: stored with the
    // escaped whiteout xattr, it shows as the device it is. The kernel
    // overlayfs refuses it (EPERM), so it can be no upper for an overlay.
    let nested_whiteout = matches!(obj, NewObject::Node { mode, rdev: 0 }
        if mode & libc::S_IFMT == libc::S_IFCHR);
    refuse_marker_name(stack, name)?;
    if lookup::lookup(stack, dir, name)?.is_some() {
        return Err(err(libc::EEXIST));
    }
    let upper = copy_up::ensure_upper_dir(stack, dir.path)?;
    let owner = owner_for(stack, upper.as_fd(), who)?;
    let acl = sys::getxattr(
        XTarget::Fd(upper.as_fd()),
        std::ffi::OsStr::new("system.posix_acl_default"),
    )
    .is_ok();
    let masked;
    let obj = if acl {
        obj
    } else {
        masked = obj.with_umask(who.umask);
        &masked
    };
    let is_dir = matches!(obj, NewObject::Dir { .. });
    let (fd, st) = match upper_name(stack, upper.as_fd(), name)? {
        UpperName::Present(_) => return Err(err(libc::EEXIST)),
        UpperName::Absent if !nested_whiteout => {
            let made = make(upper.as_fd(), name, obj, owner, acl, stack.perms_write)?;
            // As the kernel with redirect_dir=on: a directory made in a
            // merged one is opaque, so that no lower directory a later
            // redirect might bring in merges into it. Only a shortcut
            // there, so a failure is ignored, as the kernel ignores it.
            if is_dir && stack.redirect_dir.writes() && !dir.lowers.is_empty() {
                let _ = markers::set_opaque(stack, XTarget::At(upper.as_fd(), name));
            }
            made
        }
        // A nested whiteout is built aside too: until its mark is set, the
        // device would be a whiteout of ours.
        state => {
            let work = stack.work()?;
            let tmp = stack.tmp_name();
            let (fd, _) = make(work, &tmp, obj, owner, false, stack.perms_write)?;
            let over = match state {
                UpperName::Absent => sys::RENAME_NOREPLACE,
                _ => 0,
            };
            let placed = if is_dir {
                markers::set_opaque(stack, XTarget::At(work, &tmp))
                    .and_then(|_| {
                        sys::renameat2(work, &tmp, upper.as_fd(), name, sys::RENAME_EXCHANGE)
                    })
                    .map(|_| {
                        // The whiteout now sits at tmp.
                        let _ = sys::unlinkat(work, &tmp, false);
                    })
            } else if nested_whiteout {
                markers::mark_nested_whiteout(stack, work, &tmp)
                    .and_then(|_| sys::renameat2(work, &tmp, upper.as_fd(), name, over))
            } else {
                sys::renameat2(work, &tmp, upper.as_fd(), name, over)
            };
            if let Err(e) = placed {
                let _ = sys::unlinkat(work, &tmp, is_dir);
                return Err(e);
            }
            let mut st = sys::fstatat(upper.as_fd(), name)?;
            stack.as_stored(0, XTarget::At(upper.as_fd(), name), &mut st);
            (fd, st)
        }
    };
    Ok((new_upper_entry(stack, child_path(dir.path, name), st), fd))
}

/// The entry of an object just made in the upper layer.
fn new_upper_entry(stack: &Stack, path: std::path::PathBuf, st: sys::Stat) -> Entry {
    // The real inode may have been freed just now by a concurrent unlink
    // that has not dropped its mapping yet.
    stack.inos.new_upper_ino(st.st_ino);
    Entry {
        layer: 0,
        st,
        layers: vec![LayerPath { layer: 0, path }],
        opaque: false,
        ino: stack.inos.ino(0, st.st_ino),
    }
}

/// Remove the non-directory `name`. Returns the removed entry.
pub fn unlink(stack: &Stack, dir: &DirRef, name: &OsStr) -> io::Result<Entry> {
    stack.upper_or_erofs()?;
    let mut b = lookup::Batch::new(stack, dir);
    let e = b.lookup(name)?.ok_or_else(|| err(libc::ENOENT))?;
    if e.is_dir() {
        return Err(err(libc::EISDIR));
    }
    remove_name(stack, dir, name, &e, b.upper())?;
    Ok(e)
}

/// Remove a name known to exist, leaving a whiteout where a lower still
/// has it. `upper`: the upper directory, if the lookup opened it.
fn remove_name(
    stack: &Stack,
    dir: &DirRef,
    name: &OsStr,
    e: &Entry,
    upper: Option<DirFd>,
) -> io::Result<()> {
    let upper = match upper {
        Some(u) => u,
        None => copy_up::ensure_upper_dir(stack, dir.path)?,
    };
    if !e.in_upper(stack) {
        return markers::whiteout_at(stack, upper.as_fd(), name);
    }
    let needs_whiteout = lookup::lower_positive(stack, dir, name)?;
    if e.is_dir() {
        let sub = sys::openat(upper.as_fd(), name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        if needs_whiteout {
            // Swap a fresh whiteout in for the directory, then clear it away.
            let work = stack.work()?;
            let tmp = markers::make_tmp_whiteout(stack)?;
            if let Err(e) = sys::renameat2(work, &tmp, upper.as_fd(), name, sys::RENAME_EXCHANGE) {
                let _ = sys::unlinkat(work, &tmp, false);
                return Err(e);
            }
            markers::note_xattr_whiteout(stack, upper.as_fd(), name)?;
            stack.stats.whiteout();
            stack::clear_dir(sub.as_fd())?;
            sys::unlinkat(work, &tmp, true)?;
        } else {
            // Only whiteouts can be left inside (the merged view is empty).
            stack::clear_dir(sub.as_fd())?;
            sys::unlinkat(upper.as_fd(), name, true)?;
        }
    } else if needs_whiteout {
        markers::whiteout_at(stack, upper.as_fd(), name)?;
    } else {
        sys::unlinkat(upper.as_fd(), name, false)?;
    }
    if e.st.st_nlink <= 1 || e.is_dir() {
        stack.inos.drop_upper_ino(e.st.st_ino, e.ino);
    }
    Ok(())
}

/// Remove the directory `name` if its merged view is empty.
pub fn rmdir(stack: &Stack, dir: &DirRef, name: &OsStr) -> io::Result<Entry> {
    stack.upper_or_erofs()?;
    let mut b = lookup::Batch::new(stack, dir);
    let e = b.lookup(name)?.ok_or_else(|| err(libc::ENOENT))?;
    if !e.is_dir() {
        return Err(err(libc::ENOTDIR));
    }
    if !readdir::is_empty(stack, dir.path, name, &e)? {
        return Err(err(libc::ENOTEMPTY));
    }
    remove_name(stack, dir, name, &e, b.upper())?;
    Ok(e)
}

/// What a rename did, for the caller's inode bookkeeping.
#[derive(Debug)]
pub struct Renamed {
    /// The object that moved.
    pub src: Entry,
    /// The object that was at the destination and is now gone (not for
    /// exchange).
    pub replaced: Option<Entry>,
    /// With RENAME_EXCHANGE: the object that moved the other way.
    pub exchanged: Option<Entry>,
}

/// The one marker name the upper layer honours (with AUFS marks) cannot be
/// made through the mount: not by create, rename, exchange or link.
fn refuse_marker_name(stack: &Stack, name: &OsStr) -> io::Result<()> {
    if stack.marks(0).is_marker_in(name, true) {
        return Err(err(libc::EPERM));
    }
    Ok(())
}

/// Rename `oname` in `odir` to `nname` in `ndir`, with renameat2 flags.
/// `who` owns the device RENAME_WHITEOUT leaves at the old name.
pub fn rename(
    stack: &Stack,
    odir: &DirRef,
    oname: &OsStr,
    ndir: &DirRef,
    nname: &OsStr,
    flags: u32,
    who: Caller,
) -> io::Result<Renamed> {
    stack.upper_or_erofs()?;
    refuse_marker_name(stack, nname)?;
    if flags & sys::RENAME_EXCHANGE != 0 {
        refuse_marker_name(stack, oname)?;
    }
    let exchange = flags & sys::RENAME_EXCHANGE != 0;
    let noreplace = flags & sys::RENAME_NOREPLACE != 0;
    let whiteout = flags & sys::RENAME_WHITEOUT != 0;
    let known = sys::RENAME_EXCHANGE | sys::RENAME_NOREPLACE | sys::RENAME_WHITEOUT;
    // As renameat2(2): exchange goes with neither of the others.
    if flags & !known != 0 || (exchange && (noreplace || whiteout)) {
        return Err(err(libc::EINVAL));
    }
    let src = lookup::lookup(stack, odir, oname)?.ok_or_else(|| err(libc::ENOENT))?;
    let dst = lookup::lookup(stack, ndir, nname)?;
    if odir.path == ndir.path && oname == nname {
        return Ok(Renamed {
            src,
            replaced: None,
            exchanged: None,
        });
    }
    if noreplace && dst.is_some() {
        return Err(err(libc::EEXIST));
    }
    if exchange && dst.is_none() {
        return Err(err(libc::ENOENT));
    }
    // Type checks come before the EXDEV refusal, as on any filesystem.
    if let (Some(d), false) = (&dst, exchange) {
        match (src.is_dir(), d.is_dir()) {
            (true, false) => return Err(err(libc::ENOTDIR)),
            (false, true) => return Err(err(libc::EISDIR)),
            _ => {}
        }
    }
    // As the kernel: EXDEV is decided before the target's emptiness.
    // With redirect_dir=on such a directory moves, and a redirect says
    // where its lower part is.
    let from_lower = |e: &Entry| e.is_dir() && e.has_lower(stack);
    let redirects = stack.redirect_dir.writes();
    if !redirects && (from_lower(&src) || (exchange && dst.as_ref().is_some_and(from_lower))) {
        stack.stats.exdev();
        tracing::debug!(
            from = ?oname,
            "EXDEV: this directory comes from a lower layer; moving it would mean copying its whole tree (mv falls back to copy and delete)"
        );
        return Err(err(libc::EXDEV));
    }
    // As the kernel: a non-empty target that merges with a lower layer is
    // refused now; a pure-upper one only when the real rename would fail,
    // after the source got its opaque mark (the kernel leaves that mark).
    let mut target_not_empty = false;
    if let (Some(d), false) = (&dst, exchange)
        && src.is_dir()
        && d.is_dir()
        && !readdir::is_empty(stack, ndir.path, nname, d)?
    {
        if d.has_lower(stack) {
            return Err(err(libc::ENOTEMPTY));
        }
        target_not_empty = true;
    }
    let opath = child_path(odir.path, oname);
    let npath = child_path(ndir.path, nname);
    copy_up::copy_up(stack, &opath, &src, CopyUp { data: true })?;
    if let (true, Some(d)) = (exchange, &dst) {
        copy_up::copy_up(stack, &npath, d, CopyUp { data: true })?;
    }
    let oup = copy_up::ensure_upper_dir(stack, odir.path)?;
    let nup = copy_up::ensure_upper_dir(stack, ndir.path)?;
    // As the kernel: a (pure upper) directory moving into a merged parent
    // is marked opaque, so no lower directory of its new name merges in;
    // one with a lower part gets a redirect to it instead.
    let same_dir = odir.path == ndir.path;
    let mark_moved = |e: &Entry, path: &Path, into: &DirRef, at: BorrowedFd, at_name: &OsStr| {
        if from_lower(e) {
            set_redirect(stack, path, at, at_name, same_dir)?;
        } else if e.is_dir() && !e.opaque && !into.lowers.is_empty() {
            markers::set_opaque(stack, XTarget::At(at, at_name))?;
        }
        Ok::<(), io::Error>(())
    };
    if exchange {
        let d = dst.as_ref().ok_or_else(|| err(libc::ENOENT))?;
        mark_moved(&src, &opath, ndir, oup.as_fd(), oname)?;
        mark_moved(d, &npath, odir, nup.as_fd(), nname)?;
        sys::renameat2(oup.as_fd(), oname, nup.as_fd(), nname, sys::RENAME_EXCHANGE)?;
        return Ok(Renamed {
            src,
            replaced: None,
            exchanged: Some(d.clone()),
        });
    }
    let old_needs_whiteout = lookup::lower_positive(stack, odir, oname)?;
    mark_moved(&src, &opath, ndir, oup.as_fd(), oname)?;
    if target_not_empty {
        return Err(err(libc::ENOTEMPTY));
    }
    // RENAME_WHITEOUT: the device the old name gets is a nested overlay's
    // whiteout (see create), made before anything moves so that a refusal
    // (EPERM under userxattr) leaves the rename undone.
    let nested = if whiteout {
        let work = stack.work()?;
        let tmp = stack.tmp_name();
        let dev = NewObject::Node {
            mode: libc::S_IFCHR,
            rdev: 0,
        };
        make(
            work,
            &tmp,
            &dev,
            owner_for(stack, oup.as_fd(), who)?,
            false,
            None,
        )?;
        if let Err(e) = markers::mark_nested_whiteout(stack, work, &tmp) {
            let _ = sys::unlinkat(work, &tmp, false);
            return Err(e);
        }
        Some((work, tmp))
    } else {
        None
    };
    // Puts the nested whiteout at the old name, over whatever the move left
    // there (nothing, or a whiteout of ours).
    let place_nested = || match &nested {
        Some((work, tmp)) => sys::renameat2(*work, tmp, oup.as_fd(), oname, 0).inspect_err(|_| {
            let _ = sys::unlinkat(*work, tmp, false);
        }),
        None => Ok(()),
    };
    let drop_nested = || {
        if let Some((work, tmp)) = &nested {
            let _ = sys::unlinkat(*work, tmp, false);
        }
    };
    match upper_name(stack, nup.as_fd(), nname)? {
        UpperName::Present(st) if sys::is_dir(&st) => {
            // An empty merged directory may still hold whiteouts.
            let sub = sys::openat(nup.as_fd(), nname, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            stack::clear_dir(sub.as_fd())?;
        }
        UpperName::Whiteout if src.is_dir() => {
            // rename(2) cannot put a directory over a device: swap them, and
            // the whiteout lands at the old name, where it may be wanted.
            sys::renameat2(oup.as_fd(), oname, nup.as_fd(), nname, sys::RENAME_EXCHANGE)
                .inspect_err(|_| drop_nested())?;
            if nested.is_some() {
                place_nested()?;
            } else if !old_needs_whiteout {
                sys::unlinkat(oup.as_fd(), oname, false)?;
            }
            return Ok(Renamed {
                src,
                replaced: dst,
                exchanged: None,
            });
        }
        _ => {}
    }
    // The move, leaving our whiteout at the old name where the upper fs
    // makes one (false: it cannot, and the move was a plain rename).
    let move_leaving_whiteout = || {
        let (o, n) = (oup.as_fd(), nup.as_fd());
        match sys::renameat2(o, oname, n, nname, sys::RENAME_WHITEOUT) {
            Ok(()) => Ok(true),
            Err(e) if matches!(errno(&e), libc::EINVAL | libc::EPERM | libc::EOPNOTSUPP) => {
                sys::renameat2(o, oname, n, nname, 0).map(|_| false)
            }
            Err(e) => Err(e),
        }
    };
    if nested.is_some() {
        // Our whiteout keeps a lower's name hidden until the nested one
        // replaces it.
        move_leaving_whiteout().inspect_err(|_| drop_nested())?;
        place_nested()?;
    } else if old_needs_whiteout {
        if move_leaving_whiteout()? {
            markers::note_xattr_whiteout(stack, oup.as_fd(), oname)?;
            stack.stats.whiteout();
        } else {
            markers::whiteout_at(stack, oup.as_fd(), oname)?;
        }
    } else {
        sys::renameat2(oup.as_fd(), oname, nup.as_fd(), nname, 0)?;
    }
    if let Some(d) = &dst
        && d.in_upper(stack)
        && (d.st.st_nlink <= 1 || d.is_dir())
    {
        stack.inos.drop_upper_ino(d.st.st_ino, d.ino);
    }
    Ok(Renamed {
        src,
        replaced: dst,
        exchanged: None,
    })
}

/// The longest redirect written, as the kernel's `redirect_max` default:
/// a longer one answers EXDEV (mv then copies).
const REDIRECT_MAX: usize = 256;

/// Before the upper directory `name` in `at` (a directory with a lower
/// part, at `path` in the overlay) moves: record where its lower part is,
/// as the kernel does. Moving inside its parent, its old name (one it
/// already has is kept); elsewhere, its lower path from the root, built
/// from the names of it and its ancestors, each ancestor's own redirect
/// standing for its name (one it already has from the root is kept).
fn set_redirect(
    stack: &Stack,
    path: &Path,
    at: BorrowedFd,
    name: &OsStr,
    same_dir: bool,
) -> io::Result<()> {
    let own = markers::own_redirect(stack, XTarget::At(at, name))?;
    if let Some(r) = &own
        && (same_dir || r.first() == Some(&b'/'))
    {
        return Ok(());
    }
    let value = if same_dir {
        name.as_bytes().to_vec()
    } else {
        let mut v: Vec<u8> = Vec::new();
        let mut cur = path.to_path_buf();
        loop {
            let (parent, n) = lookup::split(&cur);
            let r = if cur == path {
                own.clone()
            } else {
                match stack.upper_dir(&parent) {
                    Ok(d) => markers::own_redirect(stack, XTarget::At(d.as_fd(), &n))?,
                    Err(e) if errno(&e) == libc::ENOENT => None,
                    Err(e) => return Err(e),
                }
            };
            let part = r.unwrap_or_else(|| n.as_bytes().to_vec());
            let rooted = part.first() == Some(&b'/');
            v.splice(0..0, part);
            if rooted {
                break;
            }
            v.insert(0, b'/');
            if parent.as_os_str().is_empty() {
                break;
            }
            cur = parent;
        }
        v
    };
    if value.len() > REDIRECT_MAX {
        stack.stats.exdev();
        return Err(err(libc::EXDEV));
    }
    markers::set_redirect(stack, XTarget::At(at, name), &value)
}

/// Hard-link the object at `src_path` (a non-directory) as `nname` in `ndir`.
pub fn link(
    stack: &Stack,
    src_path: &std::path::Path,
    src: &Entry,
    ndir: &DirRef,
    nname: &OsStr,
) -> io::Result<Entry> {
    stack.upper_or_erofs()?;
    refuse_marker_name(stack, nname)?;
    if src.is_dir() {
        return Err(err(libc::EPERM));
    }
    if lookup::lookup(stack, ndir, nname)?.is_some() {
        return Err(err(libc::EEXIST));
    }
    let sup = copy_up::copy_up(stack, src_path, src, CopyUp { data: true })?;
    let (_, sname) = lookup::split(src_path);
    let nup = copy_up::ensure_upper_dir(stack, ndir.path)?;
    link_into(stack, nup.as_fd(), nname, |d, n| {
        sys::linkat(sup.as_fd(), &sname, d, n)
    })?;
    let mut st = sys::fstatat(nup.as_fd(), nname)?;
    stack.as_stored(0, XTarget::At(nup.as_fd(), nname), &mut st);
    Ok(Entry {
        layer: 0,
        st,
        layers: vec![LayerPath {
            layer: 0,
            path: child_path(ndir.path, nname),
        }],
        opaque: false,
        ino: src.ino,
    })
}

/// Make a new name `nname` in the upper directory `nup` with `make_link`,
/// replacing a whiteout there atomically (linked in work, renamed over).
fn link_into(
    stack: &Stack,
    nup: BorrowedFd,
    nname: &OsStr,
    make_link: impl Fn(BorrowedFd, &OsStr) -> io::Result<()>,
) -> io::Result<()> {
    match upper_name(stack, nup, nname)? {
        UpperName::Present(_) => Err(err(libc::EEXIST)),
        UpperName::Absent => make_link(nup, nname),
        UpperName::Whiteout => {
            let work = stack.work()?;
            let tmp = stack.tmp_name();
            make_link(work, &tmp)?;
            sys::renameat2(work, &tmp, nup, nname, 0).inspect_err(|_| {
                let _ = sys::unlinkat(work, &tmp, false);
            })
        }
    }
}

/// open(O_TMPFILE) in `dir`: an unnamed regular file in the upper copy of
/// the directory (copied up first, as the kernel overlayfs does), owned by
/// the caller. `link_unnamed` may name it later; unnamed, it vanishes on
/// its last close and leaves nothing in any layer.
pub fn tmpfile(
    stack: &Stack,
    dir: &DirRef,
    mode: u32,
    flags: i32,
    who: Caller,
) -> io::Result<(Entry, OwnedFd)> {
    stack.upper_or_erofs()?;
    let upper = copy_up::ensure_upper_dir(stack, dir.path)?;
    let (uid, gid, _) = owner_for(stack, upper.as_fd(), who)?;
    let acl = sys::getxattr(
        XTarget::Fd(upper.as_fd()),
        OsStr::new("system.posix_acl_default"),
    )
    .is_ok();
    let mode = if acl { mode } else { mode & !who.umask } & 0o7777;
    // Never O_EXCL here: the kernel already refuses to link a file opened
    // with it, and the daemon itself must be able to link it.
    let acc = flags & (libc::O_ACCMODE | libc::O_APPEND);
    if let Some(rec_name) = stack.perms_write {
        // As `make` does: the record has the owner and mode.
        let fd = sys::openat(
            upper.as_fd(),
            OsStr::new("."),
            acc | libc::O_TMPFILE,
            mode | 0o600,
        )?;
        let r = perms::Record {
            uid,
            gid,
            mode: libc::S_IFREG | mode,
        };
        perms::write(rec_name, XTarget::Fd(fd.as_fd()), r)?;
        let mut st = sys::fstat(fd.as_fd())?;
        r.show(&mut st);
        return Ok((new_upper_entry(stack, std::path::PathBuf::new(), st), fd));
    }
    let fd = sys::openat(upper.as_fd(), OsStr::new("."), acc | libc::O_TMPFILE, mode)?;
    let st = sys::fstat(fd.as_fd())?;
    if st.st_uid != uid || st.st_gid != gid {
        let r = sys::fchown(fd.as_fd(), uid, gid);
        if let Err(e) = r
            && !(errno(&e) == libc::EPERM && sys::geteuid() != 0)
        {
            return Err(e);
        }
    }
    if !acl && sys::fstat(fd.as_fd())?.st_mode & 0o7777 != mode {
        sys::fchmod(fd.as_fd(), mode)?;
    }
    // Unnamed until linked: no path yet.
    let st = sys::fstat(fd.as_fd())?;
    Ok((new_upper_entry(stack, std::path::PathBuf::new(), st), fd))
}

/// linkat() of a file known only by an open fd (an O_TMPFILE file): name
/// it `nname` in `ndir`, in the upper layer.
pub fn link_unnamed(
    stack: &Stack,
    fd: BorrowedFd,
    ndir: &DirRef,
    nname: &OsStr,
) -> io::Result<Entry> {
    stack.upper_or_erofs()?;
    refuse_marker_name(stack, nname)?;
    if lookup::lookup(stack, ndir, nname)?.is_some() {
        return Err(err(libc::EEXIST));
    }
    let nup = copy_up::ensure_upper_dir(stack, ndir.path)?;
    link_into(stack, nup.as_fd(), nname, |d, n| sys::link_fd(fd, d, n))?;
    // The same object tmpfile() described: its number does not change.
    let mut st = sys::fstatat(nup.as_fd(), nname)?;
    stack.as_stored(0, XTarget::At(nup.as_fd(), nname), &mut st);
    Ok(new_upper_entry(stack, child_path(ndir.path, nname), st))
}
