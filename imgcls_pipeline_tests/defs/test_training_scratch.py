import os
import subprocess
import sys
import tempfile

from imgcls_pipeline.defs.training_assets import SCRATCH_PREFIX, remove_orphan_scratch_folders


def test_scratch_folders_of_killed_launches_are_removed_and_live_ones_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = tmp_path / f"{SCRATCH_PREFIX}{gone.pid}-abc123"
    live = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-def456"
    unrelated = tmp_path / "imgcls-train-notes"
    for folder in (killed, live, unrelated):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
    remove_orphan_scratch_folders()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, unrelated.name])
