"""AllegroTrainCalculation: train one Allegro model with nequip on a TrainingSetData and package it."""

from __future__ import annotations

import io

import yaml
from aiida import orm
from aiida.engine import CalcJob

from ..data.allegro_potential import AllegroPotentialData
from ..data.training_set import TrainingSetData
from .allegro_config import CONFIG_NAME, build_config, validate_hyperparameters
from .runner import runner_calcinfo

TRAIN_FILE, VALIDATION_FILE, PARENT_FILE = 'train.extxyz', 'validation.extxyz', 'parent.nequip.zip'


def _validate_hyperparameters(value: orm.Dict, _) -> str | None:
    try:
        validate_hyperparameters(value.get_dict())
    except ValueError as exception:
        return f'hyperparameters: {exception}'
    return None


def _validate_inputs(inputs: dict, namespace) -> str | None:
    if 'training_set' not in namespace or 'training_set' not in inputs:
        return None
    training = inputs['training_set']
    if not training.is_labelled:
        return f'training_set: TrainingSetData<{training.pk}> is not labelled (needs energy and forces)'
    species = set(training.species)
    if 'validation_set' in inputs:
        species |= set(inputs['validation_set'].species)
    shifts = inputs['energy_shifts'].get_dict() if 'energy_shifts' in inputs else {}
    missing = sorted(species - set(shifts))
    if missing:
        return f'energy_shifts: no per-type energy shift for {", ".join(missing)}'
    if 'parent_model' in inputs and set(inputs['parent_model'].type_names) != species:
        return (
            f'parent_model: its types {inputs["parent_model"].type_names} differ from the data species '
            f'{sorted(species)}'
        )
    return None


class AllegroTrainCalculation(CalcJob):
    """nequip-train + nequip-package of an Allegro model; outputs the packaged model, learning curve and metrics."""

    @classmethod
    def define(cls, spec):
        # fmt: off
        super().define(spec)
        spec.input('training_set', valid_type=TrainingSetData, help='Labelled frames to train on.')
        spec.input('validation_set', valid_type=TrainingSetData, required=False,
                   help='Labelled validation frames; without it a train_fraction split of training_set is used.')
        spec.input('hyperparameters', valid_type=orm.Dict, validator=_validate_hyperparameters,
                   help='Allegro/nequip hyperparameters (see calculations/allegro_config.py).')
        spec.input('seed', valid_type=orm.Int, default=lambda: orm.Int(0), help='Model initialisation seed.')
        spec.input('energy_shifts', valid_type=orm.Dict,
                   help='Per-type energy shifts {element: eV}, e.g. isolated-atom energies.')
        spec.input('parent_model', valid_type=AllegroPotentialData, required=False,
                   help='Warm start (fine-tune) from this model\'s architecture and weights.')
        spec.input('parent_folder', valid_type=orm.RemoteData, required=False,
                   help='Remote folder of an interrupted training: resume from its checkpoints/last.ckpt.')
        spec.inputs.validator = _validate_inputs
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.inputs['metadata']['options']['withmpi'].default = False
        spec.inputs['metadata']['options']['parser_name'].default = 'polyhydride.allegro_train'

        spec.output('model', valid_type=AllegroPotentialData, help='The packaged model (best validation epoch).')
        spec.output('learning_curve', valid_type=orm.ArrayData, help='Per-epoch losses and validation metrics.')
        spec.output('metrics', valid_type=orm.Dict,
                    help='Validation MAE/RMSE of the best epoch: meV/atom, meV/Angstrom, meV/Angstrom^3.')
        spec.output('validation_predictions', valid_type=TrainingSetData, required=False,
                    help='The model\'s energies, forces and stress on validation_set.')
        spec.exit_code(310, 'ERROR_INTERRUPTED',
                       message='nequip-train did not finish (walltime or killed): resubmit with parent_folder = this '
                       'calculation\'s remote_folder to continue from the last checkpoint.')
        spec.exit_code(320, 'ERROR_TRAINING_FAILED',
                       message='nequip-train exited with status {returncode}: see train.log and the scheduler stderr.')
        spec.exit_code(330, 'ERROR_NO_CHECKPOINT', message='nequip-train finished but wrote no best checkpoint.')
        spec.exit_code(340, 'ERROR_NAN_LOSS',
                       message='The validation loss became NaN at epoch {epoch}: lower the learning rate.')
        spec.exit_code(350, 'ERROR_PACKAGING_FAILED', message='nequip-package could not package the best checkpoint.')
        spec.exit_code(360, 'ERROR_NO_METRICS', message='nequip-train wrote no metrics.csv: {reason}')
        # fmt: on

    def prepare_for_submission(self, folder):
        hyperparameters = validate_hyperparameters(self.inputs.hyperparameters.get_dict())
        species = set(self.inputs.training_set.species)
        if 'validation_set' in self.inputs:
            species |= set(self.inputs.validation_set.species)
        type_names = sorted(species)
        shifts = self.inputs.energy_shifts.get_dict()
        config = build_config(
            hyperparameters,
            type_names,
            {name: shifts[name] for name in type_names},
            train_file=TRAIN_FILE,
            val_file=VALIDATION_FILE if 'validation_set' in self.inputs else None,
            seed=self.inputs.seed.value,
            parent_model=PARENT_FILE if 'parent_model' in self.inputs else None,
        )
        folder.create_file_from_filelike(
            io.StringIO(yaml.safe_dump(config, sort_keys=False)), f'{CONFIG_NAME}.yaml', 'w'
        )

        local_copy_list = [(self.inputs.training_set.uuid, TrainingSetData.FILENAME, TRAIN_FILE)]
        if 'validation_set' in self.inputs:
            local_copy_list.append((self.inputs.validation_set.uuid, TrainingSetData.FILENAME, VALIDATION_FILE))
        if 'parent_model' in self.inputs:
            local_copy_list.append((self.inputs.parent_model.uuid, AllegroPotentialData.FILENAME, PARENT_FILE))
        return runner_calcinfo(
            self.inputs.code,
            'aiida_polyhydride.runners.train',
            'train.log',
            local_copy_list,
            ['result.json', 'metrics', 'model.nequip.zip', 'validation_predictions_dataset0.xyz'],
            self.inputs.get('parent_folder'),
            restart_files=('checkpoints', 'metrics'),
        )
