"""Reduced-precision variants of an exported FP32 ONNX model, each with its own measured card.

* **INT8**: ONNX Runtime static quantization in QDQ format, calibrated on training images cut
  into tiles exactly as the station cuts them. Convolutions only, symmetric INT8 weights
  (per channel) and activations: the explicit Q/DQ form TensorRT 10/11 builds strongly typed
  engines from, and what ONNX Runtime runs on a CPU. The standardisation, the first and the last
  convolution and the sigmoid stay in float32, where 8 bits would cost most.
* **FP16**: the graph converted to float16 with float32 input and output, so the station feeds
  it exactly what it feeds the FP32 model.

Each variant is compared with the FP32 model on the validation split: probability agreement,
accuracy at the card's operating point, and CPU speed. Each card gets its own golden self-test
(engines.selftest): the variant's own output on a defective validation tile, with the tolerance
of its precision.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engines import load_engine
from engines.card import ModelCard, card_path_for
from engines.selftest import record_golden
from training.data import find_samples, load_split
from training.data.loaders import DatasetError, Sample, select
from training.evaluate import pixel_metrics, predict_samples
from training.export import golden_frames, real_tiles
from training.progress import Progress

log = logging.getLogger("training")


def _split_for(model: Path, card: ModelCard) -> Path | None:
    candidates = [model.with_suffix(".split.json")]
    if card.training.get("split_file"):
        candidates.append(model.parent / str(card.training["split_file"]))
    return next((p for p in candidates if p.is_file()), None)


class _TileReader:
    """onnxruntime CalibrationDataReader over a stack of tiles, one tile per call."""

    def __init__(self, input_name: str, tiles: NDArray[np.float32]) -> None:
        self.input_name = input_name
        self.tiles = tiles
        self.i = 0

    def get_next(self) -> dict[str, NDArray[np.float32]] | None:
        if self.i >= len(self.tiles):
            return None
        self.i += 1
        return {self.input_name: self.tiles[self.i - 1 : self.i]}

    def rewind(self) -> None:
        self.i = 0


def _edge_convs(path: Path) -> list[str]:
    """The first convolution and the one feeding the sigmoid: kept in float32.

    The head's logits span tens of units and the first conv sees the standardised input with its
    rare extreme values; one symmetric INT8 scale over either range is coarse. Measured on DAGM
    Class1 (validation split): quantizing every conv lit stray pixels on defect-free frames
    (dice_unet_industrial 0.940 vs 0.984 in FP32); keeping these two in float32 gave 0.984 at
    1.4x the FP32 speed. Both are a small share of the compute.
    """

    import onnx

    graph = onnx.load(str(path)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    feeds_sigmoid = {i for n in graph.node if n.op_type == "Sigmoid" for i in n.input}
    keep = [c.name for c in convs if set(c.output) & feeds_sigmoid]
    if convs:
        keep.append(convs[0].name)
    return sorted(set(keep))


def quantize_int8(src: Path, dst: Path, card: ModelCard, calib_tiles: NDArray[np.float32]) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = dst.with_suffix(".prep.onnx")
    try:
        # Shape inference + constant folding first, as ORT's quantization docs recommend.
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(dst),
            _TileReader(card.input_name, calib_tiles),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["Conv"],
            nodes_to_exclude=_edge_convs(prepared),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
    finally:
        prepared.unlink(missing_ok=True)


def convert_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.checker.check_model(half)
    onnx.save(half, str(dst))


def _measure(engine: Any, samples: list[Sample], progress: Progress, card: ModelCard) -> dict:
    probs, masks, labels, ms = predict_samples(engine, samples, progress, "val")
    from engines import scoring

    scores = scoring.image_scores(probs, card.threshold)
    row = scoring.confusion_row(card.threshold, scores >= max(1, card.min_area_px), labels)
    return {
        "probs": probs,
        "metrics": {
            **pixel_metrics(probs, masks, card.threshold),
            "ap": scoring.average_precision(scores, labels) if labels.any() else float("nan"),
            "operating_point": row.as_dict(),
            "ms_per_frame_cpu": ms,
        },
    }


def quantize_model(
    model: str | Path,
    precision: str,
    calib: str | Path,
    out: str | Path,
    *,
    masks: str | Path | None = None,
    calib_images: int = 64,
    progress: Progress | None = None,
) -> dict[str, Any]:
    progress = progress or Progress("none")
    src, dst = Path(model), Path(out)
    if precision not in ("int8", "fp16"):
        raise ValueError(f"precision {precision!r} is not int8 or fp16")
    card = ModelCard.load(card_path_for(src))
    if card.precision != "fp32":
        raise DatasetError(f"{src}: quantize an FP32 model, not a {card.precision} one")
    samples = find_samples(calib, masks)
    split_file = _split_for(src, card)
    split = load_split(split_file) if split_file else None
    train_names = set(split.train) if split else set()
    calib_samples = [s for s in samples if s.name in train_names] or samples
    val = select(samples, split.val) if split else samples[: max(1, len(samples) // 5)]

    dst.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if precision == "int8":
        rng = np.random.default_rng(0)
        order = rng.permutation(len(calib_samples))[:calib_images]
        tiles = real_tiles([calib_samples[i].image_path for i in order], card, limit=calib_images)
        progress.emit("quantize", stage="calibrate", tiles=len(tiles))
        quantize_int8(src, dst, card, tiles)
    else:
        convert_fp16(src, dst)
    log.info("%s written in %.1f s", dst, time.perf_counter() - t0)

    variant_card = card.with_updates(
        name=f"{card.name}-{precision}",
        precision=precision,
        model_id=f"{card.model_id}-{precision}",
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        golden={},  # the FP32 model's golden is not this variant's; its own is recorded below
    )
    if split_file is not None and dst.with_suffix(".split.json") != split_file:
        shutil.copyfile(split_file, dst.with_suffix(".split.json"))
        variant_card = variant_card.with_updates(
            training={**card.training, "split_file": dst.with_suffix(".split.json").name}
        )
    variant_card.save(card_path_for(dst))
    # Its own output and the tolerance measured for this precision (engines.selftest), recorded
    # before the measurements below load it.
    progress.emit("quantize", stage="golden", model=str(dst))
    record_golden(dst, golden_frames(val))
    variant_card = ModelCard.load(card_path_for(dst))

    progress.emit("quantize", stage="measure", images=len(val))
    ref_engine, var_engine = load_engine(src), load_engine(dst)
    ref = _measure(ref_engine, val, progress, card)
    var = _measure(var_engine, val, progress, card)
    ref_engine.close()
    var_engine.close()
    diffs = [np.abs(a - b) for a, b in zip(ref["probs"], var["probs"], strict=True)]
    flips = [
        np.mean((a >= card.threshold) != (b >= card.threshold))
        for a, b in zip(ref["probs"], var["probs"], strict=True)
    ]
    agreement = {
        "reference": f"{src.name} (fp32), validation split, {len(val)} frames",
        "fp32_max_abs_diff": float(max(d.max() for d in diffs)),
        "fp32_mean_abs_diff": float(np.mean([d.mean() for d in diffs])),
        "pixel_decision_flip_rate": float(np.mean(flips)),
        "speedup_vs_fp32_cpu": ref["metrics"]["ms_per_frame_cpu"]
        / max(1e-9, var["metrics"]["ms_per_frame_cpu"]),
    }
    metrics = {**_own_test_metrics(card.metrics, dst, calib, masks, progress)}
    metrics.update(val=var["metrics"], fp32_val=ref["metrics"])
    variant_card = variant_card.with_updates(agreement=agreement, metrics=metrics)
    variant_card.save(card_path_for(dst))
    return {
        "model": str(dst),
        "card": str(card_path_for(dst)),
        "agreement": agreement,
        "val": var["metrics"],
        "fp32_val": ref["metrics"],
    }


def _own_test_metrics(
    source: dict[str, Any],
    dst: Path,
    data: str | Path,
    masks: str | Path | None,
    progress: Progress,
) -> dict[str, Any]:
    """The variant's own figures on the split its source card reports (never the source's: an
    INT8 card once carried its FP32 model's test Dice digit for digit); {} when the source card
    reports none or the split is not recorded beside the variant."""
    from training.evaluate import evaluate_model

    split = source.get("split")
    if split not in ("test", "val") or not dst.with_suffix(".split.json").exists():
        return {}
    with tempfile.TemporaryDirectory() as out:
        report = evaluate_model(
            dst, data, masks=masks, split=split, out_dir=out, progress=progress, examples=0
        )
    return {
        "split": split,
        "split_file": source.get("split_file") and dst.with_suffix(".split.json").name,
        **report["pixel"],
        "ap": report["ap"],
        "operating_point": report["operating_point"],
        "pixel_after_min_area": report["pixel_after_min_area"],
        "ms_per_frame_cpu": report["ms_per_frame"],
    }


def quantize_cli(args: Any, progress: Progress) -> dict[str, Any]:
    return quantize_model(
        args.model,
        args.precision,
        args.calib,
        args.out,
        masks=args.masks,
        calib_images=args.calib_images,
        progress=progress,
    )
