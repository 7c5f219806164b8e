"""Running under ``torchrun``: the environment, the process group's lifecycle, and the collectives medaudit needs.

``torchrun --nproc-per-node N [--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT] -m medaudit ...``
starts N processes per node and sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (plus
``MASTER_ADDR``/``MASTER_PORT``) in each; :func:`detect_env` reads them. :func:`session` opens the
process group (nccl on CUDA with one GPU per local rank, gloo on the CPU) and closes it again.

World size 1 (no torchrun, or ``--nproc-per-node 1``) opens no process group, and every helper of
:class:`Context` is then the identity: the single-process run is the same code with nothing to
exchange, not a second path.

Collectives time out after ``MEDAUDIT_DIST_TIMEOUT`` seconds (default 600), so a rank that hangs
makes the others fail instead of waiting for ever; a rank that dies is noticed at once (its
connections close) and torchrun then stops the rest.

What is exchanged, and why it is exact:

* Training batches: :func:`global_batches` makes each epoch's global batches from one seeded
  permutation that does not depend on the world size, and :func:`rank_share` gives each rank one
  contiguous chunk of every global batch. The union of the ranks' chunks is the batch one process
  would see.
* Evaluation: each rank runs one contiguous shard (:func:`shard_range`, no padding) and
  :meth:`Context.gather_indexed` collects ``(index, row)`` pairs, sorts them and checks that the
  indices are exactly ``0..N-1`` before anything is computed from them. A padded sampler
  (``DistributedSampler``) would repeat samples and bias every metric; nothing here pads.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from medaudit.device import resolve_device
from medaudit.errors import MedauditError, MedauditWarning

TIMEOUT_ENV = "MEDAUDIT_DIST_TIMEOUT"
# Long enough for rank 0 to write a checkpoint while the others wait, short enough that a hung rank
# does not hold a cluster allocation for long (NCCL's own default is the same 10 minutes).
DEFAULT_TIMEOUT_S = 600.0


class IncompleteGatherError(RuntimeError):
    """The gathered indices are not exactly ``0..N-1`` (a sample missing, repeated or out of range).

    This is a bug in how the work was sharded, never a user error: nothing is computed from such a gather.
    """


@dataclass(frozen=True)
class DistEnv:
    """What ``torchrun`` told this process.

    Parameters
    ----------
    world_size : int
        Processes in the job (1 when not launched by torchrun).
    rank : int
        This process, in ``0..world_size-1``; rank 0 writes the files.
    local_rank : int
        This process on its node: the GPU it uses.
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise MedauditError(f"environment variable {name}={raw!r} is not an integer (set by torchrun; do not set "
                            "it by hand)") from None


def detect_env(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (as torchrun sets them); absent means one process.

    Parameters
    ----------
    environ : mapping, optional
        Default ``os.environ``.

    Returns
    -------
    DistEnv

    Raises
    ------
    MedauditError
        When the values are not integers or are inconsistent (``RANK`` outside ``0..WORLD_SIZE-1``).
    """
    environ = os.environ if environ is None else environ
    world = _env_int(environ, "WORLD_SIZE", 1)
    rank = _env_int(environ, "RANK", 0)
    local = _env_int(environ, "LOCAL_RANK", rank if world > 1 else 0)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise MedauditError(f"inconsistent torchrun environment: WORLD_SIZE={world}, RANK={rank}, LOCAL_RANK={local}")
    return DistEnv(world, rank, local)


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """True on rank 0 (and in a plain single-process run): the process that prints and writes."""
    return detect_env(environ).is_main


def process_group_timeout(environ: Mapping[str, str] | None = None) -> timedelta:
    """The collectives' timeout: ``MEDAUDIT_DIST_TIMEOUT`` seconds, default :data:`DEFAULT_TIMEOUT_S`."""
    environ = os.environ if environ is None else environ
    raw = environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 and np.isfinite(seconds)):
        raise MedauditError(f"{TIMEOUT_ENV}={raw!r}: give the collectives' timeout as a positive number of seconds")
    return timedelta(seconds=seconds)


