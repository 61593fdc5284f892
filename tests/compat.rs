//! fuse-overlayfs compatibility (issue 17): the options containers/storage
//! and libfuse pass, uid/gid mapping checked against a model and against
//! fuse-overlayfs itself, the defaults of a root daemon, the xattr
//! namespace of a root that cannot write trusted.*, and remount.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid())
}

fn chown(p: &Path, uid: u32, gid: u32) -> Result<(), i32> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(|e| e.raw_os_error().unwrap_or(0))
}

/// The mapping both daemons are given, and what it means.
const UIDMAP: (u32, u32, u32) = (0, 100000, 65536);
const GIDMAP: (u32, u32, u32) = (0, 200000, 65536);

fn model_shown((d, s, n): (u32, u32, u32), id: u32) -> u32 {
    if id >= d && id - d < n {
        s + (id - d)
    } else {
        65534
    }
}

fn model_disk((d, s, n): (u32, u32, u32), id: u32) -> u32 {
    if id >= s && id - s < n {
        d + (id - s)
    } else {
        65534
    }
}

/// What one daemon did with the mapping: (shown owners of the lower
/// files, disk owner of a file created by shown 101000:201000, disk owner
/// after chown to shown 101005:201005, disk owner after chown to an
/// unmapped 5:5, shown owner of that).
fn idmap_run(bin: &Path) -> Vec<(u32, u32)> {
    let d = Dirs::new();
    let l = d.p("l");
    for (name, id) in [("a", 0), ("b", 1000), ("c", 70000)] {
        fs::write(l.join(name), name).unwrap();
        chown(&l.join(name), id, id).unwrap();
    }
    fs::create_dir(l.join("d")).unwrap();
    fs::set_permissions(
        l.join("d"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let opts = d.opts(&format!(
        "uidmapping={}:{}:{},gidmapping={}:{}:{}",
        UIDMAP.0, UIDMAP.1, UIDMAP.2, GIDMAP.0, GIDMAP.1, GIDMAP.2
    ));
    let fm = FuseMount::try_mount_bin(bin, &opts, &d.p("m"), None).unwrap();
    let m = d.p("m");
    let mut out: Vec<(u32, u32)> = ["a", "b", "c"].iter().map(|n| owner(&m.join(n))).collect();
    with_creds(101000, 201000, || fs::write(m.join("d/new"), "x")).unwrap();
    out.push(owner(&d.p("u/d/new")));
    chown(&m.join("a"), 101005, 201005).unwrap();
    out.push(owner(&d.p("u/a")));
    chown(&m.join("b"), 5, 5).unwrap();
    out.push(owner(&d.p("u/b")));
    out.push(owner(&m.join("b")));
    drop(fm);
    out
}

#[test]
fn uid_and_gid_mapping_match_a_model_and_fuse_overlayfs() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::Tool("fuse-overlayfs")]) {
        return;
    }
    let (u, g) = (UIDMAP, GIDMAP);
    let sh = |id| (model_shown(u, id), model_shown(g, id));
    let want = vec![
        sh(0),
        sh(1000),
        sh(70000),
        (model_disk(u, 101000), model_disk(g, 201000)),
        (model_disk(u, 101005), model_disk(g, 201005)),
        (model_disk(u, 5), model_disk(g, 5)),
        sh(model_disk(u, 5)),
    ];
    assert_eq!(want[0], (100000, 200000));
    assert_eq!(want[2], (65534, 65534), "70000 is outside the range");
    assert_eq!(idmap_run(&ovlfuse_bin()), want, "ovlfuse against the model");
    assert_eq!(
        idmap_run(Path::new("/usr/bin/fuse-overlayfs")),
        want,
        "fuse-overlayfs against the same model (the test is fair)"
    );
}

