"""Which phase formed: composition (H/M of the condensed region) plus the metal sublattice matched to prototypes.

Metal sublattice, two views (hydrogen is ignored: its positions are the least reliable part of a hot frame):

- environment fingerprint: for every metal atom the distances to its 14 nearest metal atoms, sorted and divided
  by their mean (scale-free, so compression does not matter). The fingerprint of each prototype's metal sublattice
  (all have one metal site) is compared with each atom's; ``env_rms`` is the median over atoms of the RMS
  difference. Ideal prototypes differ by >= 0.035, cells rattled by 0.05-0.1 Angstrom stay within ~0.04 of their
  own, liquid-like cells are >= 0.075 from all of them. Robust to rattling, supercells and slabs (only atoms
  away from the faces are used).
- space group of the metal atoms alone (spglib) over a tolerance sweep (``SYMPREC_SWEEP``, Angstrom); the
  reported group is the longest run of one group other than P1 (ties: the tighter tolerance). A rattled cell
  often shows a pseudo-symmetric supergroup or P1, so the group only adds a bonus, it never decides alone.

Scores per prototype: ``environment`` = exp(-(env_rms / 0.03)^2), ``composition`` =
exp(-(x - x_proto)^2 / 2) with x = H/M, ``spacegroup`` = 1 if the metal group is the prototype's, else
``SPACEGROUP_MISS`` (0.75); ``total`` is their product. Verdict: the best total, provided its env_rms <=
``ENV_MATCH`` (0.05) and ``|x - x_proto|`` <= ``COMPOSITION_TOLERANCE`` (1.0); if no prototype's environment
matches and the metal sublattice is disordered (mean q6-bar < ``LIQUID_Q6``) it is 'liquid', otherwise 'unknown'.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
from ase import Atoms

from ..structures import PROTOTYPES
from ._common import check_axis, check_frame, check_metal_present, freud_system, normal_coordinates
from .melting import metal_q6, nearest_metal_distance
from .profiles import condensed_region, in_region

__all__ = [
    'COMPOSITION_TOLERANCE',
    'ENV_MATCH',
    'LIQUID_Q6',
    'N_FINGERPRINT',
    'SPACEGROUP_MISS',
    'SYMPREC_SWEEP',
    'identify_phase',
    'metal_environment_fingerprint',
    'metal_spacegroup',
]

N_FINGERPRINT = 14
SYMPREC_SWEEP = (0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
ENV_MATCH = 0.05
ENV_SCALE = 0.03
COMPOSITION_TOLERANCE = 1.0
SPACEGROUP_MISS = 0.75
LIQUID_Q6 = 0.3


def metal_environment_fingerprint(frame: Atoms, metal: str, n_neighbors: int = N_FINGERPRINT) -> np.ndarray:
    """(n_metal, n_neighbors): sorted distances to the nearest metal atoms, each row divided by its mean."""
    import freud

    frame = check_frame(frame)
    metal = check_metal_present(metal, frame)
    metal_atoms = frame[np.array(frame.get_chemical_symbols()) == metal]
    radius = 2.0 * (3.0 * 2 * n_neighbors * abs(metal_atoms.cell.volume) / (4 * np.pi * len(metal_atoms))) ** (1 / 3)
    box, points = freud_system(metal_atoms, radius)
    neighbors = (
        freud.locality.AABBQuery(box, points)
        .query(points[: len(metal_atoms)], {'num_neighbors': n_neighbors, 'exclude_ii': True})
        .toNeighborList()
    )
    distances = np.sort(np.asarray(neighbors.distances).reshape(len(metal_atoms), n_neighbors), axis=1)
    return distances / distances.mean(axis=1, keepdims=True)


@lru_cache(maxsize=64)
def _prototype_reference(name: str, metal: str) -> tuple[np.ndarray, int, float]:
    """Fingerprint of the prototype's metal site, space group number of its metal sublattice, and its H/M."""
    bulk = PROTOTYPES[name](metal)
    metal_atoms = bulk[np.array(bulk.get_chemical_symbols()) == metal]
    number = metal_spacegroup(metal_atoms, metal, symprecs=(1e-3,))['number']
    n_metal = len(metal_atoms)
    return metal_environment_fingerprint(bulk, metal)[0], int(number), (len(bulk) - n_metal) / n_metal


