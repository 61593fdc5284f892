//! The `ovlfuse` command: mount (both argv forms) and the teaching tools.

use clap::{Parser, Subcommand};
use ovlfuse::mount::{self, MountRequest};
use ovlfuse::options::MountOptions;
use ovlfuse::tools;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "ovlfuse",
    version,
    about = "A userspace overlay filesystem (FUSE), behaving like the kernel's overlayfs",
    args_conflicts_with_subcommands = true,
    after_help = "Mount:   ovlfuse -o lowerdir=A:B,upperdir=U,workdir=W MOUNTPOINT\n\
                  Helper:  ovlfuse SOURCE MOUNTPOINT -o OPTIONS   (as mount -t fuse.ovlfuse runs it)\n\
                  Unmount: fusermount3 -u MOUNTPOINT"
)]
struct Cli {
    /// Mount options, comma separated (lowerdir=, upperdir=, workdir=,
    /// userxattr, volatile, threads=N, and FUSE/mount flags); repeatable.
    #[arg(short = 'o', value_name = "OPTIONS")]
    options: Vec<String>,
    /// Stay in the foreground.
    #[arg(short = 'f')]
    foreground: bool,
    /// Log every request (implies -f unless RUST_LOG is set); RUST_LOG is honoured.
    #[arg(short = 'd')]
    debug: bool,
    /// [SOURCE] MOUNTPOINT
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
        /// Keep the sample layers in this directory instead of a temp dir.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Show every layer's object at PATH, which one wins and why (no mount).
    Which {
        #[arg(short = 'o', value_name = "OPTIONS")]
        options: Vec<String>,
        path: PathBuf,
    },
    /// Print the live counters of a running mount.
    Stats { mountpoint: PathBuf },
    /// What an upper layer changed (A added, C changed, D deleted), like docker diff.
    Diff {
        upper: PathBuf,
        /// Lower layers to compare with (repeatable, top first).
        #[arg(long = "lower")]
        lowers: Vec<PathBuf>,
    },
    /// Write an upper layer as an OCI image layer tar; prints its diffID.
    Export {
        upper: PathBuf,
        #[arg(short = 'o', value_name = "TAR")]
        output: PathBuf,
        /// The lower layers' diffIDs, bottom first: also print the chainID.
        #[arg(long = "parent-chain", num_args = 1..)]
        parents: Vec<String>,
    },
}

fn init_tracing(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ if debug => EnvFilter::new("ovlfuse=debug"),
        _ => EnvFilter::new("warn"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.debug);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let code = match cli.command {
        Some(Command::Demo { dir }) => tools::demo::run(dir),
        Some(Command::Which { options, path }) => tools::which::run(&options, &path, &cwd),
        Some(Command::Stats { mountpoint }) => tools::stats::run(&mountpoint),
        Some(Command::Diff { upper, lowers }) => tools::diff::run(&upper, &lowers),
        Some(Command::Export {
            upper,
            output,
            parents,
        }) => tools::export::run(&upper, &output, &parents),
        None => {
            let (source, mountpoint) = match cli.positional.as_slice() {
                [mp] => (None, mp.clone()),
                [src, mp] => (Some(src.to_string_lossy().into_owned()), mp.clone()),
                _ => {
                    eprintln!("ovlfuse: missing mount point (see ovlfuse --help)");
                    std::process::exit(2);
                }
            };
            let options = match MountOptions::parse(&cli.options, &cwd) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("ovlfuse: {e}");
                    std::process::exit(1);
                }
            };
            let mountpoint = if mountpoint.is_absolute() {
                mountpoint
            } else {
                cwd.join(mountpoint)
            };
            mount::run(MountRequest {
                options,
                source,
                mountpoint,
                foreground: cli.foreground || cli.debug,
                debug: cli.debug,
            })
        }
    };
    std::process::exit(code);
}
