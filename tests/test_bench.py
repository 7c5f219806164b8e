"""Tests of medaudit.bench / bench_timing / `medaudit bench`: structure, FLOP counts, the
measurement protocol (warm-up, interleaving, CUDA synchronisation) and caller safety.

No assertion is made on a timing figure: timings depend on the machine and its load.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from medaudit import bench_timing
from medaudit.bench import benchmark_models, count_flops, count_params, format_table
from medaudit.bench_timing import (
    CudaTimer,
    make_timer,
    paired_ratio,
    peak_memory_growth,
    run_interleaved,
    summarize_ms,
)
from medaudit.errors import MedauditError


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
    )


# -- FLOPs and parameters against hand-computed and published values -------------------


def test_count_flops_hand_computed_conv_linear():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 10 * 10, 5))
    # conv: Cout*Cin*k*k MACs per output pixel x H*W pixels; linear: in*out MACs.
    macs = 8 * 3 * 3 * 3 * 10 * 10 + 800 * 5
    got = count_flops(model, (1, 3, 10, 10))
    assert got == {"flops": 2 * macs, "macs": macs}
    assert count_flops(model, (4, 3, 10, 10)) == got  # per image, whatever the batch


def test_count_flops_counts_cpu_fused_attention():
    class Attn(nn.Module):
        def forward(self, x):  # x: (B, heads, tokens, dim)
            return nn.functional.scaled_dot_product_attention(x, x, x)

    b, h, s, d = 1, 2, 5, 4
    # Q @ K^T and attn @ V: 2 x (h * s * s * d) MACs.
    assert count_flops(Attn(), (b, h, s, d))["macs"] == 2 * h * s * s * d


@pytest.mark.parametrize("arch, gmacs", [("resnet18", 1.82), ("vit_tiny_patch16_224", 1.26)])
def test_count_flops_matches_published_timm_values(arch, gmacs):
    import timm

    model = timm.create_model(arch, pretrained=False, num_classes=1000)
    got = count_flops(model, (1, 3, 224, 224))
    assert got["macs"] / 1e9 == pytest.approx(gmacs, rel=0.03)


def test_count_params_total_and_trainable():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # 3*4+4 + 4*2+2 = 26
    model[1].weight.requires_grad_(False)
    assert count_params(model) == {"total": 26, "trainable": 18}


# -- statistics --------------------------------------------------------------------------


def test_summarize_ms_hand_computed():
    s = summarize_ms([4.0, 1.0, 100.0, 3.0, 2.0])
    # sorted 1,2,3,4,100; linear interpolation: q25 = 2, q75 = 4, p95 = 4 + 0.8 * 96
    assert s["median"] == 3.0 and s["min"] == 1.0 and s["max"] == 100.0 and s["n"] == 5
    assert (s["q25"], s["q75"], s["iqr"]) == (2.0, 4.0, 2.0)
    assert s["p95"] == pytest.approx(80.8)
    assert s["mean"] == pytest.approx(22.0)


def test_paired_ratio_uses_rounds_pairwise():
    # B is twice A in every round despite large drift: paired ratios are exactly 0.5.
    a = [1.0, 10.0, 100.0, 1000.0]
    r = paired_ratio(a, [2 * v for v in a])
    assert r == {"median": 0.5, "q25": 0.5, "q75": 0.5, "n": 4}
    with pytest.raises(ValueError):
        paired_ratio([1.0], [1.0, 2.0])


# -- the measurement protocol ------------------------------------------------------------


class RecordingTimer:
    kind = "recording"

    def __init__(self, log):
        self.log = log

    def synchronize(self):
        self.log.append("sync")

    def time_ms(self, fn):
        self.log.append("timed")
        fn()
        return 1.0


def test_run_interleaved_warms_up_then_alternates():
    log: list[str] = []
    fns = {"A": lambda: log.append("A"), "B": lambda: log.append("B")}
    times = run_interleaved(fns, repeats=3, warmup=2, timer=RecordingTimer(log))
    ab, ba = ["timed", "A", "timed", "B"], ["timed", "B", "timed", "A"]
    assert log == ["A", "B"] * 2 + ["sync"] + ab + ba + ab  # the order rotates every round
    assert times == {"A": [1.0] * 3, "B": [1.0] * 3}
    log.clear()
    three = {k: (lambda k=k: log.append(k)) for k in "ABC"}
    run_interleaved(three, repeats=3, warmup=0, timer=RecordingTimer(log))
    assert [x for x in log if x != "timed" and x != "sync"] == list("ABC" "BCA" "CAB")


def test_cuda_timer_synchronises_around_events(monkeypatch):
    log: list[str] = []

    class FakeEvent:
        def __init__(self, enable_timing=False):
            assert enable_timing
            self.t = None

        def record(self, stream=None):
            log.append(f"record on {stream}")

        def elapsed_time(self, other):
            log.append("elapsed")
            return 7.5

    class FakeDevice:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            log.append(f"enter {self.device}")

        def __exit__(self, *exc):
            log.append("exit")

    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append(f"synchronize {device}"))
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "device", FakeDevice)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: f"stream of {device}")
    timer = make_timer(torch.device("cuda:1"))
    assert isinstance(timer, CudaTimer) and timer.kind == "cuda_events"
    assert timer.time_ms(lambda: log.append("forward")) == 7.5
    # Events on the timed device's stream; elapsed time is read only after the device finished.
    assert log == ["synchronize cuda:1", "enter cuda:1", "record on stream of cuda:1", "forward",
                   "record on stream of cuda:1", "exit", "synchronize cuda:1", "elapsed"]


def test_cuda_peak_memory_is_max_allocated_delta(monkeypatch):
    log: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: log.append("synchronize"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: log.append("reset"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1000)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 5000)
    got = peak_memory_growth(lambda: log.append("forward"), torch.device("cuda"))
    assert got == {"bytes": 4000, "kind": "cuda_max_allocated_delta", "reason": None}
    assert log == ["synchronize", "reset", "forward", "synchronize"]


def test_cpu_peak_memory_sees_a_known_allocation():
    n = 16 * 1024 * 1024  # 64 MiB of float32, written so the pages are resident
    got = peak_memory_growth(lambda: torch.ones(n).sum(), torch.device("cpu"))
    if got["bytes"] is None:
        assert got["reason"]
        pytest.skip(f"no peak-RSS probe here: {got['reason']}")
    assert got["kind"] in ("cpu_rss_hwm_delta", "cpu_ru_maxrss_delta")
    # The high-water mark is page-granular and the allocator may reuse a few pages it
    # already held, so allow 1 % below the 64 MiB written (seen: 20 KiB short).
    assert 0.99 * 4 * n <= got["bytes"] < 4 * 4 * n


# -- benchmark_models --------------------------------------------------------------------


def _bench(models, **kw):
    kw = {"device": "cpu", "batch_sizes": (1, 4), "repeats": 3, "warmup": 2, **kw}
    return benchmark_models(models, **kw)


def test_benchmark_models_warmup_interleaving_and_counts():
    a, b = tiny_cnn(), tiny_cnn()
    order: list[str] = []
    a.register_forward_hook(lambda m, i, o: order.append(f"A{i[0].shape[0]}"))
    b.register_forward_hook(lambda m, i, o: order.append(f"B{i[0].shape[0]}"))
    _bench([("a", a, (3, 8, 8)), ("b", b, (3, 8, 8))])
    # per batch size: 2 warm-up rounds A B, then 3 timed rounds in rotating order (A B, B A,
    # A B); then one memory forward each at the largest batch; then one FLOP-count forward
    # each at batch 1.
    rounds = lambda n: [f"A{n}", f"B{n}"] * 2 + [f"A{n}", f"B{n}", f"B{n}", f"A{n}", f"A{n}", f"B{n}"]  # noqa: E731
    expected = rounds(1) + rounds(4) + ["A4", "B4"] + ["A1", "B1"]
    assert order == expected


def test_benchmark_models_restores_state_and_does_not_mutate_caller():
    model = tiny_cnn()
    model.train()
    model[1].eval()  # a mixed state must come back exactly
    before = [m.training for m in model.modules()]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    seen_training: list[bool] = []
    model.register_forward_hook(lambda m, i, o: seen_training.append(m.training))
    result = _bench([("m", model, (3, 8, 8))], channels_last=True)
    assert seen_training and not any(seen_training)  # every forward in eval mode
    assert [m.training for m in model.modules()] == before
    for k, v in model.state_dict().items():  # BatchNorm stats untouched (eval), layout untouched
        assert torch.equal(v, weights[k]) and v.is_contiguous()
    assert result["models"]["m"]["channels_last"] is True


def test_benchmark_models_result_structure(tmp_path):
    ckpt = tmp_path / "a.pt"
    ckpt.write_bytes(b"x" * 1234)
    threads_before = torch.get_num_threads()
    result = _bench([("a", tiny_cnn(), (3, 8, 8)), ("b", tiny_cnn(), (1, 3, 8, 8))],
                    checkpoint_paths={"a": ckpt}, threads=1)
    assert torch.get_num_threads() == threads_before
    json.dumps(result)  # JSON-serialisable as is
    env = result["environment"]
    assert env["device"] == "cpu" and env["timer"] == "perf_counter" and env["threads"] == 1
    assert env["dtype"] == "float32" and env["schedule"] == "interleaved" and env["batch_sizes"] == [1, 4]
    ea, eb = result["models"]["a"], result["models"]["b"]
    keys = {"params_total", "params_trainable", "checkpoint_bytes", "flops", "macs", "latency_ms", "throughput",
            "gflops_per_s", "peak_memory_bytes", "peak_memory_kind", "weights_bytes", "batch_ms", "environment"}
    assert keys <= set(ea)
    assert ea["checkpoint_bytes"] == 1234 and eb["checkpoint_bytes"] is None
    assert ea["params_total"] == count_params(tiny_cnn())["total"]
    # float32 parameters + BatchNorm running mean/var (2 x 4 float32) + its int64 batch counter
    assert ea["weights_bytes"] == 4 * ea["params_total"] + 4 * 8 + 8
    assert ea["input_shape"] == [3, 8, 8] == eb["input_shape"]
    assert ea["flops"] == count_flops(tiny_cnn(), (1, 3, 8, 8))["flops"]
    assert set(ea["throughput"]) == {"1", "4"} and ea["latency_ms"] == ea["batch_ms"]["1"]
    assert ea["latency_ms"]["n"] == 3 and ea["latency_ms"]["min"] <= ea["latency_ms"]["median"] <= ea["latency_ms"]["p95"]
    assert ea["throughput"]["4"] == pytest.approx(4 / (ea["batch_ms"]["4"]["median"] / 1e3))
    assert ea["gflops_per_s"] == pytest.approx(ea["flops"] * ea["throughput"]["4"] / 1e9)
    assert ea["peak_memory_batch"] == 4
    assert (ea["peak_memory_bytes"] is None) == (ea["peak_memory_reason"] is not None)
    (ratio,) = result["ratios"]
    assert (ratio["a"], ratio["b"]) == ("a", "b") and set(ratio["time_ratio"]) == {"1", "4"}
    assert ratio["params_ratio"] == 1.0 and ratio["flops_ratio"] == 1.0
    assert "a" in format_table(result) and "time a / b" in format_table(result)


def test_benchmark_models_bad_input():
    m = tiny_cnn()
    with pytest.raises(MedauditError, match="unique"):
        _bench([("a", m, (3, 8, 8)), ("a", tiny_cnn(), (3, 8, 8))])
    with pytest.raises(MedauditError, match="input shape"):
        _bench([("a", m, (8, 8))])
    with pytest.raises(MedauditError, match="amp"):
        _bench([("a", m, (3, 8, 8))], amp="fp8")
    with pytest.raises(MedauditError, match="checkpoint not found"):
        _bench([("a", m, (3, 8, 8))], checkpoint_paths=["/nonexistent/a.pt"])
    with pytest.raises(MedauditError, match="batch_sizes must be positive"):
        _bench([("a", m, (3, 8, 8))], batch_sizes=(0,))


def test_cpu_timer_measures_only_the_call(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(bench_timing.time, "perf_counter", lambda: now[0])

    def work():
        now[0] += 0.005  # the "forward" takes 5 ms of fake clock

    assert bench_timing.CpuTimer().time_ms(work) == pytest.approx(5.0)


# -- CLI ---------------------------------------------------------------------------------


def test_cli_bench_arch_and_json(tmp_path):
    from medaudit.cli import main

    out = tmp_path / "bench.json"
    res = CliRunner().invoke(main, ["bench", "--arch", "resnet18", "--img-size", "16", "--batch-sizes", "1,2",
                                    "--repeats", "2", "--warmup", "1", "--device", "cpu", "--quiet",
                                    "--threads", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "resnet18" in res.output and "GMACs" in res.output
    data = json.loads(out.read_text())
    assert data["models"]["resnet18"]["input_shape"] == [3, 16, 16]
    assert data["environment"]["threads"] == 1


@pytest.mark.parametrize("args, message", [
    (["bench"], "--models"),
    (["bench", "--arch", "resnet18", "--batch-sizes", "1,x"], "--batch-sizes"),
    (["bench", "missing.pt"], "missing.pt"),
])
def test_cli_bench_bad_input_exit_2(args, message):
    from medaudit.cli import main

    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and message in res.output


def test_cli_bench_checkpoint_size(tmp_path):
    from medaudit.cli import main
    from medaudit.models.checkpoint import save_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.models.preprocess import Recipe

    recipe = Recipe(img_size=16, in_chans=1)
    model = create_model("resnet18", 2, in_chans=1, img_size=16)
    path = save_checkpoint(tmp_path / "r18.pt", model, arch="resnet18", class_names=["a", "b"], task="binary",
                           recipe=recipe, small_stem=True)
    out = tmp_path / "b.json"
    res = CliRunner().invoke(main, ["bench", "--models", str(path), "--batch-sizes", "1", "--repeats", "1",
                                    "--warmup", "0", "--device", "cpu", "--quiet", "--json", str(out)])
    assert res.exit_code == 0, res.output
    eff = json.loads(out.read_text())["models"]["r18"]
    assert eff["checkpoint_bytes"] == path.stat().st_size
    assert eff["input_shape"] == [1, 16, 16]


def test_known_flop_counts_are_not_counted_again():
    a = tiny_cnn()
    calls: list[int] = []
    a.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    known = {"flops": 1234, "macs": 617}
    result = _bench([("a", a, (3, 8, 8))], flops={"a": known}, batch_sizes=(1,), repeats=1, warmup=0)
    assert result["models"]["a"]["flops"] == 1234 and result["models"]["a"]["macs"] == 617
    assert calls == [1, 1]  # one timed forward and one memory forward; no FLOP-count forward


def test_channels_last_none_times_each_model_as_inference_runs_it():
    class TokenModel(nn.Module):  # patch_embed marks a token model: never channels-last
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Conv2d(3, 4, 4, stride=4)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.patch_embed(x).flatten(2).mean(2))

    result = _bench([("cnn", tiny_cnn(), (3, 8, 8)), ("vit", TokenModel(), (3, 8, 8))], channels_last=None,
                    batch_sizes=(1,), repeats=1, warmup=0)
    assert result["models"]["cnn"]["channels_last"] is True  # use_channels_last: a CNN on the CPU
    assert result["models"]["vit"]["channels_last"] is False


def test_a_failing_forward_gives_the_callers_model_back_as_it_came():
    model = tiny_cnn()
    model.train()
    model[1].eval()
    before = [m.training for m in model.modules()]
    calls = []

    def fail_on_third(m, i):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the third forward fails")

    model.register_forward_pre_hook(fail_on_third)
    with pytest.raises(RuntimeError, match="third forward"):
        _bench([("m", model, (3, 8, 8))], channels_last=True)
    assert [m.training for m in model.modules()] == before
    assert model[0].weight.is_contiguous() and not model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_cli_bench_names_checkpoints_and_architectures_by_the_one_rule(tmp_path):
    from medaudit.cli import main
    from medaudit.models.checkpoint import save_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.models.preprocess import Recipe

    paths = []
    for folder in ("a", "b"):
        model = create_model("resnet18", 2, in_chans=1, img_size=16)
        paths.append(save_checkpoint(tmp_path / folder / "r18.pt", model, arch="resnet18", class_names=["x", "y"],
                                     task="binary", recipe=Recipe(img_size=16, in_chans=1), small_stem=True))
    out = tmp_path / "b.json"
    res = CliRunner().invoke(main, ["bench", "--models", *map(str, paths), "--arch", "resnet18", "--arch", "resnet18",
                                    "--img-size", "16", "--batch-sizes", "1", "--repeats", "1", "--warmup", "0",
                                    "--device", "cpu", "--quiet", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert list(json.loads(out.read_text())["models"]) == ["a/r18", "b/r18", "resnet18", "resnet18#2"]
