//! Open file and directory handles.
//!
//! A file handle holds an [`OpenFile`] (the core's: its fd in the layer that
//! served the open, and what following a copy-up needs) and the kernel's
//! passthrough backing id. A directory handle holds a snapshot of the merged
//! listing, so offsets stay valid until a rewind to 0 rebuilds it.

use crate::file::OpenFile;
use dashmap::DashMap;
use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An open file ([`OpenFile`]) and what the kernel was told of it.
#[derive(Debug)]
pub struct FileHandle {
    pub file: OpenFile,
    /// Keeps the kernel's passthrough backing id alive.
    pub backing: Option<Arc<fuser::BackingId>>,
}

/// How the kernel does I/O on one inode's open files. It refuses to mix
/// page-cache opens with passthrough opens of one inode, and wants every
/// passthrough open of it to name the same backing id.
#[derive(Debug)]
pub enum IoMode {
    /// Served by the daemon: this many handles.
    Cached(usize),
    /// Passed straight to the upper file: its backing id, this many handles.
    Backed(Arc<fuser::BackingId>, usize),
}

#[derive(Debug, Clone)]
pub struct DirItem {
    pub name: OsString,
    pub ino: u64,
    pub dtype: u8,
    /// The layer the listing found the name in first (lookup starts there).
    pub layer: usize,
}

#[derive(Debug)]
pub struct DirHandle {
    pub ino: u64,
    pub items: Mutex<Option<Vec<DirItem>>>,
}

#[derive(Debug, Default)]
pub struct Handles {
    pub files: DashMap<u64, std::sync::Arc<FileHandle>>,
    pub dirs: DashMap<u64, std::sync::Arc<DirHandle>>,
    /// Per inode with open files: cached or passthrough.
    pub io: DashMap<u64, IoMode>,
    next: AtomicU64,
}

impl Handles {
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Count an open of `ino`; returns the backing id to pass through to,
    /// if any. `backing` registers one; it is asked only when the inode has
    /// no open file yet and `want` says passthrough is possible.
    pub fn io_open(
        &self,
        ino: u64,
        want: bool,
        backing: impl FnOnce() -> Option<fuser::BackingId>,
    ) -> Option<Arc<fuser::BackingId>> {
        let mut m = self.io.entry(ino).or_insert(IoMode::Cached(0));
        match &mut *m {
            IoMode::Cached(0) if want => match backing() {
                Some(b) => {
                    let b = Arc::new(b);
                    *m = IoMode::Backed(b.clone(), 1);
                    Some(b)
                }
                None => {
                    *m = IoMode::Cached(1);
                    None
                }
            },
            IoMode::Cached(n) => {
                *n += 1;
                None
            }
            IoMode::Backed(b, n) => {
                *n += 1;
                Some(b.clone())
            }
        }
    }

    /// An open file of `ino` was released.
    pub fn io_close(&self, ino: u64) {
        let gone = match self.io.get_mut(&ino) {
            Some(mut m) => match &mut *m {
                IoMode::Cached(n) | IoMode::Backed(_, n) => {
                    *n = n.saturating_sub(1);
                    *n == 0
                }
            },
            None => false,
        };
        if gone {
            self.io.remove_if(&ino, |_, m| {
                matches!(m, IoMode::Cached(0) | IoMode::Backed(_, 0))
            });
        }
    }
}
