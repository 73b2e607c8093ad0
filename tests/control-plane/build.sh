#!/usr/bin/env bash
# Builds kube-apiserver, etcd, kubectl, testenv and helm into a cache outside the repository, keyed by
# go.mod, go.sum, the versions and link flags and the Go version, so only the first build on a machine is slow.
# Idempotent. Prints the bin directory as its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-trimpath
K8S_VERSION="v1.37.2"
HELM_VERSION="v4.3.1"
cache_root="${GAO_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/guest-attestation-operator}"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
ldf="-s -w -X 'k8s.io/component-base/version.gitVersion=$K8S_VERSION' \
-X 'k8s.io/component-base/version.gitMajor=1' -X 'k8s.io/component-base/version.gitMinor=$minor' \
-X 'k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION' \
-X 'k8s.io/component-base/version.gitTreeState=clean'"

# Keyed by what decides the binaries (not this script's text), so editing the script does not force a
# 20-minute rebuild.
key="$( { cat go.mod go.sum; echo "$K8S_VERSION $ldf"; go version; } | sha256sum | cut -c1-16)"
bin="$cache_root/control-plane/$key/bin"
tools="$cache_root/tools/helm-$HELM_VERSION"
mkdir -p "$bin" "$tools"

# Only a cold build needs the space; a warm cache must keep working on a full disk.
if [ ! -x "$bin/etcd" ] || [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kubectl" ]; then
  avail_kb="$(df -Pk "$cache_root" | awk 'NR==2 {print $4}')"
  if [ "${avail_kb:-0}" -lt 6000000 ]; then
    echo "build.sh: less than 6 GB free under $cache_root; the cold build needs about 5 GB" >&2
    exit 1
  fi
fi

build() { # name package ldflags
  local name="$1" pkg="$2" flags="$3"
  if [ ! -x "$bin/$name" ]; then
    echo "build.sh: building $name" >&2
    go build -pgo=off -ldflags "$flags" -o "$bin/$name.tmp" "$pkg"
    mv "$bin/$name.tmp" "$bin/$name"
  fi
}
go mod download
build etcd go.etcd.io/etcd/server/v3 "-s -w"
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldf"
build kubectl k8s.io/kubernetes/cmd/kubectl "$ldf"
# testenv is ours and small: always rebuild so edits take effect.
go build -o "$bin/testenv.tmp" ./cmd/testenv && mv "$bin/testenv.tmp" "$bin/testenv"
if [ ! -x "$tools/helm" ]; then
  echo "build.sh: installing helm $HELM_VERSION" >&2
  (cd / && GOBIN="$tools" go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION")
fi
ln -sf "$tools/helm" "$bin/helm"
echo "$bin"
