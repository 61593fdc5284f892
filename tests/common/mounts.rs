//! Mount guards: ovlfuse (`FuseMount`), kernel overlayfs (`KernelOverlay`)
//! and `Twin`, which builds identical layer stacks and mounts one with each.

use std::ffi::CString;
use std::fmt::Debug;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::env::tempdir;
use super::layer::{Layer, XattrNs};
use super::sys::{self, cpath, cstr};
use super::tree::{self, Tree};
use super::user::as_user;

/// How long ovlfuse may take to report a live mount.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an unmounted ovlfuse daemon may take to exit before it is killed.
pub const DAEMON_EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon under test: $OVLFUSE_TEST_BIN if set (to run the suite
/// against another binary with the same CLI, e.g. fuse-overlayfs), else
/// this crate's ovlfuse.
/// Put the ovlfuse under test where mount(8) finds it (mount.fuse3 runs
/// with a fixed PATH): copied beside, then renamed over, so a daemon still
/// running the old file (ETXTBSY for a copy onto it) is no obstacle.
pub fn install_for_mount_t() -> PathBuf {
    let dst = PathBuf::from("/usr/local/bin/ovlfuse");
    let tmp = PathBuf::from("/usr/local/bin/.ovlfuse.test-install");
    std::fs::copy(ovlfuse_bin(), &tmp).expect("copy ovlfuse to /usr/local/bin");
    std::fs::rename(&tmp, &dst).expect("install /usr/local/bin/ovlfuse");
    dst
}

pub fn ovlfuse_bin() -> PathBuf {
    std::env::var_os("OVLFUSE_TEST_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_ovlfuse")),
        PathBuf::from,
    )
}

// ---------------------------------------------------------------- mountinfo

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo writes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (fstype, superblock options) of the topmost mount exactly at `mnt`.
fn mountinfo_entry(mnt: &Path) -> Option<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mnt.to_string_lossy();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let point = unescape_mountinfo(pre.split(' ').nth(4)?);
            let mut post = post.split(' ');
            let fstype = post.next()?.to_string();
            let opts = post.nth(1).map(unescape_mountinfo).unwrap_or_default();
            (point == want).then_some((fstype, opts))
        })
        .next_back()
}

/// Filesystem type of the topmost mount exactly at `mnt`, if any.
pub fn mount_fstype(mnt: &Path) -> Option<String> {
    mountinfo_entry(mnt).map(|(t, _)| t)
}

/// Superblock options mountinfo shows for the mount at `mnt`.
pub fn mount_options(mnt: &Path) -> Option<String> {
    mountinfo_entry(mnt).map(|(_, o)| o)
}

pub fn is_mounted(mnt: &Path) -> bool {
    mount_fstype(mnt).is_some()
}

