//! Overlay inode numbers (the kernel's inode.c/xino concern): what
//! `st_ino` a merged object shows, and how it survives copy-up.
//!
//! Rules served (docs/semantics.md "Inode numbers, attributes, statfs"):
//! `st_ino` unique and stable for the mount's life, also across copy-up;
//! the names of a hard-linked lower file are separate nodes that show one
//! `st_ino` until a name is copied up.

use crate::sys::{self, Stat};
use dashmap::DashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Overlay inode numbers: (layer index + 1) in the top bits, the real inode
/// below, so lookups compute them without a table (the idea of xino).
const INO_SHIFT: u32 = 48;

/// The inode numbers one mount has handed out. Layers are numbered as in
/// the stack: `0` is the upper when there is one.
#[derive(Debug)]
pub struct Inos {
    has_upper: bool,
    /// Upper real inode -> overlay inode, for objects whose overlay inode was
    /// fixed before they reached the upper layer (copy-up keeps st_ino).
    upper_ino: DashMap<u64, u64>,
    /// Overlay inodes that could not be encoded (huge real inodes).
    spill: DashMap<(usize, u64), u64>,
    spill_next: AtomicU64,
    /// Per-path numbers for hard-linked lower files (see [`Inos::lower_link_ino`]).
    link_ino: DashMap<(usize, PathBuf), u64>,
    /// The one st_ino all names of a hard-linked lower file show, by node.
    link_shown: DashMap<u64, u64>,
}

impl Inos {
    pub fn new(has_upper: bool) -> Inos {
        Inos {
            has_upper,
            upper_ino: DashMap::new(),
            spill: DashMap::new(),
            spill_next: AtomicU64::new(2),
            link_ino: DashMap::new(),
            link_shown: DashMap::new(),
        }
    }

    fn is_upper(&self, layer: usize) -> bool {
        self.has_upper && layer == 0
    }

    /// The overlay inode number of the object with real inode `ino` found in
    /// `layer`.
    pub fn ino(&self, layer: usize, ino: u64) -> u64 {
        if self.is_upper(layer)
            && let Some(v) = self.upper_ino.get(&ino)
        {
            return *v;
        }
        let tag = layer as u64 + 1;
        if ino < (1 << INO_SHIFT) && tag < (1 << (64 - INO_SHIFT)) {
            return (tag << INO_SHIFT) | ino;
        }
        *self
            .spill
            .entry((layer, ino))
            .or_insert_with(|| self.spill_next.fetch_add(1, Ordering::Relaxed))
    }

    /// A hard-linked file in a lower layer: each of its names is a separate
    /// overlay inode (as in the kernel without `index`), so each path gets
    /// its own number; sharing one would let a chmod or copy-up of one name
    /// show through the others.
    pub fn lower_link_ino(&self, layer: usize, path: &Path) -> u64 {
        *self
            .link_ino
            .entry((layer, path.to_path_buf()))
            .or_insert_with(|| self.spill_next.fetch_add(1, Ordering::Relaxed))
    }

    /// The overlay inode of a non-directory found at `path` in `layer`.
    pub fn ino_at(&self, layer: usize, path: &Path, st: &Stat) -> u64 {
        if !self.is_upper(layer) && st.st_nlink > 1 && !sys::is_dir(st) {
            let node = self.lower_link_ino(layer, path);
            // Its names show one st_ino, as the kernel overlayfs shows them
            // (xino off, one filesystem): the number of the shared inode.
            self.link_shown
                .entry(node)
                .or_insert_with(|| self.ino(layer, st.st_ino));
            node
        } else {
            self.ino(layer, st.st_ino)
        }
    }

    /// The st_ino the object with overlay inode `node` shows: its own,
    /// but for the names of a hard-linked lower file, which share one until
    /// a name is copied up.
    pub fn shown_ino(&self, node: u64) -> u64 {
        self.link_shown.get(&node).map_or(node, |v| *v)
    }

    /// Remember that an upper object carries an existing overlay inode.
    /// Called before the object gets its upper name, so no lookup ever
    /// sees it under its own number.
    pub fn keep_ino(&self, upper_real: u64, overlay_ino: u64) {
        // A copied-up name of a lower hard link is a file of its own now:
        // the kernel then shows it its own st_ino too.
        self.link_shown.remove(&overlay_ino);
        self.upper_ino.remove(&upper_real);
        if self.ino(0, upper_real) != overlay_ino {
            self.upper_ino.insert(upper_real, overlay_ino);
        }
    }

    /// A new upper object has no origin: forget what a previous owner of
    /// its real inode number left.
    pub fn new_upper_ino(&self, upper_real: u64) {
        self.upper_ino.remove(&upper_real);
    }

    /// The upper object that carried `overlay_ino` is gone for good. Only
    /// that mapping goes: the freed real inode may already belong to a
    /// concurrent copy-up, which mapped it afresh.
    pub fn drop_upper_ino(&self, upper_real: u64, overlay_ino: u64) {
        self.upper_ino
            .remove_if(&upper_real, |_, v| *v == overlay_ino);
    }
}
