#!/usr/bin/env bash
# Builds the offline bundle: ONE archive with everything a gateway without internet needs to run
# Vigil (the compiled runtime, its production dependencies with their native modules for the
# target architecture, the shipped models, deploy/, a Node.js binary and a launcher).
#
#   deploy/bundle/build.sh [--arch x64|arm64] [--out FILE] [--no-compile] [--cache DIR]
#
#   --arch        target CPU (default: this machine's); arm64 cross-builds the native modules
#                 with deploy/bundle/natives-arm64.sh
#   --out         the archive (default: ./vigil-<version>-linux-<arch>.tar.gz)
#   --no-compile  use dist/ as it is instead of running `npm run build` first
#   --cache       where expensive steps are kept between builds (default ~/.cache/vigil/bundle):
#                 the production node_modules per lockfile, arch and Node version; Node tarballs
#
# Runs from a source checkout with its dev dependencies installed (tsc). Network: only the npm
# registry npm is configured with, and only for what the npm cache does not hold yet (the
# lockfile's packages and the `node-linux-<arch>` package of the running Node's version). Native
# modules compile against the headers npm's `nodedir` points at (Debian: nodedir=/usr), never
# headers downloaded from elsewhere; better-sqlite3 is told to build from source for the same
# reason, and onnxruntime-node's optional CUDA download is skipped.
#
# Layout of the archive (top folder vigil-<version>-linux-<arch>/):
#   bin/vigil              launcher: the bundled node running app/dist/runtime/cli/main.js
#   node/bin/node          Node.js for the target arch (same version as the one that built it)
#   app/                   what package.json "files" ships, plus package-lock.json and node_modules/
#   install.sh uninstall.sh  copies of deploy/install.sh and deploy/uninstall.sh
#   MANIFEST               key=value: VIGIL_VERSION, VIGIL_ARCH, NODE_VERSION, GLIBC_MIN, ...
#   SHA256SUMS             sha256 of every other file (install.sh checks it)
set -euo pipefail

die() {
  echo "bundle: $*" >&2
  exit 1
}
say() { echo "bundle: $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

case $(uname -m) in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
out=
compile=1
cache=${VIGIL_CACHE_DIR:-${HOME}/.cache/vigil}/bundle

while [ $# -gt 0 ]; do
  case $1 in
    --arch) arch=${2:?--arch needs x64 or arm64}; shift 2 ;;
    --out) out=${2:?--out needs a file name}; shift 2 ;;
    --no-compile) compile=0; shift ;;
    --cache) cache=${2:?--cache needs a folder}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (try --help)" ;;
  esac
done
case $arch in
  x64 | arm64) ;;
  *) die "--arch must be x64 or arm64 (got $arch)" ;;
esac

for tool in node npm tar gzip sha256sum readelf; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed to build a bundle and is not installed"
done

