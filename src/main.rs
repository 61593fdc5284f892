//! The `ovlfuse` command: mount (both argv forms), the teaching tools, and
//! the man page and shell completions generated from these definitions.

// Every unsafe block says why it is sound; clippy refuses one that does not.
#![deny(clippy::undocumented_unsafe_blocks)]

use clap::{CommandFactory, Parser, Subcommand};
use ovlfuse::mount::{self, MountRequest};
use ovlfuse::options::{self, MountOptions};
use ovlfuse::tools;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "ovlfuse",
    version,
    about = "A userspace overlay filesystem (FUSE), behaving like the kernel's overlayfs",
    long_about = "A userspace overlay filesystem (FUSE), behaving like the kernel's overlayfs.\n\n\
                  Stacks read-only lower directories under one writable upper directory and \
                  shows the merge at MOUNTPOINT. The first change to a lower file copies it \
                  up whole; deletes leave 0/0 character-device whiteouts; a directory made \
                  over a deleted one is opaque; renaming a directory that comes from a lower \
                  layer answers EXDEV. The upper layer is in the kernel overlayfs's format.",
    args_conflicts_with_subcommands = true,
    after_help = "Mount:   ovlfuse -o lowerdir=A:B,upperdir=U,workdir=W MOUNTPOINT\n\
                  Helper:  ovlfuse SOURCE MOUNTPOINT -o OPTIONS   (as mount -t fuse.ovlfuse runs it)\n\
                  Unmount: fusermount3 -u MOUNTPOINT   (or umount MOUNTPOINT as root)"
)]
struct Cli {
    /// Mount options, comma separated (lowerdir=, upperdir=, workdir=,
    /// userxattr, volatile, nopassthrough, threads=N, FUSE and mount flags);
    /// repeatable. --help lists them all.
    #[arg(short = 'o', value_name = "OPTIONS", long_help = options::help_text())]
    options: Vec<String>,
    /// Stay in the foreground.
    #[arg(short = 'f')]
    foreground: bool,
    /// Log every request to standard error (implies -f); RUST_LOG is
    /// honoured; colour only on a terminal and without NO_COLOR. Also
    /// --debug and -o debug, as fuse-overlayfs and libfuse take them.
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// One event loop (libfuse's single-threaded flag); the same as -o threads=1.
    #[arg(short = 's')]
    single: bool,
    /// [SOURCE] MOUNTPOINT: SOURCE (shown in /proc/mounts) is what mount(8)
    /// passes to mount.fuse3; the mount point must be an existing directory.
    #[arg(value_name = "MOUNTPOINT", num_args = 0..=2)]
    positional: Vec<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Guided tour on built-in sample layers: lookup order, copy-up,
    /// whiteouts, opaque directories, EXDEV.
    Demo {
        /// Build the sample layers in DIR (created if missing) and keep them
        /// afterwards; by default a temporary directory that is removed.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Show every layer's object at PATH, which one wins and why (no mount).
    Which {
        /// The layers, as for a mount: -o lowerdir=A:B[,upperdir=U] (workdir
        /// is not needed). Every form of whiteout and opaque mark is read
        /// (marks=all, as for unpacked image layers); add marks=kernel (and
        /// userxattr) to see what a root mount shows by default.
        #[arg(short = 'o', value_name = "OPTIONS", required = true)]
        options: Vec<String>,
        /// A path in the merged view, relative to its root ("/" for the root).
        path: PathBuf,
    },
    /// Print the live counters of a running mount.
    Stats {
        /// The mount point of a running ovlfuse mount.
        mountpoint: PathBuf,
    },
    /// What an upper layer changed (A added, C changed, D deleted), like docker diff.
    ///
    /// Reads every form of whiteout and opaque mark (0/0 devices,
    /// trusted.overlay.* and user.overlay.*, user.fuseoverlayfs.opaque,
    /// OCI/AUFS .wh. files), as the mount option marks=all does: the layers
    /// may come from any overlay or image.
    Diff {
        /// The upper directory (upperdir=), not the mount point.
        upper: PathBuf,
        /// The lower layers, top first: one directory per flag (repeatable),
        /// or a colon list as in lowerdir= (the "lowerdir=" prefix may be
        /// kept). Without them every upper name counts as added.
        #[arg(long = "lower", value_name = "DIRS")]
        lowers: Vec<String>,
    },
    /// Write an upper layer as an OCI image layer tar; prints its diffID.
    ///
    /// Reads every form of whiteout and opaque mark, as marks=all does (an
    /// upper of ovlfuse, the kernel or fuse-overlayfs, or an unpacked
    /// layer), and writes each as .wh.NAME or .wh..wh..opq.
    Export {
        /// The upper directory (upperdir=) to export.
        upper: PathBuf,
        /// Where to write the tar; "-" is standard output (the diffID and
        /// chainID then go to standard error).
        #[arg(short = 'f', long = "file", value_name = "TAR")]
        output: Option<PathBuf>,
        /// The lower layers' diffIDs (sha256:HEX), bottom first: also print
        /// the chainID of the stack with this layer on top.
        #[arg(long = "parent-chain", value_name = "DIFFID", num_args = 1..)]
        parents: Vec<String>,
        /// Not an option of export (it names mount options elsewhere); kept
        /// only to say so.
        #[arg(short = 'o', hide = true)]
        old_output: Option<PathBuf>,
    },
    /// Write the man pages (ovlfuse.1 and one per subcommand), generated
    /// from these definitions.
    Man {
        /// Write the pages into DIR (e.g. /usr/local/share/man/man1);
        /// without it, print ovlfuse.1 to standard output.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

fn init_tracing(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        // fuser::uring says whether the ring came up or why not.
        _ if debug => EnvFilter::new("ovlfuse=debug,fuser::uring=info,fuser::session=info"),
        _ => EnvFilter::new("warn"),
    };
    // Colour codes would land in a redirected log; NO_COLOR (no-color.org)
    // turns them off on a terminal too.
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
}

/// Write ovlfuse.1 and ovlfuse-SUB.1 into `dir`, or ovlfuse.1 to stdout.
fn man(dir: Option<&Path>) -> std::io::Result<()> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        return clap_mangen::Man::new(cmd).render(&mut std::io::stdout().lock());
    };
    std::fs::create_dir_all(dir)?;
    let page = |c: clap::Command, file: String| -> std::io::Result<()> {
        let mut out = Vec::new();
        clap_mangen::Man::new(c).render(&mut out)?;
        std::fs::write(dir.join(&file), out)?;
        println!("{}", dir.join(file).display());
        Ok(())
    };
    page(cmd.clone(), "ovlfuse.1".into())?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("ovlfuse-{}", sub.get_name());
        page(sub.clone().name(name.clone()), format!("{name}.1"))?;
    }
    Ok(())
}

