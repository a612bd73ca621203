#!/bin/sh
# Installs the Debian packages ratchet needs to build and test, but only those
# whose pkg-config module or command is missing, so that a second run is fast
# and needs no network. Run as root on Debian 12; as another user it only
# reports what is missing.
#
# Each line of NEEDS is "kind name package": kind is "pc" (a pkg-config
# module), "cmd" (a command on PATH) or "file" (a path that must exist).
set -eu

NEEDS='
cmd cc gcc
cmd clang clang
cmd cmake cmake
cmd make make
cmd pkg-config pkg-config
cmd clang-format clang-format
cmd valgrind valgrind
cmd parallel parallel
cmd chromium chromium
pc cmocka libcmocka-dev
pc libuv libuv1-dev
pc libprotobuf-c libprotobuf-c-dev
cmd protoc-c protobuf-c-compiler
cmd protoc protobuf-compiler
file /usr/lib/python3/dist-packages/google/protobuf/__init__.py python3-protobuf
pc lmdb liblmdb-dev
pc libxxhash libxxhash-dev
pc jansson libjansson-dev
pc libmicrohttpd libmicrohttpd-dev
cmd promtool prometheus
file /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.tsan-x86_64.a libclang-rt-14-dev
'

missing=""
echo "$NEEDS" | {
  while read -r kind name pkg; do
    [ -n "$kind" ] || continue
    case "$kind" in
    pc) pkg-config --exists "$name" 2>/dev/null && continue ;;
    cmd) command -v "$name" >/dev/null 2>&1 && continue ;;
    file) [ -e "$name" ] && continue ;;
    esac
    missing="$missing $pkg"
  done
  [ -z "$missing" ] && exit 0
  echo "install-deps: missing Debian packages:$missing"
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: not root; install them with: apt-get install$missing" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing
}
