//! How the mount shows what the layers hold: the options that change
//! attributes and what the kernel may cache, applied to every stat shown.
//!
//! Rules served (docs/semantics.md "Inode numbers, attributes, statfs"):
//! ids mapped as `uidmapping=`/`squash_to_*` say, `static_nlink`,
//! `noxattrs`, `noacl`, `timeout=`.

use crate::idmap::IdMaps;
use crate::options::MountOptions;
use crate::sys::{self, Stat};

/// How the mount shows what the layers hold, as options ask: ids mapped
/// (`uidmapping=`, `squash_to_*`), directories' nlink (`static_nlink`),
/// extended attributes at all (`noxattrs`), and how long the kernel may
/// cache an answer (`timeout=`).
#[derive(Debug, Clone)]
pub struct View {
    pub ids: IdMaps,
    pub static_nlink: bool,
    pub noxattrs: bool,
    /// POSIX ACLs enforced by the kernel (all but `noacl`, `noxattrs`).
    pub posix_acl: bool,
    pub cache_ttl: std::time::Duration,
}

/// The kernel may cache names and attributes a day by default: lowers are
/// immutable and only this mount writes the upper, and the daemon
/// invalidates what it changes.
pub const DEFAULT_TTL: std::time::Duration = std::time::Duration::from_secs(86400);

impl Default for View {
    fn default() -> Self {
        View {
            ids: IdMaps::default(),
            static_nlink: false,
            noxattrs: false,
            posix_acl: true,
            cache_ttl: DEFAULT_TTL,
        }
    }
}

impl View {
    pub fn from_options(o: &MountOptions) -> View {
        View {
            ids: o.ids.clone(),
            static_nlink: o.static_nlink,
            noxattrs: o.noxattrs,
            posix_acl: !o.noacl && !o.noxattrs,
            cache_ttl: o.timeout.unwrap_or(DEFAULT_TTL),
        }
    }

    /// `st` as the mount shows it.
    pub fn shown(&self, st: Stat) -> Stat {
        let mut st = self.ids.shown_stat(st);
        if self.static_nlink && sys::is_dir(&st) {
            st.st_nlink = 1;
        }
        st
    }
}
