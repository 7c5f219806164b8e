"""report/eff_context.pass_spread: the efficiency section's sentence on how the passes were spread (run.distributed)."""

from __future__ import annotations

import pytest

from medaudit.report.eff_context import efficiency_section, pass_spread


def test_a_torchrun_pass_is_described_with_its_ranks_backend_and_devices():
    text = pass_spread({"world_size": 3, "backend": "nccl", "devices": ["cuda:0", "cuda:1", "cuda:1"]})
    assert text.startswith("The predictions were computed by 3 processes under torchrun (nccl; cuda:0, 2 \u00d7 cuda:1)")
    assert "exactly once" in text and "rank 0 alone" in text


@pytest.mark.parametrize("value", [None, {}, "2", {"world_size": 1, "backend": "gloo", "devices": ["cpu"]},
                                   {"world_size": True, "backend": "gloo", "devices": ["cpu"]},
                                   {"world_size": 2, "backend": "gloo", "devices": ["cpu"]},
                                   {"world_size": 2, "backend": None, "devices": ["cpu", "cpu"]},
                                   {"world_size": 2, "backend": "gloo", "devices": ["cpu", 3]}])
def test_one_process_an_old_snapshot_or_a_malformed_record_says_nothing(value):
    assert pass_spread(value) is None


def test_the_section_carries_the_sentence_only_when_recorded():
    models = [{"name": "m", "checkpoint": {"params": 10}}]
    assert efficiency_section(models, None)["spread"] is None
    spread = efficiency_section(models, None, {"world_size": 2, "backend": "gloo", "devices": ["cpu", "cpu"]})["spread"]
    assert "2 processes" in spread and "2 \u00d7 cpu" in spread
