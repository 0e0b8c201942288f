"""Argument checks shared by the structure builders, so every error message has the same shape.

Each check returns the normalised value or raises ValueError whose message starts with the argument's name.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, chemical_symbols

__all__ = [
    'check_atoms',
    'check_choice',
    'check_int_vector',
    'check_metal',
    'check_non_negative',
    'check_optional_positive',
    'check_positive',
    'check_positive_int',
    'check_seed',
]


def check_metal(metal, name: str = 'metal') -> str:
    """Return ``metal`` if it is the symbol of a chemical element other than H (e.g. 'Ca', 'La')."""
    if not isinstance(metal, str) or metal not in atomic_numbers or metal == 'X' or metal not in chemical_symbols:
        raise ValueError(f'{name}: {metal!r} is not a chemical element')
    if metal == 'H':
        raise ValueError(f"{name}: 'H' cannot be the metal of a metal hydride")
    return metal


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as int if it is an integer >= 1 (bools are rejected)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f'{name} must be a positive integer, got {value!r}')
    return int(value)


def check_seed(value, name: str = 'seed') -> int:
    """Return ``value`` as int if it is a non-negative integer usable by ``numpy.random.default_rng``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ValueError(f'{name} must be a non-negative integer, got {value!r}')
    return int(value)


def _finite_real(value, name: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ValueError(f'{name} must be {what}, got {value!r}')
    return float(value)


def check_positive(value, name: str) -> float:
    """Return ``value`` as float if it is a finite number > 0."""
    result = _finite_real(value, name, 'a finite positive number')
    if result <= 0:
        raise ValueError(f'{name} must be a finite positive number, got {value!r}')
    return result


def check_optional_positive(value, name: str) -> float | None:
    """Like :func:`check_positive` but ``None`` passes through."""
    return None if value is None else check_positive(value, name)


def check_non_negative(value, name: str) -> float:
    """Return ``value`` as float if it is a finite number >= 0."""
    result = _finite_real(value, name, 'a finite non-negative number')
    if result < 0:
        raise ValueError(f'{name} must be a finite non-negative number, got {value!r}')
    return result


def check_int_vector(value, name: str, length: int, positive: bool = False) -> tuple[int, ...]:
    """Return ``value`` as a tuple of ``length`` ints; all >= 1 if ``positive``, else not all zero."""
    ok = isinstance(value, Sequence | np.ndarray) and not isinstance(value, str) and len(value) == length
    ok = ok and all(isinstance(v, Integral) and not isinstance(v, bool) for v in value)
    if not ok:
        raise ValueError(f'{name} must be a sequence of {length} integers, got {value!r}')
    result = tuple(int(v) for v in value)
    if positive and min(result) < 1:
        raise ValueError(f'{name} must contain positive integers only, got {value!r}')
    if not positive and not any(result):
        raise ValueError(f'{name} must not be all zero, got {value!r}')
    return result


def check_choice(value, name: str, choices) -> str:
    """Return ``value`` if it is one of ``choices``; the message lists the valid ones."""
    if not isinstance(value, str) or value not in choices:
        valid = ', '.join(repr(c) for c in choices)
        raise ValueError(f'{name}: {value!r} is not one of {valid}')
    return value


def check_atoms(atoms, name: str = 'atoms') -> Atoms:
    """Return ``atoms`` if it is a non-empty ``ase.Atoms`` with a 3D cell of non-zero volume."""
    if not isinstance(atoms, Atoms) or len(atoms) == 0:
        raise ValueError(f'{name} must be a non-empty ase.Atoms, got {type(atoms).__name__}')
    if atoms.cell.rank != 3 or abs(atoms.cell.volume) < 1e-9:
        raise ValueError(f'{name} must have a three-dimensional cell of non-zero volume')
    return atoms
