"""Efficiency of classifiers, measured the way a performance engineer would.

Parameters, FLOPs/MACs per image, batch-1 latency (median, p95, min, IQR over N timed
runs after a warm-up), throughput at larger batches, achieved GFLOP/s and peak memory,
with the device, dtype, memory format, thread count and versions recorded beside the
figures. Models are timed interleaved in rotating order (A B, B A, ...) so machine drift
hits all of them alike, and ratios between models come from the paired rounds.

The efficiency dict of one model (``run.efficiency.models[<name>]`` in ``report.json``):

``params_total``, ``params_trainable``  int
``weights_bytes``       int, parameters + buffers in memory (at their stored dtype)
``checkpoint_bytes``    int, size of the checkpoint file on disk; null when no path given
``input_shape``         [C, H, W] of one image
``flops``, ``macs``     int per image at ``input_shape`` (FLOPs = 2 x MACs for matmul/conv;
                        counted by ``torch.utils.flop_counter``: conv, matmul, attention;
                        element-wise ops, norms and activations are not counted); null
                        with ``flops_reason`` when nothing was counted
``latency_ms``          batch-1 time per forward: median, p95, min, max, mean, q25, q75,
                        iqr (ms) and n (timed runs)
``batch_ms``            {"<batch>": the same summary for one forward of that batch}
``throughput``          {"<batch>": images/s = batch / median batch time}
``gflops_per_s``        achieved GFLOP/s = flops x images/s at ``gflops_per_s_batch``
                        (the largest batch); null when flops are unknown
``peak_memory_bytes``   peak memory added by one forward at ``peak_memory_batch``
                        (activations + workspace; weights excluded); null with
                        ``peak_memory_reason`` when it cannot be measured
``peak_memory_kind``    how it was measured (see :func:`medaudit.bench_timing.peak_memory_growth`)
``channels_last``       bool, whether the model and input ran in channels-last format
``environment``         the run's environment dict (device, dtype, threads, versions...)

Timing figures depend on the machine and its load: they belong in benchmarks and
reports, never in test assertions.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, nullcontext
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from medaudit.bench_timing import (
    amp_dtype_name,
    environment,
    make_timer,
    num_threads,
    paired_ratio,
    peak_memory_growth,
    run_interleaved,
    summarize_ms,
)
from medaudit.device import resolve_device
from medaudit.errors import MedauditError
from medaudit.models.runtime import inference_state, model_device, model_family, use_channels_last

AMP_CHOICES = (None, "fp16", "bf16")


def count_params(model: nn.Module) -> dict:
    """Number of parameters.

    Returns
    -------
    dict
        ``total`` (int) and ``trainable`` (int, those with ``requires_grad``). Shared
        (tied) parameters are counted once.
    """
    params = list(model.parameters())  # .parameters() already de-duplicates tied tensors
    return {
        "total": int(sum(p.numel() for p in params)),
        "trainable": int(sum(p.numel() for p in params if p.requires_grad)),
    }


def weights_bytes(model: nn.Module) -> int:
    """Bytes of parameters and buffers held in memory."""
    tensors = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return int(sum(t.numel() * t.element_size() for t in tensors.values()))


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # Q @ K^T and softmax(.) @ V: 2 FLOPs per multiply-add. torch's table lacks the CPU
    # fused-attention kernel, so ViTs would silently lose their attention FLOPs.
    *batch, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    n = 1
    for b in batch:
        n *= b
    return 2 * n * s_q * s_k * d + 2 * n * s_q * s_k * d_v


def count_flops(model: nn.Module, input_shape: Sequence[int] = (1, 3, 224, 224)) -> dict:
    """FLOPs and MACs of one forward pass, per image.

    Runs one forward of a zero tensor of ``input_shape`` on the model's device under
    :class:`torch.utils.flop_counter.FlopCounterMode` (eval mode, no autograd); the
    caller's train/eval state is restored afterwards.

    Parameters
    ----------
    model : nn.Module
    input_shape : sequence of int
        ``(N, C, H, W)``; the totals are divided by N.

    Returns
    -------
    dict
        ``flops`` and ``macs`` (int, per image; ``flops == 2 * macs``). Counted ops:
        convolution, matmul/linear and scaled-dot-product attention; element-wise ops,
        normalisation and activations are not counted (the usual convention, e.g. timm
        resnet18 at 224 px: 1.82 GMACs).
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise MedauditError(f"input_shape must be (N, C, H, W) with positive sizes (got {input_shape})",
                            param="input_shape")
    aten = torch.ops.aten
    mapping = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}
    x = torch.zeros(shape, device=model_device(model))
    with inference_state(model), torch.inference_mode(), FlopCounterMode(display=False, custom_mapping=mapping) as fc:
        model(x)
    flops = fc.get_total_flops() // shape[0]
    return {"flops": int(flops), "macs": int(flops // 2)}


def _runs_channels_last(model: nn.Module, device: torch.device, channels_last: bool | None) -> bool:
    """The layout ``model`` is timed in: as inference runs it (None), or as asked for CNNs (token models never)."""
    if channels_last is None:
        return use_channels_last(model, device)
    return channels_last and model_family(model) == "cnn"


def _checkpoint_sizes(names: list[str], checkpoint_paths) -> dict[str, int | None]:
    if checkpoint_paths is None:
        return dict.fromkeys(names)
    if isinstance(checkpoint_paths, Mapping):
        paths = {n: checkpoint_paths.get(n) for n in names}
    else:
        checkpoint_paths = list(checkpoint_paths)
        if len(checkpoint_paths) != len(names):
            raise MedauditError(f"{len(checkpoint_paths)} checkpoint paths for {len(names)} models",
                                param="checkpoint_paths")
        paths = dict(zip(names, checkpoint_paths, strict=True))
    sizes: dict[str, int | None] = {}
    for name, p in paths.items():
        if p is None:
            sizes[name] = None
        elif not Path(p).is_file():
            raise MedauditError(f"checkpoint not found: {p} (model '{name}')")
        else:
            sizes[name] = Path(p).stat().st_size
    return sizes


def _image_shape(shape: Sequence[int], name: str) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 3 or any(s < 1 for s in shape):
        raise MedauditError(f"model '{name}': input shape must be (C, H, W) or (1, C, H, W), got {shape}")
    return shape


def benchmark_models(
    models: Sequence[tuple[str, nn.Module, Sequence[int]]],
    *,
    device: str = "auto",
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 30,
    warmup: int = 5,
    checkpoint_paths: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike | None] | None = None,
    channels_last: bool | None = False,
    amp: str | None = None,
    threads: int | None = None,
    seed: int = 0,
    progress: bool = False,
    flops: Mapping[str, dict] | None = None,
) -> dict:
    """Measure parameters, FLOPs, latency, throughput and memory of several models.

    Parameters
    ----------
    models : sequence of (name, module, input_shape)
        ``input_shape`` is one image, ``(C, H, W)`` (a leading 1 is accepted). Names
        must be unique. The modules are timed in place under
        :func:`medaudit.models.runtime.inference_state` (eval mode, on ``device``, in the
        layout below) and come back with every submodule's flag, device and layout as they were.
    device : str
        ``auto`` (cuda > mps > cpu), ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
    batch_sizes : sequence of int
        Batch sizes to time; batch 1 is always timed (it gives ``latency_ms``).
    repeats, warmup : int
        Timed and untimed forwards per model and batch size.
    checkpoint_paths : mapping name -> path, or sequence aligned with ``models``, optional
        Files whose size on disk is reported as ``checkpoint_bytes``.
    channels_last : bool or None
        Run CNNs (and their inputs) in channels-last memory format; ignored for
        transformers, where it does not apply. None: each model in the layout inference runs
        it in on ``device`` (:func:`medaudit.models.runtime.use_channels_last`).
    amp : {None, "fp16", "bf16"}
        Autocast dtype; None runs in float32.
    threads : int, optional
        ``torch.set_num_threads`` for the run (restored afterwards); default: as is.
    seed : int
        Seed of the random input (the values do not change dense-model timings).
    progress : bool
        Show a tqdm bar over all forwards.
    flops : mapping name -> dict, optional
        Per-image counts already made with :func:`count_flops` at the same input shape
        (the report has them from the checkpoint step); models not in it are counted here.

    Returns
    -------
    dict
        ``environment`` (see :func:`medaudit.bench_timing.environment`), ``models`` ({name: efficiency dict,
        keys in the module docstring}) and ``ratios``: one entry per model pair with
        ``a``, ``b``, ``params_ratio``, ``flops_ratio`` (a / b, null when unknown) and
        ``time_ratio`` {"<batch>": {median, q25, q75, n}} of per-round time(a) /
        time(b) (> 1: a is slower).
    """
    if not models:
        raise MedauditError("benchmark_models needs at least one model", param="models")
    names = [m[0] for m in models]
    if len(set(names)) != len(names):
        raise MedauditError(f"model names must be unique (got {names})", param="models")
    if amp not in AMP_CHOICES:
        raise MedauditError(f"amp must be one of None, 'fp16', 'bf16' (got {amp!r})", param="amp")
    if repeats < 1:
        raise MedauditError(f"repeats must be >= 1 (got {repeats})", param="repeats")
    if warmup < 0:
        raise MedauditError(f"warmup must be >= 0 (got {warmup})", param="warmup")
    sizes = sorted({1, *(int(b) for b in batch_sizes)})
    if sizes[0] < 1:
        raise MedauditError(f"batch_sizes must be positive integers (got {list(batch_sizes)})", param="batch_sizes")
    shapes = {name: _image_shape(shape, name) for name, _m, shape in models}
    ckpt_bytes = _checkpoint_sizes(names, checkpoint_paths)
    dev = resolve_device(device)
    timer = make_timer(dev)
    gen = torch.Generator().manual_seed(seed)

    layout = {name: _runs_channels_last(model, dev, channels_last) for name, model, _shape in models}
    with num_threads(threads), ExitStack() as stack:
        # In place, no copy of the weights; the guards give every model back as it came, also on errors.
        run_models = {name: stack.enter_context(inference_state(model, dev, channels_last=layout[name]))
                      for name, model, _shape in models}
        env = environment(dev, amp=amp, timer_kind=timer.kind, repeats=repeats, warmup=warmup, batch_sizes=sizes)
        autocast = (
            (lambda: torch.autocast(dev.type, dtype=getattr(torch, amp_dtype_name(amp))))
            if amp is not None else nullcontext
        )

        def forward_fn(name: str, batch: int):
            run_model = run_models[name]
            x = torch.randn((batch, *shapes[name]), generator=gen).to(dev)
            if layout[name]:
                x = x.contiguous(memory_format=torch.channels_last)

            def fwd():
                with autocast():
                    return run_model(x)

            return fwd

        bar = tqdm(total=len(sizes) * (warmup + repeats) * len(models), desc="bench", unit="fwd",
                   disable=not progress, leave=False)
        times: dict[int, dict[str, list[float]]] = {}
        memory: dict[str, dict] = {}
        with torch.inference_mode():
            for batch in sizes:
                fns = {name: forward_fn(name, batch) for name in names}
                try:
                    times[batch] = run_interleaved(fns, repeats=repeats, warmup=warmup, timer=timer,
                                                   on_run=lambda: bar.update(1))
                except torch.cuda.OutOfMemoryError:
                    raise MedauditError(
                        f"out of GPU memory at batch size {batch}; use smaller batch sizes or the CPU",
                        param="batch_sizes",
                    ) from None
                del fns
            bar.close()
            for name in names:  # memory per model, alone, after its caches are warm
                memory[name] = peak_memory_growth(forward_fn(name, sizes[-1]), dev)
        known = dict(flops or {})
        flops = {name: known.get(name) or count_flops(run_models[name], (1, *shapes[name])) for name in names}

    out_models = {}
    for name, model, _shape in models:
        out_models[name] = _efficiency(
            model, name, shapes[name], flops[name], {b: times[b][name] for b in sizes}, memory[name],
            ckpt_bytes[name], layout[name], env,
        )
    ratios = []
    for a, b in itertools.combinations(names, 2):
        ea, eb = out_models[a], out_models[b]
        ratios.append({
            "a": a, "b": b,
            "params_ratio": ea["params_total"] / eb["params_total"] if eb["params_total"] else None,
            "flops_ratio": ea["flops"] / eb["flops"] if ea["flops"] and eb["flops"] else None,
            "time_ratio": {str(s): paired_ratio(times[s][a], times[s][b]) for s in sizes},
        })
    return {"environment": env, "models": out_models, "ratios": ratios}


def _efficiency(model, name, shape, flops, times_by_batch, memory, ckpt_bytes, use_cl, env) -> dict:
    params = count_params(model)
    batch_ms = {str(b): summarize_ms(t) for b, t in times_by_batch.items()}
    throughput = {str(b): b / (batch_ms[str(b)]["median"] / 1e3) for b in times_by_batch}
    largest = str(max(times_by_batch))
    counted = flops["flops"] > 0
    return {
        "params_total": params["total"],
        "params_trainable": params["trainable"],
        "weights_bytes": weights_bytes(model),
        "checkpoint_bytes": ckpt_bytes,
        "input_shape": list(shape),
        "flops": flops["flops"] if counted else None,
        "macs": flops["macs"] if counted else None,
        "flops_reason": None if counted else f"no convolution/matmul/attention op was counted in '{name}'",
        "latency_ms": batch_ms["1"],
        "batch_ms": batch_ms,
        "throughput": throughput,
        "gflops_per_s": flops["flops"] * throughput[largest] / 1e9 if counted else None,
        "gflops_per_s_batch": int(largest),
        "peak_memory_bytes": memory["bytes"],
        "peak_memory_kind": memory["kind"],
        "peak_memory_reason": memory["reason"],
        "peak_memory_batch": int(largest),
        "channels_last": use_cl,
        "environment": env,
    }


def _fmt(value: float | None, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value / scale, spec)


def format_table(result: dict) -> str:
    """Plain-text efficiency table of a :func:`benchmark_models` result, with its setup line.

    Latency is the batch-1 median with its IQR; throughput and GFLOP/s are at the
    largest batch size; ratios are medians of per-round time ratios with their IQR.
    """
    env = result["environment"]
    big = str(max(env["batch_sizes"]))
    head = ["model", "params M", "ckpt MB", "GMACs", "lat ms [IQR]", "p95 ms", "min ms",
            f"img/s@{big}", "GFLOP/s", "peak MB"]
    rows = [head]
    for name, e in result["models"].items():
        lat = e["latency_ms"]
        rows.append([
            name, _fmt(e["params_total"], ".2f", 1e6), _fmt(e["checkpoint_bytes"], ".1f", 1e6),
            _fmt(e["macs"], ".3f", 1e9), f"{lat['median']:.2f} [{lat['iqr']:.2f}]", f"{lat['p95']:.2f}",
            f"{lat['min']:.2f}", _fmt(e["throughput"][big], ".1f"), _fmt(e["gflops_per_s"], ".1f"),
            _fmt(e["peak_memory_bytes"], ".1f", 1e6),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [
        f"device {env['device']} ({env['device_name']}), torch {env['torch']}, {env['threads']} threads, "
        f"{env['dtype']}, timer {env['timer']}, {env['repeats']} timed runs after {env['warmup']} warm-up, "
        f"{env['schedule']}, load average {_fmt(env.get('loadavg_1m'), '.2f')} of {env['cpu_count']} CPUs",
    ]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
              for r in rows]
    mem_kinds = sorted({e["peak_memory_kind"] for e in result["models"].values() if e["peak_memory_kind"]})
    if mem_kinds:
        lines.append(f"peak MB: memory added by one forward at batch {big} ({', '.join(mem_kinds)}; weights excluded)")
    for r in result["ratios"]:
        parts = [f"batch {b}: {t['median']:.2f} [{t['q25']:.2f}, {t['q75']:.2f}]" for b, t in r["time_ratio"].items()]
        extra = f"; params {_fmt(r['params_ratio'], '.2f')}x, FLOPs {_fmt(r['flops_ratio'], '.2f')}x"
        lines.append(f"time {r['a']} / {r['b']} (per-round median [q25, q75]): " + "; ".join(parts) + extra)
    return "\n".join(lines)
