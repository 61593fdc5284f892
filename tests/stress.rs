//! Load (issue 5): 16 workers hammer one mount with mixed operations on
//! disjoint and shared files, many of them racing copy-ups of lower files.
//! Afterwards every file must hold exactly what the workers' logs say they
//! wrote, the daemon must not have panicked, and its peak RSS is reported.
//!
//! A second test churns inode numbers: copy-ups racing removals that free
//! upper inodes, on the kernel overlayfs and on ovlfuse.
//!
//! Bounded: OVLFUSE_STRESS_SECS (default 15) seconds of load;
//! OVLFUSE_STRESS_WORKERS workers (default 16; 8 for the churn);
//! OVLFUSE_INO_FILES (default 400) copy-ups per churn thread.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RECORD: usize = 32;
const SHARED: usize = 4;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What one worker believes the tree holds when it is done.
#[derive(Default)]
struct Log {
    /// Own files: path -> exact content.
    files: BTreeMap<PathBuf, Vec<u8>>,
    /// Records appended to shared files.
    appended: Vec<(usize, String)>,
    ops: u64,
    bytes: u64,
}

fn record(w: usize, seq: u64) -> String {
    let s = format!("w{w:02} seq{seq:010} ");
    format!("{s:-<width$}\n", width = RECORD - 1)
}

fn worker(m: &Path, w: usize, until: Instant) -> Log {
    let mut log = Log::default();
    let dir = m.join(format!("w{w}"));
    // Own lower files start with their lower content.
    for i in 0..4 {
        log.files.insert(
            dir.join(format!("f{i}")),
            format!("lower w{w} f{i}\n").into_bytes(),
        );
    }
    let mut seq = 0u64;
    let mut rng = (w as u64 + 1) * 0x9E37_79B9;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    while Instant::now() < until {
        seq += 1;
        log.ops += 1;
        let r = next();
        let i = (r >> 8) % 6;
        let p = dir.join(format!("f{i}"));
        match r % 8 {
            // Write at an offset (copy-up on first write to a lower file).
            0 | 1 => {
                let cur = log.files.entry(p.clone()).or_default();
                let off = ((r >> 16) % 64) as usize;
                let data = format!("<{w}:{seq}>").into_bytes();
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&p)
                    .unwrap();
                f.seek(SeekFrom::Start(off as u64)).unwrap();
                f.write_all(&data).unwrap();
                if cur.len() < off + data.len() {
                    cur.resize(off + data.len(), 0);
                }
                cur[off..off + data.len()].copy_from_slice(&data);
                log.bytes += data.len() as u64;
            }
            // Append a record to a shared file (racing copy-ups and appends).
            2 | 3 => {
                let s = (r >> 20) as usize % SHARED;
                let rec = record(w, seq);
                let mut f = fs::OpenOptions::new()
                    .append(true)
                    .open(m.join(format!("shared{s}")))
                    .unwrap();
                f.write_all(rec.as_bytes()).unwrap();
                log.appended.push((s, rec));
                log.bytes += RECORD as u64;
            }
            // Truncate.
            4 => {
                if let Some(cur) = log.files.get_mut(&p) {
                    let n = ((r >> 16) % 24) as usize;
                    fs::OpenOptions::new()
                        .write(true)
                        .open(&p)
                        .unwrap()
                        .set_len(n as u64)
                        .unwrap();
                    cur.resize(n, 0);
                }
            }
            // Rename over another own file.
            5 => {
                let j = (r >> 24) % 6;
                let q = dir.join(format!("f{j}"));
                if i != j && log.files.contains_key(&p) {
                    fs::rename(&p, &q).unwrap();
                    let c = log.files.remove(&p).unwrap();
                    log.files.insert(q, c);
                }
            }
            // Unlink.
            6 => {
                if log.files.remove(&p).is_some() {
                    fs::remove_file(&p).unwrap();
                }
            }
            // Read back and check against the log.
            _ => {
                if let Some(cur) = log.files.get(&p) {
                    let got = fs::read(&p).unwrap();
                    assert_eq!(&got, cur, "worker {w} read {} mid-run", p.display());
                }
            }
        }
    }
    log
}

