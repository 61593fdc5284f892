//! The inode table: FUSE node id <-> where the object sits in the overlay
//! (parent node and name), with the kernel's lookup counts.
//!
//! Node ids are the overlay inode numbers the core computes, so `st_ino`,
//! `d_ino` and the node id agree. Paths are rebuilt from parent links, so a
//! rename only touches one node.

use crate::lookup::{DirBuf, LayerPath};
use crate::sys::Stat;
use dashmap::DashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub const ROOT: u64 = 1;

#[derive(Debug)]
pub struct Node {
    pub parent: u64,
    pub name: Box<OsStr>,
    /// For directories: the lower directories merged into it, where its
    /// lookup found them (lowers never change).
    pub lowers: Arc<[LayerPath]>,
    pub lookups: u64,
    /// Other names of a hard-linked object, so removing one name leaves
    /// the node reachable through another.
    pub others: Vec<(u64, OsString)>,
    pub generation: u64,
    /// Removed from the namespace, with what `fstat` on it shows now; a new
    /// object with this number gets a new generation so the kernel never
    /// confuses the two.
    pub dead: Option<Box<Stat>>,
}

/// Nodes are boxed so the map's slots stay small: a hash table is about
/// half empty after growing, and an empty slot then costs 16 bytes, not a
/// whole node.
#[derive(Debug, Default)]
pub struct Inodes {
    map: DashMap<u64, Box<Node>>,
    /// The lowers of every non-directory (none), shared, not allocated.
    no_lowers: Arc<[LayerPath]>,
    forgets: std::sync::atomic::AtomicU64,
}

/// Where a node sits: its path and its parent's path and merged lowers.
#[derive(Debug, Clone)]
pub struct Place {
    pub path: PathBuf,
    pub parent_path: PathBuf,
    pub parent_lowers: Arc<[LayerPath]>,
    pub name: OsString,
    pub lowers: Arc<[LayerPath]>,
}

fn stale() -> io::Error {
    io::Error::from_raw_os_error(libc::ESTALE)
}

impl Inodes {
    pub fn new(root_lowers: Vec<LayerPath>) -> Self {
        let map = DashMap::new();
        map.insert(
            ROOT,
            Box::new(Node {
                parent: ROOT,
                name: OsStr::new("").into(),
                lowers: root_lowers.into(),
                lookups: 1,
                others: Vec::new(),
                generation: 0,
                dead: None,
            }),
        );
        Inodes {
            map,
            no_lowers: Arc::new([]),
            forgets: Default::default(),
        }
    }

    fn lowers_arc(&self, lowers: Vec<LayerPath>) -> Arc<[LayerPath]> {
        if lowers.is_empty() {
            self.no_lowers.clone()
        } else {
            lowers.into()
        }
    }

    /// Record one kernel lookup of `ino` as `name` in `parent`; returns the
    /// generation to report.
    pub fn remember(&self, ino: u64, parent: u64, name: &OsStr, lowers: Vec<LayerPath>) -> u64 {
        self.remember_as(ino, parent, name, lowers, false)
    }

    /// `fresh`: the object was just created, so a node already holding this
    /// number (its real inode was freed and reused) is another object: give
    /// it a new generation so the kernel never merges the two.
    pub fn remember_as(
        &self,
        ino: u64,
        parent: u64,
        name: &OsStr,
        lowers: Vec<LayerPath>,
        fresh: bool,
    ) -> u64 {
        if ino == ROOT {
            return 0;
        }
        let mut n = self.map.entry(ino).or_insert_with(|| {
            Box::new(Node {
                parent,
                name: name.into(),
                lowers: self.lowers_arc(lowers.clone()),
                lookups: 0,
                others: Vec::new(),
                generation: 0,
                dead: None,
            })
        });
        if n.dead.is_some() || (fresh && n.lookups > 0) {
            // Another object: none of the old one's names are its own.
            n.dead = None;
            n.generation += 1;
            n.lowers = self.lowers_arc(lowers);
            n.others.clear();
            n.parent = parent;
            n.name = name.into();
        }
        // The latest name the kernel used is a valid path; keep the old one
        // as another name of a hard-linked object.
        if n.parent != parent || &*n.name != name {
            let old = (
                n.parent,
                std::mem::replace(&mut n.name, name.into()).into_os_string(),
            );
            n.parent = parent;
            n.others.retain(|(p, x)| !(*p == parent && x == name));
            // An empty name was the placeholder of an unnamed file.
            if !old.1.is_empty() && !n.others.contains(&old) {
                n.others.push(old);
            }
        }
        n.lookups += 1;
        n.generation
    }

