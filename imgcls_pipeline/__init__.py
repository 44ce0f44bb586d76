"""Retrieval-based image classification: EfficientNetV2 + ArcFace embeddings, Faiss search,
orchestrated by Dagster."""

import os
import sys

# PyTorch and Faiss wheels for macOS each bring their own OpenMP runtime; loading both aborts
# the process ("OMP: Error #15"). The original specification promises this is handled.
if sys.platform == "darwin":
    os.environ.setdefault("KMP_DUPLICATE_LIB_OK", "TRUE")
