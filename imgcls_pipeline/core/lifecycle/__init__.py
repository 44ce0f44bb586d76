"""Model lifecycle: immutable model versions, index bundles switched in atomically, and the
champion / challenger gate that decides which version is served. No Dagster here.

- ``registry``: ``register_version`` / ``list_versions`` / ``read_version`` (``models/<version>/``).
- ``bundles``: ``build_bundle`` (a staged bundle; ``reuse`` for the new-photos track),
  ``serve``, ``served_bundle``, ``served_version``, ``check_matches``, ``find_bundle``.
- ``gate``: ``decide``, ``val_recall_at_1``, ``record_decision`` / ``read_decisions``
  (``models/decisions.csv``), ``run_gate``.

Locks: the caller of ``build_bundle``, ``serve`` and ``run_gate`` holds the artifacts folder's
lock (``FolderLock(artifacts, "artifacts folder")``); ``register_version`` and
``record_decision`` take the models folder's lock themselves, so their caller must not hold it.
"""
