//! The C headers in `include/` against the `#[repr(C)]` types of `SaCkpt::types`.
//!
//! The headers are the source of truth. These tests compile them with the system C compiler
//! (`cc` on `PATH`; without it they fail, they do not skip) and:
//!
//! - run a generated C program that prints the size, alignment, field offsets and field sizes
//!   of every struct, the size (and signedness) of every scalar type and the value of every
//!   constant, and compare each printed number with the Rust side;
//! - compile every header alone and all together as warning-free C99, with the function
//!   prototypes and callback types checked against the specification's signatures;
//! - compile the same as C++ (with `c++`, if there is one) to check the C linkage.

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use SaCkpt::types::*;

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn c_headers_agree_with_the_rust_types_on_every_size_offset_and_constant() {
    let checks = layout_checks();
    let dir = TempDir::new("layout");
    let source = dir.path().join("layout.c");
    let program = dir.path().join("layout");
    fs::write(&source, layout_program(&checks)).expect("write the C layout program");

    // C11 for _Alignof; the headers themselves are checked as C99 below.
    let mut compile = Command::new(c_compiler());
    compile
        .args(C_WARNINGS)
        .arg("-std=c11")
        .arg("-I")
        .arg(include_dir());
    compile.arg("-o").arg(&program).arg(&source);
    run(&mut compile);
    let output = run(&mut Command::new(&program));

    let printed: Vec<&str> = output.lines().collect();
    assert_eq!(
        printed.len(),
        checks.len(),
        "the C program printed one line per check"
    );
    let mismatches: Vec<String> = checks
        .iter()
        .zip(&printed)
        .filter(|(check, line)| line.parse::<i128>().ok() != Some(check.rust))
        .map(|(check, line)| {
            format!(
                "  {}: C says {line}, Rust says {}",
                check.c_expr, check.rust
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} checks differ between the C headers and SaCkpt::types:\n{}",
        mismatches.len(),
        checks.len(),
        mismatches.join("\n")
    );
    eprintln!(
        "{} sizes, offsets and constants agree between C and Rust",
        checks.len()
    );
}

#[test]
fn each_header_compiles_on_its_own_as_warning_free_c99() {
    let dir = TempDir::new("alone");
    for header in HEADERS {
        let source = dir.path().join("alone.c");
        // Twice, to exercise the include guard.
        fs::write(
            &source,
            format!("#include \"{header}\"\n#include \"{header}\"\n"),
        )
        .expect("write the C source");
        let mut compile = Command::new(c_compiler());
        compile
            .args(C_WARNINGS)
            .arg("-std=c99")
            .arg("-Wstrict-prototypes");
        compile
            .arg("-I")
            .arg(include_dir())
            .arg("-fsyntax-only")
            .arg(&source);
        run(&mut compile);
    }
}

#[test]
fn headers_declare_the_specified_signatures_as_warning_free_c99() {
    let dir = TempDir::new("c99");
    let source = dir.path().join("signatures.c");
    fs::write(&source, SIGNATURES).expect("write the C source");
    let mut compile = Command::new(c_compiler());
    compile
        .args(C_WARNINGS)
        .arg("-std=c99")
        .arg("-Wstrict-prototypes");
    compile.arg("-I").arg(include_dir());
    compile
        .arg("-c")
        .arg("-o")
        .arg(dir.path().join("signatures.o"))
        .arg(&source);
    run(&mut compile);
}

#[test]
fn headers_declare_the_specified_signatures_with_c_linkage_in_cpp() {
    let Some(cxx) = find_on_path("c++") else {
        // Straight to stderr: libtest's capture would hide an eprintln! of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: no c++ (the C++ check of the headers did not run)"
        );
        return;
    };
    let dir = TempDir::new("cxx");
    let source = dir.path().join("signatures.cpp");
    fs::write(&source, SIGNATURES).expect("write the C++ source");
    let mut compile = Command::new(cxx);
    compile
        .args(C_WARNINGS)
        .arg("-std=c++11")
        .arg("-I")
        .arg(include_dir());
    compile
        .arg("-c")
        .arg("-o")
        .arg(dir.path().join("signatures.o"))
        .arg(&source);
    run(&mut compile);
}

