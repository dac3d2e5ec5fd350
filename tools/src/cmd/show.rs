//! `ckpt show NAME`: one checkpoint's attributes and status, then its sections (id, size,
//! state, expiration, last update, version), read from the local replica.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use ckpt_engine::{Replica, SectionFilter, SectionInfo, TIME_END, wall_clock};
use serde::Serialize;

use super::Error;
use super::format::{self, Align, Table};
use super::inspect::{Domain, Summary, guarded};

/// `ckpt show` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint's name (or its replica object's file name, as `ckpt ls` shows it).
    pub name: String,
    /// Print JSON (the `ckpt ls --json` fields plus `"sections": [...]`).
    #[arg(long)]
    pub json: bool,
}

/// One section in `show --json`.
#[derive(Serialize)]
struct SectionJson {
    /// Display form: text, `0x…` hex, or `(default)`; `ckpt dump` takes it back.
    id: String,
    id_hex: String,
    size: u64,
    /// `valid` (commits are copy-on-write: never `corrupted` here).
    state: &'static str,
    /// Absolute, ns since the epoch; `null` for never (`SA_TIME_END`).
    expiration_ns: Option<i64>,
    expiration: Option<String>,
    last_update_ns: i64,
    last_update: String,
    version: u64,
}

#[derive(Serialize)]
struct ShowJson {
    #[serde(flatten)]
    summary: Summary,
    sections: Option<Vec<SectionJson>>,
}

/// Prints checkpoint `args.name` of `dir`. Exit 1 if it is not there or its replica
/// cannot be read.
pub fn run(dir: &Path, args: &Args, out: &mut dyn Write) -> Result<ExitCode, Error> {
    let domain = Domain::open(dir)?;
    let ck = domain.find(&args.name)?;
    let replica = ck.attach(&domain);
    let summary = ck.summary(replica.as_ref());
    let sections = match &replica {
        Some(Ok(r)) => Some(guarded("sections", || sections_of(r))),
        _ => None,
    };
    let mut failed = summary.error.is_some();
    let sections = match sections {
        Some(Err(e)) => {
            eprintln!("ckpt: {}: {e}", summary.name.as_deref().unwrap_or("?"));
            failed = true;
            None
        }
        Some(Ok(s)) => Some(s),
        None => None,
    };
    if args.json {
        let json = ShowJson {
            sections: sections
                .as_ref()
                .map(|s| s.iter().map(section_json).collect()),
            summary: summary.clone(),
        };
        serde_json::to_writer_pretty(&mut *out, &json).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        attributes(&summary, dir, out)?;
        writeln!(out)?;
        match &sections {
            Some(s) if s.is_empty() => writeln!(out, "no sections")?,
            Some(s) => section_table(s).write(out)?,
            None if !summary.local_replica => writeln!(
                out,
                "no replica on this node (replicas: {}); run `ckpt show` on one of those nodes \
                 for the sections",
                summary.replicas_text()
            )?,
            None => writeln!(out, "sections unknown: the replica cannot be read")?,
        }
    }
    if let Some(e) = &summary.error {
        eprintln!(
            "ckpt: {}: {e}; `ckpt fsck` checks it",
            summary.name.as_deref().unwrap_or("?")
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn sections_of(r: &Replica) -> Vec<SectionInfo> {
    r.sections(SectionFilter::Any).collect()
}

fn section_json(s: &SectionInfo) -> SectionJson {
    let expires = s.expiration != TIME_END;
    SectionJson {
        id: format::section_id(&s.id),
        id_hex: format::hex(&s.id),
        size: s.size,
        state: "valid",
        expiration_ns: expires.then_some(s.expiration),
        expiration: expires.then(|| format::time(s.expiration)),
        last_update_ns: s.last_update,
        last_update: format::time(s.last_update),
        version: s.version,
    }
}

fn section_table(sections: &[SectionInfo]) -> Table {
    let now = wall_clock();
    let mut t = Table::new(&[
        ("SECTION", Align::Left),
        ("SIZE", Align::Right),
        ("STATE", Align::Left),
        ("EXPIRATION", Align::Left),
        ("LAST UPDATE", Align::Left),
        ("VERSION", Align::Right),
    ]);
    for s in sections {
        t.push(vec![
            format::section_id(&s.id),
            format::size(s.size),
            "valid".to_owned(),
            format::expiration(s.expiration, now),
            format!(
                "{} ({})",
                format::time(s.last_update),
                format::relative(s.last_update, now)
            ),
            s.version.to_string(),
        ]);
    }
    t
}

fn attributes(s: &Summary, dir: &Path, out: &mut dyn Write) -> std::io::Result<()> {
    let unknown = || "-".to_owned();
    let mut rows: Vec<(&str, String)> = Vec::new();
    rows.push((
        "name",
        s.name
            .clone()
            .unwrap_or_else(|| "? (not in the registry)".into()),
    ));
    let object = match (&s.object, s.object_size) {
        (Some(o), Some(size)) => {
            format!(" (object {o}, {} in {})", format::size(size), dir.display())
        }
        (Some(o), None) => format!(" (object {o} in {})", dir.display()),
        (None, _) => String::new(),
    };
    rows.push(("instance", format!("{}{object}", s.instance)));
    rows.push(("mode", s.mode.to_owned()));
    let opens = s.opens.map_or_else(String::new, |o| {
        format!(", {o} open{}", if o == 1 { "" } else { "s" })
    });
    let by_node = s
        .opens_by_node
        .as_ref()
        .filter(|m| !m.is_empty())
        .map_or_else(String::new, |m| {
            let parts: Vec<String> = m.iter().map(|(n, c)| format!("node {n}: {c}")).collect();
            format!(" ({})", parts.join(", "))
        });
    rows.push(("state", format!("{}{opens}{by_node}", s.state)));
    rows.push((
        "flags",
        match s.creation_flags {
            Some(f) if s.creation_flag_names.is_empty() => format!("{f:#x}"),
            Some(f) => format!("{} ({f:#x})", s.creation_flag_names.join(" | ")),
            None => unknown(),
        },
    ));
    rows.push((
        "memory",
        format!(
            "{} used of {} (checkpointSize)",
            s.memory_used.map_or_else(unknown, format::size),
            s.checkpoint_size.map_or_else(unknown, format::size)
        ),
    ));
    rows.push((
        "sections",
        format!(
            "{} of {} (maxSections), up to {} each, ids up to {}",
            s.sections.map_or_else(unknown, |n| n.to_string()),
            s.max_sections.map_or_else(unknown, |n| n.to_string()),
            s.max_section_size.map_or_else(unknown, format::size),
            s.max_section_id_size.map_or_else(unknown, format::size),
        ),
    ));
    rows.push(("retention", s.retention_text()));
    rows.push(("replicas", s.replicas_text()));
    let role = match (s.local_role, s.local_term) {
        (Some(role), Some(term)) => format!(" (local replica: {role}, term {term})"),
        _ => String::new(),
    };
    rows.push(("active", format!("{}{role}", s.active_text())));
    if let (Some(commit), Some(acked)) = (s.commit_seq, s.acked_seq) {
        rows.push((
            "journal",
            format!("commit seq {commit}, acked by every replica {acked}"),
        ));
    }
    let mut t = Table::new(&[("", Align::Left), ("", Align::Left)]);
    for (k, v) in rows {
        t.push(vec![k.to_owned(), v]);
    }
    t.write_rows(out)
}
