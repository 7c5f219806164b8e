"""medaudit.distributed: torchrun's environment, world-size-independent batches, the exactly-once gather,
the CPU SyncBatchNorm and the collectives' timeout, on real gloo process groups (CPU, spawned processes)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from medaudit import distributed as md
from medaudit.errors import MedauditError
from tests._torchrun import free_port

# -- the environment ------------------------------------------------------------------------


def test_no_torchrun_means_one_process():
    assert md.detect_env({}) == md.DistEnv(1, 0, 0)
    assert md.detect_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == md.DistEnv(4, 3, 1)
    assert md.is_main_process({"WORLD_SIZE": "2", "RANK": "0"}) and not md.is_main_process({"WORLD_SIZE": "2",
                                                                                             "RANK": "1"})


@pytest.mark.parametrize("env", [{"WORLD_SIZE": "two"}, {"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "0"},
                                 {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "-1"}])
def test_an_inconsistent_environment_is_a_one_line_error(env):
    with pytest.raises(MedauditError):
        md.detect_env(env)


def test_the_collectives_timeout_has_a_default_and_an_override():
    assert md.process_group_timeout({}) == timedelta(seconds=md.DEFAULT_TIMEOUT_S)
    assert md.process_group_timeout({md.TIMEOUT_ENV: "2.5"}) == timedelta(seconds=2.5)
    for bad in ("0", "-3", "soon", "inf"):
        with pytest.raises(MedauditError, match=md.TIMEOUT_ENV):
            md.process_group_timeout({md.TIMEOUT_ENV: bad})


def test_each_rank_owns_one_device():
    two = md.DistEnv(2, 1, 1)
    assert md.rank_device("cpu", two) == torch.device("cpu")
    assert md.rank_device("cpu", md.DistEnv()) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert md.rank_device("auto", two) == torch.device("cpu")
    for name in ("cuda:1", "mps"):
        with pytest.raises(MedauditError) as err:
            md.rank_device(name, two)
        assert err.value.param == "device"


def test_one_process_opens_no_process_group(monkeypatch):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    with md.session("cpu") as ctx:
        assert not dist.is_initialized() and ctx.world_size == 1 and ctx.backend is None
        t = torch.arange(3.0)
        assert ctx.all_reduce_sum(t) is t and ctx.broadcast_object({"a": 1}) == {"a": 1}
        assert not ctx.stop_requested() and ctx.record() == {"world_size": 1, "dist_backend": None}


# -- sharding and batches ----------------------------------------------------------------------


def test_shards_cover_every_sample_once_without_padding():
    for n in range(0, 30):
        for w in range(1, 6):
            ranges = [md.shard_range(n, r, w) for r in range(w)]
            covered = np.concatenate([np.arange(lo, hi) for lo, hi in ranges])
            assert covered.tolist() == list(range(n))
            sizes = [hi - lo for lo, hi in ranges]
            assert max(sizes) - min(sizes) <= 1


def _chunks_before_issue_21(order, bs):
    """The loader order of medaudit train before torchrun support (the one-process rule to keep)."""
    batches = [order[i : i + bs] for i in range(0, len(order), bs)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


@pytest.mark.parametrize("n,bs", [(40, 8), (41, 8), (42, 8), (45, 8), (7, 7), (13, 4)])
def test_global_batches_do_not_depend_on_the_world_size(n, bs):
    order = np.random.default_rng(n).permutation(n)
    one = md.global_batches(order, bs, 1)
    assert [b.tolist() for b in one] == [b.tolist() for b in _chunks_before_issue_21(order, bs)]
    for w in (2, 4):
        if bs % w:
            continue
        many = md.global_batches(order, bs, w)
        full = [b.tolist() for b in one if len(b) == bs]
        assert [b.tolist() for b in many if len(b) == bs] == full  # every full batch identical
        for b in many:
            shares = [md.rank_share(b, r, w) for r in range(w)]
            assert len({len(s) for s in shares}) == 1 and np.concatenate(shares).tolist() == b.tolist()
        assert len(many[-1]) == bs or len(many[-1]) // w >= 2  # a trailing share of 1 would break BatchNorm
        tail = n % bs
        if tail % w == 0 and tail >= 2 * w:  # a trailing batch the ranks can share evenly is kept as it is
            assert [b.tolist() for b in many] == [b.tolist() for b in one]


# -- the gather, one process ---------------------------------------------------------------------


def test_gather_with_one_process_sorts_and_checks():
    ctx = md.Context(md.DistEnv(), torch.device("cpu"))
    idx = np.array([3, 0, 2, 1])
    vals = torch.tensor([[3.0], [0.0], [2.0], [1.0]])
    assert ctx.gather_indexed(idx, vals, 4).flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
    for bad, what in (([0, 1, 1, 3], "1 missing, 1 repeated"), ([0, 1, 2], "1 missing"), ([0, 1, 2, 4], "1 out")):
        with pytest.raises(md.IncompleteGatherError, match=what):
            ctx.gather_indexed(np.array(bad), torch.zeros(len(bad), 1), 4)


# -- real process groups (gloo, spawned) -----------------------------------------------------------


def _init(rank: int, world: int, port: int, timeout_s: float = 30.0) -> md.Context:
    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s))
    return md.Context(md.DistEnv(world, rank, rank), torch.device("cpu"), "gloo")


def _gather_worker(rank: int, world: int, port: int, n: int) -> None:
    _check_gather(_init(rank, world, port), n)
    dist.destroy_process_group()


def _check_gather(ctx: md.Context, n: int) -> None:
    rank, world = ctx.rank, ctx.world_size
    lo, hi = md.shard_range(n, rank, world)
    idx = np.arange(lo, hi)[::-1].copy()  # any order within a rank
    values = torch.as_tensor(np.stack([idx * 10.0, -idx], axis=1), dtype=torch.float64)
    full = ctx.gather_indexed(idx, values, n)
    expected = np.stack([np.arange(n) * 10.0, -np.arange(n)], axis=1)
    assert full.dtype == torch.float64 and np.array_equal(full.numpy(), expected)
    only0 = ctx.gather_indexed(idx, values, n, dst=0)
    assert (only0 is None) == (rank != 0)
    # A shard that repeats a sample (as DistributedSampler's padding does) is refused on every rank.
    dup = np.append(idx, lo) if rank == world - 1 else idx
    with pytest.raises(md.IncompleteGatherError, match="1 repeated"):
        ctx.gather_indexed(dup, torch.zeros(len(dup), 2, dtype=torch.float64), n)
    assert ctx.all_reduce_sum(torch.tensor([float(rank)])).item() == sum(range(world))
    assert ctx.broadcast_object({"from": rank}) == {"from": 0}
    bn = nn.BatchNorm1d(2)
    bn.running_mean.fill_(float(rank))
    ctx.broadcast_buffers(bn)
    assert bn.running_mean.tolist() == [0.0, 0.0]


def test_gather_is_exactly_once_on_three_ranks():
    """101 samples divide by neither 2 nor 3: uneven shards, no padding, every sample once, in order.
    (Two ranks: in the SyncBatchNorm test's process group, to start fewer processes.)"""
    mp.spawn(_gather_worker, args=(3, free_port(), 101), nprocs=3, join=True)


def _sync_bn_worker(rank: int, world: int, port: int, x_full: torch.Tensor, w_out: torch.Tensor) -> None:
    ctx = _init(rank, world, port)
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(3, momentum=0.3)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    sync = md.SyncBatchNormCPU.convert(nn.Sequential(nn.BatchNorm2d(3, momentum=0.3)))[0]
    sync.load_state_dict(ref.state_dict())
    # The reference: one BatchNorm over the whole global batch, loss sum(out * w_out).
    xr = x_full.clone().requires_grad_(True)
    (ref(xr) * w_out).sum().backward()
    lo, hi = md.shard_range(len(x_full), rank, world)
    xs = x_full[lo:hi].clone().requires_grad_(True)
    out = sync(xs)
    (out * w_out[lo:hi]).sum().backward()
    with torch.no_grad():
        ref_out = nn.functional.batch_norm(x_full, None, None, ref.weight, ref.bias, True, 0.0, ref.eps)
    torch.testing.assert_close(out.detach(), ref_out[lo:hi], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xs.grad, xr.grad[lo:hi], rtol=1e-5, atol=1e-5)
    # The parameters' gradient of the global loss is the sum of the ranks' (DDP averages a mean loss).
    gw, gb = ctx.all_reduce_sum(sync.weight.grad), ctx.all_reduce_sum(sync.bias.grad)
    torch.testing.assert_close(gw, ref.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gb, ref.bias.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sync.running_mean, ref.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sync.running_var, ref.running_var, rtol=1e-5, atol=1e-6)
    assert int(sync.num_batches_tracked) == int(ref.num_batches_tracked) == 1
    sync.eval()
    torch.testing.assert_close(sync(x_full[:2]), ref.eval()(x_full[:2]))  # eval: the running statistics, no sync
    _check_gather(ctx, 101)
    dist.destroy_process_group()


def test_cpu_sync_batchnorm_equals_one_batchnorm_over_the_global_batch_and_two_ranks_gather_exactly_once():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 3, 4, 4, generator=g) * 3 + 5  # a large mean: the two-pass variance must not cancel
    w = torch.randn(10, 3, 4, 4, generator=g)
    mp.spawn(_sync_bn_worker, args=(2, free_port(), x, w), nprocs=2, join=True)


