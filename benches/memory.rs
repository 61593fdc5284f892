//! Memory per cached inode: how much the daemon grows while the kernel
//! holds an inode for every file, and whether it gives it back once the
//! kernel forgets them. Run as root: `cargo bench --bench memory`.
//!
//! One lower of N empty files (OVLFUSE_MEM_FILES, default 1,000,000) in
//! directories of 1000, built once and kept at
//! `$OVLFUSE_TEST_TMPDIR/ovlfuse-mem-cache/lower-N` (default /tmp) for the
//! next run, plus an empty upper. For ovlfuse and (if installed)
//! fuse-overlayfs, the daemon's VmRSS and RssAnon (/proc/PID/status) are
//! read idle after mount, after a walk + lstat of every file, after
//! `echo 2 > /proc/sys/vm/drop_caches` (the kernel evicts its inodes and
//! sends FORGETs) and after a second walk. ovlfuse's inode-table size comes
//! from its `ovlfuse.stats` xattr.
//!
//! First, in this process with a counting allocator, the inode table alone
//! (`ovlfuse::fuse::inodes::Inodes`) is filled with the same N+dirs nodes,
//! to tell the table's own cost from allocator and kernel-side effects.

#[path = "../tests/common/mod.rs"]
mod common;
mod shared;

use common::*;
use ovlfuse::fuse::inodes::{Inodes, Node, ROOT};
use shared::walk;
use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Files per directory of the lower.
const PER_DIR: usize = 1000;
/// The goal: bytes per cached inode above idle.
const TARGET: f64 = 200.0;

// ------------------------------------------------------- counting allocator

/// System allocator that counts live bytes: as requested, and as glibc
/// chunks (8 bytes of header, 16-byte granules, 32 bytes at least).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIVE_CHUNKS: AtomicUsize = AtomicUsize::new(0);
static LIVE_BLOCKS: AtomicUsize = AtomicUsize::new(0);

