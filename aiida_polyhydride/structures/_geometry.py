"""Minimum-image distances and random placement helpers (numpy only, no neighbour lists)."""

from __future__ import annotations

import itertools

import numpy as np

_SHIFTS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=float)


def _wrapped_frac_differences(points: np.ndarray, others: np.ndarray, inv_cell: np.ndarray) -> np.ndarray:
    frac = (others[None, :, :] - points[:, None, :]) @ inv_cell
    return frac - np.round(frac)


def far_enough(points: np.ndarray, others: np.ndarray, cell: np.ndarray, cutoff: float | np.ndarray) -> bool:
    """True if every point is at least ``cutoff`` (scalar or one per other atom) from every other atom."""
    if len(others) == 0:
        return True
    cell = np.asarray(cell, dtype=float)
    cutoff = np.broadcast_to(np.asarray(cutoff, dtype=float), (len(others),))
    frac = _wrapped_frac_differences(np.atleast_2d(points), np.asarray(others, dtype=float), np.linalg.inv(cell))
    # The single wrapped image is an upper bound on the minimum-image distance: a cheap first rejection.
    if (np.sqrt(((frac @ cell) ** 2).sum(-1)) < cutoff[None, :]).any():
        return False
    images = (frac[:, :, None, :] + _SHIFTS[None, None, :, :]) @ cell
    return bool((np.sqrt((images**2).sum(-1)).min(axis=2) >= cutoff[None, :]).all())


def perpendicular_widths(cell: np.ndarray) -> np.ndarray:
    """Distances (Angstrom) between opposite faces of the cell."""
    cell = np.asarray(cell, dtype=float)
    volume = abs(np.linalg.det(cell))
    return np.array([volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)])


def random_unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` directions uniformly distributed on the unit sphere."""
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


class PlacementError(RuntimeError):
    """Random sequential placement ran out of attempts (callers turn it into a ValueError naming the argument)."""

    def __init__(self, placed: int, wanted: int, attempts: int):
        self.placed, self.wanted, self.attempts = placed, wanted, attempts
        super().__init__(f'placed {placed} of {wanted} after {attempts} attempts for the next one')