/// An ACL xattr value: version 2, USER_OBJ, USER `uid`, GROUP_OBJ, GROUP
/// `gid`, MASK, OTHER.
fn acl(uid: u32, gid: u32) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, id) in [
        (0x01u16, u32::MAX),
        (0x02, uid),
        (0x04, u32::MAX),
        (0x08, gid),
        (0x10, u32::MAX),
        (0x20, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

#[test]
fn acl_ids_and_squash_options_are_mapped() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::Xattrs]) {
        return;
    }
    let d = Dirs::new();
    fs::write(d.p("l/f"), "f").unwrap();
    chown(&d.p("l/f"), 1000, 1000).unwrap();
    let opts = d.opts("uidmapping=0:100000:65536,gidmapping=0:200000:65536");
    let fm = FuseMount::try_mount(&opts, &d.p("m"), None).unwrap();
    let f = d.p("m/f");
    probe_setxattr(&f, "system.posix_acl_access", &acl(101000, 200007), 0).unwrap();
    // Stored with the disk ids, shown with the mount's.
    assert_eq!(
        probe_getxattr(&d.p("u/f"), "system.posix_acl_access").unwrap(),
        acl(1000, 7)
    );
    assert_eq!(
        probe_getxattr(&f, "system.posix_acl_access").unwrap(),
        acl(101000, 200007)
    );
    drop(fm);

    // (option, owner of f (1000:1000 on disk), owner of the root (0:0)).
    chown(&d.p("u"), 0, 0).unwrap();
    for (extra, want, root) in [
        ("squash_to_root", (0, 0), (0, 0)),
        (
            "squash_to_root,squash_to_uid=7,squash_to_gid=8",
            (7, 8),
            (7, 8),
        ),
        ("squash_to_gid=8", (1000, 8), (0, 8)),
    ] {
        let fm = FuseMount::try_mount(&d.opts(extra), &d.p("m"), None).unwrap();
        assert_eq!(owner(&d.p("m/f")), want, "{extra}");
        assert_eq!(owner(&d.p("m")), root, "{extra}: root");
        drop(fm);
    }
}

#[test]
fn an_ordinary_user_maps_its_own_ids() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let d = Dirs::new();
    fs::write(d.p("l/f"), "f").unwrap();
    chown_tree(&[&d.base], uid, gid);
    // The user's own files show as root, as podman --userns=keep-id's
    // inverse would put them; squash_to_uid shows another owner.
    let stat = |extra: &str| {
        let fm = FuseMount::try_mount(&d.opts(extra), &d.p("m"), Some((uid, gid))).unwrap();
        let out = run_as(
            uid,
            gid,
            Command::new("stat").args(["-c", "%u:%g"]).arg(d.p("m/f")),
        );
        drop(fm);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        stat(&format!("uidmapping={uid}:0:1,gidmapping={gid}:0:1")),
        "0:0"
    );
    assert_eq!(stat("squash_to_uid=4321"), format!("4321:{gid}"));
    assert_eq!(stat(""), format!("{uid}:{gid}"));
}

#[test]
fn the_options_containers_storage_and_libfuse_pass_are_accepted() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = Dirs::new();
    fs::create_dir_all(d.p("l/dir/sub")).unwrap();
    fs::write(d.p("l/f"), "f").unwrap();
    let extra = "squash_to_uid=0,static_nlink,noacl,xattr_permissions=0,plugins=,fsync=0,\
                 fast_ino=1,noxattrs=0,redirect_dir=off,threaded=1,timeout=5,writeback=0,\
                 context=\"system_u:object_r:container_file_t:s0:c1,c2\",max_threads=4,\
                 clone_fd,kernel_cache,max_read=131072,nosymfollow";
    let fm = FuseMount::try_mount(&d.opts(extra), &d.p("m"), None).unwrap();
    let out = fm.output();
    for said in [
        "'plugins=' has no effect",
        "'fast_ino=1' has no effect",
        "'clone_fd' has no effect",
    ] {
        assert!(out.contains(said), "stderr lacks {said:?}: {out}");
    }
    assert!(
        !out.contains("writeback"),
        "writeback=0 asks for what is so: {out}"
    );
    let mo = mount_options(&d.p("m")).unwrap_or_default();
    assert!(mo.contains("max_read=131072"), "{mo}");
    let flags = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = flags
        .lines()
        .find(|l| l.contains(d.p("m").to_str().unwrap()))
        .unwrap()
        .to_string();
    assert!(line.contains("nosymfollow"), "{line}");
    // static_nlink: a directory with a subdirectory shows 1.
    assert_eq!(fs::metadata(d.p("m/dir")).unwrap().nlink(), 1);
    drop(fm);

    let fm = FuseMount::try_mount(&d.opts("noxattrs=1"), &d.p("m"), None).unwrap();
    assert_eq!(probe_getxattr(&d.p("m/f"), "user.x"), Err(libc::EOPNOTSUPP));
    assert_eq!(
        probe_setxattr(&d.p("m/f"), "user.x", b"1", 0),
        Err(libc::EOPNOTSUPP)
    );
    drop(fm);

    // Still an error: a word none of fuse-overlayfs, libfuse, mount(8) knows,
    // and a redirect_dir value the kernel does not know either.
    for bad in ["frobnicate", "redirect_dir=yes"] {
        let e = FuseMount::try_mount(&d.opts(bad), &d.p("m"), None)
            .err()
            .unwrap();
        assert!(e.contains(bad.split('=').next().unwrap()), "{e}");
        assert!(!is_mounted(&d.p("m")));
    }
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn auto_unmount_and_debug_options() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = Dirs::new();
    fs::write(d.p("l/f"), "f").unwrap();
    let fm = FuseMount::try_mount(&d.opts("auto_unmount"), &d.p("m"), None).unwrap();
    let pid = fm.daemon_pid().expect("daemon pid");
    std::mem::forget(fm);
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("auto_unmount after SIGKILL", || !is_mounted(&d.p("m")));

    // -o debug and --debug log requests (and stay in the foreground).
    for args in [
        vec!["-o".to_string(), d.opts("debug")],
        vec!["--debug".into(), "-o".into(), d.opts("")],
    ] {
        let log = d.p("log");
        let mut child = Command::new(ovlfuse_bin())
            .args(&args)
            .arg(d.p("m"))
            .env_remove("RUST_LOG")
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_until("debug mount", || is_mounted(&d.p("m")));
        assert_eq!(fs::read_to_string(d.p("m/f")).unwrap(), "f");
        assert!(force_unmount(&d.p("m")));
        child.wait().unwrap();
        let text = fs::read_to_string(&log).unwrap();
        assert!(text.contains("op=\"lookup\""), "{args:?}: {text}");
    }
}

