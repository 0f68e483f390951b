"""A corpus of bad inputs, built from code: broken, disguised and hostile files, odd names,
duplicates, bad manifests, hostile recipes and weights, symlinks out of the root and loops.

Every dataset lives under one ``tree`` folder (snapshotted before and after each command, so a
command that writes to, renames or touches anything there is caught); recipes, weights and outputs
live elsewhere. :class:`Corpus` records, per dataset, which entries are problems and the token by
which a command's output must name each of them.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import stat
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autotransfer.backbones.torch_pickle import MAGIC_NUMBER, PROTOCOL_VERSION
from tests.data.builders import image_bytes, png_with_size
from tests.train.helpers import COLOURS

#: The good images per class of the datasets that can be trained on.
GOOD_PER_CLASS = 8
#: A name that is not valid UTF-8 (Latin-1 'é'); its token is its ASCII prefix.
NON_UTF8_NAME = b"latin1_caf\xe9.png"


def noise_bytes(n: int, seed: int = 0) -> bytes:
    """``n`` random bytes, the same on every run."""
    return np.random.default_rng(seed).bytes(n)


def colour_png(k: int, seed: int, size: int = 32) -> bytes:
    """A noisy image whose mean colour gives its class (``k``) away; distinct per ``seed``."""
    rng = np.random.default_rng(1000 * k + seed)
    noise = rng.normal(0, 40, size=(size, size, 3))
    img = np.clip(np.asarray(COLOURS[k % len(COLOURS)]) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def colour_jpeg(k: int, seed: int, size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(colour_png(k, seed, size))).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@dataclass
class Dataset:
    """One dataset of the corpus: where it is and which of its entries are problems.

    ``excluded`` maps a token to the entry it names: files that cannot be used (every command
    that reads the dataset must name them). ``flagged`` are usable but suspicious (warnings,
    duplicates): ``profile`` must name them too. ``usable``: whether training can work on it.
    """

    path: Path
    usable: bool
    excluded: dict[str, str] = field(default_factory=dict)
    flagged: dict[str, str] = field(default_factory=dict)
    n_usable: int = 0  # images a profile counts


@dataclass
class Corpus:
    tree: Path  # every dataset, and the folder the 'outside' links point to
    outside: Path  # a folder outside every dataset root (a link target)
    recipes: Path  # hostile and absurd recipes (outside the tree: 'tune' writes next to them)
    weights: Path  # crafted .pth files
    marker: Path  # created by any payload that manages to run
    datasets: dict[str, Dataset] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# datasets


def _good(folder: Path, k: int, n: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        path = folder / f"good_{i:02d}.png"
        path.write_bytes(colour_png(k, i))
        paths.append(path)
    return paths


def build_mixed(root: Path, outside: Path) -> Dataset:
    """Two trainable classes plus every kind of broken, disguised, oddly named or linked file."""
    ds = Dataset(root, usable=True)
    cat, dog = root / "cat", root / "dog"
    good_cat = _good(cat, 0, GOOD_PER_CLASS)
    _good(dog, 1, GOOD_PER_CLASS)

    def excluded(path: Path, data: bytes | None = None) -> None:
        if data is not None:
            path.write_bytes(data)
        ds.excluded[path.name] = path.relative_to(root).as_posix()

    def flagged(path: Path, data: bytes, token: str | None = None) -> None:
        path.write_bytes(data)
        ds.flagged[token or path.name] = path.relative_to(root).as_posix()

    jpeg = colour_jpeg(0, 90)
    excluded(cat / "zero_byte.png", b"")
    excluded(cat / "truncated_half.jpg", jpeg[: len(jpeg) // 2])
    excluded(dog / "corrupt_body.png", image_bytes("PNG", 32, 7)[:40] + noise_bytes(300, 1))
    excluded(dog / "text_named.png", b"this is a text file, not an image\n" * 4)
    excluded(dog / "bomb_20000x20000.png", png_with_size(20_000, 20_000))
    # disguised but readable: a .jpg that is a PNG (read by content, reported)
    flagged(cat / "png_named.jpg", colour_png(0, 91))
    # odd names: usable images whose names other tools choke on
    odd = cat / os.fsdecode(NON_UTF8_NAME)
    odd.write_bytes(colour_png(0, 92))
    ds.flagged["latin1_caf"] = odd.relative_to(root).as_posix()
    flagged(cat / "with space.png", colour_png(0, 93), "with space")
    (dog / "-leading-dash.png").write_bytes(colour_png(1, 94))
    (dog / "ñandú_鳥.png").write_bytes(colour_png(1, 95))
    (dog / ("long_" + "x" * 200 + ".png")).write_bytes(colour_png(1, 96))
    # duplicates: one within a class, one across classes (a label conflict)
    flagged(cat / "dup_same_class.png", good_cat[0].read_bytes())
    flagged(dog / "dup_other_class.png", good_cat[1].read_bytes())
    # links: a folder outside the root, a loop, a dangling link; a hidden file
    (cat / "link_outside").symlink_to(outside, target_is_directory=True)
    ds.excluded["link_outside"] = "cat/link_outside"
    (cat / "file_link_outside.png").symlink_to(outside / "link_target.png")
    ds.excluded["file_link_outside"] = "cat/file_link_outside.png"
    (dog / "loop_a.png").symlink_to("loop_b.png")
    (dog / "loop_b.png").symlink_to("loop_a.png")
    ds.excluded["loop_a"] = "dog/loop_a.png"
    ds.excluded["loop_b"] = "dog/loop_b.png"
    (dog / "self_loop").symlink_to(".", target_is_directory=True)
    ds.excluded["self_loop"] = "dog/self_loop"
    (cat / "dangling.png").symlink_to("does_not_exist.png")
    ds.excluded["dangling"] = "cat/dangling.png"
    (cat / ".hidden.png").write_bytes(colour_png(0, 97))
    # the good images, the five oddly named ones, the disguised one and the two duplicates
    ds.n_usable = 2 * GOOD_PER_CLASS + 5 + 1 + 2
    return ds


def build_manifest(root: Path, outside: Path) -> Dataset:
    """A CSV manifest with bad rows, paths escaping the root and one path with two labels."""
    ds = Dataset(root, usable=True)
    images = root / "images"
    rows = ["path,label,split"]
    for k, label in enumerate(("cat", "dog")):
        for i, path in enumerate(_good(images / label, k, GOOD_PER_CLASS)):
            split = "val" if i < 2 else "train"
            rows.append(f"{path.relative_to(root).as_posix()},{label},{split}")
    ds.n_usable = 2 * GOOD_PER_CLASS  # two_labels.png is a good image, but which label is not known
    # good_02 of cat is listed again with an unknown split (that row is refused, not the file)
    conflict = images / "two_labels.png"
    conflict.write_bytes(colour_png(0, 50))
    rows += [
        "images/two_labels.png,cat,train",
        "images/two_labels.png,dog,train",  # one path, two labels
        "images/no_label.png,,train",
        ",cat,train",
        "../outside_escape.png,cat,train",
        f"{outside / 'OUTSIDE_0.png'},dog,train",  # absolute, outside the root
        "images/../../outside_dotdot.png,dog,train",
        "images/missing_file.png,cat,train",
        "images/cat/good_02.png,cat,holdout",  # unknown split
    ]
    (root / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ds.excluded.update({
        "two_labels.png": "images/two_labels.png", "no_label.png": "images/no_label.png",
        "outside_escape.png": "../outside_escape.png", "OUTSIDE_0.png": "OUTSIDE_0.png",
        "outside_dotdot.png": "images/../../outside_dotdot.png",
        "missing_file.png": "images/missing_file.png", "holdout": "images/cat/good_02.png",
    })
    # escaped files exist (next to the dataset), so a command that followed them would find them
    (root.parent / "outside_escape.png").write_bytes(colour_png(1, 51))
    (root.parent / "outside_dotdot.png").write_bytes(colour_png(1, 52))
    return ds


def build_unusable(tree: Path) -> dict[str, Dataset]:
    """Datasets that cannot be trained on: an empty folder, one class, an empty class folder."""
    empty = tree / "empty"
    empty.mkdir()
    one = tree / "one_class"
    _good(one / "only", 0, GOOD_PER_CLASS)
    with_empty = tree / "empty_class"
    _good(with_empty / "cat", 0, GOOD_PER_CLASS)
    _good(with_empty / "dog", 1, GOOD_PER_CLASS)
    (with_empty / "void").mkdir()
    return {
        "empty": Dataset(empty, usable=False),
        "one_class": Dataset(one, usable=False, n_usable=GOOD_PER_CLASS),
        # a class folder without images: named, whether the dataset is then refused or not
        "empty_class": Dataset(with_empty, usable=True, excluded={"void": "void"},
                               n_usable=2 * GOOD_PER_CLASS),
    }


# --------------------------------------------------------------------------------------------
# recipes


def tiny_recipe_data(**overrides: Any) -> dict[str, Any]:
    """A recipe for the ``test_tiny`` backbone at 32 px, as plain data (two short phases)."""
    data: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "backbone": {"name": "test_tiny", "input_size": 32, "weights": "none"},
        "data": {"batch_size": 8, "val_fraction": 0.25},
        "head": {"dropout": 0.0},
        "augmentation": {"horizontal_flip": False, "zoom": 0.0, "translation": 0.0},
        "phases": [
            {"name": "head", "epochs": 1, "trainable_from": 5, "learning_rate": 0.01},
            {"name": "fine_tune", "epochs": 1, "trainable_from": 3, "learning_rate": 0.001},
        ],
        "early_stopping": {"patience": 10},
    }
    data.update(overrides)
    return data


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _phase(**overrides: Any) -> list[dict[str, Any]]:
    return [{"name": "head", "epochs": 1, "trainable_from": 5, "learning_rate": 0.01, **overrides}]


#: name -> (file name, the key path or word the error must name)
BAD_RECIPES: dict[str, tuple[str, str]] = {
    "python_tag": ("python_tag.yaml", "python"),
    "python_apply": ("python_apply.yaml", "python"),
    "python_object": ("python_object.yaml", "python"),
    "negative_epochs": ("negative_epochs.yaml", "epochs"),
    "zero_epochs": ("zero_epochs.yaml", "epochs"),
    "nan_rate": ("nan_rate.yaml", "learning_rate"),
    "inf_rate": ("inf_rate.yaml", "learning_rate"),
    "json_nan_rate": ("json_nan_rate.json", "learning_rate"),
    "huge_size": ("huge_size.yaml", "input_size"),
    "huge_epochs": ("huge_epochs.yaml", "epochs"),
    "huge_batch": ("huge_batch.yaml", "batch_size"),
    "nan_warmup": ("nan_warmup.yaml", "warmup_epochs"),
    "huge_seed": ("huge_seed.yaml", "seed"),
    "nan_dropout": ("nan_dropout.yaml", "dropout"),
    "not_a_mapping": ("not_a_mapping.yaml", "mapping"),
    "empty": ("empty.yaml", "mapping"),
    "binary": ("binary.yaml", "UTF-8"),
    "billion_laughs": ("billion_laughs.yaml", "billion_laughs.yaml"),
    "unknown_backbone": ("unknown_backbone.yaml", "no_such_net"),
}


def _billion_laughs(levels: int = 9) -> str:
    """YAML whose aliases expand to 9 ** ``levels`` items (a safe loader shares, not copies)."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + f"\nbackbone: *{chr(96 + levels)}\n"


