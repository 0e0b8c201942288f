"""Compute-node runner of AllegroTrainCalculation: nequip-train, then nequip-package; writes result.json.

Runs in the calculation's working directory as ``python -m aiida_polyhydride.runners.train`` with the environment's
Python (no aiida import). When ``checkpoints/last.ckpt`` is present (copied from an interrupted run), training
resumes from it.
Exit status 0 means a packaged model exists; result.json says what happened in every case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from .compiled_models import console_script

BEST, LAST, PACKAGE, RESULT = 'checkpoints/best.ckpt', 'checkpoints/last.ckpt', 'model.nequip.zip', 'result.json'


def _write(result: dict) -> None:
    Path(RESULT).write_text(json.dumps(result, indent=2) + '\n')


def main() -> int:
    workdir = Path.cwd()
    # AOTInductor/torch scratch stays in the job's folder, never in a shared /tmp
    for name, folder in (('TMPDIR', 'tmp'), ('TORCHINDUCTOR_CACHE_DIR', 'inductor_cache')):
        (workdir / folder).mkdir(exist_ok=True)
        os.environ[name] = str(workdir / folder)
    resumed = Path(LAST).is_file()
    command = [console_script('nequip-train'), '-cp', str(workdir), '-cn', 'config']
    if resumed:
        command.append(f'++ckpt_path={LAST}')
    result: dict = {
        'resumed': resumed,
        'versions': {name: version(name) for name in ('nequip', 'nequip-allegro', 'torch')},
    }
    train = subprocess.run(command, check=False)
    result['train_returncode'] = train.returncode
    if train.returncode != 0:
        result['status'] = 'train_failed'
        _write(result)
        return 1
    if not Path(BEST).is_file():
        result['status'] = 'no_checkpoint'
        _write(result)
        return 2
    package = subprocess.run([console_script('nequip-package'), 'build', BEST, PACKAGE], check=False)
    result['package_returncode'] = package.returncode
    if package.returncode != 0 or not Path(PACKAGE).is_file():
        result['status'] = 'package_failed'
        _write(result)
        return 3
    result['status'] = 'ok'
    _write(result)
    return 0


if __name__ == '__main__':
    sys.exit(main())
