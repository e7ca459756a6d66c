#!/usr/bin/env bash
# The newcomer path, checked on a fresh machine: builds a minimal Debian 12
# (bookworm) root with mmdebstrap from the host's Debian mirror, puts a clean
# clone of this repository's HEAD in it (only what is committed, none of the
# work tree's changes), and there, as root and without sudo, runs
# scripts/setup.sh, builds the workspace (all targets) and runs the README's
# first command, scripts/demo.sh (a release build, `r8s up`, a Deployment
# answering over HTTP, then everything stopped and removed); last, it checks
# that nothing was left behind: no processes, mounts, network devices,
# nftables tables or files in the demo's namespaces (looked at before they
# vanish; the image store /var/lib/r8s/images may stay), no cgroups, and the
# host's network devices and nftables tables as they were.
#
#   bash scripts/fresh-machine-check.sh      # as root; KEEP=1 keeps the root
#
# One line per step; each step's full output goes to a log in
# /var/tmp/r8s-fresh-XXXX.logs/ (kept), whose last lines are printed when the
# step fails. 20-30 minutes on 2 cores (setup.sh 1-2, the debug build 8-10,
# the demo's release build 11-18,
# more when other builds share the cores) and about 11 GB under /var/tmp while
# it runs; needs Debian's mirror and crates.io. Too slow for every CI run: run
# it when setup.sh, the scripts or the README's commands change.
#
# What the root gets from the host: the Rust toolchain, read-only (RUSTUP_HOME
# and the cargo/rustc binaries; rustup is the one thing a newcomer is assumed
# to have installed), with a writable CARGO_HOME of the root's own; the host's
# Debian apt sources, apt proxy and validity settings, /etc/resolv.conf, and the
# CA certificates it trusts beyond Debian's (a TLS-inspecting proxy's).
#
# How it stays off the host:
# - Each step in the root runs in its own private mount namespace and PID
#   namespace: its mounts (/proc, /sys, /dev, /run, the toolchain, cgroups)
#   vanish with it, and no process outlives it. The host's mounts never change.
# - The root sees, as each cgroup hierarchy, a subtree of the host's named
#   like the root (/sys/fs/cgroup/<h>/r8s-fresh-XXXX), so r8s's cgroups never
#   meet the host's own r8s ones.
# - The demo runs in an empty network namespace with only lo and a veth pair
#   (node0 192.0.2.2/24, default route via 192.0.2.1) so r8s finds a node IP:
#   r8s0, its nftables table and the pods' addresses stay in there. The steps
#   before it use the host's network (apt mirror, crates.io).
# - Before the root is removed (also on failure), nothing may be mounted under
#   it in the host's mount table (--one-file-system alone would not stop at a
#   bind mount from the same file system); then `rm -rf --one-file-system`.
set -euo pipefail
self=$(realpath "$0")

# ---- inside a step's namespaces (the script runs itself here: see in_root) ----

# The cgroup hierarchies of the host: mount points at or under /sys/fs/cgroup.
cgroup_mounts() {
  awk '$5 ~ "^/sys/fs/cgroup(/|$)" { for (i = 7; $i != "-"; i++); if ($(i + 1) ~ /^cgroup2?$/) print $5 }' /proc/self/mountinfo
}

ro_bind() {
  mkdir -p "$2"
  mount --bind "$1" "$2"
  mount -o remount,bind,ro "$2"
}

