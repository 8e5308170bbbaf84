#!/usr/bin/env bash
# Instructions per operation, flowlane beside smoltcp, counted by callgrind:
# one W2 round trip (64 B echo), one W3 request/response pair (64
# connections) and one W4 connection (connect, 64 B each way, client
# closes first); then W2 and W3 by layer. Each figure is (I(2N) - I(N)) / N over two runs
# of examples/insn_count.rs, so start-up, setup and warm-up cancel; the
# clock there is virtual, so the counts are the same on every run.
#
#   scripts/callgrind.sh [W2_N [W4_N]]     (defaults 10000 and 1000; W3 uses W2_N)
#
# The callgrind files stay in target/callgrind/ for callgrind_annotate.
# smoltcp's W4 figure grows with the sockets it holds in TIME-WAIT (its
# scan is linear): here about N to 2N of them.
set -euo pipefail
cd "$(dirname "$0")/.."

w2_n=${1:-10000}
w4_n=${2:-1000}
out=target/callgrind
mkdir -p "$out"
cargo build --release --quiet --example insn_count
bin=target/release/examples/insn_count

# Total instructions (Ir) of one run.
count() {
    local file=$out/$1-$2-$3.out
    valgrind --tool=callgrind --callgrind-out-file="$file" "$bin" "$1" "$2" "$3" \
        >"$out/$1-$2-$3.log" 2>&1
    awk '/^(summary|totals):/ { print $2; exit }' "$file"
}

per_op() {
    local w=$1 s=$2 n=$3
    local one two
    one=$(count "$w" "$s" "$n")
    two=$(count "$w" "$s" $((2 * n)))
    echo $(((two - one) / n))
}

printf '| operation | N | flowlane instructions | smoltcp instructions | flowlane / smoltcp |\n'
printf '|---|---:|---:|---:|---:|\n'
for spec in "w2:$w2_n:W2 round trip" "w3:$w2_n:W3 request/response pair" "w4:$w4_n:W4 connection"; do
    IFS=: read -r w n label <<<"$spec"
    fl=$(per_op "$w" flowlane "$n")
    sm=$(per_op "$w" smoltcp "$n")
    ratio=$(awk -v a="$fl" -v b="$sm" 'BEGIN { printf "%.2f", a / b }')
    printf '| %s | %s | %s | %s | %s |\n' "$label" "$n" "$fl" "$sm" "$ratio"
done

# Where a W2 round trip's and a W3 pair's instructions go, by layer, both
# stacks: each function's own instructions (inlined code counted where its
# source lives; code from the Rust standard library counted with the
# function it was inlined into), (I(2N) - I(N)) / N per layer. smoltcp's device is the
# harness's cable (bench/workloads.rs), flowlane's the library's Link.
layer_costs() {
    callgrind_annotate --auto=no --threshold=100 --show-percs=no "$1" 2>/dev/null |
        awk -v sign="$2" '
        function layer(s) {
            if (s ~ /memmove|memcpy|memset|string\/\.\.\//) return "libc memcpy"
            if (s ~ /src\/wire\/|flowlane::wire::|smoltcp::wire::/) return "wire: parse, emit, checksums"
            if (s ~ /src\/(tcp|timer|socket)\/|flowlane::tcp::|flowlane::timer::|smoltcp::socket::/) return "TCP: sockets, state machine, timers"
            if (s ~ /src\/storage\/|flowlane::storage::|smoltcp::storage::/) return "buffers"
            if (s ~ /src\/phy\/link\.rs|flowlane::phy::link::|Cable/) return "device (in-memory link)"
            if (s ~ /src\/(iface|phy)\/|flowlane::iface::|flowlane::phy::|smoltcp::iface::|smoltcp::phy::/) return "interface: demux to sockets, frames to device"
            return "harness (echo application, poll loop)"
        }
        $1 ~ /^[0-9,]+$/ && NF >= 2 {
            n = $1; gsub(",", "", n)
            rest = $0; sub(/^ *[0-9,]+ +/, "", rest); sub(/ \[[^]]*\]$/, "", rest)
            i = index(rest, ":"); if (i == 0) next
            file = substr(rest, 1, i - 1); fn = substr(rest, i + 1)
            # Lines from the standard library or without a file: the function.
            key = (file ~ /^\/rustc\// || file == "???") ? fn : file
            if (layer(key) ~ /^harness/ && (fn ~ /Cable/)) key = fn
            cost[layer(key)] += sign * n
        }
        END { for (l in cost) printf "%s\t%d\n", l, cost[l] }'
}

layers() {
    local w=$1 s=$2 n=$3
    { layer_costs "$out/$w-$s-$((2 * n)).out" 1; layer_costs "$out/$w-$s-$n.out" -1; } |
        awk -F'\t' -v n="$n" '{ c[$1] += $2 } END { for (l in c) printf "%s\t%d\n", l, c[l] / n }'
}

for spec in "w2:W2 round trip" "w3:W3 pair (64 connections)"; do
    IFS=: read -r w label <<<"$spec"
    printf '\n%s by layer (instructions):\n\n' "$label"
    printf '| layer | flowlane | smoltcp | flowlane / smoltcp |\n|---|---:|---:|---:|\n'
    join -t $'\t' -a1 -a2 -e 0 -o 0,1.2,2.2 \
        <(layers "$w" flowlane "$w2_n" | sort) <(layers "$w" smoltcp "$w2_n" | sort) |
        sort -t $'\t' -k2,2nr |
        awk -F'\t' '{ r = $3 > 0 ? sprintf("%.2f", $2 / $3) : "-"; printf "| %s | %d | %d | %s |\n", $1, $2, $3, r; fl += $2; sm += $3 }
            END { printf "| total | %d | %d | %.2f |\n", fl, sm, fl / sm }'
done
