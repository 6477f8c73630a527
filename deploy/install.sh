#!/usr/bin/env bash
# Installs Vigil on a Debian or Ubuntu gateway (x86-64 or ARM64, Jetson included) from an offline
# bundle, under a dedicated system user, supervised by a hardened systemd unit.
#
#   install.sh --bundle vigil-<version>-linux-<arch>.tar.gz   offline: uses no network at all
#   ./install.sh                  from inside an unpacked bundle: installs that bundle
#   deploy/install.sh             from a source checkout: builds a bundle first (needs node, npm
#                                 and the npm registry), then installs it
#   install.sh --rollback         makes the previously installed version current again
#
# Options:
#   --bundle FILE|DIR  the bundle archive (or an unpacked bundle folder)
#   --config FILE      the config to install as /etc/vigil/vigil.yaml when none exists yet
#                      (default: the bundle's deploy/config/gateway.yaml)
#   --prefix DIR       where versions are kept (default /opt/vigil): DIR/<version>, DIR/current
#   --root DIR         install into this root file system (an image, a chroot) instead of /;
#                      nothing is started
#   --no-start         install and enable the unit, but do not (re)start it
#   --force            replace an installed copy of the same version that differs from the bundle
#
# What goes where: DIR/<version> (read-only code, root-owned) with DIR/current pointing at the
# one in use and DIR/previous at the one before it; /usr/local/bin/vigil; /etc/vigil/vigil.yaml
# and /etc/vigil/secrets.env (never overwritten; 0640 root:vigil); /var/lib/vigil (data, 0750
# vigil); /etc/systemd/system/vigil.service (replaced on each install: local changes belong in
# /etc/systemd/system/vigil.service.d/*.conf). Running it again changes nothing that is in place.
set -euo pipefail

die() {
  echo "install.sh: error: $*" >&2
  exit 1
}
say() { echo "install.sh: $*"; }

bundle=
config=
prefix=/opt/vigil
root=
start=1
force=0
rollback=0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

while [ $# -gt 0 ]; do
  case $1 in
    --bundle) bundle=${2:?--bundle needs a file}; shift 2 ;;
    --config) config=${2:?--config needs a file}; shift 2 ;;
    --prefix) prefix=${2:?--prefix needs a folder}; shift 2 ;;
    --root) root=${2:?--root needs a folder}; shift 2 ;;
    --no-start) start=0; shift ;;
    --force) force=1; shift ;;
    --rollback) rollback=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (try --help)" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "run it as root (sudo $0 ...): it creates a system user and installs a service"