def test_sync_batchnorm_conversion_keeps_parameters_and_buffers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Sequential(nn.BatchNorm1d(4)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model[1].weight
    md.SyncBatchNormCPU.convert(model)
    assert isinstance(model[1], md.SyncBatchNormCPU) and isinstance(model[2][0], md.SyncBatchNormCPU)
    assert model[1].weight is weight  # an optimizer built earlier still updates it
    assert {k: v.tolist() for k, v in model.state_dict().items()} == {k: v.tolist() for k, v in before.items()}


def _timeout_worker(rank: int, world: int, port: int, timeout_s: float, result) -> None:
    ctx = _init(rank, world, port, timeout_s)
    if rank == 1:
        time.sleep(timeout_s * 4)  # a hung rank: it never joins the collective in time
        os._exit(0)
    t0 = time.perf_counter()
    try:
        ctx.all_reduce_sum(torch.ones(1))
    except Exception as exc:  # gloo raises (DistBackendError / RuntimeError) at the timeout
        result.put((type(exc).__name__, time.perf_counter() - t0))
    else:
        result.put(("no error", time.perf_counter() - t0))
    os._exit(0)  # do not wait on a process group whose peer is gone


def test_a_hung_rank_makes_the_others_fail_within_the_timeout():
    timeout_s = 2.0
    q = mp.get_context("spawn").SimpleQueue()
    ctx = mp.spawn(_timeout_worker, args=(2, free_port(), timeout_s, q), nprocs=2, join=False)
    ctx.join(timeout=60)
    kind, waited = q.get()
    assert kind != "no error"
    assert timeout_s * 0.9 <= waited < timeout_s + 5