def metal_spacegroup(frame: Atoms, metal: str, symprecs=SYMPREC_SWEEP) -> dict:
    """Space group of the metal atoms alone over a tolerance sweep (``symprecs``, Angstrom, increasing).

    Returns ``{'number', 'symbol', 'symprec'}`` of the longest run of one group other than P1 (ties: tighter
    tolerance; P1 if nothing else is found) and ``'sweep'``: [(symprec, number), ...].
    """
    import spglib

    frame = check_frame(frame)
    metal = check_metal_present(metal, frame)
    metal_atoms = frame[np.array(frame.get_chemical_symbols()) == metal]
    cell = (metal_atoms.cell.array, metal_atoms.get_scaled_positions(), metal_atoms.numbers)
    sweep, symbols = [], {1: 'P1'}
    for symprec in symprecs:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', DeprecationWarning)  # spglib 2.5+: about its error handling
            try:
                dataset = spglib.get_symmetry_dataset(cell, symprec=float(symprec))
            except Exception:  # spglib.SpglibError once its new error handling is the default
                dataset = None
        number = 1 if dataset is None else int(dataset.number)
        if dataset is not None:
            symbols[number] = dataset.international
        sweep.append((float(symprec), number))
    best, best_len, best_symprec, run_start = 1, 0, sweep[0][0], 0
    for i in range(1, len(sweep) + 1):
        if i == len(sweep) or sweep[i][1] != sweep[run_start][1]:
            number, length = sweep[run_start][1], i - run_start
            if number != 1 and length > best_len:
                best, best_len, best_symprec = number, length, sweep[run_start][0]
            run_start = i
    return {'number': best, 'symbol': symbols[best], 'symprec': best_symprec, 'sweep': sweep}


def identify_phase(frame: Atoms, metal: str, axis: int = 2, max_gap: float | None = None) -> dict:
    """Identify the phase of the condensed region of ``frame`` (a bulk cell or a slab/H2 interface).

    Returns ``{'verdict': 'MH2-Pnma' | 'MH2-P63mmc' | 'MH4-I4mmm' | 'MH6-Im-3m' | 'liquid' | 'unknown',
    'h_per_metal', 'metal_spacegroup' (symbol), 'metal_spacegroup_number', 'mean_q6', 'scores' {prototype:
    {'env_rms', 'environment', 'composition', 'spacegroup', 'total'}}}``. See the module docstring for the rules.
    """
    frame = check_frame(frame)
    metal = check_metal_present(metal, frame)
    axis = check_axis(axis)
    region = condensed_region(frame, metal, axis=axis, max_gap=max_gap)
    n_h = int(np.count_nonzero(region['mask'] & (frame.numbers == 1)))
    x = n_h / region['n_metal']

    symbols = np.array(frame.get_chemical_symbols())
    condensed = frame[region['mask']]  # slab part only: reservoir H2 and dissolved metal are left out
    group = metal_spacegroup(condensed, metal)
    fingerprints = metal_environment_fingerprint(condensed, metal)
    q6 = metal_q6(condensed, metal)
    interior = np.ones(len(fingerprints), dtype=bool)
    if region['has_surfaces']:
        # atoms within 1.4 nearest-neighbour distances of a face have truncated shells: use the others
        skin = 1.4 * nearest_metal_distance(condensed, metal)
        z, height = normal_coordinates(frame, axis)
        z_metal = z[region['mask'] & (symbols == metal)]
        inner = in_region(z_metal, region['lower'] + skin, region['thickness'] - 2 * skin, height)
        if region['thickness'] > 2 * skin and inner.any():
            interior = inner
    scores = {}
    for name in PROTOTYPES:
        reference, number, x_proto = _prototype_reference(name, metal)
        rms = float(np.median(np.sqrt(((fingerprints[interior] - reference) ** 2).mean(axis=1))))
        score = {
            'env_rms': rms,
            'environment': float(np.exp(-((rms / ENV_SCALE) ** 2))),
            'composition': float(np.exp(-0.5 * (x - x_proto) ** 2)),
            'spacegroup': 1.0 if group['number'] == number else SPACEGROUP_MISS,
        }
        score['total'] = score['environment'] * score['composition'] * score['spacegroup']
        scores[name] = score
    best = max(scores, key=lambda name: scores[name]['total'])
    mean_q6 = float(np.mean(q6[interior]))
    if scores[best]['env_rms'] <= ENV_MATCH and abs(x - _prototype_reference(best, metal)[2]) <= COMPOSITION_TOLERANCE:
        verdict = best
    elif min(score['env_rms'] for score in scores.values()) > ENV_MATCH and mean_q6 < LIQUID_Q6:
        verdict = 'liquid'
    else:
        verdict = 'unknown'
    return {
        'verdict': verdict,
        'h_per_metal': x,
        'metal_spacegroup': group['symbol'],
        'metal_spacegroup_number': group['number'],
        'mean_q6': mean_q6,
        'scores': scores,
    }
