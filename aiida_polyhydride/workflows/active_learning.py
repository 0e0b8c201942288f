"""ActiveLearningWorkChain: label -> train -> explore -> select, until the committee is trusted everywhere.

One iteration: train a committee on the dataset (warm-started from the previous committee), explore the
(system, T, P) grid with it, stop when every system's accurate ratio has reached the threshold for ``consecutive``
iterations (and, optionally, a tracked observable has settled), otherwise label the selected candidates, calibrate
the trust window from them and grow the dataset. The numbers behind every decision come from calcfunctions over
analysis/active_learning.py; the work chain only orchestrates.

Nothing is lost on failure: the latest dataset, committee, trust window and history are output on every exit path,
and a pointer to them is kept in the node's extras so :meth:`ActiveLearningWorkChain.get_builder_from_parent` can
continue a run that was killed as well as one that finished or failed.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin

from ..analysis import active_learning as decisions
from ..analysis.frames import frame_hash, unique_frames
from ..analysis.plots import plot_force_parity, plot_learning_history
from ..data.allegro_potential import AllegroPotentialData
from ..data.training_set import TrainingSetData, fit_energy_shifts, split_dataset
from ..protocols import protocol_file
from ..setup.pseudos import DEFAULT_FAMILY
from ..structures import domain
from .explore import ExploreWorkChain
from .label import LabelWorkChain
from .train import CommitteeWorkChain, warm_start_parents

__all__ = (
    'ActiveLearningWorkChain',
    'calibrate_window',
    'grow_dataset',
    'learning_history',
    'learning_plots',
    'seed_frames',
    'track_observable',
)

#: extras key of the pointer to the latest state (uuids), for continuing a killed run
STATE_EXTRA = 'active_learning_state'


@calcfunction
def seed_frames(metal: orm.Str, pressures: orm.List, settings: orm.Dict) -> TrainingSetData:
    """The training-domain seeds of structures/domain.py (unlabelled), for the first labelling."""
    frames = domain.training_domain_seeds(metal.value, pressures.get_list(), **settings.get_dict())
    return TrainingSetData(frames, labelled=False)


@calcfunction
def structures_to_frames(**structures: orm.StructureData) -> TrainingSetData:
    """User-given initial structures as unlabelled frames (origin_system: the input's key)."""
    frames = []
    for key in sorted(structures):
        frame = structures[key].get_ase()
        frame.info.update({'origin_builder': 'initial', 'origin_system': key})
        frames.append(frame)
    return TrainingSetData(frames, labelled=False)


@calcfunction
def exploration_structures(metal: orm.Str, pressure: orm.Float, size: orm.Str) -> dict[str, orm.StructureData]:
    """The default exploration systems of structures/domain.py at ``pressure``."""
    systems = domain.exploration_systems(metal.value, pressure.value, size.value)
    return {name: orm.StructureData(ase=atoms) for name, atoms in systems.items()}


@calcfunction
def grow_dataset(
    training_set: TrainingSetData, validation_set: TrainingSetData, labels: TrainingSetData, settings: orm.Dict
) -> dict[str, TrainingSetData]:
    """Add newly labelled frames: a seeded ``validation_fraction`` of them to validation, the rest to training.

    Frames already in either set (structurally identical) are not added again, so no frame is in both.
    """
    options = settings.get_dict()
    training, validation = training_set.to_ase(), validation_set.to_ase()
    known = {frame_hash(frame) for frame in [*training, *validation]}
    frames = [frame for frame in unique_frames(labels.to_ase()) if frame_hash(frame) not in known]
    order = np.random.default_rng(options['seed']).permutation(len(frames))
    to_validation = set(order[: round(options['validation_fraction'] * len(frames))].tolist())
    return {
        'training_set': TrainingSetData([*training, *(f for i, f in enumerate(frames) if i not in to_validation)]),
        'validation_set': TrainingSetData([*validation, *(f for i, f in enumerate(frames) if i in to_validation)]),
    }


@calcfunction
def calibrate_window(candidates: TrainingSetData, labels: TrainingSetData, settings: orm.Dict) -> orm.Dict:
    """The trust window from a labelled batch: pairs (sigma_F, true force error of the driving model) per frame.

    ``candidates``: the explored frames with ``sigma_f``, ``candidate_index`` and the per-atom ``model_forces``;
    ``labels``: their DFT labels (frames carry ``candidate_index``); ``settings``: the trust_window protocol values
    plus ``lo``/``hi`` of the window in use (kept when calibration is not possible).
    """
    options = settings.get_dict()
    by_index = {int(frame.info['candidate_index']): frame for frame in candidates.to_ase()}
    sigma, error = [], []
    for frame in labels.to_ase():
        candidate = by_index.get(int(frame.info.get('candidate_index', -1)))
        if candidate is None or 'model_forces' not in candidate.arrays:
            continue
        sigma.append(float(candidate.info['sigma_f']))
        error.append(decisions.max_force_error(candidate.arrays['model_forces'], frame.get_forces()))
    window = decisions.calibrate_trust_window(
        sigma,
        error,
        target_error=options['target_force_error'],
        hi_over_lo=options['hi_over_lo'],
        previous=(options['lo'], options['hi']),
        min_frames=options['min_frames'],
        quantile=options['quantile'],
    )
    window.update({'sigma_f': sigma, 'true_error': error, 'units': 'eV/Angstrom'})
    return orm.Dict(window)


@calcfunction
def track_observable(trajectory: orm.TrajectoryData, settings: orm.Dict) -> orm.Dict:
    """The user's convergence observable (density or h_per_m) on one exploration trajectory."""
    frames = [trajectory.get_step_structure(step).get_ase() for step in range(trajectory.numsteps)]
    return orm.Dict(decisions.trajectory_observable(frames, settings['quantity']))


@calcfunction
def learning_history(**nodes: orm.Data) -> orm.Dict:
    """One record per iteration from its nodes, keyed ``<kind>_<iteration>[_<member>]``.

    Kinds: ``training`` / ``validation`` (TrainingSetData trained on), ``metrics`` (per member: validation metrics),
    ``ratios`` (exploration), ``window`` (Dict with lo, hi used in that exploration), ``labels`` (TrainingSetData
    labelled after it), ``failed`` (LabelWorkChain failures), ``calibration`` (Dict), ``observable`` (Dict).
    """
    iterations = sorted({int(key.split('_')[1]) for key in nodes})
    records = []
    for n in iterations:
        record: dict[str, Any] = {'iteration': n}
        if f'training_{n}' in nodes:
            record['n_training'] = len(nodes[f'training_{n}'])
            record['n_validation'] = len(nodes[f'validation_{n}'])
        metrics = [nodes[key].get_dict() for key in sorted(nodes) if key.startswith(f'metrics_{n}_')]
        for name in ('forces_rmse', 'energy_rmse', 'stress_rmse'):
            values = [entry[name] for entry in metrics if entry.get(name) is not None]
            if values:
                record[f'validation_{name}'] = float(np.mean(values))
        if f'ratios_{n}' in nodes:
            record['ratios'] = nodes[f'ratios_{n}'].get_dict()
        if f'window_{n}' in nodes:
            record['lo'], record['hi'] = nodes[f'window_{n}']['lo'], nodes[f'window_{n}']['hi']
        if f'labels_{n}' in nodes:
            record['labels_added'] = len(nodes[f'labels_{n}'])
        if f'failed_{n}' in nodes:
            record['labels_failed'] = len(nodes[f'failed_{n}'].get_dict())
        if f'calibration_{n}' in nodes:
            calibration = nodes[f'calibration_{n}']
            record['calibrated'] = calibration['calibrated']
            record['calibrated_lo'], record['calibrated_hi'] = calibration['lo'], calibration['hi']
        if f'observable_{n}' in nodes:
            record['observable'] = nodes[f'observable_{n}']['value']
        records.append(record)
    units = {'validation_forces_rmse': 'meV/Angstrom', 'validation_energy_rmse': 'meV/atom', 'lo': 'eV/Angstrom'}
    return orm.Dict({'iterations': records, 'units': units})


@calcfunction
def learning_plots(
    history: orm.Dict, predictions: TrainingSetData, reference: TrainingSetData
) -> dict[str, orm.SinglefileData]:
    """PNGs: validation error and accurate ratio versus iteration; force parity of the final driving model."""
    reference_frames, predicted_frames = reference.to_ase(), predictions.to_ase()
    reference_forces = np.concatenate([frame.get_forces().ravel() for frame in reference_frames])
    predicted_forces = np.concatenate([frame.get_forces().ravel() for frame in predicted_frames])
    return {
        'history': orm.SinglefileData(io.BytesIO(plot_learning_history(history['iterations'])), 'history.png'),
        'force_parity': orm.SinglefileData(
            io.BytesIO(plot_force_parity(reference_forces, predicted_forces)), 'force_parity.png'
        ),
    }


def _validate_inputs(inputs: dict, namespace) -> str | None:
    from ase.data import atomic_numbers

    metal = inputs['metal'].value
    if metal not in atomic_numbers or metal in ('H', 'X'):
        return f'metal: {metal!r} is not a metal element symbol'
    temperatures, pressures = inputs['temperatures'].get_list(), inputs['pressures'].get_list()
    if not temperatures or any(not isinstance(t, (int, float)) or t <= 0 for t in temperatures):
        return f'temperatures: give positive temperatures in K, got {temperatures}'
    if not pressures or any(not isinstance(p, (int, float)) or p < 0 for p in pressures):
        return f'pressures: give pressures >= 0 in GPa, got {pressures}'
    if inputs['max_iterations'].value < 1:
        return f'max_iterations must be at least 1, got {inputs["max_iterations"].value}'
    fraction = inputs['validation_fraction'].value
    if not 0 < fraction < 1:
        return f'validation_fraction must be between 0 and 1 (exclusive), got {fraction}'
    window = inputs['trust_window'].get_dict()
    missing = sorted(
        {'lo', 'hi', 'calibrate', 'target_force_error', 'hi_over_lo', 'min_frames', 'quantile'} - set(window)
    )
    if missing:
        return f'trust_window: missing {", ".join(missing)}'
    if not 0 <= window['lo'] < window['hi']:
        return f'trust_window: need 0 <= lo < hi, got lo={window["lo"]}, hi={window["hi"]}'
    if window['target_force_error'] <= 0 or window['hi_over_lo'] <= 1:
        return 'trust_window: need target_force_error > 0 and hi_over_lo > 1'
    convergence = inputs['convergence'].get_dict()
    if not 0 < convergence.get('accurate_ratio', -1) <= 1 or convergence.get('consecutive', 0) < 1:
        return f'convergence: need 0 < accurate_ratio <= 1 and consecutive >= 1, got {convergence}'
    if 'observable' in inputs:
        observable = inputs['observable'].get_dict()
        if observable.get('quantity') not in decisions.OBSERVABLES:
            return f'observable: quantity must be one of {", ".join(decisions.OBSERVABLES)}, got {observable}'
        if not observable.get('tolerance', 0) > 0 or 'system' not in observable or 'temperature_K' not in observable:
            return f'observable: give system, temperature_K, pressure_GPa and a positive tolerance, got {observable}'
    parent = inputs.get('parent', {})
    if parent and not {'training_set', 'validation_set', 'models'} <= set(parent):
        return 'parent: give training_set, validation_set and models (see get_builder_from_parent)'
    if 'validation_set' in inputs and 'training_set' not in inputs:
        return 'validation_set given without training_set'
    for key in ('training_set', 'validation_set'):
        if key in inputs and not inputs[key].is_labelled:
            return f'{key}: TrainingSetData<{inputs[key].pk}> is not labelled'
    return None


class ActiveLearningWorkChain(ProtocolMixin, WorkChain):
    """Active learning of an Allegro committee for the M-H system over a (T, P) range."""

    @classmethod
    def define(cls, spec):
        # fmt: off
        super().define(spec)
        spec.expose_inputs(LabelWorkChain, namespace='label', exclude=('structures', 'frames', 'origin'),
                           namespace_options={'help': 'DFT labelling template (code, protocol settings, resources).'})
        spec.expose_inputs(CommitteeWorkChain, namespace='train',
                           exclude=('train.training_set', 'train.validation_set', 'train.energy_shifts',
                                    'parent_models'),
                           namespace_options={'help': 'Committee training template (code, hyperparameters, size).'})
        spec.expose_inputs(ExploreWorkChain, namespace='explore',
                           exclude=('structures', 'models', 'temperatures', 'pressures', 'lo', 'hi', 'iteration'),
                           namespace_options={'help': 'Exploration template: md, md_restart, caps.'})
        spec.input('metal', valid_type=orm.Str, help='The metal M of the M-H system, e.g. "Ca".')
        spec.input('pressures', valid_type=orm.List, help='Pressures (GPa) of the seeds and the NPT exploration.')
        spec.input('temperatures', valid_type=orm.List, help='Exploration temperatures (K).')
        spec.input_namespace('initial_structures', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='Seeds to label instead of the training-domain seeds of structures/domain.py.')
        spec.input_namespace('exploration_structures', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='Exploration systems by name (default: structures/domain.py exploration_systems).')
        spec.input('exploration_size', valid_type=orm.Str, default=lambda: orm.Str('small'),
                   help='Size of the default exploration systems: tiny, compact, small or large.')
        spec.input('seeds', valid_type=orm.Dict, required=False,
                   help='Settings of structures/domain.py training_domain_seeds (n_rattled, ..., seed).')
        spec.input('training_set', valid_type=TrainingSetData, required=False,
                   help='Labelled frames to start from (no seed labelling); split for validation if needed.')
        spec.input('validation_set', valid_type=TrainingSetData, required=False, help='Labelled validation frames.')
        spec.input('energy_shifts', valid_type=orm.Dict, required=False,
                   help='Per-type energy shifts (eV); default: least-squares fit to the first training set.')
        spec.input('trust_window', valid_type=orm.Dict,
                   help='lo, hi (eV/A), calibrate, target_force_error, hi_over_lo, min_frames, quantile.')
        spec.input('convergence', valid_type=orm.Dict, help='accurate_ratio and consecutive iterations.')
        spec.input('observable', valid_type=orm.Dict, required=False,
                   help='Optional physical criterion: quantity (density | h_per_m), system, temperature_K, '
                        'pressure_GPa, tolerance; the loop stops only when it changed less than tolerance.')
        spec.input('max_iterations', valid_type=orm.Int, default=lambda: orm.Int(10))
        spec.input('validation_fraction', valid_type=orm.Float, default=lambda: orm.Float(0.1),
                   help='Fraction of each labelled batch kept for validation.')
        spec.input_namespace('parent', required=False, populate_defaults=False,
                             help='Continue from an earlier run: its training_set, validation_set, models, '
                                  'trust_window (see get_builder_from_parent).')
        spec.input('parent.training_set', valid_type=TrainingSetData, required=False)
        spec.input('parent.validation_set', valid_type=TrainingSetData, required=False)
        spec.input_namespace('parent.models', valid_type=AllegroPotentialData, dynamic=True, required=False)
        spec.input('parent.trust_window', valid_type=orm.Dict, required=False)
        spec.input('parent.energy_shifts', valid_type=orm.Dict, required=False)
        spec.inputs.validator = _validate_inputs

        spec.outline(
            cls.setup,
            if_(cls.needs_seed_labels)(cls.label_seeds, cls.inspect_seed_labels),
            cls.prepare_datasets,
            while_(cls.should_iterate)(
                cls.train_committee, cls.inspect_committee,
                cls.explore, cls.inspect_exploration,
                if_(cls.should_label_candidates)(cls.label_candidates, cls.inspect_candidate_labels),
            ),
            cls.results,
        )
        spec.output('training_set', valid_type=TrainingSetData, required=False, help='The final training set.')
        spec.output('validation_set', valid_type=TrainingSetData, required=False, help='The final validation set.')
        spec.output_namespace('models', valid_type=AllegroPotentialData, dynamic=True, required=False,
                              help='The final committee.')
        spec.output('energy_shifts', valid_type=orm.Dict, required=False)
        spec.output('trust_window', valid_type=orm.Dict, required=False, help='The last trust window (lo, hi).')
        spec.output('history', valid_type=orm.Dict, required=False, help='Per-iteration record of the loop.')
        spec.output_namespace('plots', valid_type=orm.SinglefileData, dynamic=True, required=False,
                              help='history.png (errors, ratios vs iteration), force_parity.png (final model).')
        spec.exit_code(401, 'ERROR_SEED_LABELLING_FAILED',
                       message='Labelling the seeds gave no usable dataset: {reason}')
        spec.exit_code(402, 'ERROR_TRAINING_FAILED',
                       message='Iteration {iteration}: fewer than two committee members trained ({failed}); the '
                               'previous committee and the dataset are output.')
        spec.exit_code(403, 'ERROR_EXPLORATION_FAILED',
                       message='Iteration {iteration}: exploration produced no frames ({reason}); see its report.')
        spec.exit_code(404, 'ERROR_LABELLING_FAILED',
                       message='Iteration {iteration}: no candidate could be labelled; the dataset so far is output.')
        spec.exit_code(405, 'ERROR_NO_CANDIDATES',
                       message='Iteration {iteration}: not converged but no candidate frame was selected (all '
                               'frames above hi?): widen the trust window or shorten the MD.')
        spec.exit_code(410, 'ERROR_MAX_ITERATIONS',
                       message='Not converged after {n} iterations; the final committee and dataset are output, '
                               'continue with get_builder_from_parent.')
        # fmt: on

    @classmethod
    def get_protocol_filepath(cls):
        return protocol_file('active_learning')

    @classmethod
    def get_builder_from_protocol(
        cls,
        pw_code: orm.AbstractCode,
        train_code: orm.AbstractCode,
        md_code: orm.AbstractCode,
        metal: str,
        pressures: list[float],
        temperatures: list[float],
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        pseudo_family: str = DEFAULT_FAMILY,
        training_set: TrainingSetData | None = None,
        validation_set: TrainingSetData | None = None,
        energy_shifts: orm.Dict | None = None,
        initial_structures: dict[str, orm.StructureData] | None = None,
        exploration_structures: dict[str, orm.StructureData] | None = None,
    ):
        """Builder for the loop on the M-H system; protocol fast / moderate / precise (protocols/active_learning.yaml).

        Separate codes and resources for DFT, training and MD (the label, train and explore protocols), so each step
        goes to its own partition; e.g. ``overrides={'explore': {'overrides': {'options': {'queue_name': 'gpu'}}}}``.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        from ..structures import bulk_phase

        # the label template's cutoffs are fixed from the elements of the system
        example = orm.StructureData(ase=bulk_phase('MH4-I4mmm', metal))
        label = LabelWorkChain.get_builder_from_protocol(
            pw_code, [example], pseudo_family, inputs['label']['protocol'], inputs['label']['overrides']
        )
        builder = cls.get_builder()
        builder.label = {key: value for key, value in label.items() if key not in ('structures', 'frames')}
        committee = CommitteeWorkChain.get_builder_from_protocol(
            train_code,
            training_set=None,
            energy_shifts=None,
            protocol=inputs['train']['protocol'],
            overrides=inputs['train']['overrides'],
        )
        builder.train = committee._inputs(prune=True)  # the template without its (unset) data inputs
        explore = ExploreWorkChain.get_builder_from_protocol(
            md_code, {}, {}, temperatures, pressures, inputs['explore']['protocol'], inputs['explore']['overrides']
        )
        set_here = ('structures', 'models', 'temperatures', 'pressures', 'lo', 'hi', 'iteration')
        builder.explore = {key: value for key, value in explore._inputs(prune=True).items() if key not in set_here}
        builder.metal = orm.Str(metal)
        builder.pressures = orm.List(list(pressures))
        builder.temperatures = orm.List(list(temperatures))
        builder.exploration_size = orm.Str(inputs['exploration_size'])
        builder.seeds = orm.Dict(inputs['seeds'])
        builder.trust_window = orm.Dict(inputs['trust_window'])
        builder.convergence = orm.Dict(inputs['convergence'])
        if 'observable' in inputs:
            builder.observable = orm.Dict(inputs['observable'])
        builder.max_iterations = orm.Int(inputs['max_iterations'])
        builder.validation_fraction = orm.Float(inputs['validation_fraction'])
        for key, value in (
            ('training_set', training_set),
            ('validation_set', validation_set),
            ('energy_shifts', energy_shifts),
            ('initial_structures', initial_structures),
            ('exploration_structures', exploration_structures),
        ):
            if value is not None:
                builder[key] = value
        return builder

    @classmethod
    def get_builder_from_parent(cls, parent: orm.WorkflowNode, **changes: Any):
        """Builder continuing ``parent`` (finished, failed or killed) from its latest dataset, committee and window.

        The other inputs are the parent's; ``changes`` replaces top-level inputs (e.g. ``max_iterations``).
        """
        if not isinstance(parent, orm.WorkflowNode) or parent.process_class is not cls:
            what = getattr(parent, 'process_label', None) or type(parent).__name__
            raise ValueError(f'parent: {what}<{parent.pk}> is not an {cls.__name__}')
        state = parent.base.extras.get(STATE_EXTRA, None)
        if not state or 'models' not in state:
            raise ValueError(f'parent: {cls.__name__}<{parent.pk}> never finished a committee; start a new run')
        builder = parent.get_builder_restart()
        for key in ('training_set', 'validation_set', 'initial_structures', 'parent'):
            builder.pop(key, None)
        builder.parent = {
            'training_set': orm.load_node(state['training_set']),
            'validation_set': orm.load_node(state['validation_set']),
            'models': {key: orm.load_node(uuid) for key, uuid in state['models'].items()},
            'trust_window': orm.load_node(state['trust_window']),
            'energy_shifts': orm.load_node(state['energy_shifts']),
        }
        for key, value in changes.items():
            builder[key] = value
        return builder

    # ---- steps -------------------------------------------------------------------------------------------------

    def setup(self):
        parent = self.inputs.get('parent', {})
        self.ctx.iteration = 0
        self.ctx.accurate_flags = []
        self.ctx.observables = []
        self.ctx.converged = False
        self.ctx.history = {}  # learning_history inputs, '<kind>_<iteration>[_<member>]' -> node
        self.ctx.models = dict(parent.get('models', {}))
        self.ctx.window = parent.get('trust_window', self.inputs.trust_window)
        self.ctx.training_set = parent.get('training_set', self.inputs.get('training_set'))
        self.ctx.validation_set = parent.get('validation_set', self.inputs.get('validation_set'))
        self.ctx.energy_shifts = parent.get('energy_shifts', self.inputs.get('energy_shifts'))
        if 'exploration_structures' in self.inputs:
            self.ctx.systems = dict(self.inputs.exploration_structures)
        else:
            middle = sorted(self.inputs.pressures.get_list())[len(self.inputs.pressures) // 2]
            self.ctx.systems = exploration_structures(
                self.inputs.metal, orm.Float(middle), self.inputs.exploration_size
            )
        self.report(f'exploring {", ".join(sorted(self.ctx.systems))} at T = {self.inputs.temperatures.get_list()} K, '
                    f'P = {self.inputs.pressures.get_list()} GPa')  # fmt: skip

    def needs_seed_labels(self) -> bool:
        return self.ctx.training_set is None

    def label_seeds(self):
        if 'initial_structures' in self.inputs:
            frames = structures_to_frames(**self.inputs.initial_structures)
        else:
            settings = self.inputs.get('seeds', orm.Dict({}))
            frames = seed_frames(self.inputs.metal, self.inputs.pressures, settings)
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
        inputs.frames = frames
        inputs.metadata = {'call_link_label': 'label_seeds'}
        node = self.submit(LabelWorkChain, **inputs)
        self.report(f'labelling {len(frames)} seed frames: LabelWorkChain<{node.pk}>')
        return ToContext(seed_labels=node)

    def inspect_seed_labels(self):
        node = self.ctx.seed_labels
        if 'dataset' not in node.outputs or len(node.outputs.dataset) < 2:
            return self.exit_codes.ERROR_SEED_LABELLING_FAILED.format(reason=node.exit_message or 'fewer than 2 frames')
        if not node.is_finished_ok:
            self.report(f'seed labelling: {node.exit_message}; continuing with the {len(node.outputs.dataset)} labels')
        self.ctx.training_set = node.outputs.dataset
        return None

    def prepare_datasets(self):
        """A validation set split off when none is given, and energy shifts fitted when none are given."""
        if self.ctx.validation_set is None:
            split = split_dataset(self.ctx.training_set, self.inputs.validation_fraction, orm.Int(0))
            self.ctx.training_set, self.ctx.validation_set = split['training'], split['validation']
        if self.ctx.energy_shifts is None:
            self.ctx.energy_shifts = fit_energy_shifts(self.ctx.training_set)
        self.report(f'dataset: {len(self.ctx.training_set)} training, {len(self.ctx.validation_set)} validation frames')

    def should_iterate(self) -> bool:
        return not self.ctx.converged and self.ctx.iteration < self.inputs.max_iterations.value

    def train_committee(self):
        self.ctx.iteration += 1
        n = self.ctx.iteration
        inputs = AttributeDict(self.exposed_inputs(CommitteeWorkChain, namespace='train'))
        inputs.train = AttributeDict(inputs.train)
        inputs.train.training_set = self.ctx.training_set
        inputs.train.validation_set = self.ctx.validation_set
        inputs.train.energy_shifts = self.ctx.energy_shifts
        previous = self.ctx.models
        if previous:  # warm start from the previous committee (cyclically when fewer members survived)
            inputs.parent_models = warm_start_parents(previous, inputs.committee_size.value)
        inputs.metadata = {'call_link_label': f'train_{n}'}
        node = self.submit(CommitteeWorkChain, **inputs)
        start = 'warm start from the previous committee' if previous else 'from scratch'
        self.report(f'iteration {n}: training the committee ({start}): CommitteeWorkChain<{node.pk}>')
        self.ctx.history[f'training_{n}'] = self.ctx.training_set
        self.ctx.history[f'validation_{n}'] = self.ctx.validation_set
        return ToContext(committee=node)

    def inspect_committee(self):
        node, n = self.ctx.committee, self.ctx.iteration
        models = dict(node.outputs.models) if 'models' in node.outputs else {}
        if len(models) < 2:
            self._output_state()
            return self.exit_codes.ERROR_TRAINING_FAILED.format(iteration=n, failed=node.exit_message)
        if not node.is_finished_ok:
            self.report(f'iteration {n}: {node.exit_message}; continuing with {len(models)} members')
        self.ctx.models = models
        rmse = []
        for key, model in models.items():
            metrics = model.creator.outputs.metrics
            self.ctx.history[f'metrics_{n}_{key.split("_")[1]}'] = metrics
            rmse.append(f'{key} {metrics.get("forces_rmse", float("nan")):.0f}')
        self.report(f'iteration {n}: validation force RMSE (meV/A): {", ".join(rmse)}')
        self._record_state()
        return None

    def explore(self):
        n = self.ctx.iteration
        inputs = AttributeDict(self.exposed_inputs(ExploreWorkChain, namespace='explore'))
        inputs.structures = self.ctx.systems
        inputs.models = self.ctx.models
        inputs.temperatures = self.inputs.temperatures
        inputs.pressures = self.inputs.pressures
        inputs.lo, inputs.hi = orm.Float(self.ctx.window['lo']), orm.Float(self.ctx.window['hi'])
        inputs.iteration = orm.Int(n)
        inputs.metadata = {'call_link_label': f'explore_{n}'}
        node = self.submit(ExploreWorkChain, **inputs)
        self.report(
            f'iteration {n}: exploring with trust window [{self.ctx.window["lo"]:.3f}, {self.ctx.window["hi"]:.3f}) '
            f'eV/A: ExploreWorkChain<{node.pk}>'
        )
        self.ctx.history[f'window_{n}'] = self.ctx.window
        return ToContext(exploration=node)

    def inspect_exploration(self):
        node, n = self.ctx.exploration, self.ctx.iteration
        if 'ratios' not in node.outputs:
            self._output_state()
            return self.exit_codes.ERROR_EXPLORATION_FAILED.format(iteration=n, reason=node.exit_message)
        ratios = node.outputs.ratios
        self.ctx.history[f'ratios_{n}'] = ratios
        threshold = self.inputs.convergence['accurate_ratio']
        self.ctx.accurate_flags.append(decisions.iterations_accurate(ratios.get_dict(), threshold))
        summary = '; '.join(
            f'{system}: {values["accurate"]:.2f}/{values["candidate"]:.2f}/{values["failed"]:.2f}'
            for system, values in sorted(ratios.get_dict().items())
        )
        self.report(f'iteration {n}: accurate/candidate/failed {summary}')
        converged = decisions.consecutive_converged(self.ctx.accurate_flags, self.inputs.convergence['consecutive'])
        if 'observable' in self.inputs:
            converged = self._track_observable(node) and converged
        self.ctx.converged = converged
        if converged:
            self.report(f'iteration {n}: converged')
        return None

    def _track_observable(self, exploration: orm.WorkflowNode) -> bool:
        """Compute the observable on its exploration run; True when it changed less than the tolerance."""
        settings, n = self.inputs.observable, self.ctx.iteration
        wanted = (settings['system'], float(settings['temperature_K']), settings.get('pressure_GPa'))
        for key, conditions in exploration.outputs.conditions.items():
            pressure = conditions['pressure_GPa']
            found = (conditions['system'], float(conditions['temperature_K']), pressure)
            if found == wanted and key in exploration.outputs.trajectories:
                value = track_observable(exploration.outputs.trajectories[key], settings)
                self.ctx.history[f'observable_{n}'] = value
                self.ctx.observables.append(value['value'])
                self.report(f'iteration {n}: {settings["quantity"]} = {value["value"]:.4g} {value["unit"]}')
                return decisions.observable_converged(self.ctx.observables, settings['tolerance'])
        self.report(f'iteration {n}: no exploration run at {wanted} for the observable; not converged on it')
        return False

    def should_label_candidates(self) -> bool:
        return not self.ctx.converged and self.ctx.iteration < self.inputs.max_iterations.value

    def label_candidates(self):
        n = self.ctx.iteration
        if 'candidates' not in self.ctx.exploration.outputs:
            self._output_state()
            return self.exit_codes.ERROR_NO_CANDIDATES.format(iteration=n)
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
        inputs.frames = self.ctx.exploration.outputs.candidates
        inputs.metadata = {'call_link_label': f'label_{n}'}
        node = self.submit(LabelWorkChain, **inputs)
        self.report(f'iteration {n}: labelling {len(inputs.frames)} candidates: LabelWorkChain<{node.pk}>')
        return ToContext(labelling=node)

    def inspect_candidate_labels(self):
        node, n = self.ctx.labelling, self.ctx.iteration
        self.ctx.history[f'failed_{n}'] = node.outputs.failed
        if 'dataset' not in node.outputs:
            self._output_state()
            return self.exit_codes.ERROR_LABELLING_FAILED.format(iteration=n)
        labels = node.outputs.dataset
        self.ctx.history[f'labels_{n}'] = labels
        if self.inputs.trust_window['calibrate']:
            settings = orm.Dict({**self.inputs.trust_window.get_dict(), 'lo': self.ctx.window['lo'],
                                 'hi': self.ctx.window['hi']})  # fmt: skip
            calibration = calibrate_window(self.ctx.exploration.outputs.candidates, labels, settings)
            self.ctx.history[f'calibration_{n}'] = calibration
            self.ctx.window = calibration
            self.report(
                f'iteration {n}: trust window {"calibrated" if calibration["calibrated"] else "kept"}: '
                f'[{calibration["lo"]:.3f}, {calibration["hi"]:.3f}) eV/A ({calibration["reason"]})'
            )
        grown = grow_dataset(
            self.ctx.training_set,
            self.ctx.validation_set,
            labels,
            orm.Dict({'validation_fraction': self.inputs.validation_fraction.value, 'seed': n}),
        )
        before = len(self.ctx.training_set) + len(self.ctx.validation_set)
        self.ctx.training_set, self.ctx.validation_set = grown['training_set'], grown['validation_set']
        added = len(self.ctx.training_set) + len(self.ctx.validation_set) - before
        self.report(
            f'iteration {n}: {len(labels)} labelled ({added} new to the dataset, the others already in it), '
            f'{len(node.outputs.failed.get_dict())} failed; dataset {len(self.ctx.training_set)} training + '
            f'{len(self.ctx.validation_set)} validation frames'
        )
        self._record_state()
        return None

    def results(self):
        self._output_state()
        if not self.ctx.converged:
            return self.exit_codes.ERROR_MAX_ITERATIONS.format(n=self.ctx.iteration)
        return None

    # ---- state -------------------------------------------------------------------------------------------------

    def _record_state(self) -> None:
        """Point the node's extras at the latest state, so a killed run can be continued."""
        self.node.base.extras.set(
            STATE_EXTRA,
            {
                'iteration': self.ctx.iteration,
                'training_set': self.ctx.training_set.uuid,
                'validation_set': self.ctx.validation_set.uuid,
                'models': {key: model.uuid for key, model in self.ctx.models.items()},
                'trust_window': self.ctx.window.uuid,
                'energy_shifts': self.ctx.energy_shifts.uuid,
            },
        )

    def _output_state(self) -> None:
        """Output the latest dataset, committee, window, history and plots (on every exit path)."""
        if self.ctx.training_set is not None:
            self.out('training_set', self.ctx.training_set)
        if self.ctx.validation_set is not None:
            self.out('validation_set', self.ctx.validation_set)
        if self.ctx.energy_shifts is not None:
            self.out('energy_shifts', self.ctx.energy_shifts)
        self.out('trust_window', self.ctx.window)
        if self.ctx.models:
            self.out('models', self.ctx.models)
        if not self.ctx.history:
            return
        history = learning_history(**self.ctx.history)
        self.out('history', history)
        driver = self.ctx.models.get('member_0')
        if driver is not None and 'validation_predictions' in driver.creator.outputs:
            training = driver.creator
            plots = learning_plots(history, training.outputs.validation_predictions, training.inputs.validation_set)
            self.out('plots', plots)
