"""One named job per ``imgcls`` command, so the Runs and Overview pages say what was run
(``split``, ``train``, ...) rather than ``__ephemeral_asset_job__``."""

import dagster as dg

# The assets each command materializes (their checks run with them).
COMMAND_ASSETS: dict[str, list[str]] = {
    "split": ["image_manifest", "id_groups", "splits"],
    "train": ["image_cache", "trained_checkpoint", "model_version", "served_model"],
    "index": ["embeddings", "faiss_index", "evaluation"],
    "pipeline": [
        "image_manifest",
        "id_groups",
        "splits",
        "image_cache",
        "trained_checkpoint",
        "model_version",
        "served_model",
        "embeddings",
        "faiss_index",
        "evaluation",
    ],
}
COMMAND_ASSETS["demo"] = COMMAND_ASSETS["pipeline"]

_DESCRIPTIONS = {
    "split": "Scan the photo folder and write the split tables (`imgcls split`).",
    "train": "Train the embedding model on the split tables, register it as a version and serve "
    "it if the gate accepts it (`imgcls train`).",
    "index": "Bring the served model's bundle (embeddings, Faiss index) up to date with the "
    "splits and evaluate it (`imgcls index`).",
    "pipeline": "Split, train, gate, embed, index and evaluate (`imgcls pipeline`).",
    "demo": "The whole pipeline on the built-in example photos (`imgcls demo`).",
}

command_jobs = [
    dg.define_asset_job(
        name,
        selection=dg.AssetSelection.assets(*assets),
        description=_DESCRIPTIONS[name],
    )
    for name, assets in COMMAND_ASSETS.items()
]
