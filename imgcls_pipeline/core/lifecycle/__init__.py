"""Model lifecycle: immutable model versions, index bundles switched in atomically, and the
champion / challenger gate that decides which version is served. No Dagster here."""
