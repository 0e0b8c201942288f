"""Cells of the enthalpy workflow: a small molecular solid H2 and a solid-liquid two-phase (coexistence) cell."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from ._geometry import PlacementError, far_enough
from ._validate import check_atoms, check_positive, check_seed
from .sampling import LIQUID_MIN_DISTANCE_CA

__all__ = ['H2_VOLUME_40GPA', 'solid_h2', 'solid_liquid_cell']

#: Volume per H2 molecule (Angstrom^3) near 40 GPa and 300 K (~6.6 cm^3/mol, Loubeyre et al., Nature 383, 702 (1996)).
H2_VOLUME_40GPA = 11.0
_MAX_ATTEMPTS = 5000


def solid_h2(volume_per_molecule: float = H2_VOLUME_40GPA, bond_length: float = 0.74) -> Atoms:
    """Molecular solid H2: hcp molecular centres (P6_3/mmc, ideal c/a), molecules along c; 2 molecules, 4 atoms.

    Phase I of H2 (up to ~100 GPa at 300 K) is hcp with (nearly) freely rotating molecules; fixed orientations along c
    make the smallest static model of it. Orientational order changes the enthalpy by a few meV/atom, small against
    the reaction enthalpies (tenths of an eV per formula unit), so a 4-atom cell is a cheap and adequate reference.
    """
    volume_per_molecule = check_positive(volume_per_molecule, 'volume_per_molecule')
    bond_length = check_positive(bond_length, 'bond_length')
    c_over_a = np.sqrt(8.0 / 3.0)
    a = (2.0 * volume_per_molecule / (np.sqrt(3.0) / 2.0 * c_over_a)) ** (1.0 / 3.0)
    c = c_over_a * a
    cell = np.array([[a, 0.0, 0.0], [-a / 2, np.sqrt(3.0) / 2 * a, 0.0], [0.0, 0.0, c]])
    centres = np.array([[1 / 3, 2 / 3, 1 / 4], [2 / 3, 1 / 3, 3 / 4]]) @ cell
    half = np.array([0.0, 0.0, bond_length / 2])
    positions = np.vstack([[centre - half, centre + half] for centre in centres])
    atoms = Atoms('H4', positions=positions, cell=cell, pbc=True)
    atoms.info.update(prototype='H2-P63mmc', volume_per_molecule=volume_per_molecule, bond_length=bond_length)
    return atoms


def solid_liquid_cell(solid: Atoms, repeat_along_z: int = 2, seed: int = 0, scale: float = 1.0) -> Atoms:
    """Two-phase cell: ``solid`` repeated ``repeat_along_z`` times along its third vector, the upper half disordered.

    The atoms of the upper half of the copies (fractional coordinate along the third vector >= 0.5) are put back at
    random positions in that half (metal first, then H, at the liquid_like minimum distances scaled by ``scale``), so
    the cell holds a crystal and a liquid-like block of the same composition with two interfaces normal to the third
    vector. The third vector must be normal to the first two (as for the I4/mmm conventional cell).
    ``atoms.arrays['initial_liquid']`` marks the disordered atoms.
    """
    check_atoms(solid)
    scale = check_positive(scale, 'scale')
    if repeat_along_z < 2 or repeat_along_z % 2:
        raise ValueError(f'repeat_along_z must be even and >= 2 (equal solid and liquid blocks), got {repeat_along_z}')
    cell = solid.cell.array
    if abs(cell[2] @ cell[0]) > 1e-6 or abs(cell[2] @ cell[1]) > 1e-6:
        raise ValueError('solid: its third cell vector must be normal to the first two (stack along the normal)')
    rng = np.random.default_rng(check_seed(seed))
    solid = solid.copy()
    solid.wrap()
    atoms = solid.repeat((1, 1, repeat_along_z))
    # ASE stacks the copies in order: the upper half of the copies (fractional z >= 0.5) becomes the liquid
    liquid = np.arange(len(atoms)) >= len(solid) * repeat_along_z // 2
    symbols = np.array(atoms.get_chemical_symbols())
    metals = sorted(set(symbols) - {'H'})
    kept = atoms.positions[~liquid]
    kept_is_h = symbols[~liquid] == 'H'
    order = np.concatenate([np.flatnonzero(liquid & (symbols != 'H')), np.flatnonzero(liquid & (symbols == 'H'))])
    dmin = {key: value * scale for key, value in LIQUID_MIN_DISTANCE_CA.items()}
    others = list(kept)
    others_is_h = list(kept_is_h)
    new_positions = atoms.positions.copy()
    for placed, index in enumerate(order):
        is_h = symbols[index] == 'H'
        cutoffs = np.array([dmin['H-H' if is_h and h else 'M-H' if is_h or h else 'M-M'] for h in others_is_h])
        for _ in range(_MAX_ATTEMPTS):
            trial = np.array([rng.random(), rng.random(), 0.5 + 0.5 * rng.random()]) @ atoms.cell.array
            if far_enough(trial, np.array(others), atoms.cell.array, cutoffs):
                break
        else:
            err = PlacementError(placed, len(order), _MAX_ATTEMPTS)
            raise ValueError(
                f'solid: the liquid block is too dense for the liquid_like minimum distances ({err}); lower scale'
            )
        new_positions[index] = trial
        others.append(trial)
        others_is_h.append(is_h)
    atoms.positions = new_positions
    atoms.arrays['initial_liquid'] = liquid
    atoms.info.update(builder='solid_liquid_cell', metal=metals[0] if metals else None, seed=int(seed))
    return atoms
