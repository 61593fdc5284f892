//! Mounts inside and around the layers, and the mount lifecycle around
//! them (issue 19, items 2, 3, 5, 8, 9, 10): a mount inside a layer is not
//! written through (as the kernel's private clones), workdir/work is never
//! cleared through a mount, a mount point inside a layer is refused, a dead
//! mount is recovered, a missing fusermount3 is named, SIGTERM ends a
//! daemon whose mount lives on in another namespace, and a busy workdir
//! names its holder.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A bind mount, lazily detached on drop (even on panic).
struct Bind(PathBuf);

impl Bind {
    fn new(src: &Path, dst: &Path) -> Bind {
        let st = Command::new("mount")
            .arg("--bind")
            .arg(src)
            .arg(dst)
            .status()
            .unwrap();
        assert!(
            st.success(),
            "mount --bind {} {}",
            src.display(),
            dst.display()
        );
        Bind(dst.to_path_buf())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        force_unmount(&self.0);
    }
}

/// Whatever ends up mounted at a path is unmounted on drop.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            force_unmount(&self.0);
        }
    }
}

/// A child process killed and reaped on drop.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mkdirs(base: &Path, dirs: &[&str]) {
    for d in dirs {
        fs::create_dir_all(base.join(d)).unwrap();
    }
}

fn names(p: &Path) -> Result<Vec<String>, i32> {
    let mut v: Vec<String> = fs::read_dir(p)
        .map_err(|e| e.raw_os_error().unwrap_or(0))?
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    Ok(v)
}

fn opts(base: &Path) -> String {
    format!(
        "lowerdir={},upperdir={},workdir={}",
        base.join("l").display(),
        base.join("u").display(),
        base.join("w").display()
    )
}

/// Run ovlfuse (as `user` if given) expecting a refusal: non-zero exit,
/// one line on stderr naming `needle`, nothing mounted at `mnt`.
fn refused(args: &[&str], mnt: &Path, user: Option<(u32, u32)>, needle: &str) {
    let _guard = Unmount(mnt.to_path_buf());
    let mut cmd = Command::new(ovlfuse_bin());
    cmd.args(args).stdin(Stdio::null());
    let out = match user {
        Some((uid, gid)) => run_as(uid, gid, &mut cmd),
        None => cmd.output().unwrap(),
    };
    assert_refusal(&format!("{args:?}"), &out, needle);
    assert!(
        !is_mounted(mnt),
        "{args:?} left a mount at {}",
        mnt.display()
    );
}

/// One side's layers, with a foreign directory bind-mounted into the upper
/// (`u/um`) and into the lower (`l/lm`), each over the layer's own
/// directory of that name.
fn layers_with_binds(base: &Path) -> (Bind, Bind) {
    mkdirs(base, &["l/lm", "u/um", "w", "m", "ext_u", "ext_l"]);
    fs::write(base.join("l/lm/own"), "lower's own\n").unwrap();
    fs::write(base.join("u/um/own"), "upper's own\n").unwrap();
    fs::write(base.join("ext_l/foreign"), "foreign lower\n").unwrap();
    fs::write(base.join("ext_u/foreign"), "foreign upper\n").unwrap();
    let bu = Bind::new(&base.join("ext_u"), &base.join("u/um"));
    let bl = Bind::new(&base.join("ext_l"), &base.join("l/lm"));
    (bu, bl)
}

/// What the merged view shows and what writes through it do, on one side.
fn exercise_binds(m: &Path) -> Vec<String> {
    let mut seen = vec![format!("um: {:?}", names(&m.join("um")))];
    seen.push(format!("lm: {:?}", names(&m.join("lm"))));
    seen.push(format!(
        "write um/new: {:?}",
        fs::write(m.join("um/new"), "n\n").is_ok()
    ));
    let append = fs::OpenOptions::new()
        .append(true)
        .open(m.join("um/own"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"more\n"));
    seen.push(format!("append um/own: {:?}", append.is_ok()));
    seen.push(format!(
        "write lm/new: {:?}",
        fs::write(m.join("lm/new"), "n\n").is_ok()
    ));
    seen
}