/// The daemon's auto_unmount sentinel: the child that holds fusermount3's
/// socket (see fuser's fuse_pure.rs).
fn sentinel_of(daemon: i32) -> Option<i32> {
    let kids = fs::read_to_string(format!("/proc/{daemon}/task/{daemon}/children")).ok()?;
    kids.split_whitespace()
        .filter_map(|k| k.parse().ok())
        .find(|k| {
            fs::read_to_string(format!("/proc/{k}/comm")).is_ok_and(|c| c.trim() == "auto-unmount")
        })
}

/// Gone, or a zombie waiting for init.
fn exited(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .is_some_and(|t| t.trim_start().starts_with('Z'))
    })
}

#[test]
fn auto_unmount_as_an_ordinary_user_after_sigterm_and_sigkill() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    enable_user_allow_other();
    let d = Dirs::new();
    fs::write(d.p("l/f"), "f").unwrap();
    chown_tree(&[&d.base], uid, gid);
    let out = run_as(
        uid,
        gid,
        Command::new(ovlfuse_bin())
            .args(["-o", &d.opts("auto_unmount")])
            .arg(d.p("m")),
    );
    assert_refusal(
        "a user's auto_unmount without allow_other",
        &out,
        "allow_other",
    );
    assert!(!is_mounted(&d.p("m")));
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        let fm = FuseMount::try_mount(
            &d.opts("auto_unmount,allow_other"),
            &d.p("m"),
            Some((uid, gid)),
        )
        .unwrap();
        assert_eq!(fs::read_to_string(d.p("m/f")).unwrap(), "f");
        let pid = fm.daemon_pid().expect("daemon pid");
        let sentinel = sentinel_of(pid).expect("the daemon has an auto-unmount child");
        // It holds fusermount3's socket and a pidfd, and no /dev/fuse.
        let fds: Vec<String> = fs::read_dir(format!("/proc/{sentinel}/fd"))
            .unwrap()
            .map(|e| {
                fs::read_link(e.unwrap().path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(fds.len(), 2, "{fds:?}");
        assert!(fds.iter().any(|f| f.starts_with("socket:")), "{fds:?}");
        assert!(!fds.iter().any(|f| f.contains("fuse")), "{fds:?}");
        std::mem::forget(fm);
        unsafe { libc::kill(pid, sig) };
        wait_until(&format!("auto_unmount after signal {sig}"), || {
            !is_mounted(&d.p("m"))
        });
        wait_until("the sentinel exits", || exited(sentinel));
        // The directory underneath, not a dead mount.
        assert!(fs::read_dir(d.p("m")).is_ok());
    }
}

#[test]
fn root_daemon_defaults_and_remount() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = Dirs::new();
    fs::write(d.p("l/f"), "f").unwrap();
    let fm = FuseMount::try_mount(&d.opts(""), &d.p("m"), None).unwrap();
    let mo = mount_options(&d.p("m")).unwrap_or_default();
    assert!(mo.contains("allow_other") && !mo.contains("nosuid"), "{mo}");
    // Another user reaches the files (a container's non-root user must).
    let (uid, gid) = ensure_user("ovltest");
    let out = run_as(uid, gid, Command::new("cat").arg(d.p("m/f")));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "f");
    drop(fm);

    // mount -o remount,ro goes through mount.fuse3, which runs us again.
    if !need(
        "mount.fuse3 (package fuse3)",
        Path::new("/usr/sbin/mount.fuse3").exists() || Path::new("/sbin/mount.fuse3").exists(),
    ) {
        return;
    }
    install_for_mount_t();
    let m = d.p("m");
    // Unmounted however the test ends (the mounts below are mount(8)'s).
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            if is_mounted(&self.0) {
                let _ = Command::new("umount").arg("-l").arg(&self.0).status();
            }
        }
    }
    let _guard = Unmount(m.clone());
    let st = Command::new("mount")
        .args(["-t", "fuse.ovlfuse", "ovl"])
        .arg(&m)
        .args(["-o", &d.opts("")])
        .status()
        .unwrap();
    assert!(st.success());
    let daemons = || {
        Command::new("pgrep")
            .args(["-c", "-f", &format!("ovlfuse.*{}", m.display())])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let before = daemons();
    for (flag, writable) in [("ro", false), ("rw", true)] {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,{flag}")])
            .arg(&m)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "remount,{flag}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let r = fs::write(m.join(format!("w-{flag}")), "x");
        assert_eq!(r.is_ok(), writable, "after remount,{flag}: {r:?}");
        if !writable {
            assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS));
        }
    }
    assert_eq!(daemons(), before, "remount started no second daemon");
    // The flags mount(8) does not repeat (suid, dev) stay as they were.
    let mo = mount_options(&m).unwrap_or_default();
    assert!(!mo.contains("nosuid") && !mo.contains("nodev"), "{mo}");
    assert!(Command::new("umount").arg(&m).status().unwrap().success());
    // A mount made read-only becomes writable on remount,rw (its
    // superblock was read-only too).
    let st = Command::new("mount")
        .args(["-t", "fuse.ovlfuse", "ovl"])
        .arg(&m)
        .args(["-o", &d.opts("ro")])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        fs::write(m.join("w-ro"), "x").unwrap_err().raw_os_error(),
        Some(libc::EROFS)
    );
    let o = Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&m)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    fs::write(m.join("w-rw2"), "x").unwrap();
    assert!(Command::new("umount").arg(&m).status().unwrap().success());
}

