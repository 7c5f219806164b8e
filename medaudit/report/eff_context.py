"""Template context for section 9, efficiency (schema owned by :mod:`medaudit.bench`).

Three compact blocks instead of a flattened dump: one table with the models side by
side, the measurement environment once, and the paired time ratios as sentences.
The measurements live in ``run.efficiency`` (``environment``, ``ratios`` and per-model
``models``); :func:`medaudit.snapshot.measured_models` puts each model's block back as
``efficiency`` for the report (schema 1.0 kept them there). Either may be ``null``
(``--no-bench``); nothing is recomputed here except unit scaling (bytes -> MB, FLOPs -> G).
"""

from __future__ import annotations

from typing import Any

from medaudit.report.format import Cell, Footnotes, fmt_any, not_available

NOT_MEASURED = "not measured (--no-bench)"
MB = 1e6  # decimal megabytes, stated in the table caption

MEMORY_KINDS = {
    "cuda_max_allocated_delta": "CUDA allocator peak",
    "cpu_rss_hwm_delta": "process RSS peak growth",
    "cpu_ru_maxrss_delta": "ru_maxrss growth, lower bound",
}

# (key in the environment dict, label) in the order a reader wants them.
ENV_ROWS = [
    ("device", "Device"), ("device_name", "Device name"), ("threads", "Threads (intra-op)"),
    ("interop_threads", "Threads (inter-op)"), ("cpu_count", "CPU count"), ("dtype", "Dtype"),
    ("torch", "torch"), ("timm", "timm"), ("cuda", "CUDA"), ("cudnn", "cuDNN"),
    ("cudnn_benchmark", "cuDNN benchmark"), ("tf32_matmul", "TF32 matmul"), ("repeats", "Timed runs per batch size"),
    ("warmup", "Warm-up runs"), ("schedule", "Schedule"), ("batch_sizes", "Batch sizes"), ("timer", "Timer"),
    ("grad", "Autograd"), ("loadavg_1m", "Load average (1 min) at start"), ("platform", "Platform"),
]


def num(x: Any, scale: float = 1.0) -> str:
    """A measured quantity with 3-4 significant digits and no exponent (``866.7``, ``3.12``)."""
    if x is None:
        return "undefined"
    v = float(x) / scale
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _batch_sizes(effs: list[dict | None]) -> list[str]:
    keys: set[str] = set()
    for e in effs:
        keys |= set((e or {}).get("throughput") or {})
    return sorted(keys, key=lambda k: int(k) if k.isdigit() else 0)


def _latency(lat: dict | None) -> str:
    if not lat or lat.get("median") is None:
        return "undefined"
    text = num(lat["median"])
    if lat.get("q25") is not None and lat.get("q75") is not None:
        text += f" [{num(lat['q25'])}\u2013{num(lat['q75'])}]"
    return text


