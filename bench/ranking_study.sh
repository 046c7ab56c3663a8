#!/usr/bin/env bash
# Issue #15's ranking study (docs/benchmarks.md, "The ranking study on the CPU", steps 1-3) as one
# command for any machine: the reference SubTransformers not yet in the ledger, JOBS side by side,
# and the supernets beside them (uniform sampling as HAT, sandwich + in-place distillation, and
# `sandwich-ce`: the sandwich rule with label-smoothed CE for every SubTransformer, --distill-weight
# 0); then a few-shot supernet (one part per decoder depth, each started from the uniform supernet
# at FEWSHOT_FROM updates and trained FEWSHOT_UPDATES on its depth alone: equal updates in all when
# FEWSHOT_FROM + depths x FEWSHOT_UPDATES = UNIFORM_UPDATES); then the ranking of every finished
# reference by each supernet and the free proxies. Every step resumes after a kill; a finished
# reference is taken from the ledger. The supernets train in stages of STAGE updates (one run: the
# spaces' inverse-sqrt schedule does not depend on the cap), each stage's checkpoint scoring every
# reference into the SCORES ledger at once (as NAME_UPDATES: uniform_2000, ...; the few-shot
# supernet as fewshot_TOTAL, its start's updates included), so the ranking needs no supernet
# checkpoint: one that did not survive to the session that ranks is ranked from its scores. Each
# stage's checkpoint is kept (checkpoint_EPOCH_UPDATES.pt), for the search in the winning stage
# while it survives. A supernet's or few-shot part's directory records the settings it began
# with (study_settings.txt) and trains on only under them; a reference's records its recipe.
#
#   bench/ranking_study.sh                         # this CPU: 2 jobs, one thread each, nice 19
#   DEVICE=cuda JOBS=16 bench/ranking_study.sh     # a GPU machine: everything side by side
#   STEPS=references bench/ranking_study.sh        # some of: references supernets fewshot ranking
#
# Settings (environment): SPACE DATA WORK LEDGER SCORES DEVICE JOBS THREADS NICE
# UNIFORM_UPDATES SANDWICH_UPDATES STAGE SUPERNETS FEWSHOT_FROM FEWSHOT_UPDATES STEPS; and,
# passed on only when set (else bench/supernet_ranking.py's and train.py's defaults, which are
# the study's), PER_DEPTH UPDATES VALIDATE_EVERY MAX_LEN_B PRECISION. DATA is made by `hat
# preprocess` of Multi30k when missing (needs ../shared/data/multi30k). Logs: WORK/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

SPACE=${SPACE:-configs/multi30k/supertransformer/space1.yml}
DATA=${DATA:-runs/study15/data}
WORK=${WORK:-runs/study15}
LEDGER=${LEDGER:-docs/results/multi30k_study/references.jsonl}
SCORES=${SCORES:-docs/results/multi30k_study/supernet_scores.jsonl}
DEVICE=${DEVICE:-cpu}
JOBS=${JOBS:-2}
THREADS=${THREADS:-1}
NICE=${NICE:-19}
UNIFORM_UPDATES=${UNIFORM_UPDATES:-24000}
SANDWICH_UPDATES=${SANDWICH_UPDATES:-6000}
STAGE=${STAGE:-2000}  # updates between two scorings of a supernet
SUPERNETS=${SUPERNETS:-uniform sandwich sandwich-ce}  # the supernets step's (side by side)
declare -A sampling_of=([uniform]=uniform [sandwich]=sandwich [sandwich-ce]=sandwich)
# --distill-weight of each (unused by uniform)
declare -A distill_of=([uniform]=1 [sandwich]=1 [sandwich-ce]=0)
FEWSHOT_FROM=${FEWSHOT_FROM:-12000}  # a uniform stage (each stage's checkpoint is kept)
FEWSHOT_UPDATES=${FEWSHOT_UPDATES:-2000}
STEPS=${STEPS:-references supernets fewshot ranking}
PYTHON=${PYTHON:-python}

if ! [[ $STAGE =~ ^[1-9][0-9]*$ ]]; then
    echo "error: STAGE=$STAGE: not a positive number of updates" >&2 && exit 2
fi
for name in $SUPERNETS; do
    if [[ -z ${sampling_of[$name]:-} ]]; then
        echo "error: SUPERNETS: $name is not one of: ${!sampling_of[*]}" >&2 && exit 2
    fi
