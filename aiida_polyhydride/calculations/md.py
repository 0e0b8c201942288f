"""MDCalculation: MD with committee member 0 of an Allegro committee, the others evaluated at every dump."""

from __future__ import annotations

import io
import json

from aiida import orm
from aiida.engine import CalcJob

from ..data.allegro_potential import AllegroPotentialData
from ..runners.md import FILES, InputError, validate_parameters
from .runner import runner_calcinfo

#: md_input keys the CalcJob sets itself from its inputs
_SET_BY_CALCJOB = ('models', 'structure')


def _validate_parameters(value: orm.Dict, _) -> str | None:
    parameters = value.get_dict()
    reserved = sorted(set(parameters) & set(_SET_BY_CALCJOB))
    if reserved:
        return f'parameters: {reserved} are set from the `models` and `structure` inputs'
    try:
        validate_parameters({**parameters, 'models': [{'file': '-', 'sha256': '-'}]}, check_files=False)
    except InputError as exception:
        return f'parameters: {exception}'
    return None


def _validate_inputs(inputs: dict, namespace) -> str | None:
    if 'models' not in namespace or 'models' not in inputs:
        return None
    if 'member_0' not in inputs['models']:
        return 'models: member_0 (the model that drives the MD) is required'
    species = set(inputs['structure'].get_symbols_set()) if 'structure' in inputs else set()
    for key, model in inputs['models'].items():
        missing = sorted(species - set(model.type_names))
        if missing:
            return f'models.{key}: has no atom type for {", ".join(missing)} of the structure'
    return None


class MDCalculation(CalcJob):
    """ASE MD (NVT/NPT) driven by ``models.member_0``; every member is evaluated at each dump (committee spread)."""

    @classmethod
    def define(cls, spec):
        # fmt: off
        super().define(spec)
        spec.input('structure', valid_type=orm.StructureData, help='Initial structure.')
        spec.input_namespace('models', valid_type=AllegroPotentialData, dynamic=True,
                             help='Committee: member_0 drives the MD, all members are evaluated at dumps.')
        spec.input('parameters', valid_type=orm.Dict, validator=_validate_parameters,
                   help='MD settings (runners/md.py): ensemble, temperature_K, pressure_GPa, timestep_fs, n_steps, '
                   'dump_every, barostat, blow-up guard, ...')
        spec.input('parent_folder', valid_type=orm.RemoteData, required=False,
                   help='Folder of an interrupted run: continue from its checkpoint.')
        spec.inputs.validator = _validate_inputs
        spec.inputs['metadata']['options']['resources'].default = {'num_machines': 1, 'num_mpiprocs_per_machine': 1}
        spec.inputs['metadata']['options']['withmpi'].default = False
        spec.inputs['metadata']['options']['parser_name'].default = 'polyhydride.md'

        spec.output('trajectory', valid_type=orm.TrajectoryData, required=False,
                    help='Dumped frames with step, time, energy, temperature, pressure, volume arrays.')
        spec.output('deviations', valid_type=orm.ArrayData, required=False,
                    help='Per dump: sigma_f (eV/A), sigma_e (eV/atom), sigma_v (eV/A^3), model energies.')
        spec.output('result', valid_type=orm.Dict, required=False, help='Status, steps done, timings, versions.')
        spec.exit_code(300, 'ERROR_NO_RESULT', message='The MD runner wrote no result.json: see the scheduler stderr.')
        spec.exit_code(310, 'ERROR_INPUT', message='The MD runner refused its input: {reason}')
        spec.exit_code(320, 'ERROR_BLOWUP',
                       message='The MD blew up ({reason}); the trajectory up to then is output.')
        spec.exit_code(330, 'ERROR_INTERRUPTED',
                       message='The MD was stopped ({status}) at step {step}: resubmit with parent_folder = this '
                       'calculation\'s remote_folder to continue from the checkpoint.')
        # fmt: on

    def prepare_for_submission(self, folder):
        parameters = self.inputs.parameters.get_dict()
        members = sorted(self.inputs.models, key=lambda key: (key != 'member_0', key))
        parameters['models'] = [
            {'file': f'{key}.nequip.zip', 'sha256': self.inputs.models[key].sha256} for key in members
        ]
        parameters['structure'] = FILES['structure']
        folder.create_file_from_filelike(io.StringIO(json.dumps(parameters, indent=2)), FILES['input_json'], 'w')
        with folder.open(FILES['structure'], 'w') as handle:
            self.inputs.structure.get_ase().write(handle, format='extxyz')

        local_copy_list = [
            (self.inputs.models[key].uuid, AllegroPotentialData.FILENAME, f'{key}.nequip.zip') for key in members
        ]
        return runner_calcinfo(
            self.inputs.code,
            'aiida_polyhydride.runners.md',
            'md.log',
            local_copy_list,
            [FILES['result'], FILES['trajectory'], FILES['deviations'], FILES['last_frame']],
            self.inputs.get('parent_folder'),
            restart_files=tuple(FILES[name] for name in ('checkpoint', 'checkpoint_state', 'trajectory', 'deviations')),
        )