case $prefix in /*) ;; *) die "--prefix must be an absolute path (got $prefix)" ;; esac
prefix=${prefix%/}
if [ -n "$root" ]; then
  [ -d "$root" ] || die "--root $root is not a folder"
  root=$(cd "$root" && pwd)
  if [ "$root" = / ]; then root=; fi
fi
export PATH=$PATH:/usr/sbin:/sbin

# systemd is managing this machine (sd_booted) and we are not installing into another root.
systemd_running() {
  [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

# The CPU an ELF file is built for, from its e_machine field (od is in coreutils; no readelf needed).
elf_arch() {
  local machine
  machine=$(od -An -t x2 -j 18 -N 2 "$1" 2>/dev/null | tr -d ' ')
  case $machine in
    003e) echo x64 ;;
    00b7) echo arm64 ;;
    *) echo "unknown($machine)" ;;
  esac
}

# The glibc release of the target root, read from libc.so.6 itself (works for --root too).
glibc_version() {
  local f
  for f in "$root"/lib/*-linux-gnu/libc.so.6 "$root"/usr/lib/*-linux-gnu/libc.so.6 "$root"/lib64/libc.so.6; do
    [ -f "$f" ] || continue
    grep -aoE 'release version [0-9]+\.[0-9]+' "$f" | head -n 1 | awk '{print $3}'
    return 0
  done
}

# version_ge A B: A >= B for dotted numbers.
version_ge() {
  [ "$(printf '%s\n%s\n' "$1" "$2" | sort -t. -k1,1n -k2,2n -k3,3n | head -n 1)" = "$2" ]
}

# Moves the symlink $1 to point at $2 atomically (a reader sees the old or the new target).
relink() {
  ln -sfn "$2" "$1.new"
  mv -Tf "$1.new" "$1"
}

restart_hint() {
  echo "  start it now:   systemctl restart vigil && journalctl -u vigil -f"
}

if [ "$rollback" = 1 ]; then
  dest=$root$prefix
  [ -L "$dest/previous" ] || die "no previous version recorded in $dest/previous: nothing to roll back to"
  prev=$(readlink "$dest/previous")
  cur=$(readlink "$dest/current" 2>/dev/null || true)
  [ -d "$dest/$prev" ] || die "the previous version $dest/$prev is gone"
  relink "$dest/current" "$prev"
  [ -n "$cur" ] && relink "$dest/previous" "$cur"
  say "current is now $prev (was ${cur:-none})"
  if systemd_running && [ "$start" = 1 ]; then
    systemctl restart vigil.service
    say "vigil.service restarted on $prev"
  else
    restart_hint
  fi
  exit 0
fi

# --- Where the bundle comes from -------------------------------------------------------------
cleanup_dirs=()
cleanup() {
  local d
  for d in "${cleanup_dirs[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

if [ -z "$bundle" ]; then
  if [ -f "$here/MANIFEST" ] && [ -d "$here/app" ]; then
    bundle=$here # run from inside an unpacked bundle
  elif [ -f "$here/bundle/build.sh" ] && [ -f "$here/../package.json" ]; then
    say "no --bundle given: building one from the source checkout at $(cd "$here/.." && pwd)"
    built=$(mktemp -d "${TMPDIR:-/tmp}/vigil-install-XXXXXX")
    cleanup_dirs+=("$built")
    bash "$here/bundle/build.sh" --out "$built/vigil.tar.gz" >&2 || die "building the bundle failed (see above)"
    bundle=$built/vigil.tar.gz
  else
    die "no bundle: pass --bundle vigil-<version>-linux-<arch>.tar.gz"
  fi
fi
[ -e "$bundle" ] || die "bundle $bundle not found"

# MANIFEST and SHA256SUMS first (the archive stores them ahead of everything else), so that a
# bundle that does not fit is refused, and an installed one recognised, without unpacking it.
meta=$(mktemp -d "${TMPDIR:-/tmp}/vigil-meta-XXXXXX")
cleanup_dirs+=("$meta")
if [ -d "$bundle" ]; then
  cp "$bundle/MANIFEST" "$bundle/SHA256SUMS" "$meta/" 2>/dev/null || true
else
  for f in MANIFEST SHA256SUMS; do
    tar -xzf "$bundle" -O --wildcards --occurrence=1 "*/$f" >"$meta/$f" 2>/dev/null || rm -f "$meta/$f"
  done
fi
if [ ! -s "$meta/MANIFEST" ] || [ ! -s "$meta/SHA256SUMS" ]; then
  die "$bundle is not a Vigil bundle (no MANIFEST or SHA256SUMS in it); is the file complete?"
fi

manifest() { sed -n "s/^$1=//p" "$meta/MANIFEST" | head -n 1; }
version=$(manifest VIGIL_VERSION)
bundle_arch=$(manifest VIGIL_ARCH)
glibc_min=$(manifest GLIBC_MIN)
[[ $version =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]*$ ]] || die "the bundle's MANIFEST has no usable VIGIL_VERSION ('$version')"

# --- Checks before anything on the system changes --------------------------------------------
probe=$root/usr/bin/env
[ -f "$probe" ] || probe=$root/bin/env
target_arch=$(elf_arch "$probe")
[ "$target_arch" = "$bundle_arch" ] ||
  die "this bundle is for $bundle_arch but $([ -n "$root" ] && echo "the root $root" || echo 'this machine') is $target_arch: use vigil-$version-linux-$target_arch.tar.gz"
