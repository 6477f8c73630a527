#!/usr/bin/env bash
# Builds a minimal Debian root with debootstrap (--variant=minbase, plus systemd so that the
# installer's systemctl path and `systemd-analyze verify` run against the installed files) and
# keeps it as a tarball, so that the install test pays the few minutes once per suite and arch.
#
#   test/install/debootstrap-root.sh [--suite bookworm] [--arch amd64] [--mirror URL] [--cache DIR]
#
# Prints the tarball's path on stdout (progress goes to stderr). The mirror defaults to the
# first Debian mirror of the suite in this machine's apt sources; nothing else is contacted.
set -euo pipefail

suite=bookworm
arch=$(dpkg --print-architecture)
mirror=${VIGIL_DEBIAN_MIRROR:-}
cache=${VIGIL_CACHE_DIR:-${HOME}/.cache/vigil}/debootstrap
# What the root holds beyond minbase; part of the cache key, so a change rebuilds it.
include=systemd

die() {
  echo "debootstrap-root: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case $1 in
    --suite) suite=${2:?--suite needs a value}; shift 2 ;;
    --arch) arch=${2:?--arch needs a value}; shift 2 ;;
    --mirror) mirror=${2:?--mirror needs a value}; shift 2 ;;
    --cache) cache=${2:?--cache needs a value}; shift 2 ;;
    *) die "unknown option $1 (see the header of $0)" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap creates device nodes and chroots)"
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] ||
  die "debootstrap is not installed: apt-get install debootstrap"
export PATH=$PATH:/usr/sbin:/sbin

# The first URI of an apt source (one-line or deb822 format) that serves $suite itself.
mirror_from_apt() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v s="$suite" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i ~ /:\/\//) { if ($(i + 1) == s) { print $i; exit } } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822: paragraphs separated by blank lines; URIs and Suites are space-separated lists.
    awk -v s="$suite" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; ok = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/) { n = split(substr($i, 8), w, /[ \t]+/); for (j = 1; j <= n; j++) if (w[j] == s) ok = 1 }
        }
        if (ok && uris != "") { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' "$f"
  done
}

if [ -z "$mirror" ]; then
  mirror=$(mirror_from_apt | head -n 1)
  [ -n "$mirror" ] || die "no apt source for suite '$suite' found in /etc/apt; pass --mirror URL or set VIGIL_DEBIAN_MIRROR"
fi

tarball="$cache/$suite-$arch-minbase-${include//,/+}.tar.gz"
if [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.build-XXXXXX")
cleanup() {
  # debootstrap mounts /proc and /sys inside the target while it runs; never leave them behind.
  local m
  for m in "$work/root/proc" "$work/root/sys" "$work/root/dev/pts"; do
    if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

echo "debootstrap-root: building $suite/$arch from $mirror (minbase + $include), once; cached as $tarball" >&2
started=$(date +%s)
debootstrap --variant=minbase --arch="$arch" --include="$include" "$suite" "$work/root" "$mirror" >&2 ||
  die "debootstrap failed (log above; the root's debootstrap/debootstrap.log has the details)"
# Package lists and downloaded .debs are not needed by the test and would triple the tarball.
rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
tar -C "$work/root" --numeric-owner -czf "$work/root.tar.gz" .
mv "$work/root.tar.gz" "$tarball"
echo "debootstrap-root: done in $(($(date +%s) - started)) s" >&2
echo "$tarball"
