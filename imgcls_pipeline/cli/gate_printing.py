"""The gate's decision as ``imgcls train`` / ``pipeline`` print it: the same table as on the
served_model asset's page in the UI, one field per line."""

from __future__ import annotations

import dagster as dg

from imgcls_pipeline.defs.lifecycle_assets import DECISION_KEY, served_model


def decision_fields(result: dg.ExecuteInProcessResult) -> dict[str, object] | None:
    """The decision table's row that the run's gate step recorded; None when no gate ran."""
    for event in result.get_asset_materialization_events():
        if event.asset_key != served_model.key:
            continue
        decision = event.event_specific_data.materialization.metadata.get(DECISION_KEY)
        records = getattr(decision, "records", None)
        if records:
            return dict(records[0].data)
    return None


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def print_gate_decision(result: dg.ExecuteInProcessResult) -> None:
    fields = decision_fields(result)
    if fields is None:
        return
    width = max(len(name) for name in fields)
    print("\nGate decision (champion / challenger on the current val split):")
    for name, value in fields.items():
        print(f"  {name.ljust(width)}  {_shown(value)}")
