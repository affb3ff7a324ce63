#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for MindsEye, idempotently:
#   1. system packages: libtorch (headers + libs), OpenBLAS (pthread build), Gloo headers
#   2. npm packages (npm ci, only when package-lock.json changed)
#   3. the native addon (node-gyp, incremental)
#   4. the TypeScript build
# Environment:
#   LIBTORCH=<dir>       build against another libtorch (e.g. the one inside a pip-installed
#                        PyTorch, CUDA included); system libtorch is then not installed.
#   MINDSEYE_SKIP_APT=1  do not touch system packages (you installed them yourself).
#   MINDSEYE_WITH_PYTORCH=1  also install Debian's python3-torch (the PyTorch reference that
#                        benchmarks and fixture scripts use, and the torchrun that make test starts
#                        ranks with; the product never needs it).
#   MINDSEYE_WITH_CHROMIUM=1  also install Debian's chromium, which the test of a study's
#                        report.html opens headless (make test sets it; make demo does not need it).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }

# ---- 1. system packages -----------------------------------------------------------------
need=()
if [ -z "${LIBTORCH:-}" ]; then
  need+=(libtorch-dev libopenblas0-pthread libgloo-dev)
fi
if [ "${MINDSEYE_WITH_CHROMIUM:-0}" = "1" ]; then need+=(chromium); fi
if [ "${MINDSEYE_WITH_PYTORCH:-0}" = "1" ]; then need+=(python3-torch); fi
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] && [ "${MINDSEYE_SKIP_APT:-0}" != "1" ]; then
  command -v apt-get >/dev/null || die "missing system packages: ${missing[*]}, and apt-get is not available. Install libtorch yourself and rerun with LIBTORCH=<dir> (see README)."
  SUDO=""
  if [ "$(id -u)" != "0" ]; then
    command -v sudo >/dev/null || die "missing system packages: ${missing[*]}; run as root, or install them (apt-get install ${missing[*]}) and rerun."
    SUDO="sudo"
  fi
  say "installing ${missing[*]} (about 2 minutes the first time)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ -z "${LIBTORCH:-}" ] && [ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ] && command -v update-alternatives >/dev/null; then
  # Debian's libtorch links libblas.so.3; without OpenBLAS selected it runs the reference BLAS (~20x slower).
  current=$(readlink -f /etc/alternatives/libblas.so.3-x86_64-linux-gnu 2>/dev/null || true)
  case "$current" in
    *openblas*) ;;
    *) if [ "$(id -u)" = "0" ]; then update-alternatives --set libblas.so.3-x86_64-linux-gnu /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3; fi ;;
  esac
fi

# ---- 2. npm packages ---------------------------------------------------------------------
stamp=node_modules/.mindseye-lock-hash
hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
  say "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$hash" > "$stamp"
fi

# ---- 3. native addon ---------------------------------------------------------------------
addon=packages/torch/native/build/Release/mindseye_torch.node
config=packages/torch/native/build/config.gypi
want="libtorch=${LIBTORCH:-system}"
if [ ! -f "$config" ] || [ "$(cat packages/torch/native/build/.libtorch 2>/dev/null)" != "$want" ]; then
  say "configuring the addon against ${LIBTORCH:-system libtorch}"
  (cd packages/torch && npx node-gyp configure --directory native --loglevel=warn)
  echo "$want" > packages/torch/native/build/.libtorch
fi
if [ ! -f "$addon" ] || [ -n "$(find packages/torch/native -maxdepth 1 \( -name '*.cc' -o -name '*.h' -o -name binding.gyp \) -newer "$addon")" ]; then
  say "building the addon (about a minute on 2 cores)"
  (cd packages/torch && npx node-gyp build --directory native --loglevel=warn -j "$(nproc)")
fi

# ---- 4. TypeScript -----------------------------------------------------------------------
npx tsc -b packages/torch packages/mindseye
say "ready"
