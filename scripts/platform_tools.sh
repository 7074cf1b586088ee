#!/usr/bin/env bash
# Build the Go tools of the cluster validation (scripts/cluster_validate.py) into $BIN (default .venv/bin):
#   kube-apiserver  from k8s.io/kubernetes (tools/apiserver/go.mod pins it; staging modules replaced by
#                   their published versions), for server-side dry-run with the real CRDs
#   istioctl        `istioctl analyze` offline on the rendered tree
#   kube-score      static checks of the workload objects
# etcd comes from Debian (`apt-get install etcd-server`), see .ci/run.
# Idempotent and safe to start twice: a second run waits on the lock and finds the binaries.
# Cold builds on 2 cores take long (docs/gitops.md, "Validation"), so .ci/run starts this in the background.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BIN:-${KOKORO_VENV:-$ROOT/.venv}/bin}
ISTIO_VERSION=v0.0.0-20260827124520-eed52ebb66ad   # istio.io/istio module, 1.29 development line
KUBE_SCORE_VERSION=v1.20.0
mkdir -p "$BIN/.build"   # built here, then renamed into $BIN: a tool in $BIN is always complete
exec 9>"$BIN/.platform-tools.lock"
flock 9
command -v go >/dev/null || { echo "platform_tools: Go is needed" >&2; exit 1; }
stamp() { date +%s; }
if [ ! -x "$BIN/kube-apiserver" ]; then
  t=$(stamp)
  (cd tools/apiserver && go build -trimpath -ldflags=-s -o "$BIN/.build/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$BIN/.build/kube-apiserver" "$BIN/kube-apiserver"
  echo "platform_tools: kube-apiserver built in $(( $(stamp) - t )) s" >&2
fi
if [ ! -x "$BIN/istioctl" ]; then
  t=$(stamp)
  GOBIN="$BIN/.build" go install -trimpath -ldflags=-s "istio.io/istio/istioctl/cmd/istioctl@$ISTIO_VERSION"
  mv "$BIN/.build/istioctl" "$BIN/istioctl"
  echo "platform_tools: istioctl built in $(( $(stamp) - t )) s" >&2
fi
if [ ! -x "$BIN/kube-score" ]; then
  t=$(stamp)
  GOBIN="$BIN/.build" go install -trimpath -ldflags=-s "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
  mv "$BIN/.build/kube-score" "$BIN/kube-score"
  echo "platform_tools: kube-score built in $(( $(stamp) - t )) s" >&2
fi