/// umount2, retrying briefly on EBUSY, then a lazy detach. True when gone.
pub fn force_unmount(mnt: &Path) -> bool {
    let cp = cpath(mnt);
    for _ in 0..20 {
        if !is_mounted(mnt) {
            return true;
        }
        if unsafe { libc::umount2(cp.as_ptr(), 0) } == 0 {
            continue;
        }
        if sys::errno() != libc::EBUSY {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    while is_mounted(mnt) {
        if unsafe { libc::umount2(cp.as_ptr(), libc::MNT_DETACH) } != 0 {
            eprintln!(
                "harness: cannot unmount {}: {}",
                mnt.display(),
                sys::errno_name(sys::errno())
            );
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------- ovlfuse

/// Escape a layer path for a lowerdir list (`\:`, `\\`); commas cannot be
/// expressed inside one -o argument, so they are refused.
pub fn escape_layer_path(p: &Path) -> String {
    let s = p.to_string_lossy();
    assert!(!s.contains(','), "layer path {s:?} contains a comma");
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// `lowerdir=A:B[,upperdir=U,workdir=W][,extra...]` with lowers top first.
pub fn ovlfuse_options<S: AsRef<str>>(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    extra: &[S],
) -> String {
    let mut parts = vec![format!(
        "lowerdir={}",
        lowers
            .iter()
            .map(|p| escape_layer_path(p))
            .collect::<Vec<_>>()
            .join(":")
    )];
    if let Some((u, w)) = upper_work {
        parts.push(format!("upperdir={}", escape_layer_path(u)));
        parts.push(format!("workdir={}", escape_layer_path(w)));
    }
    parts.extend(extra.iter().map(|s| s.as_ref().to_string()));
    parts.join(",")
}

/// pid of a running `bin` whose command line names `mnt` (the daemon
/// detaches from the process we spawned, so it has to be looked up).
fn find_daemon(bin: &Path, mnt: &Path) -> Option<i32> {
    let want = mnt.as_os_str().as_encoded_bytes();
    let name = bin.file_name()?.as_encoded_bytes();
    let me = std::process::id() as i32;
    for ent in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = ent.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(ent.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_ours = args.first().is_some_and(|a| a.ends_with(name));
        if is_ours && args.iter().skip(1).any(|a| *a == want) {
            return Some(pid);
        }
    }
    None
}

/// True while `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 (after the parenthesised name) is the state; Z is a zombie.
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

type Output = Arc<Mutex<Vec<u8>>>;

fn capture(pipe: Option<impl Read + Send + 'static>, out: &Output, done: &Arc<AtomicUsize>) {
    let Some(mut pipe) = pipe else {
        done.fetch_add(1, Ordering::SeqCst);
        return;
    };
    let (out, done) = (out.clone(), done.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(&buf[..n]);
        }
        done.fetch_add(1, Ordering::SeqCst);
    });
}

/// A live ovlfuse mount, unmounted (and its daemon reaped) on drop.
pub struct FuseMount {
    mnt: PathBuf,
    user: Option<(u32, u32)>,
    output: Output,
    daemon: Option<i32>,
    mounted: bool,
}

impl FuseMount {
    /// Mount or panic with ovlfuse's output.
    pub fn mount<S: AsRef<str>>(
        lowers: &[PathBuf],
        upper_work: Option<(&Path, &Path)>,
        mnt: &Path,
        extra: &[S],
    ) -> FuseMount {
        let opts = ovlfuse_options(lowers, upper_work, extra);
        FuseMount::try_mount(&opts, mnt, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Run `ovlfuse -o OPTS MNT` (as `user` if given). Ok once it exited 0
    /// and a fuse mount is live at `mnt`; Err carries the exit status and
    /// ovlfuse's stdout+stderr, for tests that expect a refusal.
    pub fn try_mount(
        opts: &str,
        mnt: &Path,
        user: Option<(u32, u32)>,
    ) -> Result<FuseMount, String> {
        FuseMount::try_mount_bin(&ovlfuse_bin(), opts, mnt, user)
    }

    /// `try_mount` with an explicit daemon binary taking the same CLI.
    pub fn try_mount_bin(
        bin: &Path,
        opts: &str,
        mnt: &Path,
        user: Option<(u32, u32)>,
    ) -> Result<FuseMount, String> {
        super::transport::select();
        let mut cmd = Command::new(bin);
        cmd.arg("-o")
            .arg(opts)
            .arg(mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((uid, gid)) = user {
            as_user(&mut cmd, uid, gid);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        // Pipes, not files: the daemon inherits them, and a reader thread
        // keeps draining them for as long as it lives.
        let output: Output = Arc::default();
        let done = Arc::new(AtomicUsize::new(0));
        capture(child.stdout.take(), &output, &done);
        capture(child.stderr.take(), &output, &done);

        let deadline = Instant::now() + MOUNT_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(None) => break None,
                Err(e) => return Err(format!("waiting for ovlfuse: {e}")),
            }
        };
        let describe = |what: String| {
            // Give the readers a moment to collect the last lines.
            let until = Instant::now() + Duration::from_secs(1);
            while done.load(Ordering::SeqCst) < 2 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            let out = output.lock().unwrap_or_else(|p| p.into_inner());
            format!(
                "ovlfuse mount at {}: {what}\n  command: {cmd:?}\n  output:\n{}",
                mnt.display(),
                String::from_utf8_lossy(&out)
            )
        };
        match status {
            None => {
                let _ = child.kill();
                let _ = child.wait();
                if is_mounted(mnt) {
                    force_unmount(mnt);
                }
                Err(describe(format!(
                    "did not exit within {MOUNT_TIMEOUT:?} (it must exit 0 once the mount is live)"
                )))
            }
            Some(st) if !st.success() => {
                if is_mounted(mnt) {
                    force_unmount(mnt);
                }
                Err(describe(format!("exited with {st}")))
            }
            Some(_) => match mount_fstype(mnt) {
                Some(t) if t.starts_with("fuse") => Ok(FuseMount {
                    mnt: mnt.to_path_buf(),
                    user,
                    output,
                    daemon: find_daemon(bin, mnt),
                    mounted: true,
                }),
                other => Err(describe(format!(
                    "exited 0 but the mount there is {other:?}, not fuse"
                ))),
            },
        }
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mnt
    }

    /// Everything ovlfuse printed so far (stdout and stderr interleaved).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        self.daemon
    }

    /// fusermount3 -u, then umount, then a lazy detach; then wait for the
    /// daemon to exit (killing it after DAEMON_EXIT_TIMEOUT). True when unmounted.
    pub fn unmount(&mut self) -> bool {
        if !self.mounted {
            return true;
        }
        let mut cmd = Command::new("fusermount3");
        cmd.arg("-u")
            .arg(&self.mnt)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((uid, gid)) = self.user {
            as_user(&mut cmd, uid, gid);
        }
        let _ = cmd.status();
        self.mounted = !force_unmount(&self.mnt);
        if let Some(pid) = self.daemon.take()
            && !wait_gone(pid, DAEMON_EXIT_TIMEOUT)
        {
            eprintln!("harness: ovlfuse daemon {pid} still running after unmount; killing it");
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_gone(pid, Duration::from_secs(2));
        }
        !self.mounted
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        self.unmount();
    }
}

// ---------------------------------------------------------------- kernel

/// How the kernel overlay is mounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelApi {
    /// New mount API, falling back to Legacy where fsopen is unavailable.
    /// Both forms mount 100 lowers on this machine's 6.18 kernel; Auto picks
    /// NewApi here.
    Auto,
    /// fsopen/fsconfig/fsmount/move_mount with one `lowerdir+` per layer:
    /// no length limit on the layer list and absolute paths work as is.
    NewApi,
    /// mount(8) with one option string, which the kernel caps at a page;
    /// layer paths are passed relative to their common ancestor (the
    /// child's cwd) to keep it short: 100 lowers "l/0:l/1:..." fit easily.
    Legacy,
}

// Kernel ABI values (include/uapi/linux/mount.h).
const FSOPEN_CLOEXEC: libc::c_long = 1;
const FSCONFIG_SET_FLAG: libc::c_long = 0;
const FSCONFIG_SET_STRING: libc::c_long = 1;
const FSCONFIG_CMD_CREATE: libc::c_long = 6;
const FSMOUNT_CLOEXEC: libc::c_long = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_long = 4;

/// Messages the kernel queued on an fs context (why fsconfig failed).
fn fs_context_log(fd: RawFd) -> String {
    let mut msgs = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        msgs.push(String::from_utf8_lossy(&buf[..n as usize]).into_owned());
    }
    msgs.join("; ")
}

fn split_opt(o: &str) -> (&str, Option<&str>) {
    match o.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (o, None),
    }
}

/// Err((errno, message)); errno lets Auto fall back on ENOSYS.
fn mount_new_api(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    mnt: &Path,
    extra: &[String],
) -> Result<(), (i32, String)> {
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC) };
    if fd < 0 {
        let e = sys::errno();
        return Err((e, format!("fsopen(overlay): {}", sys::errno_name(e))));
    }
    let fs = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    let config =
        |cmd: libc::c_long, key: Option<&str>, val: Option<&str>| -> Result<(), (i32, String)> {
            let (k, v): (Option<CString>, Option<CString>) = (key.map(cstr), val.map(cstr));
            let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
            let r = unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd() as libc::c_long,
                    cmd,
                    ptr(&k),
                    ptr(&v),
                    0 as libc::c_long,
                )
            };
            if r < 0 {
                let e = sys::errno();
                let what = match (key, val) {
                    (Some(k), Some(v)) => format!("{k}={v}"),
                    (Some(k), None) => k.to_string(),
                    _ => "create".to_string(),
                };
                return Err((
                    e,
                    format!(
                        "fsconfig {what}: {} [{}]",
                        sys::errno_name(e),
                        fs_context_log(fs.as_raw_fd())
                    ),
                ));
            }
            Ok(())
        };
    for l in lowers {
        config(
            FSCONFIG_SET_STRING,
            Some("lowerdir+"),
            Some(&l.to_string_lossy()),
        )?;
    }
    if let Some((u, w)) = upper_work {
        config(
            FSCONFIG_SET_STRING,
            Some("upperdir"),
            Some(&u.to_string_lossy()),
        )?;
        config(
            FSCONFIG_SET_STRING,
            Some("workdir"),
            Some(&w.to_string_lossy()),
        )?;
    }
    for o in extra {
        match split_opt(o) {
            (k, Some(v)) => config(FSCONFIG_SET_STRING, Some(k), Some(v))?,
            (k, None) => config(FSCONFIG_SET_FLAG, Some(k), None)?,
        }
    }
    config(FSCONFIG_CMD_CREATE, None, None)?;
    let mfd = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd() as libc::c_long,
            FSMOUNT_CLOEXEC,
            0 as libc::c_long,
        )
    };
    if mfd < 0 {
        let e = sys::errno();
        return Err((e, format!("fsmount: {}", sys::errno_name(e))));
    }
    let m = unsafe { OwnedFd::from_raw_fd(mfd as RawFd) };
    move_mount_to(&m, mnt).map_err(|e| {
        (
            e,
            format!("move_mount to {}: {}", mnt.display(), sys::errno_name(e)),
        )
    })
}

