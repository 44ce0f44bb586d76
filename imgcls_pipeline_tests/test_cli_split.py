"""``imgcls split`` on real folders: the data assets, run in-process the way the UI runs them."""

from pathlib import Path

import pandas as pd
import pytest

from imgcls_pipeline.cli import main, parse_flags
from imgcls_pipeline.core.errors import UserError
from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout, write_photo


def _split(data: Path, splits: Path, *flags: str) -> int:
    return main(
        [
            "split",
            "--data_dir",
            str(data),
            "--output_dir",
            str(splits),
            "--artifacts_dir",
            str(splits.parent / "artifacts"),
            "--min_image_size=32",
            *flags,
        ]
    )


def _assignment(splits: Path) -> dict[str, str]:
    assignment = {}
    for split in ("train", "val", "test"):
        table = pd.read_csv(splits / f"{split}.csv", dtype=str)
        assignment.update(dict.fromkeys(table["object_id"], split))
    return assignment


def test_split_writes_the_four_files_and_explains_every_exclusion(tmp_path: Path) -> None:
    data = make_photo_folder(tmp_path / "data", uniform_layout(3, 8, 2))
    (data / "class_0" / "broken_1.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (data / "class_1" / ".DS_Store").write_bytes(b"x")
    write_photo(data / "class_2" / "tiny_1.jpg", size=(20, 20))
    splits = tmp_path / "splits"
    assert _split(data, splits) == 0

    tables = {s: pd.read_csv(splits / f"{s}.csv") for s in ("train", "val", "test")}
    assert list(tables["train"].columns) == [
        "image_path",
        "class_name",
        "object_id",
        "sequence",
        "width",
        "height",
    ]
    assert sum(len(t) for t in tables.values()) == 48
    excluded = pd.read_csv(splits / "excluded.csv")
    assert dict(zip(excluded["image_path"], excluded["reason"], strict=True)) == {
        "class_0/broken_1.jpg": "unreadable",
        "class_1/.DS_Store": "hidden",
        "class_2/tiny_1.jpg": "too_small",
    }
    ids = [set(t["object_id"]) for t in tables.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_new_data_keeps_every_assigned_id_in_its_split(tmp_path: Path) -> None:
    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 10, 2))
    splits = tmp_path / "splits"
    assert _split(data, splits) == 0
    before = _assignment(splits)
    make_photo_folder(data, {"class_0": {f"new{i}": 2 for i in range(10)}, "class_9": {"x": 1}})
    assert _split(data, splits, "--seed", "999") == 0
    after = _assignment(splits)
    assert all(after[object_id] == split for object_id, split in before.items())
    new_class_0 = [s for object_id, s in after.items() if object_id.startswith("new")]
    assert new_class_0.count("train") >= 5 and "val" in new_class_0 and "test" in new_class_0
    assert after["x"] == "train"  # a one-ID class can only feed the gallery


def test_an_id_left_out_for_a_while_returns_to_its_split(tmp_path: Path) -> None:
    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 12, 2))
    splits = tmp_path / "splits"
    assert _split(data, splits) == 0
    before = _assignment(splits)
    # class_1 left out of one run, then new photos arrive for it and everything is split again.
    assert _split(data, splits, "--class_names", "class_0") == 0
    assert not any(object_id.startswith("c1") for object_id in _assignment(splits))
    make_photo_folder(data, {"class_1": {f"late{i}": 2 for i in range(6)}})
    assert _split(data, splits) == 0
    after = _assignment(splits)
    assert all(after[object_id] == split for object_id, split in before.items())
    ledger = pd.read_csv(splits / "assignments.csv", dtype=str)
    assert list(ledger.columns) == ["object_id", "class_name", "split"]
    assert set(ledger["object_id"]) == set(after)


def test_changed_ratios_are_reported_not_silently_ignored(tmp_path: Path, capsys) -> None:
    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 10, 1))
    splits = tmp_path / "splits"
    assert _split(data, splits) == 0
    capsys.readouterr()
    assert (
        _split(data, splits, "--train_ratio", "0.5", "--val_ratio", "0.25", "--test_ratio", "0.25")
        == 0
    )
    assert "keep their split (stable splits)" in capsys.readouterr().err


def test_seed_flag_changes_a_fresh_split(tmp_path: Path) -> None:
    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 20, 1))
    assert _split(data, tmp_path / "a", "--seed=1") == 0
    assert _split(data, tmp_path / "b", "--seed", "2") == 0
    assert _split(data, tmp_path / "c", "--seed", "1") == 0
    assert _assignment(tmp_path / "a") == _assignment(tmp_path / "c")
    assert _assignment(tmp_path / "a") != _assignment(tmp_path / "b")


def test_user_errors_are_one_line_without_traceback(tmp_path: Path, capsys) -> None:
    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 3, 1))
    assert _split(data, tmp_path / "s", "--class_names", "class_0,clas_1") == 2
    err = capsys.readouterr().err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("error: class_names lists 'clas_1'") and "class_1" in last_line
    assert "Traceback" not in err and "Stack Trace" not in err

    assert _split(tmp_path / "missing", tmp_path / "s") == 2
    assert "does not exist" in capsys.readouterr().err

    (tmp_path / "empty").mkdir()
    assert _split(tmp_path / "empty", tmp_path / "s") == 2
    assert "is empty" in capsys.readouterr().err


def test_flag_parsing() -> None:
    folders, settings, positional = parse_flags(
        ["--data_dir", "d", "--seed=7", "--fresh", "--use_bf16", "false", "--accum_steps", "2"],
        "train",
    )
    assert folders == {"data_dir": "d"}
    assert settings == {"seed": "7", "fresh": "true", "use_bf16": "false", "accum_steps": "2"}
    assert positional == []
    with pytest.raises(UserError, match=r"Unknown flag --sed .*--seed"):
        parse_flags(["--sed", "1"], "split")


def test_bad_setting_value_names_the_flag(tmp_path: Path, capsys) -> None:
    assert _split(tmp_path, tmp_path / "s", "--train_ratio", "lots") == 2
    assert "--train_ratio takes a number, not 'lots'" in capsys.readouterr().err


def test_run_config_from_the_ui_is_validated_like_flags(tmp_path: Path) -> None:
    import dagster as dg

    from imgcls_pipeline.definitions import defs
    from imgcls_pipeline.defs.resources import PipelinePaths

    data = make_photo_folder(tmp_path / "data", uniform_layout(2, 3, 1))
    paths = PipelinePaths.from_env(
        data_dir=str(data), splits_dir=str(tmp_path / "s"), artifacts_dir=str(tmp_path / "a")
    )
    result = dg.materialize(
        list(defs.assets),
        selection=dg.AssetSelection.assets("image_manifest", "id_groups", "splits"),
        resources={**defs.resources, "paths": paths},
        run_config={"ops": {"id_groups": {"config": {"min_image_size": -5}}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    messages = []
    while failure is not None:
        messages.append(failure.message)
        failure = failure.cause
    assert any("min_image_size must be 0 or more" in m for m in messages)
