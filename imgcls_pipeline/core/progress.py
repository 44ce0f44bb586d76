"""Progress of long loops on the terminal: a tqdm bar with ETA on a terminal, and a plain line
every ``PLAIN_EVERY_SECONDS`` when the output goes to a file or pipe (no bar garbage in logs)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator

from tqdm import tqdm

PLAIN_EVERY_SECONDS = 30.0
# Set by `imgcls` from its own stderr before Dagster starts: inside a run, Dagster captures a
# step's output through a pipe (mirrored to the terminal), so the step cannot ask isatty() itself.
TERMINAL_ENV = "IMGCLS_TERMINAL"


def on_terminal() -> bool:
    told = os.environ.get(TERMINAL_ENV)
    return told == "1" if told in ("0", "1") else sys.stderr.isatty()


def progress[T](
    items: Iterable[T],
    *,
    desc: str,
    unit: str,
    total: int | None = None,
    enabled: bool = True,
    leave: bool = True,
    position: int | None = None,
) -> Iterable[T]:
    """``items``, with a bar (terminal) or periodic plain lines (file or pipe) when ``enabled``."""
    if not enabled:
        return items
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if on_terminal():
        return tqdm(
            items,
            desc=desc,
            unit=unit,
            total=total,
            leave=leave,
            position=position,
            file=sys.stderr,
            **_size_of_an_unsized_terminal(),
        )
    return _plain_lines(items, desc, unit, total)


def _size_of_an_unsized_terminal() -> dict[str, int]:
    """80×24 when stderr is a terminal that reports a size of 0 (a pseudo-terminal nobody sized:
    `script -c`, `docker exec -t`, some CI runners), where tqdm would print nothing at all;
    otherwise nothing, so that tqdm follows the terminal's size."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return {}
    return (
        {}
        if size.columns and size.lines
        else {"ncols": size.columns or 80, "nrows": size.lines or 24}
    )


def _plain_lines[T](items: Iterable[T], desc: str, unit: str, total: int | None) -> Iterator[T]:
    start = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= PLAIN_EVERY_SECONDS:
            last = now
            print(status_line(desc, unit, done, total, now - start), file=sys.stderr, flush=True)


def status_line(desc: str, unit: str, done: int, total: int | None, elapsed: float) -> str:
    """``epoch 3: 120/400 batch (30%), 0:12 elapsed, ETA 0:28``."""
    text = f"{desc}: {done}/{total if total else '?'} {unit}"
    if total:
        text += f" ({100 * done / total:.0f}%)"
    text += f", {_clock(elapsed)} elapsed"
    if total and done:
        text += f", ETA {_clock(elapsed / done * (total - done))}"
    return text


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def write(message: str) -> None:
    """A line between the bars (tqdm.write) on a terminal, a plain flushed line otherwise."""
    if on_terminal():
        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)
