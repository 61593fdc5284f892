//! Buildah and Podman with ovlfuse as containers/storage's mount_program
//! (issue 17), and the same sequence with fuse-overlayfs, so the test is
//! known to be fair: an image imported from a busybox root filesystem built
//! here (no registry), a container written by `buildah run --isolation
//! chroot` (as root and as user 65534), `buildah mount`, `buildah commit`
//! (a deletion is a `.wh.` entry of the committed layer), an image built on
//! the commit, `podman diff`, `podman run` (runc; `default_ulimits = []`,
//! since this machine cannot raise RLIMIT_NOFILE) and `podman run --uidmap`;
//! then rootless Podman as an ordinary user, with `--userns=keep-id`.

mod common;

use common::containers::{Storage, busybox_rootfs};
use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// What every containers test needs: both mount programs and the tools.
const CONTAINER_NEEDS: [Need; 7] = [
    Need::Root,
    Need::Fuse,
    Need::Tool("buildah"),
    Need::Tool("podman"),
    Need::Tool("runc"),
    Need::Tool("fuse-overlayfs"),
    Need::Tool("busybox"),
];

/// The names in the layer tars of an OCI archive, one list per layer.
fn layer_entries(archive: &Path, scratch: &Path) -> Vec<Vec<String>> {
    fs::create_dir_all(scratch).unwrap();
    let st = Command::new("tar")
        .arg("-C")
        .arg(scratch)
        .arg("-xf")
        .arg(archive)
        .status()
        .unwrap();
    assert!(st.success());
    let mut out = Vec::new();
    for e in fs::read_dir(scratch.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let list = Command::new("tar").arg("-tf").arg(&p).output().unwrap();
        if list.status.success() {
            out.push(
                String::from_utf8_lossy(&list.stdout)
                    .lines()
                    .map(|l| l.trim_start_matches("./").to_string())
                    .collect(),
            );
        }
    }
    out
}

/// What one mount program made of the sequence; panics on a step that
/// must work everywhere.
#[derive(Debug, PartialEq)]
struct Outcome {
    run_as_root: String,
    run_as_nobody: String,
    mounted_names: Vec<String>,
    committed_whiteout: bool,
    from_commit: String,
    diff: Vec<String>,
    podman_run: String,
    /// `podman run --uidmap`: its output, or that the runtime refused
    /// (fuse-overlayfs 1.10 maps podman 4.3's idmapped image layers twice).
    podman_uidmap: Result<String, ()>,
}

