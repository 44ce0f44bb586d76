"""The Dagster layer: assets, checks, resources, schedules and sensors over ``imgcls_pipeline.core``."""
