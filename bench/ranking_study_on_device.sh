#!/usr/bin/env bash
# Issue #15's references and supernets on a lent GPU machine, as one prepared command for the
# `device` tool: hat's packages missing from that machine's image installed from .whl/ (fetched
# here first: docs/benchmarks.md, "On a lent GPU"), every reference not yet in the committed
# ledger trained side by side (JOBS, one CPU thread each) beside the three supernets in stages, and
# both ledgers kept under $OUT, where each finished reference and each scored supernet stage is
# appended at once: what finished before the lease's limit comes back. Then copy
# $OUT/references.jsonl and $OUT/supernet_scores.jsonl over the committed ledgers (their extra
# lines are the new results).
#
#   run(command="bench/ranking_study_on_device.sh", carry=[".whl", "runs/study15/data"],
#       timeout_s=600)
#
# Settings (environment): LIMIT_S (seconds of training, default 480), KEPT and KEPT_SCORES (the
# ledgers to start from), and bench/ranking_study.sh's (DEVICE defaults to cuda here, JOBS to
# 16, STEPS to "references supernets").
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?run it through the device tool, which sets OUT}"
KEPT=${KEPT:-docs/results/multi30k_study/references.jsonl}
KEPT_SCORES=${KEPT_SCORES:-docs/results/multi30k_study/supernet_scores.jsonl}
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >"$OUT/device.txt" 2>&1
cp "$KEPT" "$OUT/references.jsonl"
touch "$OUT/supernet_scores.jsonl"
[[ -f $KEPT_SCORES ]] && cp "$KEPT_SCORES" "$OUT/supernet_scores.jsonl"
export DEVICE=${DEVICE:-cuda} JOBS=${JOBS:-16} STEPS=${STEPS:-references supernets} NICE=${NICE:-0}
export LEDGER=$OUT/references.jsonl SCORES=$OUT/supernet_scores.jsonl
export PYTHON=${PYTHON:-python3} WORK=${WORK:-runs/study15}
timeout "${LIMIT_S:-480}" bench/ranking_study.sh  # the signal goes to its process group too
status=$?
tar czf "$OUT/logs.tgz" -C "$WORK" logs
echo "references in the ledger: $(wc -l <"$OUT/references.jsonl") ($(wc -l <"$KEPT") before)"
before=$( ([[ -f $KEPT_SCORES ]] && wc -l <"$KEPT_SCORES") || echo 0)
echo "supernet scores in the ledger: $(wc -l <"$OUT/supernet_scores.jsonl") ($before before)"
exit "$status"
