"""CommitteeWorkChain: N Allegro models trained concurrently with different seeds, and their spread."""

from __future__ import annotations

from typing import Any

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin, recursive_merge

from ..analysis.committee import energy_deviation, force_deviation, stress_deviation
from ..calculations.allegro_config import validate_hyperparameters
from ..calculations.allegro_train import AllegroTrainCalculation
from ..data.allegro_potential import AllegroPotentialData
from ..data.training_set import TrainingSetData
from ..protocols import protocol_file
from ..setup.cluster import job_options

__all__ = ('CommitteeWorkChain', 'bootstrap_subset', 'committee_spread', 'warm_start_parents')


@calcfunction
def bootstrap_subset(dataset: TrainingSetData, seed: orm.Int) -> TrainingSetData:
    """As many frames as ``dataset`` drawn with replacement (seeded): a bootstrap replica for one member."""
    frames = dataset.to_ase()
    picks = np.random.default_rng(seed.value).integers(0, len(frames), size=len(frames))
    return TrainingSetData([frames[index] for index in picks])


@calcfunction
def committee_spread(**predictions: TrainingSetData) -> dict[str, orm.Data]:
    """Per validation frame: sigma_F (eV/A), sigma_E (eV/atom), sigma_V (eV/A^3) over the members' predictions."""
    members = [predictions[key].to_ase() for key in sorted(predictions)]
    n_frames = {len(frames) for frames in members}
    if len(members) < 2 or len(n_frames) != 1:
        raise ValueError(f'committee_spread: need >= 2 members predicting the same frames, got {len(members)}')
    sigma_f, sigma_e, sigma_v = [], [], []
    for frames in zip(*members, strict=True):
        sigma_f.append(force_deviation([frame.get_forces() for frame in frames]))
        sigma_e.append(energy_deviation([frame.get_potential_energy() for frame in frames], len(frames[0])))
        sigma_v.append(stress_deviation([frame.get_stress(voigt=False) for frame in frames]))
    per_frame = orm.ArrayData()
    for name, values in (('sigma_f', sigma_f), ('sigma_e', sigma_e), ('sigma_v', sigma_v)):
        per_frame.set_array(name, np.asarray(values))
    summary = orm.Dict(
        {
            'n_members': len(members),
            'n_frames': len(sigma_f),
            'sigma_f_mean': float(np.mean(sigma_f)),
            'sigma_f_max': float(np.max(sigma_f)),
            'sigma_e_mean': float(np.mean(sigma_e)),
            'sigma_v_mean': float(np.mean(sigma_v)),
            'units': {'sigma_f': 'eV/Angstrom', 'sigma_e': 'eV/atom', 'sigma_v': 'eV/Angstrom^3'},
        }
    )
    return {'per_frame': per_frame, 'summary': summary}


def warm_start_parents(models: dict[str, AllegroPotentialData], size: int) -> dict[str, AllegroPotentialData]:
    """``parent_models`` of a committee of ``size`` warm-started from ``models``: member i fine-tunes member i of the
    previous committee (in key order), cyclically when the committees differ in size."""
    previous = [models[key] for key in sorted(models)]
    return {f'member_{index}': previous[index % len(previous)] for index in range(size)}


def _validate_inputs(inputs: dict, namespace) -> str | None:
    size = inputs['committee_size'].value
    if size < 1:
        return f'committee_size must be at least 1, got {size}'
    if 'seeds' in inputs and len(set(inputs['seeds'].get_list())) != size:
        return f'seeds: give {size} different seeds (committee_size), got {inputs["seeds"].get_list()}'
    parents = inputs.get('parent_models', {})
    if parents and len(parents) != size:
        return f'parent_models: give one per member ({size}), got {len(parents)}'
    return None


