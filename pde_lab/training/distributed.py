"""Data-parallel training across processes started by ``torchrun``.

``torchrun --nproc_per_node N pde-lab train ...`` starts ``N`` copies of the trainer with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; :func:`context` joins them into a process group (``nccl`` on
CUDA, ``gloo`` on CPU). Every rank builds the same model from the same seed and walks the same global
sample order (:func:`~pde_lab.training.trainer.epoch_order`); each global batch is cut into ``N``
contiguous shares (:func:`rank_share`), each rank computes the *sum* of its samples' losses divided
by the global batch size, and the gradients are summed across ranks before the optimizer step. The
step is then exactly the one-process step on the same global batch, up to floating-point summation
order, whatever the batch size, including a last, short batch that leaves some ranks empty
(tested: two gloo processes against one). This is why the trainer sums gradients itself instead of
wrapping the model in ``DistributedDataParallel``, which averages per-rank means and so weights
unequal shares unequally.

Rank 0 alone writes the run directory (config, log, checkpoints); every rank evaluates the full
validation set, so all ranks take the same best-checkpoint and early-stopping decisions without
communicating.

Models with batch normalisation are refused (:func:`check_model`): a BatchNorm layer in training
mode normalises with the statistics of the samples it sees, i.e. of its rank's share, so the step is
no longer the one-process step, and each rank's running statistics drift apart; the ranks would then
validate different models and could take different early-stopping decisions, leaving one rank
waiting forever in the next all-reduce.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world_size`` (1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_rank() -> int:
    """This process's rank as torchrun sets it (``RANK``; 0 without torchrun), before any process group."""
    return int(os.environ.get("RANK", "0"))


def context(device: torch.device) -> Context:
    """The distributed context from torchrun's environment; joins the process group on first use.

    Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) this is the single-process context and nothing
    is initialised.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    rank, local = env_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world, local)


def check_model(model: torch.nn.Module, ctx: Context) -> None:
    """:class:`UserError` when ``ctx`` is data-parallel and ``model`` has batch-normalisation layers
    (see the module docstring); nothing in one process."""
    if not ctx.active:
        return
    norms = [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if norms:
        model_name = getattr(model, "model_name", "") or type(model).__name__
        raise UserError(f"model {model_name!r} has {len(norms)} BatchNorm layers (first: {norms[0]!r}), which "
                        f"data-parallel training over {ctx.world_size} processes cannot reproduce: each rank "
                        f"would normalise only its share of the batch and keep its own running statistics; "
                        f"train it in one process, or build it without BatchNorm (for cno: "
                        f"model_args.norm=none)")


def rank_share(batch: Sequence[int], ctx: Context) -> list[int]:
    """This rank's contiguous share of a global batch (``np.array_split`` sizes: the first
    ``len % world`` ranks get one more; a share may be empty)."""
    n, w = len(batch), ctx.world_size
    base, extra = divmod(n, w)
    start = ctx.rank * base + min(ctx.rank, extra)
    return list(batch[start:start + base + (1 if ctx.rank < extra else 0)])


def sum_gradients(params: Sequence[torch.nn.Parameter], ctx: Context) -> None:
    """Sum every parameter's gradient over the ranks, in one flat all-reduce (a missing gradient,
    from a rank with an empty share, counts as zero)."""
    if not ctx.active:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(p).clone()
        offset += g.numel()


def sum_scalars(values: Sequence[float], ctx: Context, device: torch.device) -> list[float]:
    """Sum a few numbers over the ranks (for the logged training loss)."""
    if not ctx.active:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier(ctx: Context) -> None:
    """Wait for every rank (rank 0 creating the run directory before the others read it)."""
    if ctx.active:
        dist.barrier()
