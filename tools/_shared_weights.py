"""For the benchmarks: use ../shared/weights as Keras' weight cache on machines without internet."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("AUTOTRANSFER_SHARED", REPO.parent / "shared"))


def use_shared_weights() -> None:
    """Point KERAS_HOME at a temporary folder whose models/ links ../shared/weights/*, unless
    KERAS_HOME is already set (then Keras' own cache and download are used, as for users)."""
    if os.environ.get("KERAS_HOME") or not (SHARED / "weights").is_dir():
        return
    home = Path(tempfile.mkdtemp(prefix="bench-keras-home-"))
    (home / "models").mkdir()
    for f in (SHARED / "weights").iterdir():
        (home / "models" / f.name).symlink_to(f.resolve())
    os.environ["KERAS_HOME"] = str(home)
