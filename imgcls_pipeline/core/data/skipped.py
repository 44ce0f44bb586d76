"""Photos skipped during a run: the note each dataset item carries, and the tally kept from them.

Notes are plain strings so they pass through the DataLoader's collation and its worker processes
unchanged: "" for a photo read as listed, else JSON ``{"skipped": [[path, reason], ...]}`` with
``"fatal"`` set when not even a stand-in could be read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from imgcls_pipeline.core.errors import UserError

SHOWN = 5  # skipped photos named in an error; the rest are counted


def encode_note(skipped: Sequence[tuple[str, str]], fatal: str = "") -> str:
    if not skipped and not fatal:
        return ""
    return json.dumps({"skipped": [list(pair) for pair in skipped], "fatal": fatal})


class SkippedPhotos:
    """Counts photos skipped, per epoch and over the run, logging each file once.

    ``watch`` sits between a DataLoader of ``ImageDataset`` items and its consumer: it reads the
    notes and passes on (images, labels) as the training loop and the embedding loop expect.
    """

    def __init__(self, log: Callable[[str], None] | None = None, consequence: str = ""):
        self._log = log  # None: nothing logged (a caller that refuses with ``raise_if_any``)
        self._consequence = consequence  # what became of a skipped photo, for the log line
        self.in_epoch: set[str] = set()
        self.in_run: dict[str, str] = {}  # path → why, in the order first seen

    def watch(self, batches: Iterable[Sequence[Any]]) -> Watched:
        return Watched(self, batches)

    def end_epoch(self) -> int:
        """Photos skipped since the last call (each counted once), and start counting afresh."""
        count = len(self.in_epoch)
        self.in_epoch = set()
        return count

    def raise_if_any(self, what: str) -> None:
        """One UserError naming the photos skipped so far, for a pass (``what``) that may not
        leave a photo out."""
        if not self.in_run:
            return
        shown = "; ".join(f"{path} ({why})" for path, why in list(self.in_run.items())[:SHOWN])
        more = f"; and {len(self.in_run) - SHOWN:,} more" if len(self.in_run) > SHOWN else ""
        raise UserError(
            f"{len(self.in_run):,} photos listed in the split tables could not be read while "
            f"{what}: {shown}{more}; they vanished or changed after the pre-flight check, so run "
            f"`imgcls split` again (the tables then leave them out) and repeat."
        )

    def record(self, note: dict[str, Any]) -> None:
        for path, why in note["skipped"]:
            self.in_epoch.add(path)
            if path not in self.in_run:
                self.in_run[path] = why
                if self._log is not None:
                    self._log(f"Skipped photo {path} ({why}): {self._consequence}.")
        if note["fatal"]:
            raise UserError(note["fatal"])


class Watched:
    """``batches`` without their notes; as long as ``batches`` (progress bars show a total)."""

    def __init__(self, owner: SkippedPhotos, batches: Iterable[Sequence[Any]]):
        self._owner = owner
        self._batches = batches

    def __len__(self) -> int:
        return len(self._batches)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for images, labels, notes in self._batches:
            for note in notes:
                if note:
                    self._owner.record(json.loads(note))
            yield images, labels
