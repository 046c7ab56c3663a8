#!/usr/bin/env bash
# BLEU of a trained model on Multi30k test_2016_flickr, as HAT's test.sh:
#   configs/multi30k/test.sh MODEL CONFIG [sacre|normal] [SUBSET]
# MODEL: a checkpoint (compact model, trained SubTransformer, or SuperTransformer);
# CONFIG: the SubTransformer's YAML (picks it out of a SuperTransformer checkpoint).
set -euo pipefail
model=${1:?usage: $0 MODEL CONFIG [sacre|normal] [SUBSET]}
config=${2:?usage: $0 MODEL CONFIG [sacre|normal] [SUBSET]}
metric=${3:-sacre}
subset=${4:-test}
case "$metric" in
  sacre) scoring=sacrebleu ;;
  normal) scoring=normal ;;
  *) echo "metric must be sacre or normal, got '$metric'" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
python "$here/../../generate.py" --configs "$config" --data "${DATA:-data/binary/multi30k_en_de}" \
    --path "$model" --gen-subset "$subset" --beam 5 --lenpen 1.0 --scoring "$scoring" \
    --results-path "$(dirname "$model")/test_results"
