"""Convergence of the labelling protocol: labels of one setting against a tighter reference, as a Dict node."""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from ..analysis.convergence import TOLERANCES, label_differences, within_tolerances
from ..data.training_set import TrainingSetData

__all__ = ('compare_labels',)


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
