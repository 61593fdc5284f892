//! `ovlfuse stats MOUNTPOINT`: the live counters of a running mount, read
//! through a virtual xattr of its root.

use crate::fuse::STATS_XATTR;
use crate::sys::{self, XTarget};
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::Path;

pub fn run(mountpoint: &Path) -> i32 {
    let fd = match sys::open_path(mountpoint, libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("ovlfuse: {}: {e}", mountpoint.display());
            return 1;
        }
    };
    match sys::getxattr(XTarget::Fd(fd.as_fd()), OsStr::new(STATS_XATTR)) {
        Ok(v) => {
            print!("{}", String::from_utf8_lossy(&v));
            0
        }
        Err(e) => {
            eprintln!(
                "ovlfuse: {} is not an ovlfuse mount ({e})",
                mountpoint.display()
            );
            1
        }
    }
}
