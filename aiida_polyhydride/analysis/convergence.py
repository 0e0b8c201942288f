"""Convergence of DFT labels: how far the labels of one setting are from those of a tighter reference.

A training label is good enough when what the potential learns from it does not change with a tighter setting:
energy per atom up to one constant per element (a per-type energy shift absorbs it, and no reaction energy,
force or stress depends on it), forces, and pressure. Frames are paired by a name in their ``info``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from ase import Atoms
from ase.units import GPa

__all__ = ('TOLERANCES', 'label_differences', 'within_tolerances')

#: what the campaign's labels must meet against the reference (issue: 2 meV/atom, 50 meV/Angstrom RMS, 0.5 GPa)
TOLERANCES = {'energy_meV_per_atom': 2.0, 'forces_rms_meV_per_A': 50.0, 'pressure_GPa': 0.5}


def _by_name(frames: Sequence[Atoms], key: str) -> dict[str, Atoms]:
    named = {}
    for frame in frames:
        name = frame.info.get(key)
        if name is None:
            raise ValueError(f'frames: a frame has no info[{key!r}] to pair it with the reference')
        if name in named:
            raise ValueError(f'frames: two frames are named {name!r}')
        named[name] = frame
    return named


def _pressure(frame: Atoms) -> float:
    """Pressure (GPa) from the ASE stress (positive tensile): P = -trace/3."""
    stress = np.asarray(frame.get_stress(voigt=True))
    return float(-stress[:3].mean() / GPa)


def label_differences(
    reference: Sequence[Atoms], test: Sequence[Atoms], key: str = 'origin_system'
) -> dict[str, dict[str, float]]:
    """Per frame of ``test``: its labels' differences from the same frame (same ``info[key]``) of ``reference``.

    ``energy_meV_per_atom``: (E_test - E_ref) / N after removing one constant per element, fitted by least squares
    over the frames both sets share (with fewer frames than elements the raw difference is kept);
    ``energy_raw_meV_per_atom``: without that fit; ``forces_rms_meV_per_A``: RMS over all force components;
    ``forces_max_meV_per_A``: the largest component; ``pressure_GPa``: P_test - P_ref. Frames missing from either
    side are left out; a frame whose atoms differ is an error.
    """
    reference_by_name, test_by_name = _by_name(reference, key), _by_name(test, key)
    names = sorted(set(reference_by_name) & set(test_by_name))
    if not names:
        return {}
    for name in names:
        a, b = reference_by_name[name], test_by_name[name]
        if a.get_chemical_symbols() != b.get_chemical_symbols() or not np.allclose(a.positions, b.positions):
            raise ValueError(f'frame {name!r}: the reference and the test frame are not the same structure')
    elements = sorted({symbol for name in names for symbol in reference_by_name[name].get_chemical_symbols()})
    counts = np.array(
        [[reference_by_name[name].get_chemical_symbols().count(e) for e in elements] for name in names], dtype=float
    )
    delta = np.array(
        [test_by_name[name].get_potential_energy() - reference_by_name[name].get_potential_energy() for name in names]
    )
    if len(names) > len(elements) and np.linalg.matrix_rank(counts) == len(elements):
        shifts, *_ = np.linalg.lstsq(counts, delta, rcond=None)
        residual = delta - counts @ shifts
    else:
        residual = delta
    result = {}
    for index, name in enumerate(names):
        a, b = reference_by_name[name], test_by_name[name]
        n_atoms = len(a)
        force_difference = b.get_forces() - a.get_forces()
        result[name] = {
            'n_atoms': n_atoms,
            'energy_meV_per_atom': float(1000 * residual[index] / n_atoms),
            'energy_raw_meV_per_atom': float(1000 * delta[index] / n_atoms),
            'forces_rms_meV_per_A': float(1000 * np.sqrt(np.mean(force_difference**2))),
            'forces_max_meV_per_A': float(1000 * np.abs(force_difference).max()),
            'pressure_GPa': _pressure(b) - _pressure(a),
        }
    return result


def within_tolerances(differences: Mapping[str, Mapping[str, float]], tolerances: Mapping[str, float]) -> bool:
    """True when every frame's absolute difference is within each tolerance (and there is at least one frame)."""
    return bool(differences) and all(
        abs(values[quantity]) <= limit for values in differences.values() for quantity, limit in tolerances.items()
    )