def _model_rows(models: list[dict], notes: Footnotes) -> list[dict]:
    effs = [m.get("efficiency") for m in models]
    cks = [m.get("checkpoint") or {} for m in models]
    evals = [m.get("predictions") or {} for m in models]

    def row(label: str, fn, *, static: bool = False) -> dict:
        cells = []
        for i, (e, ck) in enumerate(zip(effs, cks, strict=True)):
            if e is None and not static:
                cells.append(Cell(NOT_MEASURED, None, None, "undef"))
                continue
            cells.append(fn(e or {}, ck, i))
        return {"label": label, "values": cells}

    def count(key_eff: str, key_ck: str, scale: float):
        # Static counts are in the checkpoint block even with --no-bench.
        def fn(e, ck, i):
            v = e.get(key_eff) if e.get(key_eff) is not None else ck.get(key_ck)
            if v is None:
                return Cell("undefined", notes.add(e.get("flops_reason") or f"'{key_ck}' not recorded"), None, "undef")
            return Cell(num(v, scale))
        return fn

    def opt(value, reason, scale=1.0):
        if value is None:
            return Cell("undefined", notes.add(reason), None, "undef")
        return Cell(num(value, scale))

    def params(e, ck, i):
        total = e.get("params_total") if e.get("params_total") is not None else ck.get("params")
        if total is None:
            return Cell("undefined", notes.add("parameter count not recorded"), None, "undef")
        text = num(total, 1e6)
        tr = e.get("params_trainable")
        if tr is not None and tr != total:
            text += f" ({num(tr, 1e6)} trainable)"
        return Cell(text)

    def memory(e, ck, i):
        if e.get("peak_memory_bytes") is None:
            return Cell("undefined", notes.add(e.get("peak_memory_reason") or "peak memory not measured"), None,
                        "undef")
        kind = MEMORY_KINDS.get(e.get("peak_memory_kind"), e.get("peak_memory_kind") or "kind not recorded")
        return Cell(f"{num(e['peak_memory_bytes'], MB)} (batch {e.get('peak_memory_batch', '?')}; {kind})")

    def layout(e, ck, i):
        env = e.get("environment") or {}
        fmt = "channels-last" if e.get("channels_last") else "contiguous (NCHW)"
        return Cell(f"{fmt}, {env.get('dtype') or 'dtype not recorded'}")

    rows = [
        row("Parameters (M)", params, static=True),
        row("FLOPs per image (G)", count("flops", "flops", 1e9), static=True),
        row("MACs per image (G)", count("macs", "macs", 1e9), static=True),
        row("Input (C\u00d7H\u00d7W)", lambda e, ck, i: Cell("\u00d7".join(map(str, e["input_shape"]))
                                                            if e.get("input_shape") else "undefined")),
        row("Weights in memory (MB)", lambda e, ck, i: opt(e.get("weights_bytes"), "weights size not recorded", MB)),
        row("Checkpoint file (MB)", lambda e, ck, i: opt(e.get("checkpoint_bytes"), "no checkpoint file given", MB)),
        row("Batch-1 latency, median [IQR] (ms)", lambda e, ck, i: Cell(_latency(e.get("latency_ms")))),
        row("Batch-1 latency, p95 (ms)", lambda e, ck, i: Cell(num((e.get("latency_ms") or {}).get("p95")))),
        row("Batch-1 latency, min (ms)", lambda e, ck, i: Cell(num((e.get("latency_ms") or {}).get("min")))),
        row("Timed runs (n)", lambda e, ck, i: Cell(fmt_any((e.get("latency_ms") or {}).get("n")))),
    ]
    for b in _batch_sizes(effs):
        rows.append(row(f"Throughput at batch {b} (images/s)",
                        lambda e, ck, i, b=b: opt((e.get("throughput") or {}).get(b), f"batch {b} not timed")))
    rows += [
        row("Achieved GFLOP/s", lambda e, ck, i: opt(e.get("gflops_per_s"), e.get("flops_reason") or "FLOPs unknown")
            if e.get("gflops_per_s") is None
            else Cell(f"{num(e['gflops_per_s'])} (batch {e.get('gflops_per_s_batch', '?')})")),
        row("Peak memory added by a forward (MB)", memory),
        row("Evaluation pass (images/s, whole split)", lambda e, ck, i: _eval_rate(evals[i], notes), static=True),
        row("Memory format, dtype", layout),
    ]
    return rows


def _eval_rate(pred: dict, notes: Footnotes) -> Cell:
    """Throughput of the real evaluation pass (batched, with data loading), from the predictions run."""
    n, wall = pred.get("n"), pred.get("wall_s")
    if not n or not wall:
        return Cell("undefined", notes.add("evaluation time not recorded"), None, "undef")
    where = f"{pred.get('device') or '?'}" + ("; from cache, timed when first run" if pred.get("cached") else "")
    return Cell(f"{num(n / wall)} ({where})")


def _environments(top: dict | None, models: list[dict]) -> tuple[list[str], list[dict]]:
    """Column headers and rows of the environment table (one column unless models differ)."""
    envs: list[tuple[str, dict]] = []
    if top and top.get("environment"):
        envs = [("value", top["environment"])]
    else:
        per = [(m.get("name"), (m.get("efficiency") or {}).get("environment")) for m in models]
        per = [(n, e) for n, e in per if e]
        if per and all(e == per[0][1] for _, e in per):
            envs = [("value", per[0][1])]
        else:
            envs = per
    if not envs:
        return [], []
    keys = [k for k, _ in ENV_ROWS if any(e.get(k) is not None for _, e in envs)]
    label = dict(ENV_ROWS)
    rows = [{"label": label[k], "values": [fmt_any(e.get(k)) if e.get(k) is not None else "\u2014" for _, e in envs]}
            for k in keys]
    return [n for n, _ in envs], rows


def _ratio_text(t: dict) -> str:
    text = f"{t['median']:.2f}\u00d7"
    if t.get("q25") is not None and t.get("q75") is not None:
        text += f" [IQR {t['q25']:.2f}\u2013{t['q75']:.2f}]"
    return text


