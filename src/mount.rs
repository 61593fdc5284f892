//! Mount lifecycle: mount point checks, the FUSE session, daemonizing with a
//! readiness pipe (exit 0 only once the mount is live), and a clean unmount
//! on SIGTERM/SIGINT.

use crate::fuse::OvlFs;
use crate::options::{Atime, MountOptions};
use crate::stack::Stack;
use fuser::{Config, MountOption, SessionACL, UringMode};
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Filesystem type our mounts show in /proc/self/mountinfo.
pub const FSTYPE: &str = "fuse.ovlfuse";

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct MountRequest {
    pub options: MountOptions,
    pub source: Option<String>,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub debug: bool,
}

fn unescape_mountinfo(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mountinfo line of the mount exactly at `path` in `info`: the last
/// one, since the last mount stacked there is the one that shows.
fn line_at<'a>(info: &'a str, path: &Path) -> Option<&'a str> {
    let want = path.to_string_lossy();
    info.lines()
        .rfind(|l| l.split(' ').nth(4).map(unescape_mountinfo).as_deref() == Some(&want))
}

fn mountinfo_line(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    line_at(&info, path).map(str::to_string)
}

/// The filesystem type of a mountinfo line.
fn fstype_of(line: &str) -> Option<String> {
    let (_, right) = line.split_once(" - ")?;
    right.split(' ').next().map(str::to_string)
}

/// The filesystem type mounted exactly at `path`, if any.
pub fn mounted_fstype(path: &Path) -> Option<String> {
    fstype_of(&mountinfo_line(path)?)
}

/// The type of an overlay whose merged view holds `path` (the kernel's
/// `overlay`, ovlfuse or fuse-overlayfs), found from the mount containing
/// it: the nearest ancestor that is a mount point (mountinfo read once).
pub fn overlay_view_fstype(path: &Path) -> Option<String> {
    let canon = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let t = canon
        .ancestors()
        .find_map(|a| line_at(&info, a))
        .and_then(fstype_of)?;
    matches!(t.as_str(), "overlay" | FSTYPE | "fuse.fuse-overlayfs").then_some(t)
}

/// The device ("major:minor") of the mount exactly at `path`.
fn mounted_dev(path: &Path) -> Option<String> {
    mountinfo_line(path)?.split(' ').nth(2).map(str::to_string)
}

/// Readahead for the mount, in KiB: 1 MiB reads (FUSE's request limit)
/// take an eighth of the round trips of the kernel's 128 KiB default.
const READAHEAD_KB: &str = "1024";

/// Raise the mount's readahead once the kernel has our INIT reply (it caps
/// readahead at what INIT offered, 128 KiB). Root only: the knob is in
/// /sys/class/bdi. Best effort: nothing but speed depends on it.
fn raise_readahead(mp: &Path) {
    let Some(dev) = mounted_dev(mp) else {
        return;
    };
    let knob = PathBuf::from(format!("/sys/class/bdi/{dev}/read_ahead_kb"));
    std::thread::spawn(move || {
        let mut set = 0;
        for _ in 0..250 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            if !crate::fuse::INITIALISED.load(std::sync::atomic::Ordering::Acquire) {
                continue;
            }
            match std::fs::read_to_string(&knob) {
                Ok(v) if v.trim() == READAHEAD_KB => {
                    set += 1;
                    if set >= 3 {
                        tracing::debug!(knob = %knob.display(), "readahead raised");
                        return;
                    }
                }
                Ok(_) => {
                    set = 0;
                    let _ = std::fs::write(&knob, READAHEAD_KB);
                }
                Err(_) => return,
            }
        }
    });
}

/// Map every page of our own code now. The first request of each kind
/// would otherwise fault its code in from disk once the page cache has let
/// it go (a dropped cache, memory pressure): about 0.3 ms on the first
/// copy-up here, where a small C daemon is read in whole at exec. Mapped
/// pages also stay resident while the daemon runs. Best effort.
fn map_code_in() {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if !perms.contains('x') || f.nth(3).map(Path::new) != Some(exe.as_path()) {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
            // Linux 5.14+; older kernels say EINVAL and nothing changes.
            // SAFETY: the range is a mapping of our own executable, read from
            // /proc/self/maps; MADV_POPULATE_READ only faults its pages in and
            // changes no memory.
            unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_POPULATE_READ) };
        }
    }
}

