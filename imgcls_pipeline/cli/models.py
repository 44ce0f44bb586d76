"""``imgcls models``: the registered model versions, their scores, and which one is served.

Reads version.json files, decisions.csv and the served link only: no torch, no Dagster.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from imgcls_pipeline.cli.flags import read_command_line, refuse_arguments
from imgcls_pipeline.core.folders import Folders
from imgcls_pipeline.core.lifecycle.bundle_files import has_plain_folders, served_bundle
from imgcls_pipeline.core.lifecycle.gate import GateDecision, read_decisions
from imgcls_pipeline.core.lifecycle.registry import list_versions

COLUMNS = ("version", "created", "backbone", "val R@1 (training)", "val R@1 (gate)", "served")


def run(command: str, tokens: Sequence[str]) -> int:
    line = read_command_line(tokens, command)
    refuse_arguments(line)
    folders = Folders.from_env(**line.options)
    print(models_text(folders.models, folders.artifacts))
    return 0


def models_text(models: Path, artifacts: Path) -> str:
    versions = list_versions(models)
    if not versions:
        return (
            f"No model versions in {models} yet: `imgcls pipeline` (or `imgcls train`) trains "
            "one and registers it as v0001."
        )
    bundle = served_bundle(artifacts)
    served = bundle.model_version if bundle else None
    decisions = read_decisions(models)
    gate = {row["challenger"]: row["challenger_recall_at_1"] for row in decisions}
    rows = [
        (
            v.version,
            v.created.replace("+00:00", "Z"),
            v.backbone,
            _score(v.val_recall_at_1),
            _score(float(gate[v.version]) if gate.get(v.version) else None),
            "*" if v.version == served else "",
        )
        for v in versions
    ]
    widths = [max(len(str(r[i])) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [COLUMNS, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if served:
        lines.append(f"\n* served: {served} (bundle {bundle.folder}).")
    elif has_plain_folders(artifacts):
        lines.append(
            f"\nNo version is served: {artifacts / 'index'} was made before model versions; "
            f"`imgcls promote {versions[-1].version}` serves one."
        )
    else:
        lines.append(f"\nNo version is served; `imgcls promote {versions[-1].version}` serves one.")
    if decisions:
        lines.append(f"Last decision ({decisions[-1]['time']}): {decisions[-1]['reason']}")
    return "\n".join(lines)


def decision_text(decision: GateDecision) -> str:
    """A gate decision as the commands print it: both scores, the difference and the reason."""
    champion = (
        f"{decision.champion} {_score(decision.champion_recall_at_1)}"
        if decision.champion
        else "none served"
    )
    difference = "" if decision.difference is None else f", difference {decision.difference:+.4f}"
    verdict = "promoted" if decision.promote else "rejected"
    if decision.kind == "manual":
        verdict = "served by hand"
    return (
        f"Decision: challenger {decision.challenger} val R@1 "
        f"{_score(decision.challenger_recall_at_1)}, champion {champion}{difference} "
        f"(tolerance {decision.tolerance:g}, floor {decision.floor:g}): {verdict}. "
        f"{decision.reason}"
    )


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