started=$(date +%s)
version=$(node -p "require('$ROOT/package.json').version")
node_version=$(node -p 'process.versions.node')
node_abi=$(node -p 'process.versions.modules')
name=vigil-$version-linux-$arch
[ -n "$out" ] || out=$PWD/$name.tar.gz
case $out in /*) ;; *) out=$PWD/$out ;; esac
mkdir -p "$cache" "$(dirname "$out")"

staging=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bundle-XXXXXX")
trap 'rm -rf "$staging"' EXIT
top=$staging/$name
mkdir -p "$top/bin" "$top/node/bin" "$top/app"

# 1. The compiled runtime and what ships with it: exactly package.json's "files" (npm pack).
if [ "$compile" = 1 ]; then
  say "compiling (npm run build)"
  (cd "$ROOT" && npm run build --silent) || die "npm run build failed; fix the compile errors above"
fi
[ -f "$ROOT/dist/runtime/cli/main.js" ] || die "dist/runtime/cli/main.js is missing: run npm run build first"
say "packing what package.json \"files\" ships"
(cd "$ROOT" && npm pack --silent --pack-destination "$staging" >/dev/null 2>"$staging/pack.log") ||
  die "npm pack failed: $(cat "$staging/pack.log")"
tar -xzf "$staging/vigil-$version.tgz" -C "$top/app" --strip-components=1
rm -f "$staging/vigil-$version.tgz"
cp "$ROOT/package-lock.json" "$top/app/"
# The bench programs measure a development machine; a gateway has `vigil bench` for itself.
rm -rf "$top/app/dist/bench"

# 2. Production node_modules for the target, built once per lockfile, arch and Node ABI.
# Bump modules_recipe when the install or prune steps below change, so cached trees are rebuilt.
modules_recipe=2
key_inputs=("$ROOT/package.json" "$ROOT/package-lock.json")
[ -f "$ROOT/.npmrc" ] && key_inputs+=("$ROOT/.npmrc")
lock_key=$( (echo "recipe $modules_recipe" && cat "${key_inputs[@]}") | sha256sum | cut -c1-16)
if [ "$arch" = arm64 ] && [ -f "$ROOT/deploy/bundle/natives-arm64.sh" ]; then
  lock_key=$(cat <(echo "$lock_key") "$ROOT/deploy/bundle/natives-arm64.sh" | sha256sum | cut -c1-16)
fi
modules_cache=$cache/node_modules-$arch-node$node_version-$lock_key
if [ -d "$modules_cache/node_modules" ]; then
  say "production node_modules from the cache ($modules_cache)"
else
  say "installing production dependencies for linux-$arch (npm ci --omit=dev; once per lockfile)"
  work=$(mktemp -d "$cache/.work-XXXXXX")
  cp "$top/app/package.json" "$top/app/package-lock.json" "$work/"
  [ -f "$ROOT/.npmrc" ] && cp "$ROOT/.npmrc" "$work/"
  export ONNXRUNTIME_NODE_INSTALL=skip
  if [ "$arch" = x64 ] && [ "$(uname -m)" = x86_64 ]; then
    # better-sqlite3 would first try to download a prebuilt binary from outside the registry.
    (cd "$work" && npm_config_build_from_source=better-sqlite3 npm ci --omit=dev --prefer-offline \
      --no-audit --no-fund >"$work/npm.log" 2>&1) ||
      { rm -rf "$work"; die "npm ci failed in the staging folder; its log: $(tail -n 30 "$work/npm.log" 2>/dev/null)"; }
  elif [ "$arch" = arm64 ]; then
    natives=$ROOT/deploy/bundle/natives-arm64.sh
    [ -f "$natives" ] || { rm -rf "$work"; die "building for arm64 needs $natives (cross-compiles the native modules)"; }
    (cd "$work" && npm ci --omit=dev --cpu=arm64 --os=linux --ignore-scripts --prefer-offline \
      --no-audit --no-fund >"$work/npm.log" 2>&1) ||
      { rm -rf "$work"; die "npm ci (arm64) failed: $(tail -n 30 "$work/npm.log" 2>/dev/null)"; }
    bash "$natives" --prune --node-version "$node_version" "$work" || { rm -rf "$work"; die "natives-arm64.sh failed (its message is above)"; }
  else
    rm -rf "$work"
    die "building an x64 bundle on $(uname -m) is not supported: build it on an x86-64 machine"
  fi
  # Binaries for other platforms and compiler leftovers: about 250 MB that a gateway never loads.
  other=x64
  [ "$arch" = x64 ] && other=arm64
  ort=$work/node_modules/onnxruntime-node/bin/napi-v6
  rm -rf "$ort/darwin" "$ort/win32" "$ort/linux/$other"
  tflite_other=linux_arm64
  [ "$arch" = arm64 ] && tflite_other=linux_amd64
  rm -rf "$work/node_modules/tfjs-tflite-node/cc_deps/$tflite_other"
  for d in "$work"/node_modules/@serialport/bindings-cpp/prebuilds/*; do
    [ "$(basename "$d")" = "linux-$arch" ] || rm -rf "$d"
  done
  # Only needed to compile (better-sqlite3's SQLite sources) or on a developer's desk (protobufjs' CLI).
  rm -rf "$work/node_modules/better-sqlite3/deps" "$work/node_modules/better-sqlite3/src" \
    "$work/node_modules/protobufjs/cli"
  find "$work/node_modules" -type d \( -path '*/build/Release/obj*' -o -path '*/build/Release/.deps' \
    -o -path '*/build/Debug' \) -prune -exec rm -rf {} +
  find "$work/node_modules" -path '*/build/Release/*.a' -delete
  rm -f "$work/npm.log"
  mkdir -p "$work/ready"
  mv "$work/node_modules" "$work/ready/node_modules"
  rm -rf "$modules_cache"
  mv "$work/ready" "$modules_cache"
  rm -rf "$work"
