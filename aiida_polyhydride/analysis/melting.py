"""Crystalline order of the metal sublattice per layer along the slab normal, and the molten-layer thickness.

Order parameter: Steinhardt q6 of each metal atom from the metal atoms within a first-shell cutoff, averaged
over the atom and those neighbours (Lechner-Dellago q6-bar; ``freud.order.Steinhardt(6, average=True)``). Hydrogen
is ignored: it is the metal sublattice that melts or stays crystalline. q6-bar is about 0.42-0.54 for the metal
sublattices of the MH2/MH4/MH6 prototypes and about 0.1 for a liquid-like cell, so a threshold halfway between a
crystal and a liquid reference separates them cleanly (:func:`calibrate_q6_threshold`).

Layers: periodic bins of the whole cell along the normal, fixed in fractional coordinates (so an NPT cell that
breathes keeps its bins); a layer's order is the mean q6-bar of the condensed-region metal atoms in it.
Times in ps, lengths in Angstrom.
"""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Real

import numpy as np
from ase import Atoms

from ._common import (
    check_axis,
    check_frame,
    check_frames,
    check_metal_present,
    check_positive,
    frame_times,
    freud_system,
    normal_coordinates,
)
from .profiles import condensed_region, normal_bins

__all__ = [
    'R_MAX_FACTOR',
    'calibrate_q6_threshold',
    'metal_q6',
    'molten_depth',
    'nearest_metal_distance',
    'order_profile',
]

#: Default neighbour cutoff of :func:`metal_q6`, in units of the median nearest metal-metal distance.
R_MAX_FACTOR = 1.35


def _check_r_max(r_max) -> float | None:
    return None if r_max is None else check_positive(r_max, 'r_max')


def nearest_metal_distance(frame: Atoms, metal: str) -> float:
    """Median over the ``metal`` atoms of the distance (Angstrom) to the nearest other metal atom (periodic)."""
    import freud

    frame = check_frame(frame)
    metal = check_metal_present(metal, frame)
    metal_atoms = frame[np.array(frame.get_chemical_symbols()) == metal]
    # a radius that holds ~8 metal atoms at the cell's mean metal density (x 2 for slabs, whose gap lowers it)
    radius = 2.0 * (3.0 * 8 * abs(metal_atoms.cell.volume) / (4 * np.pi * len(metal_atoms))) ** (1 / 3)
    box, points = freud_system(metal_atoms, radius)
    query = freud.locality.AABBQuery(box, points).query(
        points[: len(metal_atoms)], {'num_neighbors': 1, 'exclude_ii': True}
    )
    return float(np.median(query.toNeighborList().distances))


def metal_q6(frame: Atoms, metal: str, r_max: float | None = None, average: bool = True) -> np.ndarray:
    """q6 (``average``: q6-bar) of every ``metal`` atom from the metal atoms within ``r_max`` (Angstrom, periodic).

    ``r_max`` defaults to ``R_MAX_FACTOR`` (1.35) x :func:`nearest_metal_distance`: the first shell of the metal
    sublattices of the prototypes (bct MH4: 4 + 8 neighbours; hcp-like MH2: 12; bcc MH6: 8 + 6) and about the
    first minimum of a liquid's g(r). A cutoff, unlike a fixed number of neighbours, keeps the outermost layer of a
    crystal slab crystalline (its atoms simply have fewer neighbours). Atoms with no neighbour get 0. Returns an
    array over the metal atoms in the order they appear in ``frame``; small cells are replicated.
    """
    import freud

    frame = check_frame(frame)
    metal = check_metal_present(metal, frame)
    r_max = _check_r_max(r_max) or R_MAX_FACTOR * nearest_metal_distance(frame, metal)
    metal_atoms = frame[np.array(frame.get_chemical_symbols()) == metal]
    box, points = freud_system(metal_atoms, r_max)
    steinhardt = freud.order.Steinhardt(6, average=bool(average))
    steinhardt.compute((box, points), neighbors={'r_max': r_max, 'exclude_ii': True})
    return np.nan_to_num(np.asarray(steinhardt.particle_order[: len(metal_atoms)], dtype=float))


def calibrate_q6_threshold(crystal, liquid, metal: str, r_max: float | None = None) -> dict:
    """Reference q6-bar of a crystal and of a liquid (ase.Atoms or lists of frames; metal atoms only).

    Returns ``{'solid': mean over the crystal, 'liquid': mean over the liquid, 'threshold': halfway}``. A layer is
    solid when its mean q6-bar is >= threshold.
    """
    means = {}
    for name, frames in (('crystal', crystal), ('liquid', liquid)):
        frames = check_frames(frames, name)
        means[name] = float(np.mean(np.concatenate([metal_q6(f, metal, r_max) for f in frames])))
    if means['crystal'] <= means['liquid']:
        raise ValueError(
            f'crystal: its mean q6 ({means["crystal"]:.3f}) is not above the liquid ({means["liquid"]:.3f})'
        )
    return {
        'solid': means['crystal'],
        'liquid': means['liquid'],
        'threshold': 0.5 * (means['crystal'] + means['liquid']),
    }


