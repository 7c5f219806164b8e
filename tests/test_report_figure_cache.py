"""The figure cache: figures drawn once per set of numbers, damaged entries redrawn, ``run`` not an input."""

from __future__ import annotations

import base64
import copy
import json
import sys

import pytest

import medaudit.report.figure_cache as fc
import medaudit.report.writer as writer_mod
from medaudit.errors import MedauditWarning
from medaudit.report import write_report
from tests.snapshot_factory import make_snapshot


@pytest.fixture
def drawn(monkeypatch):
    """Counts make_figures calls and records the keys of the snapshot each was given."""
    calls = []
    orig = writer_mod.make_figures

    def counting(snap, fig_dir, **kw):
        calls.append(set(snap))
        return orig(snap, fig_dir, **kw)

    monkeypatch.setattr(writer_mod, "make_figures", counting)
    return calls


def _pngs(folder):
    return {p.name: p.read_bytes() for p in sorted((folder / "figures").glob("*.png"))}


def _entry(cache):
    (file,) = cache.glob("*.json")
    return file


def test_the_same_numbers_are_drawn_once_and_copied_after(tmp_path, drawn):
    cache = tmp_path / "figcache"
    snap = make_snapshot(2)
    first = write_report(snap, tmp_path / "a", formats=("json",), figure_cache=cache)
    later = copy.deepcopy(snap)
    later["run"] = dict(later.get("run") or {}, created="2030-01-01T00:00:00+00:00", duration_s=123.0)
    second = write_report(later, tmp_path / "b", formats=("json",), figure_cache=cache)
    assert len(drawn) == 1 and "run" not in drawn[0] and "figures" not in drawn[0]
    assert _pngs(tmp_path / "a") == _pngs(tmp_path / "b") and len(_pngs(tmp_path / "a")) >= 3
    figs_a = json.loads(first["json"].read_text())["figures"]
    assert json.loads(second["json"].read_text())["figures"] == figs_a


def test_other_numbers_or_no_cache_draw_again(tmp_path, drawn):
    cache = tmp_path / "figcache"
    snap = make_snapshot(2)
    write_report(snap, tmp_path / "a", formats=("json",), figure_cache=cache)
    other = copy.deepcopy(snap)
    other["models"][0]["name"] = other["models"][0]["name"] + "-b"
    write_report(other, tmp_path / "b", formats=("json",), figure_cache=cache)
    write_report(snap, tmp_path / "c", formats=("json",))  # no cache given: drawn
    assert len(drawn) == 3 and len(list(cache.glob("*.json"))) == 2
    assert _pngs(tmp_path / "a") == _pngs(tmp_path / "c")  # the cache serves what drawing gives


def test_the_key_covers_the_drawing_code_and_the_dpi(tmp_path, monkeypatch):
    mod = tmp_path / "fake_drawing_module.py"
    mod.write_text("COLOR = 'red'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(fc, "DRAWING_MODULES", fc.DRAWING_MODULES + ("fake_drawing_module",))
    inputs = fc.figure_inputs(make_snapshot(1))
    k1 = fc.figure_key(inputs, 150)
    assert fc.figure_key(inputs, 150) == k1 and fc.figure_key(inputs, 300) != k1
    mod.write_text("COLOR = 'blue'\n")
    assert fc.figure_key(inputs, 150) != k1
    sys.modules.pop("fake_drawing_module", None)


@pytest.mark.parametrize("damage", ["truncate", "png_bytes", "key", "name", "not_json"])
def test_a_damaged_entry_warns_once_is_redrawn_and_rewritten(tmp_path, drawn, damage):
    cache = tmp_path / "figcache"
    snap = make_snapshot(2)
    write_report(snap, tmp_path / "a", formats=("json",), figure_cache=cache)
    file = _entry(cache)
    raw = file.read_text()
    entry = json.loads(raw)
    name = sorted(entry["figures"])[0]
    if damage == "truncate":
        file.write_text(raw[: len(raw) // 2])
    elif damage == "png_bytes":
        png = bytearray(base64.b64decode(entry["figures"][name]["png"]))
        png[-20] ^= 0xFF
        entry["figures"][name]["png"] = base64.b64encode(bytes(png)).decode()
        file.write_text(json.dumps(entry))
    elif damage == "key":
        entry["key"] = "0" * 64
        file.write_text(json.dumps(entry))
    elif damage == "name":
        entry["figures"]["../../escape"] = entry["figures"].pop(name)
        file.write_text(json.dumps(entry))
    else:
        file.write_bytes(b"\x00\xff not json")
    with pytest.warns(MedauditWarning, match=r"ignoring the cached figures .*drawn again") as rec:
        write_report(snap, tmp_path / "b", formats=("json",), figure_cache=cache)
    assert len([w for w in rec if issubclass(w.category, MedauditWarning)]) == 1
    assert len(drawn) == 2 and _pngs(tmp_path / "a") == _pngs(tmp_path / "b")
    assert not (tmp_path / "escape.png").exists() and not list(tmp_path.glob("**/escape.png"))
    assert json.loads(file.read_text())["key"] == file.stem  # rewritten whole
    write_report(snap, tmp_path / "c", formats=("json",), figure_cache=cache)
    assert len(drawn) == 2


def _only_key(blocker):
    return blocker / "figures" / f"{fc.figure_key(fc.figure_inputs(make_snapshot(1)), writer_mod.DPI)}.json"


def test_a_cache_folder_that_cannot_be_written_only_warns(tmp_path, drawn):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    with pytest.warns(MedauditWarning) as rec:
        paths = write_report(make_snapshot(1), tmp_path / "a", formats=("json",), figure_cache=blocker / "figures")
    assert [str(w.message).split(" (")[0] for w in rec] == [f"could not write the figure cache {_only_key(blocker)}"]
    assert paths["json"].is_file() and _pngs(tmp_path / "a") and blocker.read_text().startswith("a file")


def test_report_uses_the_cache_and_no_cache_draws_anew(tmp_path, monkeypatch, drawn):
    import torch

    from medaudit.audit import AuditSettings
    from medaudit.data import make_demo_dataset
    from medaudit.models.checkpoint import save_checkpoint
    from medaudit.models.factory import create_model
    from medaudit.models.preprocess import Recipe
    from medaudit.pipeline import ReportOptions, run_report

    monkeypatch.setenv("MEDAUDIT_CACHE", str(tmp_path / "cache"))
    data = make_demo_dataset(tmp_path / "data", n_train=2, n_val=2, n_test=2, size=16)
    torch.manual_seed(0)
    ckpt = tmp_path / "r18.pt"
    save_checkpoint(ckpt, create_model("resnet18", 4, img_size=16), arch="resnet18",
                    class_names=["glioma", "meningioma", "notumor", "pituitary"], task="multiclass",
                    recipe=Recipe(img_size=16), small_stem=True, selected_on="val")

    def report(out, **kw):
        return run_report(ReportOptions(checkpoints=[ckpt], data_spec=str(data), out_dir=tmp_path / out,
                                        settings=AuditSettings(bootstrap=0), bench=False, cam=False,
                                        formats=("json",), **kw))

    report("a")
    report("b")
    assert len(drawn) == 1 and list((tmp_path / "cache" / "figures").glob("*.json"))
    assert _pngs(tmp_path / "a") == _pngs(tmp_path / "b")
    report("c", use_cache=False)
    assert len(drawn) == 2
