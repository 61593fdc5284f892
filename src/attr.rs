//! Attributes (the kernel's inode.c concern): getattr as the merged view
//! shows it, setattr with copy-up first, statfs.
//!
//! Rules served (docs/semantics.md "Inode numbers, attributes, statfs", "Copy-up"):
//! `st_ino` is the overlay's stable number; chmod, chown, utimes and
//! truncate of a lower object copy it up first; a merged directory reports
//! `nlink` 1 as the kernel does (its true count is unknowable cheaply); a
//! write, truncate or chown by a caller without CAP_FSETID clears setuid
//! and setgid ([`KillPrivs`]: with FUSE_HANDLE_KILLPRIV_V2 that is ours).

use crate::copy_up::{self, CopyUp};
use crate::idmap::{DiskId, IdMaps};
use crate::lookup::{Entry, split};
use crate::perms;
use crate::stack::Stack;
use crate::sys::{self, Stat, TimeSet};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// The stat the merged view shows for an entry.
pub fn merged_stat(entry: &Entry) -> Stat {
    let mut st = entry.st;
    st.st_ino = entry.ino;
    if entry.is_dir() && entry.layers.len() > 1 {
        st.st_nlink = 1;
    }
    st
}

/// What a removed object shows to `fstat` through a descriptor still open
/// (the kernel reports its real object): an upper object lost this link,
/// a directory all of them; a lower one is untouched.
pub fn removed_stat(stack: &Stack, entry: &Entry) -> Stat {
    let mut st = merged_stat(entry);
    // A merged directory shows 1 whatever happens to its upper part.
    let merged_dir = entry.is_dir() && entry.layers.len() > 1;
    if entry.in_upper(stack) && !merged_dir {
        st.st_nlink = if entry.is_dir() {
            0
        } else {
            st.st_nlink.saturating_sub(1)
        };
    }
    st
}

/// An inode-flags ioctl (`lsattr`/`chattr`), as the kernel overlayfs does
/// it: a get reads the topmost real object, a set copies the object up and
/// changes the upper one. Returns the bytes a get answers. The object is
/// pinned and must still be what the lookup found (a file or directory):
/// a FIFO or device swapped in is never opened.
pub fn flags_ioctl(
    stack: &Stack,
    path: &Path,
    entry: &Entry,
    op: sys::FlagsIoctl,
    data: &[u8],
) -> io::Result<Vec<u8>> {
    let (parent, name) = split(path);
    let mut buf = vec![0u8; op.size()];
    let fd = if op.sets() {
        stack.upper_or_erofs()?;
        let n = buf.len().min(data.len());
        buf[..n].copy_from_slice(&data[..n]);
        let up = copy_up::copy_up(stack, path, entry, CopyUp { data: true })?;
        sys::Pinned::expect(up.as_fd(), &name, entry.st.st_mode)?.open_for_ioctl()?
    } else {
        let (dir, name) = entry.top_dir(stack, &parent, &name)?;
        sys::Pinned::expect(dir.as_fd(), &name, entry.st.st_mode)?.open_for_ioctl()?
    };
    sys::flags_ioctl(fd.as_fd(), op, &mut buf)?;
    if op.sets() {
        buf.clear();
    }
    Ok(buf)
}

/// A setattr request; `None` fields are left alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: TimeSet,
    pub mtime: TimeSet,
    /// Clear setuid/setgid as a write, truncate or chown by a caller
    /// without CAP_FSETID does.
    pub kill_privs: KillPrivs,
}

/// Which setuid/setgid bits a write, truncate or chown by a caller without
/// CAP_FSETID clears (the kernel's setattr_should_drop_suidgid).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum KillPrivs {
    #[default]
    None,
    /// setuid, and setgid with group execute. Setgid without group execute
    /// marks mandatory locking and stays for a caller in the file's group.
    Exec,
    /// Also a setgid bit without group execute: the caller is neither in
    /// the file's group nor CAP_FSETID-capable.
    All,
}

impl KillPrivs {
    /// `mode` with the bits this kill clears gone. Only regular files
    /// lose them: a directory's setgid bit is inheritance, not privilege.
    pub fn apply(self, mode: u32) -> u32 {
        if self == KillPrivs::None || mode & libc::S_IFMT != libc::S_IFREG {
            return mode;
        }
        let mut m = mode & !libc::S_ISUID;
        if m & libc::S_IXGRP != 0 || self == KillPrivs::All {
            m &= !libc::S_ISGID;
        }
        m
    }

