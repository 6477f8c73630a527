#!/usr/bin/env bash
# The ARM64 smoke: builds Vigil's ARM64 tree the way the offline bundle does, then runs
# test/install/arm64-smoke.mjs with the ARM64 node under qemu-aarch64-static (user-mode
# emulation, no binfmt_misc needed) and compares its answers with this machine's x86-64 run.
#
#   test/install/arm64-smoke.sh [--cpus cortex-a72,cortex-a76] [--out DIR]
#
# Prints one JSON line: {"ok", "x64", "arm64": {CPU: result}, "timings"}; exit 1 when anything
# failed to load or the answers differ. Needs qemu-user-static, debootstrap (run as root the
# first time), g++-aarch64-linux-gnu, and an up-to-date dist/ (npm run build). Everything it
# fetches (the ARM64 node from the npm registry, Debian packages from this machine's apt mirror)
# is cached in ${VIGIL_CACHE:-~/.cache/vigil}/arm64.
set -euo pipefail

die() {
  echo "arm64-smoke: $*" >&2
  exit 1
}

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cpus='cortex-a72,cortex-a76'
out=''
while (($#)); do
  case "$1" in
    --cpus) cpus="${2:?--cpus needs a comma-separated list of qemu CPU models}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

missing=()
command -v qemu-aarch64-static >/dev/null || missing+=('qemu-aarch64-static (apt-get install qemu-user-static)')
command -v debootstrap >/dev/null || missing+=('debootstrap (apt-get install debootstrap)')
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=('aarch64-linux-gnu-g++ (apt-get install g++-aarch64-linux-gnu)')
((${#missing[@]} == 0)) || die "missing: ${missing[*]}"
[[ -f "$repo/dist/runtime/engines/load.js" ]] || die "$repo/dist is missing; run npm run build first"

cache="${VIGIL_CACHE:-$HOME/.cache/vigil}/arm64"
mkdir -p "$cache"
work="$(mktemp -d "${TMPDIR:-/tmp}/vigil-arm64-smoke.XXXXXX")"
# Next to the cached root: hard links need the same file system.
views="$(mktemp -d "$cache/views.XXXXXX")"
trap 'rm -rf "$work" "$views"' EXIT
out="${out:-$work/out}"
mkdir -p "$out"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
t_all=$(now)

# 1. The ARM64 Debian root: the shared libraries the ARM64 node and modules load.
t=$(now)
root="$("$repo/test/install/arm64-root.sh")"
t_root=$(since "$t")

# 2. The ARM64 node_modules, exactly as the bundle builder makes them; kept per lockfile.
t=$(now)
key="$(cat "$repo/package.json" "$repo/package-lock.json" "$repo/.npmrc" | sha256sum | cut -c1-16)"
stage="$cache/stage-$key"
if [[ ! -f "$stage/.vigil-stage-complete" ]]; then
  rm -rf "$stage"
  mkdir -p "$stage"
  cp "$repo/package.json" "$repo/package-lock.json" "$repo/.npmrc" "$stage/"
  echo "arm64-smoke: npm ci --omit=dev --cpu=arm64 --os=linux --ignore-scripts in $stage" >&2
  (cd "$stage" && npm ci --omit=dev --cpu=arm64 --os=linux --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
  touch "$stage/.vigil-stage-complete"
fi
t_stage=$(since "$t")
t=$(now)
"$repo/deploy/bundle/natives-arm64.sh" --prune --node-dir "$stage/node" "$stage"
t_natives=$(since "$t")

# 3. The runtime and the shipped models next to them, fresh from this checkout.
rm -rf "$stage/dist" "$stage/models"
cp -r "$repo/dist" "$stage/dist"
rm -rf "$stage/dist/test"
for pkgs in "$repo"/models/*/packages; do
  model="$(basename "$(dirname "$pkgs")")"
  mkdir -p "$stage/models/$model"
  cp -r "$pkgs" "$stage/models/$model/"
done

fixtures="$repo/test/fixtures/defect-parity"
smoke="$repo/test/install/arm64-smoke.mjs"

# 4. The reference: this machine's node on this checkout's x86-64 tree.
t=$(now)
node "$smoke" --app "$repo" --fixtures "$fixtures" >"$out/x64.json" || die "the x86-64 reference run failed: $(cat "$out/x64.json")"
t_x64=$(since "$t")

# The CPU part numbers of the qemu models, for the /proc/cpuinfo below.
cpu_part() {
  case "$1" in
    cortex-a53) echo 0xd03 ;;
    cortex-a57) echo 0xd07 ;;
    cortex-a72) echo 0xd08 ;;
    cortex-a76) echo 0xd0b ;;
    neoverse-n1) echo 0xd0c ;;
    *) die "no /proc/cpuinfo description for qemu CPU '$1' (use cortex-a53, -a57, -a72, -a76 or neoverse-n1)" ;;
  esac
}

# 5. The ARM64 runs. qemu-user passes the host's /proc/cpuinfo through, and ONNX Runtime's
# cpuinfo crashes on an x86 one; each run gets a hard-linked copy of the cached root with its own
# proc/cpuinfo describing the emulated CPU (files under the -L root shadow the host's). Links to
# the root's folders would not do: realpath(3) of a path through one loops under -L.
arm64_timings=()
IFS=, read -r -a cpu_list <<<"$cpus"
for cpu in "${cpu_list[@]}"; do
  part="$(cpu_part "$cpu")"
  view="$views/$cpu"
  cp -al "$root" "$view"
  rm -rf "$view/proc"
  mkdir "$view/proc"
  ids="$(awk -F, '{ for (i = 1; i <= NF; i++) { n = split($i, r, "-"); for (c = r[1]; c <= r[n]; c++) print c } }' /sys/devices/system/cpu/possible)"
  for id in $ids; do
    printf 'processor\t: %s\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 0\n\n' "$id" "$part"
  done >"$view/proc/cpuinfo"
  t=$(now)
  qemu-aarch64-static -cpu "$cpu" -L "$view" "$stage/node/bin/node" "$smoke" \
    --app "$stage" --fixtures "$fixtures" --reference "$out/x64.json" >"$out/arm64-$cpu.json" || true
  arm64_timings+=("\"$cpu\": $(since "$t")")
  [[ -s "$out/arm64-$cpu.json" ]] || echo '{"ok":false,"error":"the ARM64 node crashed before printing its result"}' >"$out/arm64-$cpu.json"
done

timings="{\"rootS\": $t_root, \"stageS\": $t_stage, \"nativesS\": $t_natives, \"x64S\": $t_x64, \"arm64S\": {$(IFS=,; echo "${arm64_timings[*]}")}, \"totalS\": $(since "$t_all")}"
# shellcheck disable=SC2016 # a JavaScript program, not shell
node -e '
  const fs = require("node:fs");
  const [dir, cpus, timings] = process.argv.slice(1);
  const arm64 = {};
  for (const cpu of cpus.split(",")) arm64[cpu] = JSON.parse(fs.readFileSync(`${dir}/arm64-${cpu}.json`, "utf8"));
  const ok = Object.values(arm64).every((r) => r.ok === true && r.arch === "arm64");
  const x64 = JSON.parse(fs.readFileSync(`${dir}/x64.json`, "utf8"));
  process.stdout.write(JSON.stringify({ ok, x64, arm64, timings: JSON.parse(timings) }) + "\n");
  process.exitCode = ok ? 0 : 1;
' "$out" "$cpus" "$timings"
