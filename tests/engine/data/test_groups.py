"""The ``group`` column (issue 44): every split keeps a group's cases on one side, and data without the column
split exactly as before."""

import math
import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tonno_engine.apps.benchmark import BenchmarkConfig, _splits
from tonno_engine.base.errors import DataError
from tonno_engine.base.events import Notice
from tonno_engine.data.dataset import (
    Case,
    data_hash,
    group_of,
    groups_on_both_sides,
    read_cases,
    split_cases,
    write_cases_csv,
)
from tonno_engine.models.checkpoint import CheckpointDescription

# ------------------------------------------------------------------------------------------------ helpers


def _old_split_cases(cases, val_fraction, seed):
    """``split_cases`` as it was before groups (commit 8094b09), verbatim: the reference for data without them."""
    rng = random.Random(seed)
    train, val = [], []
    for label in (0, 1):
        group = [c for c in cases if c.label == label]
        rng.shuffle(group)
        k = max(1, round(len(group) * val_fraction)) if val_fraction > 0 and len(group) > 1 else 0
        val += group[:k]
        train += group[k:]
    if val_fraction > 0 and cases and cases[0].findings:
        for k in range(len(cases[0].findings)):
            for value in (1.0, 0.0):
                if any(c.findings[k] == value for c in val):
                    continue
                movable = [c for c in train if c.findings[k] == value]
                if len(movable) > 1:
                    train.remove(movable[0])
                    val.append(movable[0])
    return train, val


def _random_cases(rng, n, *, grouped, findings=0):
    """``n`` cases (no files), in groups of 1-4 cases (patients) when ``grouped``, some with mixed labels; with
    ``findings``, that many 0/1/unknown finding labels each."""
    cases, patient = [], 0
    while len(cases) < n:
        size = rng.choice((1, 1, 2, 3, 4)) if grouped else 1
        sick = rng.random() < 0.5
        for _ in range(min(size, n - len(cases))):
            values = tuple(rng.choice((0.0, 1.0, math.nan)) for _ in range(findings))
            label = int(any(v == 1 for v in values)) if findings else int(sick and rng.random() < 0.8)
            cases.append(Case(f"c{len(cases):03d}", label, Path(f"/x/c{len(cases):03d}.nii.gz"), findings=values,
                              group=f"p{patient:03d}" if grouped else None))
        patient += 1
    rng.shuffle(cases)
    return cases


def _names(cases):
    return [c.case for c in cases]


def _images(folder, names):
    """A distinct 4³ NIfTI per name in ``folder``."""
    for k, name in enumerate(names):
        nib.save(nib.Nifti1Image(np.full((4, 4, 4), float(k), np.float32), np.eye(4)), str(folder / f"{name}.nii.gz"))


