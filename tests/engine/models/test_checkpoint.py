"""The typed checkpoint description: round trip, validation naming file and field, older checkpoints."""

import pytest
import torch

from tonno_engine.base.errors import DataError
from tonno_engine.models.checkpoint import (
    DESCRIPTION_VERSION,
    FORMAT,
    CheckpointDescription,
    load_checkpoint,
    load_model,
    read_description,
    save_checkpoint,
)
from tonno_engine.models.encoders import create_encoder


def _raw(path, meta, model):
    torch.save({"format": FORMAT, "state_dict": model.state_dict(), "meta": meta, "train_state": None}, path)
    return path


def test_round_trip_and_wrong_architecture(tmp_path):
    model = create_encoder("resnet10t", norm="gn").eval()
    description = CheckpointDescription(model="resnet10t", norm="gn", slice_size=32, train_cases=("a", "b"))
    path = save_checkpoint(tmp_path / "c.pt", model, description)
    loaded, loaded_description = load_model(path, "cpu")
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded_description == description and loaded_description.version == DESCRIPTION_VERSION
    assert load_checkpoint(path, "cpu").device == torch.device("cpu")
    wrong = save_checkpoint(tmp_path / "w.pt", model, CheckpointDescription(model="resnet18", norm="gn"))
    with pytest.raises(DataError, match="do not fit this architecture") as info:
        load_model(wrong)
    assert "w.pt" in str(info.value)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(DataError, match="unreadable checkpoint"):
        load_model(tmp_path / "junk.pt")


def test_a_checkpoint_of_an_earlier_version_loads_with_that_versions_defaults(tmp_path):
    """Version 1 (no version key; no geometry, field of view or mm per pixel yet; null weights)."""
    model = create_encoder("resnet10t", norm="gn")
    old = {"model": "resnet10t", "norm": "gn", "in_chans": 1, "slice_size": 48, "weights": None, "step": 30,
           "preprocessing": {"preset": "mr", "params": {}, "spacing": None}, "train_cases": ["x"], "extra": 1}
    description = read_description(_raw(tmp_path / "old.pt", old, model))
    assert (description.geometry, description.field_of_view, description.mm_per_pixel) == ("paper", "full", None)
    assert description.slice_size == 48 and description.step == 30 and description.train_cases == ("x",)
    assert description.version == DESCRIPTION_VERSION
    load_model(tmp_path / "old.pt")  # the weights load too


@pytest.mark.parametrize("field, value", [("slice_size", "224"), ("slice_size", 1), ("norm", "ln"),
                                          ("geometry", "curved"), ("field_of_view", "half"), ("mm_per_pixel", -1.0),
                                          ("in_chans", 0), ("preprocessing", "mr")])
def test_a_bad_field_is_refused_naming_the_file_and_the_field(tmp_path, field, value):
    meta = {"model": "resnet10t", "norm": "gn", field: value}
    path = _raw(tmp_path / "bad.pt", meta, create_encoder("resnet10t", norm="gn"))
    with pytest.raises(DataError, match=f"bad.pt.*checkpoint field '{field}'"):
        read_description(path)


def test_a_missing_field_or_a_newer_version_is_refused(tmp_path):
    model = create_encoder("resnet10t", norm="gn")
    with pytest.raises(DataError, match="no field 'model'"):
        read_description(_raw(tmp_path / "a.pt", {"norm": "gn"}, model))
    with pytest.raises(DataError, match="newer than this tonno reads"):
        read_description(_raw(tmp_path / "b.pt", {"model": "resnet10t", "norm": "gn", "version": 99}, model))