    /// Whether the caller's group membership matters for `mode` (a setgid
    /// bit without group execute), so it is worth finding out.
    pub fn asks_group(mode: u32) -> bool {
        mode & (libc::S_ISGID | libc::S_IXGRP) == libc::S_ISGID
    }
}

/// access(2) beyond the mode bits the kernel checks itself
/// (`default_permissions`): a read-only mount refuses `W_OK` (EROFS).
pub fn access(stack: &Stack, mask: i32) -> io::Result<()> {
    if mask & libc::W_OK != 0 && !stack.has_upper {
        return Err(sys::err(libc::EROFS));
    }
    Ok(())
}

/// The caller of a request, as FUSE names it: its thread and its fsgid
/// (the rest of its credentials is read from /proc when asked).
#[derive(Debug, Clone, Copy)]
pub struct Requester {
    pub pid: u32,
    pub gid: u32,
}

/// What a write, truncate or chown by `who` clears on a file
/// with `mode` and `gid`: a setgid bit without group execute only if the
/// caller is neither in the group nor CAP_FSETID-capable (the kernel's
/// setattr_should_drop_sgid). The kernel asks for writes and truncates
/// only from callers without CAP_FSETID, but for every chown: root's
/// chown keeps such a bit.
pub fn kill_for(ids: &IdMaps, who: Requester, mode: u32, gid: u32) -> KillPrivs {
    // The caller's groups are as the mount shows them; `gid` is stored.
    let gid = ids.gid.shown(DiskId(gid)).0;
    if KillPrivs::asks_group(mode) && !caller_in_group_or_capable(who, gid) {
        KillPrivs::All
    } else {
        KillPrivs::Exec
    }
}

/// CAP_FSETID's bit in a capability set.
const CAP_FSETID: u64 = 1 << 4;

/// Whether `gid` is the caller's group or one of its supplementary groups,
/// or the caller has CAP_FSETID (the kernel's in_group_or_capable). FUSE
/// sends the fsgid only; /proc/<tid>/status of the calling thread has the
/// rest. Only a setgid file without group execute asks. If the thread is
/// gone it counts as in the group: the bit stays, as it did before.
fn caller_in_group_or_capable(who: Requester, gid: u32) -> bool {
    if who.gid == gid {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", who.pid)) else {
        return true;
    };
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name));
    let in_group =
        field("Groups:").is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)));
    // CapEff counts only in the daemon's own user namespace, where the
    // files' ids live (the kernel asks capable_wrt_inode_uidgid): root of a
    // container's namespace is no one special here.
    let same_userns = || {
        let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
        ns(&who.pid.to_string()).is_some_and(|n| Some(n) == ns("self"))
    };
    let capable = field("CapEff:")
        .and_then(|c| u64::from_str_radix(c.trim(), 16).ok())
        .is_some_and(|c| c & CAP_FSETID != 0)
        && same_userns();
    in_group || capable
}

impl SetAttr {
    /// True if no field but `kill_privs` asks for a change.
    pub fn changes_nothing_but_privs(&self) -> bool {
        self.mode.is_none()
            && self.uid.is_none()
            && self.gid.is_none()
            && self.size.is_none()
            && self.atime.is_none()
            && self.mtime.is_none()
    }
}

/// Clear setuid/setgid on an open upper file; `kill` is asked with the
/// file's mode and gid. True if a bit went.
pub fn kill_privs_fd(fd: BorrowedFd, kill: impl FnOnce(u32, u32) -> KillPrivs) -> io::Result<bool> {
    let st = sys::fstat(fd)?;
    let m = kill(st.st_mode, st.st_gid).apply(st.st_mode);
    if m == st.st_mode {
        return Ok(false);
    }
    sys::fchmod(fd, m & 0o7777)?;
    Ok(true)
}

