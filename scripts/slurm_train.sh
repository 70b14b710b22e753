#!/usr/bin/env bash
# SLURM example: one training stage on N nodes x G GPUs with torchrun (docs/training.md).
#
#   sbatch --nodes=2 --gpus-per-node=8 scripts/slurm_train.sh 1 config/train_reproduce_stage1.yaml \
#       --set data.root=/data/dualtalk
#   # interrupted (preempted, time limit)? submit the same with --resume appended
#
# Arguments: STAGE CONFIG [more rsatalker train arguments]. Run from the repository root
# (sbatch keeps the submission directory), with the project's virtualenv in .venv and
# train.out_dir / data.root / the feature cache on a file system every node sees.
# SLURM sends SIGTERM to the job steps before the time limit (--signal below): torchrun
# forwards it, every rank stops after the same step and rank 0 writes one checkpoint.
#SBATCH --job-name=rsatalker-train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@120
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: sbatch [options] $0 STAGE CONFIG [rsatalker train arguments...]" >&2
    exit 2
fi
STAGE=$1
CONFIG=$2
shift 2

VENV=${VENV:-.venv}
GPUS_PER_NODE=${SLURM_GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}
GPUS_PER_NODE=${GPUS_PER_NODE##*:}   # "a100:8" -> 8
NNODES=${SLURM_NNODES:-1}
MASTER_HOST=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)
MASTER_PORT=${MASTER_PORT:-29500}
# data loading threads per process: the node's CPUs shared by its GPUs
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( ${SLURM_CPUS_PER_TASK:-8} / GPUS_PER_NODE > 0 ? ${SLURM_CPUS_PER_TASK:-8} / GPUS_PER_NODE : 1 ))}

echo "stage ${STAGE}: ${NNODES} node(s) x ${GPUS_PER_NODE} GPU(s), rendezvous ${MASTER_HOST}:${MASTER_PORT}"
# One torchrun per node (srun starts them); torchrun starts one process per GPU.
srun --kill-on-bad-exit=1 "${VENV}/bin/python" -m torch.distributed.run \
    --nnodes="${NNODES}" \
    --nproc_per_node="${GPUS_PER_NODE}" \
    --rdzv_backend=c10d \
    --rdzv_endpoint="${MASTER_HOST}:${MASTER_PORT}" \
    --rdzv_id="${SLURM_JOB_ID}" \
    -m rsatalker_core.cli train --stage "${STAGE}" --config "${CONFIG}" "$@"
