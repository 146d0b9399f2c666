"""Where braintriage keeps what it makes for itself and can always make again: decoded datasets (cache.py) and
ONNX Runtime's optimised copies of model files (inference.py). `$BRAINTRIAGE_CACHE`, by default
`~/.cache/braintriage`; deleting it loses nothing but time."""

from __future__ import annotations

import os
from pathlib import Path


def user_cache_dir() -> Path:
    return Path(os.environ.get("BRAINTRIAGE_CACHE", Path.home() / ".cache" / "braintriage"))
