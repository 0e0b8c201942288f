"""Mean squared displacement and diffusion coefficients, per species and per region (condensed / reservoir).

Positions are unwrapped from consecutive frames: each step's displacement is the minimum-image one (fractional
difference rounded to the nearest lattice vector, applied with the earlier frame's cell), so frames must be close
enough that no atom moves more than half a cell height between them. MSD in Angstrom^2, time in ps, D in
Angstrom^2/ps (1 Angstrom^2/ps = 1e-4 cm^2/s).
"""

from __future__ import annotations

import numpy as np

from ._common import check_axis, check_frames, check_metal_present, frame_times
from .profiles import condensed_region

__all__ = [
    'A2_PER_PS_TO_CM2_PER_S',
    'diffusion_coefficient',
    'mean_squared_displacement',
    'region_diffusivity',
    'unwrap_positions',
]

A2_PER_PS_TO_CM2_PER_S = 1e-4


def unwrap_positions(frames) -> np.ndarray:
    """Unwrapped Cartesian positions (n_frames, n_atoms, 3), Angstrom, continuous across periodic boundaries."""
    frames = check_frames(frames)
    unwrapped = np.empty((len(frames), len(frames[0]), 3))
    unwrapped[0] = frames[0].positions
    for t in range(1, len(frames)):
        previous, current = frames[t - 1], frames[t]
        step = current.cell.scaled_positions(current.positions) - previous.cell.scaled_positions(previous.positions)
        step -= np.round(step)
        unwrapped[t] = unwrapped[t - 1] + step @ previous.cell.array
    return unwrapped


def _msd_window(positions: np.ndarray) -> np.ndarray:
    """Time-origin averaged MSD per particle (n_lags, n_particles) of unwrapped positions (freud, FFT)."""
    import freud

    msd = freud.msd.MSD(mode='window')
    msd.compute(np.ascontiguousarray(positions, dtype=np.float64))
    return np.asarray(msd.particle_msd, dtype=float)


def mean_squared_displacement(frames, species=None, frame_interval_ps: float | None = None) -> dict:
    """MSD(t) per species, averaged over atoms and over all time origins (``freud.msd.MSD``, mode 'window').

    ``species`` (list of symbols) defaults to all present. Returns ``time_ps`` (lags, from 0) and ``msd``
    (dict species -> Angstrom^2 per lag).
    """
    frames = check_frames(frames)
    times = frame_times(frames, frame_interval_ps)
    if len(times) > 2 and np.ptp(np.diff(times)) > 1e-6 * np.mean(np.diff(times)):
        raise ValueError('frames: the MSD over time origins needs equally spaced frames')
    symbols = np.array(frames[0].get_chemical_symbols())
    species = sorted(set(symbols)) if species is None else list(species)
    for s in species:
        if s not in symbols:
            raise ValueError(f'species: {s!r} is not among the atoms ({frames[0].get_chemical_formula()})')
    per_atom = _msd_window(unwrap_positions(frames))
    return {'time_ps': times - times[0], 'msd': {s: per_atom[:, symbols == s].mean(axis=1) for s in species}}


def diffusion_coefficient(
    time_ps, msd, fit_start_ps: float | None = None, fit_end_ps: float | None = None, dimensions: int = 3
) -> dict:
    """D from the slope of MSD(t) = 2 * dimensions * D * t + c over [fit_start_ps, fit_end_ps].

    The default window, 10 % to 50 % of the longest lag, skips the ballistic start and the poorly averaged tail.
    Returns ``D_A2_per_ps``, ``D_cm2_per_s``, ``intercept_A2`` and the window used.
    """
    time_ps, msd = np.asarray(time_ps, dtype=float), np.asarray(msd, dtype=float)
    if time_ps.ndim != 1 or time_ps.shape != msd.shape:
        raise ValueError(f'msd: shape {msd.shape} does not match time_ps {time_ps.shape} (1-D)')
    if dimensions not in (1, 2, 3):
        raise ValueError(f'dimensions must be 1, 2 or 3, got {dimensions!r}')
    start = 0.1 * time_ps.max() if fit_start_ps is None else float(fit_start_ps)
    end = 0.5 * time_ps.max() if fit_end_ps is None else float(fit_end_ps)
    window = (time_ps >= start) & (time_ps <= end)
    if window.sum() < 2:
        raise ValueError(f'fit_start_ps, fit_end_ps: the window [{start}, {end}] ps holds fewer than two lags')
    slope, intercept = np.polyfit(time_ps[window], msd[window], 1)
    d = slope / (2 * dimensions)
    return {
        'D_A2_per_ps': float(d),
        'D_cm2_per_s': float(d * A2_PER_PS_TO_CM2_PER_S),
        'intercept_A2': float(intercept),
        'fit_start_ps': start,
        'fit_end_ps': end,
    }


