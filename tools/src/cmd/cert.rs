//! `ckpt cert`: the cluster CA and node certificates (`transport/DESIGN.md` §3).
//!
//! `ckpt cert --out DIR --node 1 --node 2 --node 3` makes a CA (`ca.pem`, `ca.key`) and a
//! certificate and key per node (`node-<id>.pem`, `node-<id>.key`; keys mode 0600). Run
//! again with `--node 4` on the same directory to add a node: the existing CA signs it.
//! Existing node files are never overwritten without `--force`.

use std::path::PathBuf;
use std::process::ExitCode;

use ckpt_transport::tls;

/// `ckpt cert` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Directory to write into (created if missing); an existing CA there is reused.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Node id to issue a certificate for; repeat for several nodes.
    #[arg(long = "node", value_name = "ID")]
    pub nodes: Vec<u32>,
    /// Overwrite existing node certificates and keys (a complete CA is still reused).
    #[arg(long)]
    pub force: bool,
}

/// Writes the CA (unless one exists) and the requested node certificates, printing each
/// file written.
pub fn run(args: &Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let written = tls::write_cluster_certs(&args.out, &args.nodes, args.force)?;
    if written.ca_reused {
        println!("using the existing CA in {}", args.out.display());
    }
    for file in &written.files {
        println!("wrote {}", file.display());
    }
    if written.files.is_empty() {
        println!("nothing to write (no --node given)");
    }
    Ok(ExitCode::SUCCESS)
}
