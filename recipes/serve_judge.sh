#!/usr/bin/env bash
# The LLM judge for the DaGRPO recipes: an OpenAI-compatible endpoint the reward workers call.
#
# Either serve an open judge model with vLLM on GPUs of the same cluster (not the training GPUs):
#   JUDGE_GPUS=0,1,2,3 JUDGE_MODEL=Qwen/Qwen2.5-72B-Instruct bash recipes/serve_judge.sh [vllm serve args]
# then start training on the other GPUs (CUDA_VISIBLE_DEVICES=4,5,6,7 GPUS=4 ...) with
#   JUDGE_BASE_URL=http://<this host>:$JUDGE_PORT/v1 JUDGE_MODEL=<same name>
#
# Or use a hosted OpenAI-compatible API (the paper used GPT-4o): set JUDGE_BASE_URL; the script
# then serves nothing and only checks the endpoint:
#   JUDGE_BASE_URL=https://api.openai.com/v1 JUDGE_MODEL=gpt-4o JUDGE_API_KEY_ENV=OPENAI_API_KEY \
#       bash recipes/serve_judge.sh
#
# Environment (defaults in brackets):
#   JUDGE_MODEL        model to serve / served name       [Qwen/Qwen2.5-72B-Instruct]
#   JUDGE_GPUS         CUDA_VISIBLE_DEVICES of the server [0,1,2,3]
#   JUDGE_TP           tensor parallel size               [number of JUDGE_GPUS]
#   JUDGE_PORT         port                               [8000]
#   JUDGE_MAX_MODEL_LEN  context (question + reference + response + verdict) [32768]
#   JUDGE_API_KEY_ENV  name of the variable with the API key; a local server then requires it [none]
#   JUDGE_BASE_URL     use this endpoint instead of serving one
#   DRY_RUN=1          print the command and stop
set -euo pipefail

JUDGE_MODEL=${JUDGE_MODEL:-Qwen/Qwen2.5-72B-Instruct}
JUDGE_PORT=${JUDGE_PORT:-8000}

if [[ -n "${JUDGE_BASE_URL:-}" ]]; then
    echo "== judge: external endpoint $JUDGE_BASE_URL, model $JUDGE_MODEL (nothing to serve)"
    echo "== training overrides (the DaGRPO recipes read the same variables):"
    echo "    reward.custom_reward_function.reward_kwargs.judge.backend=openai"
    echo "    ++reward.custom_reward_function.reward_kwargs.judge.base_url=$JUDGE_BASE_URL"
    echo "    ++reward.custom_reward_function.reward_kwargs.judge.model=$JUDGE_MODEL"
    if [[ -n "${JUDGE_API_KEY_ENV:-}" ]]; then
        echo "    ++reward.custom_reward_function.reward_kwargs.judge.api_key_env=$JUDGE_API_KEY_ENV"
    fi
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        exit 0
    fi
    auth=()
    if [[ -n "${JUDGE_API_KEY_ENV:-}" ]]; then
        if [[ -z "${!JUDGE_API_KEY_ENV:-}" ]]; then
            echo "error: JUDGE_API_KEY_ENV=$JUDGE_API_KEY_ENV but \$$JUDGE_API_KEY_ENV is empty; export the key." >&2
            exit 2
        fi
        auth=(-H "Authorization: Bearer ${!JUDGE_API_KEY_ENV}")
    fi
    curl -fsS "${auth[@]}" "${JUDGE_BASE_URL%/}/models" >/dev/null \
        && echo "== judge: $JUDGE_BASE_URL/models answered" \
        || { echo "error: $JUDGE_BASE_URL/models did not answer; check JUDGE_BASE_URL and the key." >&2; exit 1; }
    exit 0
fi

JUDGE_GPUS=${JUDGE_GPUS:-0,1,2,3}
IFS=, read -r -a _gpus <<<"$JUDGE_GPUS"
JUDGE_TP=${JUDGE_TP:-${#_gpus[@]}}
cmd=(vllm serve "$JUDGE_MODEL"
    --host 0.0.0.0 --port "$JUDGE_PORT"
    --served-model-name "$JUDGE_MODEL"
    --tensor-parallel-size "$JUDGE_TP"
    --max-model-len "${JUDGE_MAX_MODEL_LEN:-32768}"
    --enable-prefix-caching)
shown=("${cmd[@]}")
if [[ -n "${JUDGE_API_KEY_ENV:-}" ]]; then
    if [[ -z "${!JUDGE_API_KEY_ENV:-}" ]]; then
        echo "error: JUDGE_API_KEY_ENV=$JUDGE_API_KEY_ENV but \$$JUDGE_API_KEY_ENV is empty; export the key." >&2
        exit 2
    fi
    cmd+=(--api-key "${!JUDGE_API_KEY_ENV}")
    shown+=(--api-key '***')
fi
cmd+=("$@")
shown+=("$@")

echo "== judge: serving $JUDGE_MODEL on GPUs $JUDGE_GPUS (tp=$JUDGE_TP) at http://$(hostname):$JUDGE_PORT/v1"
echo "== train with: JUDGE_BASE_URL=http://$(hostname):$JUDGE_PORT/v1 JUDGE_MODEL=$JUDGE_MODEL"
echo "CUDA_VISIBLE_DEVICES=$JUDGE_GPUS ${shown[*]}"
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    exit 0
fi
CUDA_VISIBLE_DEVICES=$JUDGE_GPUS exec "${cmd[@]}"
