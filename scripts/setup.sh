#!/usr/bin/env bash
# Install everything shoplake's native mode needs on a Debian machine. Idempotent: a second
# run only checks. Steps:
#   1. Debian packages: mariadb-server, postgresql, a JDK 17, docker-compose (offline
#      validation of docker-compose.yml), tzdata, chromium (the dashboards' browser tests).
#   2. .venv on Python 3.11 with shoplake, pyspark and the dev tools (pip install -e .[dev,spark]).
#   3. LocalStack's own venv on Python 3.13 (.shoplake/tools/localstack).
#   4. hadoop-aws + aws-java-sdk-bundle jars for Spark's s3a://, iceberg-spark-runtime and the
#      PostgreSQL JDBC driver for silver's Iceberg tables (.shoplake/tools/jars).
#   5. npm's asl-validator, pinned, for the state machine tests (.shoplake/tools/asl-validator).
# Tools go to SHOPLAKE_STACK_TOOLS_DIR (default .shoplake/tools; CI keeps them outside the clone).
# Override the base Pythons with SHOPLAKE_PYTHON and SHOPLAKE_LOCALSTACK_PYTHON_BASE.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOOLS=${SHOPLAKE_STACK_TOOLS_DIR:-$ROOT/.shoplake/tools}

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }
mkdir -p .shoplake
SETUP_LOG=.shoplake/setup.log
# pip's chatter goes to the log; on failure its last lines are shown.
quiet() {
    "$@" >>"$SETUP_LOG" 2>&1 || { tail -n 30 "$SETUP_LOG" >&2; die "failed: $* (log: $SETUP_LOG)"; }
}

# -- 1. Debian packages ----------------------------------------------------------------------
# python3-venv: where Python 3.11 is Debian's own (bookworm), `python3 -m venv` needs it.
APT_PACKAGES=(mariadb-server postgresql openjdk-17-jdk-headless docker-compose tzdata
              python3-venv chromium)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if ((${#missing[@]})); then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
        SUDO=sudo
    fi
    say "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    # The packages' own services are not used (shoplake runs its own servers on other
    # ports), so do not let their postinst scripts start them.
    DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages present"
fi

# -- 2. the project's venv (Python 3.11) -----------------------------------------------------
find_python() {  # $1: version like 3.11; prints the path of a matching interpreter
    local v=$1 candidate
    for candidate in "python$v" "${PYENV_ROOT:-$HOME/.pyenv}/versions/$v"*/bin/python"$v" \
                     /usr/bin/python"$v" /usr/local/bin/python"$v"; do
        candidate=$(command -v "$candidate" 2>/dev/null) || continue
        # A pyenv shim exists even where that version is not selected: run it to be sure.
        if "$candidate" -c 'import sys, venv' >/dev/null 2>&1; then
            "$candidate" -c 'import sys; print(sys.executable)'; return 0
        fi
    done
    return 1
}

PY=${SHOPLAKE_PYTHON:-$(find_python 3.11 || true)}
[ -n "$PY" ] || die "Python 3.11 not found; install it (pyenv install 3.11) or set SHOPLAKE_PYTHON"
stamp=.venv/.shoplake-installed
want="$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "creating .venv with $PY and installing shoplake"
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    quiet .venv/bin/pip install --upgrade pip
    quiet .venv/bin/pip install -e ".[dev,spark]"
    echo "$want" > "$stamp"
else
    say ".venv up to date"
fi

# -- 3. LocalStack's venv (Python 3.13) ------------------------------------------------------
LSPY=${SHOPLAKE_LOCALSTACK_PYTHON_BASE:-$(find_python 3.13 || true)}
LSVENV="$TOOLS/localstack"
lsstamp="$LSVENV/.shoplake-installed"
lswant="$(sha256sum localstack/requirements-host.txt | cut -c1-16)"
if [ ! -x "$LSVENV/bin/python" ] || [ "$(cat "$lsstamp" 2>/dev/null)" != "$lswant" ]; then
    [ -n "$LSPY" ] || die "Python 3.13 not found (LocalStack 2026.x needs it); install it
  (pyenv install 3.13) or set SHOPLAKE_LOCALSTACK_PYTHON_BASE to its path"
    say "creating LocalStack venv in $LSVENV with $LSPY"
    mkdir -p "$TOOLS"
    [ -x "$LSVENV/bin/python" ] || "$LSPY" -m venv "$LSVENV"
    quiet "$LSVENV/bin/pip" install --upgrade pip
    quiet "$LSVENV/bin/pip" install -r localstack/requirements-host.txt
    echo "$lswant" > "$lsstamp"
else
    say "LocalStack venv up to date"
fi

# -- 4. the jars for Spark: s3a, Iceberg, JDBC (Maven Central, checked by SHA-1) -------------
SHOPLAKE_STACK_TOOLS_DIR="$TOOLS" .venv/bin/python -m pipeline.glue.jars

# -- 5. asl-validator (npm, pinned): the tests check both state machine renderings with it ---
ASLV_VERSION=4.0.0
ASLV="$TOOLS/asl-validator"
if [ "$(cat "$ASLV/.shoplake-installed" 2>/dev/null)" != "$ASLV_VERSION" ]; then
    if ! command -v npm >/dev/null; then
        say "installing Debian packages: nodejs npm"
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO=sudo
        $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get \
            install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    say "installing asl-validator $ASLV_VERSION into $ASLV"
    mkdir -p "$ASLV"
    quiet npm install --prefix "$ASLV" --no-audit --no-fund --silent \
        "asl-validator@$ASLV_VERSION"
    echo "$ASLV_VERSION" > "$ASLV/.shoplake-installed"
else
    say "asl-validator $ASLV_VERSION present"
fi

say "ready: .venv/bin/shoplake"
