"""Density profiles along the slab normal and the condensed (metal-containing) region of a slab/H2 interface.

Coordinates along the normal are in Angstrom over [0, height) of the periodic cell (see ``_common``); bins tile the
period exactly, so their width is ``height / round(height / bin_width)``, the nearest to the requested width.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii

from ._common import (
    check_axis,
    check_frame,
    check_metal_present,
    check_non_negative,
    check_positive,
    normal_coordinates,
)

__all__ = ['MAX_GAP_FACTOR', 'condensed_region', 'density_profile', 'in_region', 'normal_bins']

#: Default ``max_gap`` of :func:`condensed_region` is this factor times the metal's covalent radius (Ca: 4.4 A).
MAX_GAP_FACTOR = 2.5


def normal_bins(height: float, bin_width: float) -> tuple[np.ndarray, float]:
    """Bin edges (Angstrom, n + 1 of them, from 0 to ``height``) and the actual width for a requested width."""
    bin_width = check_positive(bin_width, 'bin_width')
    n_bins = max(1, round(height / bin_width))
    return np.linspace(0.0, height, n_bins + 1), height / n_bins


def density_profile(frame: Atoms, bin_width: float = 0.5, axis: int = 2, species=None) -> dict:
    """Number density per species (atoms / Angstrom^3) in periodic bins along the normal (cell vector ``axis``).

    Returns ``{'edges', 'centers'}`` (Angstrom), ``'bin_width'`` (actual, Angstrom), ``'density'`` and ``'counts'``
    (dicts species -> array over bins). ``species`` (list of symbols) defaults to all species present.
    """
    frame = check_frame(frame)
    axis = check_axis(axis)
    z, height = normal_coordinates(frame, axis)
    edges, width = normal_bins(height, bin_width)
    symbols = np.array(frame.get_chemical_symbols())
    if species is None:
        species = sorted(set(symbols))
    elif isinstance(species, str) or not all(isinstance(s, str) and s in atomic_numbers for s in species):
        raise ValueError(f'species must be a list of chemical symbols, got {species!r}')
    bin_volume = abs(frame.cell.volume) / (len(edges) - 1)
    counts = {
        s: np.bincount(np.minimum((z[symbols == s] / width).astype(int), len(edges) - 2), minlength=len(edges) - 1)
        for s in species
    }
    return {
        'edges': edges,
        'centers': 0.5 * (edges[1:] + edges[:-1]),
        'bin_width': width,
        'counts': counts,
        'density': {s: c / bin_volume for s, c in counts.items()},
    }


def in_region(z: np.ndarray, lower: float, thickness: float, height: float, margin: float = 0.0) -> np.ndarray:
    """Boolean mask of coordinates ``z`` in the periodic interval [lower - margin, lower + thickness + margin]."""
    offset = (np.asarray(z) - lower + margin) % height
    return offset <= thickness + 2.0 * margin


def condensed_region(
    frame: Atoms, metal: str, axis: int = 2, margin: float = 0.0, max_gap: float | None = None
) -> dict:
    """Locate the slab: the largest group of metal atoms along the normal with no metal-free stretch > ``max_gap``.

    Metal coordinates along the normal are sorted on the periodic circle; every empty stretch (a gap in the metal
    density profile) longer than ``max_gap`` (Angstrom; default 2.5 x the metal's covalent radius, 4.4 A for Ca)
    separates groups. The condensed region is the group with most metal atoms, from its lowest to its highest metal
    atom. It may straddle the cell boundary: then ``upper`` > ``height`` (``upper = lower + thickness``, with
    ``0 <= lower < height``). Metal atoms dissolved in the reservoir (separate, smaller groups) are not part of it.
    With no gap longer than ``max_gap`` (a bulk cell) the region is the whole cell (``has_surfaces`` False).

    Returns ``lower``, ``upper``, ``thickness``, ``height`` (Angstrom), ``has_surfaces``, ``mask`` (atoms in
    [lower - margin, upper + margin], all species), ``metal_mask`` (the metal atoms of the group) and ``n_metal``.
    """
    frame = check_frame(frame)
    metal = check_metal_present(metal, frame)
    axis = check_axis(axis)
    margin = check_non_negative(margin, 'margin')
    if max_gap is None:
        max_gap = MAX_GAP_FACTOR * float(covalent_radii[atomic_numbers[metal]])
    max_gap = check_positive(max_gap, 'max_gap')

    z, height = normal_coordinates(frame, axis)
    metal_index = np.flatnonzero(np.array(frame.get_chemical_symbols()) == metal)
    order = np.argsort(z[metal_index], kind='stable')
    zm = z[metal_index][order]
    gaps = np.diff(np.append(zm, zm[0] + height))  # gaps[i]: from metal i to the next one (last wraps around)
    breaks = np.flatnonzero(gaps > max_gap)
    metal_mask = np.zeros(len(frame), dtype=bool)
    if len(breaks) == 0:
        metal_mask[metal_index] = True
        mask = np.ones(len(frame), dtype=bool)
        return {
            'lower': 0.0,
            'upper': height,
            'thickness': height,
            'height': height,
            'has_surfaces': False,
            'mask': mask,
            'metal_mask': metal_mask,
            'n_metal': len(metal_index),
        }
    # groups run from the metal after one break to the metal at the next break (circularly)
    starts = (breaks + 1) % len(zm)
    ends = np.roll(breaks, -1)
    sizes = (ends - starts) % len(zm) + 1
    best = int(np.argmax(sizes))
    start, size = int(starts[best]), int(sizes[best])
    members = (start + np.arange(size)) % len(zm)
    lower = float(zm[start])
    thickness = float((zm[members[-1]] - lower) % height)
    metal_mask[metal_index[order[members]]] = True
    return {
        'lower': lower,
        'upper': lower + thickness,
        'thickness': thickness,
        'height': height,
        'has_surfaces': True,
        'mask': in_region(z, lower, thickness, height, margin),
        'metal_mask': metal_mask,
        'n_metal': size,
    }
