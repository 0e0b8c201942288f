"""A potential's errors on a labelled dataset, overall and per system, as a calcfunction (the model card's table)."""

from __future__ import annotations

from aiida import orm
from aiida.engine import calcfunction

from ..analysis.model_errors import prediction_errors
from ..data.allegro_potential import AllegroPotentialData
from ..data.training_set import TrainingSetData

__all__ = ('potential_errors',)


@calcfunction
def potential_errors(potential: AllegroPotentialData, dataset: TrainingSetData) -> orm.Dict:
    """Energy (meV/atom), force (meV/Angstrom) and stress (GPa) errors of ``potential`` against the DFT labels of
    ``dataset``: ``all`` and per ``origin_system`` (see :func:`~..analysis.model_errors.prediction_errors`)."""
    frames = dataset.to_ase()
    missing = sorted(set().union(*(frame.get_chemical_symbols() for frame in frames)) - set(potential.type_names))
    if missing:
        raise ValueError(f'the dataset has {missing}, which the model (types {potential.type_names}) does not know')
    calculator = potential.get_calculator('cpu')
    predictions = []
    for frame in frames:
        atoms = frame.copy()
        atoms.calc = calculator
        predictions.append(
            {
                'energy': atoms.get_potential_energy(),
                'forces': atoms.get_forces(),
                'stress': atoms.get_stress(voigt=False) if 'stress' in dataset.properties else None,
            }
        )
    errors = prediction_errors(frames, predictions)
    return orm.Dict({**errors, 'model_sha256': potential.sha256, 'dataset_sha256': dataset.sha256})
