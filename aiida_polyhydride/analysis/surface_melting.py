"""One production run of a slab/H2 interface analysed at once: uptake, molten layer, diffusion, phase, uncertainty.

Combines :mod:`.uptake`, :mod:`.melting`, :mod:`.diffusion`, :mod:`.phase` and :mod:`.profiles` over the frames of
one trajectory into flat arrays (for an ArrayData) and a summary of plain numbers (for a Dict), so the workflows'
calcfunctions only convert. Also the (T, P) reaction map of many such summaries. No aiida import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from ase import Atoms

from ..structures import PROTOTYPES, bulk_phase, liquid_like
from ._common import check_frames, check_metal_present, check_non_negative, check_positive
from .diffusion import region_diffusivity
from .melting import calibrate_q6_threshold, molten_depth
from .phase import identify_phase
from .profiles import density_profile
from .selection import class_ratios, classify
from .uptake import hydrogen_uptake, uptake_rate

__all__ = [
    'REACTION_MAP_COLUMNS',
    'analyse_production',
    'prototype_q6_threshold',
    'reaction_map',
    'uncertainty_summary',
]

#: Numeric columns of :func:`reaction_map` (the phase verdict is kept as a separate list of strings).
REACTION_MAP_COLUMNS = (
    'temperature_K',
    'pressure_GPa',
    'initial_h_per_metal',
    'final_h_per_metal',
    'uptake_rate_per_ps',
    'max_molten_depth_A',
    'uncertainty_fraction',
)


def prototype_q6_threshold(phase: str, metal: str, seed: int = 0) -> dict:
    """q6-bar threshold between the ``phase`` prototype's metal sublattice and a liquid-like cell of its composition.

    The crystal reference is the ideal prototype repeated to >= 16 metal atoms, the liquid one
    ``structures.liquid_like`` with 32 metal atoms (``seed``); see :func:`melting.calibrate_q6_threshold`.
    """
    if phase not in PROTOTYPES:
        raise ValueError(f'phase: {phase!r} is not one of {", ".join(PROTOTYPES)}')
    crystal = bulk_phase(phase, metal)
    n_metal = int(np.count_nonzero(crystal.numbers != 1))
    x = (len(crystal) - n_metal) / n_metal
    repeats = int(np.ceil((16 / n_metal) ** (1 / 3)))
    liquid = liquid_like(metal, x, n_metal=32, seed=seed)
    return calibrate_q6_threshold(crystal.repeat(repeats), liquid, metal)


def uncertainty_summary(sigma_f: Sequence[float], lo: float, max_fraction: float, hi: float = np.inf) -> dict:
    """How much of a run the committee doubts: the fraction of frames with sigma_F >= ``lo`` (eV/Angstrom).

    ``extrapolating`` is True when that fraction exceeds ``max_fraction``. Frames without a committee value (NaN:
    a one-model committee) are not counted; with none left ``monitored`` is False and the fraction is None.
    Returns ``fraction_above_lo``, ``extrapolating``, ``monitored``, ``n_frames`` (with a value), ``sigma_f_max``,
    ``sigma_f_mean`` and the accurate / candidate / failed ratios of the trust window [lo, hi).
    """
    lo = check_non_negative(lo, 'sigma_f_lo')
    max_fraction = check_non_negative(max_fraction, 'max_uncertain_fraction')
    sigma = np.asarray(sigma_f, dtype=float)
    sigma = sigma[np.isfinite(sigma)]
    if len(sigma) == 0:
        return {
            'monitored': False,
            'n_frames': 0,
            'fraction_above_lo': None,
            'extrapolating': False,
            'sigma_f_max': None,
            'sigma_f_mean': None,
            'sigma_f_lo': lo,
            'max_uncertain_fraction': max_fraction,
        }
    ratios = class_ratios(classify(sigma, lo, hi))
    fraction = ratios['candidate'] + ratios['failed']
    return {
        'monitored': True,
        'n_frames': len(sigma),
        'fraction_above_lo': fraction,
        'extrapolating': bool(fraction > max_fraction),
        'sigma_f_max': float(sigma.max()),
        'sigma_f_mean': float(sigma.mean()),
        'sigma_f_lo': lo,
        'max_uncertain_fraction': max_fraction,
        **ratios,
    }


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def analyse_production(
    frames: Sequence[Atoms],
    metal: str,
    q6_threshold,
    order_bin_width: float = 2.0,
    density_bin_width: float = 0.5,
    margin: float = 0.0,
    metal_cutoff: float | None = None,
    diffusion_windows: int = 2,
    axis: int = 2,
    frame_interval_ps: float | None = None,
) -> dict:
    """Everything the surface-melting study measures on one trajectory (frames in time order, same atoms).

    - uptake: H/M of the condensed region per frame (:func:`uptake.hydrogen_uptake` with ``margin``,
      ``metal_cutoff``) and its least-squares rate over the run;
    - order: the q6-bar heat map and the molten depth at both faces per frame (:func:`melting.molten_depth`,
      ``q6_threshold`` a number or a calibration dict, bins of ``order_bin_width``);
    - diffusion: MSD and D of H and metal in the condensed region and in the reservoir
      (:func:`diffusion.region_diffusivity`, ``diffusion_windows`` non-overlapping windows; skipped with < 3 frames
      per window);
    - density profiles of every species at the first and the last frame (``density_bin_width``);
    - phase of the final frame (:func:`phase.identify_phase`).

    Returns ``{'arrays': {name: ndarray}, 'phase': identify_phase result, 'summary': {name: number | str | None}}``.
    """
    frames = check_frames(frames)
    metal = check_metal_present(metal, frames[0])
    diffusion_windows = int(check_positive(diffusion_windows, 'diffusion_windows'))
    uptake = hydrogen_uptake(frames, metal, axis, margin, metal_cutoff, frame_interval_ps=frame_interval_ps)
    time_ps = uptake['time_ps']
    rate = {'rate_per_ps': np.nan, 'stderr_per_ps': np.nan, 'intercept': uptake['h_per_metal'][0]}
    if len(frames) >= 2:
        rate = uptake_rate(time_ps, uptake['h_per_metal'])
    melt = molten_depth(frames, metal, q6_threshold, order_bin_width, axis, frame_interval_ps=frame_interval_ps)
    depth = np.maximum(melt['top'], melt['bottom'])

    arrays = {
        'time_ps': time_ps,
        'h_per_metal': uptake['h_per_metal'],
        'n_h_condensed': uptake['n_h'],
        'n_metal_condensed': uptake['n_metal'],
        'order_z': melt['z'],
        'order_q6': melt['q6'],
        'order_state': melt['state'],
        'molten_top': melt['top'],
        'molten_bottom': melt['bottom'],
        'molten_depth': depth,
        'slab_thickness': melt['thickness'],
        'liquid_fraction': melt['liquid_fraction'],
    }
    for label, frame in (('initial', frames[0]), ('final', frames[-1])):
        profile = density_profile(frame, density_bin_width, axis)
        arrays[f'density_z_{label}'] = profile['centers']
        for species, density in profile['density'].items():
            arrays[f'density_{species}_{label}'] = density

    diffusivity = {}
    window = len(frames) // diffusion_windows
    if window >= 3:
        diffusion = region_diffusivity(
            frames, metal, window, axis=axis, margin=margin, frame_interval_ps=frame_interval_ps
        )
        arrays['msd_lag_ps'] = diffusion['time_ps']
        for region, per_species in diffusion['msd'].items():
            for species, msd in per_species.items():
                arrays[f'msd_{region}_{species}'] = msd
                diffusivity[f'D_{species}_{region}_A2_per_ps'] = _finite_or_none(
                    diffusion['D_A2_per_ps'][region][species]
                )

    phase = identify_phase(frames[-1], metal, axis)
    summary = {
        'n_frames': len(frames),
        'duration_ps': float(time_ps[-1] - time_ps[0]),
        'initial_h_per_metal': float(uptake['h_per_metal'][0]),
        'final_h_per_metal': float(uptake['h_per_metal'][-1]),
        'uptake_rate_per_ps': _finite_or_none(rate['rate_per_ps']),
        'uptake_rate_stderr_per_ps': _finite_or_none(rate['stderr_per_ps']),
        'uptake_intercept': _finite_or_none(rate['intercept']),
        'max_molten_depth_A': float(depth.max()),
        'final_molten_depth_A': float(depth[-1]),
        'final_liquid_fraction': float(melt['liquid_fraction'][-1]),
        'q6_threshold': float(melt['threshold']),
        'phase': phase['verdict'],
        'phase_h_per_metal': float(phase['h_per_metal']),
        'metal_spacegroup': phase['metal_spacegroup'],
        'diffusion_window_ps': float(arrays['msd_lag_ps'][-1]) if 'msd_lag_ps' in arrays else None,
        **diffusivity,
    }
    return {'arrays': arrays, 'phase': phase, 'summary': summary}


def reaction_map(summaries: Sequence[Mapping]) -> dict:
    """Table of the conditions and outcomes of many runs, sorted by temperature then pressure.

    Each summary needs ``temperature_K``, ``pressure_GPa``, ``initial_h_per_metal``, ``final_h_per_metal``,
    ``uptake_rate_per_ps``, ``max_molten_depth_A``, ``phase`` and may have ``uncertainty_fraction`` (None -> NaN).
    Returns ``{column: ndarray}`` for :data:`REACTION_MAP_COLUMNS` plus ``'phase'`` (list of str) and ``'absorbs'``
    (bool array: the run ended with more H per metal in the condensed region than it started with, and its uptake
    rate is positive; H/M is a ratio of atom counts, so a constant H/M is never mistaken for uptake).
    """
    if not summaries:
        raise ValueError('summaries: need at least one run')
    rows = sorted(summaries, key=lambda row: (row['temperature_K'], row['pressure_GPa']))
    table = {}
    for column in REACTION_MAP_COLUMNS:
        values = [row.get(column) for row in rows]
        table[column] = np.array([np.nan if value is None else float(value) for value in values])
    table['phase'] = [str(row['phase']) for row in rows]
    grew = table['final_h_per_metal'] > table['initial_h_per_metal']
    table['absorbs'] = grew & (np.nan_to_num(table['uptake_rate_per_ps'], nan=0.0) > 0)
    return table
