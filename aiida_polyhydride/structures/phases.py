"""Bulk prototypes of metal hydrides MH2, MH4 and MH6 (conventional cells, Angstrom).

The default geometries are for M = Ca. They are starting points for relaxation and MD, not converged
structures: only the space group and the Wyckoff sites matter downstream. For another metal the Ca geometry
is scaled isotropically by r_cov(M) / r_cov(Ca) (ASE covalent radii), unless ``volume_per_atom``
(Angstrom^3 per atom, all atoms counted) is given, which sets the cell volume exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii
from ase.spacegroup import crystal

from ._validate import check_choice, check_metal, check_optional_positive

__all__ = ['PROTOTYPES', 'bulk_phase', 'length_scale', 'mh2_cotunnite', 'mh2_ni2in', 'mh4_i4mmm', 'mh6_clathrate']

#: H-H distance (Angstrom) of the H2-like unit in MH4 I4/mmm, kept fixed when the cell is scaled.
MH4_H2_BOND = 0.80


def length_scale(metal: str, n_atoms: int, volume_ca: float, volume_per_atom: float | None) -> float:
    """Isotropic factor applied to the Ca cell lengths: covalent-radius ratio, or exact target volume."""
    if volume_per_atom is not None:
        return float((volume_per_atom * n_atoms / volume_ca) ** (1.0 / 3.0))
    return float(covalent_radii[atomic_numbers[metal]] / covalent_radii[atomic_numbers['Ca']])


def _build(metal, sites, spacegroup, cellpar, info) -> Atoms:
    symbols = [metal if s == 'M' else s for s, _ in sites]
    atoms = crystal(symbols, [p for _, p in sites], spacegroup=spacegroup, cellpar=cellpar, pbc=True)
    atoms.info.pop('spacegroup', None)  # an ase Spacegroup object: keep info plain for extxyz
    atoms.info.update(info, spacegroup=spacegroup, metal=metal)
    return atoms


def _prepare(metal, volume_per_atom, n_atoms, volume_ca):
    metal = check_metal(metal)
    volume_per_atom = check_optional_positive(volume_per_atom, 'volume_per_atom')
    return metal, length_scale(metal, n_atoms, volume_ca, volume_per_atom)


def mh2_cotunnite(metal: str = 'Ca', volume_per_atom: float | None = None) -> Atoms:
    """MH2 in the cotunnite (PbCl2) type, Pnma (No. 62): ambient-pressure CaH2, 12 atoms.

    Default: experimental ambient CaH2 (CaD2 neutron data; a=5.936, b=3.600, c=6.838 Angstrom), M at 4c
    (0.2378, 1/4, 0.1071), H at 4c (0.3573, 1/4, 0.4269) and 4c (0.9737, 1/4, 0.6766). This is the
    zero-pressure cell (12.2 Angstrom^3/atom); pass ``volume_per_atom`` for a compressed start (CaH2 turns into
    the Ni2In type above ~15 GPa).
    """
    a, b, c = 5.936, 3.600, 6.838
    metal, s = _prepare(metal, volume_per_atom, 12, a * b * c)
    sites = [('M', (0.2378, 0.25, 0.1071)), ('H', (0.3573, 0.25, 0.4269)), ('H', (0.9737, 0.25, 0.6766))]
    return _build(metal, sites, 62, [s * a, s * b, s * c, 90, 90, 90], {'prototype': 'MH2-Pnma'})


def mh2_ni2in(metal: str = 'Ca', volume_per_atom: float | None = None) -> Atoms:
    """MH2 in the Ni2In type, P6_3/mmc (No. 194): high-pressure CaH2, 6 atoms.

    M at 2c (1/3, 2/3, 1/4), H at 2a (0, 0, 0) and 2d (1/3, 2/3, 3/4). Default a=3.54, c=4.53 Angstrom
    (24.6 Angstrom^3 per CaH2, 8.2 Angstrom^3/atom): an approximate starting point for ~40 GPa, not a
    literature value.
    """
    a, c = 3.54, 4.53
    metal, s = _prepare(metal, volume_per_atom, 6, np.sqrt(3) / 2 * a * a * c)
    sites = [('M', (1 / 3, 2 / 3, 0.25)), ('H', (0.0, 0.0, 0.0)), ('H', (1 / 3, 2 / 3, 0.75))]
    return _build(metal, sites, 194, [s * a, s * a, s * c, 90, 90, 120], {'prototype': 'MH2-P63mmc'})


def mh4_i4mmm(metal: str = 'Ca', volume_per_atom: float | None = None) -> Atoms:
    """MH4 in I4/mmm (No. 139) with H2-like units (CaH4 found above ~25 GPa, Wu et al. JCP 150, 044507 (2019)).

    M at 2a (0, 0, 0), atomic H at 4d (0, 1/2, 1/4), molecular H at 4e (0, 0, z) with z chosen so that the
    H-H distance is 0.80 Angstrom after any scaling. Default a=3.00, c=6.20 Angstrom (27.9 Angstrom^3 per
    CaH4, ~240 g H2 per litre, close to the 250 g/L quoted for CaH4): an approximate starting point for
    ~40 GPa. 10 atoms.
    """
    a, c = 3.00, 6.20
    metal, s = _prepare(metal, volume_per_atom, 10, a * a * c)
    z = 0.5 - MH4_H2_BOND / (2 * s * c)
    sites = [('M', (0.0, 0.0, 0.0)), ('H', (0.0, 0.5, 0.25)), ('H', (0.0, 0.0, z))]
    return _build(metal, sites, 139, [s * a, s * a, s * c, 90, 90, 90], {'prototype': 'MH4-I4mmm'})


def mh6_clathrate(metal: str = 'Ca', volume_per_atom: float | None = None) -> Atoms:
    """MH6 sodalite-like clathrate, Im-3m (No. 229): M at 2a (0, 0, 0), H at 12d (1/4, 0, 1/2); 14 atoms.

    Default a=3.90 Angstrom (H-H 1.38 Angstrom): an approximate ~40 GPa starting point, extrapolated from
    CaH6 measured at a~3.5 Angstrom near 170 GPa (Ma et al., PRL 128, 167001 (2022)). CaH6 is not stable at
    40 GPa; it is in the training domain as the H-rich end member.
    """
    a = 3.90
    metal, s = _prepare(metal, volume_per_atom, 14, a**3)
    sites = [('M', (0.0, 0.0, 0.0)), ('H', (0.25, 0.0, 0.5))]
    return _build(metal, sites, 229, [s * a, s * a, s * a, 90, 90, 90], {'prototype': 'MH6-Im-3m'})


PROTOTYPES: dict[str, Callable[..., Atoms]] = {
    'MH2-Pnma': mh2_cotunnite,
    'MH2-P63mmc': mh2_ni2in,
    'MH4-I4mmm': mh4_i4mmm,
    'MH6-Im-3m': mh6_clathrate,
}


def bulk_phase(name: str, metal: str = 'Ca', volume_per_atom: float | None = None) -> Atoms:
    """Build the prototype called ``name`` (a key of :data:`PROTOTYPES`) for ``metal``."""
    check_choice(name, 'name', PROTOTYPES)
    return PROTOTYPES[name](metal=metal, volume_per_atom=volume_per_atom)


def primitive_cell(atoms: Atoms, symprec: float = 1e-3) -> Atoms:
    """The spglib primitive cell of ``atoms`` (e.g. 5 atoms for the 10-atom I4/mmm MH4 cell); ``info`` is kept."""
    import spglib

    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    found = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False, symprec=symprec)
    if found is None:
        raise ValueError(f'atoms: spglib found no symmetry cell at symprec={symprec}')
    lattice, scaled_positions, numbers = found
    return Atoms(numbers=numbers, cell=lattice, scaled_positions=scaled_positions, pbc=True, info=dict(atoms.info))
