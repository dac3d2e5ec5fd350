//! `ckpt`: operate the checkpoint service of this node.
//!
//! Exit codes of the operator commands: 0 ok, 1 a violation or something not found,
//! 2 a usage or system error.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use ckpt_tools::cmd;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "ckpt",
    version,
    about = "SAF AIS checkpoint service: inspect and operate a node's checkpoints",
    after_help = "The domain is a standalone node's directory (/dev/shm/ckpt/<domain>) or a \
                  ckptd node's shm_dir.\nExit codes: 0 ok, 1 a violation or not found, 2 a \
                  usage or system error."
)]
struct Cli {
    /// Domain directory (default: $CKPT_DIR, else /dev/shm/ckpt/$CKPT_DOMAIN or .../default;
    /// for a ckptd node, its shm_dir).
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make the cluster CA and node certificates (mutual TLS between ckptd nodes).
    Cert(cmd::cert::Args),
    /// Demos. `ckpt demo`: single-node writer/reader (a writer process writes and
    /// synchronizes, a reader process is woken by the arrival and reads it; no daemon).
    /// `ckpt demo failover`: two ckptd nodes on loopback; the active process and its node
    /// are killed, the standby takes over and nothing synchronized is lost.
    Demo(cmd::demo::Args),
    /// Run the node daemon (what the `ckptd` binary runs): --config FILE --node N.
    #[command(hide = true)]
    Daemon {
        /// The cluster file.
        #[arg(long)]
        config: PathBuf,
        /// This node's id.
        #[arg(long)]
        node: u32,
    },
    /// Benchmark this machine: sweeps of write/overwrite/read over sizes and section
    /// counts, and same-run ratios against memcpy, LMDB, Redis and raw quinn.
    Bench(cmd::bench::Args),
    /// Print a section's bytes: a hex dump, or --raw.
    Dump(cmd::dump::Args),
    /// Check every object of the domain (registry and replicas); exit 1 on a violation.
    Fsck(cmd::fsck::Args),
    /// List every checkpoint: attributes, sections, memory, replicas, opens, retention.
    Ls(cmd::ls::Args),
    /// Unlink a checkpoint (saCkptCheckpointUnlink): the name goes now, the data at the
    /// last close.
    Rm(cmd::rm::Args),
    /// Show one checkpoint: its attributes and status, then its sections.
    Show(cmd::show::Args),
    /// Print a checkpoint's changes as they commit, one line each, until Ctrl-C.
    Watch(cmd::watch::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = cli.dir.unwrap_or_else(ckpt_engine::default_domain);
    // Taken only for the operator commands: the demos print from several threads.
    let out = || std::io::stdout().lock();
    let result = match cli.command {
        Command::Cert(args) => {
            return exit_legacy(cmd::cert::run(&args).map_err(|e| e.to_string()));
        }
        Command::Demo(args) => return exit_legacy(cmd::demo::run(&dir, &args)),
        Command::Daemon { config, node } => return ckpt_tools::ckptd::main(&config, node),
        Command::Bench(args) => cmd::bench::run(&args, &mut out()),
        Command::Dump(args) => cmd::dump::run(&dir, &args, &mut out()),
        Command::Fsck(args) => cmd::fsck::run(&dir, &args, &mut out()),
        Command::Ls(args) => cmd::ls::run(&dir, &args, &mut out()),
        Command::Rm(args) => cmd::rm::run(&dir, &args, &mut out()),
        Command::Show(args) => cmd::show::run(&dir, &args, &mut out()),
        Command::Watch(args) => cmd::watch::run(&dir, &args, &mut out()),
    };
    let flushed = out().flush().map_err(cmd::Error::from);
    match result.and_then(|code| flushed.map(|()| code)) {
        Ok(code) => code,
        Err(e) => {
            if !e.is_quiet() {
                eprintln!("ckpt: {e}");
            }
            e.exit_code()
        }
    }
}

/// The demos and `cert` report errors as text, and exit 2.
fn exit_legacy(result: Result<ExitCode, String>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("ckpt: {e}");
        ExitCode::from(2)
    })
}
