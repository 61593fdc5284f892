//! Command line and mount lifecycle (issue 2): both argv forms, mount(8),
//! bad input (one line, non-zero exit, no mount left), signals, and
//! recovery of a dead mount.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Two lowers (`l1/top`, `l2/bottom`), an upper, work and mount point.
fn two_lowers() -> Dirs {
    let d = Dirs::with(&["l1", "l2", "u", "w", "m"]);
    fs::write(d.p("l1/top"), "top\n").unwrap();
    fs::write(d.p("l2/bottom"), "bottom\n").unwrap();
    d
}

impl Dirs {
    fn std_opts(&self) -> String {
        format!(
            "lowerdir={}:{},upperdir={},workdir={}",
            self.p("l1").display(),
            self.p("l2").display(),
            self.p("u").display(),
            self.p("w").display()
        )
    }
}

/// Run ovlfuse expecting a refusal: non-zero exit, exactly one line on
/// stderr mentioning `needle`, and nothing mounted at `mnt`.
fn refused(args: &[&str], cwd: &Path, mnt: &Path, needle: &str) {
    let out = Command::new(ovlfuse_bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert_refusal(&format!("{args:?}"), &out, needle);
    assert!(
        !is_mounted(mnt)
            || mount_fstype(mnt).is_some_and(|t| t == "fuse.ovlfuse" && needle.contains("already")),
        "{args:?} left a mount at {}",
        mnt.display()
    );
}

#[test]
fn bad_input_gets_one_line_and_no_mount() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = two_lowers();
    let m = d.p("m");
    let ms = m.to_str().unwrap();
    let l1 = d.p("l1");
    let (l1s, us, ws) = (l1.to_str().unwrap(), d.p("u"), d.p("w"));
    let (us, ws) = (us.to_str().unwrap(), ws.to_str().unwrap());
    let cases: Vec<(String, &str)> = vec![
        (format!("upperdir={us},workdir={ws}"), "lowerdir is missing"),
        ("lowerdir=".to_string(), "lowerdir"),
        (format!("lowerdir={l1s}:/nonexistent/x"), "does not exist"),
        (format!("lowerdir={l1s}/top"), "is not a directory"),
        (
            format!("lowerdir={l1s},upperdir={us}"),
            "upperdir given without workdir",
        ),
        (
            format!("lowerdir={l1s},workdir={ws}"),
            "workdir given without upperdir",
        ),
        (
            format!("lowerdir={l1s},upperdir={l1s}/sub,workdir={ws}"),
            "does not exist",
        ),
        (
            format!("lowerdir={l1s},frobnicate"),
            "unknown option 'frobnicate'",
        ),
    ];
    for (o, needle) in &cases {
        refused(&["-o", o, ms], &d.base, &m, needle);
    }
    // Overlaps: upper inside a lower, workdir inside upper, a lower inside upper.
    fs::create_dir(d.p("l1/inner")).unwrap();
    fs::create_dir(d.p("u/inner")).unwrap();
    let overlaps = [
        format!("lowerdir={l1s},upperdir={l1s}/inner,workdir={ws}"),
        format!("lowerdir={l1s},upperdir={us},workdir={us}/inner"),
        format!("lowerdir={us}/inner,upperdir={us},workdir={ws}"),
    ];
    for o in &overlaps {
        refused(&["-o", o, ms], &d.base, &m, "is inside");
    }
    // Missing mount point.
    refused(
        &["-o", &d.std_opts(), "/nonexistent/mnt"],
        &d.base,
        &m,
        "does not exist",
    );
}

#[test]
fn workdir_on_another_filesystem_is_refused() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = two_lowers();
    // A tmpfs made here is surely another filesystem than the upper's.
    let other = d.p("other");
    fs::create_dir(&other).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    fs::create_dir(other.join("w")).unwrap();
    let o = format!(
        "lowerdir={},upperdir={},workdir={}",
        d.p("l1").display(),
        d.p("u").display(),
        other.join("w").display()
    );
    let m = d.p("m");
    refused(
        &["-o", &o, m.to_str().unwrap()],
        &d.base,
        &m,
        "different filesystem",
    );
    Command::new("umount").arg(&other).status().unwrap();
}

