//! uid/gid mapping between the ids stored in the layers and the ids the
//! mount shows (fuse-overlayfs's `uidmapping=`, `gidmapping=` and
//! `squash_to_*`, which containers/storage passes for `--uidmap` and
//! `--userns=keep-id`).
//!
//! An image keeps its own ids on disk; the mount shows them shifted. With
//! `uidmapping=0:100000:65536`, a file owned by 0 on disk shows as 100000,
//! and a chown to 101000 through the mount stores 1000. An id outside every
//! range shows as (and is stored as) the overflow id 65534, as in
//! fuse-overlayfs. The two kinds of id are distinct types so that a disk id
//! cannot be handed back to the kernel unmapped by accident.

use crate::sys::Stat;

/// An id as stored in the layers: what stat(2) in the daemon reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskId(pub u32);

/// An id as the mount shows it, and as callers present theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShownId(pub u32);

/// What an id outside every range becomes (the kernel's overflowuid).
pub const OVERFLOW_ID: u32 = 65534;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    disk: u32,
    shown: u32,
    count: u32,
}

impl Range {
    fn disk_to_shown(&self, id: u32) -> Option<u32> {
        (id >= self.disk && id - self.disk < self.count).then(|| self.shown + (id - self.disk))
    }
    fn shown_to_disk(&self, id: u32) -> Option<u32> {
        (id >= self.shown && id - self.shown < self.count).then(|| self.disk + (id - self.shown))
    }
}

/// The mapping of one kind of id (uids or gids); the identity when it has
/// no ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    ranges: Vec<Range>,
    /// `squash_to_*`: every object shows this owner, whatever the disk says.
    squash: Option<u32>,
}

impl IdMap {
    /// `DISK:SHOWN:COUNT[:DISK:SHOWN:COUNT...]`; a leading `:` (as
    /// containers/storage sometimes writes it) is allowed.
    pub fn parse(v: &str) -> Result<IdMap, String> {
        let fields: Vec<&str> = v.strip_prefix(':').unwrap_or(v).split(':').collect();
        if !fields.len().is_multiple_of(3) || fields.iter().any(|f| f.is_empty()) {
            return Err(format!(
                "mapping '{v}' is not DISK:SHOWN:COUNT[:DISK:SHOWN:COUNT...]"
            ));
        }
        let num = |f: &str| {
            f.parse::<u32>()
                .map_err(|_| format!("mapping '{v}': '{f}' is not a number"))
        };
        let mut ranges = Vec::new();
        for t in fields.chunks(3) {
            let r = Range {
                disk: num(t[0])?,
                shown: num(t[1])?,
                count: num(t[2])?,
            };
            if r.count == 0
                || r.disk.checked_add(r.count - 1).is_none()
                || r.shown.checked_add(r.count - 1).is_none()
            {
                return Err(format!(
                    "mapping '{v}': range {}:{}:{} is empty or overflows",
                    t[0], t[1], t[2]
                ));
            }
            ranges.push(r);
        }
        Ok(IdMap {
            ranges,
            squash: None,
        })
    }

    /// Show every object as owned by `id` (squash_to_root, squash_to_uid=).
    pub fn set_squash(&mut self, id: u32) {
        self.squash = Some(id);
    }

    /// True when ids pass unchanged both ways.
    pub fn is_identity(&self) -> bool {
        self.ranges.is_empty() && self.squash.is_none()
    }

    /// The id the mount shows for one stored in the layers.
    pub fn shown(&self, d: DiskId) -> ShownId {
        if let Some(s) = self.squash {
            return ShownId(s);
        }
        if self.ranges.is_empty() {
            return ShownId(d.0);
        }
        ShownId(
            self.ranges
                .iter()
                .find_map(|r| r.disk_to_shown(d.0))
                .unwrap_or(OVERFLOW_ID),
        )
    }

    /// The id to store for one the mount shows (a caller's own, a chown's).
    pub fn disk(&self, s: ShownId) -> DiskId {
        if self.ranges.is_empty() {
            return DiskId(s.0);
        }
        DiskId(
            self.ranges
                .iter()
                .find_map(|r| r.shown_to_disk(s.0))
                .unwrap_or(OVERFLOW_ID),
        )
    }
}

/// The uid and gid mappings of a mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMaps {
    pub uid: IdMap,
    pub gid: IdMap,
}

/// The POSIX ACL xattrs, whose entries carry ids.
pub const ACL_XATTRS: [&str; 2] = ["system.posix_acl_access", "system.posix_acl_default"];

impl IdMaps {
    pub fn is_identity(&self) -> bool {
        self.uid.is_identity() && self.gid.is_identity()
    }

    /// `st` with its owner as the mount shows it.
    pub fn shown_stat(&self, mut st: Stat) -> Stat {
        st.st_uid = self.uid.shown(DiskId(st.st_uid)).0;
        st.st_gid = self.gid.shown(DiskId(st.st_gid)).0;
        st
    }

    /// An ACL xattr value read from disk, with its ids as the mount shows them.
    pub fn acl_to_shown(&self, v: &[u8]) -> Vec<u8> {
        self.map_acl(v, |uid, id| {
            if uid {
                self.uid.shown(DiskId(id)).0
            } else {
                self.gid.shown(DiskId(id)).0
            }
        })
    }

    /// An ACL xattr value given through the mount, with its ids as stored.
    pub fn acl_to_disk(&self, v: &[u8]) -> Vec<u8> {
        self.map_acl(v, |uid, id| {
            if uid {
                self.uid.disk(ShownId(id)).0
            } else {
                self.gid.disk(ShownId(id)).0
            }
        })
    }

