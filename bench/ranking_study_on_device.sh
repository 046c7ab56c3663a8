#!/usr/bin/env bash
# Issue #15's CPU-days on a lent GPU machine, as one prepared command for the `device` tool: hat's
# packages missing from that machine's image installed from .whl/ (fetched here first:
# docs/benchmarks.md, "On a lent GPU"); every reference not yet in the committed ledger trained
# side by side (JOBS, one CPU thread each, bench/ranking_study.sh's STEPS); beside them the
# comparison's baselines (`hat pipeline --stop-after baselines` of the BASELINES config, nothing
# timed, BASELINE_JOBS side by side) from the raw text carried in RAW (../shared is not on that
# machine). Each ledger is kept under $OUT, where each finished reference, scored supernet stage
# and tested baseline is appended at once: what finished before the lease's limit comes back. Then
# copy $OUT/references.jsonl, $OUT/supernet_scores.jsonl and $OUT/models.jsonl over the committed
# ledgers (their extra lines are the new results).
#
#   cp -r ../shared/data/multi30k runs/multi30k_raw     # once, here (runs/ is not committed)
#   run(command="bench/ranking_study_on_device.sh", timeout_s=600,
#       carry=[".whl", "runs/study15/data", "runs/multi30k_raw"])
#
# Settings (environment): LIMIT_S (seconds of training, default 480); KEPT, KEPT_SCORES and
# KEPT_MODELS (the ledgers to start from); BASELINES (a pipeline config; empty: no baselines),
# BASELINE_JOBS (default 12: the study's 6 baselines x 2 seeds at once), RAW (the raw text's
# folder, its files named as in ../shared/data/multi30k; empty: the config's own), WHEELS (the
# wheels' folder; empty: none installed); and
# bench/ranking_study.sh's (DEVICE defaults to cuda here, JOBS to 16, STEPS to "references").
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?run it through the device tool, which sets OUT}"
KEPT=${KEPT:-docs/results/multi30k_study/references.jsonl}
KEPT_SCORES=${KEPT_SCORES:-docs/results/multi30k_study/supernet_scores.jsonl}
KEPT_MODELS=${KEPT_MODELS:-docs/results/multi30k_study/models.jsonl}
BASELINES=${BASELINES-configs/multi30k/study.yml}
RAW=${RAW-runs/multi30k_raw}
WHEELS=${WHEELS-.whl}
if [[ -n $BASELINES && -n $RAW && ! -f $RAW/train.en ]]; then
    echo "error: RAW=$RAW: no train.en there (cp -r ../shared/data/multi30k $RAW, and carry it)" >&2
    exit 2
fi
if [[ -n $WHEELS ]] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >"$OUT/device.txt" 2>&1
cp "$KEPT" "$OUT/references.jsonl"
touch "$OUT/supernet_scores.jsonl"
[[ -f $KEPT_SCORES ]] && cp "$KEPT_SCORES" "$OUT/supernet_scores.jsonl"
export DEVICE=${DEVICE:-cuda} JOBS=${JOBS:-16} STEPS=${STEPS:-references} NICE=${NICE:-0}
export LEDGER=$OUT/references.jsonl SCORES=$OUT/supernet_scores.jsonl
export PYTHON=${PYTHON:-python3} WORK=${WORK:-runs/study15}
baselines_pid=
if [[ -n $BASELINES ]]; then
    touch "$OUT/models.jsonl"
    [[ -f $KEPT_MODELS ]] && cp "$KEPT_MODELS" "$OUT/models.jsonl"
    raw=()
    [[ -n $RAW ]] && raw=(--trainpref "$RAW/train" --validpref "$RAW/val"
        --testpref "$RAW/test_2016_flickr")
    mkdir -p "$WORK/logs"
    # the pipeline's workers die with it (PR_SET_PDEATHSIG), so the timeout stops them all
    timeout "${LIMIT_S:-480}" "$PYTHON" -m hat pipeline --configs "$BASELINES" \
        --stop-after baselines --lat-device "$DEVICE" --train-jobs "${BASELINE_JOBS:-12}" \
        --run-dir "$WORK/baselines" --results-ledger "$OUT/models.jsonl" "${raw[@]}" \
        >"$WORK/logs/baselines.log" 2>&1 &
    baselines_pid=$!
fi
timeout "${LIMIT_S:-480}" bench/ranking_study.sh  # the signal goes to its process group too
status=$?
if [[ -n $baselines_pid ]]; then
    wait "$baselines_pid"
    baselines_status=$?
    ((status == 0)) && status=$baselines_status
    echo "baselines in the ledger: $(wc -l <"$OUT/models.jsonl") ($( ([[ -f $KEPT_MODELS ]] &&
        wc -l <"$KEPT_MODELS") || echo 0) before)"
fi
tar czf "$OUT/logs.tgz" -C "$WORK" logs
echo "references in the ledger: $(wc -l <"$OUT/references.jsonl") ($(wc -l <"$KEPT") before)"
before=$( ([[ -f $KEPT_SCORES ]] && wc -l <"$KEPT_SCORES") || echo 0)
echo "supernet scores in the ledger: $(wc -l <"$OUT/supernet_scores.jsonl") ($before before)"
exit "$status"
