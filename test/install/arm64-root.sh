#!/usr/bin/env bash
# Prints the path of an ARM64 Debian root for qemu-aarch64-static -L: the aarch64 glibc,
# libstdc++ and loader that the ARM64 node and its native modules link against.
#
#   test/install/arm64-root.sh [--suite bookworm] [--mirror URL]
#
# Only debootstrap's first stage runs (--foreign): it unpacks the packages and executes nothing,
# so no binfmt_misc registration is needed. The root is cached as
# ${VIGIL_CACHE:-~/.cache/vigil}/arm64/root-SUITE-arm64.tar.gz (and kept extracted next to it).
# The mirror defaults to the one this machine's apt sources use for SUITE.
set -euo pipefail

die() {
  echo "arm64-root: $*" >&2
  exit 1
}

suite=bookworm
mirror=''
while (($#)); do
  case "$1" in
    --suite) suite="${2:?--suite needs a Debian suite}"; shift 2 ;;
    --mirror) mirror="${2:?--mirror needs a URL}"; shift 2 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

cache="${VIGIL_CACHE:-$HOME/.cache/vigil}/arm64"
root="$cache/root-$suite-arm64"
tarball="$root.tar.gz"
if [[ -f "$root/.vigil-root-complete" ]]; then
  echo "$root"
  exit 0
fi
mkdir -p "$cache"

# The first URI serving SUITE's main component in this machine's apt sources (deb822 .sources
# files and one-line .list files); Enabled: no and disabled files are skipped.
apt_mirror() {
  local dir=/etc/apt/sources.list.d
  {
    shopt -s nullglob
    for f in "$dir"/*.sources; do
      awk -v suite="$suite" '
        function flush() {
          if (enabled && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && (" " comps " ") ~ / main /)
            { split(uris, u, " "); print u[1] }
          types = ""; uris = ""; suites = ""; comps = ""; enabled = 1
        }
        BEGIN { enabled = 1 }
        /^[ \t]*$/ { flush(); next }
        /^#/ { next }
        { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "") }
        key == "types" { types = $0 } key == "uris" { uris = $0 } key == "suites" { suites = $0 }
        key == "components" { comps = $0 } key == "enabled" { enabled = (tolower($0) != "no") }
        END { flush() }' "$f"
    done
    for f in /etc/apt/sources.list "$dir"/*.list; do
      [[ -f "$f" ]] || continue
      awk -v suite="$suite" '
        $1 == "deb" {
          i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
          if ($(i + 1) == suite) for (j = i + 2; j <= NF; j++) if ($j == "main") { print $i; break }
        }' "$f"
    done
  } | head -n1
}

if [[ ! -f "$tarball" ]]; then
  command -v debootstrap >/dev/null || die "debootstrap is missing; install it: apt-get install debootstrap"
  ((EUID == 0)) || die "debootstrap must run as root to unpack a root ($tarball is not cached yet)"
  [[ -n "$mirror" ]] || mirror="$(apt_mirror)"
  [[ -n "$mirror" ]] || die "no Debian mirror for '$suite' in /etc/apt/sources.list(.d); pass --mirror URL"
  work="$(mktemp -d "$cache/root-build.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "arm64-root: debootstrap (first stage) $suite arm64 from $mirror" >&2
  debootstrap --arch=arm64 --foreign --variant=minbase "$suite" "$work/root" "$mirror" >"$work/log" 2>&1 || {
    tail -n 20 "$work/log" >&2
    die "debootstrap failed (last 20 lines above)"
  }
  [[ -e "$work/root/lib/ld-linux-aarch64.so.1" ]] || die "the unpacked root has no lib/ld-linux-aarch64.so.1"
  # The .deb files are only for a second stage, which never runs here.
  tar -czf "$work/root.tar.gz" -C "$work/root" --exclude='./var/cache/apt/archives/*.deb' .
  mv "$work/root.tar.gz" "$tarball"
fi

rm -rf "$root.tmp"
mkdir -p "$root.tmp"
tar -xzf "$tarball" -C "$root.tmp"
# debootstrap makes proc a link to the host's /proc when it runs in a container; the smoke puts
# its own files under proc/, which must never reach the host's.
if [[ -L "$root.tmp/proc" ]]; then
  rm "$root.tmp/proc"
  mkdir "$root.tmp/proc"
fi
touch "$root.tmp/.vigil-root-complete"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "$root"