def write_recipes(folder: Path, marker: Path) -> None:
    """Write the hostile and absurd recipes of :data:`BAD_RECIPES` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    good = _yaml(tiny_recipe_data())
    files = {
        # a YAML tag that a full loader would turn into a call creating ``marker``
        "python_tag": f"!!python/object/apply:os.mkdir [{str(marker)!r}]\n",
        "python_apply": good.replace("name: tiny",
                                     f"name: !!python/object/apply:os.mkdir [{str(marker)!r}]"),
        "python_object": good.replace(
            "name: tiny", f"name: !!python/object:{__name__}._Payload {{marker: {str(marker)!r}}}"),
        "negative_epochs": _yaml(tiny_recipe_data(phases=_phase(epochs=-5))),
        "zero_epochs": _yaml(tiny_recipe_data(phases=_phase(epochs=0))),
        "nan_rate": _yaml(tiny_recipe_data(phases=_phase())).replace("learning_rate: 0.01",
                                                                     "learning_rate: .nan"),
        "inf_rate": _yaml(tiny_recipe_data(phases=_phase())).replace("learning_rate: 0.01",
                                                                     "learning_rate: .inf"),
        "json_nan_rate": '{"backbone": {"name": "test_tiny", "input_size": 32, "weights": "none"}, '
                         '"phases": [{"name": "head", "epochs": 1, "trainable_from": 5, '
                         '"learning_rate": NaN}]}\n',
        "huge_size": _yaml(tiny_recipe_data(backbone={"name": "test_tiny",
                                                      "input_size": 10**9, "weights": "none"})),
        "huge_epochs": _yaml(tiny_recipe_data(phases=_phase(epochs=10**9))),
        "huge_batch": _yaml(tiny_recipe_data(data={"batch_size": 10**9})),
        "nan_warmup": _yaml(tiny_recipe_data(phases=_phase())).replace(
            "learning_rate: 0.01", "learning_rate: 0.01\n  warmup_epochs: .nan"),
        "huge_seed": _yaml(tiny_recipe_data(seed=10**30)),
        "nan_dropout": _yaml(tiny_recipe_data()).replace("dropout: 0.0", "dropout: .nan"),
        "not_a_mapping": "- just\n- a list\n",
        "empty": "",
        "billion_laughs": _billion_laughs(),
        "unknown_backbone": _yaml(tiny_recipe_data(backbone={"name": "no_such_net",
                                                             "input_size": 32})),
    }
    for name, (file_name, _) in BAD_RECIPES.items():
        if name == "binary":
            binary = b"\xff\xfe\x00backbone: \x80\x81\n" + noise_bytes(64, 2)
            (folder / file_name).write_bytes(binary)
        else:
            (folder / file_name).write_text(files[name], encoding="utf-8")


# --------------------------------------------------------------------------------------------
# weights: legacy PyTorch checkpoints with a payload in each pickled record


class _Payload:
    """Unpickling this calls ``os.mkdir(marker)``: proof that the file ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


