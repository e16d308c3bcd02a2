#!/usr/bin/env bash
# The test command: ruff, mypy, the layering check (import-linter), then pytest on 2 workers against real mosquitto and
# PostgreSQL servers that the test suite starts itself (free ports, temporary folders).
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh tests/harness -q  # arguments go to pytest
#
# On a fresh Debian machine run as root: creates .venv, installs the project with its
# test extras, and apt-installs mosquitto, PostgreSQL and Chromium when they are missing.
# The services Debian starts with them (1883, 5432) are left alone; the tests never use them.
# Exit status: the first failing step's, else pytest's (5 = no tests collected = failure).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'scripts/test.sh: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

APT_UPDATED=0
apt_install() {
    is_root || die "missing $*; install it (Debian: apt-get install $*) or rerun as root"
    command -v apt-get >/dev/null || die "missing $* and no apt-get to install it with"
    if [ "$APT_UPDATED" -eq 0 ]; then
        say "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

have_mosquitto() {
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || [ -x /usr/local/sbin/mosquitto ]
}

have_postgres() {
    if command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; then
        return 0
    fi
    local bindir
    for bindir in /usr/lib/postgresql/*/bin; do
        if [ -x "$bindir/initdb" ] && [ -x "$bindir/postgres" ]; then
            return 0
        fi
    done
    return 1
}

# --- Python environment -------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    if ! command -v "$PYTHON" >/dev/null 2>&1 || ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        apt_install python3 python3-venv
    fi
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is older than 3.11 (set PYTHON=/path/to/python3.11)"
    say "creating .venv"
    "$PYTHON" -m venv .venv
fi
say "pip install -e '.[test]'"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# --- servers the tests start --------------------------------------------------------
missing=()
have_mosquitto || missing+=(mosquitto)
have_postgres || missing+=(postgresql)
# The dashboard's browser tests drive Debian's headless Chromium through Playwright (never
# `playwright install`: no browser downloads); the CJK fonts make the screenshots readable.
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-noto-cjk)
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
fi
have_mosquitto || die "mosquitto still not found after installing it"
have_postgres || die "PostgreSQL server binaries (initdb, postgres) still not found"
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium still not found after installing it"

# --- checks -------------------------------------------------------------------------
say "ruff check ."
.venv/bin/ruff check .
say "mypy"
.venv/bin/mypy
say "lint-imports (layering: the domain imports nothing from the runtime)"
.venv/bin/lint-imports

say "pytest -n 2 $*"
status=0
.venv/bin/python -m pytest -n 2 -p no:cacheprovider "$@" || status=$?
if [ "$status" -eq 5 ]; then
    say "pytest collected no tests: failing"
fi
exit "$status"