def region_diffusivity(
    frames,
    metal: str,
    window: int,
    stride: int | None = None,
    axis: int = 2,
    margin: float = 0.0,
    max_gap: float | None = None,
    frame_interval_ps: float | None = None,
) -> dict:
    """MSD and D per region and species, atoms classified by where they are at the start of each window.

    Windows of ``window`` frames start every ``stride`` frames (default ``window``: no overlap). At each window's
    first frame, atoms inside the condensed region (:func:`profiles.condensed_region`, with ``margin``) are
    'condensed', the others 'reservoir'; their MSD from that frame is averaged over atoms and windows. D is the
    slope of that MSD from the first lag to the end of the window (``diffusion_coefficient``).
    Returns ``time_ps`` (lags), ``msd`` {region: {species: Angstrom^2}}, ``n_atoms`` {region: {species: atoms
    averaged per window}}, ``D_A2_per_ps`` and ``D_cm2_per_s`` {region: {species: value or NaN}}, ``n_windows``.
    """
    frames = check_frames(frames)
    metal = check_metal_present(metal, frames[0])
    axis = check_axis(axis)
    if isinstance(window, bool) or not isinstance(window, int) or not 3 <= window <= len(frames):
        raise ValueError(f'window must be an integer number of frames between 3 and {len(frames)}, got {window!r}')
    stride = window if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f'stride must be a positive integer number of frames, got {stride!r}')
    times = frame_times(frames, frame_interval_ps)
    positions = unwrap_positions(frames)
    symbols = np.array(frames[0].get_chemical_symbols())
    species = sorted(set(symbols))
    regions = ('condensed', 'reservoir')
    sums = {r: {s: np.zeros(window) for s in species} for r in regions}
    counts = {r: {s: 0 for s in species} for r in regions}
    starts = range(0, len(frames) - window + 1, stride)
    for start in starts:
        inside = condensed_region(frames[start], metal, axis=axis, margin=margin, max_gap=max_gap)['mask']
        sq = ((positions[start : start + window] - positions[start]) ** 2).sum(axis=2)  # (window, n_atoms)
        for region, selected in zip(regions, (inside, ~inside), strict=True):
            for s in species:
                chosen = selected & (symbols == s)
                sums[region][s] += sq[:, chosen].sum(axis=1)
                counts[region][s] += int(chosen.sum())
    lags = times[:window] - times[0]
    msd, d_a2, d_cm2, n_atoms = {}, {}, {}, {}
    for region in regions:
        msd[region], d_a2[region], d_cm2[region], n_atoms[region] = {}, {}, {}, {}
        for s in species:
            n_atoms[region][s] = counts[region][s] / len(starts)
            if counts[region][s] == 0:
                msd[region][s] = np.full(window, np.nan)
                d_a2[region][s] = d_cm2[region][s] = float('nan')
                continue
            msd[region][s] = sums[region][s] / counts[region][s]
            fit = diffusion_coefficient(lags, msd[region][s], fit_start_ps=lags[1], fit_end_ps=lags[-1])
            d_a2[region][s], d_cm2[region][s] = fit['D_A2_per_ps'], fit['D_cm2_per_s']
    return {
        'time_ps': lags,
        'msd': msd,
        'n_atoms': n_atoms,
        'D_A2_per_ps': d_a2,
        'D_cm2_per_s': d_cm2,
        'n_windows': len(starts),
    }