#[test]
fn root_of_a_user_namespace_writes_user_overlay_marks() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::Tool("unshare"), Need::Xattrs]) {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let d = Dirs::new();
    fs::create_dir(d.p("l/dir")).unwrap();
    fs::write(d.p("l/dir/x"), "x").unwrap();
    chown_tree(&[&d.base], uid, gid);
    // Root of a new user namespace (as rootless podman runs its mount
    // program), in its own mount namespace: mount, re-create a lower
    // directory (an opaque mark), unmount.
    let script = format!(
        "set -e; {bin} -o {opts} {m}; rm -r {m}/dir; mkdir {m}/dir; ls -A {m}/dir; umount {m}",
        bin = ovlfuse_bin().display(),
        opts = d.opts(""),
        m = d.p("m").display()
    );
    let out = run_as(
        uid,
        gid,
        Command::new("unshare").args(["-Urm", "sh", "-c", &script]),
    );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "dir is opaque"
    );
    assert_eq!(
        probe_getxattr(&d.p("u/dir"), "user.overlay.opaque").as_deref(),
        Ok(&b"y"[..])
    );
    assert!(probe_getxattr(&d.p("u/dir"), "trusted.overlay.opaque").is_err());
}

#[test]
fn posix_acls_are_enforced_and_change_the_mode_as_on_the_kernel() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay, Need::Xattrs]) {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    const NONE: u32 = u32::MAX;
    // root:ovltest 0640, and an ACL denying the user ovltest.
    let deny = posix_acl(&[
        (0x01, 6, NONE),
        (0x02, 0, uid),
        (0x04, 4, NONE),
        (0x10, 4, NONE),
        (0x20, 0, NONE),
    ]);
    let run = |kernel: bool| -> (Option<i32>, u32, u32) {
        let d = Dirs::new();
        for f in ["f", "g"] {
            fs::write(d.p("l").join(f), "secret").unwrap();
            chown(&d.p("l").join(f), 0, gid).unwrap();
            fs::set_permissions(
                d.p("l").join(f),
                std::os::unix::fs::PermissionsExt::from_mode(0o640),
            )
            .unwrap();
        }
        probe_setxattr(&d.p("l/f"), "system.posix_acl_access", &deny, 0).unwrap();
        let m = d.p("m");
        let _k;
        let _f;
        if kernel {
            _k = KernelOverlay::mount(
                &[d.p("l")],
                Some((&d.p("u"), &d.p("w"))),
                &m,
                &[] as &[&str],
            );
        } else {
            _f = FuseMount::try_mount(&d.opts(""), &m, None).unwrap();
        }
        let read = with_creds(uid, gid, || {
            fs::read(m.join("f")).err().and_then(|e| e.raw_os_error())
        });
        // An ACL whose mask grants rwx changes the group bits of the mode.
        let before = fs::metadata(m.join("g")).unwrap().mode() & 0o7777;
        let grant = posix_acl(&[
            (0x01, 6, NONE),
            (0x04, 4, NONE),
            (0x08, 7, gid),
            (0x10, 7, NONE),
            (0x20, 0, NONE),
        ]);
        probe_setxattr(&m.join("g"), "system.posix_acl_access", &grant, 0).unwrap();
        let after = fs::metadata(m.join("g")).unwrap().mode() & 0o7777;
        (read, before, after)
    };
    let kern = run(true);
    let ours = run(false);
    assert_eq!(
        kern.0,
        Some(libc::EACCES),
        "the kernel denies the ACL'd user"
    );
    assert_eq!(ours, kern, "ovlfuse against the kernel overlayfs");
    assert_eq!(ours.1, 0o640);
    assert_eq!(ours.2, 0o670, "the mask shows in the group bits");
}

