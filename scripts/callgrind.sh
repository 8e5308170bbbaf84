#!/usr/bin/env bash
# Instructions per operation, flowlane beside smoltcp, counted by callgrind:
# one W2 round trip (64 B echo) and one W4 connection (connect, 64 B each
# way, client closes first). Each figure is (I(2N) - I(N)) / N over two runs
# of examples/insn_count.rs, so start-up, setup and warm-up cancel; the
# clock there is virtual, so the counts are the same on every run.
#
#   scripts/callgrind.sh [W2_N [W4_N]]     (defaults 10000 and 1000)
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
for spec in "w2:$w2_n:W2 round trip" "w4:$w4_n:W4 connection"; do
    IFS=: read -r w n label <<<"$spec"
    fl=$(per_op "$w" flowlane "$n")
    sm=$(per_op "$w" smoltcp "$n")
    ratio=$(awk -v a="$fl" -v b="$sm" 'BEGIN { printf "%.2f", a / b }')
    printf '| %s | %s | %s | %s | %s |\n' "$label" "$n" "$fl" "$sm" "$ratio"
done
