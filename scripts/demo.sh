#!/usr/bin/env bash
# The main job: a one-node r8s cluster on this machine (embedded raft store,
# API server, scheduler, controllers, node agent, r8s's own container runtime),
# a busybox image, the demo web application from manifests/web.yaml running in
# real containers, answered over HTTP; then the cluster is stopped (as Ctrl-C
# does) and resumed with its pods, and at the end everything is removed.
#   bash scripts/demo.sh            # as root (or through sudo); keep it running with KEEP=1
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root "$@"
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p r8s -p r8s-cli
bin=$PWD/target/release
work=$(mktemp -d /tmp/r8s-demo.XXXXXX)
cluster=demo
export KUBECONFIG=/var/lib/r8s/clusters/$cluster/kubeconfig.yaml
r8sctl() { "$bin/r8sctl" "$@"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

up_pid=
# Starts `r8s up` in the background (its output in $work/$1) and waits until it says the cluster is up.
up() {
  "$bin/r8s" up --name "$cluster" >"$work/$1" 2>&1 &
  up_pid=$!
  for _ in $(seq 1 240); do
    grep -q "r8s is up" "$work/$1" && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$work/$1"; exit 1; }
    sleep 0.25
  done
  grep -A20 "r8s is up" "$work/$1" || { tail -50 "$work/$1"; exit 1; }
}
# Ctrl-C for the `r8s up` in the background: it stops the cluster and keeps its state.
stop() {
  kill -INT "$up_pid"
  wait "$up_pid" || true
  up_pid=
}
cleanup() {
  set +e
  [ -n "$up_pid" ] && stop >/dev/null 2>&1
  # Everything the cluster made: processes, containers, mounts, cgroups, its bridge and nftables table, its files.
  "$bin/r8s" down "$cluster" >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
"$bin/r8s" down "$cluster" >/dev/null  # what an interrupted demo may have left

say "a busybox image, from Debian's busybox-static"
mkdir -p "$work/rootfs/bin" "$work/rootfs/tmp" "$work/rootfs/www"
cp /bin/busybox "$work/rootfs/bin/"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$work/rootfs/bin/$applet"
done
"$bin/r8s" image import-rootfs "$work/rootfs" busybox:1.36

say "r8s up: a one-node cluster"
up up.log
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

say "Ctrl-C stops the cluster and keeps its state; r8s up resumes it, pods and all"
stop
up resume.log
r8sctl wait --for=condition=Available deploy/web --timeout=120s
printf '%s: ' "$service_ip"
/bin/busybox wget -q -O - "http://$service_ip/"

if [ "${KEEP:-}" = 1 ]; then
  say "running; KUBECONFIG=$KUBECONFIG. Ctrl-C stops and removes it."
  wait "$up_pid"
fi