/// Run the CPU feature detection now, which string search code (memchr)
/// otherwise does in the first request that needs it: about ten CPUID
/// instructions, each a trap to the hypervisor in a VM (6-7 us here).
fn detect_cpu_features() {
    #[cfg(target_arch = "x86_64")]
    let _ = std::arch::is_x86_feature_detected!("avx2");
}

/// Detach a dead FUSE mount (daemon killed): as root directly, otherwise
/// through fusermount3.
fn detach(mp: &Path) -> bool {
    if crate::sys::geteuid() == 0 {
        if let Ok(c) = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes()) {
            // SAFETY: `c` is a NUL-terminated path that outlives the call.
            return unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0;
        }
        return false;
    }
    std::process::Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mp)
        .status()
        .is_ok_and(|s| s.success())
}

/// A FUSE mount whose daemon is gone answers ENOTCONN; a request caught
/// in the abort itself (the daemon has just died) ECONNABORTED, or
/// ECANCELED when it was on its way to the dead daemon's io_uring.
fn dead_mount(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)
    )
}

/// Check the mount point; recover a dead mount of ours.
pub fn check_mountpoint(mp: &Path) -> Result<PathBuf, String> {
    match std::fs::metadata(mp) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("mount point {} is not a directory", mp.display())),
        Err(e) if dead_mount(&e) => return recover_dead(mp),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("mount point {} does not exist", mp.display()));
        }
        Err(e) => return Err(format!("mount point {}: {e}", mp.display())),
    }
    let canon = match mp.canonicalize() {
        Ok(c) => c,
        Err(e) if dead_mount(&e) => return recover_dead(mp),
        Err(e) => return Err(format!("mount point {}: {e}", mp.display())),
    };
    if mounted_fstype(&canon).as_deref() == Some(FSTYPE) {
        // stat may answer from the attribute cache of a dead mount; statfs
        // always asks the daemon.
        if crate::sys::statfs_path(&canon).is_err_and(|e| dead_mount(&e)) {
            return recover_dead(&canon);
        }
        return Err(format!(
            "mount point {} is already an ovlfuse mount",
            canon.display()
        ));
    }
    Ok(canon)
}

/// A FUSE mount at `mp` whose daemon is gone (ENOTCONN): detach it and
/// check again, or say how to clear it.
fn recover_dead(mp: &Path) -> Result<PathBuf, String> {
    if !detach(mp) {
        return Err(format!(
            "mount point {} is a dead FUSE mount (its daemon is gone: ENOTCONN): \
             run 'fusermount3 -u {}' and retry",
            mp.display(),
            mp.display()
        ));
    }
    check_mountpoint(mp)
}

/// Is a fusermount helper there for fuser to run (it tries these names)?
fn fusermount_available() -> bool {
    if std::env::var_os("FUSERMOUNT_PATH").is_some() {
        return true;
    }
    let names = ["fusermount3", "fusermount", "mount_fusefs"];
    let on_path = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| names.iter().any(|n| d.join(n).is_file()))
    });
    on_path
        || ["/sbin", "/bin"]
            .iter()
            .any(|d| names.iter().any(|n| Path::new(d).join(n).is_file()))
}