/// Apply `sa` to the object at `path`, copying it up first. `open_fd` is an
/// upper fd the caller already holds (ftruncate through it).
pub fn setattr(
    stack: &Stack,
    path: &Path,
    entry: &Entry,
    sa: &SetAttr,
    open_fd: Option<BorrowedFd>,
) -> io::Result<Stat> {
    if sa.changes_nothing_but_privs() && sa.kill_privs.apply(entry.st.st_mode) == entry.st.st_mode {
        // Nothing to change: no copy-up for it either.
        return Ok(entry.st);
    }
    stack.upper_or_erofs()?;
    let data = sa.size != Some(0);
    let up = copy_up::copy_up(stack, path, entry, CopyUp { data })?;
    let (_, name) = split(path);
    // Every step acts on this one pinned object, of the type the lookup
    // found: the name is never walked again, so a symlink or FIFO
    // exchanged in for it meanwhile receives nothing.
    let obj = sys::Pinned::expect(up.as_fd(), &name, entry.st.st_mode)?;
    let record = stack.perms_write.filter(|_| perms::carries(&obj.st));
    let owner_or_mode = sa.uid.is_some() || sa.gid.is_some() || sa.mode.is_some();
    if let Some(rec_name) = record {
        // Owner and mode go to the record alone (fuse-overlayfs's
        // xattr_permissions): the inode keeps what the daemon may use.
        let mut r = perms::Record::of(&entry.st);
        r.uid = sa.uid.unwrap_or(r.uid);
        r.gid = sa.gid.unwrap_or(r.gid);
        let perm = sa.mode.unwrap_or(r.mode) & 0o7777;
        r.mode = sa.kill_privs.apply(obj.st.st_mode & libc::S_IFMT | perm);
        if owner_or_mode || r != perms::Record::of(&entry.st) {
            perms::write(rec_name, obj.xattrs(up.as_fd(), &name), r)?;
        }
    } else {
        if sa.uid.is_some() || sa.gid.is_some() {
            obj.chown(sa.uid.unwrap_or(u32::MAX), sa.gid.unwrap_or(u32::MAX))?;
        }
        if let Some(m) = sa.mode {
            obj.chmod(m & 0o7777)?;
        }
    }
    if let Some(size) = sa.size {
        match open_fd {
            Some(fd) => sys::ftruncate(fd, size)?,
            None => sys::ftruncate(obj.open(libc::O_WRONLY)?.as_fd(), size)?,
        }
    }
    if sa.atime.is_some() || sa.mtime.is_some() {
        obj.utimens(sa.atime, sa.mtime)?;
    }
    // With its record applied, as every stat the core hands on.
    let stored = |st: Stat| {
        let mut st = st;
        stack.as_stored(0, obj.xattrs(up.as_fd(), &name), &mut st);
        st
    };
    let st = obj.stat()?;
    if record.is_some() {
        return Ok(stored(st));
    }
    let m = sa.kill_privs.apply(st.st_mode);
    if m != st.st_mode {
        // Last, on the mode the steps above left (a chown may have
        // cleared the bits already).
        obj.chmod(m & 0o7777)?;
        return Ok(stored(obj.stat()?));
    }
    Ok(stored(st))
}

/// Apply `sa` through an open upper fd: for an object with no name (an
/// O_TMPFILE file, or one unlinked while open).
pub fn setattr_fd(fd: BorrowedFd, sa: &SetAttr) -> io::Result<()> {
    if sa.uid.is_some() || sa.gid.is_some() {
        sys::fchown(fd, sa.uid.unwrap_or(u32::MAX), sa.gid.unwrap_or(u32::MAX))?;
    }
    if let Some(m) = sa.mode {
        sys::fchmod(fd, m & 0o7777)?;
    }
    if let Some(size) = sa.size {
        sys::ftruncate(fd, size)?;
    }
    if sa.atime.is_some() || sa.mtime.is_some() {
        sys::futimens(fd, sa.atime, sa.mtime)?;
    }
    if sa.kill_privs != KillPrivs::None {
        kill_privs_fd(fd, |_, _| sa.kill_privs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::KillPrivs::{self, All, Exec};

    const REG: u32 = libc::S_IFREG;
    const DIR: u32 = libc::S_IFDIR;

    #[test]
    fn kill_privs_clears_what_the_kernel_clears() {
        let cases = [
            (Exec, REG | 0o4755, REG | 0o755),
            (Exec, REG | 0o6775, REG | 0o775),
            // Setgid without group execute: kept for a group member.
            (Exec, REG | 0o2764, REG | 0o2764),
            (All, REG | 0o2764, REG | 0o764),
            (All, REG | 0o6755, REG | 0o755),
            // A directory's setgid bit is inheritance: never cleared.
            (All, DIR | 0o2775, DIR | 0o2775),
            (KillPrivs::None, REG | 0o4755, REG | 0o4755),
        ];
        for (kill, mode, want) in cases {
            assert_eq!(kill.apply(mode), want, "{kill:?} {mode:o}");
        }
        assert!(KillPrivs::asks_group(REG | 0o2764));
        assert!(!KillPrivs::asks_group(REG | 0o2774));
    }
}
