"""Atomic writes: results appear whole or not at all, with the mode any other new file gets.

A write goes through a temporary file in the target's folder, synced, then ``os.replace``-d onto
the target. The file gets the permissions ``open()`` would give it (``0o666`` less the umask, or
the mode of the file it replaces), not ``mkstemp``'s private ``0o600``. A folder or file that
cannot be written raises :class:`~autotransfer.errors.OutputError` naming it and saying why.
The JSON files a run writes are read back by :func:`read_run_json`: plain ``json`` (nothing in
them can run code), and a damaged, edited or foreign one is a
:class:`~autotransfer.errors.RunDirectoryError` naming it, why and what to do.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autotransfer.errors import OutputError, RunDirectoryError

_HINTS = {
    errno.EACCES: "choose a folder you may write to, or change its permissions",
    errno.EPERM: "choose a folder you may write to, or change its permissions",
    errno.EROFS: "the file system is read-only; choose a folder on a writable one",
    errno.ENOSPC: "the disk is full; free some space or choose another disk",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another disk",
    errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
    errno.EEXIST: "a file stands where a folder is needed; choose another path",
    errno.EISDIR: "a folder stands where the file should go; choose another path",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
}


def current_umask() -> int:
    """The process's umask (read from ``/proc`` on Linux, so that it is never changed)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the usual read-by-setting, restored at once
    os.umask(mask)
    return mask


def output_error(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """An :class:`OutputError` for ``exc`` raised while writing ``path``: what, why, what to do."""
    reason = exc.strerror or str(exc)
    where = exc.filename if exc.filename not in (None, "") else path
    hint = _HINTS.get(exc.errno or -1, "check the path and its permissions")
    detail = "" if os.fspath(where) == os.fspath(path) else f" ('{os.fspath(where)}')"
    return OutputError(f"Cannot write '{os.fspath(path)}': {reason}{detail}; {hint}.")


def ensure_dir(path: str | os.PathLike[str], *,
               purpose: str | os.PathLike[str] | None = None) -> Path:
    """Create the folder ``path`` (and its parents) or raise :class:`OutputError` naming
    ``purpose`` (the file to be written there) or the folder."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(purpose if purpose is not None else folder, exc) from exc
    return folder


def check_apart(out: str | os.PathLike[str], data: str | os.PathLike[str] | None, *,
                option: str = "--out", what: str = "dataset", replaced: bool = True) -> None:
    """Refuse an output folder ``out`` that is the dataset folder ``data``, lies inside it, or
    (``replaced``: the folder may be deleted and made anew) holds it.

    Results written inside a dataset folder change the user's data (and a run folder there is
    read as a class folder next time); a folder that holds the dataset would be deleted with it
    when replaced (``--overwrite``). For a CSV manifest only the files it lists are data, so only
    its folder itself, or one holding it, is refused. Links are resolved, so a link to the data
    is caught too. Raises :class:`OutputError` naming both and what to do; a ``data`` that does
    not exist is left to the dataset reader to report.
    """
    if data is None or not os.path.exists(data):
        return
    root = os.path.realpath(data)
    manifest = not os.path.isdir(root)
    if manifest:
        root = os.path.dirname(root)
    place = os.path.realpath(out)
    common = os.path.commonpath([root, place])
    if place == root:
        why = f"is the {what} folder"
    elif common == root and not manifest:
        why = f"lies inside the {what} folder"
    elif common == place and replaced:
        why = f"holds the {what} folder"
    else:
        return
    given = "" if os.path.abspath(data) == root else f" ('{os.fspath(data)}')"
    effect = ("replacing it would delete your data with it" if why.startswith("holds") else
              "the results would be written into your data, and read as part of it next time")
    raise OutputError(f"{option} '{os.fspath(out)}' {why} '{root}'{given}: {effect}. Choose a "
                      f"folder outside the {what}, e.g. "
                      f"'{os.path.join(os.path.dirname(root), 'runs')}'.")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    target = Path(path)
    ensure_dir(target.parent, purpose=target)
    try:
        mode = os.stat(target).st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~current_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise output_error(target, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            try:
                os.fchmod(handle.fileno(), mode)
            except OSError:  # a file system without modes (some network mounts): its default
                pass
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise output_error(target, exc) from exc
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` atomically as UTF-8 (undecodable file-name bytes written as ``\\xNN``)."""
    return atomic_write_bytes(path, unicode_safe(text).encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return atomic_write_text(path, json_text(obj))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def unicode_safe(text: str) -> str:
    """``text`` with its lone surrogates escaped, so that it can be written as UTF-8.

    ``os.fsdecode`` turns the bytes of a file name that is not UTF-8 into such surrogates; they
    are shown as ``\\xNN`` (the byte), any other lone surrogate as ``\\uNNNN``.
    """
    return _SURROGATE.sub(_escape, text)


_YAML_LOADER: Any = None


def safe_yaml(text: str) -> Any:
    """``text`` parsed as YAML by ``yaml.SafeLoader`` (no tag can build a Python object or run
    code) that also refuses a key given twice in one mapping, which YAML would otherwise settle
    silently by keeping the last value. Raises ``yaml.YAMLError`` naming the key and lines."""
    global _YAML_LOADER
    import yaml

    if _YAML_LOADER is None:
        class UniqueKeyLoader(yaml.SafeLoader):
            def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
                first: dict[Any, int] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *base' may override
                        continue
                    key = self.construct_object(key_node, deep=deep)
                    try:
                        line = first.setdefault(key, key_node.start_mark.line)
                    except TypeError:  # an unhashable key: the constructor's own error names it
                        continue
                    if line != key_node.start_mark.line:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark,
                            f"found the key {key!r} a second time (first on line {line + 1}); "
                            "keep one", key_node.start_mark)
                return super().construct_mapping(node, deep=deep)

        _YAML_LOADER = UniqueKeyLoader
    return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a SafeLoader


