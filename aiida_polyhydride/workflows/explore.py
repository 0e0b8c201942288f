"""ExploreWorkChain: MD with the current committee over a grid of (system, T, P); frames to relabel are selected.

Every (system, T, P) runs as its own MDBaseWorkChain (MDCalculation with blow-up and walltime restarts), at most
``max_concurrent`` at once and the next as soon as one ends. Frames are classified by the committee force deviation
against the trust window [lo, hi); candidates are made diverse and capped by ``select_frames``
(analysis/selection.py) and output as an unlabelled TrainingSetData, ready for LabelWorkChain, each frame carrying
its origin (system, T, P). Runs that blew up still contribute the frames they dumped.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import WorkChain, calcfunction, while_
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin

from ..analysis.selection import class_ratios, classify, pair_distribution_descriptor, select_candidates
from ..calculations.md import MDCalculation
from ..data.allegro_potential import AllegroPotentialData
from ..data.training_set import TrainingSetData
from ..protocols import protocol_file
from ..setup.cluster import job_options
from .md import MDBaseWorkChain
from .rolling import RollingSubmissionMixin, validate_max_concurrent

__all__ = ('ExploreWorkChain', 'select_frames')


@calcfunction
def select_frames(settings: orm.Dict, **runs: orm.Data) -> dict[str, orm.Data]:
    """Classify and select exploration frames.

    ``runs``: ``trajectory_<i>`` (TrajectoryData with a ``sigma_f`` array) and ``conditions_<i>`` (Dict: system,
    temperature_K, pressure_GPa) per MD run. ``settings``: lo, hi (eV/A), max_per_system, max_total,
    duplicate_tolerance, r_max (descriptor cutoff, Angstrom), iteration. Returns ``candidates`` (unlabelled
    TrainingSetData; absent when nothing was selected) and ``ratios`` ({system: accurate/candidate/failed, n_frames}).
    Candidates carry ``sigma_f`` and ``candidate_index`` in their info and the driving model's forces as the
    per-atom array ``model_forces`` (for the trust-window calibration once they are labelled).
    """
    options = settings.get_dict()
    indices = sorted(int(key.split('_')[1]) for key in runs if key.startswith('trajectory_'))
    frames, sigma, systems, origins = [], [], [], []
    for index in indices:
        trajectory, conditions = runs[f'trajectory_{index}'], runs[f'conditions_{index}'].get_dict()
        model_forces = trajectory.get_array('forces') if 'forces' in trajectory.get_arraynames() else None
        for step in range(trajectory.numsteps):
            frame = trajectory.get_step_structure(step).get_ase()
            if model_forces is not None:
                frame.arrays['model_forces'] = model_forces[step]
            frames.append(frame)
            sigma.append(trajectory.get_array('sigma_f')[step])
            systems.append(conditions['system'])
            origins.append(conditions)
    classes = classify(sigma, options['lo'], options['hi'])
    ratios = {}
    for system in dict.fromkeys(systems):
        mine = [value for value, owner in zip(classes, systems, strict=True) if owner == system]
        ratios[system] = {**class_ratios(mine), 'n_frames': len(mine)}
    species = sorted({symbol for frame in frames for symbol in frame.get_chemical_symbols()})
    descriptors = np.array([pair_distribution_descriptor(frame, species, options['r_max']) for frame in frames])
    selected = select_candidates(
        descriptors, classes, systems, options['max_per_system'], options['max_total'], options['duplicate_tolerance']
    )
    outputs: dict[str, orm.Data] = {'ratios': orm.Dict(ratios)}
    if len(selected):
        picked = []
        for candidate_index, index in enumerate(selected):
            frame, origin = frames[index], origins[index]
            frame.info.update(
                {
                    'candidate_index': candidate_index,  # kept through labelling: pairs a label with its frame
                    'origin_builder': 'explore',
                    'origin_iteration': options.get('iteration', 0),
                    'origin_system': origin['system'],
                    'origin_temperature_K': float(origin['temperature_K']),
                    'sigma_f': float(sigma[index]),
                }
            )
            if origin['pressure_GPa'] is not None:  # NVT runs have no target pressure
                frame.info['origin_pressure_GPa'] = float(origin['pressure_GPa'])
            picked.append(frame)
        outputs['candidates'] = TrainingSetData(picked, labelled=False)
    return outputs


def _validate_inputs(inputs: dict, namespace) -> str | None:
    if 'lo' in inputs and 'hi' in inputs and not 0 <= inputs['lo'].value < inputs['hi'].value:
        return f'trust window: need 0 <= lo < hi, got lo={inputs["lo"].value}, hi={inputs["hi"].value}'
    for key in ('temperatures', 'pressures'):
        if key not in namespace:  # exposed in a parent work chain that sets it
            continue
        values = inputs[key].get_list() if key in inputs else []
        if key == 'temperatures' and (not values or min(values) <= 0):
            return f'temperatures: give positive temperatures in K, got {values}'
        if key == 'pressures' and any(value is not None and value < 0 for value in values):
            return f'pressures: give pressures >= 0 in GPa (or None for NVT), got {values}'
    if 'models' in namespace and 'member_0' not in inputs.get('models', {}):
        return 'models: member_0 (the model that drives the MD) is required'
    return None


class ExploreWorkChain(RollingSubmissionMixin, ProtocolMixin, WorkChain):
    """MD over systems x temperatures x pressures with the committee, then selection of frames to relabel."""

    @classmethod
    def define(cls, spec):
        # fmt: off
        super().define(spec)
        spec.expose_inputs(MDCalculation, namespace='md', exclude=('structure', 'models', 'parent_folder'),
                           namespace_options={'help': 'MD template; temperature_K and pressure_GPa are set per run.'})
        spec.expose_inputs(MDBaseWorkChain, namespace='md_restart', exclude=('md',),
                           namespace_options={'help': 'Restart settings of every run (max_iterations, '
                                              'max_timestep_halvings, ...).'})
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True,
                             help='Exploration systems by name, e.g. {"CaH4_bulk": ..., "CaH2_slab_H2": ...}.')
        spec.input_namespace('models', valid_type=AllegroPotentialData, dynamic=True, help='The committee.')
        spec.input('temperatures', valid_type=orm.List, help='Temperatures (K).')
        spec.input('pressures', valid_type=orm.List,
                   help='Pressures (GPa) for NPT runs; None entries run NVT at the structure\'s cell.')
        spec.input('lo', valid_type=orm.Float, help='Trust window lower bound on sigma_F (eV/Angstrom).')
        spec.input('hi', valid_type=orm.Float, help='Trust window upper bound on sigma_F (eV/Angstrom).')
        spec.input('max_per_system', valid_type=orm.Int, default=lambda: orm.Int(10))
        spec.input('max_total', valid_type=orm.Int, default=lambda: orm.Int(40))
        spec.input('duplicate_tolerance', valid_type=orm.Float, default=lambda: orm.Float(0.02))
        spec.input('iteration', valid_type=orm.Int, default=lambda: orm.Int(0))
        spec.input('max_concurrent', valid_type=orm.Int, default=lambda: orm.Int(4), validator=validate_max_concurrent,
                   help='At most this many MD runs at once (each loads the committee: memory and cores).')
        spec.inputs.validator = _validate_inputs
        spec.outline(cls.setup, while_(cls.children_left)(cls.run_md), cls.select)
        spec.output('candidates', valid_type=TrainingSetData, required=False,
                    help='Selected frames (unlabelled), ready for LabelWorkChain.')
        spec.output('ratios', valid_type=orm.Dict, help='Per system: accurate/candidate/failed fractions.')
        spec.output('failed_runs', valid_type=orm.Dict, help='MD runs that did not finish OK: pk, exit status.')
        spec.output_namespace('trajectories', valid_type=orm.TrajectoryData, dynamic=True,
                              help='The trajectory of each MD run, md_<i> (see `conditions`).')
        spec.output('conditions', valid_type=orm.Dict, help='md_<i> -> system, temperature_K, pressure_GPa.')
        spec.exit_code(401, 'ERROR_NO_FRAMES', message='No MD run produced any frame: {failed}')
        # fmt: on

    @classmethod
    def get_protocol_filepath(cls):
        return protocol_file('explore')

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structures: dict[str, orm.StructureData],
        models: dict[str, AllegroPotentialData],
        temperatures: list[float],
        pressures: list[float | None],
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """Builder exploring ``structures`` x ``temperatures`` (K) x ``pressures`` (GPa; None: NVT) with the committee
        ``models``; protocol tiny / cpu / gpu (protocols/explore.yaml).

        The MD jobs' ``metadata.options`` are the protocol's ``options`` with ``overrides['options']``; with
        ``md.device`` cuda each run asks the computer's GPU partition for one GPU
        (:func:`~..setup.cluster.job_options`).
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.md.code = code
        # the template's temperature is replaced in every run; it only has to make the template valid
        builder.md.parameters = orm.Dict({**inputs['md'], 'temperature_K': temperatures[0] if temperatures else None})
        gpus = 1 if str(inputs['md'].get('device', 'cpu')).startswith('cuda') else 0
        builder.md.metadata.options = job_options(code.computer, inputs['options'], gpus)
        builder.structures = structures
        builder.models = models
        builder.temperatures = orm.List(list(temperatures))
        builder.pressures = orm.List(list(pressures))
        for key in ('lo', 'hi', 'duplicate_tolerance'):
            builder[key] = orm.Float(inputs[key])
        for key in ('max_per_system', 'max_total', 'max_concurrent'):
            builder[key] = orm.Int(inputs[key])
        return builder

    def setup(self):
        grid = itertools.product(
            sorted(self.inputs.structures), self.inputs.temperatures.get_list(), self.inputs.pressures.get_list()
        )
        self.start_queue([[index, *conditions] for index, conditions in enumerate(grid)])
        self.ctx.finished = {}
        self.report(f'{len(self.ctx.pending)} MD runs, at most {self.inputs.max_concurrent.value} at once')

    def run_md(self):
        """Run the MD grid, at most ``max_concurrent`` runs at once, the next starting as soon as one ends."""
        return self.roll(self._submit_md, self._collect)

    def _collect(self, key: str, node: orm.WorkflowNode) -> None:
        self.ctx.finished[key] = node

    def _submit_md(self, entry: list) -> tuple[str, orm.WorkflowNode]:
        index, system, temperature, pressure = entry
        inputs = AttributeDict(self.exposed_inputs(MDCalculation, namespace='md'))
        parameters = inputs.parameters.get_dict()
        parameters['temperature_K'] = temperature
        if pressure is None:
            parameters.update({'ensemble': 'nvt', 'pressure_GPa': None})
        else:
            parameters.update({'ensemble': 'npt', 'pressure_GPa': pressure})
        inputs.parameters = orm.Dict(parameters)
        inputs.structure = self.inputs.structures[system]
        inputs.models = dict(self.inputs.models)
        label = f'{system} {temperature} K {pressure if pressure is not None else "NVT"} GPa'
        inputs.metadata = {**inputs.get('metadata', {}), 'label': label}
        restart = AttributeDict(self.exposed_inputs(MDBaseWorkChain, namespace='md_restart'))
        restart.md = inputs
        restart.metadata = {**restart.get('metadata', {}), 'call_link_label': f'md_{index}', 'label': label}
        node = self.submit(MDBaseWorkChain, **restart)
        self.ctx[f'conditions_{index}'] = {'system': system, 'temperature_K': temperature, 'pressure_GPa': pressure}
        self.report(f'md_{index} ({label}): MDBaseWorkChain<{node.pk}>; {len(self.ctx.pending)} waiting')
        return f'md_{index}', node

    def select(self):
        runs, trajectories, conditions, failed = {}, {}, {}, {}
        for key in sorted(self.ctx.finished, key=lambda k: int(k.split('_')[1])):
            node, index = self.ctx.finished[key], int(key.split('_')[1])
            if not node.is_finished_ok:
                failed[node.label] = {'pk': node.pk, 'exit_status': node.exit_status}
            if 'trajectory' in node.outputs:
                trajectories[key] = node.outputs.trajectory
                conditions[key] = self.ctx[f'conditions_{index}']
                runs[f'trajectory_{index}'] = node.outputs.trajectory
                runs[f'conditions_{index}'] = orm.Dict(conditions[key])
        self.out('failed_runs', orm.Dict(failed).store())
        self.out('trajectories', trajectories)
        self.out('conditions', orm.Dict(conditions).store())
        if not runs:
            return self.exit_codes.ERROR_NO_FRAMES.format(failed=failed)
        settings = orm.Dict(
            {
                'lo': self.inputs.lo.value,
                'hi': self.inputs.hi.value,
                'max_per_system': self.inputs.max_per_system.value,
                'max_total': self.inputs.max_total.value,
                'duplicate_tolerance': self.inputs.duplicate_tolerance.value,
                'r_max': min(model.r_max for model in self.inputs.models.values()),
                'iteration': self.inputs.iteration.value,
            }
        )
        selection = select_frames(settings, **runs)
        self.out('ratios', selection['ratios'])
        if 'candidates' in selection:
            self.out('candidates', selection['candidates'])
        summary = ', '.join(
            f'{system}: {ratio["accurate"]:.2f} accurate' for system, ratio in selection['ratios'].items()
        )
        self.report(f'{summary}; {len(selection.get("candidates", [])) if "candidates" in selection else 0} selected')
        return None