fn chunk(size: usize) -> usize {
    (size + 8).next_multiple_of(16).max(32)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            LIVE.fetch_add(l.size(), Relaxed);
            LIVE_CHUNKS.fetch_add(chunk(l.size()), Relaxed);
            LIVE_BLOCKS.fetch_add(1, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Relaxed);
        LIVE_CHUNKS.fetch_sub(chunk(l.size()), Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[derive(Clone, Copy)]
struct Live {
    bytes: usize,
    chunks: usize,
    blocks: usize,
}

fn live() -> Live {
    Live {
        bytes: LIVE.load(Relaxed),
        chunks: LIVE_CHUNKS.load(Relaxed),
        blocks: LIVE_BLOCKS.load(Relaxed),
    }
}

// ------------------------------------------------------------------ helpers

fn files_wanted() -> usize {
    std::env::var("OVLFUSE_MEM_FILES")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000)
}

fn dirs_for(n: usize) -> usize {
    n.div_ceil(PER_DIR)
}

fn dir_name(d: usize) -> String {
    format!("d{d:05}")
}

/// Files of directory `d` when `n` files are spread in directories of 1000.
fn files_in(d: usize, n: usize) -> std::ops::Range<usize> {
    d * PER_DIR..((d + 1) * PER_DIR).min(n)
}

/// The cached lower with `n` files, built if missing (or left half-built).
fn cached_lower(n: usize) -> PathBuf {
    let base = test_tmp_root().join("ovlfuse-mem-cache");
    let lower = base.join(format!("lower-{n}"));
    let done = base.join(format!("lower-{n}.complete"));
    if done.exists() && lower.is_dir() {
        println!("lower: reusing {} ({n} files)", lower.display());
        return lower;
    }
    let _ = fs::remove_dir_all(&lower);
    fs::create_dir_all(&lower).unwrap();
    let t = Instant::now();
    let dirs = dirs_for(n);
    let workers = std::thread::available_parallelism().map_or(2, |c| c.get());
    std::thread::scope(|s| {
        for w in 0..workers {
            let lower = &lower;
            s.spawn(move || {
                for d in (w..dirs).step_by(workers) {
                    let dd = lower.join(dir_name(d));
                    fs::create_dir(&dd).unwrap();
                    for f in files_in(d, n) {
                        fs::File::create(dd.join(format!("f{f:07}"))).unwrap();
                    }
                }
            });
        }
    });
    fs::write(&done, b"").unwrap();
    println!(
        "lower: built {} ({n} files in {dirs} dirs) in {:.1} s",
        lower.display(),
        t.elapsed().as_secs_f64()
    );
    lower
}

/// (VmRSS, RssAnon, VmHWM) of `pid` in bytes.
fn rss(pid: i32) -> (u64, u64, u64) {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("RssAnon:"), field("VmHWM:"))
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

/// `cached_inodes` from ovlfuse's stats xattr (None for other daemons).
fn cached_inodes(mnt: &Path) -> Option<u64> {
    let v = sys::getxattr(mnt, "ovlfuse.stats", true).ok()?;
    String::from_utf8_lossy(&v)
        .lines()
        .find_map(|l| l.strip_prefix("cached_inodes "))
        .and_then(|v| v.trim().parse().ok())
}

fn drop_caches() {
    let _ = fs::write("/proc/sys/vm/drop_caches", "2");
}

struct Point {
    what: &'static str,
    rss: (u64, u64, u64),
    inodes: Option<u64>,
}

fn point(what: &'static str, pid: i32, mnt: &Path) -> Point {
    // The stats read itself is a request: read the table first.
    let inodes = cached_inodes(mnt);
    let p = Point {
        what,
        rss: rss(pid),
        inodes,
    };
    println!(
        "  {:<34} VmRSS {:>11}  RssAnon {:>11}  VmHWM {:>11}  cached_inodes {}",
        p.what,
        mib(p.rss.0),
        mib(p.rss.1),
        mib(p.rss.2),
        p.inodes.map_or("-".into(), |n| n.to_string())
    );
    p
}

/// drop_caches until the daemon stops shrinking (its inode table, or its
/// RSS for daemons without one), 60 s at most.
fn forget_all(pid: i32, mnt: &Path) -> Duration {
    let t = Instant::now();
    let mut last = (u64::MAX, u64::MAX);
    let mut stable = 0;
    while t.elapsed() < Duration::from_secs(60) {
        drop_caches();
        std::thread::sleep(Duration::from_millis(500));
        let now = (cached_inodes(mnt).unwrap_or(0), rss(pid).0);
        if now == last {
            stable += 1;
            if stable >= 3 {
                break;
            }
        } else {
            stable = 0;
        }
        last = now;
    }
    t.elapsed()
}

// ------------------------------------------------------------------- stages

/// The inode table alone, in this process, with the shapes ovlfuse gives
/// it: directory nodes merge lower 1 (the upper is layer 0), files none.
fn table_alone(n: usize) {
    let dirs = dirs_for(n);
    println!(
        "inode table alone (in-process, counting allocator): size_of Node {} B, (u64, Node) {} B",
        std::mem::size_of::<Node>(),
        std::mem::size_of::<(u64, Node)>()
    );
    let before = live();
    let at = |path: &str| {
        vec![ovlfuse::lookup::LayerPath {
            layer: 1,
            path: path.into(),
        }]
    };
    let t = Inodes::new(at(""));
    let lower_ino = |real: usize| (2u64 << 48) | (real as u64 + 100);
    for d in 0..dirs {
        let dino = lower_ino(d);
        t.remember(dino, ROOT, &OsString::from(dir_name(d)), at(&dir_name(d)));
        for f in files_in(d, n) {
            t.remember(
                lower_ino(dirs + f),
                dino,
                &OsString::from(format!("f{f:07}")),
                Vec::new(),
            );
        }
    }
    let full = live();
    let nodes = t.len() - 1;
    let per = |a: usize, b: usize| (a - b) as f64 / nodes as f64;
    println!(
        "  {nodes} nodes: {} requested = {:.1} B/inode; as glibc chunks {:.1} B/inode; {:.2} heap blocks/inode",
        mib((full.bytes - before.bytes) as u64),
        per(full.bytes, before.bytes),
        per(full.chunks, before.chunks),
        per(full.blocks, before.blocks),
    );
    for d in 0..dirs {
        for f in files_in(d, n) {
            t.forget(lower_ino(dirs + f), 1);
        }
        t.forget(lower_ino(d), 1);
    }
    let empty = live();
    println!(
        "  after forgetting all ({} left): {} still allocated ({:.1} B per forgotten inode): the hash table keeps its capacity",
        t.len(),
        mib((empty.bytes - before.bytes) as u64),
        per(empty.bytes, before.bytes)
    );
    drop(t);
}

#[derive(Clone, Copy, PartialEq)]
enum Daemon {
    Ovlfuse,
    FuseOverlayfs,
}

/// Mount `which` over `lower`, walk, forget, walk again; bytes per cached
/// inode above idle.
fn run(which: Daemon, lower: &Path, n: usize) -> Option<f64> {
    let dir = tempdir();
    let (u, w, m) = (
        dir.path().join("u"),
        dir.path().join("w"),
        dir.path().join("m"),
    );
    for d in [&u, &w, &m] {
        fs::create_dir_all(d).unwrap();
    }
    let lowers = [lower.to_path_buf()];
    let (name, mnt) = match which {
        Daemon::Ovlfuse => (
            "ovlfuse",
            FuseMount::mount(&lowers, Some((&u, &w)), &m, &[] as &[&str]),
        ),
        Daemon::FuseOverlayfs => {
            let o = ovlfuse_options(&lowers, Some((&u, &w)), &[] as &[&str]);
            (
                "fuse-overlayfs",
                FuseMount::try_mount_bin(Path::new("fuse-overlayfs"), &o, &m, None)
                    .unwrap_or_else(|e| panic!("{e}")),
            )
        }
    };
    let Some(pid) = mnt.daemon_pid() else {
        println!("{name}: daemon pid not found; skipped");
        return None;
    };
    println!("{name} (daemon pid {pid}):");
    std::thread::sleep(Duration::from_millis(300));
    let idle = point("idle after mount", pid, &m);

    let t = Instant::now();
    let seen = walk(&m);
    let walk_s = t.elapsed().as_secs_f64();
    assert_eq!(seen, n + dirs_for(n), "walk saw {seen} entries");
    let walked = point("after walk+lstat", pid, &m);
    let per = (walked.rss.0 as f64 - idle.rss.0 as f64) / n as f64;
    let per_anon = (walked.rss.1 as f64 - idle.rss.1 as f64) / n as f64;
    println!(
        "  walk of {seen} entries: {walk_s:.1} s; bytes per cached inode above idle: {per:.1} (VmRSS), {per_anon:.1} (RssAnon)"
    );

    let took = forget_all(pid, &m);
    let forgot = point("after drop_caches (FORGETs)", pid, &m);
    let kept = forgot.rss.0.saturating_sub(idle.rss.0);
    let grown = walked.rss.0.saturating_sub(idle.rss.0).max(1);
    println!(
        "  forgets settled in {:.1} s; RSS above idle after forgets: {} ({:.0}% of the walk's growth){}",
        took.as_secs_f64(),
        mib(kept),
        100.0 * kept as f64 / grown as f64,
        match (walked.inodes, forgot.inodes) {
            (Some(a), Some(b)) => format!("; inode table {a} -> {b}"),
            _ => String::new(),
        }
    );

    walk(&m);
    let again = point("after a second walk+lstat", pid, &m);
    println!(
        "  second walk grew RSS by {} over the first (freed memory reused if ~0)",
        mib(again.rss.0.saturating_sub(walked.rss.0))
    );
    drop(mnt);
    Some(per)
}

fn main() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let n = files_wanted();
    println!(
        "ovlfuse memory bench: {n} empty files in {} dirs of {PER_DIR}, one lower + empty upper; {} CPUs, kernel {}",
        dirs_for(n),
        std::thread::available_parallelism().map_or(0, |c| c.get()),
        fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    table_alone(n);
    let lower = cached_lower(n);
    let ours = run(Daemon::Ovlfuse, &lower, n);
    if Path::new("/usr/bin/fuse-overlayfs").exists() {
        run(Daemon::FuseOverlayfs, &lower, n);
    } else {
        println!("fuse-overlayfs: not installed (apt-get install -y fuse-overlayfs); skipped");
    }
    if let Some(per) = ours {
        println!(
            "ovlfuse: {per:.1} bytes per cached inode above idle; target at most {TARGET:.0}: {}",
            if per <= TARGET { "met" } else { "NOT met" }
        );
    }
}