fn fuse_config(r: &MountRequest, stack: &Stack) -> Config {
    let o = &r.options;
    let mut m = vec![
        MountOption::FSName(
            o.fsname
                .clone()
                .or_else(|| r.source.clone())
                .unwrap_or_else(|| "ovlfuse".into()),
        ),
        MountOption::Subtype(o.subtype.clone().unwrap_or_else(|| "ovlfuse".into())),
        MountOption::DefaultPermissions,
    ];
    if o.ro || !stack.has_upper {
        m.push(MountOption::RO);
    }
    if o.auto_unmount {
        m.push(MountOption::AutoUnmount);
    }
    for extra in mount_data_extras(o) {
        m.push(MountOption::CUSTOM(extra));
    }
    for (on, opt) in [
        (o.nosuid, MountOption::NoSuid),
        (o.nodev, MountOption::NoDev),
        (o.noexec, MountOption::NoExec),
        (o.atime == Atime::Never, MountOption::NoAtime),
        (
            o.atime == Atime::Strict,
            MountOption::CUSTOM("strictatime".into()),
        ),
        (o.nodiratime, MountOption::CUSTOM("nodiratime".into())),
        (o.suid && !o.nosuid, MountOption::Suid),
        (o.dev && !o.nodev, MountOption::Dev),
    ] {
        if on {
            m.push(opt);
        }
    }
    let mut c = Config::default();
    c.mount_options = m;
    c.acl = if o.allow_other {
        SessionACL::All
    } else if o.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    // At least 4, even on 2 CPUs: with spare readers a request is more
    // often answered on the caller's CPU (ftrace: 97% of requests against
    // 87% with 2), often by the reader that has just replied and is still
    // runnable there, while the one the kernel woke elsewhere finds nothing.
    // Measured on 2 CPUs: one round trip 45-50 us with 2 threads, 33-36 us
    // with 3 to 8.
    c.n_threads = Some(if o.threads > 0 {
        o.threads
    } else {
        cpus.clamp(4, 8)
    });
    c.clone_fd = true;
    c.uring = match o.uring {
        Some(true) => UringMode::Required,
        Some(false) => UringMode::Off,
        None if o.auto_unmount => {
            c.uring_off_why = Some(AUTO_UNMOUNT_CLASSIC.into());
            UringMode::Off
        }
        None => UringMode::Auto,
    };
    c.uring_depth = o.uring_depth;
    c
}

/// fusermount3 unmounts a dead daemon's mount only if opening it answers
/// ENOTCONN the moment the daemon is gone; with the rings the kernel
/// aborts the connection a little later (when it has torn the rings
/// down), so the open fails otherwise and the mount would stay.
const AUTO_UNMOUNT_CLASSIC: &str =
    "auto_unmount: fusermount3 must see the connection gone the moment the daemon dies";

/// The kernel's switch for FUSE over io_uring.
pub const URING_SWITCH: &str = "/sys/module/fuse/parameters/enable_uring";

/// Why `-o uring` cannot be had here, if it cannot: said before mounting,
/// so that nothing is left behind.
fn uring_unavailable() -> Option<String> {
    // The fuse module may load only when /dev/fuse is first opened.
    let _ = std::fs::File::open("/dev/fuse");
    match std::fs::read_to_string(URING_SWITCH) {
        Ok(v) if v.trim() == "Y" => None,
        Ok(_) => Some(format!(
            "-o uring: FUSE over io_uring is off on this machine (as root: echo Y > {URING_SWITCH})"
        )),
        Err(_) => Some(format!(
            "-o uring: this kernel has no FUSE over io_uring (no {URING_SWITCH}; it needs Linux \
             6.14 or newer built with CONFIG_FUSE_IO_URING)"
        )),
    }
}

/// Options for the kernel's FUSE mount data beyond the basic ones.
fn mount_data_extras(o: &MountOptions) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(n) = o.max_read {
        v.push(format!("max_read={n}"));
    }
    if selinux_enabled() {
        v.extend(o.lsm_labels.iter().cloned());
    }
    v
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// What options given to the mount cannot do here, one line each.
pub fn option_notices(o: &MountOptions) -> Vec<String> {
    let mut v = o.notices.clone();
    if !o.lsm_labels.is_empty() && !selinux_enabled() {
        v.push(format!(
            "option '{}' has no effect: SELinux is not enabled on this machine",
            o.lsm_labels.join(",")
        ));
    }
    v
}

/// fuse-overlayfs's defaults for a daemon running as root (of the machine
/// or of a user namespace): containers/storage passes neither allow_other
/// nor suid and relies on them (a container's non-root user must reach its
/// files; setuid programs must work).
fn root_defaults(o: &mut MountOptions) {
    if !o.allow_root {
        o.allow_other = true;
    }
    if !o.nosuid {
        o.suid = true;
    }
}