// ---------------------------------------------------------------------------------------------
// What is compared
// ---------------------------------------------------------------------------------------------

/// One number the C program prints (`c_expr`, cast to `long long`) and what Rust says it is.
struct Check {
    c_expr: String,
    rust: i128,
}

/// A Rust value that a check compares, widened to `i128`.
trait Value {
    fn widen(self) -> i128;
}

macro_rules! widen_from {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            fn widen(self) -> i128 {
                i128::from(self)
            }
        }
    )*};
}
widen_from!(bool, i8, u8, i16, u16, i32, u32, i64, u64);

impl Value for usize {
    fn widen(self) -> i128 {
        i128::try_from(self).expect("a usize fits in i128")
    }
}

macro_rules! widen_newtype {
    ($($ty:ty),*) => {$(
        impl Value for $ty {
            fn widen(self) -> i128 {
                i128::from(self.0)
            }
        }
    )*};
}
widen_newtype!(
    SaBoolT,
    SaDispatchFlagsT,
    SaAisErrorT,
    SaServicesT,
    SaCkptSectionStateT,
    SaCkptSectionsChosenT,
    SaCkptCheckpointStatusT,
    SaCkptStateT
);

/// The size of the field that `project` selects.
fn size_of_field<T, F>(_project: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

fn check(checks: &mut Vec<Check>, c_expr: impl Into<String>, rust: impl Value) {
    checks.push(Check {
        c_expr: c_expr.into(),
        rust: rust.widen(),
    });
}

/// Size and alignment of a type.
macro_rules! size_align {
    ($checks:ident: $($ty:ty),* $(,)?) => {$(
        check(&mut $checks, concat!("sizeof(", stringify!($ty), ")"), size_of::<$ty>());
        check(&mut $checks, concat!("_Alignof(", stringify!($ty), ")"), align_of::<$ty>());
    )*};
}

/// Size, alignment and signedness of an integer typedef.
macro_rules! integer {
    ($checks:ident: $($ty:ident),* $(,)?) => {$(
        size_align!($checks: $ty);
        check(
            &mut $checks,
            // `~0 < 1` rather than `-1 < 0`, which -Wtype-limits flags for unsigned types.
            concat!("((", stringify!($ty), ")~(", stringify!($ty), ")0 < (", stringify!($ty), ")1)"),
            $ty::MIN != 0,
        );
    )*};
}

/// Size and alignment of a struct, and the offset and size of each of its fields.
macro_rules! layout {
    ($checks:ident: $ty:ident { $($field:ident),* $(,)? }) => {
        size_align!($checks: $ty);
        $(
            check(
                &mut $checks,
                concat!("offsetof(", stringify!($ty), ", ", stringify!($field), ")"),
                core::mem::offset_of!($ty, $field),
            );
            check(
                &mut $checks,
                concat!("sizeof(((", stringify!($ty), " *)0)->", stringify!($field), ")"),
                size_of_field(|value: &$ty| &value.$field),
            );
        )*
    };
}

/// The value of a constant of the same name on both sides.
macro_rules! constant {
    ($checks:ident: $($name:ident),* $(,)?) => {$(
        check(&mut $checks, stringify!($name), $name);
    )*};
}

fn layout_checks() -> Vec<Check> {
    let mut checks = Vec::new();

    integer!(checks: SaInt8T, SaInt16T, SaInt32T, SaInt64T);
    integer!(checks: SaUint8T, SaUint16T, SaUint32T, SaUint64T);
    integer!(checks: SaTimeT, SaInvocationT, SaSizeT, SaOffsetT, SaSelectionObjectT);
    integer!(checks: SaCkptHandleT, SaCkptCheckpointHandleT, SaCkptSectionIterationHandleT);
    integer!(checks: SaCkptCheckpointCreationFlagsT, SaCkptCheckpointOpenFlagsT);
    size_align!(checks: SaBoolT, SaDispatchFlagsT, SaAisErrorT, SaServicesT);
    size_align!(checks: SaCkptSectionStateT, SaCkptSectionsChosenT);
    size_align!(checks: SaCkptCheckpointStatusT, SaCkptStateT);
    // C's callback typedefs are nullable; their Rust counterpart in a struct is the Option.
    check(
        &mut checks,
        "sizeof(SaCkptCheckpointOpenCallbackT)",
        size_of::<Option<SaCkptCheckpointOpenCallbackT>>(),
    );
    check(
        &mut checks,
        "sizeof(SaCkptCheckpointSynchronizeCallbackT)",
        size_of::<Option<SaCkptCheckpointSynchronizeCallbackT>>(),
    );
    check(
        &mut checks,
        "sizeof(ncsCkptCkptArrivalCallbackT)",
        size_of::<Option<ncsCkptCkptArrivalCallbackT>>(),
    );

    layout!(checks: SaNameT { length, value });
    layout!(checks: SaVersionT { releaseCode, majorVersion, minorVersion });
    layout!(checks: SaCkptCheckpointCreationAttributesT {
        creationFlags,
        checkpointSize,
        retentionDuration,
        maxSections,
        maxSectionSize,
        maxSectionIdSize,
    });
    layout!(checks: SaCkptSectionIdT { idLen, id });
    layout!(checks: SaCkptSectionCreationAttributesT { sectionId, expirationTime });
    layout!(checks: SaCkptSectionDescriptorT {
        sectionId,
        expirationTime,
        sectionSize,
        sectionState,
        lastUpdate,
    });
    layout!(checks: SaCkptIOVectorElementT {
        sectionId,
        dataBuffer,
        dataSize,
        dataOffset,
        readSize,
    });
    layout!(checks: SaCkptCheckpointDescriptorT {
        checkpointCreationAttributes,
        numberOfSections,
        memoryUsed,
    });
    // Declared by the layout program's preamble as the B.01 headers declare it.
    layout!(checks: SaCkptCheckpointDescriptorB01T {
        checkpointCreationAttributes,
        numberOfSections,
        memoryUsed,
    });
    layout!(checks: SaCkptCallbacksT {
        saCkptCheckpointOpenCallback,
        saCkptCheckpointSynchronizeCallback,
    });

    constant!(checks: SA_TIME_BEGIN, SA_TIME_END, SA_TIME_MAX, SA_TIME_UNKNOWN);
    // Negative in C as well: an unsigned constant would make `time == SA_TIME_UNKNOWN` a
    // signed/unsigned comparison.
    check(&mut checks, "(SA_TIME_UNKNOWN < 0)", SA_TIME_UNKNOWN < 0);
    constant!(checks: SA_TIME_ONE_MICROSECOND, SA_TIME_ONE_MILLISECOND, SA_TIME_ONE_SECOND);
    constant!(checks: SA_TIME_ONE_MINUTE, SA_TIME_ONE_HOUR, SA_TIME_ONE_DAY);
    constant!(checks: SA_MAX_NAME_LENGTH);
    constant!(checks: SA_TRACK_CURRENT, SA_TRACK_CHANGES, SA_TRACK_CHANGES_ONLY, SA_TRACK_LOCAL);
    constant!(checks: SA_TRACK_START_STEP, SA_TRACK_VALIDATE_STEP);
    constant!(checks: SA_FALSE, SA_TRUE);
    constant!(checks: SA_DISPATCH_ONE, SA_DISPATCH_ALL, SA_DISPATCH_BLOCKING);
    constant!(checks:
        SA_AIS_OK,
        SA_AIS_ERR_LIBRARY,
        SA_AIS_ERR_VERSION,
        SA_AIS_ERR_INIT,
        SA_AIS_ERR_TIMEOUT,
        SA_AIS_ERR_TRY_AGAIN,
        SA_AIS_ERR_INVALID_PARAM,
        SA_AIS_ERR_NO_MEMORY,
        SA_AIS_ERR_BAD_HANDLE,
        SA_AIS_ERR_BUSY,
        SA_AIS_ERR_ACCESS,
        SA_AIS_ERR_NOT_EXIST,
        SA_AIS_ERR_NAME_TOO_LONG,
        SA_AIS_ERR_EXIST,
        SA_AIS_ERR_NO_SPACE,
        SA_AIS_ERR_INTERRUPT,
        SA_AIS_ERR_NAME_NOT_FOUND,
        SA_AIS_ERR_NO_RESOURCES,
        SA_AIS_ERR_NOT_SUPPORTED,
        SA_AIS_ERR_BAD_OPERATION,
        SA_AIS_ERR_FAILED_OPERATION,
        SA_AIS_ERR_MESSAGE_ERROR,
        SA_AIS_ERR_QUEUE_FULL,
        SA_AIS_ERR_QUEUE_NOT_AVAILABLE,
        SA_AIS_ERR_BAD_FLAGS,
        SA_AIS_ERR_TOO_BIG,
        SA_AIS_ERR_NO_SECTIONS,
        SA_AIS_ERR_NO_OP,
        SA_AIS_ERR_REPAIR_PENDING,
        SA_AIS_ERR_NO_BINDINGS,
        SA_AIS_ERR_UNAVAILABLE,
        SA_AIS_ERR_CAMPAIGN_ERROR_DETECTED,
        SA_AIS_ERR_CAMPAIGN_PROC_FAILED,
        SA_AIS_ERR_CAMPAIGN_CANCELED,
        SA_AIS_ERR_CAMPAIGN_FAILED,
        SA_AIS_ERR_CAMPAIGN_SUSPENDED,
        SA_AIS_ERR_CAMPAIGN_SUSPENDING,
        SA_AIS_ERR_ACCESS_DENIED,
        SA_AIS_ERR_NOT_READY,
        SA_AIS_ERR_DEPLOYMENT,
    );
    // The Rust name table too: the C constant called name(n) must be n.
    for code in 1..=40 {
        let name = SaAisErrorT(code).name().expect("codes 1 to 40 are named");
        check(&mut checks, name, code);
    }
    constant!(checks: SA_SVC_HPI, SA_SVC_AMF, SA_SVC_CLM, SA_SVC_CKPT, SA_SVC_EVT);
    constant!(checks: SA_SVC_MSG, SA_SVC_LCK, SA_SVC_IMMS, SA_SCV_LOG, SA_SVC_NTF);
    constant!(checks: SA_SVC_NAM, SA_SVC_TMR, SA_SVC_SMF, SA_SVC_SEC, SA_SVC_PLM);

    constant!(checks:
        SA_CKPT_WR_ALL_REPLICAS,
        SA_CKPT_WR_ACTIVE_REPLICA,
        SA_CKPT_WR_ACTIVE_REPLICA_WEAK,
        SA_CKPT_CHECKPOINT_COLLOCATED,
    );
    constant!(checks: SA_CKPT_CHECKPOINT_READ, SA_CKPT_CHECKPOINT_WRITE, SA_CKPT_CHECKPOINT_CREATE);
    constant!(checks: SA_CKPT_SECTION_VALID, SA_CKPT_SECTION_CORRUPTED);
    constant!(checks:
        SA_CKPT_SECTIONS_FOREVER,
        SA_CKPT_SECTIONS_LEQ_EXPIRATION_TIME,
        SA_CKPT_SECTIONS_GEQ_EXPIRATION_TIME,
        SA_CKPT_SECTIONS_CORRUPTED,
        SA_CKPT_SECTIONS_ANY,
    );
    constant!(checks: SA_CKPT_SECTION_RESOURCES_EXHAUSTED, SA_CKPT_SECTION_RESOURCES_AVAILABLE);
    constant!(checks: SA_CKPT_CHECKPOINT_STATUS);

    // The section id initialisers, through variables the preamble initialises with them.
    check(
        &mut checks,
        "default_id.idLen",
        SA_CKPT_DEFAULT_SECTION_ID.idLen,
    );
    check(
        &mut checks,
        "(default_id.id == NULL)",
        SA_CKPT_DEFAULT_SECTION_ID.id.is_null(),
    );
    check(
        &mut checks,
        "generated_id.idLen",
        SA_CKPT_GENERATED_SECTION_ID.idLen,
    );
    check(
        &mut checks,
        "(generated_id.id == NULL)",
        SA_CKPT_GENERATED_SECTION_ID.id.is_null(),
    );

    checks
}

/// A C program that prints each check's expression, one per line, in order.
fn layout_program(checks: &[Check]) -> String {
    let mut source = String::from(LAYOUT_PREAMBLE);
    source.push_str("int main(void) {\n");
    for check in checks {
        source.push_str(&format!(
            "    printf(\"%lld\\n\", (long long)({}));\n",
            check.c_expr
        ));
    }
    source.push_str("    return 0;\n}\n");
    source
}

const LAYOUT_PREAMBLE: &str = r#"
#include <stddef.h>
#include <stdio.h>

#include "saAis.h"
#include "saCkpt.h"
#include "opensaf/cpsv_papi.h"
#include "ckpt/ckpt_ext.h"

/* The status descriptor as the B.01 and B.02.01 headers declare it (memoryUsed 32 bits). */
typedef struct {
    SaCkptCheckpointCreationAttributesT checkpointCreationAttributes;
    SaUint32T numberOfSections;
    SaUint32T memoryUsed;
} SaCkptCheckpointDescriptorB01T;

static const SaCkptSectionIdT default_id = SA_CKPT_DEFAULT_SECTION_ID;
static const SaCkptSectionIdT generated_id = SA_CKPT_GENERATED_SECTION_ID;

"#;

/// The headers, relative to `include/`.
const HEADERS: [&str; 4] = [
    "saAis.h",
    "saCkpt.h",
    "opensaf/cpsv_papi.h",
    "ckpt/ckpt_ext.h",
];

/// Every function and callback type as the specification gives it (§2 of the facts file). A
/// redeclaration with other types, or in C++ without C linkage in the header, does not compile.
const SIGNATURES: &str = r#"
#include "saAis.h"
#include "saCkpt.h"
#include "opensaf/cpsv_papi.h"
#include "ckpt/ckpt_ext.h"
/* Again, for the include guards. */
#include "saAis.h"
#include "saCkpt.h"
#include "opensaf/cpsv_papi.h"
#include "ckpt/ckpt_ext.h"

#ifdef __cplusplus
extern "C" {
#endif

SaAisErrorT saCkptInitialize(SaCkptHandleT *, const SaCkptCallbacksT *, SaVersionT *);
SaAisErrorT saCkptSelectionObjectGet(SaCkptHandleT, SaSelectionObjectT *);
SaAisErrorT saCkptDispatch(SaCkptHandleT, SaDispatchFlagsT);
SaAisErrorT saCkptFinalize(SaCkptHandleT);
SaAisErrorT saCkptCheckpointOpen(SaCkptHandleT, const SaNameT *,
                                 const SaCkptCheckpointCreationAttributesT *,
                                 SaCkptCheckpointOpenFlagsT, SaTimeT, SaCkptCheckpointHandleT *);
SaAisErrorT saCkptCheckpointOpenAsync(SaCkptHandleT, SaInvocationT, const SaNameT *,
                                      const SaCkptCheckpointCreationAttributesT *,
                                      SaCkptCheckpointOpenFlagsT);
SaAisErrorT saCkptCheckpointClose(SaCkptCheckpointHandleT);
SaAisErrorT saCkptCheckpointUnlink(SaCkptHandleT, const SaNameT *);
SaAisErrorT saCkptCheckpointRetentionDurationSet(SaCkptCheckpointHandleT, SaTimeT);
SaAisErrorT saCkptActiveReplicaSet(SaCkptCheckpointHandleT);
SaAisErrorT saCkptCheckpointStatusGet(SaCkptCheckpointHandleT, SaCkptCheckpointDescriptorT *);
SaAisErrorT saCkptSectionCreate(SaCkptCheckpointHandleT, SaCkptSectionCreationAttributesT *,
                                const void *, SaSizeT);
SaAisErrorT saCkptSectionDelete(SaCkptCheckpointHandleT, const SaCkptSectionIdT *);
SaAisErrorT saCkptSectionIdFree(SaCkptCheckpointHandleT, SaUint8T *);
SaAisErrorT saCkptSectionExpirationTimeSet(SaCkptCheckpointHandleT, const SaCkptSectionIdT *,
                                           SaTimeT);
SaAisErrorT saCkptSectionIterationInitialize(SaCkptCheckpointHandleT, SaCkptSectionsChosenT,
                                             SaTimeT, SaCkptSectionIterationHandleT *);
SaAisErrorT saCkptSectionIterationNext(SaCkptSectionIterationHandleT,
                                       SaCkptSectionDescriptorT *);
SaAisErrorT saCkptSectionIterationFinalize(SaCkptSectionIterationHandleT);
SaAisErrorT saCkptCheckpointWrite(SaCkptCheckpointHandleT, const SaCkptIOVectorElementT *,
                                  SaUint32T, SaUint32T *);
SaAisErrorT saCkptSectionOverwrite(SaCkptCheckpointHandleT, const SaCkptSectionIdT *,
                                   const void *, SaSizeT);
SaAisErrorT saCkptCheckpointRead(SaCkptCheckpointHandleT, SaCkptIOVectorElementT *, SaUint32T,
                                 SaUint32T *);
SaAisErrorT saCkptIOVectorElementDataFree(SaCkptCheckpointHandleT, void *);
SaAisErrorT saCkptCheckpointSynchronize(SaCkptCheckpointHandleT, SaTimeT);
SaAisErrorT saCkptCheckpointSynchronizeAsync(SaCkptCheckpointHandleT, SaInvocationT);

SaAisErrorT ncsCkptRegisterCkptArrivalCallback(SaCkptHandleT, ncsCkptCkptArrivalCallbackT);
SaAisErrorT ckptCheckpointReadLocal(SaCkptCheckpointHandleT, SaCkptIOVectorElementT *,
                                    SaUint32T, SaUint32T *);

#ifdef __cplusplus
}
#endif

static void on_open(SaInvocationT invocation, SaCkptCheckpointHandleT checkpoint,
                    SaAisErrorT error) {
    (void)invocation;
    (void)checkpoint;
    (void)error;
}

static void on_synchronize(SaInvocationT invocation, SaAisErrorT error) {
    (void)invocation;
    (void)error;
}

static void on_arrival(SaCkptCheckpointHandleT checkpoint, SaCkptIOVectorElementT *io_vector,
                       SaUint32T number_of_elements) {
    (void)checkpoint;
    (void)io_vector;
    (void)number_of_elements;
}

/* Callbacks of the specified types fit the header's callback types. */
SaCkptCallbacksT signatures_callbacks(void);
SaCkptCallbacksT signatures_callbacks(void) {
    SaCkptCallbacksT callbacks;
    callbacks.saCkptCheckpointOpenCallback = on_open;
    callbacks.saCkptCheckpointSynchronizeCallback = on_synchronize;
    return callbacks;
}

ncsCkptCkptArrivalCallbackT signatures_arrival(void);
ncsCkptCkptArrivalCallbackT signatures_arrival(void) {
    return on_arrival;
}

/* The section id initialisers initialise an SaCkptSectionIdT. */
SaCkptSectionIdT signatures_default_id(int generated);
SaCkptSectionIdT signatures_default_id(int generated) {
    SaCkptSectionIdT by_default = SA_CKPT_DEFAULT_SECTION_ID;
    SaCkptSectionIdT to_generate = SA_CKPT_GENERATED_SECTION_ID;
    return generated ? to_generate : by_default;
}
"#;

// ---------------------------------------------------------------------------------------------
// Running the compiler
// ---------------------------------------------------------------------------------------------

/// Warnings are errors: the headers must compile clean.
const C_WARNINGS: [&str; 4] = ["-Wall", "-Wextra", "-pedantic", "-Werror"];

fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// The C compiler. Its absence fails the test: a layout check that did not run is not a pass.
fn c_compiler() -> PathBuf {
    find_on_path("cc").unwrap_or_else(|| {
        panic!(
            "no `cc` on PATH: the C layout tests compile include/*.h and cannot check the \
             headers against the Rust types without a C compiler; install one (e.g. gcc)"
        )
    })
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `command`, fails the test with its output unless it succeeds, and returns its stdout.
fn run(command: &mut Command) -> String {
    let shown = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .map(OsStr::to_string_lossy)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {shown}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{shown} failed ({}):\n{}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let name = format!(
            "ckpt-capi-c-layout-{tag}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir(&path).unwrap_or_else(|error| panic!("create {}: {error}", path.display()));
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
