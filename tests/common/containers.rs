//! containers/storage for the Buildah and Podman tests and bench: an
//! isolated storage per mount program, and a busybox root filesystem to
//! build an image from (there is no registry here).

use super::user::{as_user, chown_tree};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One isolated containers/storage: its own root, runroot and config.
pub struct Storage {
    root: PathBuf,
    run: PathBuf,
    conf: PathBuf,
    mount_program: PathBuf,
    /// Rootless: the ordinary user who runs buildah and podman.
    user: Option<(u32, u32)>,
}

impl Storage {
    pub fn new(base: &Path, mount_program: &Path, user: Option<(u32, u32)>) -> Storage {
        let s = Storage {
            root: base.join("root"),
            run: base.join("run"),
            conf: base.join("containers.conf"),
            mount_program: mount_program.to_path_buf(),
            user,
        };
        fs::create_dir_all(&s.root).unwrap();
        fs::create_dir_all(s.run.join("xdg")).unwrap();
        fs::write(
            &s.conf,
            "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
        if let Some((uid, gid)) = user {
            chown_tree(&[base], uid, gid);
        }
        s
    }

    /// Run buildah or podman on this storage; (success, stdout, stderr).
    /// Rootless, as the storage's user, with its runtime directory inside.
    pub fn tool(&self, tool: &str, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(tool);
        if let Some((uid, gid)) = self.user {
            // After as_user, which sets HOME=/ and clears XDG_RUNTIME_DIR.
            as_user(&mut cmd, uid, gid)
                .env("XDG_RUNTIME_DIR", self.run.join("xdg"))
                .env("HOME", &self.run);
        }
        let o = cmd
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.run)
            .args(["--storage-driver", "overlay", "--storage-opt"])
            .arg(format!(
                "overlay.mount_program={}",
                self.mount_program.display()
            ))
            .args(args)
            .env("CONTAINERS_CONF", &self.conf)
            .env("BUILDAH_ISOLATION", "chroot")
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// An image `name` made of the files in `rootfs` (buildah from
    /// scratch, copy, commit): an image import without a registry.
    pub fn image_from(&self, rootfs: &Path, name: &str) {
        let scratch = self.ok("buildah", &["from", "scratch"]);
        self.ok(
            "buildah",
            &["copy", &scratch, rootfs.to_str().unwrap(), "/"],
        );
        self.ok("buildah", &["commit", "-q", &scratch, name]);
        self.ok("buildah", &["rm", &scratch]);
    }

    /// `buildah run` in `container` of `sh -c script` with the chroot
    /// isolation (runc's and crun's cannot run here), `opts` before the
    /// container; its stdout.
    pub fn buildah_sh(&self, container: &str, opts: &[&str], script: &str) -> String {
        let mut a = vec!["run", "--isolation", "chroot"];
        a.extend_from_slice(opts);
        a.extend_from_slice(&[container, "--", "sh", "-c", script]);
        self.ok("buildah", &a)
    }

    /// `podman run` of a local image without network (there is no
    /// registry here), removed afterwards; as `tool`.
    pub fn podman_run(&self, args: &[&str]) -> (bool, String, String) {
        self.tool("podman", &podman_run_args(args))
    }

    /// `podman_run` that must succeed, as `ok`.
    pub fn podman_run_ok(&self, args: &[&str]) -> String {
        self.ok("podman", &podman_run_args(args))
    }

    pub fn ok(&self, tool: &str, args: &[&str]) -> String {
        let (ok, out, err) = self.tool(tool, args);
        assert!(
            ok,
            "{tool} {args:?} with {}: {err}",
            self.mount_program.display()
        );
        out
    }
}

fn podman_run_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["run", "--rm", "--pull=never", "--network=none"];
    a.extend_from_slice(args);
    a
}

impl Drop for Storage {
    fn drop(&mut self) {
        let _ = self.tool("buildah", &["rm", "--all"]);
        let _ = self.tool("podman", &["rm", "--all", "--force"]);
        // Whatever is still mounted below the storage goes before the files.
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mps: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| {
                m.starts_with(self.root.to_str().unwrap())
                    || m.starts_with(self.run.to_str().unwrap())
            })
            .collect();
        mps.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mps {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// A busybox root filesystem: /bin/busybox, applet links, /etc/passwd.
pub fn busybox_rootfs(dir: &Path) {
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
    fs::set_permissions(
        dir.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for applet in ["sh", "ls", "cat", "echo", "rm", "id", "stat", "test"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )
    .unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}
