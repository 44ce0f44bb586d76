"""Progress on a terminal is a bar; in a log file it is a plain line now and then."""

from __future__ import annotations

import os
import pty
import select
import sys

import pytest

from imgcls_pipeline.core import progress


def test_piped_output_gets_plain_lines_with_an_eta_and_no_bar(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    monkeypatch.setattr(progress, "PLAIN_EVERY_SECONDS", 0.0)
    assert list(progress.progress(range(4), desc="epoch 1/3", unit="batch")) == [0, 1, 2, 3]
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert lines[0].startswith("epoch 1/3: 1/4 batch (25%), 0:00 elapsed, ETA 0:00")
    assert len(lines) == 4


def test_disabled_progress_is_the_items_themselves() -> None:
    items = [1, 2]
    assert progress.progress(items, desc="x", unit="y", enabled=False) is items


def test_status_line_without_a_total_has_no_eta() -> None:
    assert progress.status_line("scan", "file", 7, None, 75.0) == "scan: 7/? file, 1:15 elapsed"


def test_a_terminal_that_reports_no_width_still_shows_the_bar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A new pseudo-terminal is 0 columns wide until someone sizes it (`script -c`, `docker exec
    # -t`); tqdm then draws nothing, not even the counts and ETA.
    master, replica = pty.openpty()
    try:
        assert os.get_terminal_size(replica).columns == 0
        monkeypatch.setenv(progress.TERMINAL_ENV, "1")
        monkeypatch.setattr(sys, "stderr", os.fdopen(os.dup(replica), "w"))
        assert list(progress.progress(range(3), desc="training", unit="epoch")) == [0, 1, 2]
        sys.stderr.flush()
        shown = b""
        while select.select([master], [], [], 0.5)[0]:
            shown += os.read(master, 65536)
    finally:
        os.close(master)
        os.close(replica)
    assert "training: 100%" in shown.decode() and "3/3" in shown.decode()
