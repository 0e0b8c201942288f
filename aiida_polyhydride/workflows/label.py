"""LabelWorkChain: DFT labels (energy, forces, stress) of many frames with pw.x, into one TrainingSetData.

One PwBaseWorkChain per frame (its error handlers do the retries), at most ``max_concurrent`` at once and the next
as soon as one ends, the same cutoffs for every frame. Frames that fail are recorded with their reason; the
successful labels are always output, and a dedicated exit code says when more than ``max_failed_fraction`` failed.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import WorkChain, calcfunction, while_
from aiida_quantumespresso.calculations.functions.create_kpoints_from_distance import create_kpoints_from_distance
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin, recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

from ..analysis.frames import label_frame, qe_stress_to_ase
from ..data.training_set import TrainingSetData
from ..protocols import protocol_file
from ..setup.pseudos import DEFAULT_FAMILY
from .pw import get_singlepoint_builder, load_pseudo_family, recommended_cutoffs
from .rolling import RollingSubmissionMixin, failure_reason, validate_max_concurrent

__all__ = ('LabelWorkChain', 'collect_labels', 'dataset_to_structures')

# keys of per-frame provenance copied from the `origin` input into each labelled frame's info
ORIGIN_KEYS = ('origin_builder', 'origin_iteration', 'origin_system', 'origin_temperature_K', 'origin_pressure_GPa')


@calcfunction
def dataset_to_structures(dataset: TrainingSetData) -> dict[str, orm.StructureData]:
    """One StructureData per frame of ``dataset``, keyed ``frame_00000`` ... in frame order."""
    return {frame_key(index): orm.StructureData(ase=frame) for index, frame in enumerate(dataset.to_ase())}


@calcfunction
def collect_labels(**nodes: orm.Data) -> TrainingSetData:
    """The labelled dataset from per-frame pw.x outputs.

    Inputs: ``structure_<i>``, ``trajectory_<i>`` and ``parameters_<i>`` for each labelled frame i, optionally
    ``source`` (the unlabelled dataset the frames came from; its per-frame info is kept) and ``origin`` (a Dict of
    info for every frame). Stress goes from pw.x's GPa (positive = compressive) to ASE's eV/Angstrom^3.
    """
    source = nodes.pop('source', None)
    origin = nodes.pop('origin').get_dict() if 'origin' in nodes else {}
    source_frames = source.to_ase() if source is not None else None
    indices = sorted(int(key.split('_')[1]) for key in nodes if key.startswith('structure_'))
    frames = []
    for index in indices:
        structure, trajectory, parameters = (
            nodes[f'{kind}_{index}'] for kind in ('structure', 'trajectory', 'parameters')
        )
        info = dict(source_frames[index].info) if source_frames is not None else {}
        info.update(origin)
        info['label_uuid'] = parameters.creator.uuid
        frames.append(
            label_frame(
                structure.get_ase(),
                energy=parameters['energy'],
                forces=trajectory.get_array('forces')[-1],
                stress=qe_stress_to_ase(trajectory.get_array('stress')[-1]),
                info=info,
            )
        )
    return TrainingSetData(frames)


def _parameters_for_kinds(parameters: orm.Dict, kinds: list[str]) -> orm.Dict:
    """``parameters`` without per-kind SYSTEM entries (e.g. starting_magnetization) of kinds absent from a frame."""
    content = parameters.get_dict()
    system = content.get('SYSTEM', {})
    per_kind = {key: value for key, value in system.items() if isinstance(value, dict)}
    if all(set(value) <= set(kinds) for value in per_kind.values()):
        return parameters
    for key, value in per_kind.items():
        system[key] = {kind: entry for kind, entry in value.items() if kind in kinds}
    return orm.Dict(content)


def _with_conv_thr(parameters: orm.Dict, conv_thr: float) -> orm.Dict:
    content = parameters.get_dict()
    content.setdefault('ELECTRONS', {})['conv_thr'] = conv_thr
    return orm.Dict(content)


def frame_key(index: int) -> str:
    return f'frame_{index:05d}'


def _validate_inputs(inputs: dict, namespace) -> str | None:
    # exposed in a wrapper without these ports, the wrapper supplies the frames itself
    if (
        'structures' in namespace
        and 'frames' in namespace
        and (('structures' in inputs and bool(inputs['structures'])) == ('frames' in inputs))
    ):
        return 'give exactly one of `structures` (StructureData namespace) or `frames` (an unlabelled TrainingSetData)'
    parameters = inputs['pw_base']['pw']['parameters'].get_dict()
    if not {'ecutwfc', 'ecutrho'} <= set(parameters.get('SYSTEM', {})):
        return '`pw_base.pw.parameters.SYSTEM` must set ecutwfc and ecutrho: every frame needs the same cutoffs'
    return None


def _validate_conv_thr_per_atom(value: orm.Float, _) -> str | None:
    return None if value.value > 0 else f'conv_thr_per_atom must be positive, got {value.value}'


def _validate_max_failed_fraction(value: orm.Float, _) -> str | None:
    return None if 0.0 <= value.value <= 1.0 else f'max_failed_fraction must be between 0 and 1, got {value.value}'


def _validate_origin(value: orm.Dict, _) -> str | None:
    unknown = sorted(set(value.keys()) - set(ORIGIN_KEYS))
    return f'origin: unknown keys {unknown}; allowed: {", ".join(ORIGIN_KEYS)}' if unknown else None


class LabelWorkChain(RollingSubmissionMixin, ProtocolMixin, WorkChain):
    """Label frames with pw.x (energy, forces, stress) into one TrainingSetData."""

    @classmethod
    def define(cls, spec):
        super().define(spec)
        spec.expose_inputs(
            PwBaseWorkChain,
            namespace='pw_base',
            exclude=('clean_workdir', 'pw.structure', 'pw.pseudos', 'kpoints', 'kpoints_distance'),
            namespace_options={'help': 'Template of the PwBaseWorkChain run for every frame.'},
        )
        spec.input_namespace(
            'structures',
            valid_type=orm.StructureData,
            dynamic=True,
            required=False,
            help='Frames to label, as StructureData.',
        )
        spec.input(
            'frames',
            valid_type=TrainingSetData,
            required=False,
            help='Frames to label, as an (unlabelled) TrainingSetData; its per-frame info is kept.',
        )
        spec.input(
            'pseudo_family',
            valid_type=orm.Str,
            default=lambda: orm.Str(DEFAULT_FAMILY),
            help='Label of an installed aiida-pseudo family covering every element.',
        )
        spec.input(
            'kpoints_distance',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.25),
            help='k-point spacing (1/Angstrom); a 1x1x1 mesh runs Gamma-only.',
        )
        spec.input(
            'conv_thr_per_atom',
            valid_type=orm.Float,
            required=False,
            validator=_validate_conv_thr_per_atom,
            help='SCF threshold (Ry) per atom: each frame runs with conv_thr = this x its number of atoms, as '
            "aiida-quantumespresso sets it for one structure; without it every frame uses the template's conv_thr.",
        )
        spec.input(
            'max_concurrent',
            valid_type=orm.Int,
            default=lambda: orm.Int(4),
            validator=validate_max_concurrent,
            help='At most this many PwBaseWorkChains run at once.',
        )
        spec.input(
            'max_failed_fraction',
            valid_type=orm.Float,
            default=lambda: orm.Float(0.05),
            validator=_validate_max_failed_fraction,
            help='Fail the work chain when more frames than this fraction fail.',
        )
        spec.input(
            'clean_workdir',
            valid_type=orm.Bool,
            default=lambda: orm.Bool(True),
            help='Clean the remote folders of the pw.x calculations when they finish.',
        )
        spec.input(
            'origin',
            valid_type=orm.Dict,
            required=False,
            validator=_validate_origin,
            help=f'Provenance info added to every frame: {", ".join(ORIGIN_KEYS)}.',
        )
        spec.inputs.validator = _validate_inputs
        spec.outline(
            cls.setup,
            while_(cls.children_left)(cls.label_frames),
            cls.results,
        )
        spec.output(
            'dataset',
            valid_type=TrainingSetData,
            required=False,
            help='The successfully labelled frames (present even when the work chain fails).',
        )
        spec.output('failed', valid_type=orm.Dict, help='Failed frames: key -> pk, exit status and reason.')
        spec.exit_code(300, 'ERROR_PSEUDO_FAMILY', message='The pseudo family cannot label these frames: {reason}')
        spec.exit_code(
            401,
            'ERROR_NO_FRAME_LABELLED',
            message='All {n_total} frames failed; see the `failed` output and `verdi process report`.',
        )
        spec.exit_code(
            402,
            'ERROR_TOO_MANY_FAILED_FRAMES',
            message='{n_failed} of {n_total} frames failed, more than max_failed_fraction={fraction}; the '
            'successful labels are in the `dataset` output and the failures in `failed`.',
        )
        # fmt: on

    @classmethod
    def get_protocol_filepath(cls):
        return protocol_file('label')

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structures: list[orm.StructureData] | TrainingSetData,
        pseudo_family: str = DEFAULT_FAMILY,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """Builder labelling ``structures`` with the protocol (fast / moderate / precise) and ``overrides``.

        Cutoffs are fixed here, once for all frames, from the family's recommendation over every element present.
        The pw.x jobs' ``metadata.options`` are the protocol's ``options`` (MPI on one CPU node) with
        ``overrides['options']``, over the computer's default partition (:func:`~..setup.cluster.job_options`).
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        if isinstance(structures, TrainingSetData):
            elements = set(structures.species)
            example = orm.StructureData(ase=structures.to_ase()[0])
        else:
            structures = list(structures)
            if not structures:
                raise ValueError('structures: give at least one structure')
            elements = set().union(*(structure.get_symbols_set() for structure in structures))
            example = structures[0]
        cutoffs = recommended_cutoffs(pseudo_family, elements, inputs['cutoff_scale'])
        template = get_singlepoint_builder(
            code,
            example,
            pseudo_family=pseudo_family,
            protocol=inputs['pw_base_protocol'],
            overrides=recursive_merge(inputs['pw_base'], {'pw': {'parameters': {'SYSTEM': cutoffs}}}),
            options=inputs['options'],
        )
        builder = cls.get_builder()
        for key in ('max_iterations', 'handler_overrides'):
            if key in template:
                builder.pw_base[key] = template[key]
        pw = dict(template.pw)
        for key in ('structure', 'pseudos'):
            pw.pop(key, None)
        builder.pw_base.pw = pw
        if isinstance(structures, TrainingSetData):
            builder.frames = structures
        else:
            builder.structures = {frame_key(index): structure for index, structure in enumerate(structures)}
        builder.pseudo_family = orm.Str(pseudo_family)
        builder.kpoints_distance = orm.Float(inputs['kpoints_distance'])
        user_conv_thr = (overrides or {}).get('pw_base', {}).get('pw', {}).get('parameters', {}).get('ELECTRONS', {})
        if 'conv_thr' not in user_conv_thr:
            # aiida-quantumespresso scales conv_thr with the atom count of one structure; here each frame gets its own
            meta = recursive_merge(
                PwBaseWorkChain.get_protocol_inputs(inputs['pw_base_protocol'])['meta_parameters'],
                inputs['pw_base'].get('meta_parameters', {}),
            )
            builder.conv_thr_per_atom = orm.Float(meta['conv_thr_per_atom'])
        builder.max_concurrent = orm.Int(inputs['max_concurrent'])
        builder.max_failed_fraction = orm.Float(inputs['max_failed_fraction'])
        builder.pw_base.on_unhandled_failure = orm.Str(inputs['on_unhandled_failure'])
        builder.clean_workdir = orm.Bool(inputs['clean_workdir'])
        return builder

    def setup(self):
        """Collect the frames to label and check the pseudo family covers them."""
        if 'frames' in self.inputs:
            self.ctx.structures = dict(dataset_to_structures(self.inputs.frames))
        else:
            self.ctx.structures = dict(self.inputs.structures)
        self.start_queue(sorted(self.ctx.structures))
        self.ctx.labelled = {}
        self.ctx.failed = {}
        elements = set().union(*(structure.get_symbols_set() for structure in self.ctx.structures.values()))
        try:
            self.ctx.family = load_pseudo_family(self.inputs.pseudo_family.value, elements)
        except ValueError as exception:
            return self.exit_codes.ERROR_PSEUDO_FAMILY.format(reason=str(exception))
        self.report(f'labelling {len(self.ctx.pending)} frames, at most {self.inputs.max_concurrent.value} at once')
        return None

    def label_frames(self):
        """Label the frames, at most ``max_concurrent`` pw.x at once, the next starting as soon as one ends."""
        return self.roll(self._submit_frame, self._collect)

    def _submit_frame(self, key: str) -> tuple[str, orm.WorkflowNode]:
        node = self.submit(PwBaseWorkChain, **self._frame_inputs(key))
        self.report(f'submitted {key}<{node.pk}>; {len(self.ctx.pending)} frames waiting')
        return key, node

    def _frame_inputs(self, key: str) -> AttributeDict:
        structure = self.ctx.structures[key]
        inputs = AttributeDict(self.exposed_inputs(PwBaseWorkChain, namespace='pw_base'))
        inputs.pw = AttributeDict(inputs.pw)
        inputs.pw.structure = structure
        inputs.pw.pseudos = self.ctx.family.get_pseudos(structure=structure)
        inputs.pw.parameters = _parameters_for_kinds(inputs.pw.parameters, structure.get_kind_names())
        if 'conv_thr_per_atom' in self.inputs:
            inputs.pw.parameters = _with_conv_thr(
                inputs.pw.parameters, self.inputs.conv_thr_per_atom.value * len(structure.sites)
            )
        kpoints = create_kpoints_from_distance(
            structure, self.inputs.kpoints_distance, orm.Bool(False), metadata={'call_link_label': f'kpoints_{key}'}
        )
        inputs.kpoints = kpoints
        if tuple(kpoints.get_kpoints_mesh()[0]) == (1, 1, 1):
            # Gamma-only: real wavefunctions, about half the cost for the large cells where the mesh is 1x1x1
            settings = inputs.pw.settings.get_dict() if 'settings' in inputs.pw else {}
            inputs.pw.settings = orm.Dict({**settings, 'gamma_only': True})
        inputs.clean_workdir = self.inputs.clean_workdir
        inputs.metadata = {'call_link_label': f'label_{key}', 'label': key}
        return inputs

    def _collect(self, key: str, node: orm.WorkflowNode) -> None:
        """File a terminated frame as labelled or failed (with its reason)."""
        if node.is_finished_ok:
            self.ctx.labelled[key] = node
            return
        reason = failure_reason(node)
        failure = {'pk': node.pk, 'exit_status': node.exit_status, 'reason': reason}
        calculations = [child for child in node.called if child.process_label == 'PwCalculation']
        if calculations:  # the cause: what the last pw.x run ended with (a crash, a parse error, no convergence)
            last = calculations[-1]
            failure['calculation'] = {
                'pk': last.pk,
                'attempts': len(calculations),
                'exit_status': last.exit_status,
                'reason': failure_reason(last),
            }
            reason = f'{reason} (last PwCalculation<{last.pk}> [{last.exit_status}]: {failure_reason(last)})'
        self.ctx.failed[key] = failure
        self.report(f'{key}: PwBaseWorkChain<{node.pk}> failed [{node.exit_status}]: {reason}')

    def results(self):
        """Output the labelled dataset and the failures, then apply the failure policy."""
        n_total = len(self.ctx.labelled) + len(self.ctx.failed)
        if self.ctx.labelled:
            self.out('dataset', collect_labels(**self._collect_inputs()))
            self.report(
                f'labelled {len(self.ctx.labelled)} of {n_total} frames: TrainingSetData<{self.outputs["dataset"].pk}>'
            )
        self.out('failed', orm.Dict(self.ctx.failed).store())
        if not self.ctx.labelled:
            return self.exit_codes.ERROR_NO_FRAME_LABELLED.format(n_total=n_total)
        if len(self.ctx.failed) > self.inputs.max_failed_fraction.value * n_total:
            return self.exit_codes.ERROR_TOO_MANY_FAILED_FRAMES.format(
                n_failed=len(self.ctx.failed), n_total=n_total, fraction=self.inputs.max_failed_fraction.value
            )
        return None

    def _collect_inputs(self) -> dict[str, orm.Data]:
        index_of = {key: index for index, key in enumerate(sorted(self.ctx.structures))}
        nodes: dict[str, orm.Data] = {}
        for key, node in self.ctx.labelled.items():
            index = index_of[key]
            nodes[f'structure_{index}'] = self.ctx.structures[key]
            nodes[f'trajectory_{index}'] = node.outputs.output_trajectory
            nodes[f'parameters_{index}'] = node.outputs.output_parameters
        if 'frames' in self.inputs:
            nodes['source'] = self.inputs.frames
        if 'origin' in self.inputs:
            nodes['origin'] = self.inputs.origin
        return nodes
