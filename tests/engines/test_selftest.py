"""The golden self-test run at every load, the per-frame output check, and the golden CLI."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import engines
from engines import selftest
from engines.__main__ import main as engines_main
from engines.card import CARD_SCHEMA_VERSION, CardError, ModelCard, card_path_for
from engines.protocol import ModelLoadError

from .conftest import make_conv_model

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
COMMITTED = [
    "demo", "dagm-class1", "dagm-class1-int8", "dagm-class1-fp16", "dagm-class1-fast",
    "dagm-class1-fast-int8",
]  # fmt: skip


def _frame(h: int = 48, w: int = 56) -> np.ndarray:
    """A grey frame with a bright blob: the conv model lights up there."""
    rng = np.random.default_rng(0)
    img = rng.integers(20, 60, size=(h, w), dtype=np.uint8)
    img[20:30, 30:40] = 240
    return img


@pytest.fixture
def golden_conv(tmp_path: Path) -> Path:
    """The conv model with a golden recorded from its own output."""
    path = make_conv_model(tmp_path / "conv.onnx")
    selftest.record_golden(path, [_frame()])
    return path


def _perturb(src: Path, dst: Path, factor: float) -> Path:
    """Copy ``src`` (and its card) to ``dst`` with its largest weight tensor scaled."""
    proto = onnx.load(str(src))
    biggest = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    scaled = numpy_helper.to_array(biggest).astype(np.float32) * np.float32(factor)
    biggest.CopyFrom(numpy_helper.from_array(scaled, biggest.name))
    onnx.save(proto, str(dst))
    shutil.copyfile(card_path_for(src), card_path_for(dst))
    return dst


def _graph_model(path: Path, nodes: list, inits: list, tile: int = 32) -> Path:
    """Write an NHWC float model from ``nodes`` (input ``image``, output ``probability``)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", tile, tile, 1])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", tile, tile, 1])
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _scalar(name: str, value: float) -> onnx.TensorProto:
    return helper.make_tensor(name, TensorProto.FLOAT, [], [value])


# -- output_fault ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0.0, 0.5, 1.0], None),
        ([0.0, 1.0 + 5e-4], None),  # float overshoot of a sigmoid is tolerated
        ([-5e-4, 0.2], None),
        ([0.1, np.nan], "not finite (1 of 2"),
        ([np.inf, 0.1], "not finite"),
        ([0.2, 1.01], "outside the probability range"),
        ([-0.02, 0.5], "outside the probability range"),
        ([], "empty"),
    ],
)
def test_output_fault(values: list[float], expected: str | None) -> None:
    fault = selftest.output_fault(np.asarray(values, np.float32))
    if expected is None:
        assert fault is None
    else:
        assert fault is not None and expected in fault


def test_output_fault_is_exported_by_engines() -> None:
    prob = np.full((4, 4, 1), np.nan, np.float32)
    assert engines.output_fault(prob) is not None


# -- the digest ------------------------------------------------------------------------------


def test_digest_is_a_block_grid_and_summary() -> None:
    prob = np.zeros((64, 64), np.float32)
    prob[:8, :8] = 1.0  # exactly block (0, 0)
    d = selftest.digest(prob[:, :, None])
    assert np.asarray(d["grid"]).shape == (8, 8)
    assert d["grid"][0][0] == 1.0 and sum(map(sum, d["grid"])) == 1.0
    assert d["mean"] == pytest.approx(1 / 64) and d["max"] == 1.0
    assert d["above_half"] == pytest.approx(1 / 64)
    diffs = selftest.compare(d, selftest.digest(np.zeros((64, 64))))
    assert diffs["block"] == 1.0 and diffs["max"] == 1.0


# -- load-time self-test ---------------------------------------------------------------------


def test_a_good_model_passes_and_the_card_keeps_its_golden(golden_conv: Path) -> None:
    card = ModelCard.load(card_path_for(golden_conv))
    assert card.schema_version == CARD_SCHEMA_VERSION == 2
    g = card.golden
    assert g["tolerance"] == selftest.DEFAULT_TOLERANCE["fp32"]
    assert g["output_digest"]["above_half"] > 0.0  # the stored tile shows the blob
    engine = engines.load_engine(golden_conv)
    assert selftest.check_engine(engine, "x") == {
        "block": 0.0,
        "mean": 0.0,
        "max": 0.0,
        "above_half": 0.0,
    }


def test_perturbed_weights_are_refused_with_the_figures(golden_conv: Path, tmp_path: Path) -> None:
    bad = _perturb(golden_conv, tmp_path / "perturbed.onnx", 1.05)
    with pytest.raises(ModelLoadError) as info:
        engines.load_engine(bad)
    message = str(info.value)
    assert message.startswith(str(bad)) and "golden self-test failed" in message
    assert "> tolerance 0.0001" in message and "weights may be corrupt" in message
    assert "block " in message and "above_half " in message  # every figure is reported


