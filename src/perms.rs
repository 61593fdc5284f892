//! Owners and modes kept in an extended attribute instead of the inode
//! (fuse-overlayfs's `xattr_permissions`, which containers/storage asks
//! for with `force_mask`): a daemon that may not chown keeps what was asked
//! for in `uid:gid:mode` form, and a layer written that way is read back so.
//!
//! Rules served (docs/semantics.md "Owners and modes in an xattr"): a layer
//! whose root carries one of the three names is read through that name (the
//! first found of [`NAMES`]); the upper follows `xattr_permissions=1|2`
//! and gets the name at its root at mount. Only directories and regular
//! files carry the record, as fuse-overlayfs keeps it.

use crate::sys::{self, Stat, XTarget};
use std::ffi::OsStr;
use std::io;

/// `xattr_permissions=1`: a name only a privileged daemon can write.
pub const PRIVILEGED: &str = "security.fuseoverlayfs.override_stat";
/// `xattr_permissions=2`, and what an unprivileged daemon can write.
pub const USER: &str = "user.fuseoverlayfs.override_stat";
/// containers/storage's own name for the record.
pub const CONTAINERS: &str = "user.containers.override_stat";

/// The names a layer root is probed for, in the order that decides.
pub const NAMES: [&str; 3] = [PRIVILEGED, CONTAINERS, USER];

/// The name `xattr_permissions=N` writes (0: none).
pub fn name_for(level: u8) -> Option<&'static str> {
    match level {
        1 => Some(PRIVILEGED),
        2 => Some(USER),
        _ => None,
    }
}

/// What a layer root says about its records: the name they are kept
/// under, or `None` when the layer keeps owners in its inodes.
pub fn probe(root: XTarget) -> Option<&'static str> {
    NAMES
        .into_iter()
        .find(|n| sys::getxattr(root, OsStr::new(n)).is_ok())
}

/// A record: stored ids (before any `uidmapping=`) and the mode, type bits
/// included as fuse-overlayfs writes it (only the permission bits are read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Record {
    /// `uid:gid:mode` (mode in octal); later fields (a type, in newer
    /// fuse-overlayfs) are not ours to read.
    pub fn parse(v: &[u8]) -> Option<Record> {
        let s = std::str::from_utf8(v).ok()?;
        let mut f = s.trim_end_matches('\0').split(':');
        Some(Record {
            uid: f.next()?.parse().ok()?,
            gid: f.next()?.parse().ok()?,
            mode: u32::from_str_radix(f.next()?, 8).ok()?,
        })
    }

    pub fn format(&self) -> String {
        format!("{}:{}:{:o}", self.uid, self.gid, self.mode)
    }

    /// `st` as the record has it: its owner and permission bits; the
    /// object keeps its own type.
    pub fn show(&self, st: &mut Stat) {
        st.st_uid = self.uid;
        st.st_gid = self.gid;
        st.st_mode = (st.st_mode & libc::S_IFMT) | (self.mode & 0o7777);
    }

    /// The record of what `st` shows.
    pub fn of(st: &Stat) -> Record {
        Record {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode,
        }
    }
}

/// Does an object of this type carry a record?
pub fn carries(st: &Stat) -> bool {
    sys::is_dir(st) || st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// `st` with the record kept under `name` on `obj` (its stat), if any.
pub fn apply(name: &str, obj: XTarget, st: &mut Stat) {
    if !carries(st) {
        return;
    }
    if let Some(r) = sys::getxattr(obj, OsStr::new(name))
        .ok()
        .and_then(|v| Record::parse(&v))
    {
        r.show(st);
    }
}

/// Keep `r` under `name` on `obj`.
pub fn write(name: &str, obj: XTarget, r: Record) -> io::Result<()> {
    sys::setxattr(obj, OsStr::new(name), r.format().as_bytes(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_and_write_as_fuse_overlayfs_keeps_them() {
        // fuse-overlayfs 1.10 writes the type bits too; newer ones may not.
        let r = Record::parse(b"1000:100:100755").unwrap();
        assert_eq!((r.uid, r.gid, r.mode), (1000, 100, 0o100755));
        assert_eq!(r.format(), "1000:100:100755");
        assert_eq!(Record::parse(b"0:0:555").unwrap().mode, 0o555);
        // A type field after the mode, and a trailing NUL, are ignored.
        assert_eq!(Record::parse(b"0:0:4755:file\0").unwrap().mode, 0o4755);
        for bad in [&b""[..], b"1:2", b"x:0:755", b"0:0:9"] {
            assert_eq!(Record::parse(bad), None, "{bad:?}");
        }
        // SAFETY: a plain C struct, all integers: zero is a valid value.
        let mut st: Stat = unsafe { std::mem::zeroed() };
        st.st_mode = libc::S_IFDIR | 0o700;
        Record::parse(b"5:6:104644").unwrap().show(&mut st);
        assert_eq!((st.st_uid, st.st_gid), (5, 6));
        assert_eq!(
            st.st_mode,
            libc::S_IFDIR | 0o4644,
            "the object keeps its type"
        );
    }
}
