"""Allegro training throughput (frames per second per epoch) and AOTInductor compile time on this CPU.

Runs nequip directly (no AiiDA) on synthetic Morse-labelled Ca-H frames of 4-8 atoms, for the 'tiny' and 'cpu'
presets, through the same config builder and runner commands as AllegroTrainCalculation.
Results: benchmarks/results/training.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

RESULTS = Path(__file__).parent / 'results' / 'training.json'
N_TRAIN, N_VALIDATION, EPOCHS = 96, 24, 6


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def measure(preset: str) -> dict:
    from ase.io import write

    from aiida_polyhydride.analysis.learning_curve import parse_metrics_csv
    from aiida_polyhydride.analysis.synthetic import synthetic_cah_frames
    from aiida_polyhydride.calculations.allegro_config import build_config, validate_hyperparameters

    frames = synthetic_cah_frames(n_frames=N_TRAIN + N_VALIDATION, seed=0)
    with tempfile.TemporaryDirectory(prefix=f'bench-{preset}-') as directory:
        workdir = Path(directory)
        write(workdir / 'train.extxyz', frames[:N_TRAIN])
        write(workdir / 'validation.extxyz', frames[N_TRAIN:])
        hyperparameters = validate_hyperparameters({'max_epochs': EPOCHS}, preset=preset)
        config = build_config(hyperparameters, ['Ca', 'H'], {'Ca': 0.0, 'H': 0.0}, 'train.extxyz', 'validation.extxyz')
        (workdir / 'config.yaml').write_text(yaml.safe_dump(config, sort_keys=False))
        environment = {**os.environ, 'TMPDIR': str(workdir), 'TORCHINDUCTOR_CACHE_DIR': str(workdir / 'inductor')}

        def run(*command: str) -> float:
            start = time.perf_counter()
            subprocess.run(command, cwd=workdir, env=environment, check=True, capture_output=True)
            return time.perf_counter() - start

        train_s = run(_bin('nequip-train'), '-cp', str(workdir), '-cn', 'config')
        package_s = run(_bin('nequip-package'), 'build', 'checkpoints/best.ckpt', 'model.nequip.zip')
        compile_s = run(
            _bin('nequip-compile'), 'model.nequip.zip', 'model.nequip.pt2',
            '--mode', 'aotinductor', '--device', 'cpu', '--target', 'ase',
        )  # fmt: skip
        curve = parse_metrics_csv(sorted(workdir.glob('metrics/version_*/metrics.csv')))
    # the first epoch includes start-up (imports, data statistics, neighbour lists); the rest is steady state
    steady_epoch_s = (train_s - _startup(train_s, EPOCHS)) / EPOCHS
    return {
        'preset': preset,
        'n_train_frames': N_TRAIN,
        'epochs': len(curve['epoch']),
        'nequip_train_wall_s': round(train_s, 1),
        'seconds_per_epoch_incl_startup': round(train_s / EPOCHS, 2),
        'train_frames_per_second_per_epoch': round(N_TRAIN / steady_epoch_s, 1),
        'package_s': round(package_s, 1),
        'compile_s': round(compile_s, 1),
    }


def _startup(total: float, epochs: int) -> float:
    # measured: nequip-train spends ~6 s before its first epoch on this machine
    return min(6.0, 0.5 * total)


def main() -> None:
    result = {
        'benchmark': 'training',
        'date': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'machine': f'{platform.node()} ({platform.machine()}), {os.cpu_count()} cores, CPU torch',
        'data': f'synthetic Morse Ca-H, 4-8 atoms/frame, {N_TRAIN} train + {N_VALIDATION} validation frames',
        'runs': [measure('tiny'), measure('cpu')],
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + '\n')
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
