#!/bin/sh
# Stage "setup": install what wqh needs (ci/setup.sh, via sudo when not root), say what is
# missing (wqh doctor), and write the kernel cache key to $WQH_RESULTS/ci.env (a dotenv file:
# GitLab's artifacts:reports:dotenv; the GitHub workflow reads it into a step output).
set -eu
cd "$(dirname "$0")/.."
. ci/common.sh

if [ "$(id -u)" -eq 0 ]; then
    ./ci/setup.sh
elif command -v sudo >/dev/null 2>&1; then
    sudo -E ./ci/setup.sh
else
    ./ci/setup.sh
fi
"$WQH" doctor || die "wqh doctor: something is missing (above)"
mkdir -p "$WQH_RESULTS"
key=$(./ci/cache-key.sh)
printf 'WQH_KERNEL_KEY=%s\n' "$key" > "$WQH_RESULTS/ci.env"
say "kernel cache key: $key"
