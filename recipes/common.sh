# Shared by the recipes/run_*.sh scripts: environment defaults, the paper's settings, the launcher.
# Source it from a recipe; do not run it.
#
# Environment (defaults in brackets):
#   MODEL_PATH      policy model                         [Elliott/Qwen2.5-Math-7B-16k-think]
#                   The paper trains Qwen2.5-Math-7B, whose config.json holds a 4,096-token context
#                   (max_position_embeddings); verl would cap vLLM (max_model_len) at 4,096 and cut
#                   on-policy responses there while anchors keep 8,192 tokens. The default is LUFFY's
#                   16k variant of the same weights (rope_theta 40000, max_position_embeddings 16384),
#                   which LUFFY trains with these settings; the start-up check refuses a model whose
#                   context is shorter than MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH.
#   MAX_PROMPT_LENGTH, MAX_RESPONSE_LENGTH  token budgets [1024, 8192]
#   TRAIN_FILE      training parquet from `python -m dagrpo_verl.data.prepare`
#                                                        [data/openr1/train.parquet]
#   VAL_FILES       validation parquets, comma-separated [data/benchmarks/valid.all.parquet]
#   NNODES, GPUS    nodes and GPUs per node              [1, 8]
#   ROLLOUT_TP      vLLM tensor parallel size of the rollout [2]
#   MAX_TOKEN_LEN_PER_GPU  dynamic-batch token budget per GPU [16384]
#   PROJECT, EXPERIMENT    tracking names                [dagrpo, <recipe name>]
#   OUT_DIR         checkpoints, TensorBoard logs, verl's metrics file [outputs/$EXPERIMENT]
#   PYTHON          interpreter                          [python3]
#   DRY_RUN=1       print the command and stop
# Any argument of the recipe is appended as a hydra override ("$@"), so it wins over the defaults.
# Multi-node (NNODES > 1): start a Ray cluster first (`ray start --head` on the head node,
# `ray start --address=<head>:6379` on the others) and run the recipe on the head node.

set -euo pipefail

MODEL_PATH=${MODEL_PATH:-Elliott/Qwen2.5-Math-7B-16k-think}
MAX_PROMPT_LENGTH=${MAX_PROMPT_LENGTH:-1024}
MAX_RESPONSE_LENGTH=${MAX_RESPONSE_LENGTH:-8192}
TRAIN_FILE=${TRAIN_FILE:-data/openr1/train.parquet}
VAL_FILES=${VAL_FILES:-data/benchmarks/valid.all.parquet}
NNODES=${NNODES:-1}
GPUS=${GPUS:-8}
ROLLOUT_TP=${ROLLOUT_TP:-2}
MAX_TOKEN_LEN_PER_GPU=${MAX_TOKEN_LEN_PER_GPU:-16384}
PROJECT=${PROJECT:-dagrpo}
EXPERIMENT=${EXPERIMENT:-$RECIPE}
OUT_DIR=${OUT_DIR:-outputs/$EXPERIMENT}
PYTHON=${PYTHON:-python3}

# hydra list literal from a comma-separated list: a,b -> ['a','b']
_hydra_list() {
    local IFS=,
    local items=()
    for item in $1; do items+=("'$item'"); done
    echo "[${items[*]}]"
}