#: what a spreadsheet reads as the start of a formula (ASCII, and the full-width forms some read)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def spreadsheet_safe(cell: str, *, path: bool = False) -> str:
    """``cell`` as a CSV field that a spreadsheet shows as text, never runs as a formula.

    A file or class named ``=HYPERLINK(…)``, ``+cmd|…`` or ``@SUM(…)`` would otherwise be
    evaluated when ``predictions.csv`` is opened in Excel or LibreOffice (CSV injection). Such a
    cell gets a leading ``'`` (what spreadsheets read as "text follows"; :func:`spreadsheet_value`
    removes it), a relative path ``./`` (the same file, and still a path). Numbers such as
    ``-1`` are left as they are: a spreadsheet reads them as numbers, never as formulas.
    """
    text = unicode_safe(cell)
    quoted = not path and text.startswith("'")  # escaped too, so the value reads back as given
    if not (quoted or text.startswith(_FORMULA_START)) or _is_number(text):
        return text
    return ("./" if path else "'") + text


def spreadsheet_value(cell: str) -> str:
    """The value :func:`spreadsheet_safe` (``path=False``) was given for the field ``cell``."""
    if cell.startswith("'") and cell[1:].startswith((*_FORMULA_START, "'")):
        return cell[1:]
    return cell


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text


def json_safe(obj: Any) -> Any:
    """``obj`` with every string (keys included) made :func:`unicode_safe`."""
    if isinstance(obj, str):
        return unicode_safe(obj)
    if isinstance(obj, dict):
        return {json_safe(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def json_text(obj: Any, *, ensure_ascii: bool = False) -> str:
    """``obj`` as indented JSON text that is always valid UTF-8 (see :func:`unicode_safe`)."""
    return json.dumps(json_safe(obj), indent=2, ensure_ascii=ensure_ascii) + "\n"


#: what to do about a run's JSON file that cannot be read, unless the caller knows better
REREAD_HINT = ("It was damaged (e.g. cut short while copying), edited, or written by an "
               "incompatible version of autotransfer: copy the run folder again from where it "
               "was made, or train again.")

Fields = Mapping[str, type | tuple[type, ...]]


def read_run_json(path: str | os.PathLike[str], *, fields: Fields | None = None,
                  fix: str = REREAD_HINT) -> dict[str, Any] | None:
    """The JSON object in the run file ``path`` (``run.json``, ``metrics.json`` …); ``None``
    when there is no such file.

    ``fields`` maps keys to the types their values must have where present. A file that cannot
    be read, is not JSON, holds no object or a field of another type raises
    :class:`RunDirectoryError` naming it, saying why and then ``fix``.
    """
    file = Path(path)
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        why = exc.strerror or str(exc)
    except UnicodeDecodeError:
        why = "it is not UTF-8 text"
    except json.JSONDecodeError as exc:
        why = f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    except RecursionError:
        why = "not valid JSON: nested too deeply"
    else:
        why = _wrong_shape(data, fields or {})
        if why is None:
            return data
    raise RunDirectoryError(f"'{file}' cannot be read ({why}). {fix}")


_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "true or false",
               int: "a number", float: "a number", type(None): "null"}


def _wrong_shape(data: Any, fields: Fields) -> str | None:
    """Why ``data`` is not the object ``fields`` describes, or ``None``."""
    if not isinstance(data, dict):
        return f"it holds {_JSON_KINDS.get(type(data), 'a value')}, not a JSON object"
    for key, kind in fields.items():
        if key in data and not isinstance(data[key], kind):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            wanted = " or ".join(dict.fromkeys(_JSON_KINDS.get(t, t.__name__) for t in kinds))
            return f"its '{key}' is {_JSON_KINDS.get(type(data[key]), 'a value')}, not {wanted}"
    return None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