/// Owner and mode as the mount shows them.
fn perm(p: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

const REC: &str = "user.fuseoverlayfs.override_stat";
const CONTAINERS_REC: &str = "user.containers.override_stat";

fn record(p: &Path) -> String {
    probe_getxattr(p, REC).map_or_else(
        |e| format!("errno {e}"),
        |v| String::from_utf8_lossy(&v).into_owned(),
    )
}

/// A lower whose owners and modes are kept in containers/storage's record,
/// as a layer written with force_mask holds them.
fn lower_with_records(d: &Dirs) {
    let l = d.p("l");
    fs::write(l.join("a"), "a").unwrap();
    chown(&l.join("a"), 7, 8).unwrap();
    fs::create_dir(l.join("d")).unwrap();
    fs::write(l.join("plain"), "p").unwrap();
    fs::set_permissions(
        l.join("plain"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    for (p, v) in [
        (l.clone(), "0:0:40700"),
        (l.join("a"), "11:12:100600"),
        (l.join("d"), "13:14:40711"),
    ] {
        probe_setxattr(&p, CONTAINERS_REC, v.as_bytes(), 0).unwrap();
    }
}

/// What both daemons agree on (fuse-overlayfs 1.10, Debian's): a lower's
/// records are read, chown and chmod through an xattr_permissions=2 mount
/// go to the record (ids and mode bits alike) and leave the inode alone,
/// and each reads the other's upper through its records.
fn xattr_permissions_run(bin: &Path, reader: &Path) -> Vec<String> {
    let d = Dirs::new();
    lower_with_records(&d);
    let m = d.p("m");
    let fm = FuseMount::try_mount_bin(bin, &d.opts("xattr_permissions=2"), &m, None).unwrap();
    // (`plain`, which has no record, is left out: fuse-overlayfs 1.10
    // answers ENODATA for it.)
    let mut out = vec![format!(
        "lower: a {:?} d {:?}",
        perm(&m.join("a")),
        perm(&m.join("d")),
    )];
    fs::write(m.join("n1"), "").unwrap();
    chown(&m.join("n1"), 1234, 5678).unwrap();
    fs::write(m.join("n2"), "").unwrap();
    fs::set_permissions(
        m.join("n2"),
        std::os::unix::fs::PermissionsExt::from_mode(0o604),
    )
    .unwrap();
    let (n1, n2) = (perm(&m.join("n1")), perm(&m.join("n2")));
    out.push(format!("shown: n1 {:?} n2 {:?}", (n1.0, n1.1), n2.2));
    drop(fm);
    let (r1, r2) = (record(&d.p("u/n1")), record(&d.p("u/n2")));
    out.push(format!(
        "records: n1 {:?} n2 {:?}",
        r1.rsplit_once(':').map(|x| x.0),
        r2.rsplit_once(':').map(|x| x.1)
    ));
    out.push(format!(
        "inodes: n1 {:?} n2 {:?}",
        owner(&d.p("u/n1")),
        owner(&d.p("u/n2"))
    ));
    // The other daemon, without the option: the upper root's record says
    // how to read the upper.
    let fm = FuseMount::try_mount_bin(reader, &d.opts(""), &m, None).unwrap();
    let (n1, n2) = (perm(&m.join("n1")), perm(&m.join("n2")));
    out.push(format!("read back: n1 {:?} n2 {:?}", (n1.0, n1.1), n2.2));
    drop(fm);
    out
}

#[test]
fn xattr_permissions_keep_owners_and_modes_in_a_record_as_fuse_overlayfs_does() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::Tool("fuse-overlayfs")]) {
        return;
    }
    let fo = Path::new("/usr/bin/fuse-overlayfs");
    let want = vec![
        "lower: a (11, 12, 384) d (13, 14, 457)".to_string(),
        "shown: n1 (1234, 5678) n2 388".into(),
        "records: n1 Some(\"1234:5678\") n2 Some(\"100604\")".into(),
        "inodes: n1 (0, 0) n2 (0, 0)".into(),
        "read back: n1 (1234, 5678) n2 388".into(),
    ];
    assert_eq!(
        xattr_permissions_run(&ovlfuse_bin(), fo),
        want,
        "ovlfuse, read back by fuse-overlayfs"
    );
    assert_eq!(
        xattr_permissions_run(fo, &ovlfuse_bin()),
        want,
        "fuse-overlayfs, read back by ovlfuse (the test is fair)"
    );
}