have_glibc=$(glibc_version || true)
if [ -n "$have_glibc" ] && [ -n "$glibc_min" ] && [ "$glibc_min" != unknown ]; then
  version_ge "$have_glibc" "$glibc_min" ||
    die "this system has glibc $have_glibc but the bundle needs $glibc_min or newer: build the bundle on a distribution no newer than this one"
fi
if [ -z "$root" ] && command -v node >/dev/null 2>&1; then
  say "note: the host's node ($(node --version 2>/dev/null || echo '?')) is not used; Vigil runs on the Node.js $(manifest NODE_VERSION) it brings"
fi
dest=$root$prefix/$version
unpack=1
if [ -d "$dest" ] && cmp -s "$dest/SHA256SUMS" "$meta/SHA256SUMS"; then
  unpack=0
elif [ -d "$dest" ] && [ "$force" = 0 ]; then
  die "$prefix/$version is installed but differs from this bundle (another build of the same version): --force replaces it"
fi

# --- Unpack and verify ------------------------------------------------------------------------
if [ "$unpack" = 1 ]; then
  mkdir -p "$root$prefix"
  chmod 0755 "$root$prefix"
  # Next to its final place, so that moving it there is one rename on the same file system.
  stage=$(mktemp -d "$root$prefix/.install-XXXXXX")
  cleanup_dirs+=("$stage")
  if [ -d "$bundle" ]; then
    cp -a "$bundle/." "$stage/"
  else
    say "unpacking $(basename "$bundle")"
    tar -xzf "$bundle" -C "$stage" --no-same-owner --strip-components=1 ||
      die "cannot unpack $bundle: is it a complete vigil-<version>-linux-<arch>.tar.gz?"
  fi
  if ! cmp -s "$stage/MANIFEST" "$meta/MANIFEST" || ! cmp -s "$stage/SHA256SUMS" "$meta/SHA256SUMS"; then
    die "$bundle holds more than one MANIFEST or SHA256SUMS: not a bundle built by deploy/bundle/build.sh"
  fi
  # Every file as it was built: a copy cut short or damaged on the way is refused.
  sha_log=$(cd "$stage" && sha256sum --check --quiet --strict SHA256SUMS 2>&1) ||
    die "the bundle is damaged, copy it again: $(echo "$sha_log" | head -n 3 | tr '\n' ' ')"
fi

# --- The user -------------------------------------------------------------------------------
in_file() { grep -q "^$1:" "$root/etc/$2" 2>/dev/null; }
root_opt=()
[ -n "$root" ] && root_opt=(--root "$root")
if ! in_file vigil group; then
  groupadd "${root_opt[@]}" --system vigil
  say "created group vigil"
fi
nologin=/usr/sbin/nologin
[ -x "$root$nologin" ] || nologin=/sbin/nologin
[ -x "$root$nologin" ] || nologin=/bin/false
# dialout: serial ports; video: cameras (and Jetson's GPU devices); render: /dev/dri GPU nodes.
groups=()
for g in dialout video render; do
  in_file "$g" group && groups+=("$g")
done
groups_csv=$(IFS=,; echo "${groups[*]}")
if ! in_file vigil passwd; then
  useradd "${root_opt[@]}" --system --gid vigil ${groups_csv:+--groups "$groups_csv"} \
    --home-dir /var/lib/vigil --no-create-home --shell "$nologin" --comment 'Vigil edge inference runtime' vigil
  say "created system user vigil (groups: vigil${groups_csv:+,$groups_csv})"
elif [ -n "$groups_csv" ]; then
  usermod "${root_opt[@]}" --append --groups "$groups_csv" vigil
fi
uid=$(awk -F: '$1 == "vigil" { print $3 }' "$root/etc/passwd")
gid=$(awk -F: '$1 == "vigil" { print $3 }' "$root/etc/group")

# --- The code ------------------------------------------------------------------------------
if [ "$unpack" = 0 ]; then
  say "$prefix/$version is already installed and identical: kept"
