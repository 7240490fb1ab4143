#!/usr/bin/env bash
# quickstart.sh - the two set-up commands of libstochflow (see README.md).
#
#   ./quickstart.sh demo   install what is missing, build, train a flow on the
#                          checkerboard, print its held-out NLL, write pictures
#   ./quickstart.sh test   install what is missing, build, run the whole test suite;
#                          the last line is "N passed, N failed"
#   ./quickstart.sh deps   only install the missing Debian packages
#
# On Debian 12 it installs the missing packages with apt-get (as root, or via sudo).
# BUILD_DIR (default: build) selects the build directory.
set -euo pipefail
cd "$(dirname "$0")"
BUILD_DIR=${BUILD_DIR:-build}

PACKAGES=(meson ninja-build pkg-config gcc g++ libblis-dev libpng-dev zlib1g-dev check
          python3-numpy python3-pytest python3-torch dataset-fashion-mnist abigail-tools
          python3-sklearn python3-pandas python3-mesonpy python3-venv python3-pip patchelf
          openmpi-bin libopenmpi-dev python3-mpi4py)

install_missing() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "quickstart: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2
}

build() {
    if [ ! -f "$BUILD_DIR/build.ninja" ]; then
        meson setup "$BUILD_DIR" >&2
    fi
    ninja -C "$BUILD_DIR" >&2
}

case "${1:-}" in
deps)
    install_missing
    ;;
demo)
    install_missing
    build
    shift
    exec "$BUILD_DIR/tools/stochflow" demo --outdir demo-out "$@"
    ;;
test)
    install_missing
    build
    log=$(mktemp)
    set +e
    # Tests run two at a time on two cores: idle OpenMP threads (BLIS) must sleep, not
    # spin, or oversubscribed matrix products crawl.
    OMP_WAIT_POLICY=PASSIVE meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    count() { sed -n "s/^$1: *\([0-9]*\).*/\1/p" "$log" | tail -n 1; }
    ok=$(count Ok); xfail=$(count "Expected Fail"); fail=$(count Fail)
    xpass=$(count "Unexpected Pass"); skip=$(count Skipped); tmo=$(count Timeout)
    passed=$(( ${ok:-0} + ${xfail:-0} ))
    failed=$(( ${fail:-0} + ${xpass:-0} + ${tmo:-0} ))
    rm -f "$log"
    echo "${passed} passed, ${failed} failed, ${skip:-0} skipped"
    [ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
    ;;
*)
    echo "usage: $0 demo|test|deps" >&2
    exit 2
    ;;
esac
