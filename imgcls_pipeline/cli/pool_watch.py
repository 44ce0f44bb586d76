"""Say so when a run from the terminal waits for a Dagster pool (the training's ``gpu`` pool).

Dagster makes the step wait for a free slot of its pool (``granularity: op`` in dagster.yaml)
and notes it in the run's log only ("Step blocked by limit for pool gpu"), which `imgcls` keeps
off the terminal. While the command runs, this watcher looks every second: once the run waits,
it prints who holds the pool, and writes the same sentence into the run's log, where the UI shows
it; once the slot is granted, it says so.

A slot held by a run that an `imgcls` process on this machine started, and whose process is gone
(kill -9, a crash), is never given back by Dagster (no run monitor follows in-process runs): the
watcher frees it and marks that run failed, saying so, rather than wait forever.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable

import dagster as dg

from imgcls_pipeline.core.atomic import pid_alive

# Tag of a run started by `imgcls`: "<host> <pid>", who started it; unique among live runs.
LAUNCHER_TAG = "imgcls/launcher"
POLL_SECONDS = 1.0


def pools_of(definitions: dg.Definitions, asset_names: Iterable[str]) -> set[str]:
    """The pools the steps of ``asset_names`` run in."""
    names = set(asset_names)
    return {
        pool
        for assets_def in definitions.assets or []
        if isinstance(assets_def, dg.AssetsDefinition)
        and names & {key.to_user_string() for key in assets_def.keys}
        for pool in assets_def.op.pools
    }


def launcher_tag() -> dict[str, str]:
    return {LAUNCHER_TAG: f"{socket.gethostname()} {os.getpid()}"}


class PoolWatch(threading.Thread):
    """Watch the run tagged ``launcher_tag()`` while it waits on any of ``pools``."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        pools: Iterable[str],
        say: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name="imgcls-pool-watch", daemon=True)
        self.instance = instance
        self.pools = sorted(set(pools))
        self.say = say or _print
        self._done = threading.Event()
        self._tag = launcher_tag()
        self._run: dg.DagsterRun | None = None
        self._waiting_on: set[str] = set()

    def begin(self) -> PoolWatch:
        """Start watching, where the instance has pools at all (not a throwaway in-memory one)."""
        storage = self.instance.event_log_storage
        if self.pools and storage.supports_global_concurrency_limits:
            self.start()
        return self

    def end(self) -> None:
        """Stop watching (a daemon thread: a run that raises past ``end`` leaves nothing behind)."""
        self._done.set()
        if self.is_alive():
            self.join(timeout=5)

    def run(self) -> None:
        while not self._done.wait(POLL_SECONDS):
            try:
                self.check_once()
            # The run's own storage calls fail the run if it matters; a watcher must not.
            except Exception as err:
                self.say(f"(not watching the {'/'.join(self.pools)} pool any more: {err})")
                return

    def check_once(self) -> None:
        run = self._find_run()
        if run is None:
            return
        for pool in self.pools:
            info = self.instance.event_log_storage.get_concurrency_info(pool)
            mine = [
                s
                for s in info.pending_steps
                if s.run_id == run.run_id and s.assigned_timestamp is None
            ]
            if mine:
                # Checked on every look, not once: a holder may be killed while we wait.
                freed = [self._free_if_orphaned(slot.run_id) for slot in info.claimed_slots]
                gone = [f for f in freed if f]
                if pool not in self._waiting_on:
                    self._waiting_on.add(pool)
                    holders = [
                        self._describe_holder(slot.run_id)
                        for slot, freed_one in zip(info.claimed_slots, freed, strict=True)
                        if not freed_one
                    ]
                    self._announce(run, mine[0].step_key, self._describe_wait(pool, holders, gone))
                elif gone:
                    self._announce(run, mine[0].step_key, _freed_sentence(pool, gone))
            elif pool in self._waiting_on:
                self._waiting_on.discard(pool)
                self._announce(run, None, f"The {pool} pool is free now; the run goes on.")

    def _find_run(self) -> dg.DagsterRun | None:
        if self._run is None:
            runs = self.instance.get_runs(
                dg.RunsFilter(tags=self._tag, statuses=[dg.DagsterRunStatus.STARTED]), limit=1
            )
            self._run = runs[0] if runs else None
        return self._run

    def _describe_wait(self, pool: str, holders: list[str], gone: list[str]) -> str:
        if gone and not holders:
            return _freed_sentence(pool, gone)
        who = "; ".join(holders) if holders else "another run"
        freed = f" ({_freed_sentence(pool, gone).rstrip('.')})" if gone else ""
        return (
            f"Waiting for the {pool} pool, which {who} holds{freed}; this run starts when it is "
            f"free (Ctrl-C gives up; `dagster instance concurrency set {pool} N` allows N at once)."
        )

    def _launcher(self, run_id: str) -> tuple[str, int | None, dg.DagsterRun | None]:
        """The holder run, and the host and pid of the `imgcls` that started it (None: not one)."""
        holder = self.instance.get_run_by_id(run_id)
        launcher = (holder.tags.get(LAUNCHER_TAG) if holder else None) or ""
        host, _, pid = launcher.partition(" ")
        return host, int(pid) if pid.isdigit() else None, holder

    def _describe_holder(self, run_id: str) -> str:
        host, pid, _ = self._launcher(run_id)
        if pid is None:
            return f"run {run_id[:8]} (started from the Dagster UI or a schedule)"
        return f"run {run_id[:8]} (imgcls, pid {pid} on {host})"

    def _free_if_orphaned(self, run_id: str) -> str | None:
        """Give back the slot of a run whose `imgcls` process on this machine is gone: nobody
        else ever will. Returns what was done, or None."""
        host, pid, holder = self._launcher(run_id)
        if pid is None or host != socket.gethostname() or pid_alive(pid):
            return None
        self.instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        if holder is not None and not holder.is_finished:
            self.instance.report_run_failed(
                holder, f"Its imgcls process (pid {pid}) is gone; its pool slot was freed."
            )
        return f"run {run_id[:8]}'s imgcls process (pid {pid}) is gone"

    def _announce(self, run: dg.DagsterRun, step_key: str | None, message: str) -> None:
        self.say(message)
        self.instance.report_engine_event(message, run, step_key=step_key)


def _freed_sentence(pool: str, gone: list[str]) -> str:
    text = f"{'; '.join(gone)}: its {pool} slot is freed for this run."
    return text[0].upper() + text[1:]


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
