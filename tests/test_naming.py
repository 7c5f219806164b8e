"""medaudit.naming: the one rule for models' display names and their file stems."""

from __future__ import annotations

from pathlib import Path

import pytest

from medaudit.errors import MedauditError
from medaudit.naming import file_stems, model_names, safe_name, unique_names


def test_stems_then_parent_slash_stem_then_numbers():
    assert model_names([Path("a/r18.pt"), Path("b/vit.pt")]) == ["r18", "vit"]
    assert model_names([Path("a/m.pt"), Path("b/m.pt")]) == ["a/m", "b/m"]
    # the same file twice: parent/stem still clashes, so the repeat is numbered
    assert model_names([Path("a/m.pt"), Path("a/m.pt"), Path("b/x.pt")]) == ["a/m", "a/m#2", "b/x"]


def test_given_names_are_checked_and_name_their_parameter():
    assert model_names([Path("a.pt"), Path("b.pt")], ["x", "y"]) == ["x", "y"]
    for bad in (["x"], ["x", "x"], ["x", " "]):
        with pytest.raises(MedauditError) as err:
            model_names([Path("a.pt"), Path("b.pt")], bad)
        assert err.value.param == "names"


def test_unique_names_numbers_repeats_in_order():
    assert unique_names(["r", "r", "v", "r"]) == ["r", "r#2", "v", "r#3"]
    assert unique_names(["r", "r#2", "r"]) == ["r", "r#2", "r#3"]  # a taken number is skipped


def test_file_stems_stay_distinct_when_names_sanitise_alike():
    assert safe_name("a/b c") == "a_b_c"
    assert file_stems(["a/m", "b/m"]) == ["a_m", "b_m"]
    assert file_stems(["a/b", "a_b"]) == ["0_a_b", "1_a_b"]
