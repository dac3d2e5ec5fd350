//! `install.sh` lays out the library, headers and `SaCkpt.pc` under a prefix, and a C program
//! that includes only `<saCkpt.h>` builds from the pkg-config flags and runs: the NCS
//! writer/reader demo (`examples/cpsv_demo.c`), linked once against the shared library and
//! once against the static one.
//!
//! The tests install the libraries of this `cargo test` build (`SACKPT_LIB_DIR`), so they do not
//! start a second, release, cargo build; `install_script_builds_the_release_library` (ignored:
//! it takes minutes on two cores) runs the script's own `cargo build --release`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{TempDir, c_compiler, crate_file, find_on_path, run_limited, run_ok};

/// Runs install.sh into `prefix`, with the libraries of this build unless `build` is set.
fn install(prefix: &Path, build: bool) {
    let mut script = Command::new("sh");
    script
        .arg(crate_file("install.sh"))
        .env("PREFIX", prefix)
        .env_remove("DESTDIR")
        .env_remove("LIBDIR")
        .env_remove("INCLUDEDIR");
    if build {
        script.env_remove("SACKPT_LIB_DIR");
    } else {
        let built = common::built_shared_library();
        let dir = built.parent().expect("the library's directory");
        assert!(
            dir.join("libSaCkpt.a").is_file(),
            "libSaCkpt.a is not next to {} (the crate type includes staticlib)",
            built.display()
        );
        script.env("SACKPT_LIB_DIR", dir);
    }
    run_ok(&mut script);
}

/// The flags `pkg-config` gives for SaCkpt under `prefix` (`--cflags --libs`, plus `--static`
/// when asked). Without pkg-config, the same flags are read from the .pc file itself.
fn pkg_config_flags(prefix: &Path, static_link: bool) -> Vec<String> {
    let pc_dir = prefix.join("lib/pkgconfig");
    if let Some(pkg_config) = find_on_path("pkg-config") {
        let mut cmd = Command::new(pkg_config);
        cmd.env("PKG_CONFIG_PATH", &pc_dir)
            .env_remove("PKG_CONFIG_LIBDIR")
            .env("PKG_CONFIG_ALLOW_SYSTEM_CFLAGS", "1")
            .env("PKG_CONFIG_ALLOW_SYSTEM_LIBS", "1")
            .args(["--cflags", "--libs"]);
        if static_link {
            cmd.arg("--static");
        }
        cmd.arg("SaCkpt");
        return run_ok(&mut cmd)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
    }
    eprintln!("note: no pkg-config on PATH; using the flags written in SaCkpt.pc directly");
    pc_file_flags(&pc_dir.join("SaCkpt.pc"), static_link)
}

/// The Cflags and Libs (and Libs.private) of a .pc file, with its variables expanded.
fn pc_file_flags(pc: &Path, static_link: bool) -> Vec<String> {
    let text = std::fs::read_to_string(pc).expect("read SaCkpt.pc");
    let mut vars: Vec<(String, String)> = Vec::new();
    let expand = |value: &str, vars: &[(String, String)]| {
        let mut out = value.to_owned();
        for (k, v) in vars.iter().rev() {
            out = out.replace(&format!("${{{k}}}"), v);
        }
        out
    };
    let mut flags = Vec::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=')
            && !k.contains(':')
            && !k.contains(' ')
        {
            let v = expand(v.trim(), &vars);
            vars.push((k.trim().to_owned(), v));
        } else if let Some((k, v)) = line.split_once(':') {
            let wanted = matches!(k, "Cflags" | "Libs") || (static_link && k == "Libs.private");
            if wanted {
                flags.extend(expand(v, &vars).split_whitespace().map(str::to_owned));
            }
        }
    }
    flags
}

