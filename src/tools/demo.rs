//! `ovlfuse demo`: a guided tour on built-in sample layers (the classic
//! overlay walkthrough). It mounts the real daemon (this same binary), does
//! each step through the mount, narrates it, and prints the upper layer
//! after each step, so what the overlay writes is visible.

use super::tree;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

struct Tour {
    base: PathBuf,
    merged: PathBuf,
    build: PathBuf,
    step: usize,
}

impl Tour {
    fn step(&mut self, title: &str, why: &str) {
        self.step += 1;
        println!("\n== Step {}: {title}", self.step);
        for l in why.lines() {
            println!("   {l}");
        }
    }
    fn cmd(&self, shell: &str) {
        println!("   $ {shell}");
    }
    fn upper(&self) {
        println!("   upper layer (build/) now holds:");
        print!("{}", tree::render(&self.build));
    }
    fn merged(&self) {
        println!("   merged view (merged/):");
        let mut names: Vec<String> = fs::read_dir(&self.merged)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for n in names {
            let p = self.merged.join(&n);
            let desc = match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => "dir".to_string(),
                Ok(_) => format!(
                    "{:?}",
                    fs::read_to_string(&p).unwrap_or_default().trim_end()
                ),
                Err(e) => e.to_string(),
            };
            println!("    {n:<12} {desc}");
        }
    }
}

fn write(p: &Path, s: &str) -> std::io::Result<()> {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d)?;
    }
    fs::write(p, s)
}

fn build_layers(base: &Path) -> std::io::Result<()> {
    for d in ["material", "material2", "build", "work", "merged"] {
        fs::create_dir_all(base.join(d))?;
    }
    write(&base.join("material/concrete"), "bad concrete\n")?;
    write(&base.join("material/rebar"), "rebar, 12mm\n")?;
    write(&base.join("material/tools/hammer"), "hammer\n")?;
    write(&base.join("material/tools/saw"), "saw\n")?;
    write(&base.join("material2/concrete"), "good concrete\n")?;
    write(&base.join("material2/marble"), "marble\n")?;
    write(&base.join("material2/blueprints/floor1"), "floor plan 1\n")?;
    Ok(())
}

fn unmount(mp: &Path) {
    let _ = Command::new("fusermount3").arg("-u").arg(mp).status();
}

pub fn run(dir: Option<PathBuf>) -> i32 {
    match tour(dir) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ovlfuse demo: {e}");
            1
        }
    }
}

fn tour(dir: Option<PathBuf>) -> Result<(), String> {
    let tmp;
    let kept = dir.is_some();
    let base = match dir {
        Some(d) => d,
        None => {
            tmp = tempfile::Builder::new()
                .prefix("ovlfuse-demo.")
                .tempdir()
                .map_err(|e| e.to_string())?;
            tmp.path().to_path_buf()
        }
    };
    build_layers(&base).map_err(|e| format!("building sample layers: {e}"))?;
    let mut t = Tour {
        merged: base.join("merged"),
        build: base.join("build"),
        base: base.clone(),
        step: 0,
    };
    println!("ovlfuse demo: sample layers in {}", t.base.display());
    println!(
        "   material/  (bottom lower): concrete=\"bad concrete\", rebar, tools/{{hammer,saw}}"
    );
    println!("   material2/ (top lower):    concrete=\"good concrete\", marble, blueprints/floor1");
    println!("   build/     (upper, writable, empty)");

    t.step(
        "mount",
        "lowerdir lists the lowers top first; the upper sits above them all.",
    );
    t.cmd("ovlfuse -o lowerdir=material2:material,upperdir=build,workdir=work merged");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        base.join("material2").display(),
        base.join("material").display(),
        t.build.display(),
        base.join("work").display()
    );
    let st = Command::new(&exe)
        .arg("-o")
        .arg(&opts)
        .arg(&t.merged)
        .status()
        .map_err(|e| format!("running {}: {e}", exe.display()))?;
    if !st.success() {
        return Err("mount failed (is fuse3 installed and /dev/fuse usable?)".into());
    }
    let r = steps(&mut t);
    unmount(&t.merged);
    r?;
    println!("\nUnmounted. build/ is an ordinary directory: the kernel's overlayfs");
    println!("can mount the same layers and shows the same merged view:");
    let b = base.display();
    // An unprivileged run wrote its marks as user.overlay.*: the kernel
    // reads those only with userxattr.
    let ux = if crate::sys::geteuid() == 0 {
        ""
    } else {
        ",userxattr"
    };
    let kernel = format!(
        "mount -t overlay overlay -o lowerdir={b}/material2:{b}/material,upperdir={b}/build,workdir={b}/work{ux} {b}/merged"
    );
    if kept {
        println!("   $ sudo {kernel}");
        println!("The layers stay in {b}.");
    } else {
        println!("   $ ovlfuse demo --dir DIR    # keeps the layers in DIR, then:");
        println!(
            "   $ sudo mount -t overlay overlay -o lowerdir=DIR/material2:DIR/material,upperdir=DIR/build,workdir=DIR/work{ux} DIR/merged"
        );
        println!("These layers were in a temporary directory and are removed now.");
    }
    Ok(())
}

