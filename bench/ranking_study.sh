#!/usr/bin/env bash
# Issue #15's ranking study (docs/benchmarks.md, "The ranking study on the CPU", steps 1-3) as
# one command for any machine: the reference SubTransformers not yet in the ledger, JOBS side by
# side, and the two supernets beside them (uniform sampling as HAT, sandwich + in-place
# distillation); then a few-shot supernet (one part per decoder depth, each started from the
# uniform supernet at FEWSHOT_FROM updates and trained FEWSHOT_UPDATES on its depth alone:
# equal updates in all when FEWSHOT_FROM + depths x FEWSHOT_UPDATES = UNIFORM_UPDATES); then the
# ranking of every finished reference by each supernet and the free proxies. Every step
# resumes after a kill; a finished reference is taken from the ledger.
#
#   bench/ranking_study.sh                         # this CPU: 2 jobs, one thread each, nice 19
#   DEVICE=cuda JOBS=16 bench/ranking_study.sh     # a GPU machine: everything side by side
#   STEPS=references bench/ranking_study.sh        # some steps (references supernets fewshot ranking)
#
# Settings (environment): SPACE DATA WORK LEDGER DEVICE JOBS THREADS NICE UNIFORM_UPDATES
# SANDWICH_UPDATES FEWSHOT_FROM FEWSHOT_UPDATES STEPS; and, passed on only when set (else bench/supernet_ranking.py's and
# train.py's defaults, which are the study's), PER_DEPTH UPDATES VALIDATE_EVERY MAX_LEN_B
# PRECISION. DATA is made by `hat preprocess` of Multi30k when missing (needs
# ../shared/data/multi30k). Logs: WORK/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

SPACE=${SPACE:-configs/multi30k/supertransformer/space1.yml}
DATA=${DATA:-runs/study15/data}
WORK=${WORK:-runs/study15}
LEDGER=${LEDGER:-docs/results/multi30k_study/references.jsonl}
DEVICE=${DEVICE:-cpu}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
NICE=${NICE:-19}
UNIFORM_UPDATES=${UNIFORM_UPDATES:-24000}
SANDWICH_UPDATES=${SANDWICH_UPDATES:-6000}
FEWSHOT_FROM=${FEWSHOT_FROM:-12000}  # a checkpoint of the uniform run (saved every SANDWICH_UPDATES)
FEWSHOT_UPDATES=${FEWSHOT_UPDATES:-2000}
STEPS=${STEPS:-references supernets fewshot ranking}
PYTHON=${PYTHON:-python}

mkdir -p "$WORK/logs"
run() { OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS nice -n "$NICE" "$PYTHON" "$@"; }
step() { [[ " $STEPS " == *" $1 "* ]]; }
cpu_flag=()
[[ $DEVICE == cpu ]] && cpu_flag=(--cpu)
precision=(${PRECISION:+--precision "$PRECISION"})

if [[ ! -d $DATA ]]; then
    echo "data: hat preprocess into $DATA" >&2
    run -m hat preprocess --configs configs/multi30k/preprocess.yml --destdir "$DATA"
fi
init=$WORK/init/checkpoint_last.pt  # the space and model settings, for the references' script
if [[ ! -f $init ]]; then
    run train.py --configs="$SPACE" --data "$DATA" --save-dir "$WORK/init" --max-update 1 \
        "${cpu_flag[@]}" >"$WORK/logs/init.log" 2>&1 ||
        { echo "error: the init run failed: see $WORK/logs/init.log" >&2 && exit 1; }
fi
refs=(bench/supernet_ranking.py --data "$DATA" --work-dir "$WORK/refs" --ledger "$LEDGER"
    --device "$DEVICE" "${precision[@]}" ${PER_DEPTH:+--per-depth "$PER_DEPTH"}
    ${UPDATES:+--updates "$UPDATES"} ${VALIDATE_EVERY:+--validate-every "$VALIDATE_EVERY"}
    ${MAX_LEN_B:+--max-len-b "$MAX_LEN_B"})

