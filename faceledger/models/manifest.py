"""What a model declares about itself: everything the rest of the package needs to run it.

A manifest is a small JSON file beside the model's ONNX file (or, for dlib's ResNet, built in).
What the ONNX graph itself states (input size, embedding size) is read from the graph and checked
against the manifest, so a wrong manifest fails at ``faceledger models add``, not at search time.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from faceledger.errors import InvalidParameterError

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: Where a model wants the face's 5 landmarks: dlib's chip (the points dlib's ``get_face_chip``
#: maps them to, with a padding), or the 112x112 template ArcFace-family models are trained on.
TEMPLATES = ("dlib-chip", "arcface")
LAYOUTS = ("NHWC", "NCHW")
COLOURS = ("RGB", "BGR")


class ManifestError(InvalidParameterError):
    """A model manifest that is malformed, or that disagrees with its model file."""


@dataclass(frozen=True)
class Alignment:
    """How a face is cut for the model, at its input size: ``template`` (TEMPLATES); ``padding``
    is dlib-chip's margin around the face; ``scale`` shrinks (<1) or grows the arcface template
    about the chip's centre, for models trained on looser or tighter crops."""

    template: str = "dlib-chip"
    padding: float = 0.25
    scale: float = 1.0


@dataclass(frozen=True)
class Manifest:
    name: str
    dimension: int
    input_size: tuple[int, int]  # height, width of the network's input
    alignment: Alignment = field(default_factory=Alignment)
    layout: str = "NHWC"
    colour: str = "RGB"
    #: Pixel values p in 0-255 reach the network as (p - mean[c]) / std[c], per channel of ``colour``.
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    flip: bool = False  # template = normalised sum of the face's and its mirror image's outputs
    input: str = ""  # the graph's input name ("": its only input)
    output: str = ""  # the output that is the identity embedding ("": the first)
    licence: str = ""
    source: str = ""
    description: str = ""
    #: Measured figures (LFW accuracy, TAR at stated FMRs) with the command that produced them.
    measured: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if not NAME.match(self.name or ""):
            problems.append(f"name {self.name!r} must be 1-64 of a-z 0-9 . _ - (starting with a letter or digit)")
        if not isinstance(self.dimension, int) or not 2 <= self.dimension <= 8192:
            problems.append(f"dimension {self.dimension!r} must be an integer between 2 and 8192")
        if len(self.input_size) != 2 or not all(isinstance(v, int) and 8 <= v <= 1024 for v in self.input_size):
            problems.append(f"input_size {self.input_size!r} must be [height, width], each 8-1024 pixels")
        if self.layout not in LAYOUTS:
            problems.append(f"layout {self.layout!r} must be one of {', '.join(LAYOUTS)}")
        if self.colour not in COLOURS:
            problems.append(f"colour {self.colour!r} must be one of {', '.join(COLOURS)}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s == 0 for s in self.std):
            problems.append("mean and std are three numbers each, std non-zero")
        a = self.alignment
        if a.template not in TEMPLATES:
            problems.append(f"alignment.template {a.template!r} must be one of {', '.join(TEMPLATES)}")
        if not 0 <= a.padding <= 2 or not 0.25 <= a.scale <= 4:
            problems.append("alignment: padding 0-2, scale 0.25-4")
        if a.template == "dlib-chip" and len(set(self.input_size)) != 1:
            problems.append("a dlib-chip alignment needs a square input_size")
        if problems:
            raise ManifestError(f"model manifest {self.name!r}: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ManifestError(f"model manifest: unknown field(s) {', '.join(sorted(unknown))}; "
                                f"known: {', '.join(sorted(known))}")
        missing = {"name", "dimension", "input_size"} - set(data)
        if missing:
            raise ManifestError(f"model manifest: missing field(s) {', '.join(sorted(missing))}")
        values = dict(data)
        try:
            values["input_size"] = tuple(int(v) for v in data["input_size"])
            values["mean"] = tuple(float(v) for v in data.get("mean", (0, 0, 0)))
            values["std"] = tuple(float(v) for v in data.get("std", (1, 1, 1)))
            values["alignment"] = Alignment(**data.get("alignment", {}))
        except (TypeError, ValueError) as exc:
            raise ManifestError(f"model manifest: {exc}") from exc
        return cls(**values)

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ManifestError(f"cannot read model manifest {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ManifestError(f"model manifest {path} must be a JSON object")
        return cls.from_dict(data)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


def check_against_graph(manifest: Manifest, onnx_path: Path) -> tuple[str, str]:
    """The graph's input and output names, after checking that the graph's declared shapes agree
    with the manifest (input size and layout, embedding dimension) where the graph states them."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError...
        raise ManifestError(f"{onnx_path} is not a readable ONNX model: {exc}") from exc
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    names = [i.name for i in inputs]
    if manifest.input and manifest.input not in names:
        raise ManifestError(f"the manifest's input {manifest.input!r} is not an input of the graph ({', '.join(names)})")
    if not manifest.input and len(inputs) != 1:
        raise ManifestError(f"the graph has {len(inputs)} inputs ({', '.join(names)}): name one as \"input\"")
    inp = next(i for i in inputs if i.name == (manifest.input or names[0]))
    outputs = [o.name for o in graph.output]
    if manifest.output and manifest.output not in outputs:
        raise ManifestError(f"the manifest's output {manifest.output!r} is not an output of the graph "
                            f"({', '.join(outputs)})")
    out = next(o for o in graph.output if o.name == (manifest.output or outputs[0]))

    def dims(value_info) -> list:
        return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]

    shape = dims(inp)
    h, w = manifest.input_size
    expected = [None, h, w, 3] if manifest.layout == "NHWC" else [None, 3, h, w]
    if len(shape) != 4 or any(s is not None and e is not None and s != e for s, e in zip(shape, expected)):
        raise ManifestError(f"the graph's input {inp.name!r} has shape {shape}; the manifest declares "
                            f"{manifest.layout} {expected[1:]} (input_size {list(manifest.input_size)}, layout)")
    oshape = dims(out)
    if oshape and oshape[-1] is not None and oshape[-1] != manifest.dimension:
        raise ManifestError(f"the graph's output {out.name!r} has {oshape[-1]} values per face; "
                            f"the manifest declares dimension {manifest.dimension}")
    return inp.name, out.name
