"""Allegro training throughput (frames per second per epoch) and AOTInductor compile time on this CPU.

Runs nequip directly (no AiiDA) on synthetic Morse-labelled Ca-H frames of 4-8 atoms, for the 'tiny' and 'cpu'
presets, through the same config builder and runner commands as AllegroTrainCalculation; the compile goes through
``runners.compiled_models.compiled_model``, as the MD runner's does (CPU kernels for one thread).
Results: benchmarks/results/training.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from _machine import machine_description
from _nequip import nequip_environment, timed, train

RESULTS = Path(__file__).parent / 'results' / 'training.json'
N_TRAIN, N_VALIDATION = 96, 24
# two runs of different length: their difference is the steady per-epoch cost, free of nequip-train's start-up
SHORT, LONG = 2, 8


def _train(preset: str, epochs: int, frames, workdir: Path, environment: dict) -> float:
    return train(workdir, frames[:N_TRAIN], frames[N_TRAIN:], environment, preset, {'max_epochs': epochs})


def measure(preset: str) -> dict:
    from aiida_polyhydride.analysis.synthetic import synthetic_cah_frames
    from aiida_polyhydride.runners.compiled_models import compiled_model, console_script, file_sha256

    frames = synthetic_cah_frames(n_frames=N_TRAIN + N_VALIDATION, seed=0)
    with tempfile.TemporaryDirectory(prefix=f'bench-{preset}-') as directory:
        root = Path(directory)
        environment = nequip_environment(root)
        short_s = _train(preset, SHORT, frames, root / 'short', environment)
        long_s = _train(preset, LONG, frames, root / 'long', environment)
        workdir = root / 'long'
        package_s = timed(
            workdir, environment, console_script('nequip-package'), 'build', 'checkpoints/best.ckpt', 'm.nequip.zip'
        )
        package = workdir / 'm.nequip.zip'
        started = time.perf_counter()
        compiled_model(package, file_sha256(package), cache=root / 'cache')
        compile_s = time.perf_counter() - started
    epoch_s = (long_s - short_s) / (LONG - SHORT)
    return {
        'preset': preset,
        'n_train_frames': N_TRAIN,
        'seconds_per_epoch': round(epoch_s, 3),
        'train_frames_per_second_per_epoch': round(N_TRAIN / epoch_s, 1),
        'nequip_train_startup_s': round(short_s - SHORT * epoch_s, 1),
        'package_s': round(package_s, 1),
        'compile_s': round(compile_s, 1),
    }


def main() -> None:
    result = {
        'benchmark': 'training',
        'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'machine': f'{machine_description()}, CPU torch',
        'data': f'synthetic Morse Ca-H, 4-8 atoms/frame, {N_TRAIN} train + {N_VALIDATION} validation frames',
        'runs': [measure('tiny'), measure('cpu')],
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + '\n')
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
