//! The writer/reader demo of the NCS checkpoint service, in Rust: a writer creates a
//! checkpoint, writes a text into a section and synchronizes; a reader in another process
//! opens the same checkpoint, reads the text and prints it.
//!
//! ```text
//! cargo run -p ckpt-agent --example writer_reader          # both, the reader as a child
//! cargo run -p ckpt-agent --example writer_reader writer   # only the writer (keeps it 10 s)
//! cargo run -p ckpt-agent --example writer_reader reader   # only the reader
//! ```
//!
//! With no daemon running everything happens in shared memory on this node (set
//! `CKPT_DOMAIN` or `CKPT_DIR` to use another domain).

use std::process::{Command, ExitCode, Stdio};

use ckpt_agent::{
    Callbacks, CreationAttributes, CreationFlags, Library, OpenFlags, ReadElement, TIME_END,
    Version, WriteElement,
};

const NAME: &str = "safCkpt=DemoCkpt,safApp=safCkptService";
const SECTION: &[u8] = b"11";
const TEXT: &[u8] = b"The Checkpoint Service of the Service Availability Forum, from shared memory";

fn attributes() -> CreationAttributes {
    CreationAttributes {
        creation_flags: CreationFlags::WR_ACTIVE_REPLICA | CreationFlags::CHECKPOINT_COLLOCATED,
        checkpoint_size: 1024,
        retention_duration: 100_000_000_000,
        max_sections: 2,
        max_section_size: 700,
        max_section_id_size: 4,
    }
}

fn writer(spawn_reader: bool) -> Result<(), String> {
    let lib = Library::initialize(Version::B_02_02, Callbacks::default())
        .map_err(|e| format!("initialize: {e}"))?;
    println!("writer: library initialized (requested B.02.02)");
    let ck = lib
        .open(
            NAME,
            Some(&attributes()),
            OpenFlags::CREATE | OpenFlags::READ | OpenFlags::WRITE,
            TIME_END,
        )
        .map_err(|e| format!("open: {e}"))?;
    println!(
        "writer: checkpoint {NAME} opened (instance {})",
        ck.instance()
    );
    ck.set_active_replica()
        .map_err(|e| format!("active replica set: {e}"))?;
    println!("writer: this node's replica is active");
    match ck.create_section(Some(SECTION), TIME_END, b"") {
        Ok(_) => println!("writer: section {} created", show(SECTION)),
        Err(ckpt_agent::Error::Exist) => println!("writer: section {} exists", show(SECTION)),
        Err(e) => return Err(format!("section create: {e}")),
    }
    ck.write(&[WriteElement {
        section_id: SECTION,
        offset: 0,
        data: TEXT,
    }])
    .map_err(|e| format!("write: {e}"))?;
    println!("writer: wrote {} bytes: {}", TEXT.len(), show(TEXT));
    ck.synchronize(TIME_END)
        .map_err(|e| format!("synchronize: {e}"))?;
    println!("writer: synchronized");
    if spawn_reader {
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        let out = Command::new(exe)
            .arg("reader")
            .stdout(Stdio::piped())
            .output()
            .map_err(|e| format!("starting the reader: {e}"))?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            return Err(format!("the reader failed: {}", out.status));
        }
        let expected = format!("reader: read {} bytes: {}", TEXT.len(), show(TEXT));
        if !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == expected)
        {
            return Err("the reader did not read what was written".into());
        }
        lib.unlink(NAME).map_err(|e| format!("unlink: {e}"))?;
        println!("writer: checkpoint unlinked");
    } else {
        println!("writer: keeping the checkpoint open for 10 s; run the reader now");
        std::thread::sleep(std::time::Duration::from_secs(10));
    }
    ck.close().map_err(|e| format!("close: {e}"))?;
    println!("writer: checkpoint closed");
    lib.finalize().map_err(|e| format!("finalize: {e}"))?;
    println!("writer: library finalized");
    Ok(())
}

fn reader() -> Result<(), String> {
    let lib = Library::initialize(Version::B_02_02, Callbacks::default())
        .map_err(|e| format!("initialize: {e}"))?;
    let ck = lib
        .open(NAME, None, OpenFlags::READ, TIME_END)
        .map_err(|e| format!("open {NAME}: {e} (is the writer running?)"))?;
    println!("reader: checkpoint {NAME} opened for reading");
    let mut buf = vec![0u8; 700];
    let mut elements = [ReadElement {
        section_id: SECTION,
        offset: 0,
        buf: &mut buf,
        read_size: 0,
    }];
    ck.read(&mut elements).map_err(|e| format!("read: {e}"))?;
    let n = elements[0].read_size;
    println!("reader: read {n} bytes: {}", show(&buf[..n]));
    Ok(())
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn main() -> ExitCode {
    let role = std::env::args().nth(1);
    let r = match role.as_deref() {
        None => writer(true),
        Some("writer") => writer(false),
        Some("reader") => reader(),
        Some(other) => Err(format!("unknown role {other:?}: use writer or reader")),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writer_reader: {e}");
            ExitCode::FAILURE
        }
    }
}
