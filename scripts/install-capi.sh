#!/usr/bin/env bash
# Installs libkcoro, the kcoro C API, like a C library: headers into PREFIX/include,
# libkcoro.so and libkcoro.a into PREFIX/lib, and PREFIX/lib/pkgconfig/kcoro.pc, so that
#   cc prog.c $(pkg-config --cflags --libs kcoro)
# builds a program (with PKG_CONFIG_PATH=PREFIX/lib/pkgconfig for a non-system prefix).
# Usage: scripts/install-capi.sh PREFIX
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 PREFIX" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
mkdir -p "$1"
prefix=$(cd "$1" && pwd)
target=${CARGO_TARGET_DIR:-$PWD/target}

cargo build -q --release -p kcoro-capi

install -d "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 include/kcoro.h include/kcoro_abi.h include/kcoro_core.h include/kcoro_sched.h \
  include/kcoro_zcopy.h include/kcoro_port.h include/kcoro_bench.h "$prefix/include/"
install -m 755 "$target/release/libkcoro_capi.so" "$prefix/lib/libkcoro.so"
install -m 644 "$target/release/libkcoro_capi.a" "$prefix/lib/libkcoro.a"

# The rpath lets programs built against a private prefix run without LD_LIBRARY_PATH.
# Libs.private: what the static library needs from libc (Rust's std).
cat >"$prefix/lib/pkgconfig/kcoro.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: kcoro
Description: kcoro C API (ABI 0.2) on the Rust kcoro runtime
Version: 0.2.0
Cflags: -I\${includedir}
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lkcoro -pthread
Libs.private: -ldl -lm -lrt
PC
echo "installed libkcoro into $prefix (headers, libkcoro.so, libkcoro.a, lib/pkgconfig/kcoro.pc)"