fn peak_rss_kib(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn concurrent_workers_lose_nothing_and_memory_stays_bounded() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let secs = env_num("OVLFUSE_STRESS_SECS", 15);
    let workers = env_num("OVLFUSE_STRESS_WORKERS", 16) as usize;
    let t = tempdir();
    let b = t.path();
    for d in ["l", "u", "w", "m"] {
        fs::create_dir(b.join(d)).unwrap();
    }
    let mut spec = layer();
    for w in 0..workers {
        for i in 0..4 {
            spec = spec.file(format!("w{w}/f{i}"), format!("lower w{w} f{i}\n"));
        }
    }
    for s in 0..SHARED {
        spec = spec.file(format!("shared{s}"), "");
    }
    spec.apply(&b.join("l"));
    let m = b.join("m");
    let fm = FuseMount::mount(
        &[b.join("l")],
        Some((&b.join("u"), &b.join("w"))),
        &m,
        &["threads=4"],
    );
    let pid = fm.daemon_pid().expect("daemon pid");
    let until = Instant::now() + Duration::from_secs(secs);
    let logs: Vec<Log> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..workers)
            .map(|w| {
                let m = m.clone();
                sc.spawn(move || worker(&m, w, until))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    // Every own file holds exactly what its worker wrote; nothing else is there.
    let mut verified = 0u64;
    for (w, log) in logs.iter().enumerate() {
        let dir = m.join(format!("w{w}"));
        let mut present: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        present.sort();
        let expected: Vec<PathBuf> = log.files.keys().cloned().collect();
        assert_eq!(present, expected, "worker {w}'s directory");
        for (p, want) in &log.files {
            assert_eq!(&fs::read(p).unwrap(), want, "{}", p.display());
            verified += want.len() as u64;
        }
    }
    // Shared files: every appended record present once, none torn.
    for s in 0..SHARED {
        let mut data = String::new();
        fs::File::open(m.join(format!("shared{s}")))
            .unwrap()
            .read_to_string(&mut data)
            .unwrap();
        let mut got: Vec<&str> = data.split_inclusive('\n').collect();
        let mut want: Vec<&str> = logs
            .iter()
            .flat_map(|l| {
                l.appended
                    .iter()
                    .filter(|(x, _)| *x == s)
                    .map(|(_, r)| r.as_str())
            })
            .collect();
        assert!(
            got.iter().all(|r| r.len() == RECORD),
            "torn record in shared{s}"
        );
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got.len(), want.len(), "shared{s}: record count");
        assert!(got == want, "shared{s}: records differ");
        verified += data.len() as u64;
    }
    let rss = peak_rss_kib(pid).unwrap_or(0);
    let ops: u64 = logs.iter().map(|l| l.ops).sum();
    let written: u64 = logs.iter().map(|l| l.bytes).sum();
    eprintln!(
        "stress: {workers} workers, {secs} s, {ops} operations, {written} bytes written, {verified} bytes verified, daemon peak RSS {rss} KiB"
    );
    assert!(
        !fm.output().contains("panicked"),
        "daemon panicked: {}",
        fm.output()
    );
    assert!(rss > 0 && rss < 256 * 1024, "daemon peak RSS {rss} KiB");
    drop(fm);
}

/// Each of `threads` threads copies up its `files` lower files one by one,
/// renames and reads each, then removes it; returns every file whose inode
/// number or content changed on the way.
fn ino_churn(m: &Path, threads: usize, files: usize) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|w| {
                sc.spawn(move || {
                    let mut bad = Vec::new();
                    for i in 0..files {
                        let p = m.join(format!("t{w}/f{i}"));
                        let before = fs::symlink_metadata(&p).unwrap().ino();
                        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
                        f.write_all(b"upper\n").unwrap();
                        let during = f.metadata().unwrap().ino();
                        drop(f);
                        // Renamed, so the daemon must follow the node too.
                        let q = m.join(format!("t{w}/g{i}"));
                        fs::rename(&p, &q).unwrap();
                        let after = fs::symlink_metadata(&q).unwrap().ino();
                        let data = fs::read(&q).unwrap();
                        if before != during || before != after || data != b"lower\nupper\n" {
                            bad.push(format!("{}: ino {before} {during} {after}", p.display()));
                        }
                        // Frees the upper inode for another thread's copy-up.
                        fs::remove_file(&q).unwrap();
                    }
                    bad
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("thread panicked"))
            .collect()
    })
}

/// A copied-up file keeps its inode number while other threads remove
/// copied-up files, freeing upper inodes the next copy-up may get, as on the
/// kernel's overlayfs. (An unlink once dropped the freed inode's mapping
/// after a concurrent copy-up had reused the number: the copied-up file
/// changed st_ino and the daemon lost track of it, so a later lookup of its
/// new name gave ENOENT.)
#[test]
fn copy_up_keeps_st_ino_while_other_threads_free_upper_inodes() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let threads = env_num("OVLFUSE_STRESS_WORKERS", 8) as usize;
    let files = env_num("OVLFUSE_INO_FILES", 400) as usize;
    let t = tempdir();
    let b = t.path();
    let mut spec = layer();
    for w in 0..threads {
        for i in 0..files {
            spec = spec.file(format!("t{w}/f{i}"), "lower\n");
        }
    }
    for side in ["kernel", "ovlfuse"] {
        let d = b.join(side);
        for x in ["l", "u", "w", "m"] {
            fs::create_dir_all(d.join(x)).unwrap();
        }
        spec.apply(&d.join("l"));
        let (l, u, w, m) = (d.join("l"), d.join("u"), d.join("w"), d.join("m"));
        let changed = if side == "kernel" {
            let _k = KernelOverlay::mount(&[l], Some((&u, &w)), &m, &[] as &[&str]);
            ino_churn(&m, threads, files)
        } else {
            let fm = FuseMount::mount(&[l], Some((&u, &w)), &m, &["threads=4"]);
            let c = ino_churn(&m, threads, files);
            assert!(!fm.output().contains("panicked"), "{}", fm.output());
            c
        };
        assert!(
            changed.is_empty(),
            "{side}: {} of {} copied-up files changed inode or content, first: {:?}",
            changed.len(),
            threads * files,
            changed.first()
        );
    }
}
