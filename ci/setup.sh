#!/bin/sh
# Install what wqh needs on Debian/Ubuntu (root), idempotently, and the project
# into .venv. Safe to run again: it installs only what is missing.
set -eu
cd "$(dirname "$0")/.."

PKGS="linux-source-6.1 linux-source-6.12 qemu-system-x86 udev gcc make flex bison bc cpio libelf-dev libssl-dev
      ccache git xz-utils keyutils python3 python3-venv python3-pip"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "wqh setup: installing$missing"
    if [ "$(id -u)" -ne 0 ]; then
        echo "wqh setup: need root for apt-get (missing:$missing)" >&2
        exit 2
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# Reinstall only when pyproject.toml changed since the last install.
stamp=.venv/.wqh-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e .
    touch "$stamp"
fi
# The pipeline tests' tools (gitlab-ci-local, actionlint, shellcheck), pinned: ci/install-ci-tools.sh.
# The CI pipelines' own jobs do not need them and set WQH_NO_CI_TOOLS=1.
[ -n "${WQH_NO_CI_TOOLS:-}" ] || ./ci/install-ci-tools.sh
echo "wqh setup: ready ($(.venv/bin/wqh --help >/dev/null && echo wqh ok))"