/// Compiles `examples/cpsv_demo.c` (it includes only `<saCkpt.h>` of this library) with the
/// pkg-config flags.
fn build_demo(prefix: &Path, out: &Path, static_link: bool) -> PathBuf {
    let source = crate_file("examples/cpsv_demo.c");
    let text = std::fs::read_to_string(&source).expect("read cpsv_demo.c");
    let library_headers = ["saAis.h", "saCkpt.h", "cpsv_papi.h", "ckpt_ext.h"];
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("#include") && library_headers.iter().any(|h| l.contains(h)))
        .collect();
    assert_eq!(
        ours,
        ["#include <saCkpt.h>"],
        "the program includes only <saCkpt.h> of this library"
    );
    let mut flags = pkg_config_flags(prefix, static_link);
    if static_link {
        // -lSaCkpt would pick the shared library; ask the linker for the archive.
        let at = flags
            .iter()
            .position(|f| f == "-lSaCkpt")
            .expect("-lSaCkpt in the flags");
        flags.splice(
            at..=at,
            ["-Wl,-Bstatic", "-lSaCkpt", "-Wl,-Bdynamic"].map(str::to_owned),
        );
    }
    let program = out.join(if static_link {
        "cpsv_demo_static"
    } else {
        "cpsv_demo"
    });
    let mut cc = Command::new(c_compiler());
    cc.args(common::C_WARNINGS)
        .arg("-std=c99")
        .arg("-o")
        .arg(&program)
        .arg(&source)
        .args(&flags);
    run_ok(&mut cc);
    program
}

fn run_demo(program: &Path, lib_dir: &Path) {
    let domain = TempDir::domain("install");
    let run = run_limited(
        Command::new(program)
            .env("CKPT_DIR", domain.path())
            .env("LD_LIBRARY_PATH", lib_dir),
        Duration::from_secs(60),
    );
    assert!(run.status.success(), "{}", run.describe());
    let wrote = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("writer: wrote "));
    let read = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("reader: read "));
    assert!(
        wrote.is_some() && wrote == read,
        "the reader read what the writer wrote: {}",
        run.describe()
    );
    assert!(
        run.stdout.contains("writer: library finalized"),
        "{}",
        run.describe()
    );
}

fn check_layout(prefix: &Path) {
    for file in [
        "lib/libSaCkpt.so.1",
        "lib/libSaCkpt.a",
        "lib/pkgconfig/SaCkpt.pc",
        "include/saAis.h",
        "include/saCkpt.h",
        "include/opensaf/cpsv_papi.h",
        "include/ckpt/ckpt_ext.h",
    ] {
        assert!(prefix.join(file).is_file(), "{file} is installed");
    }
    let link = prefix.join("lib/libSaCkpt.so");
    assert_eq!(
        std::fs::read_link(&link).expect("lib/libSaCkpt.so is a symlink"),
        Path::new("libSaCkpt.so.1")
    );
}

#[test]
fn installed_library_builds_the_writer_reader_demo_from_pkg_config_flags() {
    let prefix = TempDir::new("prefix");
    install(prefix.path(), false);
    check_layout(prefix.path());
    let out = TempDir::new("install-build");
    let program = build_demo(prefix.path(), out.path(), false);
    run_demo(&program, &prefix.path().join("lib"));
}

#[test]
fn installed_static_library_links_with_the_private_libs_of_the_pc_file() {
    let prefix = TempDir::new("prefix-static");
    install(prefix.path(), false);
    let out = TempDir::new("install-static");
    let program = build_demo(prefix.path(), out.path(), true);
    // Nothing to find at run time: the library is inside the program.
    let empty = TempDir::new("no-libs");
    run_demo(&program, empty.path());
}

#[test]
fn pc_file_flags_expand_the_prefix_variables() {
    let prefix = TempDir::new("prefix-pc");
    install(prefix.path(), false);
    let p = prefix.path().display();
    let sut = pc_file_flags(&prefix.path().join("lib/pkgconfig/SaCkpt.pc"), false);
    assert_eq!(
        sut,
        [
            format!("-I{p}/include"),
            format!("-L{p}/lib"),
            "-lSaCkpt".to_owned()
        ]
    );
}

#[test]
#[ignore = "runs cargo build --release -p ckpt-capi: minutes on two cores"]
fn install_script_builds_the_release_library() {
    let prefix = TempDir::new("prefix-release");
    install(prefix.path(), true);
    check_layout(prefix.path());
    let out = TempDir::new("install-release");
    let program = build_demo(prefix.path(), out.path(), false);
    run_demo(&program, &prefix.path().join("lib"));
}
