#!/usr/bin/env bash
# Removes Vigil installed by install.sh: stops and disables the service, removes the code under
# the prefix (all installed versions), the unit and /usr/local/bin/vigil. The config
# (/etc/vigil), the data (/var/lib/vigil: readings, results, alerts not yet delivered) and the
# vigil user are kept unless --purge is given.
#
#   uninstall.sh [--purge] [--prefix DIR] [--root DIR]
#
#   --purge       also delete /etc/vigil, /var/lib/vigil, the unit's drop-ins and the vigil user
#   --prefix DIR  where install.sh put the versions (default /opt/vigil)
#   --root DIR    act on this root file system (an image, a chroot) instead of /
set -euo pipefail

die() {
  echo "uninstall.sh: error: $*" >&2
  exit 1
}
say() { echo "uninstall.sh: $*"; }

purge=0
prefix=/opt/vigil
root=
while [ $# -gt 0 ]; do
  case $1 in
    --purge) purge=1; shift ;;
    --prefix) prefix=${2:?--prefix needs a folder}; shift 2 ;;
    --root) root=${2:?--root needs a folder}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (try --help)" ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "run it as root (sudo $0 ...)"
case $prefix in /*) ;; *) die "--prefix must be an absolute path (got $prefix)" ;; esac
prefix=${prefix%/}
case $prefix in
  "" | /opt | /usr | /usr/local | /var | /etc) die "refusing to delete $prefix: give the folder install.sh used, e.g. /opt/vigil" ;;
esac
if [ -n "$root" ]; then
  [ -d "$root" ] || die "--root $root is not a folder"
  root=$(cd "$root" && pwd)
  if [ "$root" = / ]; then root=; fi
fi
export PATH=$PATH:/usr/sbin:/sbin

unit=$root/etc/systemd/system/vigil.service
if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  # Stopping flushes what can be flushed within the unit's TimeoutStopSec.
  systemctl disable --now --quiet vigil.service 2>/dev/null || true
  say "vigil.service stopped and disabled"
elif [ -e "$unit" ]; then
  if command -v systemctl >/dev/null 2>&1; then
    systemctl --root="${root:-/}" disable --quiet vigil.service 2>/dev/null || true
  fi
  # Without systemctl (or if it could not), the enablement is just this link.
  rm -f "$root/etc/systemd/system/multi-user.target.wants/vigil.service"
  say "vigil.service disabled (systemd is not running here: nothing to stop)"
fi
rm -f "$unit" "$root/etc/systemd/system/vigil-restart.timer" "$root/etc/systemd/system/vigil-restart.service"
if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload
fi

link=$root/usr/local/bin/vigil
if [ -L "$link" ] && [[ $(readlink "$link") == "$prefix"/* ]]; then
  rm -f "$link"
fi
if [ -d "$root$prefix" ]; then
  # Only a folder install.sh made: a 'current' link and version folders with a MANIFEST. A
  # mistyped --prefix (/srv, /var/lib) must never be deleted wholesale.
  [ -L "$root$prefix/current" ] ||
    die "$prefix has no 'current' link: it is not a Vigil installation, refusing to delete it"
  for entry in "$root$prefix"/* "$root$prefix"/.install-*; do
    [ -e "$entry" ] || [ -L "$entry" ] || continue
    name=$(basename "$entry")
    if [ "$name" = current ] || [ "$name" = previous ] || [[ $name == .install-* ]] ||
      { [ -d "$entry" ] && [ ! -L "$entry" ] && [ -f "$entry/MANIFEST" ]; }; then
      rm -rf --one-file-system "$entry"
    else
      say "kept $prefix/$name: not made by install.sh"
    fi
  done
  rmdir "$root$prefix" 2>/dev/null || true
  say "removed Vigil from $prefix"
fi

if [ "$purge" = 1 ]; then
  rm -rf "$root/etc/vigil" "$root/var/lib/vigil" "$root/etc/systemd/system/vigil.service.d"
  root_opt=()
  [ -n "$root" ] && root_opt=(--root "$root")
  if grep -q '^vigil:' "$root/etc/passwd" 2>/dev/null; then
    userdel "${root_opt[@]}" vigil
  fi
  if grep -q '^vigil:' "$root/etc/group" 2>/dev/null; then
    groupdel "${root_opt[@]}" vigil
  fi
  say "purged /etc/vigil, /var/lib/vigil and the vigil user"
else
  say "kept /etc/vigil (config, secrets), /var/lib/vigil (data) and the vigil user; --purge deletes them"
fi