def test_a_perturbed_real_model_is_refused(tmp_path: Path) -> None:
    """The demo U-Net with one weight tensor off by 2 %: its committed golden catches it."""
    bad = _perturb(MODELS / "demo.onnx", tmp_path / "demo.onnx", 1.02)
    with pytest.raises(ModelLoadError, match=r"golden self-test failed: .* > tolerance 0\.0001"):
        engines.load_engine(bad)


def test_a_nan_model_is_refused_at_load(tmp_path: Path) -> None:
    path = _graph_model(
        tmp_path / "nan.onnx",
        [helper.make_node("Mul", ["image", "nan"], ["probability"])],
        [_scalar("nan", float("nan"))],
    )
    ModelCard(name="nan", input_height=32, input_width=32).save(card_path_for(path))
    with pytest.raises(ModelLoadError, match="not finite"):
        engines.load_engine(path)


def test_a_model_that_fails_only_on_real_input_is_refused_by_its_golden(
    golden_conv: Path,
) -> None:
    """sqrt(0.5 - x): fine on the blank probe tile, NaN on the golden tile's bright blob."""
    path = _graph_model(  # over the model file; its card (and golden) stay
        golden_conv,
        [
            helper.make_node("Sub", ["half", "image"], ["d"]),
            helper.make_node("Sqrt", ["d"], ["probability"]),
        ],
        [_scalar("half", 0.5)],
    )
    with pytest.raises(ModelLoadError, match="golden self-test failed: model output is not finite"):
        engines.load_engine(path)


def test_output_above_one_is_refused(tmp_path: Path) -> None:
    path = _graph_model(
        tmp_path / "big.onnx",
        [helper.make_node("Add", ["image", "offset"], ["probability"])],  # 1.5..2.5
        [_scalar("offset", 1.5)],
    )
    ModelCard(name="big", input_height=32, input_width=32).save(card_path_for(path))
    with pytest.raises(ModelLoadError, match="outside the probability range"):
        engines.load_engine(path)


def test_a_card_without_golden_loads_with_a_warning(
    mean_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="engines"):
        engine = engines.load_engine(mean_model)
    assert engine.card.golden == {}
    assert any("no golden self-test in card" in r.getMessage() for r in caplog.records)


def _with_mean_shift(golden_conv: Path, tmp_path: Path, shift: float) -> Path:
    path = tmp_path / "edge.onnx"
    shutil.copyfile(golden_conv, path)
    card = ModelCard.load(card_path_for(golden_conv))
    golden = json.loads(json.dumps(card.golden))
    golden["tolerance"] = 1e-3
    golden["output_digest"]["mean"] += shift
    card.with_updates(golden=golden).save(card_path_for(path))
    return path


@pytest.mark.parametrize(("shift", "passes"), [(0.9e-3, True), (-0.9e-3, True), (1.1e-3, False)])
def test_tolerance_edge(golden_conv: Path, tmp_path: Path, shift: float, passes: bool) -> None:
    path = _with_mean_shift(golden_conv, tmp_path, shift)
    if passes:
        engines.load_engine(path).close()
    else:
        with pytest.raises(ModelLoadError, match=r"mean difference 0\.0011 > tolerance 0\.001"):
            engines.load_engine(path)


def test_gpu_backends_get_the_tf32_floor(golden_conv: Path) -> None:
    engine = engines.load_engine(golden_conv)
    golden = selftest.Golden.from_card(engine.card)
    assert golden is not None
    assert selftest.effective_tolerance(golden, engine) == 1e-4

    class OnGpu:
        card = engine.card
        backend = "onnxruntime"
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]

    assert selftest.effective_tolerance(golden, OnGpu()) == selftest.GPU_TOLERANCE_FLOOR  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda g: g.update(input_sha256="0" * 64), "does not match its input_sha256"),
        (lambda g: g.update(input="not base64!"), "not base64"),
        (lambda g: g.pop("output_digest"), "lacks ['output_digest']"),
        (lambda g: g.update(tolerance=0.0), "outside (0, 1)"),
        (lambda g: g.update(tolerance=None), "non-numbers"),
        (lambda g: g["output_digest"].update(grid=[1, 2]), "not a finite 2-D grid"),
    ],
)
def test_a_damaged_golden_is_refused(golden_conv: Path, damage: object, message: str) -> None:
    card = ModelCard.load(card_path_for(golden_conv))
    golden = json.loads(json.dumps(card.golden))
    damage(golden)  # type: ignore[operator]
    card.with_updates(golden=golden).save(card_path_for(golden_conv))
    with pytest.raises(ModelLoadError) as info:
        engines.load_engine(golden_conv)
    assert message in str(info.value)


def test_a_golden_tile_of_another_size_is_refused(golden_conv: Path, tmp_path: Path) -> None:
    card = ModelCard.load(card_path_for(golden_conv))
    small = selftest.encode_tile(np.zeros((16, 16), np.uint8))
    card.with_updates(golden={**card.golden, **small}).save(card_path_for(golden_conv))
    with pytest.raises(ModelLoadError, match="golden tile is 16x16x1, the model takes 32x32x1"):
        engines.load_engine(golden_conv)