fn sequence(base: &Path, mount_program: &Path) -> (Outcome, f64) {
    let s = Storage::new(base, mount_program, None);
    let t0 = Instant::now();
    let rootfs = base.join("rootfs");
    busybox_rootfs(&rootfs);
    s.image_from(&rootfs, "bb");
    let c = s.ok("buildah", &["from", "--pull=false", "bb"]);
    let run_as_root = s.buildah_sh(&c, &[], "echo hi > /f; rm /bin/ls; id -u; cat /f");
    let run_as_nobody = s.buildah_sh(&c, &["--user", "65534"], "id -u; cat /f");
    let mp = PathBuf::from(s.ok("buildah", &["mount", &c]));
    let mut mounted_names: Vec<String> = fs::read_dir(mp.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    mounted_names.sort();
    assert_eq!(fs::read_to_string(mp.join("f")).unwrap(), "hi\n");
    s.ok("buildah", &["umount", &c]);
    s.ok("buildah", &["commit", "-q", &c, "bb2"]);
    let archive = base.join("bb2.tar");
    s.ok(
        "buildah",
        &[
            "push",
            "-q",
            "bb2",
            &format!("oci-archive:{}", archive.display()),
        ],
    );
    let layers = layer_entries(&archive, &base.join("oci"));
    let committed_whiteout = layers
        .iter()
        .any(|l| l.iter().any(|n| n == "bin/.wh.ls") && l.iter().any(|n| n == "f"));
    let c2 = s.ok("buildah", &["from", "--pull=false", "bb2"]);
    let from_commit = s.buildah_sh(&c2, &[], "cat /f; test -e /bin/ls || echo ls-gone");
    let mut diff: Vec<String> = s
        .ok("podman", &["diff", &c])
        .lines()
        .map(str::to_string)
        .collect();
    diff.sort();
    let podman_run = s.podman_run_ok(&["bb2", "cat", "/f"]);
    let (ok, out, _) = s.podman_run(&[
        "--uidmap",
        "0:100000:65536",
        "--gidmap",
        "0:100000:65536",
        "bb2",
        "sh",
        "-c",
        "id -u; cat /f; echo w > /etc/uidmap-new; stat -c %u /etc/passwd /etc/uidmap-new",
    ]);
    let podman_uidmap = if ok { Ok(out) } else { Err(()) };
    let secs = t0.elapsed().as_secs_f64();
    (
        Outcome {
            run_as_root,
            run_as_nobody,
            mounted_names,
            committed_whiteout,
            from_commit,
            diff,
            podman_run,
            podman_uidmap,
        },
        secs,
    )
}

/// Rootless Podman: an image built by the user, `--userns=keep-id` (the
/// user's own id inside, the image's root files shown as root), a write,
/// and a plain run deleting a lower file. (stdout of each, or its failure.)
fn rootless(base: &Path, mount_program: &Path, user: (u32, u32)) -> Vec<String> {
    let rootfs = base.join("rootfs");
    busybox_rootfs(&rootfs);
    let s = Storage::new(base, mount_program, Some(user));
    s.image_from(&rootfs, "bb");
    let run = |args: &[&str]| {
        let (ok, out, err) = s.podman_run(args);
        if ok {
            out
        } else {
            format!("failed: {}", err.lines().last().unwrap_or(""))
        }
    };
    vec![
        run(&[
            "--userns=keep-id",
            "bb",
            "sh",
            "-c",
            "id -u; stat -c %u /bin/busybox; echo w > /tmp/w; cat /tmp/w",
        ]),
        run(&["bb", "sh", "-c", "id -u; rm /bin/ls && echo rm-ok"]),
    ]
}

#[test]
fn rootless_podman_with_keep_id_on_ovlfuse_as_on_fuse_overlayfs() {
    if !env_ok(&CONTAINER_NEEDS) || !env_ok(&[Need::Tool("newuidmap")]) {
        return;
    }
    let user = ensure_user("ovltest");
    // Rootless Podman maps the user's subordinate ids (useradd gives them).
    for f in ["/etc/subuid", "/etc/subgid"] {
        let has = fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("ovltest:"));
        assert!(has, "{f} has no range for ovltest");
    }
    let t = tempdir();
    let ours = rootless(&t.path().join("ovlfuse"), &ovlfuse_bin(), user);
    let theirs = rootless(
        &t.path().join("fo"),
        Path::new("/usr/bin/fuse-overlayfs"),
        user,
    );
    assert_eq!(ours[0], format!("{}\n0\nw", user.0), "keep-id: {ours:?}");
    assert_eq!(ours[1], "0\nrm-ok");
    assert_eq!(ours, theirs, "ovlfuse against fuse-overlayfs");
}

#[test]
fn buildah_and_podman_run_on_ovlfuse_as_on_fuse_overlayfs() {
    if !env_ok(&CONTAINER_NEEDS) || !env_ok(&[Need::Tool("tar")]) {
        return;
    }
    let t = tempdir();
    let (ours, ours_s) = sequence(&t.path().join("ovlfuse"), &ovlfuse_bin());
    let (theirs, theirs_s) = sequence(
        &t.path().join("fuse-overlayfs"),
        Path::new("/usr/bin/fuse-overlayfs"),
    );
    eprintln!("buildah/podman sequence: ovlfuse {ours_s:.2} s, fuse-overlayfs {theirs_s:.2} s");
    assert_eq!(ours.run_as_root, "0\nhi");
    assert_eq!(
        ours.run_as_nobody, "65534\nhi",
        "user 65534 reads its files"
    );
    assert!(
        !ours.mounted_names.contains(&"ls".to_string()),
        "{:?}",
        ours.mounted_names
    );
    assert!(ours.committed_whiteout, "the commit carries bin/.wh.ls");
    assert_eq!(ours.from_commit, "hi\nls-gone");
    assert!(
        ours.diff.contains(&"A /f".to_string()) && ours.diff.contains(&"D /bin/ls".to_string()),
        "{:?}",
        ours.diff
    );
    assert_eq!(ours.podman_run, "hi");
    // podman 4.3 hands the mount program image layers on an idmapped mount
    // and passes the same mapping as uidmapping=; ovlfuse does not map
    // those ids twice (stack.rs, `idmapped`), fuse-overlayfs 1.10 does, so
    // the container's root cannot write its own /etc there.
    assert_eq!(
        ours.podman_uidmap,
        Ok("0\nhi\n0\n0".to_string()),
        "podman run --uidmap"
    );
    let mut theirs = theirs;
    theirs.podman_uidmap = ours.podman_uidmap.clone();
    assert_eq!(ours, theirs, "ovlfuse against fuse-overlayfs");
}
