"""The opt-in int8 face network (dlib-resnet-v1-flip-int8) against the default fp32 one: same chips,
same process, alternating blocks.

Chips: the engine's aligned 150 px chips of the first N LFW images. Both networks run on ONNX
Runtime with one thread, at batch 8 (one pass each, no mirror averaging: the network's cost; a
template costs two passes in both models). Printed: ms a face of each (min / median / max over
calls), the per-block ratio fp32 / int8, and the cosine between the two models' templates (mirror
averaged, as the models make them) of the same chips.

    .venv/bin/python bench/bench_int8.py [--chips 200] [--batch 8] [--blocks 7] [--per-block 5]

Measured 2026-12-02 (this 2-core AVX512-VNNI machine, ONNX Runtime 1.32, `--blocks 9 --per-block 5`,
load 2.9): fp32 2.5 / 2.6 / 4.1 ms a face, int8 1.2 / 1.3 / 2.0 ms, fp32 / int8 1.49x / 2.07x /
2.23x per block; templates cosine min 0.99945, median 0.99968 on 200 LFW chips.
"""

from __future__ import annotations

import argparse

import numpy as np

from blocks import alternate, load, mmm, ratio_text
from samples import first_chips
from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW
from faceledger.models.registry import Registry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chips", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--blocks", type=int, default=7)
    ap.add_argument("--per-block", type=int, default=5)
    args = ap.parse_args()
    settings = Settings.load().replace(threads=1)
    lfw = LFW.locate(settings)
    engine = FaceEngine(settings)
    chips = first_chips(engine, [p for ps in lfw.people().values() for p in ps], args.chips)
    registry = Registry.of(settings)
    nets = {name: registry.embedder(registry.get(name), threads=1)
            for name in ("dlib-resnet-v1-flip", "dlib-resnet-v1-flip-int8")}
    fp32, q8 = nets.values()
    a, b = fp32.embed(list(chips)), q8.embed(list(chips))
    cos = np.sum(a * b, axis=1)
    print(f"{len(chips)} LFW chips; templates fp32 vs int8: cosine min {cos.min():.5f}, "
          f"median {np.median(cos):.5f}, mean {cos.mean():.5f}")
    print(f"ids: {fp32.model} vs {q8.model}")
    state = {"i": 0}

    def run(net):
        def one():
            i = state["i"] % (len(chips) - args.batch + 1)
            state["i"] += args.batch
            net.raw(chips[i : i + args.batch])
        return one

    print(load(), flush=True)
    times = alternate({"fp32": run(fp32), "int8": run(q8)}, blocks=args.blocks, per_block=args.per_block)
    for name, ts in times.items():
        print(f"{name}: {mmm([t / args.batch for t in ts])} a face (batch {args.batch}, 1 thread)")
    print(f"fp32 / int8: {ratio_text(times['fp32'], times['int8'], args.per_block)}")
    print(load())


if __name__ == "__main__":
    main()
