"""Synthetic labelled Ca-H frames (Morse pair potential): stand-in data for training tests before the DFT data exist."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.morse import MorsePotential

from .frames import label_frame

__all__ = ('synthetic_cah_frames',)


def synthetic_cah_frames(
    n_frames: int = 24,
    seed: int = 0,
    n_atoms: tuple[int, int] = (4, 8),
    cell_length: tuple[float, float] = (3.5, 4.5),
    min_distance: float = 1.4,
) -> list[Atoms]:
    """Random periodic Ca-H frames (1-2 Ca, rest H) labelled by one Morse potential (energy, forces, stress).

    Cells are slightly sheared cubes; atoms are placed at random at least ``min_distance`` apart (minimum image).
    Labels use the ASE units and sign, as the DFT frames of the project (see :mod:`.frames`).
    """
    rng = np.random.default_rng(seed)
    calculator = MorsePotential(epsilon=0.3, r0=1.8, rho0=3.5, rcut1=3.0, rcut2=3.8)
    frames = []
    while len(frames) < n_frames:
        count = int(rng.integers(n_atoms[0], n_atoms[1] + 1))
        n_ca = int(rng.integers(1, 3))
        cell = np.diag(rng.uniform(*cell_length, size=3)) + rng.uniform(-0.2, 0.2, size=(3, 3))
        atoms = Atoms(['Ca'] * n_ca + ['H'] * (count - n_ca), cell=cell, pbc=True)
        positions = []
        for _ in range(200 * count):
            candidate = rng.uniform(0, 1, size=3) @ cell
            trial = Atoms('X' * (len(positions) + 1), positions=[*positions, candidate], cell=cell, pbc=True)
            if len(positions) == 0 or np.min(trial.get_distances(len(positions), range(len(positions)), mic=True)) > (
                min_distance
            ):
                positions.append(candidate)
                if len(positions) == count:
                    break
        if len(positions) < count:
            continue
        atoms.positions = positions
        atoms.calc = calculator
        frame = label_frame(atoms, atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress())
        frames.append(frame)
    return frames
