"""Learning curves of nequip-train runs: Lightning CSVLogger ``metrics.csv`` -> per-epoch arrays and final metrics.

nequip logs in the units of the data (eV, eV/Angstrom, eV/Angstrom^3 for the project's extxyz files):
``val0_epoch/per_atom_energy_mae`` is eV/atom, ``val0_epoch/forces_mae`` eV/Angstrom, ``val0_epoch/stress_mae``
eV/Angstrom^3 (RMSE likewise); ``train_loss_epoch/*`` are the loss terms (MSEs, weighted sum). The CSV has one row
per logging event: per-step training rows, one validation row and one epoch-training row per epoch (all with an
``epoch``), and a learning-rate row (``lr-Adam``, no ``epoch``) at the start of each epoch.

Pure numpy/csv (no torch, no AiiDA). A run resumed from ``last.ckpt`` writes a new CSVLogger version
(``metrics/version_1/metrics.csv``); pass all versions in order and later ones replace the epochs they repeat.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = ('FINAL_METRIC_UNITS', 'final_metrics', 'first_nonfinite_epoch', 'parse_metrics_csv', 'sorted_versions')

_VAL_PREFIX = 'val0_epoch/'
_TRAIN_PREFIX = 'train_loss_epoch/'
_LR_PREFIX = 'lr-'

#: final_metrics keys -> (learning-curve key, factor from the logged unit, unit)
_FINAL = {
    'energy_mae': ('val_per_atom_energy_mae', 1000.0, 'meV/atom'),
    'energy_rmse': ('val_per_atom_energy_rmse', 1000.0, 'meV/atom'),
    'forces_mae': ('val_forces_mae', 1000.0, 'meV/Angstrom'),
    'forces_rmse': ('val_forces_rmse', 1000.0, 'meV/Angstrom'),
    'stress_mae': ('val_stress_mae', 1000.0, 'meV/Angstrom^3'),
    'stress_rmse': ('val_stress_rmse', 1000.0, 'meV/Angstrom^3'),
}
#: units of the values :func:`final_metrics` returns
FINAL_METRIC_UNITS = {key: unit for key, (_, _, unit) in _FINAL.items()}


def _column_key(column: str) -> str | None:
    if column.startswith(_VAL_PREFIX):
        return 'val_' + column[len(_VAL_PREFIX) :]
    if column.startswith(_TRAIN_PREFIX):
        name = column[len(_TRAIN_PREFIX) :]
        return 'train_loss' if name == 'weighted_sum' else 'train_' + name
    return None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _read_rows(source) -> list[dict[str, str]]:
    if isinstance(source, (str, Path)) and '\n' not in str(source):
        with open(source, newline='') as handle:
            return list(csv.DictReader(handle))
    text = source if isinstance(source, str) else source.read()
    return list(csv.DictReader(io.StringIO(text)))


def _epoch_values(rows: list[dict[str, str]]) -> dict[int, dict[str, float]]:
    """{epoch: {key: value}} from one CSV; a learning-rate row belongs to the next epoch that appears."""
    epochs: dict[int, dict[str, float]] = {}
    pending_lr: float | None = None
    for row in rows:
        lr_columns = [column for column in row if column and column.startswith(_LR_PREFIX) and row[column]]
        epoch_text = row.get('epoch', '')
        if not epoch_text:
            if lr_columns:
                pending_lr = _float(row[lr_columns[0]])
            continue
        row_values = {}
        for column, text in row.items():
            key = _column_key(column or '')
            if key is not None and text not in ('', None):
                row_values[key] = _float(text)
        if not row_values:
            continue  # e.g. the test-set metrics logged after training: not an epoch of the learning curve
        values = epochs.setdefault(int(float(epoch_text)), {})
        if pending_lr is not None:
            values.setdefault('lr', pending_lr)
            pending_lr = None
        values.update(row_values)
        if any(key.startswith('val_') for key in row_values):
            values['validated'] = True
    return epochs


def sorted_versions(paths: Iterable[str | Path]) -> list[Path]:
    """``metrics.csv`` paths ordered by their CSVLogger version directory (``version_2`` before ``version_10``)."""

    def version(path: Path) -> int:
        match = re.search(r'version_(\d+)', str(path))
        return int(match.group(1)) if match else -1

    return sorted((Path(path) for path in paths), key=version)


def parse_metrics_csv(sources: str | Path | Sequence[str | Path]) -> dict[str, np.ndarray]:
    """Per-epoch arrays from one or more CSVLogger ``metrics.csv`` files (paths or CSV text), in run order.

    Returns ``epoch`` (int), ``train_loss`` (epoch mean of the weighted loss), ``train_<term>`` (loss terms, e.g.
    ``train_forces_mse``), ``val_<metric>`` for every logged validation metric (``val_per_atom_energy_mae``,
    ``val_per_atom_energy_rmse``, ``val_forces_mae``, ``val_forces_rmse``, ``val_stress_mae``, ``val_stress_rmse``,
    ``val_total_energy_*``, ``val_*_maxabserr``, ``val_weighted_sum``) and ``lr`` when logged; values in the logged
    units (eV/atom, eV/Angstrom, eV/Angstrom^3), NaN where an epoch lacks a value. Epochs repeated by a later
    source (a resumed run) take the later values.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    merged: dict[int, dict[str, float]] = {}
    for source in sources:
        for epoch, values in _epoch_values(_read_rows(source)).items():
            merged[epoch] = values
    epochs = sorted(merged)
    keys = sorted({key for values in merged.values() for key in values})
    curve = {'epoch': np.asarray(epochs, dtype=int)}
    for key in keys:
        if key != 'validated':
            curve[key] = np.asarray([merged[epoch].get(key, math.nan) for epoch in epochs], dtype=float)
    curve['validated'] = np.asarray([merged[epoch].get('validated', False) for epoch in epochs], dtype=bool)
    return curve


