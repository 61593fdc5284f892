//! Copy-up latency by file size: the kernel overlayfs, ovlfuse and
//! fuse-overlayfs side by side, in one run, on identical layers.
//!
//! Run as root (it mounts the kernel overlayfs and drops the page cache):
//!
//!     cargo bench --bench copyup
//!     OVLFUSE_COPYUP_MAX=1048576 OVLFUSE_COPYUP_RUNS=1 cargo bench --bench copyup  # quick look
//!     OVLFUSE_COPYUP_XFS=1 cargo bench --bench copyup   # also on XFS with reflink
//!
//! Environment:
//! - `OVLFUSE_COPYUP_MAX=BYTES`: largest file size measured (default 1 GiB;
//!   the sizes are 4 KiB, 64 KiB, 1 MiB, 16 MiB, 64 MiB, 256 MiB, 512 MiB, 1 GiB).
//! - `OVLFUSE_COPYUP_RUNS=N`: runs per point, the median is reported (default 3).
//! - `OVLFUSE_COPYUP_XFS=1`: also run every size on a sparse XFS image
//!   (`mkfs.xfs -m reflink=1`, from xfsprogs) loop-mounted under the test
//!   temp root; its rows are labelled `xfs-reflink`. The image is deleted after.
//! - `OVLFUSE_TEST_TMPDIR`: where the layers live (default /tmp), as for the tests.
//!
//! Method: the file sits in the bottom of five lowers; each run mounts a
//! fresh upper, drops the caches (`sync; echo 3 > drop_caches`), then times
//! opening the file for append and writing one byte, which copies it up.
//! Two durability modes at equal durability: `fsync` (kernel default vs
//! ovlfuse default) and `volatile` (`-o volatile` on both). fuse-overlayfs
//! never fsyncs a copy-up and has no such option: it is measured once per
//! size (mode `no-fsync` in the CSV) and shown in both rows of the table.
//! Each size is built once (real data, synced, not timed), shared read-only
//! by every implementation, and deleted before the next size.
//!
//! Output: a table on stdout, `bench-results/copyup.csv`
//! (`fs,mode,impl,size_bytes,median_ms,runs`) and `bench-results/copyup.svg`
//! (latency against size, both log scales).

#[path = "../tests/common/mod.rs"]
mod common;
mod shared;

use common::*;
use shared::*;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const SIZES: [u64; 8] = [
    4 << 10,
    64 << 10,
    1 << 20,
    16 << 20,
    64 << 20,
    256 << 20,
    512 << 20,
    1 << 30,
];
/// Sparse size of the XFS image (the largest lower plus a copy, with room).
const XFS_IMAGE_BYTES: u64 = 6 << 30;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Fsync,
    Volatile,
    /// fuse-overlayfs: never fsyncs, no option to ask for it.
    NoFsync,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Fsync => "fsync",
            Mode::Volatile => "volatile",
            Mode::NoFsync => "no-fsync",
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn human(bytes: u64, short: bool) -> String {
    let (n, unit) = match bytes {
        b if b >= 1 << 30 => (b >> 30, "G"),
        b if b >= 1 << 20 => (b >> 20, "M"),
        b => (b >> 10, "K"),
    };
    if short {
        format!("{n}{unit}")
    } else {
        format!("{n} {unit}iB")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Write `bytes` of real data (no holes, not one repeated byte) and sync it,
/// so the copy has real blocks to read and nothing of the build is pending.
fn build_file(path: &Path, bytes: u64) {
    let mut f = fs::File::create(path).unwrap();
    let mut chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
        chunk.rotate_left(1);
    }
    f.sync_all().unwrap();
}

/// Median copy-up time of `name` (in the bottom lower, `size` bytes) over
/// `runs` fresh mounts, each starting with cold caches.
fn measure(
    imp: Impl,
    mode: Mode,
    lowers: &[PathBuf],
    scratch: &Path,
    name: &str,
    size: u64,
    runs: usize,
) -> Duration {
    let times = (0..runs)
        .map(|run| {
            let dir = scratch.join(format!("run-{}-{}-{run}", imp.name(), mode.name()));
            let (g, m) = mount(imp, lowers, &dir, mode == Mode::Volatile);
            drop_caches();
            let t = copy_up(&m, name);
            drop(g);
            // The copy really landed in the upper layer, whole.
            let len = fs::metadata(dir.join("u").join(name)).map(|m| m.len());
            assert_eq!(len.ok(), Some(size + 1), "{} {}", imp.name(), mode.name());
            fs::remove_dir_all(&dir).unwrap();
            t
        })
        .collect();
    median(times)
}

/// One measured point (one CSV line).
struct Row {
    fs: String,
    mode: Mode,
    imp: Impl,
    size: u64,
    median_ms: f64,
    runs: usize,
}

/// Filesystem type of the mount holding `p` (longest mount point prefix).
fn fs_type(p: &Path) -> String {
    let p = fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = PathBuf::from(pre.split(' ').nth(4)?);
            Some((point, post.split(' ').next()?.to_string()))
        })
        .filter(|(point, _)| p.starts_with(point))
        .max_by_key(|(point, _)| point.as_os_str().len())
        .map_or_else(|| "?".to_string(), |(_, t)| t)
}