def order_profile(
    frames,
    metal: str,
    bin_width: float = 2.0,
    axis: int = 2,
    r_max: float | None = None,
    max_gap: float | None = None,
    frame_interval_ps: float | None = None,
) -> dict:
    """Mean q6-bar of the condensed-region metal atoms per bin along the normal, for every frame (a heat map).

    Returns ``'time_ps'`` (n_frames,), ``'z'`` bin centres (Angstrom, at the mean cell height), ``'bin_width'``
    (Angstrom), ``'q6'`` and ``'n_metal'`` of shape (n_bins, n_frames) (q6 is NaN in bins with no such metal
    atom), and per frame the condensed region ``'lower'``, ``'upper'``, ``'height'`` (Angstrom) and
    ``'has_surfaces'``. Bins are fixed in fractional coordinates; their number comes from frame 0.
    """
    frames = check_frames(frames)
    metal = check_metal_present(metal, frames[0])
    axis = check_axis(axis)
    times = frame_times(frames, frame_interval_ps)
    _, height0 = normal_coordinates(frames[0], axis)
    edges0, _ = normal_bins(height0, bin_width)
    n_bins = len(edges0) - 1
    q6 = np.full((n_bins, len(frames)), np.nan)
    counts = np.zeros((n_bins, len(frames)), dtype=int)
    regions = {'lower': [], 'upper': [], 'height': [], 'has_surfaces': []}
    symbols = np.array(frames[0].get_chemical_symbols())
    is_metal = symbols == metal
    for t, frame in enumerate(frames):
        region = condensed_region(frame, metal, axis=axis, max_gap=max_gap)
        for key in regions:
            regions[key].append(region[key])
        z, height = normal_coordinates(frame, axis)
        values = metal_q6(frame, metal, r_max)
        inside = region['metal_mask'][is_metal]
        bins = np.minimum((z[is_metal][inside] / height * n_bins).astype(int), n_bins - 1)
        counts[:, t] = np.bincount(bins, minlength=n_bins)
        sums = np.bincount(bins, weights=values[inside], minlength=n_bins)
        filled = counts[:, t] > 0
        q6[filled, t] = sums[filled] / counts[filled, t]
    mean_height = float(np.mean(regions['height']))
    return {
        'time_ps': times,
        'z': (np.arange(n_bins) + 0.5) * mean_height / n_bins,
        'bin_width': mean_height / n_bins,
        'q6': q6,
        'n_metal': counts,
        **{key: np.array(value) for key, value in regions.items()},
    }


def _threshold(threshold) -> float:
    if isinstance(threshold, Mapping):
        if 'threshold' not in threshold:
            raise ValueError(
                f"threshold: a mapping needs the key 'threshold' (see calibrate_q6_threshold), got {threshold!r}"
            )
        threshold = threshold['threshold']
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not 0 < float(threshold) < 1:
        raise ValueError(
            f'threshold must be a q6 value between 0 and 1 or a calibrate_q6_threshold dict, got {threshold!r}'
        )
    return float(threshold)


def molten_depth(
    frames,
    metal: str,
    threshold,
    bin_width: float = 2.0,
    axis: int = 2,
    r_max: float | None = None,
    max_gap: float | None = None,
    frame_interval_ps: float | None = None,
) -> dict:
    """Thickness (Angstrom) of the molten layer at the top and at the bottom face of the slab, for every frame.

    ``threshold``: q6-bar value, or the dict of :func:`calibrate_q6_threshold`. A bin of the condensed region (one
    that holds its metal atoms) is solid when its mean q6-bar >= threshold, else liquid. The molten depth at the top
    face is the distance from the top of the condensed region (its highest metal atom) down to the upper edge of the
    highest solid bin, at the bottom face from the lowest metal atom up to the lower edge of the lowest solid bin
    (0 when the outermost bin is solid; accurate to one bin width). With no solid bin both depths are the region's
    thickness and ``all_liquid`` is True. A cell with no metal-free gap has no faces (``has_surfaces`` False): its
    depths are measured from the cell boundaries.

    Returns everything :func:`order_profile` returns plus ``'top'``, ``'bottom'`` (Angstrom, per frame),
    ``'thickness'`` (condensed region, Angstrom), ``'all_liquid'``, ``'liquid_fraction'`` (of the region's bins)
    and ``'state'`` (n_bins, n_frames): 1 liquid, 0 solid, NaN outside the condensed region.
    """
    threshold = _threshold(threshold)
    profile = order_profile(frames, metal, bin_width, axis, r_max, max_gap, frame_interval_ps)
    n_bins, n_frames = profile['q6'].shape
    state = np.full((n_bins, n_frames), np.nan)
    top, bottom, thickness = np.zeros(n_frames), np.zeros(n_frames), np.zeros(n_frames)
    all_liquid, liquid_fraction = np.zeros(n_frames, dtype=bool), np.zeros(n_frames)
    for t in range(n_frames):
        height, lower = profile['height'][t], profile['lower'][t]
        width = height / n_bins
        thickness[t] = profile['upper'][t] - lower
        occupied = np.flatnonzero(profile['n_metal'][:, t] > 0)
        solid = profile['q6'][occupied, t] >= threshold
        state[occupied, t] = np.where(solid, 0.0, 1.0)
        liquid_fraction[t] = 1.0 - solid.mean()
        if not solid.any():
            all_liquid[t] = True
            top[t] = bottom[t] = thickness[t]
            continue
        # bin centres as offsets from the bottom face, unwrapped across the periodic boundary
        offsets = ((occupied + 0.5) * width - lower) % height
        if profile['has_surfaces'][t]:
            offsets[offsets > thickness[t] + width] -= height
        solid_offsets = offsets[solid]
        top[t] = np.clip(thickness[t] - (solid_offsets.max() + 0.5 * width), 0.0, thickness[t])
        bottom[t] = np.clip(solid_offsets.min() - 0.5 * width, 0.0, thickness[t])
    return {
        **profile,
        'threshold': threshold,
        'top': top,
        'bottom': bottom,
        'thickness': thickness,
        'all_liquid': all_liquid,
        'liquid_fraction': liquid_fraction,
        'state': state,
    }
