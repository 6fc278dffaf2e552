"""Derived model files in the user cache: checked against the digest recorded when they were written.

The cache holds files made from the model sources: converted ONNX graphs (``<cache>/onnx``: dlib's
networks, BlazeFace, the face mesh, the zoo models, the int8 copy) and ONNX Runtime's optimised
graphs (``<cache>/onnx-optimized``). They are named by their source's key, but a name says nothing
about the bytes: a copy damaged or altered after it was written would run under the source's model
id (halving an optimised BlazeFace copy's weights gave 31 'faces' on a one-face image, issue 25
review). So each is written with ``<file>.sha256`` beside it (``sha256sum -c`` reads it), the
record put in place before the file, and checked when opened through files.file_sha256's identity
cache: an unchanged file costs a stat and two small reads, a changed one is hashed again and
compared. A file whose digest does not match, or has no record, is made again from its source with
a one-line warning on stderr naming it, and replaced by rename (never unlinked: another process may
be opening it); it never runs silently. This guards against damage and stray edits, not
against someone who can rewrite both the file and its record (they own the cache).

Stale copies (one per source change, ONNX Runtime version or CPU) are removed by `faceledger models
prune` (:func:`prune`), not as a side effect of writing: another checkout or virtual environment
sharing the cache may run another version whose keys name other files.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from faceledger.models import files

SUFFIX = ".sha256"
#: The folders of ``cache_dir`` that hold derived files.
FOLDERS = ("onnx", "onnx-optimized")
_KEY = re.compile(r"-[0-9a-f]{16}(?=-|\.onnx$)")


def record_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + SUFFIX)


def install(staged: Path, target: Path) -> None:
    """Move ``staged`` into place as ``target``, its digest recorded first. The record goes before
    the file so that no other process ever finds the new file without its record (it would make the
    file again); one that reads the old file against the new record makes it again, which is only
    redundant work. Nothing is ever unlinked under a process that may be opening it: a file that
    fails its check is replaced by rename, like this."""
    staged, target = Path(staged), Path(target)
    digest = files.sha256_of(staged)
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".rec-")
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{digest}  {target.name}\n")
        os.replace(tmp, record_path(target))
    except OSError:  # no record: the file is made again when next opened
        pass
    os.replace(staged, target)


def problem(path: Path, cache_dir: Path | None = None) -> str | None:
    """Why ``path`` (an existing derived file) must not run: None when its digest matches its record."""
    path = Path(path)
    try:
        digest, _, name = record_path(path).read_text(encoding="ascii").strip().partition("  ")
    except FileNotFoundError:
        return "no digest recorded for it"
    except (OSError, UnicodeDecodeError):
        return "its digest record is unreadable"
    if name != path.name or len(digest) != 64 or digest.strip(files._HEX):
        return "its digest record is damaged"
    # not the memoised file_sha256: a file changed since this process last looked is hashed again
    if files.kept_sha256(path, cache_dir if cache_dir is not None else path.parent.parent) != digest:
        return "its contents do not match the digest recorded when it was written"
    return None


def usable(path: Path, cache_dir: Path | None = None) -> bool:
    """True when ``path`` exists and matches its record; a file that does not is named on stderr and
    the caller makes it again from its source (:func:`install` replaces it by rename: never unlinked
    here, since another process may be opening it)."""
    path = Path(path)
    if not path.is_file():
        return False
    why = problem(path, cache_dir)
    if why is None:
        return True
    sys.stderr.write(f"faceledger: warning: {path}: {why}; making it again from its source\n")
    return False


def group(name: str) -> str:
    """A derived file's name without its keys: ``facemesh-<k>.onnx`` -> ``facemesh.onnx``; the optimised
    ``<stem>-<k>-<k2>.onnx`` of a converted file has its source's group."""
    return _KEY.sub("", name)


@dataclass(frozen=True)
class Removed:
    path: Path
    bytes: int


def prune(cache_dir: Path, current: set[Path], *, dry_run: bool = False) -> list[Removed]:
    """Remove the derived files in ``cache_dir``'s derived folders that no current key names.
    ``current``: the paths today's sources, ONNX Runtime and CPU would use. Only files of a group
    that has a current member are removed (the source is known, and so is which copy is today's); a
    file of an unknown source (a bench's, another tool's) is left alone. Records go with their file;
    a record whose file is gone goes too."""
    cache_dir = Path(cache_dir)
    current = {Path(p).resolve() for p in current}
    known = {(p.parent, group(p.name)) for p in current}
    removed = []
    for folder in (cache_dir / f for f in FOLDERS):
        if not folder.is_dir():
            continue
        folder = folder.resolve()
        for path in sorted(folder.iterdir()):
            if path.name.endswith(SUFFIX):  # a record: stale when its file is gone (its own file's go below)
                stale = path.is_file() and not path.with_name(path.name[: -len(SUFFIX)]).exists()
            else:
                stale = (path.suffix == ".onnx" and path.is_file() and path not in current
                         and (folder, group(path.name)) in known)
            if not stale:
                continue
            doomed = [path] + [r for r in [record_path(path)] if path.suffix == ".onnx" and r.is_file()]
            size = sum(p.stat().st_size for p in doomed)
            if not dry_run:
                for p in doomed:
                    p.unlink()
            removed.append(Removed(path, size))
    return removed


def current(cache_dir: Path, sources: list[Path] = ()) -> set[Path]:
    """The derived files today's sources, ONNX Runtime version and CPU would use (nothing is made):
    the converted graphs (dlib's networks, BlazeFace, the face mesh, the zoo models, the int8 copy)
    and the optimised copies of those that exist and of ``sources`` (added models' files)."""
    from faceledger.models import blazeface, facemesh, sessions, zoo
    from faceledger.models.dlib import entry, onnx_export
    from faceledger.models.int8 import int8_path

    cache_dir = Path(cache_dir)
    resnet = onnx_export.converted_path(files.model_path(files.RESNET), cache_dir)
    converted = [resnet, onnx_export.converted_path(files.model_path(files.MMOD), cache_dir),
                 blazeface.onnx_path(cache_dir), facemesh.onnx_path(cache_dir),
                 *(zoo.onnx_path(name, cache_dir) for name in zoo.ZOO),
                 *(int8_path(resnet, model) for model in sorted(set(entry.INT8.values())))]
    out = set(converted)
    out.update(sessions.optimized_path(Path(s), cache_dir) for s in [*converted, *sources] if Path(s).is_file())
    return out


def prune_cache(settings, *, dry_run: bool = False) -> list[Removed]:
    """:func:`prune` on the settings' cache, today's files named by :func:`current` (the added
    models' files are the sources of their optimised copies)."""
    from faceledger.models.registry import MODEL_FILE

    root = Path(settings.models_dir)
    added = [f / MODEL_FILE for f in sorted(root.iterdir()) if (f / MODEL_FILE).is_file()] if root.is_dir() else []
    return prune(settings.cache_dir, current(settings.cache_dir, added), dry_run=dry_run)
