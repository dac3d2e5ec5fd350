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
    /// Single-node writer/reader demo: a writer process writes and synchronizes, a reader
    /// process is woken by the arrival and reads the same text, then a short throughput run.
    Demo(cmd::demo::Args),
    /// Check every replica object and the registry of the domain; exit 1 on a violation.
    Fsck,
    /// List the checkpoints of the domain.
    Ls,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = cli.dir.unwrap_or_else(ckpt_engine::default_domain);
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(&dir, &args),
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
