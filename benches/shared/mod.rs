//! Helpers shared by the mount benches (compare, copyup, memory) and the
//! in-process ones (core, core_criterion). Each bench uses a part.
#![allow(dead_code)]

use super::common::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Impl {
    Kernel,
    Ovlfuse,
    FuseOverlayfs,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Kernel => "kernel",
            Impl::Ovlfuse => "ovlfuse",
            Impl::FuseOverlayfs => "fuse-overlayfs",
        }
    }
}

/// Held only for its Drop, which unmounts.
pub enum Guard {
    K(#[allow(dead_code)] KernelOverlay),
    F(#[allow(dead_code)] FuseMount),
}

/// Mount `which` over `lowers` with a fresh upper under `dir`.
pub fn mount(which: Impl, lowers: &[PathBuf], dir: &Path, volatile: bool) -> (Guard, PathBuf) {
    let (u, w, m) = (dir.join("u"), dir.join("w"), dir.join("m"));
    for d in [&u, &w, &m] {
        let _ = fs::remove_dir_all(d);
        fs::create_dir_all(d).unwrap();
    }
    let mut extra: Vec<&str> = Vec::new();
    if volatile {
        extra.push("volatile");
    }
    let g = match which {
        Impl::Kernel => Guard::K(KernelOverlay::mount(lowers, Some((&u, &w)), &m, &extra)),
        Impl::Ovlfuse => Guard::F(FuseMount::mount(lowers, Some((&u, &w)), &m, &extra)),
        Impl::FuseOverlayfs => {
            // fuse-overlayfs never fsyncs a copy-up; it has no volatile option.
            let o = ovlfuse_options(lowers, Some((&u, &w)), &[] as &[&str]);
            Guard::F(FuseMount::try_mount_bin(Path::new("fuse-overlayfs"), &o, &m, None).unwrap())
        }
    };
    (g, m)
}

pub fn drop_caches() {
    unsafe { libc::sync() };
    let _ = fs::write("/proc/sys/vm/drop_caches", "3");
}

pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// read_dir + lstat of everything under `p`; number of entries.
pub fn walk(p: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(p).unwrap() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        n += 1;
        if m.is_dir() {
            n += walk(&e.path());
        }
    }
    n
}

/// Open for append and write one byte: the copy-up trigger.
pub fn copy_up(m: &Path, name: &str) -> Duration {
    let t = Instant::now();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.join(name))
        .unwrap();
    f.write_all(b"!").unwrap();
    t.elapsed()
}
