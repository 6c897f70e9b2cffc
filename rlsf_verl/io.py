"""Atomic writes: a reader sees the old file or the new one, never half of one.

>>> from pathlib import Path
>>> from rlsf_verl.io import atomic_write_text
>>> atomic_write_text(Path("/tmp/rlsf-io-doc.txt"), "done\\n").read_text()
'done\\n'
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_file(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp)`` on a temporary file next to ``path``, fsync it, then rename it over ``path``;
    for writers that take a file name (parquet, safetensors). A failed write leaves no temporary file.

    >>> atomic_write_file("/tmp/rlsf-io-doc.bin", lambda tmp: tmp.write_bytes(b"ok")).read_bytes()
    b'ok'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() would honour the umask
        write(Path(tmp))
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` atomically (see :func:`atomic_write_file`)."""
    return atomic_write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """:func:`atomic_write_text` of ``obj`` as indented JSON."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: list[dict]) -> Path:
    """:func:`atomic_write_text` of one JSON object per line (pandas: ``read_json(path, lines=True)``)."""
    return atomic_write_text(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSONL file, ours or verl's dumps. Rows end at "\\n" only: verl writes with
    ``ensure_ascii=False``, so a model's text can hold U+2028 or U+0085 raw, where ``str.splitlines`` would
    cut a row in two."""
    text = Path(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line.strip()]


def atomic_dir(target: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Run ``build(tmp_dir)`` in a fresh sibling directory, then rename it to ``target``.

    An existing ``target`` is replaced only once the new one is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