# enter ROOT NAME OFFLINE TOOLCHAIN RUSTUP_HOME CARGO_BIN CMD...: runs as PID 1
# of a new PID namespace, in a private mount namespace (and, when OFFLINE=1,
# a new network namespace); mounts what the root needs and runs CMD in it.
enter() {
  local root=$1 name=$2 offline=$3 toolchain=$4 rustup_home=$5 cargo_bin=$6
  shift 6
  if [ "$offline" = 1 ]; then
    # A default route, so r8s finds a node IP; what it carries ends at the
    # veth's other end (no dummy devices here: the kernel has no modules).
    ip link set lo up
    ip link add node0 type veth peer name void0
    ip addr add 192.0.2.2/24 dev node0
    ip link set node0 up
    ip link set void0 up
    ip route add default via 192.0.2.1 dev node0
  fi
  # The root a mount point of its own: containers' pivot_root needs that.
  mount --bind "$root" "$root"
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  if ! mountpoint -q /sys/fs/cgroup || [ "$(stat -f -c %T /sys/fs/cgroup)" = tmpfs ]; then
    mount -t tmpfs -o mode=755 cgroups "$root/sys/fs/cgroup"
    for link in /sys/fs/cgroup/*; do
      if [ -L "$link" ]; then cp -P "$link" "$root/sys/fs/cgroup/"; fi
    done
  fi
  local h
  for h in $(cgroup_mounts); do
    mkdir -p "$root$h"
    mount --bind "$h/$name" "$root$h"
  done
  mount --rbind /dev "$root/dev"
  mount -t tmpfs -o mode=1777 shm "$root/dev/shm"
  mount -t tmpfs -o mode=755 run "$root/run"
  ro_bind "$rustup_home" "$root$rustup_home"
  ro_bind "$cargo_bin" "$root$cargo_bin"
  local offline_env=()
  # The build step fetched every crate; without a network cargo would only wait.
  if [ "$offline" = 1 ]; then offline_env=(CARGO_NET_OFFLINE=true); fi
  chroot "$root" /usr/bin/env -i \
    HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH="$cargo_bin:/root/.cargo-home/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    RUSTUP_HOME="$rustup_home" RUSTUP_TOOLCHAIN="$toolchain" RUSTUP_AUTO_INSTALL=0 \
    CARGO_HOME=/root/.cargo-home CARGO_TERM_COLOR=never CARGO_TERM_PROGRESS_WHEN=never \
    "${offline_env[@]}" \
    /bin/bash -c "$1"
}

if [ "${1:-}" = __enter ]; then
  shift
  enter "$@"
  exit
fi

# ---- on the host ----

source "$(dirname "$self")/lib.sh"
need_root "$@"
repo=$(realpath "$(dirname "$self")/..")
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
toolchain=${RUSTUP_TOOLCHAIN:-$(cd / && rustup show active-toolchain | cut -d' ' -f1)}
[ -d "$rustup_home/toolchains/$toolchain" ] || { echo "fresh-machine-check: no Rust toolchain $toolchain in $rustup_home" >&2; exit 1; }
[ -x "$cargo_bin/cargo" ] || { echo "fresh-machine-check: no cargo in $cargo_bin" >&2; exit 1; }

root=$(mktemp -d /var/tmp/r8s-fresh-XXXX)
case "$root" in /var/tmp/r8s-fresh-?*) ;; *) echo "fresh-machine-check: odd root $root" >&2; exit 1 ;; esac
name=$(basename "$root")
logs=$root.logs
mkdir "$logs"

say() { echo "fresh-machine-check: $*"; }

# Mount points at or under DIR in this (the host's) mount namespace.
mounted_under() {
  awk -v dir="$1" '$5 == dir || index($5, dir "/") == 1 { print $5 }' /proc/self/mountinfo
}

cleanup() {
  local status=$?
  set +e
  # The r8s-fresh-XXXX cgroup subtrees: their processes ended with the steps'
  # PID namespaces; only empty directories are left to remove.
  local h
  for h in $(cgroup_mounts); do
    if [ -d "$h/$name" ]; then find "$h/$name" -depth -type d -exec rmdir {} \; ; fi
  done
  if [ "${KEEP:-}" = 1 ]; then
    say "kept the root $root (remove it with rm -rf --one-file-system $root)"
  elif [ -n "$(mounted_under "$root")" ]; then
    say "NOT removing $root: still mounted under it:"
    mounted_under "$root" | sed 's/^/  /'
    status=1
  else
    rm -rf --one-file-system "$root"
  fi
  say "logs in $logs"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for h in $(cgroup_mounts); do
  mkdir "$h/$name"
done
# A cgroup2 hierarchy passes controllers down only when asked (cgroup v2 hosts).
for h in $(cgroup_mounts); do
  if [ -f "$h/cgroup.subtree_control" ]; then
    for c in $(cat "$h/cgroup.subtree_control"); do
      echo "+$c" >"$h/$name/cgroup.subtree_control" 2>/dev/null || true
    done
  fi
done

# in_root [--offline] SCRIPT: SCRIPT (bash) in the root, as root, in fresh
# mount and PID namespaces (and an empty network namespace with --offline).
in_root() {
  local offline=0 net=()
  if [ "$1" = --offline ]; then offline=1 net=(--net); shift; fi
  unshare --mount --propagation private --pid --fork "${net[@]}" -- \
    bash "$self" __enter "$root" "$name" "$offline" "$toolchain" "$rustup_home" "$cargo_bin" "$1"
}

total=6
n=0
# step TITLE COMMAND...: one line per step, its output in a log of its own.
step() {
  local title=$1 log start status
  shift
  n=$((n + 1))
  log=$logs/$n-$(echo "$title" | tr -c 'a-zA-Z0-9.\n' '-' | sed 's/-*$//').log
  printf 'fresh-machine-check: [%d/%d] %s ... ' "$n" "$total" "$title"
  start=$SECONDS
  set +e
  (set -e; "$@") >"$log" 2>&1 </dev/null
  status=$?
  set -e
  if [ "$status" = 0 ]; then
    echo "ok ($((SECONDS - start)) s)"
  else
    echo "FAILED (exit $status, after $((SECONDS - start)) s)"
    say "the last lines of $log:"
    tail -n 40 "$log" | sed 's/^/  | /'
    exit 1
  fi
}

bootstrap() {
  command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap
  # The host's Debian sources (its mirror) and its apt proxies and validity
  # checks (e.g. Check-Valid-Until off for a snapshot mirror).
  local sources=() aptopts=() f line
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    if [ -f "$f" ] && grep -Eq '^[^#]*/debian(-security)?/?([[:space:]]|$)' "$f"; then sources+=("$f"); fi
  done
  while read -r line; do
    aptopts+=(--aptopt="$line")
  done < <(cat /etc/apt/apt.conf /etc/apt/apt.conf.d/* 2>/dev/null |
    grep -E '^[[:space:]]*Acquire::([a-z]+::)?(Proxy|Check-Valid-Until|Check-Date)' || true)
  ((${#sources[@]})) || { echo "no Debian apt sources on this host"; return 1; }
  echo "sources: ${sources[*]}; apt options: ${aptopts[*]}"
  unshare --mount --propagation private -- \
    mmdebstrap --mode=root --variant=minbase "${aptopts[@]}" bookworm "$root" "${sources[@]}"
  rm -f "$root/etc/resolv.conf"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  # The CA certificates the host trusts beyond Debian's (e.g. a TLS-inspecting
  # proxy's, without which crates.io is out of reach), as the root's local CAs:
  # the ca-certificates package adds them to its bundle when setup.sh installs it.
  mkdir -p "$root/usr/local/share/ca-certificates"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    awk -v bundle=/etc/ssl/certs/ca-certificates.crt -v out="$root/usr/local/share/ca-certificates" '
      { sub(/\r$/, "") }
      /-----BEGIN CERTIFICATE-----/ { inside = 1; body = ""; pem = "" }
      inside { pem = pem $0 "\n"; if ($0 !~ /-----/) body = body $0 }
      /-----END CERTIFICATE-----/ {
        inside = 0
        if (FILENAME != bundle) known[body] = 1
        else if (!(body in known)) { n++; file = out "/host-" n ".crt"; printf "%s", pem > file; close(file) }
      }
      END { print n + 0 " CA certificate(s) of the host beyond Debian'"'"'s" }
    ' /usr/share/ca-certificates/*/*.crt /etc/ssl/certs/ca-certificates.crt
  fi
}

clone() {
  git clone --no-hardlinks "$repo" "$root/root/r8s"
  local want got
  want=$(git -C "$repo" rev-parse HEAD)
  got=$(git -C "$root/root/r8s" rev-parse HEAD)
  [ "$want" = "$got" ] || { echo "the clone is at $got, not HEAD $want"; return 1; }
  git -C "$root/root/r8s" log -1 --format='%H %s'
}

setup() {
  in_root 'set -e
    if command -v sudo; then echo "sudo is installed in the root"; exit 1; fi
    cd /root/r8s && bash scripts/setup.sh'
}

build() {
  in_root 'cd /root/r8s && cargo build --workspace --all-targets'
}

host_network() {
  ip -o link show | awk -F': ' '{ print $2 }'
  if command -v nft >/dev/null; then nft list tables; fi
}

# Runs in the root, in the demo's namespaces, right after demo.sh: what it
# left there, which would otherwise vanish unseen with the namespaces.
# Processes are listed with a glob (no forks of its own among them).
left_in_namespaces() {
  local p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    if [ "$pid" != 1 ] && [ "$pid" != $$ ]; then echo "process: $pid $(tr '\0' ' ' <"$p/cmdline")"; fi
  done
  awk '$5 ~ "^/(var/lib/r8s|var/log/pods|run/.|tmp/.)" { print "mount: " $5 }' /proc/self/mountinfo
  ip -o link show | awk -F': ' '$2 !~ /^(lo|node0@void0|void0@node0)$/ { print "network device: " $2 }'
  nft list tables | sed 's/^/nftables: /'
  # Files (empty directories aside), but for the image store, which is kept.
  for p in /run /var/log/pods /var/lib/r8s /tmp/r8s-demo.*; do
    if [ -e "$p" ]; then find "$p" -path /var/lib/r8s/images -prune -o ! -type d -printf 'file: %p\n'; fi
  done
}

demo() {
  host_network >"$logs/host-network.before"
  in_root --offline "$(declare -f left_in_namespaces)
    cd /root/r8s && bash scripts/demo.sh && left_in_namespaces >/var/tmp/fresh-check-left"
}

leftovers() {
  local left=0 h
  if [ ! -f "$root/var/tmp/fresh-check-left" ]; then
    echo "the demo step did not look at its namespaces"
    left=1
  elif [ -s "$root/var/tmp/fresh-check-left" ]; then
    echo "left in the demo's namespaces:"
    cat "$root/var/tmp/fresh-check-left"
    left=1
  fi
  if [ -e "$root/var/lib/r8s/images" ]; then echo "(kept, not counted: the image store /var/lib/r8s/images)"; fi
  for h in $(cgroup_mounts); do
    if [ -n "$(find "$h/$name" -mindepth 1 -type d)" ]; then
      echo "cgroups left in $h/$name:"
      find "$h/$name" -mindepth 1 -type d
      left=1
    fi
  done
  if [ -n "$(mounted_under "$root")" ]; then echo "mounted under the root:"; mounted_under "$root"; left=1; fi
  host_network >"$logs/host-network.after"
  if ! diff "$logs/host-network.before" "$logs/host-network.after"; then
    echo "the host's network devices or nftables tables changed"
    left=1
  fi
  return "$left"
}

say "root $root, toolchain $toolchain (read-only from $rustup_home), commit $(git -C "$repo" rev-parse --short HEAD)"
step "mmdebstrap: a minimal Debian 12 root" bootstrap
step "git clone of HEAD into /root/r8s" clone
step "scripts/setup.sh as root, no sudo" setup
step "cargo build --workspace --all-targets" build
step "bash scripts/demo.sh (empty network namespace)" demo
step "nothing left behind" leftovers
say "passed"
