//! The C conformance program (`tests/c/conformance.c`), compiled with the system C compiler
//! against `include/` and the `libSaCkpt.so` of this build, and run in a checkpoint domain of
//! its own. It exercises every export's success path and error table through the C ABI; this
//! test fails when it reports a failed check, crashes, or hangs.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TempDir, compile_and_link, crate_file, install_shared_library, run_limited, summary};

#[test]
fn c_conformance_program_passes_every_check() {
    let scratch = TempDir::new("conformance");
    install_shared_library(scratch.path());
    let program = scratch.path().join("conformance");
    compile_and_link(
        &[&crate_file("tests/c/conformance.c")],
        &program,
        scratch.path(),
    );

    let domain = TempDir::domain("conformance");
    let run = run_limited(
        Command::new(&program).env("CKPT_DIR", domain.path()),
        Duration::from_secs(120),
    );
    eprintln!("{}", run.stdout);
    let (passed, failed) = summary(&run.stdout)
        .unwrap_or_else(|| panic!("no `N passed, N failed` line: {}", run.describe()));
    assert_eq!(failed, 0, "{failed} C checks failed: {}", run.describe());
    assert!(run.status.success(), "{}", run.describe());
    assert!(passed > 500, "only {passed} checks ran: {}", run.describe());
}

#[test]
fn programs_linked_with_lsackpt_load_the_library_by_its_soname_libsackpt_so_1() {
    // Linked against `libSaCkpt.so` in one directory, run with only `libSaCkpt.so.1` in
    // another: the program finds the library only if its SONAME is libSaCkpt.so.1.
    let link_dir = TempDir::new("soname-link");
    std::fs::copy(
        common::built_shared_library(),
        link_dir.path().join("libSaCkpt.so"),
    )
    .expect("copy libSaCkpt.so");
    let run_dir = TempDir::new("soname-run");
    std::fs::copy(
        common::built_shared_library(),
        run_dir.path().join("libSaCkpt.so.1"),
    )
    .expect("copy libSaCkpt.so.1");

    let source = link_dir.path().join("version.c");
    std::fs::write(
        &source,
        r#"#include <stdio.h>
#include <saCkpt.h>
int main(void) {
    SaCkptHandleT h;
    SaVersionT v = {'A', 1, 1};
    SaAisErrorT rc = saCkptInitialize(&h, NULL, &v);
    printf("%d %c.%d.%d\n", (int)rc, v.releaseCode, v.majorVersion, v.minorVersion);
    return 0;
}
"#,
    )
    .expect("write version.c");
    let program = link_dir.path().join("version");
    let mut cc = Command::new(common::c_compiler());
    cc.args(common::C_WARNINGS)
        .arg("-std=c99")
        .arg("-I")
        .arg(common::include_dir())
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .arg("-L")
        .arg(link_dir.path())
        .arg("-lSaCkpt");
    common::run_ok(&mut cc);
    std::fs::remove_file(link_dir.path().join("libSaCkpt.so")).expect("remove the link copy");

    let run = run_limited(
        Command::new(&program).env("LD_LIBRARY_PATH", run_dir.path()),
        Duration::from_secs(30),
    );
    assert!(run.status.success(), "{}", run.describe());
    // SA_AIS_ERR_VERSION, and the version the library would accept.
    assert_eq!(run.stdout.trim(), "3 B.2.2", "{}", run.describe());
}