/// Mount options given as the source argument (`ovlfuse lowerdir=x m`):
/// say where they belong rather than report a missing lowerdir.
fn misplaced_options(cli: &Cli) -> Option<String> {
    let p = cli.positional.iter().find(|p| {
        let s = p.to_string_lossy();
        ["lowerdir=", "upperdir=", "workdir="]
            .iter()
            .any(|k| s.contains(k))
    })?;
    Some(format!(
        "'{}' looks like mount options: they go after -o (ovlfuse -o {} MOUNTPOINT)",
        p.display(),
        p.display()
    ))
}

fn main() {
    let cli = Cli::parse();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    // -o debug is -d: the mount options are read before logging starts.
    let parsed = cli
        .command
        .is_none()
        .then(|| MountOptions::parse(&cli.options, &cwd));
    let debug = cli.debug || matches!(&parsed, Some(Ok(o)) if o.debug);
    init_tracing(debug);
    let code = match cli.command {
        Some(Command::Demo { dir }) => tools::demo::run(dir),
        Some(Command::Which { options, path }) => tools::which::run(&options, &path, &cwd),
        Some(Command::Stats { mountpoint }) => tools::stats::run(&mountpoint),
        Some(Command::Diff { upper, lowers }) => tools::diff::run(&upper, &lowers, &cwd),
        Some(Command::Export {
            old_output: Some(f),
            ..
        }) => {
            eprintln!(
                "ovlfuse export: the tar goes to -f FILE (-f - for standard output); \
                 -o is for mount options: ovlfuse export UPPER -f {}",
                f.display()
            );
            2
        }
        Some(Command::Export { output: None, .. }) => {
            eprintln!(
                "ovlfuse export: say where the tar goes: -f FILE, or -f - for standard output"
            );
            2
        }
        Some(Command::Export {
            upper,
            output: Some(output),
            parents,
            ..
        }) => tools::export::run(&upper, &output, &parents),
        Some(Command::Man { dir }) => match man(dir.as_deref()) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ovlfuse man: {e}");
                1
            }
        },
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "ovlfuse",
                &mut std::io::stdout(),
            );
            0
        }
        None => {
            if cli.options.is_empty()
                && let Some(hint) = misplaced_options(&cli)
            {
                eprintln!("ovlfuse: {hint}");
                std::process::exit(2);
            }
            let (source, mountpoint) = match cli.positional.as_slice() {
                [mp] => (None, mp.clone()),
                [src, mp] => (Some(src.to_string_lossy().into_owned()), mp.clone()),
                _ => {
                    eprintln!("ovlfuse: missing mount point (see ovlfuse --help)");
                    std::process::exit(2);
                }
            };
            let mut options = match parsed.expect("parsed for a mount") {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("ovlfuse: {e}");
                    std::process::exit(1);
                }
            };
            if cli.single {
                options.threads = 1;
            }
            for n in mount::option_notices(&options) {
                eprintln!("ovlfuse: {n}");
            }
            let mountpoint = if mountpoint.is_absolute() {
                mountpoint
            } else {
                cwd.join(mountpoint)
            };
            mount::run(MountRequest {
                options,
                source,
                mountpoint,
                foreground: cli.foreground || debug,
                debug,
            })
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument of every command has a help line (the man page and
    /// --help show nothing else for it).
    #[test]
    fn every_argument_is_described() {
        fn check(c: &clap::Command, path: &str) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    a.get_help().is_some() || a.get_long_help().is_some(),
                    "{path}: argument {id} has no help"
                );
            }
            for s in c.get_subcommands() {
                assert!(
                    s.get_about().is_some(),
                    "{path} {} has no about",
                    s.get_name()
                );
                check(s, &format!("{path} {}", s.get_name()));
            }
        }
        let c = Cli::command();
        c.clone().debug_assert();
        check(&c, "ovlfuse");
    }
}
