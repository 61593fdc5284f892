//! Unprivileged-user helpers for rootless tests.

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};
use std::sync::Mutex;

use super::sys;

/// Serializes useradd: parallel tests would otherwise race on /etc/passwd's lock.
static USERADD: Mutex<()> = Mutex::new(());

/// (uid, gid) of `name` from /etc/passwd.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// Make /dev/fuse usable by unprivileged users (it is 0600 on this machine).
pub fn open_dev_fuse() {
    if let Err(e) = sys::chmod(std::path::Path::new("/dev/fuse"), 0o666) {
        panic!("chmod 0666 /dev/fuse: {}", sys::errno_name(e));
    }
}

/// Add `user_allow_other` to /etc/fuse.conf (idempotent), which fusermount3
/// requires before an unprivileged daemon may mount with allow_other.
pub fn enable_user_allow_other() {
    let _guard = USERADD.lock().unwrap_or_else(|p| p.into_inner());
    let conf = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    if conf.lines().any(|l| l.trim() == "user_allow_other") {
        return;
    }
    let mut new = conf;
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str("user_allow_other\n");
    std::fs::write("/etc/fuse.conf", new).expect("write /etc/fuse.conf");
}

/// Ensure an ordinary user `name` exists (creating it with useradd, no home)
/// and that it can open /dev/fuse. Needs root. Returns (uid, gid).
/// `chown -R uid:gid` of each path (tests and benches hand layers to the
/// ordinary user this way); panics if it fails.
pub fn chown_tree<P: AsRef<std::path::Path>>(paths: &[P], uid: u32, gid: u32) {
    let ok = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .args(paths.iter().map(AsRef::as_ref))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown -R {uid}:{gid} failed");
}

pub fn ensure_user(name: &str) -> (u32, u32) {
    let _guard = USERADD.lock().unwrap_or_else(|p| p.into_inner());
    if lookup_user(name).is_none() {
        let out = Command::new("useradd")
            .args([
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .output()
            .expect("run useradd");
        // Another test binary may have created it meanwhile; the lookup decides.
        if lookup_user(name).is_none() {
            panic!(
                "useradd {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    open_dev_fuse();
    lookup_user(name).expect("user just created")
}

/// Configure `cmd` to run as uid/gid. std drops all supplementary groups
/// when a root parent sets a uid (CommandExt::groups is still unstable).
pub fn as_user(cmd: &mut Command, uid: u32, gid: u32) -> &mut Command {
    cmd.uid(uid)
        .gid(gid)
        .env("HOME", "/")
        .env_remove("XDG_RUNTIME_DIR")
}

/// Run `cmd` to completion as uid/gid and collect its output.
pub fn run_as(uid: u32, gid: u32, cmd: &mut Command) -> Output {
    as_user(cmd, uid, gid)
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

/// Run `f` on a fresh thread whose credentials (uid, gid, groups = [gid])
/// are dropped with raw syscalls. Linux credentials are per thread and the
/// raw syscalls (unlike glibc's wrappers) change only the calling thread, so
/// the rest of the test process stays root.
pub fn with_creds<T: Send>(uid: u32, gid: u32, f: impl FnOnce() -> T + Send) -> T {
    with_creds_groups(uid, gid, &[gid], f)
}

/// `with_creds` with these supplementary groups.
pub fn with_creds_groups<T: Send>(
    uid: u32,
    gid: u32,
    groups: &[u32],
    f: impl FnOnce() -> T + Send,
) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            unsafe {
                assert_eq!(
                    libc::syscall(
                        libc::SYS_setgroups,
                        groups.len() as libc::c_long,
                        groups.as_ptr()
                    ),
                    0,
                    "setgroups"
                );
                assert_eq!(
                    libc::syscall(
                        libc::SYS_setresgid,
                        gid as libc::c_long,
                        gid as libc::c_long,
                        gid as libc::c_long
                    ),
                    0,
                    "setresgid"
                );
                assert_eq!(
                    libc::syscall(
                        libc::SYS_setresuid,
                        uid as libc::c_long,
                        uid as libc::c_long,
                        uid as libc::c_long
                    ),
                    0,
                    "setresuid"
                );
            }
            f()
        });
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}