fi
cp -a "$modules_cache/node_modules" "$top/app/node_modules"

# 3. Node.js for the target, from the registry's node-linux-<arch> package of the same version.
node_tgz=$cache/node/node-linux-$arch-$node_version.tgz
if [ ! -s "$node_tgz" ]; then
  say "fetching node-linux-$arch@$node_version (npm pack, once)"
  mkdir -p "$cache/node"
  tmp_node=$(mktemp -d "$cache/node/.fetch-XXXXXX")
  (cd "$tmp_node" && npm pack --silent "node-linux-$arch@$node_version" >/dev/null) ||
    { rm -rf "$tmp_node"; die "npm pack node-linux-$arch@$node_version failed: is the npm registry reachable?"; }
  mv "$tmp_node/node-linux-$arch-$node_version.tgz" "$node_tgz"
  rm -rf "$tmp_node"
fi
tar -xzf "$node_tgz" -C "$staging" package/bin/node package/LICENSE
mv "$staging/package/bin/node" "$top/node/bin/node"
mv "$staging/package/LICENSE" "$top/node/LICENSE"
rm -rf "$staging/package"
want_machine=X86-64
[ "$arch" = arm64 ] && want_machine=AArch64
[[ $(readelf -h "$top/node/bin/node") == *"Machine:"*"$want_machine"* ]] ||
  die "node-linux-$arch@$node_version is not an $want_machine binary"

# 4. The launcher: resolves its own location, so /opt/vigil/current/bin/vigil and a symlink to it
#    in /usr/local/bin both run the version they belong to.
cat >"$top/bin/vigil" <<'LAUNCHER'
#!/bin/sh
# Runs Vigil with the Node.js that came with it; the host's node, if any, is not used.
set -eu
here=$(dirname "$(readlink -f "$0")")
exec "$here/../node/bin/node" "$here/../app/dist/runtime/cli/main.js" "$@"
LAUNCHER
chmod 0755 "$top/bin/vigil"
cp "$ROOT/deploy/install.sh" "$ROOT/deploy/uninstall.sh" "$top/"
chmod 0755 "$top/install.sh" "$top/uninstall.sh"

# 5. The manifest. GLIBC_MIN is the newest glibc symbol version any binary in the bundle needs,
#    so install.sh can refuse a host too old for it instead of failing at the first require().
glibc_min=$( (find "$top" -type f \( -name '*.node' -o -name '*.so' -o -name '*.so.*' -o -path '*/node/bin/node' \) \
  -exec readelf --dyn-syms --wide {} + 2>/dev/null || true) | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' |
  sort -t. -k1,1n -k2,2n -k3,3n -u | tail -n 1)
commit=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$commit" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1)" ]; then
  commit=$commit-dirty
fi
cat >"$top/MANIFEST" <<MANIFEST
VIGIL_VERSION=$version
VIGIL_ARCH=$arch
NODE_VERSION=$node_version
NODE_ABI=$node_abi
GLIBC_MIN=${glibc_min:-unknown}
SOURCE_COMMIT=$commit
BUILT_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
MANIFEST
(cd "$top" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum) \
  >"$staging/SHA256SUMS"
mv "$staging/SHA256SUMS" "$top/SHA256SUMS"

# 6. One archive, owned by root whatever built it.
say "writing $out"
tar -C "$staging" --owner=0 --group=0 --numeric-owner --sort=name -cf - "$name" | gzip -6 >"$out.part"
mv "$out.part" "$out"
size=$(du -h "$out" | cut -f1)
say "$out: $size, $(wc -l <"$top/SHA256SUMS") files, node $node_version, glibc >= ${glibc_min:-?}, in $(($(date +%s) - started)) s"
echo "$out"
