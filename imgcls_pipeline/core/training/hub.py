"""Pretrained weights without waiting on a network that is not there.

Without internet, Hugging Face's hub client retries for about a minute before failing. A one-
second probe of the hub decides instead: when it cannot be reached, the hub's offline mode is
switched on (``HF_HUB_OFFLINE=1``, inherited by the training process), so cached weights load
at once and missing ones fail at once, with the same sentence either way. Light imports only:
the ``imgcls`` command checks this before starting Dagster.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

HUB_HOST = "huggingface.co"
PROBE_SECONDS = 1.0
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the hub opens within ``timeout`` (name lookup included: it
    runs in a thread, because a hanging DNS lookup ignores socket timeouts)."""
    outcome: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(outcome and outcome[0])


def offline_mode() -> bool:
    """True when the hub's offline mode is on: set by the user, or here after a failed probe.

    Behind a proxy a direct probe says nothing, so the hub client is left to its own devices."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    if any(os.environ.get(name) for name in _PROXY_VARIABLES) or hub_reachable():
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    # huggingface_hub reads the variable once, at import; an already imported copy is told too.
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    return True


def weights_maybe_cached(backbone: str) -> bool:
    """Whether the hub cache or torch's download cache holds files of ``backbone``'s
    architecture. A cheap look at folder names (the exact file depends on timm's tag for the
    model): False means they are certainly missing."""
    architecture = backbone.split(".")[0]
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub_cache = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
    torch_home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    candidates = [
        *_names(hub_cache, f"models--timm--{architecture}"),
        *_names(torch_home / "hub" / "checkpoints", architecture),
    ]
    return bool(candidates)


def _names(folder: Path, prefix: str) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return []


def weights_error(backbone: str, reason: str) -> str:
    """The one sentence for pretrained weights that cannot be had (offline, not cached, ...)."""
    return (
        f"Cannot get pretrained weights for {backbone} ({reason}); on a machine without "
        f"internet pass --pretrained_path FILE (.safetensors or .pth), or put the weights in the "
        f"Hugging Face cache (HF_HOME), or use --pretrained=false."
    )


def check_weights_available(backbone: str, pretrained: bool, pretrained_path: str | None) -> None:
    """Fail at once when the weights training will ask for cannot be had."""
    from imgcls_pipeline.core.errors import UserError

    if pretrained_path:
        if not Path(pretrained_path).is_file():
            raise UserError(
                f"--pretrained_path {pretrained_path} does not exist; pass an existing weights file."
            )
        return
    if pretrained and offline_mode() and not weights_maybe_cached(backbone):
        reason = f"{HUB_HOST} cannot be reached and they are not in the local cache"
        raise UserError(weights_error(backbone, reason))