#[test]
fn busy_workdir_and_double_mount_are_refused() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = two_lowers();
    let m = d.p("m");
    let first = FuseMount::try_mount(&d.std_opts(), &m, None).unwrap();
    // Same workdir, another mount point.
    let m2 = d.p("m2");
    fs::create_dir(&m2).unwrap();
    refused(
        &["-o", &d.std_opts(), m2.to_str().unwrap()],
        &d.base,
        &m2,
        "in use by another ovlfuse mount",
    );
    // Another stack on a mount point that is already ours.
    for x in ["u2", "w2"] {
        fs::create_dir(d.p(x)).unwrap();
    }
    let o2 = format!(
        "lowerdir={},upperdir={},workdir={}",
        d.p("l2").display(),
        d.p("u2").display(),
        d.p("w2").display()
    );
    refused(
        &["-o", &o2, m.to_str().unwrap()],
        &d.base,
        &m,
        "already an ovlfuse mount",
    );
    assert_eq!(
        fs::read_to_string(m.join("top")).unwrap(),
        "top\n",
        "first mount still serves"
    );
    drop(first);
}

#[test]
fn relative_paths_escapes_and_repeated_o() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = two_lowers();
    // A layer whose name holds a colon, given with the \: escape.
    fs::create_dir(d.p("a:b")).unwrap();
    fs::write(d.p("a:b/colon"), "c\n").unwrap();
    let out = Command::new(ovlfuse_bin())
        .args([
            "-o",
            r"lowerdir=a\:b:l1:l2",
            "-o",
            "upperdir=u,workdir=w",
            "-o",
            "noatime,rw,relatime",
            "m",
        ])
        .current_dir(&d.base)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The mount is live the moment the command returns.
    let names: Vec<String> = {
        let mut v: Vec<String> = fs::read_dir(d.p("m"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names, ["bottom", "colon", "top"]);
    assert_eq!(mount_fstype(&d.p("m")).as_deref(), Some("fuse.ovlfuse"));
    assert!(force_unmount(&d.p("m")));
}

#[test]
fn mount_helper_form_and_mount_t_fuse_ovlfuse() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = two_lowers();
    // The helper form as mount.fuse3 invokes it: SOURCE MOUNTPOINT -o OPTS.
    let out = Command::new(ovlfuse_bin())
        .arg("ovl")
        .arg(d.p("m"))
        .args(["-o", &format!("{},dev,suid,rw", d.std_opts())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_to_string(d.p("m/bottom")).unwrap(), "bottom\n");
    assert!(force_unmount(&d.p("m")));

    // mount(8) runs mount.fuse3 with a fixed PATH: the binary must sit in a
    // standard bin directory, as README says. Install it there for the test.
    if !need(
        "mount.fuse3 (package fuse3)",
        Path::new("/usr/sbin/mount.fuse3").exists() || Path::new("/sbin/mount.fuse3").exists(),
    ) {
        return;
    }
    install_for_mount_t();
    let st = Command::new("mount")
        .args(["-t", "fuse.ovlfuse", "ovl"])
        .arg(d.p("m"))
        .args(["-o", &d.std_opts()])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "mount -t fuse.ovlfuse: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(mount_fstype(&d.p("m")).as_deref(), Some("fuse.ovlfuse"));
    assert_eq!(fs::read_to_string(d.p("m/top")).unwrap(), "top\n");
    fs::write(d.p("m/new"), "x").unwrap();
    assert!(d.p("u/new").exists());
    let st = Command::new("umount").arg(d.p("m")).status().unwrap();
    assert!(st.success());
    assert!(!is_mounted(&d.p("m")));
}

fn wait_exit(pid: i32) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if unsafe { libc::kill(pid, 0) } != 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn sigterm_unmounts_and_foreground_exits_zero() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = two_lowers();
    let m = d.p("m");
    // Foreground daemon: our child, so its exit status is visible.
    let mut child = Command::new(ovlfuse_bin())
        .args(["-f", "-o", &d.std_opts()])
        .arg(&m)
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while mount_fstype(&m).as_deref() != Some("fuse.ovlfuse") {
        assert!(Instant::now() < until, "foreground mount never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fs::read_to_string(m.join("top")).unwrap(), "top\n");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    assert!(st.success(), "SIGTERM: exit {st}");
    assert!(!is_mounted(&m), "SIGTERM left the mount");

    // Background daemon: SIGINT also unmounts.
    let fm = FuseMount::try_mount(&d.std_opts(), &m, None).unwrap();
    let pid = fm.daemon_pid().expect("daemon pid");
    unsafe { libc::kill(pid, libc::SIGINT) };
    assert!(wait_exit(pid), "daemon ignored SIGINT");
    assert!(!is_mounted(&m));
    drop(fm);
}

#[test]
fn dead_mount_after_kill_is_recovered_on_remount() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = two_lowers();
    let m = d.p("m");
    let fm = FuseMount::try_mount(&d.std_opts(), &m, None).unwrap();
    let pid = fm.daemon_pid().expect("daemon pid");
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(wait_exit(pid));
    let e = fs::metadata(&m).unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(libc::ENOTCONN),
        "a killed daemon leaves a dead mount"
    );
    std::mem::forget(fm); // its daemon is gone; the remount below replaces it
    let again = FuseMount::try_mount(&d.std_opts(), &m, None).unwrap();
    assert_eq!(fs::read_to_string(m.join("top")).unwrap(), "top\n");
    drop(again);
    assert!(!is_mounted(&m));
}