# -- card schema -----------------------------------------------------------------------------


def test_a_v1_card_reads_as_v2_without_golden(tmp_path: Path) -> None:
    data = ModelCard(name="old", input_height=32, input_width=32).to_dict()
    data.pop("golden")
    data["schema_version"] = 1
    card = ModelCard.from_dict(data)
    assert card.golden == {} and card.schema_version == 2
    saved = json.loads(card.save(tmp_path / "old.json").read_text())
    assert saved["schema_version"] == 2
    with pytest.raises(CardError, match="newer than this station"):
        ModelCard.from_dict({**data, "schema_version": 3})
    with pytest.raises(CardError, match="not an integer"):
        ModelCard.from_dict({**data, "schema_version": "2"})


# -- recording -------------------------------------------------------------------------------


def test_choose_tile_picks_the_defect(golden_conv: Path) -> None:
    engine = engines.load_engine(golden_conv)
    tile = selftest.choose_tile(engine, _frame(96, 96))
    assert tile.shape == (32, 32) and tile.dtype == np.uint8
    assert (tile == 240).sum() == 100  # the whole 10x10 blob


def test_a_16_bit_frame_gives_a_16_bit_tile(golden_conv: Path) -> None:
    engine = engines.load_engine(golden_conv)
    tile = selftest.choose_tile(engine, _frame().astype(np.uint16) * 257)
    assert tile.dtype == np.uint16 and tile.max() == 240 * 257
    golden = selftest.make_golden(engine, tile)
    decoded = selftest.Golden.from_card(engine.card.with_updates(golden=golden))
    assert decoded is not None and np.array_equal(decoded.tile, tile)


def test_golden_cli_writes_and_rechecks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import cv2

    path = make_conv_model(tmp_path / "m.onnx")
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), _frame())
    assert engines_main(["golden", "--model", str(path), "--input", str(image)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tolerance"] == 1e-4 and summary["tile"] == "32x32 uint8"
    assert ModelCard.load(card_path_for(path)).golden["output_digest"]["mean"] == summary["mean"]
    engines.load_engine(path).close()
    code = engines_main(["golden", "--model", str(path), "--input", str(image), "--tolerance", "2"])
    assert code == 1 and "outside (0, 1)" in capsys.readouterr().err
    code = engines_main(["golden", "--model", str(path), "--input", str(tmp_path / "none.png")])
    assert code == 1 and "none.png: cannot read the image" in capsys.readouterr().err
    (tmp_path / "text.png").write_text("not an image")
    code = engines_main(["golden", "--model", str(path), "--input", str(tmp_path / "text.png")])
    assert code == 1 and "text.png: not a readable image" in capsys.readouterr().err


# -- the committed models --------------------------------------------------------------------


@pytest.mark.parametrize("name", COMMITTED)
def test_committed_models_pass_their_own_golden(name: str) -> None:
    path = MODELS / f"{name}.onnx"
    card = ModelCard.load(card_path_for(path))
    assert card.golden, f"{card_path_for(path).name} has no golden self-test"
    assert card.golden["tolerance"] == max(
        selftest.DEFAULT_TOLERANCE[card.precision],
        selftest.SPREAD_MARGIN * card.golden["kernel_spread"],
    )
    assert card.golden["output_digest"]["above_half"] > 0.01  # a tile with a defect in it
    engine = engines.load_engine(path, threads=1)  # another thread count than recorded with
    engine.close()


# -- the running station ---------------------------------------------------------------------


def test_a_session_keeps_its_engine_when_a_new_model_fails_its_golden(tmp_path: Path) -> None:
    import cv2

    from app.station.inspection import Rules
    from app.station.recipe import Recipe, SourceSettings
    from app.station.session import InspectionSession
    from app.station.settings import Settings
    from tests.tiny_models import sigmoid_model

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "000.png"), _frame(32, 32))
    good = sigmoid_model(tmp_path / "good.onnx", tile=32, model_id="good")
    other = sigmoid_model(tmp_path / "other.onnx", tile=32, model_id="other")
    selftest.record_golden(other, [_frame()])
    broken = _perturb(other, tmp_path / "broken.onnx", 1.05)
    recipe = Recipe(
        name="t",
        model=good,
        rules=Rules(threshold=0.5),
        source=SourceSettings(spec=f"folder:{images}", mode="triggered"),
    )
    settings = Settings.defaults(tmp_path / "data")
    with InspectionSession(recipe, settings=settings) as session:
        with pytest.raises(ModelLoadError, match="golden self-test failed"):
            session.load_model(broken)
        assert session.model_card.model_id == "good"
        assert session.model_path == good.resolve() and session.previous_model_path is None
        assert session.load_model(other).model_id == "other"  # the healthy one swaps in
