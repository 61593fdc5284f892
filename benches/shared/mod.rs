//! Helpers shared by the mount benches (compare, copyup, memory) and the
//! in-process ones (core, core_criterion). Each bench uses a part.
#![allow(dead_code)]

use super::common::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Impl {
    Kernel,
    /// ovlfuse over /dev/fuse (`-o nouring`).
    Ovlfuse,
    /// ovlfuse over FUSE io_uring (`-o uring`).
    OvlfuseUring,
    FuseOverlayfs,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Kernel => "kernel",
            Impl::Ovlfuse => "ovlfuse",
            Impl::OvlfuseUring => "ovlfuse-uring",
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
    mount_as(which, lowers, dir, volatile, None)
}

/// `mount`, with the FUSE daemons run by `user` (through fusermount3,
/// allow_other so the bench, as root, can use the mount). The kernel
/// overlayfs, the reference, is still mounted by root.
pub fn mount_as(
    which: Impl,
    lowers: &[PathBuf],
    dir: &Path,
    volatile: bool,
    user: Option<(u32, u32)>,
) -> (Guard, PathBuf) {
    let (u, w, m) = (dir.join("u"), dir.join("w"), dir.join("m"));
    for d in [&u, &w, &m] {
        let _ = fs::remove_dir_all(d);
        fs::create_dir_all(d).unwrap();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
        }
    }
    let mut extra: Vec<&str> = Vec::new();
    if volatile {
        extra.push("volatile");
    }
    if user.is_some() {
        extra.push("allow_other");
    }
    let g = match which {
        Impl::Kernel => {
            extra.retain(|o| *o != "allow_other");
            Guard::K(KernelOverlay::mount(lowers, Some((&u, &w)), &m, &extra))
        }
        Impl::Ovlfuse | Impl::OvlfuseUring => {
            extra.push(if which == Impl::Ovlfuse {
                "nouring"
            } else {
                "uring"
            });
            let o = ovlfuse_options(lowers, Some((&u, &w)), &extra);
            Guard::F(FuseMount::try_mount(&o, &m, user).unwrap())
        }
        Impl::FuseOverlayfs => {
            // fuse-overlayfs never fsyncs a copy-up; it has no volatile option.
            extra.retain(|o| *o != "volatile");
            let o = ovlfuse_options(lowers, Some((&u, &w)), &extra);
            Guard::F(FuseMount::try_mount_bin(Path::new("fuse-overlayfs"), &o, &m, user).unwrap())
        }
    };
    (g, m)
}

pub fn drop_caches() {
    unsafe { libc::sync() };
    let _ = fs::write("/proc/sys/vm/drop_caches", "3");
}

/// Flush dirty data and the journal, so the timed work does not pay for
/// the writeback of what came before it.
pub fn settle() {
    unsafe { libc::sync() };
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

/// Open for append, write one byte and close: the copy-up trigger. The
/// close is timed too: with a writeback cache (fuse-overlayfs) the write
/// only reaches the daemon there.
pub fn copy_up(m: &Path, name: &str) -> Duration {
    let t = Instant::now();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.join(name))
        .unwrap();
    f.write_all(b"!").unwrap();
    drop(f);
    t.elapsed()
}

/// A sparse filesystem image, made by `mkfs` (program and arguments; the
/// image path is appended), in a fresh directory under `parent`,
/// loop-mounted there; unmounted and
/// deleted on drop.
pub struct LoopImage {
    dir: Option<tempfile::TempDir>,
    pub mnt: PathBuf,
}

impl LoopImage {
    pub fn create(parent: &Path, bytes: u64, mkfs: &[&str]) -> Result<LoopImage, String> {
        let dir = tempfile::Builder::new()
            .prefix("img")
            .tempdir_in(parent)
            .map_err(|e| e.to_string())?;
        let (img, mnt) = (dir.path().join("fs.img"), dir.path().join("mnt"));
        fs::File::create(&img)
            .and_then(|f| f.set_len(bytes))
            .map_err(|e| format!("create {}: {e}", img.display()))?;
        fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        let run = |cmd: &mut Command| {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
                Err(format!("{cmd:?}: {err}"))
            }
        };
        run(Command::new(mkfs[0]).args(&mkfs[1..]).arg(&img))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt))?;
        // So an ordinary (bench) user can traverse it.
        let _ = sys::chmod(&mnt, 0o755);
        Ok(LoopImage {
            dir: Some(dir),
            mnt,
        })
    }
}

impl Drop for LoopImage {
    fn drop(&mut self) {
        if !force_unmount(&self.mnt)
            && let Some(d) = self.dir.take()
        {
            eprintln!("keeping {} (image still mounted)", d.keep().display());
        }
    }
}

/// Whether this machine can run ovlfuse over io_uring: the kernel's switch
/// is there. The harness turns it on for the run and restores it after.
pub fn uring_available() -> bool {
    super::common::transport::select();
    super::common::transport::switch() == Some(true)
}
