#!/usr/bin/env bash
# The LLM judge for the DaGRPO recipes: an OpenAI-compatible endpoint the reward workers call.
#
# Either serve an open judge model with vLLM (default) or SGLang on GPUs of the same cluster (not
# the training GPUs):
#   JUDGE_GPUS=0,1,2,3 JUDGE_MODEL=Qwen/Qwen2.5-72B-Instruct bash scripts/serve_judge.sh [server args]
# then start training on the other GPUs (CUDA_VISIBLE_DEVICES=4,5,6,7 GPUS=4 ...) with
#   JUDGE_BASE_URL=http://<this host>:$JUDGE_PORT/v1 JUDGE_MODEL=<same name>
#
# Or use a hosted OpenAI-compatible API (the paper used GPT-4o): set JUDGE_BASE_URL; the script
# then serves nothing and only checks the endpoint (through HTTPS_PROXY/NO_PROXY as the judge
# client does; loopback hosts are always reached directly):
#   JUDGE_BASE_URL=https://api.openai.com/v1 JUDGE_MODEL=gpt-4o JUDGE_API_KEY_ENV=OPENAI_API_KEY \
#       bash scripts/serve_judge.sh
#
# Prefix caching is on: the judge template (dagrpo-judge-v2) puts the instructions, then the
# group's problem and reference first, so every response of a group after the first is
# prefilled only for its own part. The server reports cached tokens (judge/cached_prompt_tokens).
#
# Sizing (docs/judge.md "Sizing for a real server"): the server sees up to
#   judge.max_concurrency (32) x reward.num_workers (verl: 8) = 256 requests at once;
# keep that at or below JUDGE_MAX_NUM_SEQS so that requests wait in the client (which does not
# count against judge.timeout_s), not in the server's queue (which does).
#
# Environment (defaults in brackets):
#   JUDGE_ENGINE       vllm or sglang                      [vllm]
#   JUDGE_MODEL        model to serve / served name        [Qwen/Qwen2.5-72B-Instruct]
#   JUDGE_GPUS         CUDA_VISIBLE_DEVICES of the server  [0,1,2,3]
#   JUDGE_TP           tensor parallel size                [number of JUDGE_GPUS]
#   JUDGE_PORT         port                                [8000]
#   JUDGE_MAX_MODEL_LEN  context (question + reference + response + verdict) [32768]
#   JUDGE_MAX_NUM_SEQS requests the server runs at once    [256]
#   JUDGE_API_KEY_ENV  name of the variable with the API key; a local server then requires it [none]
#   JUDGE_BASE_URL     use this endpoint instead of serving one
#   DRY_RUN=1          print the command and stop
set -euo pipefail

JUDGE_ENGINE=${JUDGE_ENGINE:-vllm}
JUDGE_MODEL=${JUDGE_MODEL:-Qwen/Qwen2.5-72B-Instruct}
JUDGE_PORT=${JUDGE_PORT:-8000}
JUDGE_MAX_NUM_SEQS=${JUDGE_MAX_NUM_SEQS:-256}

if [[ -n "${JUDGE_BASE_URL:-}" ]]; then
    shown_url=$(sed -E 's#//[^/@]*@#//***@#' <<<"$JUDGE_BASE_URL")  # credentials never printed
    echo "== judge: external endpoint $shown_url, model $JUDGE_MODEL (nothing to serve)"
    echo "== training overrides (the DaGRPO recipes read the same variables):"
    echo "    reward.custom_reward_function.reward_kwargs.judge.backend=openai"
    echo "    ++reward.custom_reward_function.reward_kwargs.judge.base_url=$shown_url"
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
    # /models next to /chat/completions, query string (e.g. ?api-version=) kept
    base=${JUDGE_BASE_URL%%\?*}
    query=${JUDGE_BASE_URL#"$base"}
    loopback=127.0.0.1,localhost,::1
    NO_PROXY="${NO_PROXY:+$NO_PROXY,}$loopback" no_proxy="${no_proxy:+$no_proxy,}$loopback" \
        curl -fsS --max-time 30 "${auth[@]}" "${base%/}/models$query" >/dev/null \
        && echo "== judge: $shown_url answered /models" \
        || { echo "error: /models of $shown_url did not answer; check JUDGE_BASE_URL, the key, HTTPS_PROXY/NO_PROXY." >&2
             exit 1; }
    exit 0
fi

JUDGE_GPUS=${JUDGE_GPUS:-0,1,2,3}
IFS=, read -r -a _gpus <<<"$JUDGE_GPUS"
JUDGE_TP=${JUDGE_TP:-${#_gpus[@]}}
case "$JUDGE_ENGINE" in
    vllm)
        cmd=(vllm serve "$JUDGE_MODEL"
            --host 0.0.0.0 --port "$JUDGE_PORT"
            --served-model-name "$JUDGE_MODEL"
            --tensor-parallel-size "$JUDGE_TP"
            --max-model-len "${JUDGE_MAX_MODEL_LEN:-32768}"
            --max-num-seqs "$JUDGE_MAX_NUM_SEQS"
            --enable-prefix-caching
            --enable-prompt-tokens-details)
        ;;
    sglang)  # the radix (prefix) cache is on by default; --enable-cache-report returns cached tokens
        cmd=(python -m sglang.launch_server --model-path "$JUDGE_MODEL"
            --host 0.0.0.0 --port "$JUDGE_PORT"
            --served-model-name "$JUDGE_MODEL"
            --tp "$JUDGE_TP"
            --context-length "${JUDGE_MAX_MODEL_LEN:-32768}"
            --max-running-requests "$JUDGE_MAX_NUM_SEQS"
            --enable-cache-report)
        ;;
    *)
        echo "error: JUDGE_ENGINE=$JUDGE_ENGINE; use vllm or sglang." >&2
        exit 2
        ;;
esac
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

echo "== judge: serving $JUDGE_MODEL with $JUDGE_ENGINE on GPUs $JUDGE_GPUS (tp=$JUDGE_TP) at http://$(hostname):$JUDGE_PORT/v1"
echo "== train with: JUDGE_BASE_URL=http://$(hostname):$JUDGE_PORT/v1 JUDGE_MODEL=$JUDGE_MODEL"
echo "== keep judge.max_concurrency x reward.num_workers <= $JUDGE_MAX_NUM_SEQS (e.g. 32 x 8 = 256)"
echo "CUDA_VISIBLE_DEVICES=$JUDGE_GPUS ${shown[*]}"
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    exit 0
fi
CUDA_VISIBLE_DEVICES=$JUDGE_GPUS exec "${cmd[@]}"
