"""Labelled frames (ase.Atoms with energy/forces/stress): validation, hashing, extxyz I/O, unit conversion.

Conventions inside datasets (as ASE and nequip): energy in eV, forces in eV/Angstrom, stress in eV/Angstrom^3 with
the ASE sign (positive = tensile; a compressed cell has negative diagonal stress).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write
from ase.units import GPa

__all__ = (
    'LABEL_PROPERTIES',
    'UNITS',
    'frame_hash',
    'frames_from_extxyz',
    'frames_to_extxyz',
    'label_frame',
    'least_squares_energy_shifts',
    'qe_stress_to_ase',
    'unique_frames',
    'validate_frames',
)

LABEL_PROPERTIES = ('energy', 'forces', 'stress')
UNITS = {'energy': 'eV', 'forces': 'eV/Angstrom', 'stress': 'eV/Angstrom^3 (ASE sign: positive is tensile)'}
_HASH_DECIMALS = 6


def qe_stress_to_ase(stress_gpa: np.ndarray) -> np.ndarray:
    """pw.x stress (GPa, positive = compressive, as aiida-quantumespresso reports it) -> ASE eV/Angstrom^3."""
    return -np.asarray(stress_gpa, dtype=float) * GPa


def label_frame(
    atoms: Atoms,
    energy: float,
    forces: np.ndarray,
    stress: np.ndarray | None = None,
    info: dict | None = None,
) -> Atoms:
    """Copy of ``atoms`` carrying the labels (ASE units and sign) as a SinglePointCalculator, plus ``info``."""
    frame = atoms.copy()
    results = {'energy': float(energy), 'forces': np.asarray(forces, dtype=float)}
    if stress is not None:
        results['stress'] = np.asarray(stress, dtype=float)
    frame.calc = SinglePointCalculator(frame, **results)
    frame.info.update(info or {})
    return frame


def labels_of(frame: Atoms) -> dict[str, np.ndarray | float]:
    """The label properties a frame carries (empty for an unlabelled frame)."""
    if frame.calc is None:
        return {}
    return {key: value for key, value in frame.calc.results.items() if key in LABEL_PROPERTIES}


def validate_frames(frames: Sequence[Atoms], labelled: bool = True) -> tuple[str, ...]:
    """Check ``frames`` and return the label properties they all carry; ValueError names the first bad frame.

    Labelled frames need at least energy and forces, the same properties in every frame, finite values and shapes
    that match the frame (forces (N, 3), stress 3x3 or Voigt 6).
    """
    if len(frames) == 0:
        raise ValueError('frames: a dataset needs at least one frame')
    expected: tuple[str, ...] | None = None
    for index, frame in enumerate(frames):
        if not isinstance(frame, Atoms):
            raise ValueError(f'frame {index}: expected ase.Atoms, got {type(frame).__name__}')
        if len(frame) == 0:
            raise ValueError(f'frame {index}: has no atoms')
        if not np.all(np.isfinite(frame.positions)) or not np.all(np.isfinite(frame.cell.array)):
            raise ValueError(f'frame {index}: positions or cell contain NaN or infinity')
        labels = labels_of(frame)
        present = tuple(key for key in LABEL_PROPERTIES if key in labels)
        if not labelled:
            continue
        for key in ('energy', 'forces'):
            if key not in labels:
                raise ValueError(f'frame {index}: has no {key}; a labelled dataset needs energy and forces')
        if expected is None:
            expected = present
        elif present != expected:
            raise ValueError(f'frame {index}: carries {", ".join(present)} but frame 0 carries {", ".join(expected)}')
        _check_label_values(index, frame, labels)
    return expected or ()


def _check_label_values(index: int, frame: Atoms, labels: dict) -> None:
    shapes = {'energy': [()], 'forces': [(len(frame), 3)], 'stress': [(3, 3), (6,)]}
    for key, value in labels.items():
        array = np.asarray(value, dtype=float)
        if array.shape not in shapes[key]:
            wanted = ' or '.join(str(shape) for shape in shapes[key])
            raise ValueError(f'frame {index}: {key} has shape {array.shape}, expected {wanted}')
        if not np.all(np.isfinite(array)):
            raise ValueError(f'frame {index}: {key} contains NaN or infinity')


def frame_hash(frame: Atoms) -> str:
    """sha256 of a frame's structure (species, positions, cell, pbc rounded to 1e-6 A); labels do not count."""
    digest = hashlib.sha256()
    digest.update(np.asarray(frame.numbers, dtype=np.int64).tobytes())
    digest.update(np.round(frame.positions, _HASH_DECIMALS).astype(np.float64).tobytes())
    digest.update(np.round(frame.cell.array, _HASH_DECIMALS).astype(np.float64).tobytes())
    digest.update(np.asarray(frame.pbc, dtype=bool).tobytes())
    return digest.hexdigest()


def frames_to_extxyz(frames: Iterable[Atoms]) -> str:
    """Frames as one extended-XYZ text (labels written by ASE: energy/stress in the comment, forces per atom)."""
    buffer = io.StringIO()
    write(buffer, list(frames), format='extxyz')
    return buffer.getvalue()


def frames_from_extxyz(text: str) -> list[Atoms]:
    """Inverse of :func:`frames_to_extxyz`."""
    return read(io.StringIO(text), index=':', format='extxyz')


def unique_frames(frames: Iterable[Atoms]) -> list[Atoms]:
    """``frames`` without structural duplicates (same :func:`frame_hash`); the first occurrence is kept."""
    seen: set[str] = set()
    unique = []
    for frame in frames:
        key = frame_hash(frame)
        if key not in seen:
            seen.add(key)
            unique.append(frame)
    return unique


def least_squares_energy_shifts(frames: Sequence[Atoms]) -> dict[str, float]:
    """Per-element energies (eV) that best fit the frames' total energies as a sum over their atoms.

    The alternative to isolated-atom energies for a potential's per-type shifts; needs at least as many frames of
    linearly independent compositions as there are elements (ValueError otherwise).
    """
    elements = sorted({symbol for frame in frames for symbol in frame.get_chemical_symbols()})
    counts = np.array([[frame.get_chemical_symbols().count(element) for element in elements] for frame in frames])
    energies = np.array([frame.get_potential_energy() for frame in frames])
    if np.linalg.matrix_rank(counts) < len(elements):
        raise ValueError(
            f'frames: their compositions do not determine a shift per element ({", ".join(elements)}): '
            'add frames of other compositions or use isolated-atom energies'
        )
    shifts, *_ = np.linalg.lstsq(counts.astype(float), energies, rcond=None)
    return dict(zip(elements, (float(value) for value in shifts), strict=True))
