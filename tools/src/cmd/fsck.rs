//! `ckpt fsck`: checks every object of a domain — the node registry and each replica
//! object, standalone (`r-…`) or ckptd's (`c…`) — against the engine's invariants
//! (engine/DESIGN.md "Invariants"). The registry is attached without its sweep or repair,
//! so what is reported is what was there; attaching a replica does recover the operations
//! of dead processes, as any attach does.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use ckpt_engine::{AttachError, Report};
use serde::Serialize;

use super::Error;
use super::format;
use super::inspect::{Domain, guarded};
use crate::ckptd::store::DIRECTORY_FILE;

/// `ckpt fsck` options.
#[derive(clap::Args, Debug, Default)]
pub struct Args {
    /// Print JSON (`{"dir", "clean", "objects": [...]}`) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ViolationJson {
    invariant: &'static str,
    detail: String,
}

/// One checked object in `fsck --json`.
#[derive(Serialize)]
struct ObjectJson {
    /// `registry`, or the replica object's file name.
    object: String,
    /// The checkpoint name, when the registry or ckptd's table says.
    name: Option<String>,
    clean: bool,
    /// Whether the accounting checks ran (nobody was mid-operation).
    quiescent: bool,
    /// Live sections found (for the registry: checkpoint instances).
    sections: u64,
    busy_slots: u64,
    violations: Vec<ViolationJson>,
    /// Why the object could not be checked at all (counts as a violation).
    error: Option<String>,
}

#[derive(Serialize)]
struct FsckJson {
    dir: String,
    clean: bool,
    violations: usize,
    objects: Vec<ObjectJson>,
}

impl ObjectJson {
    fn from_report(object: String, name: Option<String>, r: &Report) -> Self {
        Self {
            object,
            name,
            clean: r.is_clean(),
            quiescent: r.quiescent,
            sections: r.sections,
            busy_slots: r.busy_slots,
            violations: r
                .violations
                .iter()
                .map(|v| ViolationJson {
                    invariant: v.invariant,
                    detail: v.detail.clone(),
                })
                .collect(),
            error: None,
        }
    }

    fn failed(object: String, name: Option<String>, error: String) -> Self {
        Self {
            object,
            name,
            clean: false,
            quiescent: false,
            sections: 0,
            busy_slots: 0,
            violations: Vec::new(),
            error: Some(error),
        }
    }

    fn problems(&self) -> usize {
        self.violations.len() + usize::from(self.error.is_some())
    }

    fn text(&self) -> String {
        let label = match &self.name {
            Some(n) => format!("{} ({n})", self.object),
            None => self.object.clone(),
        };
        if let Some(e) = &self.error {
            return format!("{label}: cannot check: {e}");
        }
        // The registry's report counts the checkpoint instances it holds.
        let what = if self.object == "registry" {
            "checkpoints"
        } else {
            "sections"
        };
        let mut s = if self.clean {
            format!("{label}: clean ({} {what}", self.sections)
        } else {
            format!(
                "{label}: {} violation(s) ({} {what}",
                self.violations.len(),
                self.sections
            )
        };
        if !self.quiescent {
            s.push_str(", busy: accounting checks skipped");
        }
        s.push(')');
        for v in &self.violations {
            s.push_str(&format!("\n  {}: {}", v.invariant, v.detail));
        }
        s
    }
}

/// Checks everything in `dir`; exit status 1 when any invariant is broken or an object
/// cannot be checked.
pub fn run(dir: &Path, args: &Args, out: &mut dyn Write) -> Result<ExitCode, Error> {
    let domain = Domain::inspect(dir)?;
    let mut objects = Vec::new();
    if let Some(e) = domain.registry_error() {
        objects.push(ObjectJson::failed("registry".into(), None, e.clone()));
    }
    if let Some(e) = domain.table_error() {
        objects.push(ObjectJson::failed(DIRECTORY_FILE.into(), None, e.clone()));
    }
    if let Some(reg) = domain.registry() {
        objects.push(match guarded("node registry", || reg.fsck()) {
            Ok(report) => ObjectJson::from_report("registry".into(), None, &report),
            Err(e) => ObjectJson::failed("registry".into(), None, e),
        });
    }
    let checkpoints = domain.checkpoints();
    for object in domain.objects() {
        let name = checkpoints
            .iter()
            .find(|c| c.object.as_ref() == Some(object))
            .and_then(|c| c.name.as_deref().map(format::name));
        let checked = guarded(object, || domain.attach_object(object).map(|r| r.fsck()));
        objects.push(match checked {
            Ok(Ok(report)) => ObjectJson::from_report(object.clone(), name, &report),
            // Deleted since the directory was listed.
            Ok(Err(AttachError::NotFound)) if domain.object_gone(object) => continue,
            Ok(Err(e)) => ObjectJson::failed(object.clone(), name, format!("cannot attach: {e}")),
            Err(e) => ObjectJson::failed(object.clone(), name, e),
        });
    }
    let problems: usize = objects.iter().map(ObjectJson::problems).sum();
    if args.json {
        let json = FsckJson {
            dir: dir.display().to_string(),
            clean: problems == 0,
            violations: problems,
            objects,
        };
        serde_json::to_writer_pretty(&mut *out, &json).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        for o in &objects {
            writeln!(out, "{}", o.text())?;
        }
        if objects.is_empty() {
            writeln!(out, "nothing to check in {}", dir.display())?;
        }
        writeln!(
            out,
            "fsck: {} object(s) checked, {problems} problem(s)",
            objects.len()
        )?;
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
