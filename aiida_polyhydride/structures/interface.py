"""Slab of a bulk hydride in contact with dense H2 on both faces (fully periodic, no vacuum)."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import surface

from ._geometry import PlacementError
from ._validate import (
    check_choice,
    check_int_vector,
    check_non_negative,
    check_optional_positive,
    check_positive,
    check_positive_int,
    check_seed,
)
from .fluid import molecules_per_a3, place_molecules
from .phases import PROTOTYPES, bulk_phase

__all__ = ['DEFAULT_RESERVOIR_THICKNESS', 'slab_h2_interface']

#: Minimum reservoir thickness (Angstrom) used when neither n_molecules nor reservoir_thickness is given.
DEFAULT_RESERVOIR_THICKNESS = 10.0
_BOND_LENGTH = 0.74
_MIN_INTERMOLECULAR = 1.2


def slab_h2_interface(
    phase: str = 'MH2-Pnma',
    metal: str = 'Ca',
    miller: tuple[int, int, int] = (0, 0, 1),
    layers: int = 2,
    repeats: tuple[int, int] = (1, 1),
    n_molecules: int | None = None,
    density_g_cm3: float = 0.35,
    reservoir_thickness: float | None = None,
    gap: float = 1.5,
    seed: int = 0,
    volume_per_atom: float | None = None,
) -> Atoms:
    """Slab of ``phase`` cut along ``miller`` with a dense H2 reservoir above it, periodic in all directions.

    The slab is ``layers`` bulk periods thick (``ase.build.surface``), repeated ``repeats`` times in plane;
    the third cell vector is along the surface normal (z) with length slab thickness + reservoir thickness,
    so the fluid touches both faces of the slab (no vacuum: the system is compressed). The slab thickness is
    the z-span of its atoms; the reservoir thickness is the distance from the top atomic plane to the
    periodic image of the bottom one, and the reservoir density is n_molecules * m(H2) / (area * thickness)
    in g/cm^3. Give at most one of ``n_molecules`` and ``reservoir_thickness``; ``density_g_cm3`` fixes the
    other. With neither, the thickness is about max(10 Angstrom, slab thickness), adjusted so the density
    is exact. H2 molecules (0.74 Angstrom bonds, >= 1.2 Angstrom between molecules) are placed at random
    with every atom >= ``gap`` (Angstrom) from every slab atom, by minimum image.

    ``atoms.arrays['region']`` is 0 for slab atoms and 1 for reservoir atoms; ``atoms.arrays['molecule_id']``
    is -1 in the slab. ``atoms.info`` records phase, metal, miller, layers, repeats and the reservoir numbers.
    """
    check_choice(phase, 'phase', PROTOTYPES)
    miller = check_int_vector(miller, 'miller', 3)
    layers = check_positive_int(layers, 'layers')
    repeats = check_int_vector(repeats, 'repeats', 2, positive=True)
    if n_molecules is not None:
        n_molecules = check_positive_int(n_molecules, 'n_molecules')
    density = check_positive(density_g_cm3, 'density_g_cm3')
    reservoir_thickness = check_optional_positive(reservoir_thickness, 'reservoir_thickness')
    gap = check_non_negative(gap, 'gap')
    rng = np.random.default_rng(check_seed(seed))
    if n_molecules is not None and reservoir_thickness is not None:
        raise ValueError(
            'n_molecules and reservoir_thickness: give at most one of them, density_g_cm3 determines the other'
        )
    bulk = bulk_phase(phase, metal=metal, volume_per_atom=volume_per_atom)  # validates metal, volume_per_atom

    slab = surface(bulk, miller, layers, periodic=True)
    slab *= (repeats[0], repeats[1], 1)
    positions = slab.get_positions()
    positions[:, 2] -= positions[:, 2].min()
    slab_thickness = float(positions[:, 2].max())
    in_plane = slab.cell[:2].copy()
    area = float(np.linalg.norm(np.cross(in_plane[0], in_plane[1])))

    per_a3 = molecules_per_a3(density)
    if n_molecules is None:
        target = reservoir_thickness or max(DEFAULT_RESERVOIR_THICKNESS, slab_thickness)
        n_molecules = max(1, round(per_a3 * area * target))
    if reservoir_thickness is None:
        reservoir_thickness = n_molecules / (per_a3 * area)
    cell = np.vstack([in_plane, [0.0, 0.0, slab_thickness + reservoir_thickness]])

    try:
        fluid = place_molecules(
            cell,
            n_molecules,
            _BOND_LENGTH,
            _MIN_INTERMOLECULAR,
            rng,
            fixed_positions=positions,
            min_to_fixed=gap,
            normal_range=(slab_thickness, slab_thickness + reservoir_thickness),
        )
    except PlacementError as err:
        raise ValueError(
            f'density_g_cm3={density_g_cm3} is impossible: {n_molecules} H2 molecules do not fit in a '
            f'{reservoir_thickness:.2f} Angstrom reservoir with gap={gap} Angstrom to the slab and '
            f'{_MIN_INTERMOLECULAR} Angstrom between molecules (placed {err.placed}); lower density_g_cm3 '
            'or gap, or give a larger reservoir_thickness'
        ) from None

    atoms = Atoms(
        symbols=slab.get_chemical_symbols() + ['H'] * len(fluid),
        positions=np.vstack([positions, fluid]),
        cell=cell,
        pbc=True,
    )
    atoms.wrap()
    atoms.arrays['region'] = np.repeat([0, 1], [len(slab), len(fluid)])
    atoms.arrays['molecule_id'] = np.concatenate([np.full(len(slab), -1), np.repeat(np.arange(n_molecules), 2)])
    atoms.info.update(
        builder='slab_h2_interface',
        phase=phase,
        metal=bulk.info['metal'],
        miller=list(miller),
        layers=layers,
        repeats=list(repeats),
        n_molecules=n_molecules,
        density_g_cm3=n_molecules / (per_a3 * area * reservoir_thickness) * density,
        slab_thickness=slab_thickness,
        reservoir_thickness=float(reservoir_thickness),
        gap=gap,
        seed=int(seed),
    )
    return atoms
