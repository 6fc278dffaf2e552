"""Face datasets: LFW (pairs, people) and FairFace (demographic labels), found or fetched.

Datasets are read from ``Settings.data`` (FACELEDGER_DATA). LFW can also be fetched from its
public home into the cache directory, each file checked against its published MD5.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from faceledger.errors import DatasetError, DownloadFailedError
from faceledger.settings import Settings

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


@dataclass(frozen=True)
class Source:
    url: str
    md5: str


#: The deep-funneled LFW archive and the View 2 pairs; MD5s as published with the dataset.
LFW_SOURCES = {
    "images": Source("http://vis-www.cs.umass.edu/lfw/lfw-deepfunneled.tgz", "68331da3eb755a505a502b5aacb3c201"),
    "pairs.txt": Source("http://vis-www.cs.umass.edu/lfw/pairs.txt", "9f1ba174e4e1c508ff7cdf10ac338a7d"),
}


# --- LFW -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    mated: bool
    fold: int


class LFW:
    """Labeled Faces in the Wild laid out as ``images/<Name>/<Name>_NNNN.jpg`` plus ``pairs.txt``."""

    #: Where the labelled face lies (left, top, width, height as ratios): LFW's images were cut
    #: around a detection of the named person, centred at a fixed scale (HOG's box, median).
    expected_face = (0.27, 0.31, 0.44, 0.44)

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not (self.root / "images").is_dir():
            raise DatasetError(f"{self.root} has no images/ folder: not an LFW copy")

    @classmethod
    def locate(cls, settings: Settings | None = None) -> "LFW":
        s = settings or Settings.load()
        for root in ([s.data / "lfw"] if s.data else []) + [s.cache_dir / "datasets" / "lfw"]:
            if (root / "images").is_dir():
                return cls(root)
        raise DatasetError(
            "LFW not found: set FACELEDGER_DATA to a folder holding lfw/, "
            "or run `faceledger datasets fetch lfw` to download it (about 100 MB)"
        )

    def image(self, name: str, number: int) -> Path:
        return self.root / "images" / name / f"{name}_{number:04d}.jpg"

    def pairs(self) -> list[list[Pair]]:
        """View 2: 10 folds, each of matched then mismatched pairs."""
        path = self.root / "pairs.txt"
        if not path.is_file():
            raise DatasetError(f"{path} is missing; the LFW View 2 protocol needs it")
        lines = path.read_text().splitlines()
        try:
            n_folds, per_side = (int(x) for x in lines[0].split())
        except (IndexError, ValueError):
            raise DatasetError(f"{path}: first line should be '<folds> <pairs per side>'") from None
        rows = [ln.split("\t") for ln in lines[1:] if ln.strip()]
        if len(rows) != n_folds * 2 * per_side:
            raise DatasetError(f"{path}: expected {n_folds * 2 * per_side} pairs, found {len(rows)}")
        folds: list[list[Pair]] = []
        for k in range(n_folds):
            fold = []
            for row in rows[k * 2 * per_side : (k + 1) * 2 * per_side]:
                if len(row) == 3:
                    fold.append(Pair(self.image(row[0], int(row[1])), self.image(row[0], int(row[2])), True, k))
                elif len(row) == 4:
                    fold.append(Pair(self.image(row[0], int(row[1])), self.image(row[2], int(row[3])), False, k))
                else:
                    raise DatasetError(f"{path}: malformed pair line {row!r}")
            folds.append(fold)
        return folds

    def people(self) -> dict[str, list[Path]]:
        """Every person with their images, sorted by name and image number."""
        return {
            d.name: sorted(d.glob("*.jpg"))
            for d in sorted((self.root / "images").iterdir())
            if d.is_dir()
        }

    def images(self) -> list[Path]:
        return [p for paths in self.people().values() for p in paths]


def fetch_lfw(
    settings: Settings | None = None,
    *,
    sources: dict[str, Source] = LFW_SOURCES,
    progress: Progress | None = None,
) -> LFW:
    """Download and check LFW into ``<cache>/datasets/lfw``; a finished copy is not fetched again."""
    s = settings or Settings.load()
    target = s.cache_dir / "datasets" / "lfw"
    if (target / "images").is_dir() and (target / "pairs.txt").is_file():
        return LFW(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".lfw-") as tmp:
        work = Path(tmp)
        archive = work / "lfw.tgz"
        download(sources["images"], archive, progress)
        staging = work / "lfw"
        (staging / "images").mkdir(parents=True)
        with tarfile.open(archive) as tar:
            tar.extractall(work / "extract", filter="data")
        tops = [p for p in (work / "extract").iterdir() if p.is_dir()]
        if len(tops) != 1:
            raise DatasetError("the LFW archive does not have the expected single top folder")
        for person in tops[0].iterdir():
            shutil.move(str(person), staging / "images" / person.name)
        download(sources["pairs.txt"], staging / "pairs.txt", progress)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # only a complete, verified copy ever appears at the target
    return LFW(target)


def download(source: Source, dest: Path, progress: Progress | None = None) -> None:
    """Stream ``source`` to ``dest``, then check its MD5; a mismatch deletes the file."""
    digest = hashlib.md5()
    try:
        import urllib.request  # (~60 ms of ssl and http, for a download only)

        with urllib.request.urlopen(source.url, timeout=60) as resp, dest.open("wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            done = 0
            while block := resp.read(1 << 20):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise DownloadFailedError(f"could not download {source.url}: {exc}; check the connection and retry, or "
                                  "place the dataset under FACELEDGER_DATA yourself") from exc
    if digest.hexdigest() != source.md5:
        dest.unlink(missing_ok=True)
        raise DownloadFailedError(
            f"{source.url}: checksum mismatch (MD5 {digest.hexdigest()}, expected {source.md5}); "
            "the download is corrupt or the file changed upstream"
        )


# --- FairFace ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FairFaceRecord:
    path: Path
    age: str
    gender: str
    race: str


class FairFace:
    """FairFace crops with their annotator-perceived labels (no identities: non-mated pairs only).

    Its images were cut with dlib's ``get_face_chip`` at padding 0.25: they are pre-aligned.
    """

    prealigned = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not (self.root / "labels.csv").is_file():
            raise DatasetError(f"{self.root} has no labels.csv: not a FairFace copy")

    @classmethod
    def locate(cls, settings: Settings | None = None) -> "FairFace":
        s = settings or Settings.load()
        if s.data and (s.data / "fairface" / "labels.csv").is_file():
            return cls(s.data / "fairface")
        raise DatasetError(
            "FairFace not found: set FACELEDGER_DATA to a folder holding fairface/labels.csv "
            "(FairFace is distributed by its authors, see https://github.com/joojs/fairface)"
        )

    def records(self) -> list[FairFaceRecord]:
        return list(self._read())

    def _read(self) -> Iterator[FairFaceRecord]:
        with (self.root / "labels.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                yield FairFaceRecord(self.root / row["file"], row["age"], row["gender"], row["race"])


# --- a user's own labelled images ------------------------------------------------------------------


def read_manifest(manifest: Path, *, subject_required: bool = False) -> list[tuple[Path, str, str]]:
    """(path, subject, group) of each row of a CSV with columns ``path`` (relative to the
    manifest's folder, or absolute), ``group``, and ``subject`` (optional unless required: without
    it every image is its own subject, so every pair is non-mated, as for FairFace)."""
    manifest = Path(manifest)
    try:
        with open(manifest, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{manifest}: not a readable CSV manifest ({exc})") from None
    needed = {"path", "group"} | ({"subject"} if subject_required else set())
    if not rows or not needed <= set(rows[0]):
        raise DatasetError(f"{manifest}: needs a header with columns {', '.join(sorted(needed))}"
                           + ("" if subject_required else " (and optionally subject)"))
    items = []
    for n, r in enumerate(rows, 2):
        if not r["path"] or not r["group"] or (subject_required and not r["subject"]):
            raise DatasetError(f"{manifest} line {n}: empty {'path, group or subject' if subject_required else 'path or group'}")
        p = Path(r["path"]) if Path(r["path"]).is_absolute() else manifest.parent / r["path"]
        if not p.is_file():
            raise DatasetError(f"{manifest} line {n}: {p} is not a file")
        items.append((p, r.get("subject") or f"image {n}", r["group"]))
    return items