fn free_bytes(p: &Path) -> u64 {
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::statvfs(common::sys::cpath(p).as_ptr(), &mut st) };
    if r == 0 {
        st.f_bavail * st.f_frsize
    } else {
        u64::MAX
    }
}

/// Every size on five lowers under `base`; prints the table rows as it goes.
fn run_fs(label: &str, base: &Path, impls: &[Impl], sizes: &[u64], runs: usize) -> Vec<Row> {
    let lowers: Vec<PathBuf> = (0..5).map(|i| base.join(format!("l{i}"))).collect();
    for l in &lowers {
        fs::create_dir_all(l).unwrap();
    }
    let scratch = base.join("runs");
    println!("\n== layers on {label} ({}) ==", base.display());
    println!(
        "{:>8} {:>8} {:>11} {:>11} {:>7} {:>26} {:>7}",
        "size", "mode", "kernel", "ovlfuse", "ratio", "fuse-overlayfs (no fsync)", "ratio"
    );
    let mut rows = Vec::new();
    for &size in sizes {
        let name = format!("f{size}");
        let file = lowers[lowers.len() - 1].join(&name);
        build_file(&file, size);
        let mut point = |imp: Impl, mode: Mode| {
            let d = ms(measure(imp, mode, &lowers, &scratch, &name, size, runs));
            rows.push(Row {
                fs: label.to_string(),
                mode,
                imp,
                size,
                median_ms: d,
                runs,
            });
            d
        };
        let fo = impls
            .contains(&Impl::FuseOverlayfs)
            .then(|| point(Impl::FuseOverlayfs, Mode::NoFsync));
        for mode in [Mode::Fsync, Mode::Volatile] {
            let k = point(Impl::Kernel, mode);
            let o = point(Impl::Ovlfuse, mode);
            let cell = |v: f64| format!("{v:.2} ms");
            println!(
                "{:>8} {:>8} {:>11} {:>11} {:>7} {:>26} {:>7}",
                human(size, false),
                mode.name(),
                cell(k),
                cell(o),
                format!("{:.2}x", o / k),
                fo.map_or("-".to_string(), cell),
                fo.map_or("-".to_string(), |f| format!("{:.2}x", f / k)),
            );
        }
        fs::remove_file(&file).unwrap();
        let _ = fs::remove_dir_all(&scratch);
    }
    rows
}

