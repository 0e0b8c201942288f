"""Argument checks and geometry helpers shared by the surface-melting analysis modules (no aiida import).

Conventions: the slab normal is the cell vector ``axis`` (0, 1 or 2); the coordinate along the normal is the
fractional coordinate along that vector times the distance between the lattice planes it spans (the cell height,
Angstrom), so it runs over [0, height) and is periodic. For the usual cells (third vector along z) that is z.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
from ase import Atoms

from ..structures._validate import check_metal

__all__ = [
    'cell_height',
    'check_axis',
    'check_frame',
    'check_frames',
    'check_metal_present',
    'check_non_negative',
    'check_positive',
    'frame_times',
    'freud_system',
    'normal_coordinates',
]


def check_positive(value, name: str) -> float:
    """``value`` as float if it is a finite number > 0, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value) or value <= 0:
        raise ValueError(f'{name} must be a finite positive number, got {value!r}')
    return float(value)


def check_non_negative(value, name: str) -> float:
    """``value`` as float if it is a finite number >= 0, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f'{name} must be a finite non-negative number, got {value!r}')
    return float(value)


def check_axis(axis) -> int:
    """``axis`` (index of the cell vector along the slab normal) as int in {0, 1, 2}."""
    if isinstance(axis, bool) or not isinstance(axis, Integral) or axis not in (0, 1, 2):
        raise ValueError(f'axis must be 0, 1 or 2 (the cell vector along the slab normal), got {axis!r}')
    return int(axis)


def check_frame(frame, name: str = 'frame') -> Atoms:
    """``frame`` if it is a non-empty, fully periodic ase.Atoms with finite positions and a non-singular cell."""
    if not isinstance(frame, Atoms):
        raise ValueError(f'{name}: expected ase.Atoms, got {type(frame).__name__}')
    if len(frame) == 0:
        raise ValueError(f'{name}: has no atoms')
    if not frame.pbc.all():
        raise ValueError(f'{name}: must be periodic in all three directions (pbc=True)')
    if not np.all(np.isfinite(frame.positions)) or abs(frame.cell.volume) < 1e-8:
        raise ValueError(f'{name}: non-finite positions or a singular cell')
    return frame


def check_frames(frames, name: str = 'frames') -> list[Atoms]:
    """``frames`` (one ase.Atoms or a sequence of them) as a non-empty list of frames with the same species order."""
    if isinstance(frames, Atoms):
        frames = [frames]
    if not isinstance(frames, Sequence) or len(frames) == 0:
        raise ValueError(f'{name}: need a non-empty list of ase.Atoms frames, got {frames!r:.80}')
    frames = [check_frame(frame, f'{name}[{index}]') for index, frame in enumerate(frames)]
    numbers = frames[0].numbers
    for index, frame in enumerate(frames[1:], start=1):
        if len(frame) != len(numbers) or np.any(frame.numbers != numbers):
            raise ValueError(f'{name}[{index}]: atoms differ from frame 0 (a trajectory keeps its atoms in order)')
    return frames


def check_metal_present(metal, frame: Atoms, name: str = 'metal') -> str:
    """``metal`` if it is a chemical element other than H that ``frame`` contains."""
    metal = check_metal(metal, name)
    if metal not in frame.get_chemical_symbols():
        raise ValueError(f'{name}: {metal!r} is not among the atoms ({frame.get_chemical_formula()})')
    return metal


def cell_height(atoms: Atoms, axis: int) -> float:
    """Distance (Angstrom) between the lattice planes spanned by the two cell vectors other than ``axis``."""
    cell = atoms.cell.array
    others = [cell[i] for i in range(3) if i != axis]
    return float(abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(*others)))


def normal_coordinates(atoms: Atoms, axis: int) -> tuple[np.ndarray, float]:
    """Coordinates of all atoms along the normal, wrapped into [0, height) (Angstrom), and the height."""
    height = cell_height(atoms, axis)
    fractional = atoms.cell.scaled_positions(atoms.positions)[:, axis] % 1.0
    return fractional * height, height


def frame_times(frames: Sequence[Atoms], frame_interval_ps: float | None) -> np.ndarray:
    """Time of each frame in ps: ``index * frame_interval_ps``, or read from ``info['time_ps']`` / ``info['time_fs']``.

    ``frame_interval_ps`` wins when given. Otherwise every frame must carry one of the two info keys.
    """
    if frame_interval_ps is not None:
        return np.arange(len(frames)) * check_positive(frame_interval_ps, 'frame_interval_ps')
    for key, scale in (('time_ps', 1.0), ('time_fs', 1e-3)):
        if all(key in frame.info for frame in frames):
            times = np.array([float(frame.info[key]) for frame in frames]) * scale
            if np.any(np.diff(times) <= 0):
                raise ValueError(f"frames: info['{key}'] must increase from frame to frame")
            return times
    raise ValueError("frame_interval_ps: give it (ps between frames) or put info['time_ps'] on every frame")


def freud_system(atoms: Atoms, r_max: float):
    """(freud.box.Box, points) for ``atoms``, replicated so every cell height is > 2 * ``r_max``.

    The cell is rotated to ASE's standard (lower-triangular) form, which is freud's convention. The first
    ``len(atoms)`` points are the original atoms in their order; the rest are periodic images.
    """
    import freud

    heights = [cell_height(atoms, axis) for axis in range(3)]
    reps = [max(1, int(np.floor(2.0 * r_max / h)) + 1) for h in heights]
    atoms = atoms.repeat(reps) if reps != [1, 1, 1] else atoms
    rcell, rotation = atoms.cell.standard_form()
    box = freud.box.Box.from_matrix(rcell.T)
    points = box.wrap((atoms.positions @ rotation.T).astype(np.float64))
    return box, points
