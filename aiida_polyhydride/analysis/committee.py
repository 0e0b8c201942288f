"""Committee disagreement (as DP-GEN): per-frame deviations of the predictions of N models.

::

    sigma_F = max over atoms i of sqrt(mean over models k of |F_ik - <F_i>|^2)   (eV/Angstrom)
    sigma_E = std over models of the energy per atom                             (eV/atom)
    sigma_V = max over components of the std over models of the stress            (eV/Angstrom^3)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ('energy_deviation', 'force_deviation', 'stress_deviation')


def force_deviation(forces: np.ndarray | Sequence) -> float:
    """sigma_F of one frame from ``forces`` of shape (n_models, n_atoms, 3)."""
    forces = np.asarray(forces, dtype=float)
    if forces.ndim != 3 or forces.shape[2] != 3 or forces.shape[0] < 2:
        raise ValueError(f'forces: expected shape (n_models >= 2, n_atoms, 3), got {forces.shape}')
    spread = forces - forces.mean(axis=0)
    return float(np.sqrt((spread**2).sum(axis=2).mean(axis=0)).max())


def energy_deviation(energies: np.ndarray | Sequence, n_atoms: int) -> float:
    """sigma_E (eV/atom) of one frame from the ``energies`` (eV) of n_models."""
    energies = np.asarray(energies, dtype=float)
    if energies.ndim != 1 or len(energies) < 2 or n_atoms < 1:
        raise ValueError(f'energies: expected n_models >= 2 values and n_atoms >= 1, got {energies.shape}, {n_atoms}')
    return float(energies.std() / n_atoms)


def stress_deviation(stresses: np.ndarray | Sequence) -> float:
    """sigma_V (eV/Angstrom^3): largest std over models of a stress component; ``stresses`` (n_models, 3, 3 or 6)."""
    stresses = np.asarray(stresses, dtype=float).reshape(len(stresses), -1)
    if len(stresses) < 2:
        raise ValueError('stresses: need at least two models')
    return float(stresses.std(axis=0).max())