def rank_device(name: str, env: DistEnv) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` when CUDA is there, else the CPU.

    Parameters
    ----------
    name : str
        The ``device`` setting (``auto``, ``cpu``, ``cuda``; ``cuda:N`` and ``mps`` are refused
        when ``env.world_size > 1``: each rank owns exactly one device, chosen by its local rank).
    env : DistEnv

    Returns
    -------
    torch.device
    """
    if env.world_size == 1:
        return resolve_device(name)
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if name in ("auto", "cuda"):
        if not torch.cuda.is_available():
            raise MedauditError(f"device '{name}': no CUDA GPU is available here; use auto or cpu", param="device")
        count = torch.cuda.device_count()
        if env.local_rank >= count:
            raise MedauditError(f"LOCAL_RANK {env.local_rank} needs a GPU of its own but this node shows {count}; "
                                f"start at most {count} processes per node (--nproc-per-node)", param="device")
        return torch.device("cuda", env.local_rank)
    resolve_device(name)  # an unknown or unavailable name gets its usual message
    raise MedauditError(f"device '{name}' under torchrun: each process uses the GPU of its local rank "
                        "(cuda:LOCAL_RANK); give auto, cuda or cpu (choose GPUs with CUDA_VISIBLE_DEVICES)",
                        param="device")


def shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous shard ``[lo, hi)`` of ``n`` samples that ``rank`` evaluates; shards differ by at most one.

    The shards of ranks ``0..world_size-1`` cover ``0..n-1`` once each, with no padding.
    """
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def batch_shard_range(n: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """The shard ``[lo, hi)`` of ``n`` samples that ``rank`` predicts: a contiguous run of whole batches.

    The batches are those of the one-process pass (``batch_size`` each, the last one shorter), dealt
    out by :func:`shard_range`, so each sample goes through the model in the same batch as with one
    process: per-sample outputs of a kernel can depend on the batch they are in, and this keeps the
    gathered logits bit for bit those of one process. Ranks beyond the number of batches get an empty shard.
    """
    n_batches = -(-n // batch_size)
    lo, hi = shard_range(n_batches, rank, world_size)
    return min(lo * batch_size, n), min(hi * batch_size, n)


def global_batches(order: np.ndarray, batch_size: int, world_size: int = 1) -> list[np.ndarray]:
    """An epoch's global batches from a permutation (or a weighted draw) of the training indices.

    Parameters
    ----------
    order : ndarray, shape (N,) int
        The epoch's sample order, drawn once for the whole job (it does not depend on the world size).
    batch_size : int
        The global batch; ``world_size`` must divide it.
    world_size : int

    Returns
    -------
    list of ndarray
        Consecutive chunks of ``batch_size`` indices. The trailing partial batch keeps a multiple
        of ``world_size`` samples (each rank gets an equal share) and is dropped when a rank's share
        would be under 2 samples (BatchNorm in train mode fails on one), unless it is the only batch.
        With one process this is the plain chunking with a trailing batch of 1 dropped.
    """
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    tail = batches[-1] if batches else None
    if tail is not None and len(tail) % world_size:
        batches[-1] = tail[: len(tail) - len(tail) % world_size]
    if len(batches) > 1 and len(batches[-1]) < 2 * world_size:
        batches.pop()
    return batches


def rank_share(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s contiguous chunk of a global batch (``len(batch)`` divisible by ``world_size``)."""
    per = len(batch) // world_size
    return batch[rank * per : (rank + 1) * per]


def check_indices(indices: torch.Tensor, n: int) -> None:
    """Raise :class:`IncompleteGatherError` unless ``indices`` is a permutation of ``0..n-1``."""
    idx = indices.detach().to("cpu", torch.int64).reshape(-1)
    inside = idx[(idx >= 0) & (idx < n)]
    counts = torch.bincount(inside, minlength=n) if n else torch.zeros(0, dtype=torch.int64)
    outside = len(idx) - len(inside)
    repeated, missing = int((counts > 1).sum()), int((counts == 0).sum())
    if outside or repeated or missing:
        raise IncompleteGatherError(f"gathered {len(idx)} rows for {n} samples: {missing} missing, {repeated} "
                                    f"repeated, {outside} out of range; nothing was computed from them")


@dataclass
class Context:
    """This process's place in the job, and the collectives (identity with one process).

    Parameters
    ----------
    env : DistEnv
    device : torch.device
        The rank's device (the training device).
    backend : str or None
        ``"nccl"``, ``"gloo"``, or None with one process.
    owns_group : bool
        Whether :func:`session` opened the process group (and so closes it).
    """

    env: DistEnv
    device: torch.device
    backend: str | None = None
    owns_group: bool = False
    _stop: dict = field(default_factory=lambda: {"signals": 0})

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def is_main(self) -> bool:
        return self.env.rank == 0

    @property
    def distributed(self) -> bool:
        return self.env.world_size > 1

    def record(self) -> dict:
        """``{"world_size", "dist_backend"}`` for a run's record."""
        return {"world_size": self.world_size, "dist_backend": self.backend}

    # -- collectives --------------------------------------------------------------------
    def _comm(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` on the device the backend exchanges (nccl: the rank's GPU; gloo: the CPU), contiguous."""
        dev = self.device if self.backend == "nccl" else torch.device("cpu")
        return t.to(dev).contiguous()

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of ``t`` over ranks (a new tensor on ``t``'s device); ``t`` itself with one process."""
        if not self.distributed:
            return t
        out = self._comm(t).clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.to(t.device)

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank ``src``'s ``obj`` on every rank (pickled); ``obj`` itself with one process."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src, device=self.device if self.backend == "nccl" else None)
        return box[0]

    @torch.no_grad()
    def broadcast_buffers(self, module: nn.Module, src: int = 0) -> None:
        """Copy rank ``src``'s buffers (BatchNorm running statistics) into every rank's ``module``."""
        if not self.distributed:
            return
        for buf in module.buffers():
            tmp = self._comm(buf)
            dist.broadcast(tmp, src=src)
            buf.copy_(tmp.to(buf.device))

    def barrier(self) -> None:
        """Wait for every rank (nothing with one process)."""
        if self.distributed:
            dist.barrier(device_ids=[self.device.index] if self.backend == "nccl" else None)

    def gather_indexed(self, indices, values: torch.Tensor, n: int, *, dst: int | None = None) -> torch.Tensor | None:
        """Collect every rank's ``(index, row)`` pairs into one array in index order, each sample exactly once.

        Parameters
        ----------
        indices : array-like, shape (k,) int
            The sample index of each of this rank's rows (any order; ranks may hold different k, even 0).
        values : torch.Tensor, shape (k, ...)
            This rank's rows; trailing shape and dtype are the same on every rank.
        n : int
            The number of samples; the gathered indices must be exactly ``0..n-1``.
        dst : int, optional
            Return the result on this rank only (the others get None); default every rank.

        Returns
        -------
        torch.Tensor, shape (n, ...) or None
            Row ``i`` is the row of sample ``i``, on ``values``' device.

        Raises
        ------
        IncompleteGatherError
            When a sample is missing or repeated, or an index is out of range (checked before any use).
        """
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.int64).reshape(-1)
        if len(idx) != len(values):
            raise ValueError(f"{len(idx)} indices for {len(values)} rows")
        if self.distributed:
            idx, values = self._all_gather_rows(idx, values)
            if dst is not None and self.rank != dst:
                return None
        check_indices(idx, n)
        return values[torch.argsort(idx).to(values.device)]

    def _all_gather_rows(self, idx: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Collectives need equal sizes: pad to the longest shard, then cut each rank's rows back to its count.
        sizes = [self._comm(torch.zeros(1, dtype=torch.int64)) for _ in range(self.world_size)]
        dist.all_gather(sizes, self._comm(torch.tensor([len(idx)], dtype=torch.int64)))
        counts = [int(s) for s in sizes]
        m = max(counts)
        pad = m - len(idx)
        idx_p = self._comm(torch.cat([idx, torch.full((pad,), -1, dtype=torch.int64)]))
        val_p = self._comm(torch.cat([values, values.new_zeros((pad, *values.shape[1:]))]))
        idx_all = [torch.empty_like(idx_p) for _ in range(self.world_size)]
        val_all = [torch.empty_like(val_p) for _ in range(self.world_size)]
        dist.all_gather(idx_all, idx_p)
        dist.all_gather(val_all, val_p)
        gathered_idx = torch.cat([g[:c] for g, c in zip(idx_all, counts)]).cpu()
        gathered = torch.cat([g[:c] for g, c in zip(val_all, counts)]).to(values.device)
        return gathered_idx, gathered

    # -- per-rank randomness -----------------------------------------------------------
    def seed_rank_rng(self, seed: int, epoch: int) -> None:
        """Give ranks other than 0 their own torch RNG stream for this epoch (dropout, drop-path).

        Rank 0 keeps the single-process stream (saved and restored on resume); the others would
        otherwise draw the same masks as rank 0. Seeded from (seed, epoch, rank), so a resume at an
        epoch boundary continues them exactly.
        """
        if self.rank:
            state = np.random.SeedSequence([int(seed), int(epoch), self.rank]).generate_state(2, dtype=np.uint32)
            torch.manual_seed(int(state[0]) << 32 | int(state[1]))

    # -- interrupts ---------------------------------------------------------------------
    @contextlib.contextmanager
    def deferred_interrupts(self) -> Iterator[None]:
        """With several ranks, turn SIGINT/SIGTERM into a request that :meth:`stop_requested` shares.

        A rank that raised KeyboardInterrupt at once could leave its peers blocked in a collective
        (a signal cannot interrupt a blocked C++ call), so the ranks stop together at the next
        check instead. A second signal raises at once. With one process nothing changes.
        """
        if not self.distributed or threading.current_thread() is not threading.main_thread():
            yield
            return
        stop = self._stop

        def request(signum, frame):
            stop["signals"] += 1
            if stop["signals"] > 1:
                raise KeyboardInterrupt

        previous = {s: signal.signal(s, request) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def stop_requested(self) -> bool:
        """Whether any rank was asked to stop (a collective: every rank must call it at the same point)."""
        if not self.distributed:
            return False
        flag = torch.tensor([float(self._stop["signals"] > 0)], device=self.device)
        return bool(self.all_reduce_sum(flag).item() > 0)

    # -- models -------------------------------------------------------------------------
    def wrap(self, model: nn.Module) -> nn.Module:
        """``DistributedDataParallel(model)`` with several ranks (gradients averaged), else ``model``."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def convert_sync_bn(self, model: nn.Module) -> nn.Module:
        """BatchNorm layers normalised with the statistics of the whole global batch (several ranks only).

        CUDA uses ``torch.nn.SyncBatchNorm``; the CPU (gloo), which that module refuses, uses
        :class:`SyncBatchNormCPU`, the same computation written with differentiable all-reduces.
        """
        if not self.distributed:
            return model
        if self.device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return SyncBatchNormCPU.convert(model)


class _AllReduceSum(torch.autograd.Function):
    """The sum over ranks, differentiable: the gradient of a sum that every rank uses is the sum of their gradients."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        out = t.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out


class SyncBatchNormCPU(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the union of every rank's batch, for any device and backend (gloo on the CPU).

    Training: the mean and the (biased) variance are those of all ranks' samples together,
    computed in two passes (global mean, then the global sum of squared deviations) so that
    large means do not cancel; the running statistics move towards them with the unbiased
    variance, as ``BatchNorm`` does. Gradients flow through the all-reduces
    (:class:`_AllReduceSum`), so they equal those of one BatchNorm over the global batch. In
    eval mode, or with one process, it is plain BatchNorm. Same parameters and buffers as
    ``BatchNorm*d``, so state dicts are interchangeable.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        need_sync = self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not need_sync:
            return super().forward(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float() if input.dtype in (torch.float16, torch.bfloat16) else input
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        sums = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
        total = sums[-1]
        mean = sums[:-1] / total
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dims)) / total
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), factor)
                unbiased = var.detach() * (total / (total - 1)) if float(total) > 1 else var.detach()
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every ``BatchNorm*d`` in ``module`` (in place where possible), keeping parameters and buffers."""
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            if module.affine:  # the same Parameter objects: an optimizer built before still updates them
                new.weight, new.bias = module.weight, module.bias
            for name, buf in module.named_buffers(recurse=False):
                new.register_buffer(name, buf)
            new.train(module.training)
            return new
        for name, child in module.named_children():
            module.add_module(name, cls.convert(child))
        return module


@contextlib.contextmanager
def session(device: str = "auto", environ: Mapping[str, str] | None = None) -> Iterator[Context]:
    """The process group for one command: opened on entry (several ranks), closed on exit.

    Parameters
    ----------
    device : str
        The ``device`` setting; see :func:`rank_device`.
    environ : mapping, optional
        Default ``os.environ``.

    Yields
    ------
    Context
        With one process: no process group, ``device`` resolved as usual. A process group the
        caller already opened is used as it is (and left open).
    """
    env = detect_env(environ)
    if dist.is_available() and dist.is_initialized():
        env = DistEnv(dist.get_world_size(), dist.get_rank(), env.local_rank)
        dev = rank_device(device, env)
        yield Context(env, dev, dist.get_backend(), owns_group=False)
        return
    dev = rank_device(device, env)
    if env.world_size == 1:
        yield Context(env, dev)
        return
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend, timeout=process_group_timeout(environ), rank=env.rank,
                            world_size=env.world_size)
    try:
        yield Context(env, dev, backend, owns_group=True)
    finally:
        with contextlib.suppress(Exception):  # closing must not hide the error that ended the run
            dist.destroy_process_group()



# -- commands led by rank 0 (predict, report, cam) --------------------------------------------
# A command that reads data and writes files runs on rank 0 only; the other ranks serve its forward
# passes (each runs its shard and joins the gather) until rank 0 tells them to stop. The requests go
# over a second (gloo) group whose timeout is long, because between two passes rank 0 may compute
# metrics, CAMs and a benchmark for a long time; the passes' own collectives keep MEDAUDIT_DIST_TIMEOUT.
_CONTROL_TIMEOUT = timedelta(days=7)
_JOB: LedJob | None = None


class LedJob:
    """A command under torchrun led by rank 0: the request channel, the shards and the gather.

    Parameters
    ----------
    ctx : Context
        A distributed context (``world_size > 1``) opened by :func:`session`.

    Notes
    -----
    Built on every rank at the same point (it makes a process group and exchanges each rank's device).
    """

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.broken = False
        self.control = dist.new_group(backend="gloo", timeout=_CONTROL_TIMEOUT)
        devices: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(devices, str(ctx.device), group=self.control)
        self.devices = [str(d) for d in devices]

    def record(self) -> dict:
        """``{"world_size", "backend", "devices"}``: how a pass was spread (devices in rank order)."""
        return {"world_size": self.ctx.world_size, "backend": self.ctx.backend, "devices": list(self.devices)}

    def batch_shard(self, n: int, batch_size: int) -> tuple[int, int]:
        """This rank's :func:`batch_shard_range` of ``n`` samples."""
        return batch_shard_range(n, batch_size, self.ctx.rank, self.ctx.world_size)

    def request(self, fn, *args: Any, **kwargs: Any) -> None:
        """Rank 0: ask every other rank to call ``fn(*args, **kwargs)`` (a module-level function, pickled)."""
        self._control(("call", fn, args, kwargs))

    def gather(self, lo: int, values: torch.Tensor, n: int, what: str) -> torch.Tensor | None:
        """The rows of every rank's shard ``[lo, lo + len(values))`` in index order on rank 0 (None elsewhere).

        A rank that died or stopped answering ends the pass with a one-line :class:`MedauditError`
        (after at most ``MEDAUDIT_DIST_TIMEOUT`` seconds) instead of a hang or a traceback.
        """
        try:
            return self.ctx.gather_indexed(np.arange(lo, lo + len(values)), values, n, dst=0)
        except IncompleteGatherError:
            raise
        except (RuntimeError, dist.DistError) as exc:
            self.broken = True
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise MedauditError(
                f"rank {self.ctx.rank}: the {self.ctx.world_size}-process pass over {what} stopped because another "
                f"rank died or did not answer within {process_group_timeout().total_seconds():g} s ({TIMEOUT_ENV}); "
                f"nothing was written ({first})") from None

    def _control(self, message: tuple) -> Any:
        box = [message]
        dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def serve(self) -> bool:
        """Ranks > 0: run rank 0's requests until it stops; returns whether rank 0 succeeded."""
        while True:
            kind, *rest = self._control(None)
            if kind == "stop":
                return bool(rest[0])
            fn, args, kwargs = rest
            fn(*args, **kwargs)

    def finish(self, ok: bool) -> None:
        """Rank 0: release the other ranks (nothing to say to a job whose pass already broke)."""
        if not self.broken:
            with contextlib.suppress(Exception):
                self._control(("stop", ok))


def led_job() -> LedJob | None:
    """The running command's :class:`LedJob` under torchrun (within :func:`lead`), else None."""
    return _JOB


def lead(fn, *args: Any, device: str = "auto", environ: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` as rank 0 of the job while the other ranks serve its forward passes.

    With one process this is ``fn(*args, **kwargs)``: no process group, nothing else. Under torchrun
    rank 0 runs ``fn`` (it reads the data, writes every file, prints); each other rank only answers
    the requests that :func:`medaudit.predict.run_inference` sends (its shard of each pass) and then
    leaves with ``SystemExit(0)`` (``1`` when rank 0 failed, which prints the error), writing nothing.

    Parameters
    ----------
    fn : callable
    device : str
        The ``device`` setting (:func:`rank_device`).
    environ : mapping, optional

    Returns
    -------
    object
        ``fn``'s result (rank 0 and one process).
    """
    global _JOB
    with session(device, environ) as ctx:
        if not ctx.distributed:
            return fn(*args, **kwargs)
        job = LedJob(ctx)
        _JOB = job
        try:
            if not ctx.is_main:
                # Import the model zoo (timm, torchvision: seconds) now, while rank 0 reads its inputs,
                # not at its first request, when rank 0 already waits at the gather for this rank.
                import timm  # noqa: F401

                import medaudit.models.checkpoint  # noqa: F401

                with warnings.catch_warnings():  # rank 0 speaks for the job
                    warnings.simplefilter("ignore", MedauditWarning)
                    ok = job.serve()
                raise SystemExit(0 if ok else 1)
            ok = False
            try:
                result = fn(*args, **kwargs)
                ok = True
                return result
            finally:
                job.finish(ok)
        finally:
            _JOB = None