/// `mount -o remount,...`: mount.fuse3 runs us again with `remount`; the
/// running mount's flags change and no second daemon starts.
fn remount(o: &MountOptions, mp: &Path) -> Result<(), String> {
    if crate::sys::geteuid() != 0 {
        return Err("remount needs root (fusermount3 cannot remount)".into());
    }
    let canon = mp
        .canonicalize()
        .map_err(|e| format!("mount point {}: {e}", mp.display()))?;
    if mounted_fstype(&canon).as_deref() != Some(FSTYPE) {
        return Err(format!("{} is not an ovlfuse mount", canon.display()));
    }
    // mount(8) repeats the mount's options but never writes "suid" or
    // "dev": start from the flags the mount has and change only those the
    // options name (statvfs's ST_* bits are the MS_* ones on Linux).
    const KEPT: libc::c_ulong = libc::MS_RDONLY
        | libc::MS_NOSUID
        | libc::MS_NODEV
        | libc::MS_NOEXEC
        | libc::MS_NOATIME
        | libc::MS_NODIRATIME
        | libc::MS_RELATIME
        | libc::MS_NOSYMFOLLOW;
    let dir = crate::sys::open_path(&canon, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|e| format!("remount {}: {e}", canon.display()))?;
    let cur = crate::sys::fstatvfs(dir.as_fd())
        .map_err(|e| format!("remount {}: {e}", canon.display()))?
        .f_flag;
    drop(dir);
    let mut flags = cur & KEPT;
    for (on, set, f) in [
        (o.ro, true, libc::MS_RDONLY),
        (o.rw, false, libc::MS_RDONLY),
        (o.nosuid, true, libc::MS_NOSUID),
        (o.suid, false, libc::MS_NOSUID),
        (o.nodev, true, libc::MS_NODEV),
        (o.dev, false, libc::MS_NODEV),
        (o.noexec, true, libc::MS_NOEXEC),
        (o.nosymfollow, true, libc::MS_NOSYMFOLLOW),
    ] {
        if on {
            flags = if set { flags | f } else { flags & !f };
        }
    }
    // A mount made ro has a read-only superblock too: rw needs the
    // superblock's remount as well as the mount's.
    if o.rw {
        let _ = crate::sys::remount(&canon, libc::MS_REMOUNT);
    }
    // The per-mount flags (MS_BIND), which mount -o remount shows. Access
    // time flags keep what the mount has: the daemon's own rule for them
    // (its upper clone, O_NOATIME) is fixed at mount.
    crate::sys::remount(&canon, flags | libc::MS_REMOUNT | libc::MS_BIND)
        .map_err(|e| format!("remount {}: {e}", canon.display()))
}