else
  chown -R 0:0 "$stage"
  chmod -R u+rwX,go+rX,go-w "$stage"
  if [ -d "$dest" ]; then
    mv -T "$dest" "$dest.replaced"
    cleanup_dirs+=("$dest.replaced")
  fi
  mv -T "$stage" "$dest"
  say "installed $prefix/$version ($bundle_arch, Node.js $(manifest NODE_VERSION))"
fi

# --- Config, secrets, data ------------------------------------------------------------------
install -d -m 0755 -o 0 -g 0 "$root/etc/vigil"
if [ -e "$root/etc/vigil/vigil.yaml" ]; then
  say "/etc/vigil/vigil.yaml exists: kept (only its owner and mode are set to root:vigil 0640)"
  # It may hold passwords: an operator's copy made 0644 must not stay readable by every user.
  chown 0:"$gid" "$root/etc/vigil/vigil.yaml"
  chmod 0640 "$root/etc/vigil/vigil.yaml"
else
  if [ -n "$config" ]; then
    [ -f "$config" ] || die "config $config not found"
    install -m 0640 -o 0 -g "$gid" "$config" "$root/etc/vigil/vigil.yaml"
    say "installed /etc/vigil/vigil.yaml from $config"
  else
    # The default names its model packages under /opt/vigil/current: follow --prefix.
    sed "s#/opt/vigil/#$prefix/#g" "$dest/app/deploy/config/gateway.yaml" >"$meta/vigil.yaml"
    install -m 0640 -o 0 -g "$gid" "$meta/vigil.yaml" "$root/etc/vigil/vigil.yaml"
    say "installed /etc/vigil/vigil.yaml (from deploy/config/gateway.yaml): edit it for this gateway"
  fi
fi
if [ ! -e "$root/etc/vigil/secrets.env" ]; then
  umask_old=$(umask)
  umask 0027
  cat >"$root/etc/vigil/secrets.env" <<'SECRETS'
# Secrets for Vigil, read by systemd (EnvironmentFile=) and never logged. One NAME=value a line.
# Readable by root and the vigil group only (0640 root:vigil); keep it that way.
#VIGIL_MQTT_PASSWORD=
#VIGIL_UPSTREAM_PASSWORD=
#MLFLOW_TRACKING_PASSWORD=
SECRETS
  umask "$umask_old"
  say "created /etc/vigil/secrets.env (0640 root:vigil) for passwords"
fi
# Whatever it holds, it must not be readable by others.
chown 0:"$gid" "$root/etc/vigil/secrets.env"
chmod 0640 "$root/etc/vigil/secrets.env"
# The ops token that promote, rollback and every other state-changing request must carry
# (http.tokenFile in the default config); made once, from the kernel's random source.
if [ ! -e "$root/etc/vigil/ops-token" ]; then
  umask_old=$(umask)
  umask 0027
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/vigil/ops-token"
  echo >>"$root/etc/vigil/ops-token"
  umask "$umask_old"
  say "created /etc/vigil/ops-token (0640 root:vigil): the bearer token for the ops HTTP commands"
fi
chown 0:"$gid" "$root/etc/vigil/ops-token"
chmod 0640 "$root/etc/vigil/ops-token"
install -d -m 0750 -o "$uid" -g "$gid" "$root/var/lib/vigil"

# --- Make it current, then validate the config with it ----------------------------------------
# The config names model packages under /opt/vigil/current, so it is checked once current points
# at the new version; an upgrade whose code refuses the config puts the old version back.
old=$(readlink "$root$prefix/current" 2>/dev/null || true)
if [ "$old" != "$version" ]; then
  relink "$root$prefix/current" "$version" # relative: valid inside the root and outside it
fi
undo_current() {
  if [ -n "$old" ] && [ "$old" != "$version" ]; then relink "$root$prefix/current" "$old"; fi
  if [ -z "$old" ]; then rm -f "$root$prefix/current"; fi
}
can_run=1
if [ -n "$root" ]; then
  { [ "$(elf_arch "$(command -v env)")" = "$target_arch" ] && command -v chroot >/dev/null 2>&1; } || can_run=0
