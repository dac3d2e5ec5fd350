//! `ckpt ls`: every checkpoint of the domain, one row each — the NCS MIB's
//! `saCkptCheckpointTable` (name, creation attributes, sections, memory, opens, retention)
//! joined with its `saCkptNodeReplicaLocTable` (replicas, the active one), plus the local
//! replica's role and term.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use super::Error;
use super::format::{self, Align, Table};
use super::inspect::{Domain, Summary};

/// `ckpt ls` options.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Print JSON (`{"dir", "mode", "checkpoints": [...], "problems": [...]}`) instead of a
    /// table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Listing<'a> {
    dir: String,
    mode: &'static str,
    checkpoints: &'a [Summary],
    problems: Vec<String>,
}

/// Lists the checkpoints of `dir`. Exit 1 when some could not be read (each is still
/// listed, with what the registry or directory table knows, and the error on stderr).
pub fn run(dir: &Path, args: &Args, out: &mut dyn Write) -> Result<ExitCode, Error> {
    let domain = Domain::open(dir)?;
    let rows: Vec<Summary> = domain
        .checkpoints()
        .iter()
        .map(|c| (c, c.attach(&domain)))
        .filter(|(c, replica)| !c.vanished(replica.as_ref(), &domain))
        .map(|(c, replica)| c.summary(replica.as_ref()))
        .collect();
    let problems = domain.problems();
    let failed = !problems.is_empty() || rows.iter().any(|r| r.error.is_some());
    if args.json {
        let listing = Listing {
            dir: dir.display().to_string(),
            mode: if domain.is_cluster() {
                "cluster"
            } else {
                "standalone"
            },
            checkpoints: &rows,
            problems: problems.clone(),
        };
        serde_json::to_writer_pretty(&mut *out, &listing).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else if rows.is_empty() {
        writeln!(out, "no checkpoints in {}", dir.display())?;
    } else {
        table(&rows).write(out)?;
    }
    for p in &problems {
        eprintln!("ckpt: {p}; `ckpt fsck` checks it");
    }
    for r in &rows {
        if let Some(e) = &r.error {
            eprintln!(
                "ckpt: {} (instance {}): {e}; `ckpt fsck` checks it",
                r.name.as_deref().unwrap_or("?"),
                r.instance
            );
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn table(rows: &[Summary]) -> Table {
    let mut t = Table::new(&[
        ("NAME", Align::Left),
        ("INSTANCE", Align::Right),
        ("FLAGS", Align::Left),
        ("SECTIONS", Align::Right),
        ("USED", Align::Right),
        ("SIZE", Align::Right),
        ("REPLICAS", Align::Left),
        ("ACTIVE", Align::Left),
        ("ROLE/TERM", Align::Left),
        ("OPENS", Align::Right),
        ("RETENTION", Align::Left),
    ]);
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    for r in rows {
        let mut name = r.name.clone().unwrap_or_else(|| "?".to_owned());
        match r.state {
            "linked" => {}
            "unregistered" => {
                name.push_str(&format!(" ({})", r.object.as_deref().unwrap_or("?")));
            }
            state => name.push_str(&format!(" ({state})")),
        }
        let sections = match (r.sections, r.max_sections) {
            (None, None) => "-".to_owned(),
            (s, m) => format!(
                "{}/{}",
                or_dash(s.map(|s| s.to_string())),
                or_dash(m.map(|m| m.to_string()))
            ),
        };
        t.push(vec![
            name,
            r.instance.to_string(),
            r.flags_text(),
            sections,
            or_dash(r.memory_used.map(format::size)),
            or_dash(r.checkpoint_size.map(format::size)),
            r.replicas_text(),
            r.active_text(),
            r.role_text(),
            or_dash(r.opens.map(|o| o.to_string())),
            r.retention_text(),
        ]);
    }
    t
}