/// Attach the detached mount `m` at `mnt` (move_mount); the errno if not.
fn move_mount_to(m: &OwnedFd, mnt: &Path) -> Result<(), i32> {
    let target = cpath(mnt);
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            m.as_raw_fd() as libc::c_long,
            c"".as_ptr(),
            libc::AT_FDCWD as libc::c_long,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 { Err(sys::errno()) } else { Ok(()) }
}

/// Deepest directory containing all of `paths`.
fn common_ancestor(paths: &[&Path]) -> PathBuf {
    let mut base = paths[0].parent().unwrap_or(Path::new("/")).to_path_buf();
    while !paths.iter().all(|p| p.starts_with(&base)) {
        if !base.pop() {
            break;
        }
    }
    base
}

fn mount_legacy(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    mnt: &Path,
    extra: &[String],
) -> Result<(), String> {
    let mut all: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    if let Some((u, w)) = upper_work {
        all.extend([u, w]);
    }
    let base = common_ancestor(&all);
    let rel = |p: &Path| {
        let r = p.strip_prefix(&base).expect("under common ancestor");
        if r.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            r.to_path_buf()
        }
    };
    let lowers_rel: Vec<PathBuf> = lowers.iter().map(|p| rel(p)).collect();
    let upper_rel = upper_work.map(|(u, w)| (rel(u), rel(w)));
    let opts = ovlfuse_options(
        &lowers_rel,
        upper_rel.as_ref().map(|(u, w)| (u.as_path(), w.as_path())),
        extra,
    );
    if opts.len() >= 4096 {
        return Err(format!(
            "legacy option string is {} bytes, over the kernel's page limit",
            opts.len()
        ));
    }
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(mnt)
        .current_dir(&base)
        .output()
        .map_err(|e| format!("spawn mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount -t overlay -o {opts} {} (cwd {}): {}",
            mnt.display(),
            base.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A kernel overlayfs mount, unmounted on drop.
pub struct KernelOverlay {
    mnt: PathBuf,
    api: KernelApi,
    mounted: bool,
}

impl KernelOverlay {
    /// Mount (Auto API) or panic with the kernel's reason.
    pub fn mount<S: AsRef<str>>(
        lowers: &[PathBuf],
        upper_work: Option<(&Path, &Path)>,
        mnt: &Path,
        extra: &[S],
    ) -> KernelOverlay {
        KernelOverlay::try_mount(lowers, upper_work, mnt, extra, KernelApi::Auto)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_mount<S: AsRef<str>>(
        lowers: &[PathBuf],
        upper_work: Option<(&Path, &Path)>,
        mnt: &Path,
        extra: &[S],
        api: KernelApi,
    ) -> Result<KernelOverlay, String> {
        let extra: Vec<String> = extra.iter().map(|s| s.as_ref().to_string()).collect();
        let used = match api {
            KernelApi::Legacy => {
                mount_legacy(lowers, upper_work, mnt, &extra)?;
                KernelApi::Legacy
            }
            KernelApi::NewApi => {
                mount_new_api(lowers, upper_work, mnt, &extra).map_err(|(_, m)| m)?;
                KernelApi::NewApi
            }
            KernelApi::Auto => match mount_new_api(lowers, upper_work, mnt, &extra) {
                Ok(()) => KernelApi::NewApi,
                Err((libc::ENOSYS, _)) => {
                    mount_legacy(lowers, upper_work, mnt, &extra)?;
                    KernelApi::Legacy
                }
                Err((_, m)) => return Err(format!("kernel overlay at {}: {m}", mnt.display())),
            },
        };
        Ok(KernelOverlay {
            mnt: mnt.to_path_buf(),
            api: used,
            mounted: true,
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mnt
    }

    /// The API that actually mounted it.
    pub fn api(&self) -> KernelApi {
        self.api
    }

    pub fn unmount(&mut self) -> bool {
        if self.mounted {
            self.mounted = !force_unmount(&self.mnt);
        }
        !self.mounted
    }
}

impl Drop for KernelOverlay {
    fn drop(&mut self) {
        self.unmount();
    }
}

// ---------------------------------------------------------------- twin

/// Directories of one side of a twin.
#[derive(Clone, Debug)]
pub struct SideDirs {
    pub root: PathBuf,
    /// Top first.
    pub lowers: Vec<PathBuf>,
    pub upper: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub mnt: PathBuf,
}

impl SideDirs {
    fn upper_work(&self) -> Option<(&Path, &Path)> {
        Some((self.upper.as_deref()?, self.work.as_deref()?))
    }
}

enum SideMount {
    Fuse(FuseMount),
    Kernel(KernelOverlay),
}

impl SideMount {
    fn unmount(&mut self) -> bool {
        match self {
            SideMount::Fuse(m) => m.unmount(),
            SideMount::Kernel(m) => m.unmount(),
        }
    }
}

/// Configuration of a twin; `Twin::builder()`.
#[derive(Clone, Debug)]
pub struct TwinBuilder {
    /// (fuse side, kernel side) specs; identical unless set with `*_each`.
    lowers: Vec<(Layer, Layer)>,
    upper: Option<(Layer, Layer)>,
    has_upper: bool,
    fuse_opts: Vec<String>,
    kern_opts: Vec<String>,
    fuse_side_is_kernel: bool,
    kernel_api: KernelApi,
    fuse_user: Option<(u32, u32)>,
    fuse_bin: Option<PathBuf>,
}

impl TwinBuilder {
    /// Add a lower layer below those added before (first call = top).
    pub fn lower(self, l: Layer) -> Self {
        self.lower_each(l.clone(), l)
    }
    pub fn lowers(self, ls: impl IntoIterator<Item = Layer>) -> Self {
        ls.into_iter().fold(self, TwinBuilder::lower)
    }
    /// A lower with a different spec per side, e.g. foreign marker forms
    /// for ovlfuse and `spec.for_kernel(ns)` for the kernel.
    pub fn lower_each(mut self, fuse: Layer, kern: Layer) -> Self {
        self.lowers.push((fuse, kern));
        self
    }
    /// Pre-existing upper layer content (implies an upper).
    pub fn upper(self, l: Layer) -> Self {
        self.upper_each(l.clone(), l)
    }
    pub fn upper_each(mut self, fuse: Layer, kern: Layer) -> Self {
        self.upper = Some((fuse, kern));
        self.has_upper = true;
        self
    }
    /// Read-only stack: no upperdir/workdir.
    pub fn no_upper(mut self) -> Self {
        self.has_upper = false;
        self.upper = None;
        self
    }
    /// Extra -o option for both sides.
    pub fn opt(self, o: &str) -> Self {
        self.fuse_opt(o).kern_opt(o)
    }
    pub fn fuse_opt(mut self, o: &str) -> Self {
        self.fuse_opts.push(o.to_string());
        self
    }
    pub fn kern_opt(mut self, o: &str) -> Self {
        self.kern_opts.push(o.to_string());
        self
    }
    /// Run ovlfuse as this user. Both sides' upper roots (and the fuse
    /// side's workdir and mountpoint) are chowned to it so the merged roots
    /// still match. Root cannot enter another user's FUSE mount unless it is
    /// mounted allow_other (see `enable_user_allow_other`), so probe such a
    /// twin with `both_as`.
    pub fn fuse_as(mut self, uid: u32, gid: u32) -> Self {
        self.fuse_user = Some((uid, gid));
        self
    }
    /// Use another daemon binary with ovlfuse's CLI on the fuse side.
    pub fn fuse_bin(mut self, bin: impl Into<PathBuf>) -> Self {
        self.fuse_bin = Some(bin.into());
        self
    }
    /// Mount the kernel overlay on the "fuse" side too (harness self-tests).
    pub fn kernel_on_both_sides(mut self) -> Self {
        self.fuse_side_is_kernel = true;
        self
    }
    pub fn kernel_api(mut self, api: KernelApi) -> Self {
        self.kernel_api = api;
        self
    }
    pub fn mount(self) -> Twin {
        self.try_mount().unwrap_or_else(|e| panic!("{e}"))
    }

    fn materialize(&self, root: &Path, fuse_side: bool) -> Result<SideDirs, String> {
        let mk = |p: &Path| -> Result<(), String> {
            std::fs::create_dir_all(p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
            sys::chmod(p, 0o755)
                .map_err(|e| format!("chmod {}: {}", p.display(), sys::errno_name(e)))
        };
        // Explicit 0755 on every level (not create_dir_all's umask) so an
        // unprivileged daemon or test user can traverse. Short names keep the
        // kernel's option string small.
        mk(root)?;
        mk(&root.join("l"))?;
        let mut lowers = Vec::new();
        let pick = |(f, k): &(Layer, Layer)| if fuse_side { f.clone() } else { k.clone() };
        for (i, spec) in self.lowers.iter().map(pick).enumerate() {
            let l = root.join("l").join(i.to_string());
            mk(&l)?;
            spec.apply(&l);
            lowers.push(l);
        }
        let (mut upper, mut work) = (None, None);
        if self.has_upper {
            let (u, w) = (root.join("u"), root.join("w"));
            mk(&u)?;
            mk(&w)?;
            if let Some(spec) = self.upper.as_ref().map(pick) {
                spec.apply(&u);
            }
            upper = Some(u);
            work = Some(w);
        }
        let mnt = root.join("m");
        mk(&mnt)?;
        if let Some((uid, gid)) = self.fuse_user {
            let mut owned: Vec<&PathBuf> = upper.iter().collect();
            if fuse_side {
                owned.extend(work.iter().chain([&mnt]));
            }
            for p in owned {
                sys::lchown(p, uid, gid)
                    .map_err(|e| format!("chown {}: {}", p.display(), sys::errno_name(e)))?;
            }
        }
        Ok(SideDirs {
            root: root.to_path_buf(),
            lowers,
            upper,
            work,
            mnt,
        })
    }

    fn mount_side(&self, dirs: &SideDirs, fuse_side: bool) -> Result<SideMount, String> {
        let opts = if fuse_side {
            &self.fuse_opts
        } else {
            &self.kern_opts
        };
        if fuse_side && !self.fuse_side_is_kernel {
            let o = ovlfuse_options(&dirs.lowers, dirs.upper_work(), opts);
            let bin = self.fuse_bin.clone().unwrap_or_else(ovlfuse_bin);
            FuseMount::try_mount_bin(&bin, &o, &dirs.mnt, self.fuse_user).map(SideMount::Fuse)
        } else {
            KernelOverlay::try_mount(
                &dirs.lowers,
                dirs.upper_work(),
                &dirs.mnt,
                opts,
                self.kernel_api,
            )
            .map(SideMount::Kernel)
        }
    }

    pub fn try_mount(self) -> Result<Twin, String> {
        let base = tempdir();
        let fuse_dirs = self.materialize(&base.path().join("f"), true)?;
        let kern_dirs = self.materialize(&base.path().join("k"), false)?;
        let mut twin = Twin {
            cfg: self,
            fuse_dirs,
            kern_dirs,
            fuse: None,
            kern: None,
            base: Some(base),
        };
        twin.mount_both()?;
        Ok(twin)
    }
}

/// Identical layer stacks, one mounted by ovlfuse ("fuse" side) and one by
/// the kernel, under one temp dir:
/// `<base>/{f,k}/{l/0,l/1,...,u,w,m}`. Unmounts both on drop, even while
/// panicking; the temp dir is kept (and reported) only if an unmount failed.
pub struct Twin {
    cfg: TwinBuilder,
    fuse_dirs: SideDirs,
    kern_dirs: SideDirs,
    fuse: Option<SideMount>,
    kern: Option<SideMount>,
    base: Option<TempDir>,
}

impl Twin {
    pub fn builder() -> TwinBuilder {
        TwinBuilder {
            lowers: Vec::new(),
            upper: None,
            has_upper: true,
            fuse_opts: Vec::new(),
            kern_opts: Vec::new(),
            fuse_side_is_kernel: false,
            kernel_api: KernelApi::Auto,
            fuse_user: None,
            fuse_bin: None,
        }
    }

    /// Lowers (top first) under an empty upper.
    pub fn new(lowers: impl IntoIterator<Item = Layer>) -> Twin {
        Twin::builder().lowers(lowers).mount()
    }

    /// Read-only stack of lowers (top first).
    pub fn read_only(lowers: impl IntoIterator<Item = Layer>) -> Twin {
        Twin::builder().lowers(lowers).no_upper().mount()
    }

    fn mount_both(&mut self) -> Result<(), String> {
        if self.fuse.is_none() {
            self.fuse = Some(self.cfg.mount_side(&self.fuse_dirs, true)?);
        }
        if self.kern.is_none() {
            self.kern = Some(self.cfg.mount_side(&self.kern_dirs, false)?);
        }
        Ok(())
    }

    /// Unmount both sides (layers stay on disk, e.g. to inspect uppers after
    /// the daemon has exited). Panics if either refuses.
    pub fn unmount(&mut self) {
        let f = self.fuse.take().is_none_or(|mut m| m.unmount());
        let k = self.kern.take().is_none_or(|mut m| m.unmount());
        assert!(f && k, "twin unmount failed (fuse ok: {f}, kernel ok: {k})");
    }

    /// Unmount and mount both sides again over the same layers.
    pub fn remount(&mut self) {
        self.unmount();
        self.mount_both().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn fuse_mnt(&self) -> &Path {
        &self.fuse_dirs.mnt
    }
    pub fn kern_mnt(&self) -> &Path {
        &self.kern_dirs.mnt
    }
    pub fn fuse_upper(&self) -> &Path {
        self.fuse_dirs
            .upper
            .as_deref()
            .expect("read-only twin has no upper")
    }
    pub fn kern_upper(&self) -> &Path {
        self.kern_dirs
            .upper
            .as_deref()
            .expect("read-only twin has no upper")
    }
    pub fn fuse_work(&self) -> &Path {
        self.fuse_dirs
            .work
            .as_deref()
            .expect("read-only twin has no workdir")
    }
    pub fn kern_work(&self) -> &Path {
        self.kern_dirs
            .work
            .as_deref()
            .expect("read-only twin has no workdir")
    }
    /// Top first.
    pub fn fuse_lowers(&self) -> &[PathBuf] {
        &self.fuse_dirs.lowers
    }
    pub fn kern_lowers(&self) -> &[PathBuf] {
        &self.kern_dirs.lowers
    }
    pub fn fuse_lower(&self, i: usize) -> &Path {
        &self.fuse_dirs.lowers[i]
    }
    pub fn kern_lower(&self, i: usize) -> &Path {
        &self.kern_dirs.lowers[i]
    }
    pub fn fuse_dirs(&self) -> &SideDirs {
        &self.fuse_dirs
    }
    pub fn kern_dirs(&self) -> &SideDirs {
        &self.kern_dirs
    }
    pub fn base(&self) -> &Path {
        self.base.as_ref().expect("twin base").path()
    }

    /// Output ovlfuse printed so far ("" when the fuse side is a kernel mount).
    pub fn fuse_output(&self) -> String {
        match &self.fuse {
            Some(SideMount::Fuse(m)) => m.output(),
            _ => String::new(),
        }
    }

    /// pid of the fuse side's daemon, when it could be found.
    pub fn fuse_daemon_pid(&self) -> Option<i32> {
        match &self.fuse {
            Some(SideMount::Fuse(m)) => m.daemon_pid(),
            _ => None,
        }
    }

    /// Run `f` on the fuse mountpoint, then on the kernel one.
    pub fn both<T>(&self, mut f: impl FnMut(&Path) -> T) -> (T, T) {
        (f(self.fuse_mnt()), f(self.kern_mnt()))
    }

    /// `both` on a thread running as uid/gid (see `with_creds`).
    pub fn both_as<T: Send>(&self, uid: u32, gid: u32, f: impl FnMut(&Path) -> T + Send) -> (T, T) {
        super::user::with_creds(uid, gid, || self.both(f))
    }

    /// `both_as` with these supplementary groups.
    pub fn both_as_groups<T: Send>(
        &self,
        (uid, gid): (u32, u32),
        groups: &[u32],
        f: impl FnMut(&Path) -> T + Send,
    ) -> (T, T) {
        super::user::with_creds_groups(uid, gid, groups, || self.both(f))
    }

    /// `both`, asserting the two results are equal; returns the fuse result.
    pub fn same<T: PartialEq + Debug>(&self, what: &str, f: impl FnMut(&Path) -> T) -> T {
        let (a, b) = self.both(f);
        assert!(
            a == b,
            "fuse and kernel differ on {what}\n  fuse:   {a:?}\n  kernel: {b:?}"
        );
        a
    }

    pub fn snapshots(&self) -> (Tree, Tree) {
        self.both(tree::snapshot)
    }

    /// The merged views must be identical.
    pub fn assert_same_view(&self) {
        let (f, k) = self.snapshots();
        tree::assert_same_tree(&f, &k);
    }

    /// The upper layers on disk must match; each side's xattr namespace
    /// follows its `userxattr` option.
    pub fn assert_same_upper(&self) {
        self.assert_same_upper_keeping(&[]);
    }

    /// `assert_same_upper`, comparing the bookkeeping xattrs in `keep`.
    pub fn assert_same_upper_keeping(&self, keep: &[&str]) {
        tree::assert_same_upper_keeping(
            self.fuse_upper(),
            XattrNs::for_opts(&self.cfg.fuse_opts),
            self.kern_upper(),
            XattrNs::for_opts(&self.cfg.kern_opts),
            keep,
        );
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let out = self.fuse_output();
            if !out.is_empty() {
                eprintln!(
                    "---- ovlfuse output ({}) ----\n{out}",
                    self.fuse_mnt().display()
                );
            }
        }
        let f = self.fuse.take().is_none_or(|mut m| m.unmount());
        let k = self.kern.take().is_none_or(|mut m| m.unmount());
        if !(f && k) {
            // Removing the tree through a live mount could hang or wander.
            if let Some(b) = self.base.take() {
                eprintln!(
                    "harness: keeping {} because a mount could not be removed",
                    b.keep().display()
                );
            }
        }
    }
}

/// A refusal as the rules want it: a non-zero exit and exactly one line on
/// stderr naming `needle`. `what` names the command in the messages.
pub fn assert_refusal(what: &str, out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{what} succeeded; stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: want one line, got {err:?}"
    );
    assert!(
        err.contains(needle),
        "{what}: {err:?} does not name {needle:?}"
    );
}

/// A bind mount of `src` at `dst` whose ids the kernel shows shifted up by
/// `base` (stored 0..count as base..base+count), as containers/storage
/// gives a mount program its image layers for `podman run --uidmap`.
/// Unmounted on drop.
pub struct IdmappedBind {
    dst: PathBuf,
}

impl IdmappedBind {
    pub fn new(src: &Path, dst: &Path, base: u32, count: u32) -> IdmappedBind {
        // A user namespace holding the mapping, written by us (root).
        let mut holder = Command::new("unshare")
            .args(["--user", "sleep", "60"])
            .spawn()
            .expect("unshare");
        let pid = holder.id();
        let map = format!("0 {base} {count}\n");
        let t0 = Instant::now();
        while std::fs::read_link(format!("/proc/{pid}/ns/user")).ok()
            == std::fs::read_link("/proc/self/ns/user").ok()
        {
            assert!(t0.elapsed() < Duration::from_secs(5), "unshare --user");
            std::thread::sleep(Duration::from_millis(5));
        }
        for f in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{pid}/{f}"), &map).expect(f);
        }
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/user")).unwrap();
        let _ = holder.kill();
        let _ = holder.wait();
        let fd = ovlfuse::sys::open_tree_clone(src).expect("open_tree");
        ovlfuse::sys::mount_setattr(
            fd.as_fd(),
            ovlfuse::sys::MOUNT_ATTR_IDMAP,
            0,
            Some(ns.as_fd()),
        )
        .expect("mount_setattr");
        if let Err(e) = move_mount_to(&fd, dst) {
            panic!("move_mount to {}: {}", dst.display(), sys::errno_name(e));
        }
        IdmappedBind {
            dst: dst.to_path_buf(),
        }
    }
}

impl Drop for IdmappedBind {
    fn drop(&mut self) {
        let d = cpath(&self.dst);
        unsafe { libc::umount2(d.as_ptr(), libc::MNT_DETACH) };
    }
}
