"""The decisions of the active-learning loop: trust-window calibration, convergence, tracked observables.

Pure numpy/ASE (no AiiDA): ActiveLearningWorkChain calls these through calcfunctions.

Calibration. sigma_F (the committee force deviation, analysis/committee.py) is a proxy for the true error of the
driving model. Each batch of newly labelled frames gives pairs (sigma_F, true error), with the true error measured
like sigma_F: the largest per-atom force error ``max_i |F_i(model) - F_i(DFT)|``. The two are close to proportional
(both scale with how far a frame is from the training data), so the ratio error / sigma_F is estimated
conservatively (a high quantile over the batch) and the lower threshold set so that a frame at the threshold has
an expected true error at the target: lo = target / ratio_quantile. The upper threshold keeps the protocol's
hi / lo ratio. Too few frames, or sigma_F all zero, keep the previous window (recorded as not calibrated).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.units import _amu

__all__ = (
    'OBSERVABLES',
    'calibrate_trust_window',
    'consecutive_converged',
    'iterations_accurate',
    'max_force_error',
    'observable_converged',
    'trajectory_observable',
)


def max_force_error(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Largest per-atom force error ``max_i |F_i(predicted) - F_i(reference)|`` (eV/Angstrom) of one frame."""
    predicted, reference = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    if predicted.shape != reference.shape or predicted.ndim != 2 or predicted.shape[1] != 3:
        raise ValueError(f'forces: need two (n_atoms, 3) arrays, got {predicted.shape} and {reference.shape}')
    return float(np.linalg.norm(predicted - reference, axis=1).max())


def calibrate_trust_window(
    sigma_f: Sequence[float],
    true_error: Sequence[float],
    target_error: float,
    hi_over_lo: float,
    previous: tuple[float, float],
    min_frames: int = 4,
    quantile: float = 0.9,
    bounds: tuple[float, float] = (0.005, 2.0),
) -> dict:
    """A trust window [lo, hi) on sigma_F (eV/Angstrom) such that frames called accurate have true error < target.

    ``sigma_f`` and ``true_error`` (eV/Angstrom) are paired per labelled frame. ``lo`` is clipped into ``bounds``.
    Returns lo, hi, calibrated (bool), reason, n_frames, ratio_quantile, correlation (Pearson), and
    accurate_error_max: the largest true error among the batch's frames below the new lo. Values that are undefined
    (no frame below lo, a constant sigma_F, too few frames) are None, never NaN, so the result can be stored as is.
    """
    sigma, error = np.asarray(sigma_f, dtype=float), np.asarray(true_error, dtype=float)
    if sigma.shape != error.shape or sigma.ndim != 1:
        raise ValueError(f'sigma_f and true_error: need two 1-d arrays of one length, got {sigma.shape}, {error.shape}')
    if target_error <= 0 or hi_over_lo <= 1 or not 0 < quantile <= 1:
        raise ValueError(
            f'need target_error > 0, hi_over_lo > 1 and 0 < quantile <= 1, got {target_error}, {hi_over_lo}, {quantile}'
        )
    usable = np.isfinite(sigma) & np.isfinite(error) & (sigma > 0)
    result = {
        'n_frames': len(sigma),
        'n_usable': int(usable.sum()),
        'target_error': float(target_error),
        'previous_lo': float(previous[0]),
        'previous_hi': float(previous[1]),
        'ratio_quantile': None,
        'correlation': None,
    }
    if usable.sum() < min_frames:
        reason = f'{int(usable.sum())} usable frames (sigma_F > 0, finite), fewer than min_frames={min_frames}'
        return {
            **result,
            'lo': float(previous[0]),
            'hi': float(previous[1]),
            'calibrated': False,
            'reason': reason,
            'accurate_error_max': None,
        }
    sigma, error = sigma[usable], error[usable]
    ratio = float(np.quantile(error / sigma, quantile))
    lo = float(np.clip(target_error / ratio, *bounds)) if ratio > 0 else float(bounds[1])
    below = error[sigma < lo]
    correlation = float(np.corrcoef(sigma, error)[0, 1]) if np.ptp(sigma) > 0 and np.ptp(error) > 0 else None
    return {
        **result,
        'lo': lo,
        'hi': lo * hi_over_lo,
        'calibrated': True,
        'reason': f'{quantile:.0%} quantile of true error / sigma_F = {ratio:.3g}',
        'ratio_quantile': ratio,
        'correlation': correlation,
        'accurate_error_max': float(below.max()) if len(below) else None,
    }


def iterations_accurate(ratios: Mapping[str, Mapping[str, float]], threshold: float) -> bool:
    """True when every exploration system's accurate fraction reaches ``threshold`` (False for no systems)."""
    return bool(ratios) and all(values['accurate'] >= threshold for values in ratios.values())


def consecutive_converged(history: Sequence[bool], n_consecutive: int) -> bool:
    """True when the last ``n_consecutive`` entries of ``history`` (one per iteration) are all True."""
    if n_consecutive < 1:
        raise ValueError(f'n_consecutive must be at least 1, got {n_consecutive}')
    return len(history) >= n_consecutive and all(history[-n_consecutive:])


def observable_converged(values: Sequence[float], tolerance: float) -> bool:
    """True when the last two values (one per committee generation) differ by less than ``tolerance``."""
    return len(values) >= 2 and bool(abs(values[-1] - values[-2]) < tolerance)


def _density_g_cm3(frame: Atoms) -> float:
    return float(frame.get_masses().sum() * _amu * 1e3 / (frame.get_volume() * 1e-24))


def _h_per_metal(frame: Atoms) -> float:
    symbols = np.array(frame.get_chemical_symbols())
    n_metal = int(np.count_nonzero(symbols != 'H'))
    if n_metal == 0:
        raise ValueError('h_per_m: the frame has no metal atom')
    return float(np.count_nonzero(symbols == 'H')) / n_metal


#: observables the loop can track: name -> (per-frame function, unit)
OBSERVABLES = {'density': (_density_g_cm3, 'g/cm^3'), 'h_per_m': (_h_per_metal, '')}


def trajectory_observable(frames: Sequence[Atoms], name: str, discard_fraction: float = 0.5) -> dict:
    """Mean (and standard error) of observable ``name`` over the frames after the first ``discard_fraction``.

    ``density``: mass density of the cell (g/cm^3), meaningful for NPT runs of a bulk system; ``h_per_m``: H per
    metal atom of the cell (for an interface run use the condensed-region H/M of analysis/uptake.py instead).
    """
    if name not in OBSERVABLES:
        raise ValueError(f'observable {name!r} unknown; choose from {", ".join(OBSERVABLES)}')
    if not frames:
        raise ValueError('trajectory_observable: no frames')
    function, unit = OBSERVABLES[name]
    kept = frames[int(len(frames) * discard_fraction) :] or frames[-1:]
    values = np.array([function(frame) for frame in kept])
    stderr = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return {'name': name, 'value': float(values.mean()), 'stderr': stderr, 'n_frames': len(values), 'unit': unit}
