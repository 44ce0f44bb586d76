"""The promotion gate: its decision table, and what a rejected or promoted challenger does to
the served files."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgcls_pipeline.core.lifecycle.bundles import served_bundle, served_version
from imgcls_pipeline.core.lifecycle.gate import decide, read_decisions, run_gate
from imgcls_pipeline.core.lifecycle.registry import register_version
from imgcls_pipeline.core.settings import EvaluationConfig, LifecycleSettings


@pytest.mark.parametrize(
    ("challenger", "champion", "tolerance", "floor", "promote", "why"),
    [
        (0.50, None, 0.0, 0.0, True, "v0002 is the first model"),
        (0.50, None, 0.0, 0.50, True, "passes the floor 0.5"),  # exactly at the floor
        (0.49, None, 0.0, 0.50, False, "below the floor min_val_recall_at_1 0.5; nothing is"),
        (0.90, 0.90, 0.0, 0.0, True, "at least v0001's 0.9000 minus the tolerance 0"),  # equal
        (0.89, 0.90, 0.0, 0.0, False, "below v0001's 0.9000 minus the tolerance 0; v0001 stays"),
        (0.70, 0.80, 0.10, 0.0, True, "minus the tolerance 0.1"),  # exactly at the edge
        (0.69, 0.80, 0.10, 0.0, False, "below v0001's"),
        (0.95, 0.90, 0.0, 0.96, False, "below the floor"),  # better, but under the floor
    ],
)
def test_the_decision_table(challenger, champion, tolerance, floor, promote, why) -> None:
    decision = decide(
        challenger,
        champion,
        challenger="v0002",
        champion=None if champion is None else "v0001",
        tolerance=tolerance,
        floor=floor,
    )
    assert decision.promote is promote
    assert why in decision.reason and decision.reason.endswith(".")
    if champion is not None:
        assert decision.difference == pytest.approx(challenger - champion)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(".imgcls.lock")
    }


def gate(version, root: Path, data: Path, splits: Path, **lifecycle):
    return run_gate(
        version,
        root / "artifacts",
        root / "models",
        data,
        splits,
        evaluation=EvaluationConfig(),
        lifecycle=LifecycleSettings(**lifecycle),
        log=lambda _: None,
    )


def test_a_worse_challenger_leaves_the_served_model_and_bundle_byte_identical(
    project, good_run, zeroed, tmp_path: Path
) -> None:
    data, splits = project
    models, artifacts = tmp_path / "models", tmp_path / "artifacts"
    good = register_version(good_run, models, splits)
    first = gate(good, tmp_path, data, splits)
    assert first.promote and first.champion is None
    served_before = served_bundle(artifacts)
    before = snapshot(artifacts), snapshot(good.folder)
    worse = register_version(zeroed, models, splits)
    decision = gate(worse, tmp_path, data, splits)
    assert not decision.promote
    assert decision.challenger_recall_at_1 < decision.champion_recall_at_1 == 1.0
    assert (snapshot(artifacts), snapshot(good.folder)) == before
    assert served_bundle(artifacts) == served_before
    assert served_version(artifacts, models) == good
    rows = read_decisions(models)
    assert [(r["challenger"], r["champion"], r["promoted"]) for r in rows] == [
        ("v0001", "", "true"),
        ("v0002", "v0001", "false"),
    ]
    assert rows[1]["reason"] == decision.reason


def test_a_better_challenger_is_served_and_the_bundle_switches(
    project, good_run, zeroed, tmp_path: Path
) -> None:
    data, splits = project
    models, artifacts = tmp_path / "models", tmp_path / "artifacts"
    worse = register_version(zeroed, models, splits)
    gate(worse, tmp_path, data, splits)  # the first model, served: the floor is 0
    old = served_bundle(artifacts)
    better = register_version(good_run, models, splits)
    decision = gate(better, tmp_path, data, splits)
    assert decision.promote and decision.difference > 0
    new = served_bundle(artifacts)
    assert new.model_version == "v0002" and new.folder != old.folder
    # The documented paths now show the new bundle's files.
    assert (artifacts / "index" / "info.json").read_bytes() == (
        new.folder / "index" / "info.json"
    ).read_bytes()
    assert old.folder.is_dir()  # the previous bundle stays until the next switch


def test_the_floor_holds_back_even_the_first_model(project, zeroed, tmp_path: Path) -> None:
    data, splits = project
    worse = register_version(zeroed, tmp_path / "models", splits)
    decision = run_gate(
        worse,
        tmp_path / "artifacts",
        tmp_path / "models",
        data,
        splits,
        evaluation=EvaluationConfig(min_val_recall_at_1=0.9),
        lifecycle=LifecycleSettings(),
        log=lambda _: None,
    )
    assert not decision.promote and "nothing is served" in decision.reason
    assert served_bundle(tmp_path / "artifacts") is None
    assert not [p for p in (tmp_path / "artifacts" / "bundles").iterdir()]