/// Unmount what we mounted as root; lazily if something still holds it.
fn unmount_path(mp: &Path) {
    if let Ok(c) = std::ffi::CString::new(mp.as_os_str().as_encoded_bytes())
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        && unsafe { libc::umount2(c.as_ptr(), 0) } != 0
    {
        // SAFETY: as above.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// mount(2) a FUSE filesystem of type fuse.ovlfuse on `mp`; returns the
/// /dev/fuse fd to serve.
fn mount_as_root(r: &MountRequest, mp: &Path) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let o = &r.options;
    let dev = crate::sys::open_path(Path::new("/dev/fuse"), libc::O_RDWR)?;
    let st = crate::sys::fstat(crate::sys::open_path(mp, libc::O_PATH)?.as_fd())?;
    let mut data = format!(
        "fd={},rootmode={:o},user_id={},group_id={},default_permissions",
        dev.as_raw_fd(),
        st.st_mode & libc::S_IFMT,
        // SAFETY: getuid cannot fail and touches no memory.
        unsafe { libc::getuid() },
        // SAFETY: getgid cannot fail and touches no memory.
        unsafe { libc::getgid() }
    );
    if o.allow_other || o.allow_root {
        data.push_str(",allow_other");
    }
    for extra in mount_data_extras(o) {
        data.push(',');
        data.push_str(&extra);
    }
    let mut flags: libc::c_ulong = 0;
    if !o.suid || o.nosuid {
        flags |= libc::MS_NOSUID;
    }
    if !o.dev || o.nodev {
        flags |= libc::MS_NODEV;
    }
    if o.noexec {
        flags |= libc::MS_NOEXEC;
    }
    flags |= match o.atime {
        Atime::Never => libc::MS_NOATIME,
        Atime::Strict => libc::MS_STRICTATIME,
        Atime::Relative => libc::MS_RELATIME,
    };
    if o.nodiratime {
        flags |= libc::MS_NODIRATIME;
    }
    if o.ro || o.upperdir.is_none() {
        flags |= libc::MS_RDONLY;
    }
    if o.nosymfollow {
        flags |= libc::MS_NOSYMFOLLOW;
    }
    let source = o
        .fsname
        .clone()
        .or_else(|| r.source.clone())
        .unwrap_or_else(|| "ovlfuse".into());
    let cstr = |s: &[u8]| {
        std::ffi::CString::new(s).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (src, target, fstype, data) = (
        cstr(source.as_bytes())?,
        cstr(mp.as_os_str().as_encoded_bytes())?,
        cstr(format!("fuse.{}", o.subtype.as_deref().unwrap_or("ovlfuse")).as_bytes())?,
        cstr(data.as_bytes())?,
    );
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr() as *const libc::c_void,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(dev)
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both fds are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Block SIGTERM/SIGINT/SIGHUP in every thread; one thread waits for them
/// and unmounts, which ends the event loops.
fn block_signals() -> libc::sigset_t {
    // SAFETY: `set` is initialised by sigemptyset before use; the calls only read
    // and write it and this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Mount and serve. Returns the process exit code.
pub fn run(mut r: MountRequest) -> i32 {
    let fail = |msg: String| -> i32 {
        eprintln!("ovlfuse: {msg}");
        1
    };
    if r.options.remount {
        return match remount(&r.options, &r.mountpoint) {
            Ok(()) => 0,
            Err(e) => fail(e),
        };
    }
    if crate::sys::geteuid() == 0 {
        root_defaults(&mut r.options);
    }
    let mp = match check_mountpoint(&r.mountpoint) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    if let Err(e) = crate::stack::check_mountpoint(&r.options, &mp) {
        return fail(e);
    }
    let root = crate::sys::geteuid() == 0;
    if !root && !fusermount_available() {
        return fail(format!(
            "cannot mount on {} as an ordinary user: fusermount3 is not installed \
             (it comes in the fuse3 package)",
            mp.display()
        ));
    }
    if r.options.auto_unmount && !r.options.allow_other && !r.options.allow_root {
        // Only an ordinary user gets here (root defaults to allow_other).
        return fail(
            "auto_unmount needs allow_other or allow_root as an ordinary user: \
             fusermount3 looks at the dead mount as root, which the mount would shut out"
                .into(),
        );
    }
    if r.options.uring == Some(true) {
        if r.options.auto_unmount {
            return fail(format!(
                "uring and auto_unmount do not go together ({})",
                AUTO_UNMOUNT_CLASSIC.trim_start_matches("auto_unmount: ")
            ));
        }
        if let Some(e) = uring_unavailable() {
            return fail(e);
        }
    }
    // Exact modes for what we create: the kernel already applied the
    // caller's umask.
    // SAFETY: umask cannot fail and touches no memory.
    unsafe { libc::umask(0) };
    crate::sys::raise_nofile();
    let mut ready: Option<OwnedFd> = None;
    if !r.foreground {
        let (rd, wr) = match pipe() {
            Ok(p) => p,
            Err(e) => return fail(format!("pipe: {e}")),
        };
        // Fork before any thread exists; the parent only waits for word.
        // SAFETY: no other thread exists yet (see above), so the child may go on running Rust code.
        match unsafe { libc::fork() } {
            -1 => return fail(format!("fork: {}", std::io::Error::last_os_error())),
            0 => {
                drop(rd);
                // SAFETY: setsid cannot fail in a fresh child and touches no memory.
                unsafe { libc::setsid() };
                ready = Some(wr);
            }
            _ => {
                drop(wr);
                let mut f = std::fs::File::from(rd);
                let mut msg = String::new();
                let _ = f.read_to_string(&mut msg);
                return match msg.strip_prefix("OK") {
                    Some(_) => 0,
                    None if msg.is_empty() => {
                        fail("the daemon exited before the mount was live".into())
                    }
                    None => {
                        eprint!("{msg}");
                        1
                    }
                };
            }
        }
    }
    let report = |ready: &mut Option<OwnedFd>, msg: &str| {
        if let Some(fd) = ready.take() {
            let _ = std::fs::File::from(fd).write_all(msg.as_bytes());
        }
    };
    // Opened by the daemon itself (after the fork), so that the workdir
    // lock shows its pid in /proc/locks for a later refusal to name.
    let stack = match Stack::open(&r.options) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("ovlfuse: {e}\n");
            if ready.is_some() {
                report(&mut ready, &msg);
            } else {
                eprint!("{msg}");
            }
            return 1;
        }
    };
    let config = fuse_config(&r, &stack);
    let sigs = block_signals();
    stack.warm_root();
    // Passthrough needs CAP_SYS_ADMIN for its backing ids.
    let fs = OvlFs::new(stack).with_passthrough(root && !r.options.nopassthrough);
    let notifier = fs.notifier_slot();
    let transport = fs.transport_slot();
    // auto_unmount is fusermount3's: then root mounts through it too.
    let session = if root && !r.options.auto_unmount {
        // Our own mount(2), so the type reads fuse.ovlfuse (fuser's direct
        // mount always says "fuse"); then serve that fd.
        mount_as_root(&r, &mp)
            .and_then(|fd| fuser::Session::from_fd(fs, fd, config.acl, config.clone()))
    } else {
        // fusermount3 gets subtype=ovlfuse and mounts fuse.ovlfuse itself.
        fuser::Session::new(fs, &mp, &config)
    };
    let mut session = match session {
        Ok(s) => s,
        Err(e) => {
            if root && mounted_fstype(&mp).as_deref() == Some(FSTYPE) {
                unmount_path(&mp);
            }
            let msg = format!("ovlfuse: cannot mount on {}: {e}\n", mp.display());
            if ready.is_some() {
                report(&mut ready, &msg);
            } else {
                eprint!("{msg}");
            }
            return 1;
        }
    };
    let _ = notifier.set(session.notifier());
    let _ = transport.set(session.transport());
    tracing::info!(transport = %session.transport().describe(), "FUSE transport");
    if root {
        raise_readahead(&mp);
    }
    let mut unmounter = session.unmount_callable();
    let mp2 = mp.clone();
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `sigs` and `sig` are valid for the call; sigwait only reads and writes them.
        unsafe { libc::sigwait(&sigs, &mut sig) };
        tracing::info!(sig, "signal: unmounting");
        if root {
            unmount_path(&mp2);
        } else if unmounter.unmount().is_err() {
            detach(&mp2);
        }
        // The session ends once the superblock goes. A copy of the mount
        // in another mount namespace (a container runtime's) keeps it
        // alive: stop serving anyway. Exiting closes /dev/fuse, which
        // aborts the connection there (ENOTCONN) and frees the locks.
        std::thread::sleep(std::time::Duration::from_secs(1));
        tracing::info!("the mount lives on elsewhere: exiting");
        std::process::exit(0);
    });
    tracing::info!(mountpoint = %mp.display(), "mounted");
    report(&mut ready, "OK");
    if !r.foreground && !r.debug {
        // Detach from the terminal: nothing more to say there.
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            use std::os::fd::AsRawFd;
            for fd in 0..3 {
                // SAFETY: `null` is open; dup2 onto 0..3 replaces the standard
                // streams, which std reaches by number and no OwnedFd holds.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
        }
    }
    map_code_in();
    detect_cpu_features();
    match session.run() {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("session ended: {e}");
            0
        }
    }
}
