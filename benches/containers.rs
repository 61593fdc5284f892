//! The Buildah/Podman sequence of tests/containers.rs, timed with ovlfuse
//! and with fuse-overlayfs as containers/storage's mount_program:
//! interleaved rounds (the order alternates), fresh storage each round,
//! median per program. `OVLFUSE_BENCH_ROUNDS` sets the rounds (default 7).
//! Root, with buildah, podman, runc, fuse-overlayfs and busybox installed.

#[path = "../tests/common/mod.rs"]
mod common;

use common::containers::{Storage, busybox_rootfs};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One sequence on fresh storage under `base`: seconds.
fn sequence(base: &Path, mount_program: &Path) -> f64 {
    let rootfs = base.join("rootfs");
    busybox_rootfs(&rootfs);
    let s = Storage::new(base, mount_program, None);
    let t0 = Instant::now();
    s.image_from(&rootfs, "bb");
    let c = s.ok("buildah", &["from", "--pull=false", "bb"]);
    s.buildah_sh(&c, &[], "echo hi > /f; rm /bin/ls");
    s.ok("buildah", &["commit", "-q", &c, "bb2"]);
    s.ok("podman", &["diff", &c]);
    s.podman_run_ok(&["bb2", "cat", "/f"]);
    t0.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: the containers bench needs root");
        return;
    }
    let rounds: usize = std::env::var("OVLFUSE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_ovlfuse"));
    let theirs = PathBuf::from("/usr/bin/fuse-overlayfs");
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let t = common::tempdir();
    for r in 0..rounds {
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let prog = if i == 0 { &ours } else { &theirs };
            let base = t.path().join(format!("r{r}-{i}"));
            times[i].push(sequence(&base, prog));
        }
    }
    let (a, b) = (median(times[0].clone()), median(times[1].clone()));
    println!("buildah/podman sequence, median of {rounds} interleaved rounds:");
    println!("  ovlfuse        {a:.3} s  (all: {:.2?})", times[0]);
    println!("  fuse-overlayfs {b:.3} s  (all: {:.2?})", times[1]);
    println!("  ratio ovlfuse / fuse-overlayfs: {:.2}x", a / b);
}