fn steps(t: &mut Tour) -> Result<(), String> {
    let m = t.merged.clone();
    let e = |x: std::io::Error| x.to_string();

    t.step(
        "lookup order and shadowing",
        "Each name is looked up top-down: upper, then material2, then material.\n\
         The first layer that has it wins, so material2's concrete shadows material's.",
    );
    t.cmd("ls merged; cat merged/concrete");
    t.merged();
    t.upper();

    t.step(
        "create a new file",
        "New objects are always created in the upper layer.",
    );
    t.cmd("echo \"main structure\" > merged/frame");
    fs::write(m.join("frame"), "main structure\n").map_err(e)?;
    t.upper();

    t.step(
        "delete a lower file: whiteout",
        "Lower layers are read-only, so deleting marble leaves a whiteout in the\n\
         upper layer: a character device 0/0 that hides the name below it.",
    );
    t.cmd("rm merged/marble");
    fs::remove_file(m.join("marble")).map_err(e)?;
    t.merged();
    t.upper();

    t.step(
        "modify a lower file: copy-up",
        "The first write to a lower file copies the whole file up (built in\n\
         workdir, fsynced, renamed into place), then the write lands on the copy.",
    );
    t.cmd("echo \"rebar, 16mm\" >> merged/rebar");
    let size = fs::metadata(m.join("rebar")).map_err(e)?.len();
    let start = Instant::now();
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("rebar"))
        .and_then(|mut f| f.write_all(b"rebar, 16mm\n"))
        .map_err(e)?;
    println!(
        "   copied up {size} bytes and appended in {} us",
        start.elapsed().as_micros()
    );
    t.cmd("cat merged/rebar");
    print!(
        "{}",
        fs::read_to_string(m.join("rebar"))
            .map_err(e)?
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    t.upper();

    t.step(
        "remove a directory and make it again: opaque directory",
        "rm -r whites out tools/ and its entries; mkdir over the whiteout makes a\n\
         directory marked opaque (xattr overlay.opaque=y), so the old lower\n\
         entries hammer and saw never show through it again.",
    );
    t.cmd("rm -r merged/tools && mkdir merged/tools && ls merged/tools");
    fs::remove_dir_all(m.join("tools")).map_err(e)?;
    fs::create_dir(m.join("tools")).map_err(e)?;
    let n = fs::read_dir(m.join("tools")).map_err(e)?.count();
    println!("    ({n} entries)");
    t.upper();

    t.step(
        "rename a lower directory: EXDEV",
        "A directory that comes from a lower layer cannot be moved inside the\n\
         upper layer without copying its whole tree, so rename(2) answers EXDEV\n\
         and mv falls back to copy-and-delete, which the overlay supports.",
    );
    t.cmd("rename(\"merged/blueprints\", \"merged/plans\")");
    match fs::rename(m.join("blueprints"), m.join("plans")) {
        Err(x) if x.raw_os_error() == Some(libc::EXDEV) => {
            println!("    -> EXDEV (Invalid cross-device link), as designed")
        }
        other => println!("    -> {other:?}"),
    }
    t.cmd("mv merged/blueprints merged/plans");
    let st = Command::new("mv")
        .arg(m.join("blueprints"))
        .arg(m.join("plans"))
        .status()
        .map_err(e)?;
    println!("    mv exited with {}", st.code().unwrap_or(-1));
    t.merged();
    t.upper();
    Ok(())
}
