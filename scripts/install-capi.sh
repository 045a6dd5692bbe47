#!/usr/bin/env bash
# Builds greenfd's libvpoll-compatible C library (crates/vpoll-capi) and installs it:
#   PREFIX/include/vpoll.h
#   PREFIX/lib/libvpoll.so.0   (SONAME libvpoll.so.0) and the link libvpoll.so -> libvpoll.so.0
#   PREFIX/lib/libvpoll.a
#   PREFIX/lib/pkgconfig/vpoll.pc
#   PREFIX/share/man/man3/vpoll.3, vpoll_create.3, vpoll_ctl.3, vpoll_close.3
# so that an unmodified libvpoll program builds with
#   cc prog.c $(pkg-config --cflags --libs vpoll)
# The libraries are built with the release profile and installed stripped (the shared
# library keeps its dynamic symbols, the archive loses only its debug info); --debug builds
# the dev profile instead (still stripped).
# --with-cli also builds the greenfd command and installs PREFIX/bin/greenfd and
# PREFIX/share/man/man1/greenfd.1 (and greenfd-SUBCOMMAND.1), generated from the command's
# own argument definitions.
# Honours CARGO_TARGET_DIR, CARGO and STRIP like any cargo/make invocation.
set -euo pipefail
# No failure is silent: whatever command stops the script is named, with its line.
trap 'status=$?; echo "install-capi: line $LINENO: \`$BASH_COMMAND\` failed (status $status)" >&2; exit "$status"' ERR

die() {
  echo "install-capi: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 --prefix DIR [--debug] [--with-cli]" >&2
  exit 2
}

prefix=""
profile_args=(--release)
with_cli=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix)
      [ $# -ge 2 ] || usage
      prefix=$2
      shift 2
      ;;
    --prefix=*)
      prefix=${1#--prefix=}
      shift
      ;;
    --release)
      profile_args=(--release)
      shift
      ;;
    --debug)
      profile_args=()
      shift
      ;;
    --with-cli)
      with_cli=1
      shift
      ;;
    -h | --help) usage ;;
    *)
      echo "install-capi: unknown argument: $1" >&2
      usage
      ;;
  esac
done
[ -n "$prefix" ] || usage

cargo=${CARGO:-cargo}
workspace=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$prefix"
# vpoll.pc must name the prefix absolutely, whatever the caller's working directory.
prefix=$(cd "$prefix" && pwd)

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# `cargo rustc` builds the lib's three crate types at once and lets rustc print the native
# libraries the static archive needs (for Libs.private). The JSON stream names the exact
# artifacts and the build script's OUT_DIR (where vpoll.h is generated). Cargo's stderr
# goes through `tee` in the same pipeline, so the log is complete once the pipeline ends.
if ! (cd "$workspace" &&
  "$cargo" rustc -p greenfd-vpoll-capi --lib "${profile_args[@]}" \
    --message-format=json-render-diagnostics -- --print native-static-libs \
    2>&1 >"$scratch/build.json") | tee "$scratch/build.log" >&2; then
  die "cargo rustc -p greenfd-vpoll-capi failed (its output is above)"
fi

# The first match of the extended regex $2 in a line of file $1 that also matches the
# regexes $3 and $4 (when given); empty if there is none. One awk over the file, no pipeline:
# nothing to fail on "no match" or on a reader that stops early.
first_match() {
  RE=$2 SEL1=${3:-} SEL2=${4:-} awk '
    (ENVIRON["SEL1"] == "" || $0 ~ ENVIRON["SEL1"]) &&
    (ENVIRON["SEL2"] == "" || $0 ~ ENVIRON["SEL2"]) &&
    match($0, ENVIRON["RE"]) { print substr($0, RSTART, RLENGTH); exit }
  ' "$1"
}
# The JSON lines about this crate (its artifacts and its build script's run).
capi='"package_id":"[^"]*greenfd-vpoll-capi'
json=$scratch/build.json