    /// An xattr value read from disk, as the mount shows it: the ids of
    /// an ACL mapped, any other value unchanged.
    pub fn acl_value_to_shown(&self, name: &std::ffi::OsStr, v: &[u8]) -> Vec<u8> {
        if ACL_XATTRS.iter().any(|a| name == *a) {
            self.acl_to_shown(v)
        } else {
            v.to_vec()
        }
    }

    /// An xattr value given through the mount, as it is stored.
    pub fn acl_value_to_disk(&self, name: &std::ffi::OsStr, v: &[u8]) -> Vec<u8> {
        if ACL_XATTRS.iter().any(|a| name == *a) {
            self.acl_to_disk(v)
        } else {
            v.to_vec()
        }
    }

    /// The kernel's xattr form of an ACL: a 4-byte version, then 8-byte
    /// entries (tag u16, perm u16, id u32); ACL_USER (2) and ACL_GROUP (8)
    /// entries carry an id. A malformed value passes unchanged (the
    /// filesystem below refuses it).
    fn map_acl(&self, v: &[u8], f: impl Fn(bool, u32) -> u32) -> Vec<u8> {
        const ACL_USER: u16 = 0x02;
        const ACL_GROUP: u16 = 0x08;
        let mut out = v.to_vec();
        if self.is_identity() || v.len() < 4 || !(v.len() - 4).is_multiple_of(8) {
            return out;
        }
        for e in out[4..].chunks_exact_mut(8) {
            let tag = u16::from_le_bytes([e[0], e[1]]);
            if tag == ACL_USER || tag == ACL_GROUP {
                let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
                e[4..8].copy_from_slice(&f(tag == ACL_USER, id).to_le_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_map_both_ways_and_unmapped_ids_overflow() {
        let m = IdMap::parse("0:100000:65536").unwrap();
        assert_eq!(m.shown(DiskId(0)), ShownId(100000));
        assert_eq!(m.shown(DiskId(1000)), ShownId(101000));
        assert_eq!(m.disk(ShownId(101000)), DiskId(1000));
        assert_eq!(m.shown(DiskId(65536)), ShownId(OVERFLOW_ID));
        assert_eq!(m.disk(ShownId(5)), DiskId(OVERFLOW_ID));
        // Several ranges in one value, as podman --userns=keep-id writes it.
        let k = IdMap::parse("0:1:1006:1006:0:1:1007:1007:64529").unwrap();
        assert_eq!(k.shown(DiskId(0)), ShownId(1));
        assert_eq!(k.shown(DiskId(1005)), ShownId(1006));
        assert_eq!(k.shown(DiskId(1006)), ShownId(0));
        assert_eq!(k.disk(ShownId(0)), DiskId(1006));
        assert_eq!(k.shown(DiskId(1007)), ShownId(1007));
        assert_eq!(k.shown(DiskId(65535)), ShownId(65535));
        assert_eq!(k.shown(DiskId(65536)), ShownId(OVERFLOW_ID));
        // fuse-overlayfs refuses a value that is not whole triples too.
        assert!(IdMap::parse("0:1:1:1006:1006:0:1:1007:1007:64530").is_err());
        // The leading-colon form containers/storage has been seen writing.
        assert_eq!(IdMap::parse(":0:100000:65536").unwrap(), m);
        for bad in ["", "0:1", "0:1:0", "a:1:1", "0:1:1:2", "4294967295:0:2"] {
            assert!(IdMap::parse(bad).is_err(), "{bad:?} parsed");
        }
        let id = IdMap::default();
        assert!(id.is_identity());
        assert_eq!(id.shown(DiskId(7)), ShownId(7));
        assert_eq!(id.disk(ShownId(7)), DiskId(7));
    }

    #[test]
    fn squash_shows_one_owner_and_stores_through_the_ranges() {
        let mut m = IdMap::parse("0:100000:10").unwrap();
        m.set_squash(0);
        assert_eq!(m.shown(DiskId(3)), ShownId(0));
        assert_eq!(m.disk(ShownId(100003)), DiskId(3));
        let mut plain = IdMap::default();
        plain.set_squash(42);
        assert_eq!(plain.shown(DiskId(0)), ShownId(42));
        assert_eq!(plain.disk(ShownId(9)), DiskId(9));
    }

    #[test]
    fn acl_entries_carry_mapped_ids() {
        let maps = IdMaps {
            uid: IdMap::parse("0:100000:65536").unwrap(),
            gid: IdMap::parse("0:200000:65536").unwrap(),
        };
        // version 2; USER_OBJ, USER 1000, GROUP 7, MASK, OTHER.
        let mut v = 2u32.to_le_bytes().to_vec();
        for (tag, id) in [
            (1u16, u32::MAX),
            (2, 1000),
            (8, 7),
            (0x10, u32::MAX),
            (0x20, u32::MAX),
        ] {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&6u16.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        let shown = maps.acl_to_shown(&v);
        let id_at = |b: &[u8], i: usize| {
            u32::from_le_bytes(b[4 + i * 8 + 4..4 + i * 8 + 8].try_into().unwrap())
        };
        assert_eq!(id_at(&shown, 1), 101000);
        assert_eq!(id_at(&shown, 2), 200007);
        assert_eq!(id_at(&shown, 0), u32::MAX, "USER_OBJ carries no id");
        assert_eq!(maps.acl_to_disk(&shown), v);
        assert_eq!(maps.acl_to_shown(b"bad"), b"bad");
    }
}