def first_nonfinite_epoch(curve: dict[str, np.ndarray], key: str = 'val_weighted_sum') -> int | None:
    """The first validated epoch whose ``key`` (default: the validation weighted sum) is NaN or infinite, or None.

    A diverged run logs the literal value ``nan``; epochs without validation (no ``val_*`` logged) do not count.
    """
    if key not in curve:
        return None
    bad = curve['validated'] & ~np.isfinite(curve[key])
    return int(curve['epoch'][np.argmax(bad)]) if bad.any() else None


def final_metrics(curve: dict[str, np.ndarray], epoch: int | str = 'best') -> dict:
    """Validation errors of one epoch in the project's units (meV/atom, meV/Angstrom, meV/Angstrom^3).

    ``epoch``: 'best' (lowest ``val_weighted_sum``, the epoch ``checkpoints/best.ckpt`` holds), 'last', or a
    number. Returns ``energy_mae``, ``energy_rmse`` (per atom), ``forces_mae``, ``forces_rmse``, ``stress_mae``,
    ``stress_rmse`` (None where not logged), ``epoch``, ``n_epochs``, ``val_weighted_sum`` (logged units),
    ``train_loss``, ``lr``, ``finite`` (False when any epoch's validation weighted sum was NaN/inf) and ``units``.
    """
    epochs = curve['epoch']
    if len(epochs) == 0:
        raise ValueError('final_metrics: the learning curve has no epochs')
    has_val = 'val_weighted_sum' in curve and np.any(np.isfinite(curve['val_weighted_sum']))
    if epoch == 'best':
        if not has_val:
            raise ValueError('final_metrics: no finite validation weighted sum to choose the best epoch')
        index = int(np.nanargmin(np.where(np.isfinite(curve['val_weighted_sum']), curve['val_weighted_sum'], np.nan)))
    elif epoch == 'last':
        index = len(epochs) - 1
    else:
        matches = np.flatnonzero(epochs == int(epoch))
        if len(matches) == 0:
            raise ValueError(f'final_metrics: epoch {epoch} is not in the learning curve ({epochs[0]}..{epochs[-1]})')
        index = int(matches[0])

    def value(key: str, factor: float = 1.0):
        if key not in curve or np.isnan(curve[key][index]):
            return None
        return float(curve[key][index]) * factor

    result = {name: value(key, factor) for name, (key, factor, _) in _FINAL.items()}
    result.update(
        {
            'epoch': int(epochs[index]),
            'n_epochs': len(epochs),
            'val_weighted_sum': value('val_weighted_sum'),
            'train_loss': value('train_loss'),
            'lr': value('lr'),
            'finite': first_nonfinite_epoch(curve) is None,
            'units': dict(FINAL_METRIC_UNITS),
        }
    )
    return result