#: the records of a legacy checkpoint, in file order
PTH_RECORDS = ("magic", "protocol", "sys_info", "state_dict", "storage_keys")


def legacy_pth(payload_in: str | None, marker: Path) -> bytes:
    """A legacy ``.pth`` (an empty state dict) whose record ``payload_in`` is a code payload."""
    records: dict[str, Any] = {
        "magic": MAGIC_NUMBER,
        "protocol": PROTOCOL_VERSION,
        "sys_info": {"protocol_version": PROTOCOL_VERSION, "little_endian": True},
        "state_dict": OrderedDict(),
        "storage_keys": [],
    }
    if payload_in is not None:
        records[payload_in] = _Payload(marker)
    return b"".join(pickle.dumps(records[r], protocol=2) for r in PTH_RECORDS)


def write_weights(folder: Path, marker: Path) -> dict[str, Path]:
    """Crafted checkpoints: a payload in each record, garbage, a truncated file."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for record in PTH_RECORDS:
        files[f"payload_{record}"] = folder / f"payload_in_{record}.pth"
        files[f"payload_{record}"].write_bytes(legacy_pth(record, marker))
    files["garbage"] = folder / "garbage.pth"
    files["garbage"].write_bytes(b"\x80\x02" + noise_bytes(256, 3))
    files["truncated"] = folder / "truncated.pth"
    files["truncated"].write_bytes(legacy_pth(None, marker)[:-3])
    return files


# --------------------------------------------------------------------------------------------
# the whole corpus


def build_corpus(base: Path) -> Corpus:
    tree = base / "tree"
    outside = tree / "outside"
    outside.mkdir(parents=True)
    for i in range(3):
        (outside / f"OUTSIDE_{i}.png").write_bytes(colour_png(2, 70 + i))
    (outside / "link_target.png").write_bytes(colour_png(2, 73))
    corpus = Corpus(tree=tree, outside=outside, recipes=base / "recipes", weights=base / "weights",
                    marker=base / "PAYLOAD_RAN")
    corpus.datasets["mixed"] = build_mixed(tree / "mixed", outside)
    (tree / "manifest").mkdir()
    corpus.datasets["manifest"] = build_manifest(tree / "manifest", outside)
    corpus.datasets.update(build_unusable(tree))
    write_recipes(corpus.recipes, corpus.marker)
    write_weights(corpus.weights, corpus.marker)
    # fixed, distinct times: a command that rewrites or touches a file changes them
    for path in sorted(_walk(tree)):
        os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000),
                 follow_symlinks=False)
    return corpus


def _walk(top: Path) -> list[Path]:
    """Every entry under ``top`` (``top`` included), never following links."""
    found = [top]
    for folder, dirs, files in os.walk(top, followlinks=False):
        found += [Path(folder) / name for name in dirs + files]
    return found


# --------------------------------------------------------------------------------------------
# snapshots


def snapshot(top: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``top`` (links not followed): type, mode, size, mtime, content hash."""
    state = {}
    for path in _walk(top):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        elif stat.S_ISREG(st.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = None
        state[os.fsencode(path.relative_to(top)).hex()] = (
            stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns,
            content)
    return state
