#!/bin/sh
# Builds libSaCkpt (cargo build --release -p ckpt-capi) and installs it with its headers and a
# pkg-config file:
#
#   PREFIX/lib/libSaCkpt.so.1            the shared library (SONAME libSaCkpt.so.1)
#   PREFIX/lib/libSaCkpt.so              -> libSaCkpt.so.1, for -lSaCkpt
#   PREFIX/lib/libSaCkpt.a               the static library
#   PREFIX/lib/pkgconfig/SaCkpt.pc
#   PREFIX/include/saAis.h, saCkpt.h, opensaf/cpsv_papi.h, ckpt/ckpt_ext.h
#
# Usage: PREFIX=/usr/local ./agent/capi/install.sh
#
# Environment:
#   PREFIX       install prefix (default /usr/local)
#   LIBDIR       library directory (default $PREFIX/lib)
#   INCLUDEDIR   header directory (default $PREFIX/include)
#   DESTDIR      staging root prepended to every installed path (the .pc file keeps PREFIX)
#   CARGO        the cargo to run (default cargo); CARGO_BUILD_JOBS is honoured by cargo
#   SACKPT_LIB_DIR  a directory that already holds libSaCkpt.so and libSaCkpt.a: install those
#                   instead of building (the tests use the libraries of their own build)
set -eu

PREFIX=${PREFIX:-/usr/local}
LIBDIR=${LIBDIR:-$PREFIX/lib}
INCLUDEDIR=${INCLUDEDIR:-$PREFIX/include}
DESTDIR=${DESTDIR:-}

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

if [ -n "${SACKPT_LIB_DIR:-}" ]; then
    built=$SACKPT_LIB_DIR
else
    (cd "$root" && "${CARGO:-cargo}" build --release -p ckpt-capi)
    built=${CARGO_TARGET_DIR:-$root/target}/release
fi
for f in libSaCkpt.so libSaCkpt.a; do
    if [ ! -f "$built/$f" ]; then
        echo "install.sh: $built/$f is missing" >&2
        exit 1
    fi
done

# The workspace version ([workspace.package] version = "x.y.z").
version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml" | head -n 1)
version=${version:-0.0.0}

lib=$DESTDIR$LIBDIR
inc=$DESTDIR$INCLUDEDIR
install -d "$lib" "$lib/pkgconfig" "$inc" "$inc/opensaf" "$inc/ckpt"

install -m 0755 "$built/libSaCkpt.so" "$lib/libSaCkpt.so.1"
ln -sf libSaCkpt.so.1 "$lib/libSaCkpt.so"
install -m 0644 "$built/libSaCkpt.a" "$lib/libSaCkpt.a"

install -m 0644 "$here/include/saAis.h" "$here/include/saCkpt.h" "$inc/"
install -m 0644 "$here/include/opensaf/cpsv_papi.h" "$inc/opensaf/"
install -m 0644 "$here/include/ckpt/ckpt_ext.h" "$inc/ckpt/"

# Libs.private: what the Rust standard library inside libSaCkpt.a needs from the system
# (rustc --print native-static-libs on Linux/glibc).
cat >"$lib/pkgconfig/SaCkpt.pc" <<EOF
prefix=$PREFIX
libdir=$LIBDIR
includedir=$INCLUDEDIR

Name: SaCkpt
Description: SA Forum AIS Checkpoint Service (SAI-AIS-CKPT-B.02.02) from ckpt
URL: https://example.invalid/ckpt
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lSaCkpt
Libs.private: -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
EOF

echo "installed libSaCkpt $version under ${DESTDIR}$PREFIX"
