#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager, kube-scheduler and kubelet 1.20.2 from Debian bookworm's source
# package `kubernetes` with Debian's golang-go, offline (vendored modules), and cache the
# binaries outside the repository. Also installs what the control plane and the node run
# with (etcd-server; containerd, runc, the CNI plugins, iptables) and build images with
# (buildah, mmdebstrap). Idempotent: a second run finds the cache and returns at once.
#
#   FAST_NOTE_E2E_CACHE   cache root (default /var/cache/fast-note-e2e)
#
# Prints the directory holding the binaries on its last line.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# the pinned version of the source package, from the table of every pin (tools/fetch_tools.py)
K8S_VERSION=$(python3 "$REPO/tools/fetch_tools.py" --pin kubernetes)
CACHE_ROOT=${FAST_NOTE_E2E_CACHE:-/var/cache/fast-note-e2e}
CACHE=$CACHE_ROOT/kubernetes-$K8S_VERSION
BIN=$CACHE/bin
COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet)

log() { printf '[e2e-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

need_root_for_apt() {
  if [ "$(id -u)" != 0 ]; then
    log "need root to apt-get install $* (or install them yourself)"; exit 2
  fi
}

# apt-get install, only for the packages that are missing; `apt-get update` once if the
# package lists are empty or the package is unknown.
apt_ensure() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  need_root_for_apt "${missing[@]}"
  log "apt-get install ${missing[*]}"
  if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

have_binaries() {
  for c in "${COMPONENTS[@]}"; do [ -x "$BIN/$c" ] || return 1; done
  [ -f "$BIN/.complete" ]
}

apt_ensure etcd-server openssl containerd runc containernetworking-plugins iptables \
  buildah mmdebstrap gcc libc6-dev

if have_binaries; then
  log "control plane binaries cached in $BIN"
  echo "$BIN"; exit 0
fi

# one build at a time (two test runs starting together on a fresh machine)
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build.lock"
if ! flock -n 9; then
  log "another build is running; waiting for it"
  flock 9
fi
if have_binaries; then
  log "control plane binaries cached in $BIN"
  echo "$BIN"; exit 0
fi

apt_ensure golang-go rsync dpkg-dev ca-certificates make

mkdir -p "$CACHE"
SRC_PARENT=$CACHE/src
mkdir -p "$SRC_PARENT"

# 1. the source package, through a private apt config with deb-src enabled.
if ! ls "$SRC_PARENT"/kubernetes_*.dsc >/dev/null 2>&1; then
  log "downloading Debian source package kubernetes (deb-src, private apt config)"
  APTDIR=$CACHE/apt
  mkdir -p "$APTDIR/sources.list.d" "$APTDIR/lists/partial"
  : > "$APTDIR/sources.list"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed -E 's/^Types:.*/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources \
      > "$APTDIR/sources.list.d/debian.sources"
  else
    grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > "$APTDIR/sources.list"
  fi
  APT_OPTS=(-o "Dir::Etc::SourceList=$APTDIR/sources.list"
            -o "Dir::Etc::SourceParts=$APTDIR/sources.list.d"
            -o "Dir::State::Lists=$APTDIR/lists")
  apt-get "${APT_OPTS[@]}" update -qq >&2
  (cd "$SRC_PARENT" && apt-get "${APT_OPTS[@]}" source --download-only kubernetes >&2) || {
    log "could not download Debian's source package kubernetes ($K8S_VERSION is in bookworm)"
    exit 1; }
  case "$(ls "$SRC_PARENT"/kubernetes_*.dsc)" in
    *"really$K8S_VERSION"*|*"_$K8S_VERSION"*) ;;
    *) log "unexpected source version: $(ls "$SRC_PARENT"/kubernetes_*.dsc) (want $K8S_VERSION)"; exit 1;;
  esac
fi

SRC=$(find "$SRC_PARENT" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)
if [ -z "$SRC" ] || [ ! -f "$SRC/.extracted" ]; then
  log "unpacking the source package"
  rm -rf "$SRC_PARENT"/kubernetes-*/
  (cd "$SRC_PARENT" && dpkg-source --no-check -x kubernetes_*.dsc >&2)
  SRC=$(find "$SRC_PARENT" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)
  touch "$SRC/.extracted"
fi

# 2. GOPATH layout: $SRC/.go/src/k8s.io/kubernetes -> $SRC
mkdir -p "$SRC/.go/src/k8s.io"
ln -sfn "$SRC" "$SRC/.go/src/k8s.io/kubernetes"

export GOPATH=$SRC/.go
export GOCACHE=$CACHE/gocache
export CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor GO111MODULE=off
export KUBE_GIT_VERSION=v$K8S_VERSION KUBE_GIT_TREE_STATE=clean

mkdir -p "$BIN"
for c in "${COMPONENTS[@]}"; do
  if [ -x "$BIN/$c" ]; then continue; fi
  log "building $c with $(go version | cut -d' ' -f3) (first time only: kube-apiserver ~4 min, kubelet ~3 min, the others ~1 min each on 2 cores)"
  start=$(date +%s)
  (cd "$GOPATH/src/k8s.io/kubernetes" && make WHAT=cmd/$c >&2)
  built=$(find "$SRC/_output" -type f -name "$c" -perm -u+x | head -n1)
  [ -n "$built" ] || { log "build of $c produced no binary"; exit 1; }
  cp "$built" "$BIN/$c.tmp" && mv "$BIN/$c.tmp" "$BIN/$c"
  log "built $c in $(( $(date +%s) - start )) s"
done
touch "$BIN/.complete"
# the unpacked tree and the Go build cache are ~2 GB; the downloaded source stays for a rebuild
rm -rf "$SRC" "$GOCACHE"
log "control plane binaries cached in $BIN"
echo "$BIN"