def _write(folder, rows, header="case,label,image,group"):
    (folder / "labels.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    return folder


# ---------------------------------------------------------------------------- no split crosses a group


def test_groups_on_both_sides_finds_a_crossing_group():
    a, b, c = (Case(n, 0, Path(n), group=g) for n, g in (("a", "p1"), ("b", "p1"), ("c", "p2")))
    assert groups_on_both_sides([a, c], [b]) == ["p1"]
    assert groups_on_both_sides([a, b], [c]) == []
    assert groups_on_both_sides([Case("x", 0, Path("x"))], [Case("y", 1, Path("y"), group="x")]) == ["x"]


@pytest.mark.parametrize("findings", [0, 2])
def test_no_split_puts_a_group_on_both_sides_over_many_seeds_and_fractions(findings):
    """Training's validation split and the benchmark's test split (then the training split of the rest, read back
    from the train.csv it writes): the property over 300 random data sets of patients with 1-4 studies."""
    rng = random.Random(44)
    for trial in range(300):
        cases = _random_cases(rng, rng.randint(6, 60), grouped=True, findings=findings)
        fraction, seed = rng.choice((0.1, 0.2, 0.3, 0.5, 0.8)), rng.randint(0, 10_000)
        train, val = split_cases(cases, fraction, seed)
        assert sorted(_names(train + val)) == sorted(_names(cases)), trial
        assert groups_on_both_sides(train, val) == [], (trial, fraction, seed)
        rest, test = split_cases(cases, fraction, seed)
        trained, validated = split_cases(rest, 0.2, seed + 1)
        assert groups_on_both_sides(trained, validated, test) == [], (trial, fraction, seed)


def test_a_split_by_group_meets_the_fraction_as_nearly_as_whole_groups_allow_and_validates_both_classes():
    rng = random.Random(7)
    for trial in range(300):
        cases = _random_cases(rng, rng.randint(8, 60), grouped=True)
        fraction = rng.choice((0.1, 0.2, 0.3, 0.5))
        _, val = split_cases(cases, fraction, trial)
        groups = {}
        for c in cases:
            groups.setdefault(group_of(c), []).append(c)
        for label in (0, 1):  # a group's class: 1 when any of its cases is positive
            stratum = [g for g in groups.values() if max(c.label for c in g) == label]
            if len(stratum) < 2:
                continue
            target = max(1, round(sum(map(len, stratum)) * fraction))
            taken = sum(group_of(c) in {group_of(s[0]) for s in stratum} for c in val)
            assert taken >= 1 and abs(taken - target) <= max(map(len, stratum)), (trial, label, taken, target)


def test_a_patient_of_many_studies_goes_whole_to_one_side():
    cases = [Case(f"s{k}", k % 2, Path(f"s{k}"), group="big") for k in range(6)]
    cases += [Case(f"o{k}", k % 2, Path(f"o{k}"), group=f"p{k}") for k in range(10)]
    for seed in range(30):
        train, val = split_cases(cases, 0.25, seed)
        assert len([c for c in val if c.group == "big"]) in (0, 6)
        assert groups_on_both_sides(train, val) == []


# ------------------------------------------------------------------- without the column: today's splits


def test_without_a_group_column_every_split_is_the_one_before_groups():
    """A copy of the function before groups: the same seed gives the same split, order included, with and without
    findings, over 400 random data sets."""
    rng = random.Random(0)
    for trial in range(400):
        cases = _random_cases(rng, rng.randint(2, 50), grouped=False, findings=rng.choice((0, 0, 1, 3)))
        fraction, seed = rng.choice((0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.0)), rng.randint(0, 10_000)
        assert split_cases(cases, fraction, seed) == _old_split_cases(cases, fraction, seed), (trial, fraction, seed)


#: `tonno synth --kind brain --n 40 --seed 0` (the demo's data): its labels, and the splits the parent commit
#: (8094b09) made of them: the benchmark's validation/test split at 0.3 (seed 0: test then the rest, in order;
#: seeds 1, 2: test) and the validation split of its train.csv at 0.2
DEMO_LABELS = "1010011011100000001100110010111110110010"
DEMO_SPLITS = {
    0: ("17 37 33 25 01 36 29 26 32 00 34 08",
        "20 04 07 16 12 14 11 39 13 27 15 03 24 21 30 18 35 38 28 10 09 02 19 31 23 05 06 22", "04 15 27 38 22 31"),
    1: ("20 12 36 39 16 01 08 05 26 02 22 09", None, "11 15 33 10 28 18"),
    2: ("14 13 36 15 39 27 06 05 28 22 23 02", None, "12 16 17 35 19 31"),
}


def test_the_demos_data_splits_as_the_parent_commit_split_it(tmp_path):
    _images(tmp_path, [f"brain_{k:04d}" for k in range(40)])
    _write(tmp_path, [f"brain_{k:04d},{label},brain_{k:04d}.nii.gz" for k, label in enumerate(DEMO_LABELS)],
           header="case,label,image")
    cases = read_cases(tmp_path)
    for seed, (test_names, rest_names, val_names) in DEMO_SPLITS.items():
        rest, test = split_cases(cases, 0.3, seed)
        assert [c.case[-2:] for c in test] == test_names.split()
        if rest_names is not None:
            assert [c.case[-2:] for c in rest] == rest_names.split()
        write_cases_csv(tmp_path / "train.csv", rest)
        assert "group" not in (tmp_path / "train.csv").read_text().splitlines()[0]
        _, val = split_cases(read_cases(tmp_path / "train.csv"), 0.2, seed)
        assert [c.case[-2:] for c in val] == val_names.split()


# ---------------------------------------------------------------------------------- the CSV column


def test_the_group_column_round_trips_and_is_written_only_when_there_are_groups(tmp_path):
    _images(tmp_path, ["a", "b", "c"])
    _write(tmp_path, ["a,1,a.nii.gz,patient 1", "b,0,b.nii.gz,patient 1", "c,0,c.nii.gz,c"])
    cases = read_cases(tmp_path)
    assert [c.group for c in cases] == ["patient 1", "patient 1", "c"]
    write_cases_csv(tmp_path / "out.csv", cases)
    assert (tmp_path / "out.csv").read_text().splitlines()[0].split(",")[-1] == "group"
    assert read_cases(tmp_path / "out.csv") == cases
    ungrouped = [Case(c.case, c.label, c.image) for c in cases]
    write_cases_csv(tmp_path / "plain.csv", ungrouped)
    assert (tmp_path / "plain.csv").read_text().splitlines()[0] == "case,label,image,mask"
    assert all(c.group is None for c in read_cases(tmp_path / "plain.csv"))
    # the groups decide the split: a run resumes only on the groups it began with
    assert data_hash(cases) != data_hash(ungrouped)


def test_the_group_column_round_trips_with_findings(tmp_path):
    _images(tmp_path, ["a", "b"])
    _write(tmp_path, ["a,1,,a.nii.gz,g", "b,,0,b.nii.gz,g"], header="case,x,y,image,group")
    cases = read_cases(tmp_path, findings=["x", "y"])
    write_cases_csv(tmp_path / "out.csv", cases, ["x", "y"])
    again = read_cases(tmp_path / "out.csv", findings=["x", "y"])
    assert [(c.case, c.group) for c in again] == [("a", "g"), ("b", "g")]
    assert [str(c.findings) for c in again] == [str(c.findings) for c in cases]


def test_a_blank_group_cell_is_an_error_naming_the_file_and_row(tmp_path):
    _images(tmp_path, ["a", "b"])
    _write(tmp_path, ["a,1,a.nii.gz,p1", "b,0,b.nii.gz, "])
    with pytest.raises(DataError, match=r"labels\.csv, row 3: empty group") as info:
        read_cases(tmp_path)
    assert str(tmp_path) in str(info.value)


# ----------------------------------------------------------------- training's and the benchmark's splits


def test_trainings_validation_split_keeps_patients_whole(tmp_path):
    from tonno_engine.training.config import TrainConfig
    from tonno_engine.training.setup import _data

    names = [f"s{k:02d}" for k in range(24)]
    _images(tmp_path, names)
    _write(tmp_path, [f"{n},{int(k % 3 == 0)},{n}.nii.gz,patient{k // 3}" for k, n in enumerate(names)])
    for seed in range(8):
        data = _data(tmp_path, TrainConfig(seed=seed, val_fraction=0.3), None)
        assert data.val and groups_on_both_sides(data.train, data.val) == []


def _run_splits(monkeypatch, tmp_path, cases, description, seed=0):
    """``_splits`` of the benchmark with a checkpoint whose description is ``description``: ``(val, test, notices)``."""
    import tonno_engine.apps.benchmark as benchmark

    monkeypatch.setattr(benchmark, "read_description", lambda _: description)
    events = _splits(tmp_path, cases, tmp_path, BenchmarkConfig(checkpoint=tmp_path / "model.pt", seed=seed))
    notices = []
    while True:
        try:
            event = next(events)
        except StopIteration as stop:
            return stop.value.val, stop.value.test, [e.message for e in notices]
        assert isinstance(event, Notice)
        notices.append(event)


def _patients(tmp_path):
    """12 patients of two studies each (``p{k}a``, ``p{k}b``; patients 0-5 positive), on disk."""
    names = [f"p{k}{s}" for k in range(12) for s in "ab"]
    _images(tmp_path, names)
    _write(tmp_path, [f"{n},{int(int(n[1:-1]) < 6)},{n}.nii.gz,patient{n[1:-1]}" for n in names])
    return read_cases(tmp_path)


def test_a_benchmark_leaves_out_every_study_of_a_patient_the_checkpoint_trained_on(monkeypatch, tmp_path):
    """The checkpoint was trained with another split: it saw p0a, p7a (training) and validated on p1a, p8a, p2a
    whose patient p2 it also trained on (p2b). No study of patients 0, 7 or 2 is calibrated or tested, and the
    notice names them; p1b and p8b (unseen studies of validated patients) calibrate."""
    from tonno_engine.data.dataset import hash_cases

    cases = _patients(tmp_path)
    images = hash_cases(cases)[1]
    trained, validated = ["p0a", "p7a", "p2b"], ["p1a", "p8a", "p2a"]
    description = CheckpointDescription(model="resnet10t", norm="gn",
                                        train_cases=tuple(f"t{n}" for n in trained),
                                        val_cases=tuple(f"v{n}" for n in validated),
                                        image_hashes={**{f"t{n}": images[n] for n in trained},
                                                      **{f"v{n}": images[n] for n in validated}})
    val, test, notices = _run_splits(monkeypatch, tmp_path, cases, description)
    assert sorted(_names(val)) == ["p1a", "p1b", "p8a", "p8b"]
    assert {c.group for c in test} == {f"patient{k}" for k in (3, 4, 5, 6, 9, 10, 11)}
    seen = [c for c in cases if c.case in trained]
    assert groups_on_both_sides(seen, val, test) == []
    told = " ".join(notices)
    assert "3 of its 24 cases are images its training run saw" in told
    assert "3 of its cases belong to groups" in told and "patient0: p0b" in told and "patient2: p2a" in told
    assert "patient7: p7b" in told


def test_a_benchmark_with_a_checkpoint_keeps_groups_apart_over_many_random_runs(monkeypatch, tmp_path):
    """Whatever cases (by image) a checkpoint trained and validated on, and whether the validation has a positive
    or the unseen cases split in halves: the run's training cases, calibration and test share no group."""
    from tonno_engine.data.dataset import hash_cases

    cases = _patients(tmp_path)
    images = hash_cases(cases)[1]
    rng, halves = random.Random(3), 0
    for trial in range(40):
        seen = rng.sample(cases, rng.randint(1, 12))
        cut = rng.randint(0, len(seen))
        description = CheckpointDescription(model="resnet10t", norm="gn",
                                            train_cases=tuple(c.case for c in seen[:cut]),
                                            val_cases=tuple(c.case for c in seen[cut:]),
                                            image_hashes={c.case: images[c.case] for c in seen})
        val, test, _ = _run_splits(monkeypatch, tmp_path, cases, description, seed=trial)
        assert groups_on_both_sides(seen[:cut], val, test) == [], trial
        assert groups_on_both_sides(val, test) == [], trial
        halves += not {c.case for c in val} & {c.case for c in seen}
    assert 0 < halves < 40  # both roads: the run's validation calibrates, or the unseen cases split in halves


def test_a_checkpoint_before_image_hashes_on_its_own_data_leaves_out_its_trained_patients(monkeypatch, tmp_path):
    cases = _patients(tmp_path)
    trained, validated = ("p0a", "p1a", "p6a", "p7a"), ("p2a", "p8a", "p1b")
    by_name = {c.case: c for c in cases}
    # such a checkpoint predates groups: its data hash was taken without them
    old_hash = data_hash([Case(n, by_name[n].label, by_name[n].image) for n in trained + validated])
    description = CheckpointDescription(model="resnet10t", norm="gn", train_cases=trained, val_cases=validated,
                                        data_hash=old_hash)
    val, test, notices = _run_splits(monkeypatch, tmp_path, cases, description)
    assert sorted(_names(val)) == ["p2a", "p2b", "p8a", "p8b"]  # p1b: its patient was trained on
    assert groups_on_both_sides([by_name[n] for n in trained], val, test) == []
    assert {c.group for c in test} == {f"patient{k}" for k in (3, 4, 5, 9, 10, 11)}
    assert "belong to groups" in " ".join(notices) and "patient1: p1b" in " ".join(notices)
