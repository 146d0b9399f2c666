"""Writing a file so that no reader ever finds half of it: write a temporary file beside it, then rename it.

Why one helper for every file braintriage writes whole (decoded caches, model files, exports, checkpoints, kept
folds, ONNX Runtime's optimised copies): a run killed while writing must leave the previous file, or none, under
the real name; and two processes may write the same file at once (runs started side by side build one decoded
cache, every process may make the optimised copy of one model). So the temporary name carries the process id,
and two writers never share it; the rename (os.replace, atomic within one filesystem) lets the last one win
with a whole file. A write that fails leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def written_atomically(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; when the block ends without an error it becomes `path`.

    `suffix` ends the temporary name, for writers that choose or append the format by the name (np.savez
    appends ".npz" to a name without it)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