#[test]
fn read_only_without_upper_answers_erofs() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = two_lowers();
    let m = d.p("m");
    let o = format!("lowerdir={}:{}", d.p("l1").display(), d.p("l2").display());
    let _fm = FuseMount::try_mount(&o, &m, None).unwrap();
    assert_eq!(fs::read_to_string(m.join("bottom")).unwrap(), "bottom\n");
    let errs = [
        fs::write(m.join("new"), "x").unwrap_err(),
        fs::OpenOptions::new()
            .write(true)
            .open(m.join("top"))
            .unwrap_err(),
        fs::remove_file(m.join("top")).unwrap_err(),
        fs::create_dir(m.join("d")).unwrap_err(),
        fs::rename(m.join("top"), m.join("t2")).unwrap_err(),
    ];
    for e in errs {
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    }
}

#[test]
fn help_and_version() {
    let out = Command::new(ovlfuse_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ovlfuse "));
    let out = Command::new(ovlfuse_bin()).arg("--help").output().unwrap();
    let h = String::from_utf8_lossy(&out.stdout);
    assert!(
        h.contains("lowerdir") && h.contains("fusermount3 -u"),
        "{h}"
    );
}

/// Run ovlfuse; (exit ok, stdout, stderr).
fn ovl(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(ovlfuse_bin()).args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_mount_option_and_describes_every_argument() {
    let (ok, h, _) = ovl(&["--help"]);
    assert!(ok);
    for (name, _) in ovlfuse::options::EFFECTIVE {
        for n in name.split(", ") {
            assert!(h.contains(n), "--help lacks option {n}:\n{h}");
        }
    }
    assert!(
        h.contains("nopassthrough") && h.contains("Accepted and ignored"),
        "{h}"
    );
    // Each subcommand's help says what each argument is and, where it
    // matters, the layer order.
    for (sub, wants) in [
        ("which", &["lowerdir=A:B", "relative to its root"][..]),
        ("stats", &["mount point of a running ovlfuse mount"][..]),
        (
            "diff",
            &["top first", "not the mount point", "lowerdir="][..],
        ),
        (
            "export",
            &["-f, --file", "standard output", "bottom first"][..],
        ),
        ("demo", &["keep them"][..]),
        ("man", &["--dir"][..]),
        ("completions", &["shell"][..]),
    ] {
        // -h: one line per argument, its name and its description.
        let (ok, h, _) = ovl(&[sub, "-h"]);
        assert!(ok, "{sub} -h");
        for w in wants {
            assert!(h.contains(w), "{sub} --help lacks {w:?}:\n{h}");
        }
        // clap prints an undescribed argument as a bare name on its line.
        for l in h.lines().filter(|l| l.starts_with("  ")) {
            let t = l.trim();
            let words: Vec<&str> = t.split_whitespace().collect();
            let flag_only = words.iter().all(|w| {
                w.starts_with('-') || w.starts_with('<') || w.starts_with('[') || w.ends_with(',')
            });
            assert!(!flag_only, "{sub} --help: undescribed argument {t:?}");
        }
    }
}

#[test]
fn man_pages_and_completions_are_generated() {
    let (ok, page, err) = ovl(&["man"]);
    assert!(ok, "{err}");
    assert!(page.contains(".TH ovlfuse 1"), "{page}");
    for w in ["nopassthrough", "lowerdir", "which", "export"] {
        assert!(page.contains(w), "ovlfuse.1 lacks {w}");
    }
    let t = tempdir();
    let dir = t.path().join("man1");
    let (ok, out, err) = ovl(&["man", "--dir", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    for p in [
        "ovlfuse",
        "ovlfuse-which",
        "ovlfuse-diff",
        "ovlfuse-export",
        "ovlfuse-stats",
    ] {
        let f = dir.join(format!("{p}.1"));
        assert!(out.contains(&f.display().to_string()), "{out}");
        let text = fs::read_to_string(&f).unwrap();
        assert!(text.contains(&format!(".TH {p} 1")), "{p}: {text}");
        // groff must typeset it without a warning.
        if need(
            "groff (package groff-base)",
            Path::new("/usr/bin/groff").exists(),
        ) {
            let o = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(&f)
                .output()
                .unwrap();
            assert!(
                o.status.success() && o.stderr.is_empty(),
                "groff {p}.1: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    let (ok, sh, _) = ovl(&["completions", "bash"]);
    assert!(
        ok && sh.contains("complete") && sh.contains("export"),
        "{sh}"
    );
    let (ok, _, _) = ovl(&["completions", "zsh"]);
    assert!(ok);
}

#[test]
fn options_given_without_o_are_pointed_at_it() {
    let d = two_lowers();
    let opts = format!("lowerdir={}", d.p("l1").display());
    refused(
        &[&opts, d.p("m").to_str().unwrap()],
        &d.base,
        &d.p("m"),
        "go after -o",
    );
    refused(&[&opts], &d.base, &d.p("m"), "go after -o");
}

#[test]
fn export_to_stdout_and_its_argument_checks() {
    if !env_ok(&[Need::Tool("tar")]) {
        return;
    }
    let d = two_lowers();
    fs::write(d.p("u/file"), "x\n").unwrap();
    let u = d.p("u");
    let u = u.to_str().unwrap();
    let o = Command::new(ovlfuse_bin())
        .args(["export", u, "-f", "-"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.starts_with("diffID sha256:"), "IDs go to stderr: {err}");
    assert!(!d.base.join("-").exists(), "wrote a file named -");
    let tarf = d.p("t.tar");
    fs::write(&tarf, &o.stdout).unwrap();
    let list = Command::new("tar").arg("-tf").arg(&tarf).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "file");
    // -o names mount options everywhere else: a pointer to -f, no file.
    let (ok, _, err) = ovl(&["export", u, "-o", "x.tar"]);
    assert!(
        !ok && err.contains("-f FILE") && err.lines().count() == 1,
        "{err}"
    );
    let (ok, _, err) = ovl(&[
        "export",
        u,
        "-f",
        d.p("y.tar").to_str().unwrap(),
        "--parent-chain",
        "1111",
    ]);
    assert!(!ok && err.contains("1111 is not a digest"), "{err}");
    assert!(!d.p("y.tar").exists());
    let good = format!("sha256:{}", "ab".repeat(32));
    let (ok, out, err) = ovl(&[
        "export",
        u,
        "-f",
        d.p("y.tar").to_str().unwrap(),
        "--parent-chain",
        &good,
    ]);
    assert!(ok && out.contains("chainID sha256:"), "{out}{err}");
}

#[test]
fn diff_takes_a_lowerdir_list_and_refuses_a_merged_view() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = two_lowers();
    fs::write(d.p("u/bottom"), "changed\n").unwrap();
    fs::write(d.p("u/new"), "new\n").unwrap();
    let (l1, l2) = (d.p("l1"), d.p("l2"));
    let colon = format!("{}:{}", l1.display(), l2.display());
    let want = "C /bottom\nA /new\n";
    let u = d.p("u");
    let u = u.to_str().unwrap();
    for args in [
        vec!["diff", u, "--lower", &colon],
        vec![
            "diff",
            u,
            "--lower",
            l1.to_str().unwrap(),
            "--lower",
            l2.to_str().unwrap(),
        ],
    ] {
        let (ok, out, err) = ovl(&args);
        assert!(ok, "{args:?}: {err}");
        assert_eq!(out, want, "{args:?}");
    }
    let prefixed = format!("lowerdir={colon}");
    let (ok, out, err) = ovl(&["diff", u, "--lower", &prefixed]);
    assert!(ok && out == want, "{out}{err}");
    // A merged view is not an upper: refused, naming the mount type.
    let fm = FuseMount::try_mount(&d.std_opts(), &d.p("m"), None).unwrap();
    let (ok, _, err) = ovl(&["diff", d.p("m").to_str().unwrap(), "--lower", &colon]);
    assert!(
        !ok && err.contains("mounted overlay (fuse.ovlfuse)"),
        "{err}"
    );
    drop(fm);
}

#[test]
fn debug_log_is_plain_in_a_file_and_names_inode_offset_and_size() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = two_lowers();
    let log = d.p("log");
    let m = d.p("m");
    let mut child = Command::new(ovlfuse_bin())
        .args(["-d", "-o", &format!("{},nopassthrough", d.std_opts())])
        .arg(&m)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !is_mounted(&m) {
        assert!(t0.elapsed() < Duration::from_secs(10), "no mount");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fs::read_to_string(m.join("top")).unwrap(), "top\n");
    fs::write(m.join("new"), "12345").unwrap();
    assert!(force_unmount(&m));
    child.wait().unwrap();
    let text = fs::read_to_string(&log).unwrap();
    assert!(!text.contains('\x1b'), "colour codes in a file: {text:?}");
    let line = |op: &str| {
        text.lines()
            .find(|l| l.contains("request") && l.contains(&format!("op=\"{op}\"")))
            .unwrap_or_else(|| panic!("no {op} line in {text}"))
            .to_string()
    };
    assert!(line("lookup").contains("ino=1"), "{text}");
    let r = line("read");
    assert!(
        r.contains("ino=") && r.contains("offset=0") && r.contains("size="),
        "{r}"
    );
    let w = line("write");
    assert!(w.contains("offset=0") && w.contains("size=5"), "{w}");
}

#[test]
fn rootless_mount_over_a_kernel_workdir_says_what_to_do() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let d = two_lowers();
    chown_tree(&[&d.base], uid, gid);
    // The kernel leaves workdir/work behind, root's and mode 000.
    let k = KernelOverlay::mount(
        &[d.p("l1")],
        Some((&d.p("u"), &d.p("w"))),
        &d.p("m"),
        &[] as &[&str],
    );
    drop(k);
    assert!(d.p("w/work").exists());
    let e = match FuseMount::try_mount(&d.std_opts(), &d.p("m"), Some((uid, gid))) {
        Ok(_) => panic!("mounted over root's workdir/work"),
        Err(e) => e,
    };
    assert!(
        e.contains("belongs to uid 0") && e.contains("rm -rf") && e.contains("another workdir"),
        "{e}"
    );
    assert!(!is_mounted(&d.p("m")));
}
