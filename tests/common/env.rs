//! Environment requirements: skip (or fail under CI=true) when missing.

use std::path::PathBuf;
use std::sync::OnceLock;

use tempfile::TempDir;

use super::mounts::{KernelApi, KernelOverlay};
use super::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Effective uid 0.
    Root,
    /// /dev/fuse, fuse in /proc/filesystems, fusermount3 on PATH.
    Fuse,
    /// A test mount of the kernel overlay succeeds (needs root).
    KernelOverlay,
    /// The temp filesystem takes user.* xattrs (and trusted.* as root).
    Xattrs,
    /// An executable of this name on PATH.
    Tool(&'static str),
}

/// CI=true turns every skip into a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// `ok`, or: panic under CI, else print "SKIP: <what>" and return false.
pub fn need(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("required test environment missing (CI=true, so not skipping): {what}");
    }
    eprintln!("SKIP: {what}");
    false
}

/// Where the harness makes its temp dirs: $OVLFUSE_TEST_TMPDIR or /tmp
/// (the layers need a filesystem with trusted.* and user.* xattrs).
pub fn test_tmp_root() -> PathBuf {
    std::env::var_os("OVLFUSE_TEST_TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// A fresh temp dir, mode 0755 so an unprivileged test user can traverse it.
pub fn tempdir() -> TempDir {
    let d = tempfile::Builder::new()
        .prefix("ovt")
        .tempdir_in(test_tmp_root())
        .unwrap_or_else(|e| panic!("tempdir in {}: {e}", test_tmp_root().display()));
    sys::chmod(d.path(), 0o755).expect("chmod tempdir");
    d
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn check_fuse() -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let dev = std::fs::metadata("/dev/fuse").map_err(|e| format!("/dev/fuse: {e}"))?;
    if !dev.file_type().is_char_device() {
        return Err("/dev/fuse is not a character device".into());
    }
    let fss = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !fss
        .lines()
        .any(|l| l.split_whitespace().last() == Some("fuse"))
    {
        return Err("fuse is not in /proc/filesystems".into());
    }
    if !on_path("fusermount3") {
        return Err("fusermount3 is not on PATH".into());
    }
    Ok(())
}

fn check_kernel_overlay() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            if sys::geteuid() != 0 {
                return Err("mounting the kernel overlay needs root".into());
            }
            let d = tempdir();
            let p = |n: &str| {
                let q = d.path().join(n);
                std::fs::create_dir(&q)
                    .map(|_| q)
                    .map_err(|e| e.to_string())
            };
            let (l, u, w, m) = (p("l")?, p("u")?, p("w")?, p("m")?);
            std::fs::write(l.join("probe"), b"x").map_err(|e| e.to_string())?;
            let ov =
                KernelOverlay::try_mount(&[l], Some((&u, &w)), &m, &[] as &[&str], KernelApi::Auto)
                    .map_err(|e| format!("cannot mount a kernel overlay: {e}"))?;
            let seen = m.join("probe").exists();
            drop(ov);
            if seen {
                Ok(())
            } else {
                Err("kernel overlay mounted but does not show its lower".into())
            }
        })
        .clone()
}

fn check_xattrs() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let d = tempdir();
            let f = d.path().join("x");
            std::fs::write(&f, b"").map_err(|e| e.to_string())?;
            let mut names = vec!["user.ovltest"];
            if sys::geteuid() == 0 {
                names.push("trusted.ovltest");
            }
            for n in names {
                sys::setxattr(&f, n, b"1", 0, false).map_err(|e| {
                    format!(
                        "{} does not take {n} xattrs: {}",
                        test_tmp_root().display(),
                        sys::errno_name(e)
                    )
                })?;
            }
            Ok(())
        })
        .clone()
}

/// Ok, or why the requirement is not met.
pub fn check_need(n: Need) -> Result<(), String> {
    match n {
        Need::Root => (sys::geteuid() == 0)
            .then_some(())
            .ok_or_else(|| "needs root".to_string()),
        Need::Fuse => {
            super::transport::select();
            check_fuse()
        }
        Need::KernelOverlay => check_kernel_overlay(),
        Need::Xattrs => check_xattrs(),
        Need::Tool(t) => on_path(t)
            .then_some(())
            .ok_or_else(|| format!("{t} is not on PATH")),
    }
}

/// `if !common::env_ok(&[Need::Root, Need::Fuse]) { return; }`
pub fn env_ok(needs: &[Need]) -> bool {
    for n in needs {
        if let Err(why) = check_need(*n) {
            return need(&why, false);
        }
    }
    true
}

pub fn require_root() -> bool {
    env_ok(&[Need::Root])
}

pub fn require_fuse() -> bool {
    env_ok(&[Need::Fuse])
}

pub fn require_kernel_overlay() -> bool {
    env_ok(&[Need::KernelOverlay])
}

/// Everything a twin test needs.
pub fn require_twin() -> bool {
    env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay, Need::Xattrs])
}