/// Where fuse-overlayfs 1.10 loses what was asked for, ovlfuse keeps it
/// (later fuse-overlayfs releases fixed these): a file without a record in
/// a layer with records (1.10 answers ENODATA), the umask of a new file, a
/// chmod after a chown, the mode and owner of a lower object copied up (a
/// file written to, a directory a file is made in), and the upper root's
/// record taken from the lower root's.
#[test]
fn xattr_permissions_keep_what_was_asked_through_copy_up_and_creation() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = Dirs::new();
    lower_with_records(&d);
    let m = d.p("m");
    let fm = FuseMount::try_mount(&d.opts("xattr_permissions=2"), &m, None).unwrap();
    assert_eq!(
        perm(&m),
        (0, 0, 0o700),
        "the root shows the lower root's record"
    );
    assert_eq!(
        perm(&m.join("plain")),
        (0, 0, 0o644),
        "no record: the inode shows"
    );
    let mk = |name: &str, mode: u32| {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(m.join(name))
            .unwrap();
    };
    mk("n", 0o640);
    assert_eq!(perm(&m.join("n")).2, 0o640);
    chown(&m.join("n"), 1234, 5678).unwrap();
    fs::set_permissions(
        m.join("n"),
        std::os::unix::fs::PermissionsExt::from_mode(0o604),
    )
    .unwrap();
    assert_eq!(
        perm(&m.join("n")),
        (1234, 5678, 0o604),
        "chmod keeps the chown"
    );
    std::io::Write::write_all(
        &mut fs::OpenOptions::new()
            .append(true)
            .open(m.join("a"))
            .unwrap(),
        b"x",
    )
    .unwrap();
    fs::create_dir(m.join("d/sub")).unwrap();
    chown(&m.join("d/sub"), 5, 6).unwrap();
    assert_eq!(perm(&m.join("a")), (11, 12, 0o600), "a copied-up file");
    assert_eq!(perm(&m.join("d")), (13, 14, 0o711), "a copied-up directory");
    assert_eq!(perm(&m.join("d/sub")).0, 5);
    drop(fm);
    assert_eq!(record(&d.p("u/a")), "11:12:100600");
    assert_eq!(record(&d.p("u/d")), "13:14:40711");
    assert_eq!(record(&d.p("u")), "0:0:40700");
    // Every inode is still the daemon's, and it can reach them.
    for p in ["u/n", "u/a", "u/d", "u/d/sub"] {
        assert_eq!(owner(&d.p(p)), (0, 0), "{p}");
    }
    assert!(fs::metadata(d.p("u/d")).unwrap().mode() & 0o700 == 0o700);
    // Without the option, and without a record at the upper root, the
    // inodes are what show: a plain upper is read as before.
    let e = Dirs::new();
    fs::write(e.p("l/f"), "f").unwrap();
    let fm = FuseMount::try_mount(&e.opts(""), &e.p("m"), None).unwrap();
    chown(&e.p("m/f"), 3, 4).unwrap();
    drop(fm);
    assert_eq!(owner(&e.p("u/f")), (3, 4));
    assert_eq!(record(&e.p("u/f")), format!("errno {}", libc::ENODATA));
    // A value outside 0-2 is refused in one line.
    let out = Command::new(ovlfuse_bin())
        .args(["-o", &e.opts("xattr_permissions=3")])
        .arg(e.p("m"))
        .output()
        .unwrap();
    assert_refusal("xattr_permissions=3", &out, "xattr_permissions=3");
    assert!(!is_mounted(&e.p("m")));
}

