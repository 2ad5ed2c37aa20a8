"""Export a trained network to ONNX, verify it against Keras on real images, write its card.

tf2onnx 1.17's ``from_keras`` predates Keras 3, so the network is wrapped in a ``tf.function``
with a fixed ``[None, H, W, C]`` signature and converted with ``from_function``; the graph's
input and output are then renamed to the card's names (``image`` / ``probability``). The batch
axis stays dynamic, the opset is pinned.

Verification (:mod:`training.export_verify`) judges what the station decides: per-pixel
agreement on real tiles within a bound that fits float32 convolutions on two kernels, and
identical verdicts and defect blobs on real frames, at the card's operating point and again at
the one evaluation adopts. An export that fails is deleted and the command fails with the
figures (also in ``RUN/export-verification.json``) and the command that exports anyway
(``--force``, recorded in the card); the run's checkpoints are never touched.
The card gets a golden self-test (engines.selftest) recorded from ONNX Runtime's output on a
tile of a defective validation frame, which every later load of the model re-checks.

A multi-class run exports two outputs (see :mod:`training.model`): ``probability`` N x H x W x 1
(1 - p(background), read by every one-class path unchanged) and ``class_probability``
N x H x W x K; both are verified against Keras, and the card lists ``class_names``,
``class_colors`` and ``class_output_name``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engines.card import CLASS_OUTPUT_NAME, DEFAULT_CLASS_COLORS, ModelCard, card_path_for
from engines.protocol import ModelLoadError
from engines.selftest import record_golden
from engines.tiling import extract_tiles, tile_grid
from training.data import find_samples, load_split
from training.data.loaders import Sample, read_image, select
from training.export_verify import (
    DEFAULT_FLIP_RATE,
    DEFAULT_MEAN_TOLERANCE,
    DEFAULT_TOLERANCE,
    ExportError,
    VerificationError,
    compare_decisions,
    frame_maps,
    pixel_agreement,
)
from training.progress import Progress

log = logging.getLogger("training")

DEFAULT_OPSET = 17
VERIFY_FRAMES = 16  # validation frames whose decisions are compared (defective ones first)
REPORT_NAME = "export-verification.json"

__all__ = [
    "DEFAULT_FLIP_RATE",
    "DEFAULT_MEAN_TOLERANCE",
    "DEFAULT_TOLERANCE",
    "ExportError",
    "VerificationError",
    "export_run",
    "verify",
]


def _rename_io(model_proto: Any, input_name: str, output_names: list[str]) -> None:
    graph = model_proto.graph
    renames = {graph.input[0].name: input_name}
    renames.update({o.name: n for o, n in zip(graph.output, output_names, strict=True)})
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    graph.input[0].name = input_name
    for value, name in zip(graph.output, output_names, strict=True):
        value.name = name
    for value in (graph.input[0], *graph.output):  # a readable name for the dynamic batch axis
        value.type.tensor_type.shape.dim[0].dim_param = "batch"


def keras_outputs(
    model: Any, batch: NDArray[np.float32], classes: int = 1, class_head: str = "softmax"
) -> list[NDArray[np.float32]]:
    """What the exported graph must return for ``batch``: ``[probability]`` or
    ``[probability, class_probability]`` (computed from the Keras model's scores)."""
    from training.model import split_scores

    scores = np.asarray(model(batch, training=False), np.float32)
    defect, share = split_scores(scores, classes, class_head)  # type: ignore[arg-type]  # str; split_scores refuses others
    outs = [np.asarray(defect, np.float32)]
    return outs if share is None else [*outs, np.asarray(share, np.float32)]


def convert(
    model: Any,
    path: str | Path,
    *,
    input_shape: tuple[int, int, int],
    opset: int = DEFAULT_OPSET,
    input_name: str = "image",
    output_name: str = "probability",
    classes: int = 1,
    class_head: str = "softmax",
    class_output_name: str = CLASS_OUTPUT_NAME,
) -> Path:
    """Write ``model`` as ONNX with input ``input_name`` ``[N, H, W, C]`` float32; a model of
    ``classes`` >= 2 gets the second output ``class_output_name`` (module docstring)."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    from training.model import split_scores

    spec = (tf.TensorSpec((None, *input_shape), tf.float32, name=input_name),)
    names = [output_name] if classes <= 1 else [output_name, class_output_name]

    @tf.function(input_signature=spec)
    def serve(image: Any) -> Any:
        scores = model(image, training=False)
        if classes <= 1:
            return scores
        return split_scores(scores, classes, class_head)  # type: ignore[arg-type]  # str; split_scores refuses others

    model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset)
    if len(model_proto.graph.input) != 1 or len(model_proto.graph.output) != len(names):
        raise ExportError(
            f"the converted graph does not have exactly one input and {len(names)} output(s)"
        )
    _rename_io(model_proto, input_name, names)
    model_proto.producer_name = "inspection-station training"
    onnx.checker.check_model(model_proto)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model_proto, str(path))
    return path


def onnx_runner(path: str | Path) -> Any:
    """``batch -> every output of the ONNX graph``, in the graph's order (one session)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        return [np.asarray(o, np.float32) for o in session.run(None, {name: batch})]

    return run


def onnx_outputs(path: str | Path, batch: NDArray[np.float32]) -> list[NDArray[np.float32]]:
    """Every output of the ONNX graph for ``batch``, in the graph's order."""
    return onnx_runner(path)(batch)


def onnx_predict(path: str | Path, batch: NDArray[np.float32]) -> NDArray[np.float32]:
    return onnx_outputs(path, batch)[0]


def verify(
    path: str | Path,
    model: Any,
    batch: NDArray[np.float32],
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    mean_tolerance: float = DEFAULT_MEAN_TOLERANCE,
    classes: int = 1,
    class_head: str = "softmax",
) -> dict[str, Any]:
    """Compare ONNX Runtime with Keras on ``batch`` pixel by pixel (every output; a multi-class
    model's class probabilities too); raise :class:`VerificationError` beyond the limits."""
    expected = keras_outputs(model, batch, classes, class_head)
    try:
        figures, problems = pixel_agreement(
            onnx_outputs(path, batch), expected, tolerance, mean_tolerance
        )
    except ExportError as exc:
        raise ExportError(f"{path}: {exc}") from None
    if problems:
        raise VerificationError(f"{path}: {'; '.join(problems)}", figures)
    return figures


def real_tiles(image_paths: list[Path], card: ModelCard, limit: int = 16) -> NDArray[np.float32]:
    """Model-input tiles cut from real frames exactly as the station cuts them."""
    from engines.predict import default_overlap
    from engines.preprocess import to_model_input

    th, tw = card.input_height, card.input_width
    tiles: list[NDArray[np.float32]] = []
    for p in image_paths:
        x = to_model_input(read_image(p), card)
        positions = tile_grid(x.shape[0], x.shape[1], th, tw, default_overlap(th, tw))
        tiles.extend(extract_tiles(x, positions, th, tw))
        if len(tiles) >= limit:
            break
    return np.stack(tiles[:limit]).astype(np.float32)


def golden_frames(samples: list[Sample], limit: int = 4) -> list[NDArray]:
    """Frames to record a card's golden self-test from: defective ones first (a tile the model
    sees a defect in exercises the whole network, a blank one barely does)."""
    ordered = [s for s in samples if s.defective] + [s for s in samples if not s.defective]
    return [read_image(s.image_path) for s in ordered[:limit]]


def load_run(run: str | Path) -> tuple[dict[str, Any], Any]:
    """The run's config and its best checkpoint as a float32 Keras model.

    A mixed-precision checkpoint is rebuilt in float32 and its weights copied, so the exported
    graph (and the FP32 card) is float32 whatever the training policy was.
    """
    import keras

    import training.losses  # noqa: F401  (registers the custom objects for loading)
    from training.model import build_model

    run = Path(run)
    config_path = run / "config.json"
    if not config_path.is_file():
        raise ExportError(f"{run}: not a run directory (no config.json)")
    cfg = json.loads(config_path.read_text(encoding="utf-8"))
    ckpt = run / "checkpoints" / "best.keras"
    if not ckpt.is_file():
        raise ExportError(f"{ckpt}: no best checkpoint (did training run an epoch?)")
    keras.mixed_precision.set_global_policy("float32")
    trained = keras.models.load_model(ckpt, compile=False)
    model = build_model(
        cfg["architecture"],
        channels=cfg["channels"],
        base_filters=cfg["base_filters"],
        weight_decay=0.0,
        classes=len(cfg.get("class_names") or [None]),
        class_head=cfg.get("class_head", "softmax"),
    )
    model.set_weights(trained.get_weights())
    return cfg, model


def base_card(cfg: dict[str, Any], run: Path, name: str, summary: dict[str, Any]) -> ModelCard:
    training: dict[str, Any] = {
        "run_id": run.name,
        "data": cfg["data"],
        "frame_scale": cfg["frame_scale"],
        "seed": cfg["seed"],
        "epochs": cfg["epochs"],
        "image_size": cfg["image_size"],
        "crop_size": cfg.get("crop_size") or cfg["image_size"],
        "batch_size": cfg["batch_size"],
        "learning_rate": cfg["learning_rate"],
        "base_filters": cfg["base_filters"],
        "epochs_run": summary.get("epoch"),
        "best_epoch": summary.get("best_epoch"),
        "best_val_dice": summary.get("best_val_dice"),
        "training_time_s": round(float(summary.get("elapsed_s", 0.0)), 1),
        "amp": cfg["amp"],
        "xla": cfg["xla"],
    }
    total = training["training_time_s"]
    if cfg.get("init_from"):
        # A fine-tuned run: its starting weights came from another run, whose time counts too.
        parent = Path(cfg["init_from"]).parent.parent
        parent_state = parent / "state.json"
        before = 0.0
        if parent_state.is_file():
            before = float(json.loads(parent_state.read_text(encoding="utf-8")).get("elapsed_s", 0))
        training["init_from"] = {"run_id": parent.name, "training_time_s": round(before, 1)}
        total += round(before, 1)
    training["total_training_time_s"] = round(total, 1)
    arch = cfg["architecture"]
    arch_name = f"tinyunet-f{cfg['base_filters']}" if arch == "tinyunet" else arch
    names = tuple(cfg.get("class_names") or ("defect",))
    multi = len(names) > 1
    if multi:
        training["class_head"] = cfg.get("class_head", "softmax")
    return ModelCard(
        class_names=names,
        class_colors=tuple(
            DEFAULT_CLASS_COLORS[i % len(DEFAULT_CLASS_COLORS)] for i in range(len(names))
        )
        if multi
        else (),
        class_output_name=CLASS_OUTPUT_NAME if multi else "",
        name=name,
        input_height=cfg["image_size"],
        input_width=cfg["image_size"],
        channels=cfg["channels"],
        frame_scale=cfg["frame_scale"],
        architecture=arch_name,
        model_id=f"{name}@{run.name}",
        training=training,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def _refusal(out: Path, run: Path, problems: list[str], figures: dict[str, Any]) -> str:
    """One line: what differs, the other figures, where the checkpoints are, how to export
    anyway."""
    said = "; ".join(problems)
    px = figures["pixel"]
    dec = figures.get("decisions_at_operating_point") or figures.get("decisions") or {}
    also = []
    if "max |Δ|" not in said:
        also.append(
            f"max |Δ| {px['keras_max_abs_diff']:.3g}, mean |Δ| {px['keras_mean_abs_diff']:.3g} "
            f"on {px['tiles']} tiles"
        )
    if dec and "pixels flip" not in said:
        also.append(
            f"{dec['pixels_flipped']} of {dec['pixels']} pixels flip at threshold "
            f"{dec['threshold']:g}"
        )
    if dec and "verdict differs" not in said:
        also.append(f"verdict differs on {len(dec['verdicts_differ'])} of {dec['frames']} frames")
    return (
        f"{out}: not exported, the ONNX model does not decide as the trained model: {said} "
        f"({'; '.join(also)}; report {run / REPORT_NAME}). The checkpoints stay in "
        f"{run / 'checkpoints'}; to export anyway: python -m training export --run {run} "
        f"--out {out} --force"
    )


def _verification_frames(val: list[Sample], samples: list[Sample]) -> list[Sample]:
    chosen = val or samples
    ordered = [s for s in chosen if s.defective] + [s for s in chosen if not s.defective]
    return ordered[:VERIFY_FRAMES]


def _settle(
    out: Path,
    run: Path,
    figures: dict[str, Any],
    problems: list[str],
    force: bool,
    beside: tuple[Path, ...] = (),
) -> None:
    """Write the verification report; refuse (delete ``out`` and ``beside``) unless forced."""
    report = {**figures, "passed": not problems, "problems": problems, "forced": force}
    (run / REPORT_NAME).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if not problems:
        return
    message = _refusal(out, run, problems, figures)
    if force:
        log.warning("verification overridden by --force: %s", "; ".join(problems))
        return
    for path in (out, *beside):
        path.unlink(missing_ok=True)
    raise VerificationError(message, figures)


def export_run(
    run: str | Path,
    out: str | Path,
    *,
    name: str | None = None,
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    mean_tolerance: float = DEFAULT_MEAN_TOLERANCE,
    flip_rate: float = DEFAULT_FLIP_RATE,
    force: bool = False,
    evaluate: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Export ``run``'s best checkpoint to ``out`` (+ card, split, report); see module doc.

    ``force`` keeps a model that fails verification (not one that is broken: wrong outputs or
    non-finite values); its card records that verification was overridden and why.
    """
    progress = progress or Progress("none")
    run, out = Path(run), Path(out)
    if out.suffix.lower() != ".onnx":
        raise ExportError(f"{out}: the output must be an .onnx file")
    cfg, model = load_run(run)
    state_path = run / "state.json"
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    card = base_card(cfg, run, name or out.stem, state)

    split = load_split(run / "split.json")
    samples = find_samples(cfg["data"], cfg.get("masks"), layout=cfg.get("layout", "auto"))
    val = select(samples, split.val)
    progress.emit("export", stage="convert", model=str(out))
    k, head = len(card.class_names), cfg.get("class_head", "softmax")
    convert(model, out, input_shape=card.input_shape, opset=opset, classes=k, class_head=head)
    progress.emit("export", stage="verify", model=str(out))
    batch = real_tiles([s.image_path for s in val], card)
    chosen = _verification_frames(val, samples)
    try:
        run_onnx = onnx_runner(out)
        pixel, problems = pixel_agreement(
            run_onnx(batch), keras_outputs(model, batch, k, head), tolerance, mean_tolerance
        )
        frames = [read_image(s.image_path) for s in chosen]
        k_maps = frame_maps(card, lambda b: keras_outputs(model, b, k, head), frames)
        o_maps = frame_maps(card, run_onnx, frames)
        names = [s.name for s in chosen]
        decisions, more = compare_decisions(
            k_maps, o_maps, card.threshold, card.min_area_px, names, flip_rate, tolerance
        )
    except ExportError as exc:  # a broken conversion: no --force for that
        out.unlink(missing_ok=True)
        raise ExportError(f"{out}: {exc}") from None
    figures: dict[str, Any] = {"pixel": pixel, "decisions": decisions}
    problems += more
    _settle(out, run, figures, problems, force)
    log.info(
        "export %s verified: max |Δ| %.3g, %d pixels flip, %d verdicts differ",
        out, pixel["keras_max_abs_diff"], decisions["pixels_flipped"],
        len(decisions["verdicts_differ"]),
    )  # fmt: skip
    agreement = {
        **pixel,
        "reference": "keras fp32",
        "frames": decisions["frames"],
        "pixels_flipped": decisions["pixels_flipped"],
        "verdicts_differ": len(decisions["verdicts_differ"]),
        "verification": "overridden" if problems else "passed",
    }
    if problems:
        agreement["override_reason"] = "; ".join(problems)

    # The split travels with the model (names only), so `evaluate --split test` re-measures it.
    split_copy = out.with_suffix(".split.json")
    if split_copy.resolve() != (run / "split.json").resolve():
        shutil.copyfile(run / "split.json", split_copy)
    training = {**card.training, "split_file": split_copy.name, "opset": opset}
    card = card.with_updates(training=training, agreement=agreement)
    card.save(card_path_for(out))
    progress.emit("export", stage="golden", model=str(out))
    try:
        golden = record_golden(out, golden_frames(val or samples))
    except (ModelLoadError, ValueError) as exc:
        out.unlink(missing_ok=True)
        card_path_for(out).unlink(missing_ok=True)
        raise ExportError(f"{out}: cannot record its golden self-test: {exc}") from None
    log.info("golden self-test recorded: tolerance %g", golden["tolerance"])
    result: dict[str, Any] = {"model": str(out), "card": str(card_path_for(out))}
    if evaluate:
        from training.evaluate import evaluate_model

        progress.emit("export", stage="evaluate", model=str(out))
        report = evaluate_model(
            out,
            cfg["data"],
            masks=cfg.get("masks"),
            split="test",
            out_dir=run / "report",
            progress=progress,
            adopt_operating_point=True,
            layout=cfg.get("layout", "auto"),
        )
        report_copy = out.with_name(out.stem + "-report.json")
        shutil.copyfile(run / "report" / "report.json", report_copy)
        # The operating point evaluation adopted is what the station will use: judge it too.
        card = ModelCard.load(card_path_for(out))
        at_op, more = compare_decisions(
            k_maps, o_maps, card.threshold, card.min_area_px, names, flip_rate, tolerance
        )
        figures["decisions_at_operating_point"] = at_op
        own = split_copy.resolve() != (run / "split.json").resolve()
        beside = (card_path_for(out), report_copy, *((split_copy,) if own else ()))
        _settle(out, run, figures, problems + more, force, beside)
        if more:  # forced: the card says so
            reason = "; ".join(problems + more)
            agreement = {**agreement, "verification": "overridden", "override_reason": reason}
        agreement["pixels_flipped_at_operating_point"] = at_op["pixels_flipped"]
        card.with_updates(agreement=agreement).save(card_path_for(out))
        result.update(report=str(report_copy), metrics=report["pixel"], ap=report["ap"])
    result["verification"] = agreement["verification"]
    return result
