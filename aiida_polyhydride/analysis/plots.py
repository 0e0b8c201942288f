"""PNG figures of the workflows' results (matplotlib, Agg backend; no AiiDA): each function returns PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ('force_parity_png', 'learning_history_png')


def _figure(ncols: int = 1, width: float = 4.5, height: float = 3.5):
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * ncols, height), layout='constrained')
    return figure, figure.subplots(1, ncols, squeeze=False)[0]


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=120)
    return buffer.getvalue()


def learning_history_png(iterations: Sequence[Mapping]) -> bytes:
    """Validation force RMSE (meV/Angstrom) and the accurate ratio of each exploration system versus iteration."""
    figure, (errors, ratios) = _figure(ncols=2)
    steps = [record['iteration'] for record in iterations]
    rmse = [record.get('validation_forces_rmse', np.nan) for record in iterations]
    errors.plot(steps, rmse, 'o-')
    errors.set(xlabel='iteration', ylabel='validation force RMSE (meV/Å)', title='committee error')
    systems = sorted({system for record in iterations for system in record.get('ratios', {})})
    for system in systems:
        values = [record.get('ratios', {}).get(system, {}).get('accurate', np.nan) for record in iterations]
        ratios.plot(steps, values, 'o-', label=system)
    ratios.set(xlabel='iteration', ylabel='accurate ratio', ylim=(-0.05, 1.05), title='exploration')
    if systems:
        ratios.legend(fontsize='small')
    for axis in (errors, ratios):
        axis.set_xticks(steps)
    return _png(figure)


def force_parity_png(reference: np.ndarray, predicted: np.ndarray) -> bytes:
    """Predicted versus reference force components (eV/Angstrom), with the RMSE in the title."""
    reference, predicted = np.ravel(reference), np.ravel(predicted)
    if reference.shape != predicted.shape or not len(reference):
        raise ValueError(f'force_parity_png: need two equal non-empty arrays, got {reference.shape}, {predicted.shape}')
    figure, (axis,) = _figure(width=4.0, height=4.0)
    axis.plot(reference, predicted, '.', markersize=3, alpha=0.6)
    limits = [min(reference.min(), predicted.min()), max(reference.max(), predicted.max())]
    axis.plot(limits, limits, 'k--', linewidth=0.8)
    rmse = float(np.sqrt(np.mean((predicted - reference) ** 2)))
    axis.set(xlabel='DFT force (eV/Å)', ylabel='model force (eV/Å)', title=f'force RMSE {1000 * rmse:.0f} meV/Å')
    axis.set_aspect('equal')
    return _png(figure)