so=$(first_match "$json" '"[^"]*/libvpoll\.so"' "$capi")
so=${so//\"/}
archive=$(first_match "$json" '"[^"]*/libvpoll\.a"' "$capi")
archive=${archive//\"/}
out_dir=$(first_match "$json" '"out_dir":"[^"]*"' "$capi" '"reason":"build-script-executed"')
out_dir=${out_dir#\"out_dir\":\"}
out_dir=${out_dir%\"}
version=$(first_match "$json" 'greenfd-vpoll-capi@[0-9][^"]*"' "$capi")
version=${version#*@}
version=${version%\"}
header=${out_dir:+$out_dir/vpoll.h}
for f in "$so" "$archive" "$header"; do
  if [ -z "$f" ] || [ ! -f "$f" ]; then
    die "build did not produce an expected artifact (${f:-unnamed}; libvpoll.so '$so', libvpoll.a '$archive', OUT_DIR '$out_dir')"
  fi
done
[ -n "$version" ] || version=0.0.0

# What a program linking libvpoll.a statically must add; rustc prints it for the staticlib
# (cargo replays the note when the crate is fresh); a fallback in case it is absent.
static_libs=$(first_match "$scratch/build.log" 'native-static-libs: .*')
static_libs=${static_libs#native-static-libs: }
[ -n "$static_libs" ] || static_libs="-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"

strip=${STRIP:-strip}
install -d "$prefix/include" "$prefix/lib/pkgconfig" "$prefix/share/man/man3"
install -m 0644 "$header" "$prefix/include/vpoll.h"
install -m 0755 "$so" "$prefix/lib/libvpoll.so.0"
# Symbols other programs need (the dynamic table) stay; debug info and the static symbol
# table go (the unstripped library is 8.5 MB, almost all DWARF).
"$strip" --strip-unneeded "$prefix/lib/libvpoll.so.0"
ln -sfn libvpoll.so.0 "$prefix/lib/libvpoll.so"
install -m 0644 "$archive" "$prefix/lib/libvpoll.a"
# Only debug info: the archive's symbol table is what the linker resolves against.
"$strip" --strip-debug "$prefix/lib/libvpoll.a"
for page in vpoll vpoll_create vpoll_ctl vpoll_close; do
  install -m 0644 "$workspace/crates/vpoll-capi/man/$page.3" "$prefix/share/man/man3/$page.3"
done

if [ "$with_cli" = 1 ]; then
  (cd "$workspace" &&
    "$cargo" build -p greenfd --bin greenfd "${profile_args[@]}" \
      --message-format=json-render-diagnostics) >"$scratch/cli.json" ||
    die "cargo build -p greenfd failed (its output is above)"
  cli=$(first_match "$scratch/cli.json" '"executable":"[^"]*/greenfd"')
  cli=${cli#\"executable\":\"}
  cli=${cli%\"}
  if [ -z "$cli" ] || [ ! -x "$cli" ]; then
    die "the greenfd build produced no executable"
  fi
  install -d "$prefix/bin" "$prefix/share/man/man1"
  install -m 0755 "$cli" "$prefix/bin/greenfd"
  "$strip" --strip-unneeded "$prefix/bin/greenfd"
  # The pages come from the command's clap definition, so they always match the binary:
  # greenfd.1 and one greenfd-SUBCOMMAND.1 per subcommand.
  "$prefix/bin/greenfd" manpage --dir "$prefix/share/man/man1"
fi
cat >"$prefix/lib/pkgconfig/vpoll.pc" <<EOF
prefix=$prefix
exec_prefix=\${prefix}
libdir=\${exec_prefix}/lib
includedir=\${prefix}/include
# System libraries libvpoll.a needs: cc prog.c libvpoll.a \$(pkg-config --variable=libs_private vpoll)
libs_private=$static_libs

Name: vpoll
Description: generate synthetic events for poll/select/ppoll/pselect/epoll (greenfd, libvpoll-compatible)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lvpoll
Libs.private: \${libs_private}
EOF

echo "install-capi: installed vpoll $version under $prefix"
