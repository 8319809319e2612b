#!/bin/sh
# Print the CI cache key of the kernel builds: source identity + config hash.
# Source: the Debian linux-source-6.1 package version (or $WQH_KERNEL_ID for another tree).
# Config: every kconfig fragment, scenario (they name fragments) and patch that can change
# what is built. Inside the cache wqh keys each build by the exact (source, .config, patches),
# so a stale or shared CI cache can cost time but never give a wrong kernel.
set -eu
cd "$(dirname "$0")/.."
src=${WQH_KERNEL_ID:-$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || echo unknown)}
cfg=$(find kconfigs scenarios -type f \( -name '*.config' -o -name '*.yaml' -o -name '*.patch' \) \
        -print | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
printf 'linux-source-%s-%s\n' "$(printf %s "$src" | tr -c 'A-Za-z0-9._\n-' _)" "$cfg"
