//! `ckpt`: operate the checkpoint service of this node.

use std::path::PathBuf;
use std::process::ExitCode;

use ckpt_tools::cmd;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "ckpt", version, about = "SAF AIS checkpoint service: tools")]
struct Cli {
    /// Domain directory (default: $CKPT_DIR, else /dev/shm/ckpt/$CKPT_DOMAIN or .../default).
    #[arg(long, global = true)]
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
    /// Check every replica object and the registry of the domain; exit 1 on a violation.
    Fsck,
    /// List the checkpoints of the domain.
    Ls,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = cli.dir.unwrap_or_else(ckpt_engine::default_domain);
    let result = match cli.command {
        Command::Cert(args) => cmd::cert::run(&args).map_err(|e| e.to_string()),
        Command::Demo(args) => cmd::demo::run(&dir, &args),
        Command::Daemon { config, node } => Ok(ckpt_tools::ckptd::main(&config, node)),
        Command::Fsck => cmd::fsck::run(&dir),
        Command::Ls => cmd::ls::run(&dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ckpt: {e}");
            ExitCode::from(2)
        }
    }
}