    pub fn forget(&self, ino: u64, count: u64) {
        if ino == ROOT {
            return;
        }
        let gone = match self.map.get_mut(&ino) {
            Some(mut n) => {
                n.lookups = n.lookups.saturating_sub(count);
                n.lookups == 0
            }
            None => false,
        };
        if gone {
            self.map.remove_if(&ino, |_, n| n.lookups == 0);
            // Now and then, give back what a large forgotten walk left:
            // the map never shrinks by itself, nor does malloc's heap.
            let f = self
                .forgets
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if f % 65536 == 65535 && self.map.len() * 4 < self.map.capacity() {
                self.map.shrink_to_fit();
                crate::sys::trim_heap();
            }
        }
    }

    /// `ino`, named `name` in `parent`, was removed; `st` is what it shows
    /// while still open. Only while the node still stands for that name:
    /// the freed real inode may already carry a new object created in
    /// another directory meanwhile, which took the node over (remember_as).
    pub fn mark_dead(&self, ino: u64, parent: u64, name: &OsStr, st: Stat) {
        if let Some(mut n) = self.map.get_mut(&ino)
            && ((n.parent == parent && &*n.name == name)
                || n.others.iter().any(|(p, x)| *p == parent && x == name))
        {
            n.dead = Some(Box::new(st));
        }
    }

    /// The attributes of a removed node (`None`: not removed).
    pub fn removed_stat(&self, ino: u64) -> Option<Stat> {
        self.map.get(&ino).and_then(|n| n.dead.as_deref().copied())
    }

    /// `ino` moved from `from` to `parent/name`.
    pub fn moved(&self, ino: u64, from: (u64, &OsStr), parent: u64, name: &OsStr) {
        if let Some(mut n) = self.map.get_mut(&ino) {
            n.others.retain(|(p, x)| !(*p == from.0 && x == from.1));
            if !(n.parent == from.0 && &*n.name == from.1) {
                let old = (n.parent, n.name.to_os_string());
                n.others.push(old);
            }
            n.parent = parent;
            n.name = name.into();
        }
    }

    /// One name of a still-linked object went away: serve it by another.
    pub fn unlinked(&self, ino: u64, parent: u64, name: &OsStr) {
        if let Some(mut n) = self.map.get_mut(&ino) {
            n.others.retain(|(p, x)| !(*p == parent && x == name));
            if n.parent == parent
                && &*n.name == name
                && let Some((p, x)) = n.others.pop()
            {
                n.parent = p;
                n.name = x.into_boxed_os_str();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Path and merged lowers of a directory node.
    pub fn dir(&self, ino: u64) -> io::Result<DirBuf> {
        let lowers = self.map.get(&ino).ok_or_else(stale)?.lowers.clone();
        Ok(DirBuf {
            path: self.path(ino)?,
            lowers,
        })
    }

    pub fn parent_of(&self, ino: u64) -> u64 {
        self.map.get(&ino).map_or(ROOT, |n| n.parent)
    }

    pub fn path(&self, ino: u64) -> io::Result<PathBuf> {
        let mut names = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let n = self.map.get(&cur).ok_or_else(stale)?;
            names.push(n.name.to_os_string());
            cur = n.parent;
            if names.len() > 4096 {
                return Err(stale());
            }
        }
        Ok(names.iter().rev().collect())
    }

    pub fn place(&self, ino: u64) -> io::Result<Place> {
        let (parent, name, lowers) = {
            let n = self.map.get(&ino).ok_or_else(stale)?;
            (n.parent, n.name.to_os_string(), n.lowers.clone())
        };
        self.place_as(ino, parent, name, lowers)
    }

    /// The places of a hard-linked node's other names.
    pub fn other_places(&self, ino: u64) -> Vec<Place> {
        let (others, lowers) = match self.map.get(&ino) {
            Some(n) => (n.others.clone(), n.lowers.clone()),
            None => return Vec::new(),
        };
        others
            .into_iter()
            .filter_map(|(p, x)| self.place_as(ino, p, x, lowers.clone()).ok())
            .collect()
    }

    fn place_as(
        &self,
        ino: u64,
        parent: u64,
        name: OsString,
        lowers: Arc<[LayerPath]>,
    ) -> io::Result<Place> {
        let DirBuf {
            path: parent_path,
            lowers: parent_lowers,
        } = self.dir(parent)?;
        let path = if ino == ROOT {
            PathBuf::new()
        } else {
            crate::stack::child_path(&parent_path, &name)
        };
        Ok(Place {
            path,
            parent_path,
            parent_lowers,
            name,
            lowers,
        })
    }
}
