"""Run a shipped model the way a user without autotransfer would: in a subprocess that cannot
import autotransfer (an import hook refuses it, and neither the repository nor the current folder
is on ``sys.path``), with Keras, TensorFlow, numpy and Pillow only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

#: refuses ``import autotransfer`` and proves that it is refused before anything else runs
_BLOCK = r'''
import sys
class _RefuseAutotransfer:
    def find_spec(self, name, path=None, target=None):
        if name == "autotransfer" or name.startswith("autotransfer."):
            raise ImportError(f"{name} is refused in this process")
        return None
sys.meta_path.insert(0, _RefuseAutotransfer())
sys.path = [p for p in sys.path if p.rstrip("/") not in ("", ".", REPO)]
try:
    import autotransfer  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("autotransfer is importable: the test would prove nothing")
'''

#: what a user does with the files: load, decode with Pillow, predict; SavedModel from bytes;
#: TFLite on the image resized by the model's own resize layer
_CONSUMER = r'''
import json
import numpy as np
import keras
import tensorflow as tf
from PIL import Image, ImageOps

args = json.loads(sys.argv[1])
folder, paths = args["folder"], args["paths"]

def read(path):
    with Image.open(path) as img:
        return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))

out = {}
images = [read(p) for p in paths]
model = keras.saving.load_model(folder + "/model.keras")  # safe mode: no code, no custom objects
out["keras_uint8"] = np.concatenate([model.predict(x[None], verbose=0) for x in images])
out["keras_float"] = np.concatenate(
    [model.predict(x[None].astype("float32"), verbose=0) for x in images])
out["keras_call"] = np.concatenate([np.asarray(model(x[None])) for x in images])
if "savedmodel" in args["parts"]:
    serve = tf.saved_model.load(folder + "/savedmodel").signatures["serving_default"]
    data = tf.constant([open(p, "rb").read() for p in paths])
    result = serve(image_bytes=data)
    out["savedmodel"] = result["probabilities"].numpy()
    out["classes"] = result["classes"].numpy().astype(str)
if "tflite" in args["parts"]:
    interpreter = tf.lite.Interpreter(model_path=folder + "/model.tflite")
    resize = model.get_layer("resize")
    rows = []
    for x in images:
        batch = np.asarray(resize(x[None].astype("float32")))
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(index, batch)
        interpreter.invoke()
        rows.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    out["tflite"] = np.concatenate(rows)
out["autotransfer_modules"] = np.asarray(
    [m for m, v in sys.modules.items() if m.startswith("autotransfer") and v is not None], str)
np.savez(args["out"], **out)
'''

REPO = str(Path(__file__).resolve().parents[2])


def run_without_autotransfer(folder: Path, paths: list[Path], parts: tuple[str, ...] = (),
                             timeout: float = 600) -> dict[str, Any]:
    """Predict ``paths`` with the model files in ``folder`` in a process without autotransfer.

    ``parts``: also ``"savedmodel"`` (``folder/savedmodel``, from file bytes) and ``"tflite"``
    (``folder/model.tflite``). Returns the arrays the consumer saved.
    """
    out = folder / "standalone.npz"
    args = {"folder": str(folder), "paths": [str(p) for p in paths], "parts": list(parts),
            "out": str(out)}
    code = f"REPO = {REPO!r}\n" + _BLOCK + _CONSUMER
    done = subprocess.run([sys.executable, "-I", "-c", code, json.dumps(args)],
                          capture_output=True, text=True, timeout=timeout, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    with np.load(out) as data:
        return {key: data[key] for key in data.files}


def keras_modules(model_file: Path) -> set[tuple[str, str]]:
    """``(module, class name)`` of every serialised object in a ``.keras`` file's config."""
    import zipfile

    config = json.loads(zipfile.ZipFile(model_file).read("config.json"))
    found: set[tuple[str, str]] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "class_name" in node and "module" in node:
                found.add((str(node["module"]), str(node["class_name"])))
                registered = node.get("registered_name")
                assert registered in (None, node["class_name"]) and ">" not in str(registered), (
                    f"custom object {registered!r} in {model_file}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found