fn write_csv(path: &Path, rows: &[Row]) {
    let mut s = String::from("fs,mode,impl,size_bytes,median_ms,runs\n");
    for r in rows {
        let (fs, mode, imp) = (&r.fs, r.mode.name(), r.imp.name());
        writeln!(
            s,
            "{fs},{mode},{imp},{},{:.3},{}",
            r.size, r.median_ms, r.runs
        )
        .unwrap();
    }
    fs::write(path, s).unwrap();
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Latency (ms) against size, both log scales: one line with markers per
/// (fs, implementation, mode). Colour = implementation, dash = mode,
/// marker = filesystem.
fn write_svg(path: &Path, rows: &[Row], title: &str, subtitle: &str) {
    let (w, h) = (960.0, 640.0);
    let (left, right, top, bottom) = (80.0, w - 30.0, 80.0, h - 60.0);
    let mut sizes: Vec<u64> = rows.iter().map(|r| r.size).collect();
    sizes.sort();
    sizes.dedup();
    let lx = |b: u64| (b as f64).log2();
    let (x0, x1) = (lx(sizes[0]), lx(sizes[sizes.len() - 1]));
    let x = |b: u64| left + (lx(b) - x0) / (x1 - x0).max(1.0) * (right - left);
    let lms: Vec<f64> = rows.iter().map(|r| r.median_ms.max(1e-3).log10()).collect();
    let y0 = lms.iter().cloned().fold(f64::MAX, f64::min).floor();
    let y1 = lms
        .iter()
        .cloned()
        .fold(f64::MIN, f64::max)
        .ceil()
        .max(y0 + 1.0);
    let y = |v: f64| bottom - (v.max(1e-3).log10() - y0) / (y1 - y0) * (bottom - top);

    let mut s = String::new();
    let mut line = |t: String| s.push_str(&(t + "\n"));
    line(format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    ));
    line(format!(r#"<rect width="{w}" height="{h}" fill="white"/>"#));
    line(format!(
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        w / 2.0,
        xml_escape(title)
    ));
    line(format!(
        r#"<text x="{}" y="50" text-anchor="middle">{}</text>"#,
        w / 2.0,
        xml_escape(subtitle)
    ));
    // Grid, ticks and tick labels.
    for &b in &sizes {
        let xb = x(b);
        line(format!(
            r##"<line x1="{xb:.1}" y1="{top}" x2="{xb:.1}" y2="{bottom}" stroke="#ddd"/>"##
        ));
        line(format!(
            r#"<text x="{xb:.1}" y="{}" text-anchor="middle">{}</text>"#,
            bottom + 18.0,
            human(b, true)
        ));
    }
    for e in y0 as i32..=y1 as i32 {
        let v = 10f64.powi(e);
        let yv = y(v);
        let label = if e < 0 {
            format!("{v}")
        } else {
            format!("{v:.0}")
        };
        line(format!(
            r##"<line x1="{left}" y1="{yv:.1}" x2="{right}" y2="{yv:.1}" stroke="#ddd"/>"##
        ));
        line(format!(
            r#"<text x="{}" y="{:.1}" text-anchor="end">{label}</text>"#,
            left - 6.0,
            yv + 4.0
        ));
    }
    // Axes and their labels.
    line(format!(
        r#"<path d="M{left},{top} V{bottom} H{right}" fill="none" stroke="black"/>"#
    ));
    line(format!(
        r#"<text x="{}" y="{}" text-anchor="middle">file size (log scale)</text>"#,
        (left + right) / 2.0,
        h - 20.0
    ));
    line(format!(
        r#"<text transform="translate(24,{}) rotate(-90)" text-anchor="middle">copy-up latency, ms (log scale)</text>"#,
        (top + bottom) / 2.0
    ));
    // One series per (fs, impl, mode): by filesystem (in run order), then
    // mode, then implementation, so the legend reads in pairs.
    let mut filesystems: Vec<&str> = rows.iter().map(|r| r.fs.as_str()).collect();
    filesystems.dedup();
    let mut series: Vec<(&str, Impl, Mode)> = Vec::new();
    for r in rows {
        if !series.contains(&(r.fs.as_str(), r.imp, r.mode)) {
            series.push((r.fs.as_str(), r.imp, r.mode));
        }
    }
    series.sort_by_key(|&(fs, imp, mode)| {
        let fs_index = filesystems.iter().position(|f| *f == fs);
        (fs_index, mode as u8, imp as u8)
    });
    let marker = |fs: &str, cx: f64, cy: f64, color: &str| {
        if filesystems.first() == Some(&fs) {
            format!(r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="3.5" fill="{color}"/>"#)
        } else {
            let (mx, my) = (cx - 3.5, cy - 3.5);
            format!(r#"<rect x="{mx:.1}" y="{my:.1}" width="7" height="7" fill="{color}"/>"#)
        }
    };
    for (i, &(fs, imp, mode)) in series.iter().enumerate() {
        let color = match imp {
            Impl::Kernel => "#1f77b4",
            Impl::Ovlfuse => "#d62728",
            Impl::OvlfuseUring => "#9467bd",
            Impl::FuseOverlayfs => "#2ca02c",
        };
        let dash = match mode {
            Mode::Fsync => "none",
            Mode::Volatile => "7 4",
            Mode::NoFsync => "2 3",
        };
        let mut pts: Vec<(u64, f64)> = rows
            .iter()
            .filter(|r| (r.fs.as_str(), r.imp, r.mode) == (fs, imp, mode))
            .map(|r| (r.size, r.median_ms))
            .collect();
        pts.sort_by_key(|p| p.0);
        let d: Vec<String> = pts
            .iter()
            .map(|&(b, v)| format!("{:.1},{:.1}", x(b), y(v)))
            .collect();
        line(format!(
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.8" stroke-dasharray="{dash}"/>"#,
            d.join(" ")
        ));
        for &(b, v) in &pts {
            line(marker(fs, x(b), y(v), color));
        }
        // Legend entry, top left inside the plot.
        let (lx0, ly) = (left + 14.0, top + 16.0 + 17.0 * i as f64);
        line(format!(
            r#"<line x1="{lx0}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="1.8" stroke-dasharray="{dash}"/>"#,
            lx0 + 34.0
        ));
        line(marker(fs, lx0 + 17.0, ly, color));
        line(format!(
            r#"<text x="{}" y="{}">{fs} · {} · {}</text>"#,
            lx0 + 42.0,
            ly + 4.0,
            imp.name(),
            mode.name()
        ));
    }
    line("</svg>".to_string());
    fs::write(path, s).unwrap();
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP: the copy-up bench mounts the kernel overlayfs: run as root");
        return;
    }
    let max = env_u64("OVLFUSE_COPYUP_MAX", 1 << 30);
    let runs = env_u64("OVLFUSE_COPYUP_RUNS", 3).max(1) as usize;
    let xfs = std::env::var("OVLFUSE_COPYUP_XFS").is_ok_and(|v| v == "1");
    let sizes: Vec<u64> = SIZES.into_iter().filter(|&s| s <= max).collect();
    let Some(&largest) = sizes.last() else {
        eprintln!("copyup: OVLFUSE_COPYUP_MAX={max} is below the smallest size (4096)");
        return;
    };
    // The lower file and one copy of it at a time, plus slack.
    let need = 2 * largest + (1 << 30);
    let free = free_bytes(&test_tmp_root());
    if free < need {
        eprintln!(
            "copyup: {} has {} free, needs about {}",
            test_tmp_root().display(),
            human(free, false),
            human(need, false)
        );
        std::process::exit(1);
    }
    let impls: Vec<Impl> = [Impl::Kernel, Impl::Ovlfuse, Impl::FuseOverlayfs]
        .into_iter()
        .filter(|i| *i != Impl::FuseOverlayfs || Path::new("/usr/bin/fuse-overlayfs").exists())
        .collect();

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = Command::new("date").arg("+%Y-%m-%d").output().map_or_else(
        |_| "?".into(),
        |o| String::from_utf8_lossy(&o.stdout).into_owned(),
    );
    let (kernel, date) = (kernel.trim(), date.trim());
    println!(
        "ovlfuse copy-up latency: {cpus} CPUs, kernel {kernel}, {date}; 5 lowers, \
         file in the bottom one; open(O_APPEND) + 1-byte write, cold caches; median of {runs}"
    );

    let t = tempdir();
    let base_fs = fs_type(t.path());
    let mut rows = run_fs(&base_fs, t.path(), &impls, &sizes, runs);
    drop(t);
    let mut layer_fs = base_fs.clone();
    if xfs {
        match LoopImage::create(
            &test_tmp_root(),
            XFS_IMAGE_BYTES,
            &["mkfs.xfs", "-q", "-f", "-m", "reflink=1"],
        ) {
            Ok(img) => {
                rows.extend(run_fs("xfs-reflink", &img.mnt, &impls, &sizes, runs));
                layer_fs.push_str(" and xfs-reflink (loop image)");
            }
            Err(e) => eprintln!("copyup: no XFS run (install xfsprogs?): {e}"),
        }
    }
    if impls.contains(&Impl::FuseOverlayfs) {
        println!("\nfuse-overlayfs never fsyncs a copy-up: one measurement, shown in both rows");
    }

    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results");
    fs::create_dir_all(&out).unwrap();
    write_csv(&out.join("copyup.csv"), &rows);
    write_svg(
        &out.join("copyup.svg"),
        &rows,
        "Copy-up latency by file size: kernel overlayfs, ovlfuse, fuse-overlayfs",
        &format!(
            "{cpus} CPUs, kernel {kernel}, layers on {layer_fs}, {date}; \
             cold caches, median of {runs}"
        ),
    );
    println!("wrote {0}/copyup.csv and {0}/copyup.svg", out.display());
}
