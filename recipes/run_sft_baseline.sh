#!/usr/bin/env bash
# Baseline: supervised fine-tuning (SFT) on the expert solutions of the training data - the same
# texts DaGRPO mixes in as anchors - with verl 0.9.1's own SFT trainer (torchrun -m
# verl.trainer.sft_trainer, FSDP engine, config sft_trainer_engine.yaml).
#
#   MODEL_PATH=... TRAIN_FILE=... bash recipes/run_sft_baseline.sh [hydra overrides]
#
# Step 1: `python -m dagrpo_verl.data.sft` turns TRAIN_FILE (the output of
#   `python -m dagrpo_verl.data.prepare`) into verl's SFT layout (prompt messages + the expert
#   solution as the assistant turn) and tokenizes every row with verl's MultiTurnSFTDataset: rows
#   longer than SFT_MAX_LENGTH tokens are dropped and counted (printed, and in the report file).
# Step 2: verl's SFT trainer, one process per GPU.
#
# Schedule (the paper gives none; docs/sft.md says why these): LUFFY's SFT baseline on the same
# data and model family - lr 5e-5, 10% linear warm-up, 3 epochs, 64 conversations per step - with
# the rest of its trainer's (OpenRLHF train_sft) defaults: cosine decay to 0.1 x lr, AdamW betas
# (0.9, 0.95), no weight decay, gradient clipping at 1.0. About 2,150 steps on OpenR1-Math-46k.
# A checkpoint after every epoch (and the last step) includes the full Hugging Face model in
# $OUT_DIR/checkpoints/global_step_N/huggingface; `python -m dagrpo_verl.eval --model` takes it
# (or the checkpoint directory itself).
#
# Environment (recipes/common.sh: MODEL_PATH TRAIN_FILE MAX_PROMPT_LENGTH MAX_RESPONSE_LENGTH NNODES GPUS
# MAX_TOKEN_LEN_PER_GPU PROJECT EXPERIMENT OUT_DIR PYTHON DRY_RUN; VAL_FILES is not used: the
# benchmarks have no expert solutions):
#   SFT_MAX_LENGTH  tokens per conversation, chat template included
#                   [MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH = 9216, the RL recipes' budget]
#   SFT_FILE        the converted training data                     [$OUT_DIR/sft_train.parquet]
#   SFT_ON_INVALID  rows verl cannot train on: drop and count, or fail [drop]
#   SFT_CONVERT     1: run step 1; 0: train on an existing SFT_FILE [1]
#   NODE_RANK, MASTER_ADDR, MASTER_PORT  torchrun rendezvous when NNODES > 1: run this script on
#                   every node with its NODE_RANK (0 on MASTER_ADDR) [-, -, 29500]
RECIPE=${RECIPE:-sft_baseline}
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SFT_MAX_LENGTH=${SFT_MAX_LENGTH:-$((MAX_PROMPT_LENGTH + MAX_RESPONSE_LENGTH))}
SFT_FILE=${SFT_FILE:-$OUT_DIR/sft_train.parquet}
SFT_ON_INVALID=${SFT_ON_INVALID:-drop}
SFT_CONVERT=${SFT_CONVERT:-1}

if (( MAX_TOKEN_LEN_PER_GPU < SFT_MAX_LENGTH )); then
    echo "error: MAX_TOKEN_LEN_PER_GPU=$MAX_TOKEN_LEN_PER_GPU is below SFT_MAX_LENGTH=$SFT_MAX_LENGTH:" \
        "a conversation must fit into one micro-batch; raise MAX_TOKEN_LEN_PER_GPU." >&2
    exit 2
fi

convert=("$PYTHON" -m dagrpo_verl.data.sft --input "$TRAIN_FILE" --output "$SFT_FILE"
    --tokenizer "$MODEL_PATH" --max-length "$SFT_MAX_LENGTH" --on-invalid "$SFT_ON_INVALID"
    --report "${SFT_FILE%.parquet}.report.json")
if [[ "$SFT_CONVERT" == 1 ]]; then
    echo "== $RECIPE: expert solutions of $TRAIN_FILE -> $SFT_FILE"
    printf '%s' "$(_quote "${convert[0]}")"
    for arg in "${convert[@]:1}"; do printf ' %s' "$(_quote "$arg")"; done
    printf '\n'
    if [[ "${DRY_RUN:-0}" != 1 ]]; then
        "${convert[@]}"
    fi
fi

if (( NNODES > 1 )); then
    rendezvous=(--nnodes="$NNODES"
        --node_rank="${NODE_RANK:?NNODES > 1: set NODE_RANK on every node (0 on MASTER_ADDR)}"
        --master_addr="${MASTER_ADDR:?NNODES > 1: set MASTER_ADDR to the address of the NODE_RANK=0 node}"
        --master_port="${MASTER_PORT:-29500}")
else
    rendezvous=(--standalone --nnodes=1)
fi

launch torch.distributed.run "${rendezvous[@]}" --nproc_per_node="$GPUS" -m verl.trainer.sft_trainer \
    "data.train_files=$(_hydra_list "$SFT_FILE")" \
    data.val_files=null \
    data.messages_key=messages \
    "data.max_length=$SFT_MAX_LENGTH" \
    data.truncation=error \
    data.train_batch_size=64 \
    data.use_dynamic_bsz=true \
    "data.max_token_len_per_gpu=$MAX_TOKEN_LEN_PER_GPU" \
    "model.path=$MODEL_PATH" \
    optim.lr=5e-5 \
    optim.lr_warmup_steps_ratio=0.1 \
    optim.lr_scheduler_type=cosine \
    optim.min_lr_ratio=0.1 \
    "optim.betas=[0.9,0.95]" \
    optim.weight_decay=0.0 \
    optim.clip_grad=1.0 \
    trainer.total_epochs=3 \
    trainer.save_freq=after_each_epoch \
    "checkpoint.save_contents=['model','optimizer','extra','hf_model']" \
    "trainer.nnodes=$NNODES" \
    "trainer.n_gpus_per_node=$GPUS" \
    "trainer.project_name=$PROJECT" \
    "trainer.experiment_name=$EXPERIMENT" \
    "trainer.logger=['console','tensorboard','file']" \
    "trainer.default_local_dir=$OUT_DIR/checkpoints" \
    "$@"
