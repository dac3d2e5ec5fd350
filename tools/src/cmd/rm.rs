//! `ckpt rm NAME`: unlinks a checkpoint, as `saCkptCheckpointUnlink` does. The name goes
//! away at once (an open with CREATE makes a new checkpoint); processes that have it open
//! keep reading and writing their instance, which is deleted at its last close — now, if
//! nobody has it open. Retention does not keep an unlinked checkpoint.
//!
//! Standalone, this is the node registry's unlink. A ckptd node's checkpoints belong to
//! the cluster's directory, so there the unlink goes through the node's ckptd (its agent
//! socket: `--socket`, or `CKPT_CLUSTER_SOCKET`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ckpt_agent::{CLUSTER_SOCKET_ENV, Callbacks, Config, Library, Version};
use ckpt_engine::RegistryError;

use super::Error;
use super::inspect::{Domain, guarded, registry_error};

/// `ckpt rm` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint's name.
    pub name: String,
    /// Unlink through this ckptd agent socket (cluster mode; default: $CKPT_CLUSTER_SOCKET).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

fn cluster_hint(dir: &Path) -> String {
    format!(
        "{} is a ckptd node's directory, and only the cluster's directory unlinks its \
         checkpoints: pass --socket PATH (the node's agent socket, `socket` in the cluster \
         file) or set {CLUSTER_SOCKET_ENV}",
        dir.display()
    )
}

/// Unlinks checkpoint `args.name`. Exit 1 if there is none by that name.
pub fn run(dir: &Path, args: &Args, out: &mut dyn Write) -> Result<ExitCode, Error> {
    let socket = args.socket.clone().or_else(|| {
        std::env::var_os(CLUSTER_SOCKET_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(socket) = socket {
        return in_cluster(&socket, &args.name, out);
    }
    let domain = Domain::open(dir)?;
    let not_found = || {
        Error::NotFound(format!(
            "no checkpoint named {:?} in {}; `ckpt ls` lists them",
            args.name,
            dir.display()
        ))
    };
    let is_cluster_name = || {
        domain.is_cluster()
            && domain
                .checkpoints()
                .iter()
                .any(|c| c.cluster && c.name.as_deref() == Some(args.name.as_bytes()))
    };
    let Some(reg) = domain.registry() else {
        if let Some(e) = domain.registry_error() {
            return Err(Error::System(e.clone()));
        }
        if domain.is_cluster() {
            return Err(Error::Usage(cluster_hint(dir)));
        }
        return Err(not_found());
    };
    let name = args.name.as_bytes();
    let Some(instance) = guarded("node registry", || reg.lookup(name)).map_err(Error::System)?
    else {
        if is_cluster_name() {
            return Err(Error::Usage(cluster_hint(dir)));
        }
        return Err(not_found());
    };
    match guarded("node registry", || reg.unlink(name)).map_err(Error::System)? {
        Ok(()) => {}
        Err(RegistryError::NotExist | RegistryError::BadName) => return Err(not_found()),
        Err(e) => return Err(Error::System(registry_error(e))),
    }
    match guarded("node registry", || reg.info(instance))
        .ok()
        .flatten()
    {
        Some(info) => writeln!(
            out,
            "unlinked {}: the name is free; instance {instance} stays until its {} open(s) \
             are closed",
            args.name, info.opens
        )?,
        None => writeln!(
            out,
            "unlinked {}: instance {instance} deleted (nobody had it open)",
            args.name
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A library handle on the ckptd whose agent socket is `socket`, for a command run by hand:
/// B.01, which takes any name (B.02 only `safCkpt=` DNs), since a name is what the user
/// typed.
pub(super) fn ckptd_library(socket: &Path) -> Result<Library, Error> {
    let config = Config {
        cluster: Some(socket.to_path_buf()),
        ..Config::default()
    };
    Library::initialize_with(config, Version::B_01_01, Callbacks::default()).map_err(|e| {
        Error::System(format!(
            "cannot reach ckptd at {} ({e}); is it running, and is that the `socket` of this \
             node in the cluster file?",
            socket.display()
        ))
    })
}

fn in_cluster(socket: &Path, name: &str, out: &mut dyn Write) -> Result<ExitCode, Error> {
    let lib = ckptd_library(socket)?;
    match lib.unlink(name) {
        Ok(()) => {
            writeln!(
                out,
                "unlinked {name}: the name is free; each replica goes at the checkpoint's last \
                 close in the cluster"
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(ckpt_agent::Error::NotExist) => Err(Error::NotFound(format!(
            "no checkpoint named {name:?} in the cluster of {}; `ckpt ls --dir <the node's \
             shm_dir>` lists them",
            socket.display()
        ))),
        Err(e) => Err(Error::System(format!("ckptd refused the unlink: {e}"))),
    }
}
