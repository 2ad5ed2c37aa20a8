"""End to end: judged frames/s, latency, overhead over the bare engine, peak RSS; the DAGM recipe.

``python -m bench pipeline [--limit 200] [--rounds 1]``

1. *Session* rows: the headless :class:`~app.station.session.InspectionSession` (engine, rules,
   results store with NG archive) on a folder source and on the Viky GenICam simulator
   (``genicam:0``), each in a fresh child process so its peak RSS is its own. Latency is from
   acquisition (``Frame.timestamp``) to the result reaching a subscriber. *Overhead* compares the
   line's frames/s with the bare engine's (``predict_maps`` on the same decoded frames, same
   child): ``1 - line fps / bare fps``. Variants keep the acquisition thread off the inference
   core (``os.sched_setaffinity`` on the thread's native id).
2. *DAGM recipe*: ``inspection-station run --headless --recipe resources/recipes/dagm-class1.toml
   --source folder:DAGM`` over all 575 frames (and with ``--model`` each other DAGM model), with the
   TensorFlow baseline (TinyUNet-16, 512x512, batch 1) measured in the same run, before and after
   the station runs; the ratio is the station's frames/s over the mean of the two TF figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._machine import (
    DAGM_DIR,
    ROOT,
    LoadSampler,
    Machine,
    command_line,
    peak_rss_mb,
    percentile,
    relative,
    write_results,
)

DAGM_RECIPE = ROOT / "resources" / "recipes" / "dagm-class1.toml"
MODELS_DIR = ROOT / "resources" / "models"
# The recipe as committed first, then the same recipe with each other committed DAGM model
# (--model), so the table compares them in one run against one TensorFlow baseline.
# The fast model runs its own recipe (its card's operating point), INT8 variants the recipe of
# their FP32 model (the same operating point).
FAST_RECIPE = ROOT / "resources" / "recipes" / "dagm-class1-fast.toml"
DAGM_RUNS = (
    ("recipe", DAGM_RECIPE, None),
    ("16-filter int8", DAGM_RECIPE, MODELS_DIR / "dagm-class1-int8.onnx"),
    ("8-filter, quarter scale, fp32", FAST_RECIPE, None),
    ("8-filter, quarter scale, int8", FAST_RECIPE, MODELS_DIR / "dagm-class1-fast-int8.onnx"),
)
BARE_FRAMES = 16


# -- child side ------------------------------------------------------------------------------


def _pin(thread_name: str, cpu: int) -> bool:
    for t in threading.enumerate():
        if t.name == thread_name and t.native_id is not None:
            os.sched_setaffinity(t.native_id, {cpu})
            return True
    return False


def _bare_fps(model: Path, images: list[Any]) -> float:
    """Frames/s of ``predict_maps`` alone, one frame per call, about 48 frames."""
    from engines import load_engine, predict_maps

    engine = load_engine(model)
    try:
        predict_maps(engine, images[:1])
        reps = max(1, 48 // len(images))
        t0 = time.perf_counter()
        for _ in range(reps):
            for img in images:
                predict_maps(engine, [img], max_batch=1)
        return reps * len(images) / (time.perf_counter() - t0)
    finally:
        engine.close()


def session_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """One headless session run; returns its figures (printed as JSON by the child)."""
    from app.station.headless import prepare_recipe
    from app.station.session import InspectionSession
    from app.station.settings import Settings

    home = Path(cfg.get("home") or tempfile.mkdtemp(prefix="bench-pipe-"))
    settings = Settings.defaults(home)
    recipe, offline = prepare_recipe(
        Path(cfg["recipe"]), source=cfg["source"], model=None, limit=cfg["limit"], settings=settings
    )
    if cfg.get("fps"):  # a paced camera: latency below saturation, not throughput
        from dataclasses import replace

        recipe = replace(recipe, source=replace(recipe.source, fps=float(cfg["fps"])))
    latencies: list[float] = []
    arrivals: list[float] = []
    kept: list[Any] = []
    stages: dict[str, list[float]] = {}

    def on_event(event: str, payload: Any) -> None:
        if event != "result":
            return
        now = time.time()
        arrivals.append(time.perf_counter())
        latencies.append((now - payload.frame.timestamp) * 1000.0)
        for k, v in payload.inspection.timings_ms.items():
            stages.setdefault(k, []).append(float(v))
        if len(kept) < BARE_FRAMES and payload.frame.readable:
            kept.append(payload.frame.image)

    before = None
    if cfg["source"].startswith("folder:"):
        from app.station.sources.folder import list_images
        from app.station.sources.imageio import read_image

        paths = list_images(Path(cfg["source"].split(":", 1)[1]))[:BARE_FRAMES]
        before = _bare_fps(recipe.model, [read_image(p) for p in paths])
    session = InspectionSession(recipe, settings=settings)
    session.subscribe(on_event)
    pinned = []
    cpus = sorted(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    session.start(limit=cfg["limit"], backpressure=offline)
    if cfg.get("pin") and len(cpus) > 1:
        # acquisition on the last CPU; with pin == "both" the inference worker on the first
        pinned.append(("station-acquire", _pin("station-acquire", cpus[-1])))
        if cfg["pin"] == "both":
            pinned.append(("station-infer", _pin("station-infer", cpus[0])))
    session.wait(cfg.get("timeout", 900))
    elapsed = time.perf_counter() - t0
    session.stop()
    session.close()
    st = session.stats()
    rss = peak_rss_mb()  # before the bare run after the line (the one before it is included)
    n = len(latencies)
    # steady state: from the first result on (model warm-up and source opening are not the line)
    fps = (n - 1) / (arrivals[-1] - arrivals[0]) if n > 1 and arrivals[-1] > arrivals[0] else 0.0
    steady = latencies[1:] or latencies
    # the bare engine on the frames the line judged, in this process, after the line (and before
    # it for a folder): load drifts on a shared machine, so the line sits between two bare runs
    bare = [_bare_fps(recipe.model, kept)] if kept else []
    if before is not None:
        bare.append(before)
    bare_fps = sum(bare) / len(bare) if bare else float("nan")
    return {
        "judged": n,
        "acquired": st.acquired,
        "dropped": st.dropped,
        "errors": st.errors,
        "ng": st.ng,
        "stored": st.stored,
        "lost": st.lost,
        "elapsed_s": elapsed,
        "fps": fps,
        "latency_ms": {"p50": percentile(steady, 50), "p99": percentile(steady, 99)},
        "stage_ms_mean": {k: sum(v) / len(v) for k, v in stages.items()},
        "frame_shape": list(kept[0].shape) if kept else None,
        "bare_fps": bare_fps,
        "bare_fps_runs": bare,
        "overhead": 1.0 - fps / bare_fps if kept and bare_fps > 0 else None,
        "peak_rss_mb": rss,
        "pinned": pinned,
        "ort_threads": os.environ.get("INSPECTION_ORT_THREADS", "default"),
    }


def tf_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """TensorFlow baseline: TinyUNet-16 (random weights) on 512x512 frames, batch 1."""
    from bench._variants import RandomNets
    from bench.engines_table import frames_for
    from engines import predict_maps

    engine = RandomNets(None).tf_engine(16, 512)
    frames = frames_for(512, 4)
    predict_maps(engine, frames[:1], max_batch=1)
    n, t0 = 0, time.perf_counter()
    while n < cfg.get("frames", 20) or time.perf_counter() - t0 < cfg.get("seconds", 5.0):
        predict_maps(engine, [frames[n % 4]], max_batch=1)
        n += 1
    elapsed = time.perf_counter() - t0
    return {"frames": n, "fps": n / elapsed, "ms_per_frame": 1000.0 * elapsed / n,
            "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def _child_main(raw: str) -> int:
    cfg = json.loads(raw)
    kind = cfg["kind"]
    try:
        out = session_child(cfg) if kind == "session" else tf_child(cfg)
    except Exception as exc:  # reported as the row's reason; the parent keeps going
        out = {
            "skip": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        }
    print("BENCH-RESULT " + json.dumps(out, default=str), flush=True)
    return 0


# -- parent side -----------------------------------------------------------------------------


def _env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", QT_QPA_PLATFORM="offscreen")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if threads:
        env["INSPECTION_ORT_THREADS"] = str(threads)
    return env


def run_child(cfg: dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.pipeline_e2e", "--child", json.dumps(cfg)],
        capture_output=True, text=True, env=_env(threads), cwd=ROOT, timeout=1800,
    )  # fmt: skip
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return dict(json.loads(line.removeprefix("BENCH-RESULT ")))
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"skip": f"child exited {proc.returncode}: {tail}"}


def run_cli(source: str, model: Path | None = None, recipe: Path = DAGM_RECIPE) -> dict[str, Any]:
    """``inspection-station run --headless`` with a DAGM recipe; summary line + peak RSS."""
    exe = Path(sys.executable).with_name("inspection-station")
    home = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    cmd = [str(exe), "run", "--headless", "--recipe", str(recipe), "--source", source,
           "--db", str(home / "results.sqlite3")]  # fmt: skip
    if model is not None:
        cmd += ["--model", str(model)]
    env = _env(None)
    env["INSPECTION_STATION_HOME"] = str(home)
    with open(home / "stdout.jsonl", "w") as out, open(home / "stderr.log", "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    lines = (home / "stdout.jsonl").read_text().splitlines()
    summary = json.loads(lines[-1]) if lines else {}
    if not summary.get("summary"):
        tail = ((home / "stderr.log").read_text().strip().splitlines() or ["no output"])[-1]
        return {"skip": f"exit {proc.returncode}: {tail}"}
    shown = ["inspection-station", *cmd[1:7], *cmd[9:]]  # without the temporary --db
    return {
        "command": " ".join(relative(c) if c.startswith("/") else c for c in shown),
        "exit": proc.returncode,
        **{k: summary.get(k) for k in ("acquired", "judged", "pass", "ng", "error", "dropped", "lost", "fps", "elapsed_s", "model")},
        "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),
    }  # fmt: skip


def session_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    dagm = Path(args.data).is_dir()
    recipe = DAGM_RECIPE if dagm else ROOT / "resources" / "recipes" / "demo.toml"
    folder = f"folder:{args.data}" if dagm else f"folder:{ROOT / 'resources' / 'samples'}"
    plan = [
        ("folder", folder, None, None),
        ("folder, acquisition pinned", folder, "acquire", None),
        ("folder, 1 ORT thread, acquisition and inference pinned apart", folder, "both", 1),
        ("genicam:0 (Viky), free-run", "genicam:0", None, None),
        (f"genicam:0 (Viky), paced at {args.camera_fps:g} fps", "genicam:0", None, None),
    ]
    rows = []
    for _ in range(args.rounds):
        for name, src, pin, threads in plan:
            cfg = {"kind": "session", "recipe": str(recipe), "source": src, "limit": args.limit,
                   "pin": pin, "fps": args.camera_fps if "paced" in name else None}  # fmt: skip
            print(f"pipeline: {name}", file=sys.stderr)
            rows.append({"name": name, "source": relative(src.split(":", 1)[1]) if src.startswith("folder:") else src,
                         "recipe": relative(recipe), **run_child(cfg, threads)})  # fmt: skip
    return rows


def dagm_rows(args: argparse.Namespace) -> dict[str, Any]:
    if not Path(args.data).is_dir():
        return {"skip": f"{args.data} absent: the DAGM end-to-end run needs the 575 frames"}
    source = f"folder:{args.data}"
    tf_before = run_child({"kind": "tf", "seconds": args.tf_seconds})
    runs: dict[str, dict[str, Any]] = {}
    for name, recipe, model in DAGM_RUNS:
        missing = [p for p in (recipe, model) if p is not None and not p.is_file()]
        if missing:
            runs[name] = {"skip": f"{relative(str(missing[0]))} not there"}
            continue
        print(f"pipeline: DAGM recipe, {name}", file=sys.stderr)
        runs[name] = run_cli(source, model, recipe)
    tf_after = run_child({"kind": "tf", "seconds": args.tf_seconds})
    tf = [r["fps"] for r in (tf_before, tf_after) if "fps" in r]
    tf_fps = sum(tf) / len(tf) if tf else None
    for row in runs.values():
        if "fps" in row and tf_fps:
            row["vs_tf"] = row["fps"] / tf_fps
    return {"tf_before": tf_before, "tf_after": tf_after, "tf_fps": tf_fps, "runs": runs}


def render(machine: Machine, rows: list[dict[str, Any]], dagm: dict[str, Any]) -> str:
    lines = machine.header("Pipeline end to end: frames/s, latency, overhead, memory")
    lines += [
        "Headless `InspectionSession` (engine, rules, results store + NG archive), one fresh "
        "child process per row. *bare* = `predict_maps` alone on the same frames in the same "
        "child (mean of a run before the line, for a folder, and one after); *overhead* = 1 - line / bare. "
        "The free-running Viky simulator makes frames as fast as it can on the same 2 cores (hence "
        "its drops); the paced row shows latency below saturation. Frames/s and latency (acquisition to result "
        "delivered) from the first result on: model warm-up is not the line's speed.",
        "",
        "| configuration | source | frame | judged | dropped | frames / s | bare frames / s | "
        "overhead | p50 ms | p99 ms | peak RSS MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "skip" in r:
            lines.append(f"| {r['name']} | {r['source']} | skipped: {r['skip']} |||||||||")
            continue
        paced = "paced" in r["name"]  # capped by the camera: overhead says nothing
        ov = "n/a" if r["overhead"] is None or paced else f"{100 * r['overhead']:.0f} %"
        shape = "x".join(map(str, r["frame_shape"] or []))
        lines.append(
            f"| {r['name']} | {r['source']} | {shape} | {r['judged']} | {r['dropped']} | "
            f"{r['fps']:.1f} | {r['bare_fps']:.1f} | {ov} | {r['latency_ms']['p50']:.0f} | "
            f"{r['latency_ms']['p99']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    lines += ["", "## DAGM Class1 recipe end to end (575 frames) vs the TensorFlow baseline", ""]
    if "skip" in dagm:
        lines.append(f"Skipped: {dagm['skip']}")
        return "\n".join(lines) + "\n"
    tf = [dagm["tf_before"], dagm["tf_after"]]
    tf_txt = ", ".join(f"{t['fps']:.2f}" if "fps" in t else f"skipped ({t['skip']})" for t in tf)
    lines += [
        f"TensorFlow-CPU TinyUNet-16 at 512x512, batch 1, before / after the station runs: "
        f"{tf_txt} frames/s (mean {dagm['tf_fps'] or float('nan'):.2f}).",
        "",
        "| run | model | judged | NG | error | frames / s | vs TF | peak RSS MB | command |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in dagm["runs"].items():
        if "skip" in r:
            lines.append(f"| {name} | skipped: {r['skip']} ||||||||")
            continue
        vs = f"{r['vs_tf']:.1f}x" if r.get("vs_tf") else "n/a"
        lines.append(
            f"| {name} | {r['model']} | {r['judged']} | {r['ng']} | {r['error']} | "
            f"{r['fps']:.1f} | {vs} | {r['peak_rss_mb']:.0f} | `{r['command']}` |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench pipeline", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--limit", type=int, default=200, help="frames per session row")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data", default=str(DAGM_DIR), help="DAGM Class1 folder")
    parser.add_argument("--camera-fps", type=float, default=10.0, help="the paced camera row")
    parser.add_argument("--tf-seconds", type=float, default=8.0)
    parser.add_argument("--no-dagm", action="store_true", help="skip the 575-frame recipe runs")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--stem", default="pipeline_e2e")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child_main(args.child)
    machine = Machine(command_line("pipeline", argv))
    sampler = LoadSampler()
    try:
        rows = session_rows(args)
        dagm = {"skip": "--no-dagm"} if args.no_dagm else dagm_rows(args)
    finally:
        machine.load = sampler.stop()
    report = render(machine, rows, dagm)
    path = write_results(
        args.stem, report, {"machine": machine.as_dict(), "rows": rows, "dagm": dagm}, args.out_dir
    )
    print(report)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