def _ratios(top: dict | None) -> list[dict]:
    out = []
    for r in (top or {}).get("ratios") or []:
        a, b = r.get("a"), r.get("b")
        batches = sorted((r.get("time_ratio") or {}).items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)
        for batch, t in batches:
            if not t or t.get("median") is None:
                continue
            lo, hi = t.get("q25"), t.get("q75")
            if lo is not None and hi is not None and lo <= 1 <= hi:
                verdict = "the IQR includes 1: no clear difference"
            else:
                verdict = f"{a} is {'slower' if t['median'] > 1 else 'faster'}"
            out.append({"a": a, "b": b, "batch": batch, "ratio": _ratio_text(t), "n": fmt_any(t.get("n")),
                        "verdict": verdict,
                        "sentence": f"{a} takes {_ratio_text(t)} the time of {b} at batch {batch}"})
        statics = []
        if r.get("params_ratio") is not None:
            statics.append(f"{r['params_ratio']:.2f}\u00d7 the parameters")
        if r.get("flops_ratio") is not None:
            statics.append(f"{r['flops_ratio']:.2f}\u00d7 the FLOPs")
        if statics:
            out.append({"a": a, "b": b, "batch": None, "ratio": None, "n": None, "verdict": None,
                        "sentence": f"{a} has {' and '.join(statics)} of {b}"})
    return out


def pass_spread(distributed: Any) -> str | None:
    """How the prediction passes were spread over processes (``run.distributed``), as a sentence.

    Parameters
    ----------
    distributed : dict or None
        ``{"world_size": int, "backend": str, "devices": [str, ...]}``; None, or anything malformed
        (the snapshot is untrusted), gives None: one process, nothing to say.

    Returns
    -------
    str or None
    """
    if not isinstance(distributed, dict):
        return None
    world, backend, devices = distributed.get("world_size"), distributed.get("backend"), distributed.get("devices")
    if not (isinstance(world, int) and not isinstance(world, bool) and world > 1 and isinstance(backend, str)
            and isinstance(devices, list) and len(devices) == world and all(isinstance(d, str) for d in devices)):
        return None
    counts: dict[str, int] = {}
    for d in devices:
        counts[d] = counts.get(d, 0) + 1
    where = ", ".join(f"{n} \u00d7 {d}" if n > 1 else d for d, n in counts.items())
    return (f"The predictions were computed by {world} processes under torchrun ({backend}; {where}): each ran a "
            "contiguous shard of whole batches and rank 0 gathered them, every sample exactly once, so they are the "
            "predictions of one process. The evaluation rates below are rank 0's wall time for the whole pass; the "
            "benchmark and the Grad-CAM tiles ran on rank 0 alone.")


def efficiency_section(models: list[dict], top: dict | None, distributed: Any = None) -> dict:
    """Section 8 context.

    Parameters
    ----------
    models : list of dict
        :func:`medaudit.snapshot.measured_models`; ``efficiency`` of each is a bench.py dict or ``None``.
    top : dict or None
        :func:`medaudit.snapshot.measured_efficiency`: ``environment`` and pairwise ``ratios``.
    distributed : dict, optional
        ``run.distributed`` (:func:`pass_spread`).

    Returns
    -------
    dict
        ``rows`` (label + one :class:`Cell` per model), ``notes`` (footnote reasons),
        ``env_columns``/``env_rows``, ``ratios`` (sentences), ``spread`` (a sentence or None), ``missing``
        and ``reason``.
    """
    measured = [m for m in models if m.get("efficiency")]
    if not models:
        return {"reason": not_available("the snapshot lists no models")}
    notes = Footnotes()
    # With --no-bench only the static counts remain; drop rows that are all "not measured".
    rows = [r for r in _model_rows(models, notes) if any(c.text != NOT_MEASURED for c in r["values"])]
    env_cols, env_rows = _environments(top, models)
    return {"reason": None, "names": [m.get("name") for m in models], "rows": rows, "notes": notes.reasons,
            "env_columns": env_cols, "env_rows": env_rows, "ratios": _ratios(top),
            "ratios_reason": None if (top or {}).get("ratios") else not_available(
                "no paired timing ratios in the snapshot (fewer than 2 models benchmarked together, --no-bench, "
                "or an older snapshot)"),
            "spread": pass_spread(distributed),
            "missing": [m.get("name") for m in models if not m.get("efficiency")],
            "any_measured": bool(measured)}