#[test]
fn a_mount_inside_the_upper_or_a_lower_is_not_written_through_like_the_kernel() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let t = tempdir();
    let (kb, fb) = (t.path().join("kern"), t.path().join("fuse"));
    let _kbinds = layers_with_binds(&kb);
    let _fbinds = layers_with_binds(&fb);
    let (kseen, fseen) = {
        let _k = KernelOverlay::mount(
            &[kb.join("l")],
            Some((&kb.join("u"), &kb.join("w"))),
            &kb.join("m"),
            &[] as &[&str],
        );
        let _f = FuseMount::try_mount(&opts(&fb), &fb.join("m"), None).unwrap();
        (exercise_binds(&kb.join("m")), exercise_binds(&fb.join("m")))
    };
    assert_eq!(fseen, kseen, "merged view and writes (ovlfuse vs kernel)");
    for b in [&kb, &fb] {
        assert_eq!(
            names(&b.join("ext_u")),
            Ok(vec!["foreign".to_string()]),
            "{}",
            b.display()
        );
        assert_eq!(
            fs::read_to_string(b.join("ext_u/foreign")).unwrap(),
            "foreign upper\n"
        );
        assert_eq!(
            names(&b.join("ext_l")),
            Ok(vec!["foreign".to_string()]),
            "{}",
            b.display()
        );
    }
    // What was written went to the upper's own directory under the mount.
    drop(_kbinds);
    drop(_fbinds);
    for b in [&kb, &fb] {
        assert_eq!(
            fs::read_to_string(b.join("u/um/own")).unwrap(),
            "upper's own\nmore\n",
            "{}",
            b.display()
        );
        assert!(b.join("u/um/new").exists() && b.join("u/lm/new").exists());
    }
}

#[test]
fn rootless_a_mount_inside_a_layer_is_refused_with_exdev() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let t = tempdir();
    let b = t.path();
    mkdirs(b, &["l/lm", "u/um", "w", "m", "ext_u", "ext_l"]);
    fs::write(b.join("ext_u/foreign"), "foreign upper\n").unwrap();
    fs::write(b.join("ext_l/foreign"), "foreign lower\n").unwrap();
    chown_tree(&[b], uid, gid);
    let _bu = Bind::new(&b.join("ext_u"), &b.join("u/um"));
    let _bl = Bind::new(&b.join("ext_l"), &b.join("l/lm"));
    let fm = FuseMount::try_mount(&opts(b), &b.join("m"), Some((uid, gid))).unwrap();
    let m = b.join("m");
    let (write, read_lower) = with_creds(uid, gid, || {
        (
            fs::write(m.join("um/new"), "n\n").map_err(|e| e.raw_os_error()),
            fs::read_to_string(m.join("lm/foreign")).map_err(|e| e.raw_os_error()),
        )
    });
    drop(fm);
    assert_eq!(
        write,
        Err(Some(libc::EXDEV)),
        "write through a mount in the upper"
    );
    assert_eq!(
        read_lower,
        Err(Some(libc::EXDEV)),
        "read through a mount in a lower"
    );
    assert_eq!(names(&b.join("ext_u")), Ok(vec!["foreign".to_string()]));
}

#[test]
fn a_mount_inside_workdir_work_is_refused_and_left_intact() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let t = tempdir();
    let b = t.path();
    mkdirs(b, &["l", "u", "w/work/mp", "m", "ext"]);
    fs::write(b.join("w/work/leftover"), "x").unwrap();
    fs::write(b.join("ext/keep"), "keep\n").unwrap();
    let _bind = Bind::new(&b.join("ext"), &b.join("w/work/mp"));
    let m = b.join("m");
    let wmp = b.join("w/work/mp");
    refused(
        &["-o", &opts(b), m.to_str().unwrap()],
        &m,
        None,
        &format!("{} is a mount point", wmp.display()),
    );
    assert_eq!(fs::read_to_string(b.join("ext/keep")).unwrap(), "keep\n");
}

#[test]
fn a_mount_point_inside_a_layer_or_the_workdir_is_refused() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let t = tempdir();
    let b = t.path();
    mkdirs(b, &["l/sub", "u/sub", "w/sub", "m"]);
    for (mp, role) in [
        ("u/sub", "upperdir"),
        ("w/sub", "workdir"),
        ("l/sub", "lowerdir #1"),
    ] {
        let mp = b.join(mp);
        refused(
            &["-o", &opts(b), mp.to_str().unwrap()],
            &mp,
            None,
            &format!("is inside {role}"),
        );
    }
}

