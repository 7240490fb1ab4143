# cli_lib.sh - TAP helpers shared by the CLI test scripts (cli_test.sh,
# images_cli_test.sh); sourced, not run. Sets PY and a temporary directory T (removed at
# exit; name prefix CLI_TMP_PREFIX), counts n tests and failed ones. Each script ends
# with: echo "1..$n"; [ $failed -eq 0 ]
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/${CLI_TMP_PREFIX:-sfcli}.XXXXXX")
trap 'rm -rf "$T"' EXIT
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }

# errors FILE: FILE without the progress lines ("progress: ...", written every few
# seconds when stderr is not a terminal), into $T/err.only.
errors() { grep -v '^progress: ' "$1" >"$T/err.only"; }

# run NAME CMD...: expect exit 0 and nothing on stderr but progress lines (no bar when not
# a tty).
run() {
    local name=$1; shift
    "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$?
    errors "$T/err"
    if [ $rc -eq 0 ] && [ ! -s "$T/err.only" ]; then ok "$name"; return 0; fi
    not_ok "$name" "exit $rc" "$(head -c 600 "$T/err")"
    return 1
}

# fails NAME PATTERN CMD...: expect exit in 1..125 and, progress lines aside, exactly one
# stderr line, starting with "stochflow:" and matching PATTERN (case-insensitive ERE).
fails() {
    local name=$1 pat=$2; shift 2
    "$@" >"$T/out" 2>"$T/err" </dev/null
    local rc=$? lines
    errors "$T/err"
    lines=$(wc -l <"$T/err.only")
    if [ $rc -ge 1 ] && [ $rc -le 125 ] && [ "$lines" -eq 1 ] &&
        grep -q '^stochflow: ' "$T/err.only" && grep -qiE -e "$pat" "$T/err.only"; then
        ok "$name: $(head -c 160 "$T/err.only")"
        return 0
    fi
    not_ok "$name" "exit $rc, $lines stderr lines, want /$pat/" "$(head -c 600 "$T/err")"
}

# json NAME PYEXPR: the last stdout line of the previous run is JSON `d`; PYEXPR must hold.
json() {
    local name=$1 expr=$2
    if tail -n 1 "$T/out" | $PY -c "import json,math,sys; d=json.loads(sys.stdin.read()); sys.exit(0 if ($expr) else 1)" 2>"$T/pyerr"; then
        ok "$name"
    else
        not_ok "$name" "JSON: $(tail -n 1 "$T/out" | head -c 600)" "$(tail -n 2 "$T/pyerr")"
    fi
}

# check NAME PYCODE: arbitrary Python (numpy available) must exit 0.
check() {
    local name=$1 code=$2
    if $PY -c "$code" 2>"$T/pyerr"; then ok "$name"; else not_ok "$name" "$(tail -n 3 "$T/pyerr")"; fi
}

# usage_fails CMD...: expect exit 2 (a usage error) and exactly one line on stderr.
usage_fails() {
    "$@" >/dev/null 2>"$T/err" </dev/null
    local rc=$?
    if [ $rc -eq 2 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q '^stochflow: ' "$T/err"; then
        ok "exit 2: $(head -c 160 "$T/err")"
    else
        not_ok "exit 2: $*" "exit $rc" "$(head -c 300 "$T/err")"
    fi
}

# limited LIMIT-OPTION VALUE CMD...: CMD under `ulimit LIMIT-OPTION VALUE` (in the
# foreground; a background job would get the pid of the function's subshell).
limited() { local l=$1 v=$2; shift 2; bash -c 'ulimit '"$l"' '"$v"' && exec "$@"' limited "$@"; }
