"""Samplers that widen the training domain: rattled, strained, off-stoichiometric and liquid-like cells.

All take a ``seed`` (numpy ``default_rng``), are reproducible, and never modify their input.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from ._geometry import PlacementError, far_enough
from ._validate import (
    check_atoms,
    check_metal,
    check_non_negative,
    check_optional_positive,
    check_positive,
    check_positive_int,
    check_seed,
)
from .phases import PROTOTYPES

__all__ = [
    'LIQUID_MIN_DISTANCE_CA',
    'X_RANGE',
    'default_volume_per_atom',
    'liquid_like',
    'off_stoichiometric',
    'rattle',
    'strain',
]

#: Allowed H/M ratios of the samplers.
X_RANGE = (2.0, 6.0)
#: Minimum distances (Angstrom) of liquid_like for M = Ca; M-M and M-H scale with the metal's covalent radius.
LIQUID_MIN_DISTANCE_CA = {'M-M': 2.4, 'M-H': 1.5, 'H-H': 0.7}
_MAX_ATTEMPTS = 5000


def rattle(atoms: Atoms, stdev: float = 0.05, seed: int = 0) -> Atoms:
    """Copy of ``atoms`` with Gaussian displacements of standard deviation ``stdev`` (Angstrom) per component."""
    check_atoms(atoms)
    stdev = check_non_negative(stdev, 'stdev')
    rng = np.random.default_rng(check_seed(seed))
    new = atoms.copy()
    new.positions += rng.normal(0.0, stdev, size=(len(new), 3))
    new.info.update(sampler='rattle', stdev=stdev, seed=int(seed))
    return new


def strain(atoms: Atoms, max_strain: float = 0.05, seed: int = 0) -> Atoms:
    """Copy of ``atoms`` under a random symmetric strain, components uniform in [-max_strain, max_strain].

    The cell becomes cell @ (1 + eps); atoms keep their fractional coordinates. ``max_strain`` < 0.5.
    """
    check_atoms(atoms)
    max_strain = check_non_negative(max_strain, 'max_strain')
    if max_strain >= 0.5:
        raise ValueError(f'max_strain must be below 0.5, got {max_strain!r}')
    rng = np.random.default_rng(check_seed(seed))
    upper = np.triu(rng.uniform(-max_strain, max_strain, size=(3, 3)))
    eps = upper + np.triu(upper, 1).T
    new = atoms.copy()
    new.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + eps), scale_atoms=True)
    new.info.update(sampler='strain', strain=eps.ravel().tolist(), seed=int(seed))
    return new


def _check_x(x) -> float:
    if isinstance(x, bool) or not isinstance(x, Real) or not X_RANGE[0] <= float(x) <= X_RANGE[1]:
        raise ValueError(f'x must be a number between {X_RANGE[0]:g} and {X_RANGE[1]:g} (H/M ratio), got {x!r}')
    return float(x)


def _n_hydrogen(x: float, n_metal: int) -> int:
    n_h = x * n_metal
    if abs(n_h - round(n_h)) > 1e-8:
        raise ValueError(f'x={x:g} needs {n_h:g} H for {n_metal} metal atoms; choose x so that x * n_metal is whole')
    return round(n_h)


def _infer_metal(atoms: Atoms, metal: str | None) -> str:
    species = sorted(set(atoms.get_chemical_symbols()) - {'H'})
    if metal is None:
        if len(species) != 1:
            raise ValueError(f'metal must be given when atoms do not hold exactly one metal species, found {species}')
        return species[0]
    metal = check_metal(metal)
    if metal not in species:
        raise ValueError(f'metal: {metal!r} is not in atoms ({atoms.get_chemical_formula()})')
    return metal


def _add_atoms(cell, existing, existing_cut, new_cut_to, n, rng):
    """Random positions for n atoms; ``existing_cut`` per existing atom, ``new_cut_to`` between new atoms."""
    others, cutoffs = np.asarray(existing, dtype=float).reshape(-1, 3), np.asarray(existing_cut, dtype=float)
    added = []
    for k in range(n):
        for _ in range(_MAX_ATTEMPTS):
            trial = rng.random(3) @ cell
            if far_enough(trial, others, cell, cutoffs):
                break
        else:
            raise PlacementError(k, n, _MAX_ATTEMPTS)
        added.append(trial)
        others = np.vstack([others, trial])
        cutoffs = np.append(cutoffs, new_cut_to)
    return np.array(added).reshape(-1, 3)


def off_stoichiometric(
    atoms: Atoms, x: float, metal: str | None = None, seed: int = 0, min_distance: float = 0.7
) -> Atoms:
    """Copy of ``atoms`` with H removed or added at random so that H/M = ``x`` exactly (2 <= x <= 6).

    ``metal`` defaults to the only non-H species. Removed H are chosen uniformly; added H are put at uniform
    random positions at least ``min_distance`` (Angstrom, minimum image) from every atom. Other per-atom arrays
    are kept for existing atoms and set to zero for added ones.
    """
    check_atoms(atoms)
    x = _check_x(x)
    metal = _infer_metal(atoms, metal)
    min_distance = check_positive(min_distance, 'min_distance')
    rng = np.random.default_rng(check_seed(seed))
    symbols = np.array(atoms.get_chemical_symbols())
    n_target = _n_hydrogen(x, int((symbols == metal).sum()))
    h_index = np.flatnonzero(symbols == 'H')
    new = atoms.copy()
    if n_target < len(h_index):
        del new[sorted(rng.choice(h_index, size=len(h_index) - n_target, replace=False).tolist())]
    elif n_target > len(h_index):
        n_add = n_target - len(h_index)
        try:
            positions = _add_atoms(
                new.cell[:], new.positions, np.full(len(new), min_distance), min_distance, n_add, rng
            )
        except PlacementError as err:
            raise ValueError(
                f'x={x:g} is impossible here: could place only {err.placed} of {n_add} extra H at min_distance='
                f'{min_distance} Angstrom from all atoms; lower x or min_distance, or use a larger cell'
            ) from None
        new += Atoms(['H'] * n_add, positions=positions)
    new.info.update(sampler='off_stoichiometric', x=x, seed=int(seed))
    return new


def default_volume_per_atom(metal: str, x: float) -> float:
    """Volume per atom (Angstrom^3) of MH_x interpolated linearly in x between the prototypes' volumes per MH_x.

    Uses MH2 P6_3/mmc, MH4 I4/mmm and MH6 Im-3m at their default (~40 GPa, covalent-radius scaled) geometry.
    """
    metal, x = check_metal(metal), _check_x(x)
    xs, per_formula = [], []
    for name in ('MH2-P63mmc', 'MH4-I4mmm', 'MH6-Im-3m'):
        bulk = PROTOTYPES[name](metal)
        n_metal = bulk.get_chemical_symbols().count(metal)
        xs.append((len(bulk) - n_metal) / n_metal)
        per_formula.append(bulk.get_volume() / n_metal)
    return float(np.interp(x, xs, per_formula) / (1.0 + x))


def liquid_like(
    metal: str = 'Ca',
    x: float = 4.0,
    n_metal: int = 4,
    volume_per_atom: float | None = None,
    seed: int = 0,
    min_distance: Mapping[str, float] | None = None,
) -> Atoms:
    """Disordered (liquid-like, high-T) cubic cell of composition MH_x with ``n_metal`` metal atoms.

    Metal atoms, then H atoms, are placed uniformly at random subject to minimum distances (Angstrom,
    minimum image) given by ``min_distance`` with keys 'M-M', 'M-H', 'H-H'; missing keys default to
    2.4, 1.5 and 0.7 Angstrom for Ca, the first two scaled by r_cov(M) / r_cov(Ca). ``volume_per_atom``
    (Angstrom^3/atom) defaults to :func:`default_volume_per_atom` (the ~40 GPa prototypes interpolated in x).
    """
    metal = check_metal(metal)
    x = _check_x(x)
    n_metal = check_positive_int(n_metal, 'n_metal')
    n_h = _n_hydrogen(x, n_metal)
    volume_per_atom = check_optional_positive(volume_per_atom, 'volume_per_atom') or default_volume_per_atom(metal, x)
    rng = np.random.default_rng(check_seed(seed))
    ratio = covalent_radii[atomic_numbers[metal]] / covalent_radii[atomic_numbers['Ca']]
    dmin = {k: v * (ratio if 'M' in k else 1.0) for k, v in LIQUID_MIN_DISTANCE_CA.items()}
    if min_distance is not None:
        if not isinstance(min_distance, Mapping) or not set(min_distance) <= set(dmin):
            raise ValueError(
                f"min_distance must be a mapping with keys among 'M-M', 'M-H', 'H-H', got {min_distance!r}"
            )
        dmin.update({k: check_positive(v, f'min_distance[{k!r}]') for k, v in min_distance.items()})

    n_atoms = n_metal + n_h
    cell = np.eye(3) * (volume_per_atom * n_atoms) ** (1.0 / 3.0)
    try:
        metals = _add_atoms(cell, np.zeros((0, 3)), [], dmin['M-M'], n_metal, rng)
        hydrogens = _add_atoms(cell, metals, np.full(n_metal, dmin['M-H']), dmin['H-H'], n_h, rng)
    except PlacementError as err:
        raise ValueError(
            f'volume_per_atom={volume_per_atom:.3f} Angstrom^3 is too small for min_distance={dmin}: random '
            f'placement stopped at {err.placed} of {err.wanted} atoms; raise volume_per_atom or lower min_distance'
        ) from None
    atoms = Atoms([metal] * n_metal + ['H'] * n_h, positions=np.vstack([metals, hydrogens]), cell=cell, pbc=True)
    atoms.info.update(sampler='liquid_like', metal=metal, x=x, volume_per_atom=volume_per_atom, seed=int(seed))
    return atoms