class CommitteeWorkChain(ProtocolMixin, WorkChain):
    """Train ``committee_size`` Allegro models that differ by seed (and optionally by a bootstrap of the data)."""

    @classmethod
    def define(cls, spec):
        # fmt: off
        super().define(spec)
        spec.expose_inputs(AllegroTrainCalculation, namespace='train', exclude=('seed', 'parent_model'))
        spec.input('committee_size', valid_type=orm.Int, default=lambda: orm.Int(4), help='Number of models.')
        spec.input('seeds', valid_type=orm.List, required=False, help='One seed per member (default 0..N-1).')
        spec.input('bootstrap', valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help='Train each member on its own bootstrap replica of the training set.')
        spec.input_namespace('parent_models', valid_type=AllegroPotentialData, dynamic=True, required=False,
                             help='Warm start: member_<i> fine-tunes parent_models.member_<i>.')
        spec.inputs.validator = _validate_inputs
        spec.outline(cls.train_members, cls.results)
        spec.output_namespace('models', valid_type=AllegroPotentialData, dynamic=True,
                              help='The trained members, member_0 ... (also when some failed).')
        spec.output('spread', valid_type=orm.Dict, required=False,
                    help='Committee deviation on the validation frames (means and max).')
        spec.output('spread_per_frame', valid_type=orm.ArrayData, required=False,
                    help='sigma_F, sigma_E, sigma_V of each validation frame.')
        spec.exit_code(401, 'ERROR_MEMBERS_FAILED',
                       message='{n_failed} of {n_total} members failed ({failed}); the others are output.')
        spec.exit_code(402, 'ERROR_ALL_MEMBERS_FAILED', message='Every member failed: {failed}.')
        # fmt: on

    @classmethod
    def get_protocol_filepath(cls):
        return protocol_file('train')

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        training_set: TrainingSetData | None,
        energy_shifts: orm.Dict | None,
        validation_set: TrainingSetData | None = None,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        parent_models: dict[str, AllegroPotentialData] | None = None,
    ):
        """Builder for a committee on ``training_set``; protocol tiny / cpu / gpu (protocols/train.yaml).

        ``training_set`` and ``energy_shifts`` may be None for a template whose data a parent work chain sets.
        The jobs' ``metadata.options`` are the protocol's ``options`` with ``overrides['options']``; a GPU preset
        asks the computer's GPU partition for ``devices`` GPUs (:func:`~..setup.cluster.job_options`).
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.train.code = code
        for key, value in (
            ('training_set', training_set),
            ('validation_set', validation_set),
            ('energy_shifts', energy_shifts),
        ):
            if value is not None:
                builder.train[key] = value
        hyperparameters = validate_hyperparameters(inputs['hyperparameters'], preset=inputs['preset'])
        builder.train.hyperparameters = orm.Dict(hyperparameters)
        gpus = hyperparameters['devices'] if hyperparameters['accelerator'] == 'gpu' else 0
        builder.train.metadata.options = recursive_merge(
            dict(builder.train.metadata.options), job_options(code.computer, inputs['options'], gpus)
        )
        builder.committee_size = orm.Int(inputs['committee_size'])
        builder.bootstrap = orm.Bool(inputs['bootstrap'])
        if parent_models:
            builder.parent_models = parent_models
        return builder

    def train_members(self):
        """Submit one AllegroTrainCalculation per member, all at once."""
        size = self.inputs.committee_size.value
        seeds = self.inputs.seeds.get_list() if 'seeds' in self.inputs else list(range(size))
        parents = self.inputs.get('parent_models', {})
        members = {}
        for index, seed in enumerate(seeds):
            key = f'member_{index}'
            inputs = AttributeDict(self.exposed_inputs(AllegroTrainCalculation, namespace='train'))
            inputs.seed = orm.Int(seed)
            if self.inputs.bootstrap.value:
                inputs.training_set = bootstrap_subset(inputs.training_set, inputs.seed)
            if key in parents:
                inputs.parent_model = parents[key]
            inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': key}
            members[key] = self.submit(AllegroTrainCalculation, **inputs)
        self.report(f'training {size} members: {", ".join(f"{k}<{n.pk}>" for k, n in members.items())}')
        return ToContext(**members)

    def results(self):
        keys = sorted(key for key in self.ctx if key.startswith('member_'))
        finished = {key: self.ctx[key] for key in keys if self.ctx[key].is_finished_ok}
        failed = {key: self.ctx[key].exit_status for key in keys if key not in finished}
        self.out('models', {key: node.outputs.model for key, node in finished.items()})
        predictions = {
            key: node.outputs.validation_predictions
            for key, node in finished.items()
            if 'validation_predictions' in node.outputs
        }
        if len(predictions) >= 2:
            spread = committee_spread(**predictions)
            self.out('spread', spread['summary'])
            self.out('spread_per_frame', spread['per_frame'])
            self.report(
                f'committee spread on validation frames: mean sigma_F {spread["summary"]["sigma_f_mean"]:.3f} eV/A'
            )
        if not finished:
            return self.exit_codes.ERROR_ALL_MEMBERS_FAILED.format(failed=failed)
        if failed:
            return self.exit_codes.ERROR_MEMBERS_FAILED.format(n_failed=len(failed), n_total=len(keys), failed=failed)
        return None
