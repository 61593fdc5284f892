//! Which FUSE transport the suite's mounts use.
//!
//! ovlfuse takes FUSE over io_uring whenever the kernel offers it, and the
//! kernel offers it while /sys/module/fuse/parameters/enable_uring is Y. So
//! the harness picks the transport for a whole test binary by setting that
//! switch before its first mount, and puts the old value back when the
//! binary exits. OVLFUSE_TEST_TRANSPORT=classic runs over /dev/fuse;
//! anything else (the default) over io_uring where the kernel has it.

use std::sync::OnceLock;

pub const SWITCH: &str = "/sys/module/fuse/parameters/enable_uring";

/// The transport this run asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Uring,
    Classic,
}

pub fn wanted() -> Transport {
    match std::env::var("OVLFUSE_TEST_TRANSPORT").as_deref() {
        Ok("classic") => Transport::Classic,
        _ => Transport::Uring,
    }
}

static ORIGINAL: OnceLock<Option<String>> = OnceLock::new();

extern "C" fn restore() {
    if let Some(Some(v)) = ORIGINAL.get() {
        let _ = std::fs::write(SWITCH, v);
    }
}

/// Read the switch: Some(true) for Y, None when this kernel has none.
pub fn switch() -> Option<bool> {
    // The fuse module may load only when /dev/fuse is first opened.
    let _ = std::fs::File::open("/dev/fuse");
    std::fs::read_to_string(SWITCH)
        .ok()
        .map(|v| v.trim() == "Y")
}

/// Set the switch (root only); the first change records the value to
/// restore at exit.
pub fn set_switch(on: bool) -> std::io::Result<()> {
    ORIGINAL.get_or_init(|| {
        let old = std::fs::read_to_string(SWITCH).ok();
        if old.is_some() {
            // SAFETY: registers a plain extern "C" fn with no captured state.
            unsafe { libc::atexit(restore) };
        }
        old.map(|v| v.trim().to_string())
    });
    std::fs::write(SWITCH, if on { "Y" } else { "N" })
}

/// Put the switch where this run wants it, once per test binary. Without
/// root or without the switch there is nothing to choose: /dev/fuse.
pub fn select() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || switch().is_none() {
            return;
        }
        let on = wanted() == Transport::Uring;
        if switch() != Some(on)
            && let Err(e) = set_switch(on)
        {
            eprintln!("cannot set {SWITCH}: {e}");
        }
    });
}

/// The value of `key` in `ovlfuse stats` for a mount (empty if absent).
pub fn stat_of_mount(bin: &std::path::Path, mnt: &std::path::Path, key: &str) -> String {
    let out = std::process::Command::new(bin)
        .arg("stats")
        .arg(mnt)
        .output()
        .expect("run ovlfuse stats");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::to_string))
        .unwrap_or_default()
}

/// The transport line of `ovlfuse stats` for a mount.
pub fn of_mount(bin: &std::path::Path, mnt: &std::path::Path) -> String {
    stat_of_mount(bin, mnt, "transport")
}