/// Mount, touch the root so its attributes are cached, SIGKILL the
/// daemon, and mount again on the same mount point.
fn remount_after_kill(b: &Path, user: Option<(u32, u32)>) {
    let m = b.join("m");
    let fm = FuseMount::try_mount(&opts(b), &m, user).unwrap();
    let _guard = Unmount(m.clone());
    let pid = fm.daemon_pid().expect("daemon pid");
    let look = || {
        let _ = fs::metadata(&m);
        let _ = fs::read_dir(&m).map(|d| d.count());
    };
    match user {
        Some((uid, gid)) => with_creds(uid, gid, look),
        None => look(),
    }
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let until = Instant::now() + Duration::from_secs(5);
    while process_alive(pid) {
        assert!(Instant::now() < until, "SIGKILL did not end {pid}");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::mem::forget(fm); // its daemon is gone; the remount replaces it
    let again = FuseMount::try_mount(&opts(b), &m, user).unwrap_or_else(|e| panic!("{e}"));
    let top = match user {
        Some((uid, gid)) => with_creds(uid, gid, || fs::read_to_string(m.join("top"))),
        None => fs::read_to_string(m.join("top")),
    };
    assert_eq!(top.unwrap(), "top\n");
    drop(again);
}

#[test]
fn a_dead_mount_with_cached_attributes_is_recovered_on_remount() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let t = tempdir();
    mkdirs(t.path(), &["l", "u", "w", "m"]);
    fs::write(t.path().join("l/top"), "top\n").unwrap();
    remount_after_kill(t.path(), None);

    // The same as an ordinary user, through fusermount3.
    let (uid, gid) = ensure_user("ovltest");
    let t = tempdir();
    mkdirs(t.path(), &["l", "u", "w", "m"]);
    fs::write(t.path().join("l/top"), "top\n").unwrap();
    chown_tree(&[t.path()], uid, gid);
    remount_after_kill(t.path(), Some((uid, gid)));
}

#[test]
fn an_ordinary_user_without_fusermount3_is_told_to_install_fuse3() {
    if !env_ok(&[
        Need::Root,
        Need::Fuse,
        Need::Tool("unshare"),
        Need::Tool("setpriv"),
    ]) {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let t = tempdir();
    let b = t.path();
    mkdirs(b, &["l", "u", "w", "m"]);
    chown_tree(&[b], uid, gid);
    // fusermount3 and fusermount hidden in a private mount namespace.
    let mut hide = String::new();
    for helper in ["fusermount3", "fusermount"] {
        let p = Path::new("/usr/bin").join(helper);
        if p.exists() {
            hide.push_str(&format!("mount --bind /dev/null {} && ", p.display()));
        }
    }
    let script = format!(
        "{hide}exec setpriv --reuid {uid} --regid {gid} --clear-groups \"$0\" -o \"$1\" \"$2\""
    );
    let m = b.join("m");
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .arg(ovlfuse_bin())
        .arg(opts(b))
        .arg(&m)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mounted without fusermount3: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
    assert!(
        err.contains("fusermount3") && err.contains("fuse3 package"),
        "{err:?}"
    );
    assert!(!is_mounted(&m));
}

#[test]
fn sigterm_ends_a_daemon_whose_mount_was_copied_into_another_namespace() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::Tool("unshare")]) {
        return;
    }
    let t = tempdir();
    let b = t.path();
    mkdirs(b, &["l", "u", "w", "m"]);
    fs::write(b.join("l/top"), "top\n").unwrap();
    let m = b.join("m");
    let fm = FuseMount::try_mount(&opts(b), &m, None).unwrap();
    let pid = fm.daemon_pid().expect("daemon pid");
    // A container runtime's copy of every mount, ours included.
    let copy = Reap(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sleep", "60"])
            .spawn()
            .unwrap(),
    );
    let ns = |pid: String| fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let until = Instant::now() + Duration::from_secs(5);
    while ns(copy.0.id().to_string()) == ns("self".into())
        || !fs::read_to_string(format!("/proc/{}/mountinfo", copy.0.id()))
            .is_ok_and(|i| i.contains(&format!(" {} ", m.display())))
    {
        assert!(Instant::now() < until, "the namespace copy never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let t0 = Instant::now();
    while process_alive(pid) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let alive = process_alive(pid);
    if alive {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(!alive, "SIGTERM did not end the daemon within 5 s");
    drop(fm);
    // Its workdir is free again.
    let again = FuseMount::try_mount(&opts(b), &m, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fs::read_to_string(m.join("top")).unwrap(), "top\n");
    drop(again);
    drop(copy);
}

#[test]
fn a_busy_workdir_names_the_process_holding_it() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let t = tempdir();
    let b = t.path();
    mkdirs(b, &["l", "u", "w", "m", "m2"]);
    let fm = FuseMount::try_mount(&opts(b), &b.join("m"), None).unwrap();
    let pid = fm.daemon_pid().expect("daemon pid");
    let m2 = b.join("m2");
    refused(
        &["-o", &opts(b), m2.to_str().unwrap()],
        &m2,
        None,
        &format!("in use by another ovlfuse mount (process {pid} (ovlfuse) holds its lock)"),
    );
    drop(fm);
}