done
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
        run "${refs[@]}" --space-from "$init" --shard "$i/$JOBS" >>"$WORK/logs/refs$i.log" 2>&1 &
        pids+=($!)
    done
fi
score() {  # NAME=CHECKPOINT[,CHECKPOINT...]: every reference's loss into the SCORES ledger
    run "${refs[@]}" --space-from "$init" --scores-ledger "$SCORES" --score-only \
        --supernet "$1" >>"$WORK/logs/scores.log" 2>&1 ||
        { echo "error: scoring $1 failed: see $WORK/logs/scores.log" >&2 && return 1; }
}
updates_of() {  # the updates a checkpoint was saved at; 0 if there is none
    [[ -f $1 ]] || { echo 0 && return; }
    "$PYTHON" -c "import sys; from hat.checkpoint import load_checkpoint
print(load_checkpoint(sys.argv[1])['train_state']['updates'])" "$1"
}
claim() {  # DIR SETTING...: a run directory trains on only under the settings it began with
    local stamp=$1/study_settings.txt want
    want=$(printf '%s\n' "${@:2}")
    if [[ -f $stamp && $(<"$stamp") != "$want" ]]; then
        echo "error: $1 began with other settings ($(paste -sd ' ' "$stamp")), not" \
            "$(paste -sd ' ' <<<"$want"): use another WORK, or delete it" >&2
        return 2
    fi
    mkdir -p "$1" && printf '%s\n' "$want" >"$stamp"
}
supernet() {  # NAME CAP: trained to CAP in stages of STAGE updates, scored after each
    local dir=$WORK/super_$1 m reached
    claim "$dir" "space=$SPACE" "data=$DATA" "sampling=${sampling_of[$1]}" \
        "distill=${distill_of[$1]}" "precision=${PRECISION:-default}" || return 2
    for ((m = STAGE; m < $2 + STAGE; m += STAGE)); do
        ((m > $2)) && m=$2 # the last stage ends at the cap
        reached=$(updates_of "$dir/checkpoint_last.pt")
        if ((reached > m)); then # scored before it went on, unless the scores went elsewhere
            grep -q "\"name\": \"$1_$m\"" "$SCORES" 2>/dev/null ||
                echo "warning: $1 is past stage $m, which $SCORES has no score of" >&2
            continue
        fi
        if ((reached < m)); then
            run train.py --configs="$SPACE" --data "$DATA" --keep-last-epochs 1 \
                --save-interval-updates "$STAGE" "${cpu_flag[@]}" "${precision[@]}" \
                --sampling "${sampling_of[$1]}" --distill-weight "${distill_of[$1]}" \
                --max-update "$m" --save-dir "$dir" \
                >>"$WORK/logs/super_$1.log" 2>&1 || return 1
        fi
        score "$1_$m=$dir/checkpoint_last.pt" || return 1
    done
}
declare -A caps=([uniform]=$UNIFORM_UPDATES [sandwich]=$SANDWICH_UPDATES
    [sandwich-ce]=$SANDWICH_UPDATES)
if step supernets; then
    for name in $SUPERNETS; do
        supernet "$name" "${caps[$name]}" &
        pids+=($!)
    done
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
            claim "$part" "space=$SPACE" "data=$DATA" "from=$start" \
                "precision=${PRECISION:-default}" || exit 2
            if [[ ! -f $part/checkpoint_last.pt ]]; then  # the weights alone: from update 0
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
    parts=()
    for d in "${depths[@]}"; do
        part=$(ls "$WORK"/fewshot_d"$d"/checkpoint_*_"$FEWSHOT_UPDATES".pt 2>/dev/null | head -1)
        if [[ -z $part ]]; then
            echo "error: the few-shot part of depth $d has no checkpoint at $FEWSHOT_UPDATES" >&2
            exit 1
        fi
        parts+=("$part")
    done
    total=$((FEWSHOT_FROM + ${#depths[@]} * FEWSHOT_UPDATES))
    score "fewshot_$total=$(IFS=, && echo "${parts[*]}")" || exit 1
fi

if step ranking; then  # every supernet scored in the SCORES ledger, at each of its stages
    run "${refs[@]}" --space-from "$init" --scores-ledger "$SCORES" --no-train \
        --out "$WORK/ranking.json" 2>>"$WORK/logs/ranking.log"
fi
