"""Dense molecular H2 fluid at a target mass density, by random sequential placement."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from ._geometry import PlacementError, far_enough, perpendicular_widths, random_unit_vectors
from ._validate import check_positive, check_positive_int, check_seed

__all__ = ['H2_MASS_G', 'dense_h2_fluid', 'molecules_per_a3', 'place_molecules']

#: Mass of one H2 molecule in grams (ASE atomic masses).
H2_MASS_G = 2 * float(atomic_masses[atomic_numbers['H']]) / 6.02214076e23
_BATCH = 64
_MAX_BATCHES = 50  # 3200 trial positions per molecule before giving up


def molecules_per_a3(density_g_cm3: float) -> float:
    """Number density of H2 molecules (1/Angstrom^3) at mass density ``density_g_cm3`` (g/cm^3)."""
    return density_g_cm3 * 1e-24 / H2_MASS_G


def place_molecules(
    cell: np.ndarray,
    n_molecules: int,
    bond_length: float,
    min_intermolecular: float,
    rng: np.random.Generator,
    fixed_positions: np.ndarray | None = None,
    min_to_fixed: float = 0.0,
    normal_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Positions (2 n_molecules, 3) of H2 molecules placed at random in ``cell`` (Angstrom).

    Molecule centres are uniform in the cell (or, with ``normal_range``, have Cartesian z in that interval;
    the third cell vector must then be along z) and orientations uniform on the sphere. Atoms of different
    molecules are >= ``min_intermolecular`` apart and >= ``min_to_fixed`` from ``fixed_positions``, all by
    minimum image. Raises :class:`PlacementError` when a molecule cannot be placed after a bounded number
    of trials.
    """
    cell = np.asarray(cell, dtype=float)
    fixed = np.zeros((0, 3)) if fixed_positions is None else np.asarray(fixed_positions, dtype=float)
    others = fixed.copy()
    cutoffs = np.full(len(fixed), min_to_fixed)
    placed = np.zeros((2 * n_molecules, 3))
    for k in range(n_molecules):
        for _ in range(_MAX_BATCHES):
            frac = rng.random((_BATCH, 3))
            centres = frac @ cell
            if normal_range is not None:
                centres[:, 2] = normal_range[0] + frac[:, 2] * (normal_range[1] - normal_range[0])
            half = 0.5 * bond_length * random_unit_vectors(rng, _BATCH)
            found = next(
                (
                    pair
                    for pair in np.stack([centres - half, centres + half], axis=1)
                    if far_enough(pair, others, cell, cutoffs)
                ),
                None,
            )
            if found is not None:
                break
        else:
            raise PlacementError(k, n_molecules, _BATCH * _MAX_BATCHES)
        placed[2 * k : 2 * k + 2] = found
        others = np.vstack([others, found])
        cutoffs = np.append(cutoffs, [min_intermolecular, min_intermolecular])
    return placed


def dense_h2_fluid(
    n_molecules: int,
    density_g_cm3: float,
    bond_length: float = 0.74,
    min_intermolecular: float = 1.2,
    seed: int = 0,
    cell_shape: str | Sequence[float] = 'cubic',
) -> Atoms:
    """Periodic box of ``n_molecules`` randomly oriented H2 molecules at mass density ``density_g_cm3`` (g/cm^3).

    Dense H2 at 40 GPa is roughly 0.3-0.45 g/cm^3 (about 0.45 g/cm^3 at 300 K from the Vinet fit of
    Loubeyre et al., Nature 383, 702 (1996); the fluid at 1500 K is less dense), so 0.35 g/cm^3 is a
    reasonable start. ``bond_length`` (Angstrom) is the H-H distance in each molecule; atoms of different
    molecules are >= ``min_intermolecular`` (Angstrom) apart by minimum image. ``cell_shape`` is 'cubic' or
    three positive edge ratios a:b:c of an orthorhombic box. The box volume is exactly
    n_molecules * m(H2) / density. ``atoms.arrays['molecule_id']`` holds each atom's molecule index.
    Raises ValueError naming density_g_cm3 when the random placement fails (density too high for the floor).
    """
    n_molecules = check_positive_int(n_molecules, 'n_molecules')
    density = check_positive(density_g_cm3, 'density_g_cm3')
    bond_length = check_positive(bond_length, 'bond_length')
    min_intermolecular = check_positive(min_intermolecular, 'min_intermolecular')
    rng = np.random.default_rng(check_seed(seed))
    if isinstance(cell_shape, str):
        if cell_shape != 'cubic':
            raise ValueError(f"cell_shape must be 'cubic' or three positive edge ratios, got {cell_shape!r}")
        ratios = np.ones(3)
    else:
        try:
            ratios = np.array([check_positive(r, 'cell_shape') for r in cell_shape])
        except TypeError:
            ratios = np.zeros(0)
        if ratios.shape != (3,):
            raise ValueError(f"cell_shape must be 'cubic' or three positive edge ratios, got {cell_shape!r}")
    volume = n_molecules / molecules_per_a3(density)
    cell = np.diag(ratios * (volume / ratios.prod()) ** (1.0 / 3.0))
    impossible = f'density_g_cm3={density_g_cm3} is impossible for {n_molecules} H2 molecules'
    if perpendicular_widths(cell).min() < min_intermolecular + bond_length:
        raise ValueError(
            f'{impossible}: the box ({np.diag(cell).round(3).tolist()} Angstrom) is narrower than '
            f'min_intermolecular + bond_length, so a molecule would touch its own periodic image; '
            'use more molecules or a lower density'
        )
    try:
        positions = place_molecules(cell, n_molecules, bond_length, min_intermolecular, rng)
    except PlacementError as err:
        raise ValueError(
            f'{impossible} with min_intermolecular={min_intermolecular} Angstrom: random placement '
            f'stopped after {err.placed} molecules ({err.attempts} trials for the next one); lower '
            'density_g_cm3 or min_intermolecular'
        ) from None
    atoms = Atoms(f'H{2 * n_molecules}', positions=positions, cell=cell, pbc=True)
    atoms.wrap()
    atoms.arrays['molecule_id'] = np.repeat(np.arange(n_molecules), 2)
    atoms.info.update(builder='dense_h2_fluid', density_g_cm3=density, bond_length=bond_length, seed=int(seed))
    return atoms
