"""Run every benchmarks/bench_*.py (or those named on the command line); each writes benchmarks/results/<name>.json.

make bench                                   # all
.venv/bin/python benchmarks/run.py label_overhead
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(names: list[str]) -> None:
    scripts = sorted(HERE.glob('bench_*.py'))
    if names:
        scripts = [script for script in scripts if script.stem.removeprefix('bench_') in names]
    for script in scripts:
        print(f'== {script.stem}')
        runpy.run_path(str(script), run_name='__main__')


if __name__ == '__main__':
    main(sys.argv[1:])
