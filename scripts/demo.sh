#!/usr/bin/env bash
# The main job: a one-node r8s cluster on this machine (embedded raft store,
# API server, scheduler, controllers, node agent, r8s's own container runtime),
# a busybox image, the demo web application from manifests/web.yaml running in
# real containers, answered over HTTP; then everything is stopped and removed.
#   bash scripts/demo.sh            # as root (or through sudo); keep it running with KEEP=1
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root "$@"
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p r8s -p r8s-cli
bin=$PWD/target/release
work=$(mktemp -d /tmp/r8s-demo.XXXXXX)
export KUBECONFIG=/var/lib/r8s/kubeconfig.yaml
r8sctl() { "$bin/r8sctl" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

up_pid=
cleanup() {
  set +e
  if [ -n "$up_pid" ]; then
    say "stopping: the workload (its pods end gracefully), then the cluster"
    r8sctl delete -f manifests/web.yaml --wait >/dev/null 2>&1
    for _ in $(seq 1 120); do
      [ -z "$(r8sctl get pods -l app=web -o name 2>/dev/null)" ] && break
      sleep 0.5
    done
    kill -TERM "$up_pid" 2>/dev/null
    wait "$up_pid" 2>/dev/null
    # What the node's runtime keeps on the host between runs (r8s's names only):
    # the pod bridge, its nftables table, its cgroup roots, its state.
    ip link del r8s0 2>/dev/null
    nft delete table ip r8s 2>/dev/null
    for root in /sys/fs/cgroup/*/r8s /sys/fs/cgroup/unified/r8s; do
      [ -d "$root" ] && find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    rm -rf /run/r8s /var/lib/r8s /var/log/pods
  fi
  rm -rf "$work"
}
trap cleanup EXIT

say "a busybox image, from Debian's busybox-static"
mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp" "$work/rootfs/www"
cp /bin/busybox "$work/rootfs/bin/"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$work/rootfs/bin/$applet"
done
"$bin/r8s" image import-rootfs "$work/rootfs" busybox:1.36

say "r8s up: a one-node cluster"
"$bin/r8s" up >"$work/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 240); do
  grep -q "r8s is up" "$work/up.log" && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$work/up.log"; exit 1; }
  sleep 0.5
done
grep "r8s is up" "$work/up.log" || { tail -50 "$work/up.log"; exit 1; }
r8sctl get nodes -o wide

say "apply manifests/web.yaml (a ConfigMap, a Deployment of 3 busybox httpd, a Service)"
r8sctl apply -f manifests/web.yaml
r8sctl wait --for=condition=Available deploy/web --timeout=120s
r8sctl get deploy web
r8sctl get pods -o wide

say "the real kubectl sees the same cluster"
if command -v kubectl >/dev/null; then kubectl get all; else echo "(kubectl is not installed here: skipped)"; fi

say "each pod answers on its own IP"
for ip in $(r8sctl get pods -l app=web -o jsonpath='{.items[*].status.podIP}'); do
  printf '%s: ' "$ip"
  /bin/busybox wget -q -O - "http://$ip:8080/"
done

say "and through the Service's cluster IP (the node proxy's nftables rules)"
service_ip=$(r8sctl get service web -o jsonpath='{.spec.clusterIP}')
printf '%s: ' "$service_ip"
/bin/busybox wget -q -O - "http://$service_ip/"

if [ "${KEEP:-}" = 1 ]; then
  say "running; KUBECONFIG=$KUBECONFIG. Ctrl-C stops and removes it."
  wait "$up_pid"
fi