pids=()
if step references; then
    for ((i = 0; i < JOBS; i++)); do
        run "${refs[@]}" --supernet "init=$init" --shard "$i/$JOBS" >>"$WORK/logs/refs$i.log" 2>&1 &
        pids+=($!)
    done
fi
if step supernets; then
    common=(train.py --configs="$SPACE" --data "$DATA" --keep-last-epochs 1
        --save-interval-updates "$SANDWICH_UPDATES" "${cpu_flag[@]}" "${precision[@]}")
    run "${common[@]}" --sampling uniform --max-update "$UNIFORM_UPDATES" \
        --save-dir "$WORK/super_uniform" >>"$WORK/logs/super_uniform.log" 2>&1 &
    pids+=($!)
    run "${common[@]}" --sampling sandwich --max-update "$SANDWICH_UPDATES" \
        --save-dir "$WORK/super_sandwich" >>"$WORK/logs/super_sandwich.log" 2>&1 &
    pids+=($!)
fi
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if ((failed)); then
    echo "error: a training run failed: see $WORK/logs/" >&2
    exit 1
fi

depths=($("$PYTHON" -c "import sys; from hat.config import load_yaml
print(*load_yaml(sys.argv[1])['decoder-layer-num-choice'])" "$SPACE"))
if step fewshot; then
    start=$(ls "$WORK"/super_uniform/checkpoint_*_"$FEWSHOT_FROM".pt 2>/dev/null | head -1)
    if [[ -z $start ]]; then
        echo "error: no checkpoint of the uniform supernet at $FEWSHOT_FROM updates" >&2
        exit 1
    fi
    for ((i = 0; i < ${#depths[@]}; i += JOBS)); do  # JOBS parts side by side
        pids=()
        for d in "${depths[@]:i:JOBS}"; do
            part=$WORK/fewshot_d$d
            if [[ ! -f $part/checkpoint_last.pt ]]; then  # the weights alone: from update 0
                mkdir -p "$part"
                run -m hat average --inputs "$start" --output "$part/checkpoint_last.pt" >/dev/null
            fi
            run train.py --configs="$SPACE" --data "$DATA" --decoder-layer-num-choice "$d" \
                --sampling uniform --max-update "$FEWSHOT_UPDATES" --keep-last-epochs 1 \
                --save-interval-updates "$FEWSHOT_UPDATES" --save-dir "$part" "${cpu_flag[@]}" \
                "${precision[@]}" >>"$WORK/logs/fewshot_d$d.log" 2>&1 &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
        if ((failed)); then
            echo "error: a few-shot part failed: see $WORK/logs/" >&2
            exit 1
        fi
    done
fi

if step ranking; then
    # uniform at the sandwich's updates (equal updates) and at its own cap (about equal time)
    equal=$(ls "$WORK"/super_uniform/checkpoint_*_"$SANDWICH_UPDATES".pt 2>/dev/null | head -1)
    supernets=(--supernet "uniform=$WORK/super_uniform/checkpoint_last.pt"
        --supernet "sandwich=$WORK/super_sandwich/checkpoint_last.pt")
    [[ -n $equal ]] && supernets+=(--supernet "uniform_equal_updates=$equal")
    parts=()  # the few-shot supernet, when every part has finished
    for d in "${depths[@]}"; do
        parts+=($(ls "$WORK"/fewshot_d"$d"/checkpoint_*_"$FEWSHOT_UPDATES".pt 2>/dev/null | head -1))
    done
    if ((${#parts[@]} == ${#depths[@]})); then
        supernets+=(--supernet "fewshot=$(IFS=, && echo "${parts[*]}")")
    fi
    run "${refs[@]}" "${supernets[@]}" --no-train --out "$WORK/ranking.json" \
        2>>"$WORK/logs/ranking.log"
fi
