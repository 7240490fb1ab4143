#!/bin/sh
# pkgconfig_uninstalled.sh BUILD_DIR CC - a new user's first program against an
# uninstalled build tree: PKG_CONFIG_PATH=<build>/meson-uninstalled pkg-config stochflow
# must give the public headers (stochflow.h from the source tree, the generated
# stochflow_version.h from the build tree) and the library; the program compiles, links
# and sees the same version at compile time and run time.
set -eu
build=$1
cc=$2
command -v pkg-config >/dev/null 2>&1 || { echo "pkg-config not found: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/first.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <stochflow.h>

int main(void) {
    stochflow_config *c = NULL;
    if (stochflow_config_new(&c, 2) != 0) return 1;
    stochflow_config_free(c);
    int key = 0;
    if (stochflow_param_key(&key, "lr") != 0 || key != STOCHFLOW_PARAM_LR) return 2;
    if (strcmp(stochflow_version_string(), STOCHFLOW_VERSION_STRING) != 0) return 3;
    printf("%s\n", STOCHFLOW_VERSION_STRING);
    return 0;
}
C
PKG_CONFIG_PATH="$build/meson-uninstalled"
export PKG_CONFIG_PATH
cflags=$(pkg-config --cflags stochflow)
libs=$(pkg-config --libs stochflow)
echo "cflags: $cflags"
echo "libs: $libs"
# shellcheck disable=SC2086
"$cc" -std=c11 -Wall -Werror $cflags "$tmp/first.c" -o "$tmp/first" $libs
LD_LIBRARY_PATH="$build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/first"
