//! `ckpt dump NAME [SECTION]`: a section's bytes, as a hex dump (`xxd`'s layout) or raw.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use ckpt_engine::{SectionError, SectionFilter};

use super::Error;
use super::format;
use super::inspect::{Domain, guarded};

/// `ckpt dump` options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint's name (or its replica object's file name).
    pub name: String,
    /// The section id: its text, or `0x` and hex digits. May be left out when the
    /// checkpoint has only the default section (maxSections 1).
    pub section: Option<String>,
    /// Write the bytes themselves to stdout instead of a hex dump.
    #[arg(long)]
    pub raw: bool,
}

/// Writes the section's bytes to `out`. Exit 1 if the checkpoint or section is not there.
pub fn run(dir: &Path, args: &Args, out: &mut dyn Write) -> Result<ExitCode, Error> {
    let domain = Domain::open(dir)?;
    let ck = domain.find(&args.name)?;
    let shown = ck.display_name();
    let replica = match ck.attach(&domain) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            return Err(Error::NotFound(format!(
                "{shown}: {e}; `ckpt fsck` checks it"
            )));
        }
        None => {
            return Err(Error::NotFound(format!(
                "{shown} has no replica on this node; run `ckpt dump` on a node that has one \
                 (`ckpt show {shown}` lists them)"
            )));
        }
    };
    let id = match &args.section {
        Some(arg) => format::parse_section_id(arg).map_err(Error::Usage)?,
        None if replica.attributes().max_sections == 1 => Vec::new(),
        None => {
            let ids: Vec<String> = guarded("sections", || {
                replica
                    .sections(SectionFilter::Any)
                    .take(5)
                    .map(|s| format::section_id(&s.id))
                    .collect()
            })
            .unwrap_or_default();
            return Err(Error::Usage(format!(
                "{shown} has up to {} sections: name one (e.g. {}); `ckpt show {shown}` lists \
                 them",
                replica.attributes().max_sections,
                if ids.is_empty() {
                    "none exists yet".to_owned()
                } else {
                    ids.join(", ")
                }
            )));
        }
    };
    let data = match guarded("section", || replica.read_to_vec(&id)) {
        Ok(Ok(data)) => data,
        Ok(Err(SectionError::NotExist | SectionError::BadArgument(_))) => {
            return Err(Error::NotFound(format!(
                "no section {} in {shown}; `ckpt show {shown}` lists them",
                format::section_id(&id)
            )));
        }
        Ok(Err(e)) => {
            return Err(Error::System(format!(
                "{shown}: cannot read section {}: {e}",
                format::section_id(&id)
            )));
        }
        Err(e) => return Err(Error::System(format!("{shown}: {e}"))),
    };
    if args.raw {
        out.write_all(&data)?;
    } else {
        format::hexdump(&data, out)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
