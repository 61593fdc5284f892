//! Open file and directory handles.
//!
//! A file handle holds the real fd in the layer that served the open. A
//! read-only handle on a lower file follows a later copy-up (as the kernel's
//! overlayfs does since 4.19): it notices the copy-up generation moved and
//! reopens the upper copy. A directory handle holds a snapshot of the merged
//! listing, so offsets stay valid until a rewind to 0 rebuilds it.

use dashmap::DashMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

#[derive(Debug)]
pub struct FileHandle {
    pub ino: u64,
    pub fd: RwLock<OwnedFd>,
    pub in_upper: std::sync::atomic::AtomicBool,
    /// Copy-up generation when the fd was (re)opened.
    pub seen_gen: AtomicU64,
    pub flags: i32,
    /// Keeps the kernel's passthrough backing id alive.
    pub backing: Option<fuser::BackingId>,
}

#[derive(Debug, Clone)]
pub struct DirItem {
    pub name: OsString,
    pub ino: u64,
    pub dtype: u8,
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
    next: AtomicU64,
}

impl Handles {
    pub fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }
}
