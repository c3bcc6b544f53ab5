"""Run the benchmarks of issue 8 and write their tables to benchmarks/RESULTS.md.

`python -m benchmarks` runs all of them at full scale (RESULTS.md); `--quick` (what `make bench`
runs) uses small data and few repetitions, finishes in minutes and writes RESULTS-quick.md; `--only
NAME` runs one and rewrites only its section.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from benchmarks import harness


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen benchmarks, merge their sections into RESULTS.md."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="Benchmarks: " + "; ".join(f"{name} ({title})" for name, title in harness.TITLES.items()),
    )
    harness.add_arguments(parser)
    parser.add_argument(
        "--only",
        action="append",
        choices=list(harness.TITLES),
        metavar="NAME",
        help="run only this one (repeatable)",
    )
    args = parser.parse_args(argv)
    opts = harness.options_from(args)
    names = args.only or [name for name in harness.TITLES if name not in harness.OPT_IN]
    failed: list[str] = []
    for name in names:
        start = time.monotonic()
        print(f"== {harness.TITLES[name]} ({'quick' if opts.quick else 'full'})", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        try:
            section: harness.Section = module.run(opts)
        except Exception:
            # One broken benchmark must not hide the figures of the others; the run still fails.
            traceback.print_exc()
            failed.append(name)
            continue
        harness.write_results({name: section.render()}, opts.output)
        missed = [v.target for v in section.verdicts if not v.met]
        print(f"   done in {time.monotonic() - start:.0f} s; missed: {missed or 'none'}", flush=True)
    print(f"Results in {opts.output}")
    if failed:
        print(f"FAILED to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
