#!/usr/bin/env bash
# Instructions per reading inside ShardCore::process (benches/detector_instructions.rs):
# callgrind counts of 625 and 125 batches of 512 readings, their difference over 500 × 512.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cargo bench --bench detector_instructions --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "detector_instructions" and m.get("executable"):
        print(m["executable"])')
out=$(mktemp -d)
count() {
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
        --toggle-collect='*ShardCore*process*' "$bin" "$1" "$2" "$3" >/dev/null 2>"$out/log"
    grep -E '^(summary|totals):' "$out/cg.out" | head -1 | awk '{print $2}'
}
for path in ${PATHS:-overlimit_only full_suite}; do
    for case in ${CASES:-with_episodes normal_only}; do
        small=$(count "$path" "$case" 125)
        large=$(count "$path" "$case" 625)
        echo "$path/$case: $(python3 -c "print(f'{($large - $small) / (500 * 512):.1f}')") instructions per reading"
    done
done
rm -rf "$out"
