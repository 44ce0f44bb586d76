"""The settle window of the new-photos track: a folder still being copied into changes its
fingerprint from one look to the next, so a run starts only once it has stayed the same for
``settle_minutes``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Sighting:
    """The folder's fingerprint and when it was first seen with it (seconds since the epoch)."""

    fingerprint: str
    since: float

    def to_cursor(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_cursor(cls, cursor: str | None) -> Sighting | None:
        """None for no cursor or one written by an older sensor (it then starts watching anew)."""
        try:
            values = json.loads(cursor or "")
            return cls(fingerprint=str(values["fingerprint"]), since=float(values["since"]))
        except (ValueError, KeyError, TypeError):
            return None


def watch(previous: Sighting | None, fingerprint: str, now: float) -> Sighting:
    """The sighting after a look at the folder: kept while the fingerprint stays the same,
    restarted from ``now`` when it changed."""
    if previous is not None and previous.fingerprint == fingerprint:
        return previous
    return Sighting(fingerprint=fingerprint, since=now)


def quiet_seconds_left(sighting: Sighting, now: float, settle_minutes: float) -> float:
    """Seconds the folder must still stay unchanged before a run may start; 0 when settled."""
    return max(0.0, sighting.since + settle_minutes * 60 - now)
