"""``python -m bench engines|pipeline|scaling|gui|routes ...``: benchmarks that write bench/results.

Each subcommand writes ``bench/results/<name>.md`` and ``.json`` with the command, CPU model and
flags, versions, date and the load average during the run (figures from a loaded machine are
marked preliminary). ``python -m bench SUB --help`` lists a subcommand's options.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "engines": ("bench.engines_table", "speed and accuracy of every model variant and backend"),
    "pipeline": ("bench.pipeline_e2e", "end-to-end frames/s, latency, overhead, RSS; DAGM recipe"),
    "scaling": ("bench.scaling", "frames/s and peak memory for 512 .. 4096 px frames (tiled)"),
    "gui": ("bench.gui_stall", "longest GUI-thread stall and redraw rate at full line speed"),
    "routes": ("bench.ort_routes", "ONNX Runtime settings: threads, sessions, spinning, arena"),
}


def usage() -> str:
    lines = ["usage: python -m bench {" + ",".join(SUBCOMMANDS) + "} [options]", ""]
    lines += [f"  {name:<9} {what}" for name, (_, what) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"unknown benchmark {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
