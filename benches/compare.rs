//! Side-by-side mount benchmarks: ovlfuse over /dev/fuse and over io_uring,
//! the kernel overlayfs and fuse-overlayfs on identical layers (five
//! lowers), same run, median of 3, ratio to the kernel. Run as root: `cargo bench --bench compare`.
//! OVLFUSE_BENCH_SCALE=0.1 shrinks every workload for a quick look;
//! OVLFUSE_BENCH_ONLY=name runs one workload; OVLFUSE_BENCH_USER=1 runs
//! ovlfuse and fuse-overlayfs as an ordinary user (rootless, no passthrough).
//! OVLFUSE_BENCH_RAM=1 puts the layers on an ext4 image in /dev/shm: the
//! same filesystem code without the virtual disk, whose stalls can swing
//! one workload tenfold between runs, so what remains is the overlays' own
//! cost.

#[path = "../tests/common/mod.rs"]
mod common;
mod shared;

use common::*;
use shared::*;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn scale(n: usize) -> usize {
    let s: f64 = std::env::var("OVLFUSE_BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    ((n as f64) * s).max(1.0) as usize
}

/// Room for the layers (under 1 GiB) and three uppers at once.
const RAM_IMAGE_BYTES: u64 = 4 << 30;

struct Workload {
    name: &'static str,
    /// Build the lowers (once, shared read-only by every implementation).
    build: fn(&[PathBuf]),
    /// Time the work on a fresh mount (setup before the clock starts).
    run: fn(&Path) -> Duration,
    volatile: bool,
}

fn build_files(lowers: &[PathBuf], dir: &str, n: usize, size: usize) {
    let d = lowers[lowers.len() - 1].join(dir);
    fs::create_dir_all(&d).unwrap();
    let data = vec![b'x'; size];
    for i in 0..n {
        fs::write(d.join(format!("f{i:05}")), &data).unwrap();
    }
    for l in &lowers[..lowers.len() - 1] {
        fs::create_dir_all(l.join(dir)).unwrap();
    }
}

fn spread_files(lowers: &[PathBuf], dir: &str, n: usize) {
    // Entries spread over all lowers, so the merge has work to do.
    for l in lowers {
        fs::create_dir_all(l.join(dir)).unwrap();
    }
    for i in 0..n {
        let l = &lowers[i % lowers.len()];
        fs::write(l.join(dir).join(format!("e{i:05}")), b"e").unwrap();
    }
}

fn big_file(lowers: &[PathBuf], name: &str, bytes: usize) {
    let mut f = fs::File::create(lowers[lowers.len() - 1].join(name)).unwrap();
    let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
}

/// Read `name` in 1 MiB reads `untimed` times, then time one more read.
fn read_file_after(m: &Path, name: &str, untimed: usize) -> Duration {
    let mut buf = vec![0u8; 1 << 20];
    let mut read_all = || {
        let mut f = fs::File::open(m.join(name)).unwrap();
        let mut n = 0;
        loop {
            match f.read(&mut buf).unwrap() {
                0 => return n,
                k => n += k,
            }
        }
    };
    for _ in 0..untimed {
        read_all();
    }
    let t = Instant::now();
    let n = read_all();
    let d = t.elapsed();
    assert!(n > 0, "{name} read empty");
    d
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "delete 3000 lower files (whiteouts)",
            build: |l| build_files(l, "del", scale(3000), 64),
            run: |m| {
                let names: Vec<PathBuf> = fs::read_dir(m.join("del"))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect();
                let t = Instant::now();
                for p in names {
                    fs::remove_file(p).unwrap();
                }
                t.elapsed()
            },
            volatile: false,
        },
        Workload {
            name: "list merged dir of 10000 entries x5",
            build: |l| spread_files(l, "big", scale(10000)),
            run: |m| {
                let t = Instant::now();
                for _ in 0..5 {
                    assert!(fs::read_dir(m.join("big")).unwrap().count() > 0);
                }
                t.elapsed()
            },
            volatile: false,
        },
        Workload {
            name: "walk+lstat 10000 files, cold",
            build: |l| {
                for (i, lw) in l.iter().enumerate() {
                    for d in 0..scale(100) {
                        let dd = lw.join(format!("w/d{d}"));
                        fs::create_dir_all(&dd).unwrap();
                        for f in 0..20 {
                            fs::write(dd.join(format!("l{i}f{f}")), b"w").unwrap();
                        }
                    }
                }
            },
            run: |m| {
                drop_caches();
                let t = Instant::now();
                assert!(walk(&m.join("w")) > 0);
                t.elapsed()
            },
            volatile: false,
        },
        Workload {
            name: "walk+lstat 10000 files, warm",
            build: |_| {},
            run: |m| {
                walk(&m.join("w"));
                let t = Instant::now();
                assert!(walk(&m.join("w")) > 0);
                t.elapsed()
            },
            volatile: false,
        },
        Workload {
            // What one FUSE request costs from the caller's side, the unit
            // the metadata rows below are paid in: a getxattr of a missing
            // name is one round trip with little work at either end.
            name: "getxattr (ENODATA) x5000: 1 round trip",
            build: |l| build_files(l, "rt", 1, 1),
            run: |m| {
                let p = std::ffi::CString::new(
                    m.join("rt/f00000").into_os_string().into_encoded_bytes(),
                )
                .unwrap();
                let name = c"user.absent";
                let t = Instant::now();
                for _ in 0..scale(5000) {
                    let r = unsafe {
                        libc::getxattr(p.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0)
                    };
                    assert_eq!(r, -1);
                }
                t.elapsed()
            },
            volatile: false,
        },
        Workload {
            name: "create 3000 files of 1 KiB",
            build: |_| {},
            run: |m| {
                let d = m.join("new");
                fs::create_dir(&d).unwrap();
                let data = vec![b'c'; 1024];
                let t = Instant::now();
                for i in 0..scale(3000) {
                    fs::write(d.join(format!("n{i}")), &data).unwrap();
                }
                t.elapsed()
            },
            volatile: false,
        },
        Workload {
            name: "sequential write 256 MiB + fsync",
            build: |_| {},
            run: |m| {
                let chunk = vec![b'w'; 1 << 20];
                let t = Instant::now();
                let mut f = fs::File::create(m.join("seq")).unwrap();
                for _ in 0..scale(256) {
                    f.write_all(&chunk).unwrap();
                }
                f.sync_all().unwrap();
                t.elapsed()
            },
            volatile: false,
        },
        Workload {
            // Small write(2)s, the way a compiler, tar or a package manager
            // writes: each one a FUSE request for the daemon without
            // passthrough, and a capability check unless the kernel may
            // cache S_NOSEC (FUSE_HANDLE_KILLPRIV_V2).
            name: "write 16 MiB in 4 KiB writes",
            build: |_| {},
            run: |m| {
                let chunk = vec![b's'; 4096];
                let t = Instant::now();
                let mut f = fs::File::create(m.join("small")).unwrap();
                for _ in 0..scale(4096) {
                    f.write_all(&chunk).unwrap();
                }
                drop(f);
                t.elapsed()
            },
            volatile: false,
        },
        Workload {
            name: "sequential read 512 MiB, warm (2nd)",
            build: |l| big_file(l, "r512", scale(512) << 20),
            run: |m| read_file_after(m, "r512", 1),
            volatile: false,
        },
        Workload {
            // The row above times a FUSE mount's page cache on its second
            // touch, when the kernel moves every page to the active LRU
            // list (the kernel overlay's lower pages moved there when the
            // lower was written and first read); this one times the read
            // after that, once the cache has settled for every mount.
            name: "sequential read 512 MiB, warm (3rd)",
            build: |_| {},
            run: |m| read_file_after(m, "r512", 2),
            volatile: false,
        },
        Workload {
            name: "copy-up 1 MiB (fsync)",
            build: |l| big_file(l, "c1", 1 << 20),
            run: |m| copy_up(m, "c1"),
            volatile: false,
        },
        Workload {
            name: "copy-up 64 MiB (fsync)",
            build: |l| big_file(l, "c64", scale(64) << 20),
            run: |m| copy_up(m, "c64"),
            volatile: false,
        },
        Workload {
            name: "copy-up 1 MiB (volatile)",
            build: |_| {},
            run: |m| copy_up(m, "c1"),
            volatile: true,
        },
        Workload {
            name: "copy-up 64 MiB (volatile)",
            build: |_| {},
            run: |m| copy_up(m, "c64"),
            volatile: true,
        },
    ]
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: the comparison mounts the kernel overlayfs: run as root");
        return;
    }
    let only = std::env::var("OVLFUSE_BENCH_ONLY").ok();
    // OVLFUSE_BENCH_USER=1: the FUSE daemons run as an ordinary user (no
    // passthrough possible), the way rootless containers use them.
    let user = std::env::var_os("OVLFUSE_BENCH_USER").map(|_| {
        open_dev_fuse();
        enable_user_allow_other();
        ensure_user("ovltest")
    });
    // ovlfuse over both transports: /dev/fuse and, where the kernel has
    // it, io_uring (the harness turns the kernel's switch on for the run).
    let uring = uring_available();
    let impls: Vec<Impl> = [
        Impl::Kernel,
        Impl::Ovlfuse,
        Impl::OvlfuseUring,
        Impl::FuseOverlayfs,
    ]
    .into_iter()
    .filter(|i| *i != Impl::FuseOverlayfs || Path::new("/usr/bin/fuse-overlayfs").exists())
    .filter(|i| *i != Impl::OvlfuseUring || uring)
    .collect();
    // Held for its Drop (unmount); the layers go on it.
    let ram = std::env::var("OVLFUSE_BENCH_RAM")
        .is_ok_and(|v| v == "1")
        .then(|| {
            LoopImage::create(
                Path::new("/dev/shm"),
                RAM_IMAGE_BYTES,
                &["mkfs.ext4", "-q", "-F"],
            )
            .unwrap_or_else(|e| panic!("OVLFUSE_BENCH_RAM: {e}"))
        });
    let t = match &ram {
        Some(img) => {
            let d = tempfile::Builder::new()
                .prefix("ovt")
                .tempdir_in(&img.mnt)
                .unwrap();
            // As tempdir() does: an ordinary bench user must traverse it.
            sys::chmod(d.path(), 0o755).unwrap();
            d
        }
        None => tempdir(),
    };
    let lowers: Vec<PathBuf> = (0..5).map(|i| t.path().join(format!("l{i}"))).collect();
    for l in &lowers {
        fs::create_dir_all(l).unwrap();
    }
    let machine = format!(
        "{} CPUs, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "ovlfuse comparison: 5 lowers on {}, {machine}; median of 3; ratio to kernel{}",
        if ram.is_some() {
            "ext4 in RAM (/dev/shm loop image)".to_string()
        } else {
            test_tmp_root().display().to_string()
        },
        if user.is_some() {
            "; FUSE daemons run by an ordinary user (kernel mounted by root)"
        } else {
            ""
        }
    );
    let mut head = format!("{:<40} {:>12}", "workload", "kernel");
    for i in &impls[1..] {
        head += &format!(" {:>14} {:>8}", i.name(), "ratio");
    }
    println!("{head}");
    for w in workloads() {
        (w.build)(&lowers);
        if let Some((uid, gid)) = user {
            // The user's own layers, as in a rootless container.
            chown_tree(&lowers, uid, gid);
        }
        if only.as_deref().is_some_and(|o| !w.name.contains(o)) {
            continue;
        }
        // Runs interleave (kernel, ovlfuse, ovlfuse-uring, fuse-overlayfs,
        // kernel, ...) so
        // a slow spell of the disk hits every implementation alike.
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); impls.len()];
        for run in 0..3 {
            for (k, &i) in impls.iter().enumerate() {
                let dir = t.path().join(format!("run-{}-{run}", i.name()));
                let (g, m) = mount_as(i, &lowers, &dir, w.volatile, user);
                // Start from a quiet disk: the previous run's deletions
                // (journal commits, discards) must not land in this one.
                settle();
                times[k].push(match user {
                    // As that user; caches dropped first (a user cannot).
                    Some((uid, gid)) => {
                        drop_caches();
                        with_creds(uid, gid, || (w.run)(&m))
                    }
                    None => (w.run)(&m),
                });
                drop(g);
                let _ = fs::remove_dir_all(&dir);
            }
        }
        let med: Vec<(Impl, Duration)> = impls
            .iter()
            .copied()
            .zip(times.into_iter().map(median))
            .collect();
        let k = med[0].1.as_secs_f64();
        let mut row = format!("{:<40} {:>12}", w.name, format!("{:.1} ms", k * 1e3));
        for (_, d) in &med[1..] {
            let s = d.as_secs_f64();
            row += &format!(
                " {:>14} {:>8}",
                format!("{:.1} ms", s * 1e3),
                format!("{:.2}x", s / k)
            );
        }
        println!("{row}");
    }
}
