"""Helpers of the benchmarks that run nequip directly (no AiiDA): training, packaging, compiling, loading a model.

Training goes through the config builder of AllegroTrainCalculation (calculations/allegro_config.py) and the
nequip-train / nequip-package / nequip-compile console scripts of this Python environment.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml
from ase import Atoms

from aiida_polyhydride.runners.compiled_models import console_script

TYPE_NAMES = ['Ca', 'H']


def nequip_environment(root: Path) -> dict:
    """Environment that keeps torch's temporary and AOTInductor cache files under ``root``."""
    return {**os.environ, 'TMPDIR': str(root), 'TORCHINDUCTOR_CACHE_DIR': str(root / 'inductor')}


def timed(workdir: Path, environment: dict, *command: str) -> float:
    """Wall seconds of ``command`` run in ``workdir`` (raises CalledProcessError with its output on failure)."""
    start = time.perf_counter()
    subprocess.run(command, cwd=workdir, env=environment, check=True, capture_output=True)
    return time.perf_counter() - start


def train(
    workdir: Path,
    train_frames: Sequence[Atoms],
    validation_frames: Sequence[Atoms],
    environment: dict,
    preset: str = 'tiny',
    hyperparameters: Mapping | None = None,
    seed: int = 0,
    per_type_energy_shifts: Mapping[str, float] | None = None,
) -> float:
    """nequip-train of an Allegro model in the new directory ``workdir``; returns its wall seconds.

    The best model is ``workdir/checkpoints/best.ckpt``.
    """
    from ase.io import write

    from aiida_polyhydride.calculations.allegro_config import build_config, validate_hyperparameters

    workdir.mkdir(parents=True)
    write(workdir / 'train.extxyz', list(train_frames))
    write(workdir / 'validation.extxyz', list(validation_frames))
    values = validate_hyperparameters(dict(hyperparameters or {}), preset=preset)
    shifts = per_type_energy_shifts or dict.fromkeys(TYPE_NAMES, 0.0)
    config = build_config(values, TYPE_NAMES, shifts, 'train.extxyz', 'validation.extxyz', seed=seed)
    (workdir / 'config.yaml').write_text(yaml.safe_dump(config, sort_keys=False))
    return timed(workdir, environment, console_script('nequip-train'), '-cp', str(workdir), '-cn', 'config')


def checkpoint_calculator(checkpoint: Path):
    """An ASE calculator of the model in a nequip checkpoint, run eagerly on the CPU (no compile step).

    The same weights as the packaged, compiled model the workflows use; compiling with AOTInductor (~40 s per model
    here) would dominate benchmarks that evaluate dozens of models on a few hundred small frames.
    """
    from nequip.integrations.ase import NequIPCalculator

    return NequIPCalculator._from_saved_model(str(checkpoint), device='cpu', chemical_species_to_atom_type_map=True)
