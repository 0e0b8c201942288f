"""Hydrogen uptake of the slab: H/M in the condensed region versus time, and its rate (per ps)."""

from __future__ import annotations

import numpy as np
from ase.geometry import get_distances

from ._common import check_axis, check_frames, check_metal_present, check_non_negative, check_positive, frame_times
from .profiles import condensed_region

__all__ = ['hydrogen_per_metal', 'hydrogen_uptake', 'uptake_rate']

_CHUNK = 2048


def _nearest_metal_distance(frame, h_index, metal_index) -> np.ndarray:
    """Distance (Angstrom, minimum image) from each H in ``h_index`` to its nearest metal atom of ``metal_index``."""
    nearest = np.empty(len(h_index))
    metal_positions = frame.positions[metal_index]
    for start in range(0, len(h_index), _CHUNK):
        chunk = h_index[start : start + _CHUNK]
        _, distances = get_distances(frame.positions[chunk], metal_positions, cell=frame.cell, pbc=True)
        nearest[start : start + _CHUNK] = distances.min(axis=1)
    return nearest


def hydrogen_per_metal(
    frame,
    metal: str,
    axis: int = 2,
    margin: float = 0.0,
    metal_cutoff: float | None = None,
    max_gap: float | None = None,
) -> dict:
    """H/M of the condensed region of one frame (see :func:`profiles.condensed_region`).

    Counts the H atoms inside [lower - margin, upper + margin] along the normal; with ``metal_cutoff``
    (Angstrom) only those whose nearest metal atom of the region is within it (drops H2 that merely sits in the
    rough surface). Divides by the metal atoms of the region. Returns ``h_per_metal``, ``n_h``, ``n_metal`` and
    the region bounds ``lower``, ``upper`` (Angstrom).
    """
    frames = check_frames(frame, 'frame')
    frame = frames[0]
    metal = check_metal_present(metal, frame)
    if metal_cutoff is not None:
        metal_cutoff = check_positive(metal_cutoff, 'metal_cutoff')
    region = condensed_region(
        frame, metal, axis=check_axis(axis), margin=check_non_negative(margin, 'margin'), max_gap=max_gap
    )
    is_h = frame.numbers == 1
    h_index = np.flatnonzero(region['mask'] & is_h)
    if metal_cutoff is not None and len(h_index):
        h_index = h_index[_nearest_metal_distance(frame, h_index, np.flatnonzero(region['metal_mask'])) <= metal_cutoff]
    return {
        'h_per_metal': len(h_index) / region['n_metal'],
        'n_h': len(h_index),
        'n_metal': region['n_metal'],
        'lower': region['lower'],
        'upper': region['upper'],
    }


def hydrogen_uptake(
    frames,
    metal: str,
    axis: int = 2,
    margin: float = 0.0,
    metal_cutoff: float | None = None,
    max_gap: float | None = None,
    frame_interval_ps: float | None = None,
) -> dict:
    """H/M of the condensed region for every frame (:func:`hydrogen_per_metal`), against time in ps.

    Returns arrays ``time_ps``, ``h_per_metal``, ``n_h``, ``n_metal``, ``lower``, ``upper`` (Angstrom).
    """
    frames = check_frames(frames)
    times = frame_times(frames, frame_interval_ps)
    rows = [hydrogen_per_metal(f, metal, axis, margin, metal_cutoff, max_gap) for f in frames]
    return {'time_ps': times, **{key: np.array([row[key] for row in rows]) for key in rows[0]}}


def uptake_rate(time_ps, h_per_metal, t_start_ps: float | None = None, t_end_ps: float | None = None) -> dict:
    """Slope of a least-squares line through H/M(t) over [t_start_ps, t_end_ps] (default: all): H/M per ps.

    Returns ``rate_per_ps``, ``stderr_per_ps`` (standard error of the slope), ``intercept``, ``n_points``.
    """
    time_ps = np.asarray(time_ps, dtype=float)
    h_per_metal = np.asarray(h_per_metal, dtype=float)
    if time_ps.ndim != 1 or time_ps.shape != h_per_metal.shape:
        raise ValueError(f'h_per_metal: shape {h_per_metal.shape} does not match time_ps {time_ps.shape} (1-D)')
    lo = -np.inf if t_start_ps is None else float(t_start_ps)
    hi = np.inf if t_end_ps is None else float(t_end_ps)
    window = (time_ps >= lo) & (time_ps <= hi)
    if window.sum() < 2 or np.ptp(time_ps[window]) == 0:
        raise ValueError(f't_start_ps, t_end_ps: the window [{lo}, {hi}] ps holds fewer than two distinct times')
    t, y = time_ps[window], h_per_metal[window]
    slope, intercept = np.polyfit(t, y, 1)
    residuals = y - (slope * t + intercept)
    n = len(t)
    stderr = np.sqrt(residuals @ residuals / (n - 2) / ((t - t.mean()) @ (t - t.mean()))) if n > 2 else np.nan
    return {
        'rate_per_ps': float(slope),
        'stderr_per_ps': float(stderr),
        'intercept': float(intercept),
        'n_points': int(window.sum()),
    }
