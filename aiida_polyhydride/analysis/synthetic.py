"""Synthetic labelled Ca-H frames (Morse pair potentials): stand-in data for training tests and benchmarks.

:func:`synthetic_cah_frames` makes random 4-8 atom cells labelled by one species-blind Morse potential (r0 = 1.8
Angstrom for every pair), fine for atoms at least 1.4 Angstrom apart. :class:`CaHMorseReference` has one Morse
term per species pair (H-H bonded at 0.75 Angstrom), so it gives finite forces on the project's structures too
(H2 units of MH4, dense H2 fluid, liquid-like cells); it stands in for DFT where labelling hundreds of frames with
pw.x is too slow (benchmarks/bench_learning_efficiency.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.morse import MorsePotential
from ase.neighborlist import neighbor_list

from .frames import label_frame

__all__ = ('CAH_MORSE_PARAMETERS', 'CaHMorseReference', 'label_with', 'synthetic_cah_frames')

#: species pair -> (well depth D in eV, equilibrium distance r0 in Angstrom, stiffness alpha in 1/Angstrom, cutoff in
#: Angstrom); cutoffs are within the 'tiny' Allegro preset's r_max (4 Angstrom), so a model can learn every term
CAH_MORSE_PARAMETERS = {
    ('H', 'H'): (2.0, 0.75, 1.9, 3.0),
    ('Ca', 'H'): (0.6, 2.1, 1.5, 3.5),
    ('Ca', 'Ca'): (0.3, 3.2, 1.2, 4.0),
}


class CaHMorseReference(Calculator):
    """Sum of shifted-force Morse pair terms, one per species pair: energy, forces, stress (ASE units and sign).

    V(r) = D [exp(-2 alpha (r - r0)) - 2 exp(-alpha (r - r0))], shifted so that V and dV/dr vanish at the cutoff.
    """

    implemented_properties = ('energy', 'free_energy', 'forces', 'stress')

    def __init__(self, parameters: dict[tuple[str, str], tuple[float, float, float, float]] | None = None, **kwargs):
        super().__init__(**kwargs)
        table = parameters or CAH_MORSE_PARAMETERS
        self.pair_parameters = {**table, **{(b, a): values for (a, b), values in table.items()}}

    def calculate(self, atoms=None, properties=('energy',), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        cutoff = max(values[3] for values in self.pair_parameters.values())
        first, second, distance, vector = neighbor_list('ijdD', self.atoms, cutoff)  # each pair twice
        symbols = np.array(self.atoms.get_chemical_symbols())
        energy_terms, slopes = np.zeros(len(distance)), np.zeros(len(distance))
        for (a, b), (depth, r0, alpha, r_cut) in self.pair_parameters.items():
            mask = (symbols[first] == a) & (symbols[second] == b) & (distance < r_cut)
            energy_terms[mask], slopes[mask] = _shifted_morse(distance[mask], depth, r0, alpha, r_cut)
        # dE/d(r_j - r_i) = V'(r) D/r per pair; half of it per ordered pair (each pair appears as i-j and j-i)
        gradient = (slopes / np.where(distance > 0, distance, 1.0))[:, None] * vector
        forces = np.zeros((len(self.atoms), 3))
        np.add.at(forces, first, gradient)
        virial = 0.5 * np.einsum('na,nb->ab', gradient, vector)
        stress = virial / self.atoms.get_volume()
        energy = 0.5 * float(energy_terms.sum())
        self.results = {
            'energy': energy,
            'free_energy': energy,
            'forces': forces,
            'stress': stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]],
        }


def _shifted_morse(r: np.ndarray, depth: float, r0: float, alpha: float, r_cut: float):
    def morse(x):
        decay = np.exp(-alpha * (x - r0))
        return depth * (decay**2 - 2 * decay), 2 * depth * alpha * (decay - decay**2)

    value, slope = morse(r)
    value_cut, slope_cut = morse(r_cut)
    return value - value_cut - (r - r_cut) * slope_cut, slope - slope_cut


def label_with(calculator: Calculator, frames: Sequence[Atoms]) -> list[Atoms]:
    """Copies of ``frames`` labelled (energy, forces, stress) by ``calculator``, as :func:`.frames.label_frame`."""
    labelled = []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calculator
        labelled.append(label_frame(atoms, atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
    return labelled


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
        frames.extend(label_with(calculator, [atoms]))
    return frames
