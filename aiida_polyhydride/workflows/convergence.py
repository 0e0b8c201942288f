"""Convergence of the labelling protocol against a tighter reference, and the pseudo family against experiment."""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from ..analysis.convergence import TOLERANCES, label_differences, within_tolerances
from ..analysis.reference_checks import deviations, fcc_lattice_constant, h2_bond_length, volume_per_formula_unit
from ..data.training_set import TrainingSetData

__all__ = ('compare_labels', 'compare_with_experiment')


@calcfunction
def compare_labels(reference: TrainingSetData, **settings: TrainingSetData) -> orm.Dict:
    """Per setting and frame: energy (per-element constant removed), force and pressure differences from
    ``reference``; ``within_tolerances`` per setting against :data:`~..analysis.convergence.TOLERANCES`.

    Frames are paired by ``origin_system``; a frame that failed in either run is left out of that setting.
    """
    reference_frames = reference.to_ase()
    result = {'tolerances': dict(TOLERANCES), 'settings': {}}
    for name, dataset in settings.items():
        differences = label_differences(reference_frames, dataset.to_ase())
        result['settings'][name] = {
            'frames': differences,
            'within_tolerances': within_tolerances(differences, TOLERANCES),
            'worst': {
                quantity: max((abs(values[quantity]) for values in differences.values()), default=None)
                for quantity in (*TOLERANCES, 'energy_raw_meV_per_atom', 'forces_max_meV_per_A')
            },
        }
    return orm.Dict(result)


@calcfunction
def compare_with_experiment(**relaxed: orm.StructureData) -> orm.Dict:
    """Relaxed ``fcc_Ca``, ``H2_molecule`` and ``CaH2_Pnma`` (any of them) against the measured values of
    :data:`~..analysis.reference_checks.EXPERIMENT`: computed, measured, deviation in %."""
    measure = {
        'fcc_Ca': ('fcc_Ca_lattice_constant', fcc_lattice_constant),
        'H2_molecule': ('H2_bond_length', h2_bond_length),
        'CaH2_Pnma': ('CaH2_Pnma_volume', volume_per_formula_unit),
    }
    unknown = sorted(set(relaxed) - set(measure))
    if unknown:
        raise ValueError(f'compare_with_experiment: unknown systems {unknown}; known: {", ".join(measure)}')
    computed = {measure[name][0]: measure[name][1](structure.get_ase()) for name, structure in relaxed.items()}
    return orm.Dict(deviations(computed))
