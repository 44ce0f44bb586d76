"""Run under torchrun by test_train_script: the training script, then a cross-rank weight check.

Each rank runs ``train_script.main`` unchanged except that it keeps a handle on the model it
built and leaves the process group open; afterwards rank 0 writes the largest difference between
the ranks' final weights to ``<checkpoint-dir>/rank_weight_difference.txt`` (0 when DDP kept them
in sync through both phases). With ``--same-images-every-run`` first, the training transform has
no random augmentation (``tiny_training.same_images_every_run``), so the run can be compared
with a one-process run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

from imgcls_pipeline import train_script
from imgcls_pipeline.core.training import distributed
from imgcls_pipeline.core.training import loop as training
from imgcls_pipeline_tests.core.training.tiny_training import same_images_every_run

built = []
_build = training.build_embedding_model


def _keep(model_cfg):
    built.append(_build(model_cfg))
    return built[-1]


def main() -> int:
    args = sys.argv[1:]
    if args[:1] == ["--same-images-every-run"]:
        args = args[1:]
        training.train_transform = same_images_every_run
    training.build_embedding_model = _keep
    close = distributed.cleanup
    distributed.cleanup = lambda: None
    code = train_script.main(args)
    weights = torch.cat([p.detach().flatten() for p in built[0].parameters()])
    everyone = [torch.empty_like(weights) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, weights)
    if dist.get_rank() == 0:
        difference = max(float((w - weights).abs().max()) for w in everyone)
        checkpoint_dir = Path(sys.argv[sys.argv.index("--checkpoint-dir") + 1])
        (checkpoint_dir / "rank_weight_difference.txt").write_text(str(difference))
    close()
    return code


if __name__ == "__main__":
    sys.exit(main())