/// containers/storage (podman 4.3, `podman run --uidmap`) hands a mount
/// program its image layers on an idmapped mount and passes the same
/// mapping as `uidmapping=`. The ids the kernel shows through such a
/// lower are already the container's: ovlfuse does not map them a second
/// time (they would all show as 65534), and what it stores in the upper
/// is the stored form, as for any other object.
#[test]
fn a_lower_on_an_idmapped_mount_is_not_mapped_twice() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::Tool("unshare")]) {
        return;
    }
    let d = Dirs::new();
    fs::write(d.p("l/a"), "a").unwrap();
    fs::create_dir(d.p("l/d")).unwrap();
    chown(&d.p("l/d"), 1000, 1000).unwrap();
    let acl_of = |uid: u32| {
        let x = u32::MAX;
        posix_acl(&[
            (1, 6, x),
            (2, 4, uid),
            (4, 4, x),
            (0x10, 4, x),
            (0x20, 4, x),
        ])
    };
    let a_acl = acl_of(1001);
    probe_setxattr(&d.p("l/a"), "system.posix_acl_access", &a_acl, 0).unwrap();
    fs::create_dir(d.p("li")).unwrap();
    let idm = IdmappedBind::new(&d.p("l"), &d.p("li"), 100000, 65536);
    assert_eq!(owner(&d.p("li/d")), (101000, 101000), "the idmapped view");
    let o = ovlfuse_options(
        &[d.p("li")],
        Some((&d.p("u"), &d.p("w"))),
        &["uidmapping=0:100000:65536", "gidmapping=0:100000:65536"],
    );
    let m = d.p("m");
    let fm = FuseMount::try_mount(&o, &m, None).unwrap();
    drop(idm); // the daemon holds the lower open, as it holds c/storage's
    assert_eq!(owner(&m.join("a")), (100000, 100000));
    assert_eq!(owner(&m.join("d")), (101000, 101000));
    // The ACL's user is shown once mapped too.
    assert_eq!(
        probe_getxattr(&m.join("a"), "system.posix_acl_access").unwrap(),
        acl_of(101001)
    );
    // A copy-up stores the stored ids (and ACL) in the upper; so does a
    // new file of the directory's (shown) owner.
    with_creds(101000, 101000, || fs::write(m.join("d/new"), "n")).unwrap();
    chown(&m.join("a"), 100005, 100006).unwrap();
    drop(fm);
    assert_eq!(owner(&d.p("u/d")), (1000, 1000));
    assert_eq!(owner(&d.p("u/a")), (5, 6));
    assert_eq!(owner(&d.p("u/d/new")), (1000, 1000));
    assert_eq!(
        probe_getxattr(&d.p("u/a"), "system.posix_acl_access").unwrap(),
        a_acl
    );
}
