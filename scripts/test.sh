#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests.
# Installs what the tests need when run as root (CI runs it as root on a
# fresh machine); elsewhere tests that need a missing tool say why they skip.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(tcpdump iproute2 ethtool curl iputils-ping nftables)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ]; then
        echo "installing: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "not root: cannot install ${missing[*]}; tests that need them will skip"
    fi
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
# Ten virtual minutes of short connections and a million idle ones: too
# much for an unoptimised build, so these run optimised (they are ignored
# in the build above).
cargo test --release --test time_wait --test scale
# Benchmarks only in criterion's quick "does it run" mode: one iteration of
# each, no timing.
cargo bench --benches -- --test