# The paper's training settings: the preset configs/experiment/paper.yaml (shared by every run, usable
# with both entry points and copyable into your own config), then what depends on this machine and the
# environment above. The rollout's max_model_len is prompt + response: verl's rollout server refuses a model
# whose context is shorter.
CONFIGS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../configs" && pwd)
PAPER_ARGS=(
    "--config-dir=$CONFIGS_DIR"
    +experiment=paper
    "data.train_files=$(_hydra_list "$TRAIN_FILE")"
    "data.val_files=$(_hydra_list "$VAL_FILES")"
    "data.max_prompt_length=$MAX_PROMPT_LENGTH"
    "data.max_response_length=$MAX_RESPONSE_LENGTH"
    "actor_rollout_ref.model.path=$MODEL_PATH"
    "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=$MAX_TOKEN_LEN_PER_GPU"
    "actor_rollout_ref.rollout.tensor_model_parallel_size=$ROLLOUT_TP"
    "actor_rollout_ref.rollout.max_model_len=$((MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH))"
    "trainer.nnodes=$NNODES"
    "trainer.n_gpus_per_node=$GPUS"
    "trainer.project_name=$PROJECT"
    "trainer.experiment_name=$EXPERIMENT"
    "trainer.default_local_dir=$OUT_DIR/checkpoints"
)

# Judge settings for the DaGRPO recipes (see scripts/serve_judge.sh and docs/judge.md):
#   JUDGE_BASE_URL     OpenAI-compatible endpoint [http://127.0.0.1:${JUDGE_PORT:-8000}/v1]
#   JUDGE_MODEL        served model name          [Qwen/Qwen2.5-72B-Instruct]
#   JUDGE_API_KEY_ENV  name of the variable holding the API key (never the key itself) [none]
#   JUDGE_CONCURRENCY  requests in flight per reward worker [32] (x 8 reward workers = serve_judge.sh max-num-seqs 256)
_JUDGE=reward.custom_reward_function.reward_kwargs.judge
JUDGE_ARGS=(
    "$_JUDGE.backend=openai"
    "++$_JUDGE.base_url=${JUDGE_BASE_URL:-http://127.0.0.1:${JUDGE_PORT:-8000}/v1}"
    "++$_JUDGE.model=${JUDGE_MODEL:-Qwen/Qwen2.5-72B-Instruct}"
    "++$_JUDGE.max_concurrency=${JUDGE_CONCURRENCY:-32}"
)
if [[ -n "${JUDGE_API_KEY_ENV:-}" ]]; then
    JUDGE_ARGS+=("++$_JUDGE.api_key_env=$JUDGE_API_KEY_ENV")
fi

# Single-quote an argument for printing when it holds characters the shell would interpret.
_quote() {
    if [[ "$1" =~ ^[A-Za-z0-9_./:=+,@%-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# launch MODULE OVERRIDE... : print the command, then replace the shell with it (unless DRY_RUN=1).
launch() {
    local cmd=("$PYTHON" -m "$@")
    export TENSORBOARD_DIR=${TENSORBOARD_DIR:-$OUT_DIR/tensorboard}
    export VERL_FILE_LOGGER_PATH=${VERL_FILE_LOGGER_PATH:-$OUT_DIR/verl_metrics.jsonl}
    echo "== $RECIPE: $NNODES node(s) x $GPUS GPU(s), model $MODEL_PATH, output $OUT_DIR"
    echo "== TENSORBOARD_DIR=$TENSORBOARD_DIR VERL_FILE_LOGGER_PATH=$VERL_FILE_LOGGER_PATH"
    printf '%s -m %s' "$(_quote "$PYTHON")" "$(_quote "$1")"
    local arg
    for arg in "${cmd[@]:3}"; do
        printf ' \\\n    %s' "$(_quote "$arg")"
    done
    printf '\n'
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        return 0
    fi
    mkdir -p "$OUT_DIR"
    # verl's own entry opens the metrics file with mode "wb", which would erase an earlier start's
    # steps: move them aside (python -m dagrpo_verl.main appends on resume, dagrpo_verl/integration/metrics_file.py)
    if [[ "$1" != dagrpo_verl.main && -s "$VERL_FILE_LOGGER_PATH" ]]; then
        local kept
        kept="$VERL_FILE_LOGGER_PATH.previous-$(date +%Y%m%d-%H%M%S)-$$"
        mv "$VERL_FILE_LOGGER_PATH" "$kept"
        echo "== earlier metrics moved to $kept"
    fi
    exec "${cmd[@]}"
}
