"""A pseudopotential family against known numbers: fcc Ca lattice constant, H2 bond length, CaH2 (Pnma) volume.

Plain functions over relaxed ASE structures; :data:`EXPERIMENT` holds the measured values with their sources.
PBE itself is off these by about a percent (it underbinds H2 slightly and gives a slightly short fcc Ca lattice
constant), so the check reads the deviations against what PBE with all-electron accuracy gives, not against zero.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

__all__ = ('EXPERIMENT', 'deviations', 'fcc_lattice_constant', 'h2_bond_length', 'volume_per_formula_unit')

#: measured values: value, unit, source
EXPERIMENT = {
    'fcc_Ca_lattice_constant': (5.588, 'Angstrom', 'fcc Ca at room temperature (Wyckoff, Crystal Structures, 1963)'),
    'H2_bond_length': (0.7414, 'Angstrom', 'r_e of H2 (Huber and Herzberg, Constants of Diatomic Molecules, 1979)'),
    'CaH2_Pnma_volume': (
        36.57,
        'Angstrom^3 per CaH2',
        'CaH2 at 295 K, a = 5.9600, b = 3.6006, c = 6.8167 Angstrom, Z = 4 '
        '(Alonso et al., Z. Kristallogr. 225, 225 (2010), neutron powder diffraction)',
    ),
}


def fcc_lattice_constant(atoms: Atoms) -> float:
    """Cubic lattice constant (Angstrom) of a one-atom fcc primitive cell (or any fcc cell) from its volume."""
    return float((4.0 * atoms.get_volume() / len(atoms)) ** (1.0 / 3.0))


def h2_bond_length(atoms: Atoms) -> float:
    """Bond length (Angstrom) of the one H2 molecule in ``atoms`` (minimum image)."""
    symbols = atoms.get_chemical_symbols()
    if symbols != ['H', 'H']:
        raise ValueError(f'h2_bond_length: expected one H2 molecule, got {atoms.get_chemical_formula()}')
    return float(atoms.get_distance(0, 1, mic=True))


def volume_per_formula_unit(atoms: Atoms, n_hydrogen_per_metal: int = 2) -> float:
    """Volume (Angstrom^3) per MH_x formula unit of a metal hydride cell."""
    symbols = np.array(atoms.get_chemical_symbols())
    n_metal = int(np.sum(symbols != 'H'))
    if n_metal == 0 or int(np.sum(symbols == 'H')) != n_hydrogen_per_metal * n_metal:
        raise ValueError(f'volume_per_formula_unit: {atoms.get_chemical_formula()} is not MH{n_hydrogen_per_metal}')
    return float(atoms.get_volume() / n_metal)


def deviations(computed: dict[str, float]) -> dict[str, dict]:
    """Per quantity: computed and measured value, unit, relative deviation (%) and source."""
    result = {}
    for name, value in computed.items():
        measured, unit, source = EXPERIMENT[name]
        result[name] = {
            'computed': float(value),
            'experiment': measured,
            'unit': unit,
            'deviation_percent': 100.0 * (float(value) - measured) / measured,
            'source': source,
        }
    return result
