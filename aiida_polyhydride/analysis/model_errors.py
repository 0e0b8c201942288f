"""Errors of a potential's predictions against DFT labels, overall and per system (a model card's table).

Frames are grouped by ``info['origin_system']`` (set by the loop's seed and exploration builders); energies are
compared per atom, forces component-wise, stresses in GPa (ASE sign, full 3x3).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress
from ase.units import GPa

from .frames import labels_of

__all__ = ('prediction_errors',)

UNKNOWN_SYSTEM = 'unknown'


def _stress_3x3(stress: np.ndarray) -> np.ndarray:
    stress = np.asarray(stress, dtype=float)
    return stress if stress.shape == (3, 3) else voigt_6_to_full_3x3_stress(stress)


def _summary(energy: list[float], forces: list[np.ndarray], stress: list[np.ndarray], n_frames: int) -> dict:
    force_errors = np.concatenate(forces).ravel() if forces else np.zeros(0)
    summary = {
        'n_frames': n_frames,
        'n_atoms': int(sum(len(f) for f in forces)),
        'energy_rmse_meV_per_atom': float(np.sqrt(np.mean(np.square(energy)))) * 1000,
        'energy_mae_meV_per_atom': float(np.mean(np.abs(energy))) * 1000,
        'forces_rmse_meV_per_A': float(np.sqrt(np.mean(np.square(force_errors)))) * 1000,
        'forces_mae_meV_per_A': float(np.mean(np.abs(force_errors))) * 1000,
    }
    if stress:
        stress_errors = np.concatenate([s.ravel() for s in stress]) / GPa
        summary['stress_rmse_GPa'] = float(np.sqrt(np.mean(np.square(stress_errors))))
    return summary


def prediction_errors(reference: Sequence[Atoms], predicted: Sequence[dict]) -> dict:
    """Errors of ``predicted`` (per frame: energy, forces and optionally stress, ASE units) against ``reference``.

    Returns ``{'all': {...}, 'systems': {system: {...}}}`` with energy RMSE/MAE (meV/atom), force RMSE/MAE
    (meV/Angstrom, per component) and, where both carry a stress, stress RMSE (GPa, per tensor component).
    """
    if len(reference) != len(predicted):
        raise ValueError(f'{len(reference)} reference frames but {len(predicted)} predictions')
    if not reference:
        raise ValueError('no frames to compare')
    groups: dict[str, dict[str, list]] = defaultdict(lambda: {'energy': [], 'forces': [], 'stress': [], 'n': 0})
    everything = {'energy': [], 'forces': [], 'stress': [], 'n': 0}
    for index, (frame, prediction) in enumerate(zip(reference, predicted, strict=True)):
        labels = labels_of(frame)
        if 'energy' not in labels or 'forces' not in labels:
            raise ValueError(f'reference frame {index} carries no energy and forces labels')
        forces = np.asarray(prediction['forces'], dtype=float)
        if forces.shape != (len(frame), 3):
            raise ValueError(f'frame {index}: predicted forces of shape {forces.shape}, expected ({len(frame)}, 3)')
        errors = {
            'energy': (float(prediction['energy']) - float(labels['energy'])) / len(frame),
            'forces': forces - np.asarray(labels['forces'], dtype=float),
        }
        if 'stress' in labels and prediction.get('stress') is not None:
            errors['stress'] = _stress_3x3(prediction['stress']) - _stress_3x3(labels['stress'])
        system = str(frame.info.get('origin_system', UNKNOWN_SYSTEM))
        for target in (groups[system], everything):
            target['n'] += 1
            for key, value in errors.items():
                target[key].append(value)
    return {
        'all': _summary(everything['energy'], everything['forces'], everything['stress'], everything['n']),
        'systems': {
            system: _summary(group['energy'], group['forces'], group['stress'], group['n'])
            for system, group in sorted(groups.items())
        },
    }