fi
if [ "$can_run" = 1 ]; then
  run_in_target() {
    if [ -n "$root" ]; then chroot "$root" "$@"; else "$@"; fi
  }
  # As the service will run it: the vigil user, none of this shell's environment.
  check_out=$(run_in_target env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    runuser -u vigil -- "$prefix/$version/bin/vigil" config check /etc/vigil/vigil.yaml 2>&1) || {
    echo "$check_out" >&2
    undo_current
    die "/etc/vigil/vigil.yaml does not pass 'vigil config check' with $version (above); $prefix/current was left as it was (${old:-none}). Fix the config and run install.sh again"
  }
  say "/etc/vigil/vigil.yaml passes 'vigil config check' with $version"
else
  say "note: the config was not checked (the root $root runs another architecture); check it on the gateway with: vigil config check /etc/vigil/vigil.yaml"
fi
if [ "$old" != "$version" ]; then
  [ -n "$old" ] && [ -d "$root$prefix/$old" ] && relink "$root$prefix/previous" "$old"
  say "$prefix/current -> $version${old:+ (previous: $old; install.sh --rollback returns to it)}"
fi
# Older versions go: a gateway upgraded for years keeps only current and previous on its disk.
keep_previous=$(readlink "$root$prefix/previous" 2>/dev/null || true)
for d in "$root$prefix"/*/; do
  d=${d%/}
  name=$(basename "$d")
  if [ -L "$d" ] || [ ! -f "$d/MANIFEST" ] || [ "$name" = "$version" ] || [ "$name" = "$keep_previous" ]; then
    continue
  fi
  rm -rf --one-file-system "$d"
  say "removed the old version $name (only current and previous are kept)"
done
install -d -m 0755 "$root/usr/local/bin"
relink "$root/usr/local/bin/vigil" "$prefix/current/bin/vigil"

# --- The service -----------------------------------------------------------------------------
# vigil.service and the units of its restart back-off (vigil-restart.timer and .service).
units_src=$dest/app/deploy/systemd
[ -f "$units_src/vigil.service" ] || die "the bundle has no deploy/systemd/vigil.service"
install -d -m 0755 "$root/etc/systemd/system"
unit_changed=0
for unit in "$units_src"/*.service "$units_src"/*.timer; do
  target=$root/etc/systemd/system/$(basename "$unit")
  sed "s#/opt/vigil/#$prefix/#g" "$unit" >"$target.new"
  chmod 0644 "$target.new"
  cmp -s "$target.new" "$target" || unit_changed=1
  mv -f "$target.new" "$target"
done

if systemd_running; then
  [ "$unit_changed" = 1 ] && systemctl daemon-reload
  systemctl enable --quiet vigil.service
  if [ "$start" = 1 ] && [ "$old" = "$version" ] && [ "$unpack" = 0 ] && [ "$unit_changed" = 0 ] &&
    systemctl is-active --quiet vigil.service; then
    say "vigil.service already runs $version with these units: not restarted"
  elif [ "$start" = 1 ]; then
    systemctl restart vigil.service
    say "vigil.service enabled and (re)started; follow it with: journalctl -u vigil -f"
  else
    say "vigil.service enabled, not started (--no-start)"
    restart_hint
  fi
elif command -v systemctl >/dev/null 2>&1 && { [ -e "$root/lib/systemd/systemd" ] || [ -e "$root/usr/lib/systemd/systemd" ]; }; then
  # Enabling is a file operation: it works in an image or chroot and takes effect at boot.
  systemctl --root="${root:-/}" enable --quiet vigil.service
  say "vigil.service enabled; systemd is not running here, so it starts at the next boot with systemd"
  say "to run it now without systemd: runuser -u vigil -- /usr/local/bin/vigil run --config /etc/vigil/vigil.yaml"
else
  say "systemd is not installed here: the unit is at /etc/systemd/system/vigil.service for a systemd system"
  say "to run it now: runuser -u vigil -- /usr/local/bin/vigil run --config /etc/vigil/vigil.yaml"
fi
say "done: Vigil $version in $prefix/current; config /etc/vigil/vigil.yaml; data /var/lib/vigil"
