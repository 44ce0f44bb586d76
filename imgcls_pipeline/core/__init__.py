"""Plain Python/PyTorch building blocks of the pipeline; nothing here imports Dagster."""
