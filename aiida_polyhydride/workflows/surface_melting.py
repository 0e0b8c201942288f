"""Production surface-melting MD of a slab/H2 interface at (T, P), its analysis, and a (T, P) scan (reaction map).

SurfaceMeltingWorkChain: build the interface (``structures.slab_h2_interface``), equilibrate (NVT at the built cell,
then NPT from the NVT's last frame), run the production NPT with committee monitoring at every dump, and analyse the
production trajectory (``analysis.surface_melting``): H/M versus time, the q6 heat map and the molten depth, H
diffusivity per region, the phase of the final frame, the committee uncertainty; plus PNG figures. Every number comes
out of a calcfunction.

SurfaceMeltingScanWorkChain: one SurfaceMeltingWorkChain per (T, P) of a grid, then the reaction map (table + PNG).
"""

from __future__ import annotations

import io
import itertools
from typing import Any

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import ToContext, WorkChain, calcfunction, if_, while_
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin, recursive_merge
from ase import Atoms

from ..analysis import plots
from ..analysis.surface_melting import (
    REACTION_MAP_COLUMNS,
    analyse_production,
    prototype_q6_threshold,
    reaction_map,
    uncertainty_summary,
)
from ..calculations.md import MDCalculation
from ..data.allegro_potential import AllegroPotentialData
from ..data.training_set import TrainingSetData
from ..protocols import protocol_file
from ..runners.md import InputError, validate_parameters
from ..structures import PROTOTYPES, slab_h2_interface
from ..structures._validate import (
    check_choice,
    check_int_vector,
    check_metal,
    check_non_negative,
    check_optional_positive,
    check_positive,
    check_positive_int,
    check_seed,
)
from .active_learning import grow_dataset
from .explore import select_frames
from .label import LabelWorkChain
from .md import MDBaseWorkChain
from .train import CommitteeWorkChain, warm_start_parents

__all__ = (
    'SurfaceMeltingScanWorkChain',
    'SurfaceMeltingWorkChain',
    'analyse_surface_melting',
    'build_interface',
    'build_reaction_map',
    'final_structure',
    'plot_surface_melting',
    'trajectory_frames',
)

SLAB_KEYS = ('phase', 'miller', 'layers', 'repeats')
RESERVOIR_KEYS = ('n_molecules', 'density_g_cm3', 'reservoir_thickness', 'gap', 'seed')
ANALYSIS_DEFAULTS = {
    'order_bin_width': 2.0,
    'density_bin_width': 0.5,
    'margin': 1.5,
    'metal_cutoff': 2.6,
    'q6_threshold': None,
    'diffusion_windows': 2,
    'sigma_f_lo': 0.1,
    'max_uncertain_fraction': 0.05,
}
#: runner parameters the work chain sets per stage; ``md_parameters`` may not contain them
MD_SET_BY_WORKCHAIN = ('ensemble', 'temperature_K', 'pressure_GPa', 'n_steps', 'models', 'structure')
PLOTS = ('uptake', 'order_map', 'density_profiles')
RELABEL_DEFAULTS = {
    'max_frames': 8,
    'max_rounds': 1,
    'hi': 1.0,
    'duplicate_tolerance': 0.02,
    'validation_fraction': 0.1,
}
#: inputs that relabel_on_uncertainty needs: the labelling and training templates and the dataset to grow
RELABEL_INPUTS = ('label', 'train', 'training_set', 'validation_set', 'energy_shifts')


# --------------------------------------------------------------------------------------------------- calcfunctions


def trajectory_frames(trajectory: orm.TrajectoryData) -> list[Atoms]:
    """The frames of ``trajectory`` as ase.Atoms (periodic), each with ``info['time_ps']`` from its times (fs)."""
    symbols = trajectory.symbols
    times_fs = trajectory.get_times()
    frames = []
    for positions, cell, time_fs in zip(trajectory.get_positions(), trajectory.get_cells(), times_fs, strict=True):
        frame = Atoms(symbols, positions=positions, cell=cell, pbc=True)
        frame.info['time_ps'] = float(time_fs) * 1e-3
        frames.append(frame)
    return frames


@calcfunction
def build_interface(metal: orm.Str, slab: orm.Dict, reservoir: orm.Dict) -> orm.StructureData:
    """Slab of ``slab['phase']`` (miller, layers, repeats) with dense H2 on both faces (``slab_h2_interface``)."""
    atoms = slab_h2_interface(metal=metal.value, **slab.get_dict(), **reservoir.get_dict())
    return orm.StructureData(ase=atoms)


@calcfunction
def final_structure(trajectory: orm.TrajectoryData) -> orm.StructureData:
    """The last frame of an MD trajectory: the next stage starts from it."""
    return trajectory.get_step_structure(trajectory.numsteps - 1)


@calcfunction
def analyse_surface_melting(trajectory: orm.TrajectoryData, settings: orm.Dict) -> dict[str, orm.Data]:
    """Uptake, molten layer, diffusion, phase and committee uncertainty of a production trajectory.

    ``settings``: metal, phase (of the slab: the q6 calibration when q6_threshold is None), temperature_K,
    pressure_GPa and the ``analysis`` keys of the work chain. Returns ``analysis`` (ArrayData: the time series,
    the q6 heat map, density profiles, MSDs, sigma_f) and ``summary`` (Dict).
    """
    options = {**ANALYSIS_DEFAULTS, **settings.get_dict()}
    threshold = options['q6_threshold']
    if threshold is None:
        threshold = prototype_q6_threshold(options['phase'], options['metal'])
    result = analyse_production(
        trajectory_frames(trajectory),
        options['metal'],
        threshold,
        order_bin_width=options['order_bin_width'],
        density_bin_width=options['density_bin_width'],
        margin=options['margin'],
        metal_cutoff=options['metal_cutoff'],
        diffusion_windows=options['diffusion_windows'],
    )
    sigma_f = trajectory.get_array('sigma_f')
    uncertainty = uncertainty_summary(sigma_f, options['sigma_f_lo'], options['max_uncertain_fraction'])
    analysis = orm.ArrayData()
    for name, values in {**result['arrays'], 'sigma_f': sigma_f}.items():
        analysis.set_array(name, np.asarray(values))
    summary = {
        'metal': options['metal'],
        'temperature_K': options['temperature_K'],
        'pressure_GPa': options['pressure_GPa'],
        **result['summary'],
        'uncertainty_fraction': uncertainty['fraction_above_lo'],
        'extrapolating': uncertainty['extrapolating'],
        'uncertainty': uncertainty,
        'phase_scores': {name: score['total'] for name, score in result['phase']['scores'].items()},
        'units': {
            'time': 'ps',
            'length': 'Angstrom',
            'uptake_rate': 'H/M per ps',
            'D': 'Angstrom^2/ps',
            'sigma_f': 'eV/Angstrom',
            'density': 'atoms/Angstrom^3',
        },
    }
    return {'analysis': analysis, 'summary': orm.Dict(summary)}


def _png_node(content: bytes, filename: str) -> orm.SinglefileData:
    return orm.SinglefileData(io.BytesIO(content), filename=filename)


@calcfunction
def plot_surface_melting(analysis: orm.ArrayData, summary: orm.Dict) -> dict[str, orm.SinglefileData]:
    """PNG figures: H/M versus time (with the fitted rate), the q6 heat map (z versus time) with the molten depths,
    the density profiles at the first and the last frame."""
    arrays = {name: analysis.get_array(name) for name in analysis.get_arraynames()}
    rate, intercept = summary.get('uptake_rate_per_ps'), summary.get('uptake_intercept')
    profiles = {}
    for label in ('initial', 'final'):
        prefix, suffix = 'density_', f'_{label}'
        densities = {
            name[len(prefix) : -len(suffix)]: values
            for name, values in arrays.items()
            if name.startswith(prefix) and name.endswith(suffix) and name != f'density_z{suffix}'
        }
        profiles[label] = (arrays[f'density_z{suffix}'], densities)
    return {
        'uptake': _png_node(plots.plot_uptake(arrays['time_ps'], arrays['h_per_metal'], rate, intercept), 'uptake.png'),
        'order_map': _png_node(
            plots.plot_order_map(
                arrays['time_ps'],
                arrays['order_z'],
                arrays['order_q6'],
                summary['q6_threshold'],
                arrays['molten_top'],
                arrays['molten_bottom'],
            ),
            'order_map.png',
        ),
        'density_profiles': _png_node(plots.plot_density_profiles(profiles), 'density_profiles.png'),
    }


@calcfunction
def build_reaction_map(**summaries: orm.Dict) -> dict[str, orm.Data]:
    """Reaction map of several runs' summaries: ``table`` (ArrayData, one column per quantity, rows sorted by T then
    P), ``reaction_map`` (Dict: the same rows with the phase verdict) and ``plot`` (PNG)."""
    table = reaction_map([summary.get_dict() for summary in summaries.values()])
    array = orm.ArrayData()
    for column in (*REACTION_MAP_COLUMNS, 'absorbs'):
        array.set_array(column, table[column])
    rows = [
        {
            **{
                column: (None if np.isnan(table[column][i]) else float(table[column][i]))
                for column in REACTION_MAP_COLUMNS
            },
            'phase': table['phase'][i],
            'absorbs': bool(table['absorbs'][i]),
        }
        for i in range(len(table['phase']))
    ]
    png = plots.plot_reaction_map(
        table['temperature_K'], table['pressure_GPa'], table['uptake_rate_per_ps'], table['phase']
    )
    return {
        'table': array,
        'reaction_map': orm.Dict({'columns': [*REACTION_MAP_COLUMNS, 'phase', 'absorbs'], 'rows': rows}),
        'plot': _png_node(png, 'reaction_map.png'),
    }


# --------------------------------------------------------------------------------------------------- validation


def _message(check, *args) -> str | None:
    """None if ``check(*args)`` passes, else its ValueError message."""
    try:
        check(*args)
    except (ValueError, InputError) as exception:
        return str(exception)
    return None


def _check_keys(values: dict, allowed, name: str) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValueError(f'{name}: unknown key(s) {unknown}; known: {list(allowed)}')


def check_slab(slab: dict) -> None:
    """ValueError naming the key when the slab specification cannot be built."""
    _check_keys(slab, SLAB_KEYS, 'slab')
    if 'phase' not in slab:
        raise ValueError(f'slab.phase is required: one of {", ".join(PROTOTYPES)}')
    check_choice(slab['phase'], 'slab.phase', PROTOTYPES)
    if 'miller' in slab:
        check_int_vector(slab['miller'], 'slab.miller', 3)
    if 'layers' in slab:
        check_positive_int(slab['layers'], 'slab.layers')
    if 'repeats' in slab:
        check_int_vector(slab['repeats'], 'slab.repeats', 2, positive=True)


def check_reservoir(reservoir: dict) -> None:
    """ValueError naming the key when the H2 reservoir specification is unusable."""
    _check_keys(reservoir, RESERVOIR_KEYS, 'reservoir')
    if reservoir.get('n_molecules') is not None:
        check_positive_int(reservoir['n_molecules'], 'reservoir.n_molecules')
    if 'density_g_cm3' in reservoir:
        check_positive(reservoir['density_g_cm3'], 'reservoir.density_g_cm3')
    check_optional_positive(reservoir.get('reservoir_thickness'), 'reservoir.reservoir_thickness')
    if reservoir.get('n_molecules') is not None and reservoir.get('reservoir_thickness') is not None:
        raise ValueError('reservoir: give n_molecules or reservoir_thickness, not both (density_g_cm3 fixes the other)')
    if 'gap' in reservoir:
        check_non_negative(reservoir['gap'], 'reservoir.gap')
    if 'seed' in reservoir:
        check_seed(reservoir['seed'], 'reservoir.seed')


def check_analysis(analysis: dict) -> None:
    """ValueError naming the key when an analysis setting is out of range."""
    _check_keys(analysis, ANALYSIS_DEFAULTS, 'analysis')
    for key in ('order_bin_width', 'density_bin_width'):
        if key in analysis:
            check_positive(analysis[key], f'analysis.{key}')
    for key in ('margin', 'sigma_f_lo'):
        if key in analysis:
            check_non_negative(analysis[key], f'analysis.{key}')
    check_optional_positive(analysis.get('metal_cutoff'), 'analysis.metal_cutoff')
    threshold = analysis.get('q6_threshold')
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise ValueError(f'analysis.q6_threshold must be between 0 and 1 (or null: calibrated), got {threshold!r}')
    if 'diffusion_windows' in analysis:
        check_positive_int(analysis['diffusion_windows'], 'analysis.diffusion_windows')
    fraction = analysis.get('max_uncertain_fraction', 0.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f'analysis.max_uncertain_fraction must be between 0 and 1, got {fraction!r}')


def check_relabel(relabel: dict) -> None:
    """ValueError naming the key when a relabelling setting is out of range."""
    _check_keys(relabel, RELABEL_DEFAULTS, 'relabel')
    for key in ('max_frames', 'max_rounds'):
        if key in relabel:
            check_positive_int(relabel[key], f'relabel.{key}')
    if 'hi' in relabel:
        check_positive(relabel['hi'], 'relabel.hi')
    if 'duplicate_tolerance' in relabel:
        check_non_negative(relabel['duplicate_tolerance'], 'relabel.duplicate_tolerance')
    fraction = relabel.get('validation_fraction', 0.0)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ValueError(f'relabel.validation_fraction must be in [0, 1), got {fraction!r}')


def check_md_parameters(parameters: dict) -> None:
    """InputError naming the key when the runner would refuse ``parameters`` (stage keys are set per stage)."""
    reserved = sorted(set(parameters) & set(MD_SET_BY_WORKCHAIN))
    if reserved:
        raise ValueError(
            f'md_parameters: {reserved} are set by the work chain per stage (temperature, pressure, length)'
        )
    stage = {'ensemble': 'npt', 'temperature_K': 1.0, 'pressure_GPa': 1.0, 'n_steps': 1, 'models': []}
    try:
        validate_parameters({**parameters, **stage}, check_files=False)
    except InputError as exception:
        raise ValueError(f'md_parameters: {exception}') from None


def check_equilibration(equilibration: dict) -> None:
    _check_keys(equilibration, ('nvt_ps', 'npt_ps'), 'equilibration')
    for key in ('nvt_ps', 'npt_ps'):
        check_non_negative(equilibration.get(key, 0.0), f'equilibration.{key}')


def _positive_float(name: str, unit: str):
    def validator(value: orm.Float, _) -> str | None:
        if not np.isfinite(value.value) or value.value <= 0:
            return f'{name} must be positive ({unit}), got {value.value}'
        return None

    return validator


def _dict_validator(check):
    def validator(value: orm.Dict, _) -> str | None:
        return _message(check, value.get_dict())

    return validator


def _validate_metal(value: orm.Str, _) -> str | None:
    return _message(check_metal, value.value, 'metal')


def _validate_inputs(inputs: dict, namespace) -> str | None:
    models = inputs.get('models', {})
    if 'models' in namespace and 'member_0' not in models:
        return 'models: member_0 (the model that drives the MD) is required'
    metal = inputs['metal'].value if 'metal' in inputs else None
    for key, model in models.items():
        missing = sorted({metal, 'H'} - set(model.type_names) - {None})
        if missing:
            return f'models.{key}: has no atom type for {", ".join(missing)} (trained on {model.type_names})'
    if 'relabel_on_uncertainty' in inputs and inputs['relabel_on_uncertainty'].value:
        missing = [key for key in RELABEL_INPUTS if not inputs.get(key)]
        if missing:
            return (
                f'relabel_on_uncertainty needs {", ".join(missing)}: the DFT and training templates and the dataset '
                'the committee was trained on (get_builder_from_protocol(..., active_learning=node) sets them)'
            )
        lo = inputs['analysis'].get('sigma_f_lo', ANALYSIS_DEFAULTS['sigma_f_lo']) if 'analysis' in inputs else None
        hi = inputs['relabel'].get('hi', RELABEL_DEFAULTS['hi']) if 'relabel' in inputs else None
        if lo is not None and hi is not None and not lo < hi:
            return f'relabel.hi ({hi} eV/A) must be above analysis.sigma_f_lo ({lo} eV/A)'
    return None


# --------------------------------------------------------------------------------------------------- work chains


def relabel_inputs_from(active_learning: orm.WorkflowNode) -> dict[str, Any]:
    """What ``relabel_on_uncertainty`` needs, taken from an ActiveLearningWorkChain (finished or not): its labelling
    and training templates, its final dataset and energy shifts, and its committee and trust window."""
    from .active_learning import ActiveLearningWorkChain

    if active_learning.process_class is not ActiveLearningWorkChain:
        raise ValueError(f'active_learning: {active_learning.process_label}<{active_learning.pk}> is not an '
                         'ActiveLearningWorkChain')  # fmt: skip
    outputs = active_learning.outputs
    missing = [key for key in ('models', 'training_set', 'validation_set', 'energy_shifts') if key not in outputs]
    if missing:
        raise ValueError(f'active_learning: ActiveLearningWorkChain<{active_learning.pk}> has no {", ".join(missing)} '
                         'output; continue it (get_builder_from_parent) before production')  # fmt: skip
    restart = active_learning.get_builder_restart()
    return {
        'label': restart.label._inputs(prune=True),
        'train': restart.train._inputs(prune=True),
        'training_set': outputs.training_set,
        'validation_set': outputs.validation_set,
        'energy_shifts': outputs.energy_shifts,
        'models': dict(outputs.models),
        'trust_window': outputs.trust_window.get_dict() if 'trust_window' in outputs else None,
    }


def _common_protocol_inputs(
    builder,
    inputs: dict,
    code: orm.AbstractCode,
    models: dict | None,
    metal: str,
    active_learning: orm.WorkflowNode | None,
    overrides: dict | None,
) -> None:
    """Fill the inputs shared by the single run and the scan from protocol ``inputs`` into ``builder``."""
    builder.md.code = code
    builder.md.metadata.options = recursive_merge(dict(builder.md.metadata.options), inputs['options'])
    builder.md_restart = {key: orm.to_aiida_type(value) for key, value in inputs['md_restart'].items()}
    builder.metal = orm.Str(metal)
    relabel = {**inputs['relabel']}
    analysis = {**inputs['analysis']}
    if active_learning is not None:
        source = relabel_inputs_from(active_learning)
        for key in RELABEL_INPUTS:
            builder[key] = source[key]
        models = models if models is not None else source['models']
        given = overrides or {}
        window = source['trust_window']
        # the loop's (calibrated) trust window says which production frames are uncertain, unless overridden
        if window and 'sigma_f_lo' not in given.get('analysis', {}):
            analysis['sigma_f_lo'] = window['lo']
        if window and 'hi' not in given.get('relabel', {}):
            relabel['hi'] = window['hi']
        builder.relabel_on_uncertainty = orm.Bool(given.get('relabel_on_uncertainty', True))
    else:
        builder.relabel_on_uncertainty = orm.Bool(inputs['relabel_on_uncertainty'])
    if models is None:
        raise ValueError('models: give the committee, or active_learning=<ActiveLearningWorkChain node> to use its')
    builder.models = dict(models)
    for key in ('slab', 'reservoir', 'equilibration', 'md_parameters'):
        builder[key] = orm.Dict(inputs[key])
    builder.analysis = orm.Dict(analysis)
    builder.relabel = orm.Dict(relabel)
    builder.length = orm.Float(inputs['length'])


class SurfaceMeltingWorkChain(ProtocolMixin, WorkChain):
    """Slab + dense H2 at (T, P): build, equilibrate (NVT, NPT), production NPT with committee monitoring, analysis;
    optionally relabel the production's uncertain frames, retrain the committee and run the production again."""

    @classmethod
    def define(cls, spec):
        # fmt: off
        super().define(spec)
        spec.expose_inputs(MDCalculation, namespace='md',
                           exclude=('structure', 'models', 'parameters', 'parent_folder'),
                           namespace_options={'help': 'Code and scheduler options of the MD runs.'})
        spec.expose_inputs(MDBaseWorkChain, namespace='md_restart', exclude=('md',),
                           namespace_options={'help': 'Restart policy of every MD stage (blow-ups, walltime).'})
        spec.input_namespace('models', valid_type=AllegroPotentialData, dynamic=True,
                             help='The committee: member_0 drives the MD, all members are evaluated at every dump.')
        spec.input('metal', valid_type=orm.Str, validator=_validate_metal, help='The metal M of the hydride, e.g. Ca.')
        spec.input('slab', valid_type=orm.Dict, validator=_dict_validator(check_slab),
                   help='phase (MH2-Pnma, MH2-P63mmc, MH4-I4mmm, MH6-Im-3m), miller [h, k, l], layers (bulk periods), '
                        'repeats [n1, n2] (lateral).')
        spec.input('reservoir', valid_type=orm.Dict, validator=_dict_validator(check_reservoir),
                   help='H2 reservoir: n_molecules or reservoir_thickness (Angstrom) at density_g_cm3; gap (Angstrom '
                        'to the slab), seed.')
        spec.input('temperature', valid_type=orm.Float, validator=_positive_float('temperature', 'K'),
                   help='Temperature (K) of equilibration and production.')
        spec.input('pressure', valid_type=orm.Float, validator=_positive_float('pressure', 'GPa'),
                   help='Pressure (GPa) of the NPT equilibration and production.')
        spec.input('length', valid_type=orm.Float, validator=_positive_float('length', 'ps'),
                   help='Length of the production run (ps).')
        spec.input('equilibration', valid_type=orm.Dict, validator=_dict_validator(check_equilibration),
                   default=lambda: orm.Dict({'nvt_ps': 0.5, 'npt_ps': 1.0}),
                   help='nvt_ps, npt_ps: lengths (ps) of the NVT and NPT equilibration; 0 skips a stage.')
        spec.input('md_parameters', valid_type=orm.Dict, validator=_dict_validator(check_md_parameters),
                   help='Runner settings of every stage (timestep_fs, dump_every, thermostat, barostat, seed, blow-up '
                        'guard ...); ensemble, temperature, pressure and length are set per stage.')
        spec.input('analysis', valid_type=orm.Dict, validator=_dict_validator(check_analysis),
                   default=lambda: orm.Dict(ANALYSIS_DEFAULTS),
                   help=f'Analysis settings (defaults {ANALYSIS_DEFAULTS}); see protocols/surface_melting.yaml.')
        spec.input('relabel_on_uncertainty', valid_type=orm.Bool, default=lambda: orm.Bool(False),
                   help='When the production is extrapolating, label its uncertain frames with DFT, retrain the '
                        'committee (warm start) on the grown dataset and run the production again.')
        spec.input('relabel', valid_type=orm.Dict, validator=_dict_validator(check_relabel),
                   default=lambda: orm.Dict(RELABEL_DEFAULTS),
                   help='max_frames (per round), max_rounds, hi (eV/A: frames with sigma_F at or above it are not '
                        'relabelled), duplicate_tolerance, validation_fraction (of the new labels).')
        spec.expose_inputs(LabelWorkChain, namespace='label', exclude=('structures', 'frames', 'origin'),
                           namespace_options={'required': False, 'populate_defaults': False,
                                              'help': 'DFT labelling template of relabel_on_uncertainty.'})
        spec.expose_inputs(CommitteeWorkChain, namespace='train',
                           exclude=('train.training_set', 'train.validation_set', 'train.energy_shifts',
                                    'parent_models'),
                           namespace_options={'required': False, 'populate_defaults': False,
                                              'help': 'Committee training template of relabel_on_uncertainty.'})
        spec.input('training_set', valid_type=TrainingSetData, required=False,
                   help='The dataset the committee was trained on (relabel_on_uncertainty grows it).')
        spec.input('validation_set', valid_type=TrainingSetData, required=False,
                   help='Its validation frames (relabel_on_uncertainty).')
        spec.input('energy_shifts', valid_type=orm.Dict, required=False,
                   help='Per-type energy shifts of the committee (relabel_on_uncertainty).')
        spec.inputs.validator = _validate_inputs
        spec.outline(
            cls.build,
            if_(cls.should_run_nvt)(cls.run_nvt, cls.inspect_nvt),
            if_(cls.should_run_npt)(cls.run_npt, cls.inspect_npt),
            cls.setup_production,
            while_(cls.should_run_production)(
                cls.run_production,
                cls.inspect_production,
                cls.analyse,
                if_(cls.should_relabel)(
                    cls.label_uncertain_frames, cls.inspect_labels,
                    cls.retrain_committee, cls.inspect_committee,
                ),
            ),
            cls.finalize,
        )
        spec.output('interface', valid_type=orm.StructureData, help='The built slab/H2 interface.')
        spec.output('equilibrated_structure', valid_type=orm.StructureData, required=False,
                    help='Start of the production run (last frame of the equilibration).')
        spec.output('trajectory', valid_type=orm.TrajectoryData, required=False,
                    help='Production trajectory (with the committee sigma_f per frame).')
        spec.output('analysis', valid_type=orm.ArrayData, required=False,
                    help='Time series (H/M, molten depth), q6 heat map, density profiles, MSDs, sigma_f.')
        spec.output('summary', valid_type=orm.Dict, required=False,
                    help='Final H/M, uptake rate, max molten depth, phase verdict, uncertainty, extrapolating flag.')
        spec.output_namespace('plots', valid_type=orm.SinglefileData, required=False,
                              help=f'PNG figures: {", ".join(PLOTS)}.')
        spec.output_namespace('earlier_summaries', valid_type=orm.Dict, required=False, dynamic=True,
                              help='round_<n>: the summary of each production run that was relabelled and rerun.')
        spec.output_namespace('models', valid_type=AllegroPotentialData, required=False, dynamic=True,
                              help='The retrained committee (after relabel_on_uncertainty).')
        spec.output('training_set', valid_type=TrainingSetData, required=False,
                    help='The grown training set (after relabel_on_uncertainty).')
        spec.output('validation_set', valid_type=TrainingSetData, required=False,
                    help='The grown validation set (after relabel_on_uncertainty).')
        spec.exit_code(401, 'ERROR_EQUILIBRATION_FAILED',
                       message='The {stage} equilibration MD<{pk}> failed: {reason}. Check the models on this system '
                       '(blow-ups: a shorter timestep_fs, a lower temperature, or more training data).')
        spec.exit_code(402, 'ERROR_PRODUCTION_FAILED',
                       message='The production MD<{pk}> failed with no frame to analyse: {reason}.')
        spec.exit_code(403, 'ERROR_PRODUCTION_INCOMPLETE',
                       message='The production MD<{pk}> stopped early ({reason}); the frames it dumped are analysed '
                       'and output. Continue it from its remote_folder or rerun with a shorter time step.')
        spec.exit_code(404, 'ERROR_NOTHING_TO_RELABEL',
                       message='Round {round}: no production frame has sigma_F in [{lo}, {hi}) eV/A to relabel (all '
                       'above relabel.hi: the committee is far outside its domain; run the active-learning loop at '
                       'these conditions). The production results are output.')
        spec.exit_code(405, 'ERROR_RELABELLING_FAILED',
                       message='Round {round}: no uncertain frame could be labelled ({reason}); the production '
                       'results are output.')
        spec.exit_code(406, 'ERROR_RETRAINING_FAILED',
                       message='Round {round}: fewer than two committee members retrained ({reason}); the production '
                       'results and the grown dataset are output.')
        # fmt: on

    @classmethod
    def get_protocol_filepath(cls):
        return protocol_file('surface_melting')

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        models: dict[str, AllegroPotentialData] | None = None,
        metal: str = 'Ca',
        temperature: float | None = None,
        pressure: float | None = None,
        length: float | None = None,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        active_learning: orm.WorkflowNode | None = None,
    ):
        """Builder for one (T in K, P in GPa) run of ``length`` ps; protocol fast / moderate / precise.

        ``overrides`` override protocol keys (slab, reservoir, equilibration, md_parameters, md_restart, analysis,
        relabel, relabel_on_uncertainty, options, temperature, pressure, length); explicit ``temperature``,
        ``pressure`` and ``length`` win over both. ``active_learning``: an ActiveLearningWorkChain whose committee
        runs the MD (when ``models`` is None) and whose labelling/training templates, dataset and trust window
        serve ``relabel_on_uncertainty`` (switched on).
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        for key, value in (('temperature', temperature), ('pressure', pressure), ('length', length)):
            if value is not None:
                inputs[key] = value
        builder = cls.get_builder()
        _common_protocol_inputs(builder, inputs, code, models, metal, active_learning, overrides)
        builder.temperature = orm.Float(inputs['temperature'])
        builder.pressure = orm.Float(inputs['pressure'])
        return builder

    # --- steps

    def build(self):
        self.ctx.interface = self.ctx.structure = build_interface(
            self.inputs.metal, self.inputs.slab, self.inputs.reservoir
        )
        self.out('interface', self.ctx.interface)
        self.report(f'interface {self.ctx.structure.get_formula()} ({len(self.ctx.structure.sites)} atoms)')

    def should_run_nvt(self) -> bool:
        return self.inputs.equilibration.get('nvt_ps', 0.0) > 0

    def should_run_npt(self) -> bool:
        return self.inputs.equilibration.get('npt_ps', 0.0) > 0

    def _submit_md(self, stage: str, ensemble: str, length_ps: float):
        """One MD stage (MDBaseWorkChain) from ``ctx.structure`` with ``ctx.models`` at the work chain's T (and P for
        npt), ``length_ps`` long."""
        inputs = AttributeDict(self.exposed_inputs(MDCalculation, namespace='md'))
        parameters = self.inputs.md_parameters.get_dict()
        parameters.update(
            ensemble=ensemble,
            temperature_K=self.inputs.temperature.value,
            pressure_GPa=self.inputs.pressure.value if ensemble == 'npt' else None,
            n_steps=max(1, round(length_ps * 1000.0 / parameters['timestep_fs'])),
        )
        inputs.parameters = orm.Dict(parameters)
        inputs.structure = self.ctx.structure
        inputs.models = dict(self.ctx.get('models', self.inputs.models))
        label = f'{stage} {self.inputs.temperature.value} K {self.inputs.pressure.value} GPa'
        inputs.metadata = {**inputs.get('metadata', {}), 'label': label}
        restart = AttributeDict(self.exposed_inputs(MDBaseWorkChain, namespace='md_restart'))
        restart.md = inputs
        restart.metadata = {**restart.get('metadata', {}), 'call_link_label': stage, 'label': label}
        node = self.submit(MDBaseWorkChain, **restart)
        self.report(f'{stage}: {ensemble} {length_ps} ps, {parameters["n_steps"]} steps, MDBaseWorkChain<{node.pk}>')
        return ToContext(**{stage: node})

    def _continue_from(self, stage: str):
        """Make the stage's last frame the next start, or an exit code when the stage failed."""
        node = self.ctx[stage]
        if not node.is_finished_ok or 'trajectory' not in node.outputs:
            return self.exit_codes.ERROR_EQUILIBRATION_FAILED.format(
                stage=stage, pk=node.pk, reason=node.exit_message or f'exit status {node.exit_status}'
            )
        self.ctx.structure = final_structure(node.outputs.trajectory)
        return None

    def run_nvt(self):
        return self._submit_md('nvt', 'nvt', self.inputs.equilibration['nvt_ps'])

    def inspect_nvt(self):
        return self._continue_from('nvt')

    def run_npt(self):
        return self._submit_md('npt', 'npt', self.inputs.equilibration['npt_ps'])

    def inspect_npt(self):
        return self._continue_from('npt')

    def setup_production(self):
        """Every production round starts from the equilibrated structure; round 1 with the input committee."""
        if self.ctx.structure.pk != self.ctx.interface.pk:
            self.out('equilibrated_structure', self.ctx.structure)
        self.ctx.models = dict(self.inputs.models)
        self.ctx.round = 0
        self.ctx.run_production = True
        self.ctx.results = None  # the analysed outputs of the latest production round
        self.ctx.earlier_summaries = {}
        self.ctx.training_set = self.inputs.get('training_set')
        self.ctx.validation_set = self.inputs.get('validation_set')

    def should_run_production(self) -> bool:
        return self.ctx.run_production

    def run_production(self):
        self.ctx.round += 1
        self.ctx.run_production = False
        stage = 'production' if self.ctx.round == 1 else f'production_{self.ctx.round}'
        self.ctx.stage = stage
        return self._submit_md(stage, 'npt', self.inputs.length.value)

    def inspect_production(self):
        node = self.ctx[self.ctx.stage]
        reason = node.exit_message or f'exit status {node.exit_status}'
        if 'trajectory' not in node.outputs or node.outputs.trajectory.numsteps < 2:
            self._output_results()
            return self.exit_codes.ERROR_PRODUCTION_FAILED.format(pk=node.pk, reason=reason)
        self.ctx.incomplete = None
        if not node.is_finished_ok:
            self.ctx.incomplete = self.exit_codes.ERROR_PRODUCTION_INCOMPLETE.format(pk=node.pk, reason=reason)
            self.report(f'{self.ctx.stage} MDBaseWorkChain<{node.pk}> stopped early ({reason}): analysing the frames '
                        'it dumped')  # fmt: skip
        return None

    def analyse(self):
        settings = {
            **ANALYSIS_DEFAULTS,
            **self.inputs.analysis.get_dict(),
            'metal': self.inputs.metal.value,
            'phase': self.inputs.slab['phase'],
            'temperature_K': self.inputs.temperature.value,
            'pressure_GPa': self.inputs.pressure.value,
        }
        trajectory = self.ctx[self.ctx.stage].outputs.trajectory
        result = analyse_surface_melting(trajectory, orm.Dict(settings))
        if self.ctx.results is not None:
            self.ctx.earlier_summaries[f'round_{self.ctx.round - 1}'] = self.ctx.results['summary']
        self.ctx.results = {
            'trajectory': trajectory,
            'analysis': result['analysis'],
            'summary': result['summary'],
            'plots': plot_surface_melting(result['analysis'], result['summary']),
        }
        summary = result['summary']
        self.report(
            f'round {self.ctx.round}: H/M {summary["initial_h_per_metal"]:.3f} -> {summary["final_h_per_metal"]:.3f}, '
            f'max molten depth {summary["max_molten_depth_A"]:.1f} A, phase {summary["phase"]}'
        )
        if summary['extrapolating']:
            uncertainty = summary['uncertainty']
            advice = (
                'relabelling them'
                if self.should_relabel()
                else 'add these conditions to the active-learning loop before trusting the numbers'
            )
            self.report(
                f'WARNING extrapolating: {summary["uncertainty_fraction"]:.0%} of the frames have sigma_F >= '
                f'{uncertainty["sigma_f_lo"]:.3f} eV/A (allowed {uncertainty["max_uncertain_fraction"]:.0%}): {advice}'
            )

    def should_relabel(self) -> bool:
        rounds = self.inputs.relabel.get('max_rounds', RELABEL_DEFAULTS['max_rounds'])
        return (
            self.inputs.relabel_on_uncertainty.value
            and self.ctx.results['summary']['extrapolating']
            and self.ctx.round <= rounds
        )

    def label_uncertain_frames(self):
        """Uncertain production frames (lo <= sigma_F < hi), diverse and capped as the exploration selects them."""
        relabel = {**RELABEL_DEFAULTS, **self.inputs.relabel.get_dict()}
        lo = self.inputs.analysis.get('sigma_f_lo', ANALYSIS_DEFAULTS['sigma_f_lo'])
        settings = {
            'lo': lo,
            'hi': relabel['hi'],
            'max_per_system': relabel['max_frames'],
            'max_total': relabel['max_frames'],
            'duplicate_tolerance': relabel['duplicate_tolerance'],
            'r_max': min(model.r_max for model in self.ctx.models.values()),
            'iteration': self.ctx.round,
        }
        conditions = {
            'system': 'interface',
            'temperature_K': self.inputs.temperature.value,
            'pressure_GPa': self.inputs.pressure.value,
        }
        selection = select_frames(
            orm.Dict(settings), trajectory_0=self.ctx.results['trajectory'], conditions_0=orm.Dict(conditions)
        )
        if 'candidates' not in selection:
            self._output_results()
            return self.exit_codes.ERROR_NOTHING_TO_RELABEL.format(round=self.ctx.round, lo=lo, hi=relabel['hi'])
        inputs = AttributeDict(self.exposed_inputs(LabelWorkChain, namespace='label'))
        inputs.frames = selection['candidates']
        inputs.metadata = {'call_link_label': f'label_{self.ctx.round}'}
        node = self.submit(LabelWorkChain, **inputs)
        self.report(
            f'round {self.ctx.round}: labelling {len(inputs.frames)} uncertain frames: LabelWorkChain<{node.pk}>'
        )
        return ToContext(labelling=node)

    def inspect_labels(self):
        node = self.ctx.labelling
        if 'dataset' not in node.outputs:
            self._output_results()
            return self.exit_codes.ERROR_RELABELLING_FAILED.format(
                round=self.ctx.round, reason=node.exit_message or f'exit status {node.exit_status}'
            )
        fraction = self.inputs.relabel.get('validation_fraction', RELABEL_DEFAULTS['validation_fraction'])
        before = len(self.ctx.training_set) + len(self.ctx.validation_set)
        grown = grow_dataset(
            self.ctx.training_set,
            self.ctx.validation_set,
            node.outputs.dataset,
            orm.Dict({'validation_fraction': fraction, 'seed': self.ctx.round}),
        )
        self.ctx.training_set, self.ctx.validation_set = grown['training_set'], grown['validation_set']
        self.report(
            f'round {self.ctx.round}: {len(node.outputs.dataset)} labelled, '
            f'{len(self.ctx.training_set) + len(self.ctx.validation_set) - before} new to the dataset; dataset '
            f'{len(self.ctx.training_set)} training + {len(self.ctx.validation_set)} validation frames'
        )
        return None

    def retrain_committee(self):
        inputs = AttributeDict(self.exposed_inputs(CommitteeWorkChain, namespace='train'))
        inputs.train = AttributeDict(inputs.train)
        inputs.train.training_set = self.ctx.training_set
        inputs.train.validation_set = self.ctx.validation_set
        inputs.train.energy_shifts = self.inputs.energy_shifts
        size = inputs.committee_size.value if 'committee_size' in inputs else len(self.ctx.models)
        inputs.committee_size = orm.Int(size)
        inputs.parent_models = warm_start_parents(self.ctx.models, size)
        inputs.metadata = {'call_link_label': f'train_{self.ctx.round}'}
        node = self.submit(CommitteeWorkChain, **inputs)
        self.report(f'round {self.ctx.round}: retraining the committee (warm start): CommitteeWorkChain<{node.pk}>')
        return ToContext(committee=node)

    def inspect_committee(self):
        node = self.ctx.committee
        models = dict(node.outputs.models) if 'models' in node.outputs else {}
        if len(models) < 2:
            self._output_results()
            return self.exit_codes.ERROR_RETRAINING_FAILED.format(round=self.ctx.round, reason=node.exit_message)
        self.ctx.models = models
        self.ctx.run_production = True
        self.report(f'round {self.ctx.round}: production again with the retrained committee')
        return None

    def _output_results(self) -> None:
        """Output the latest analysed production and what relabelling produced (on every exit path)."""
        results = self.ctx.results
        if results is not None:
            for key in ('trajectory', 'analysis', 'summary'):
                self.out(key, results[key])
            self.out('plots', dict(results['plots']))
        if self.ctx.earlier_summaries:
            self.out('earlier_summaries', self.ctx.earlier_summaries)
        if 'training_set' in self.inputs and self.ctx.training_set.uuid != self.inputs.training_set.uuid:
            self.out('training_set', self.ctx.training_set)
            self.out('validation_set', self.ctx.validation_set)
        if self.ctx.round > 1:  # a later round runs only with a retrained committee
            self.out('models', self.ctx.models)

    def finalize(self):
        self._output_results()
        return self.ctx.get('incomplete')


def _validate_grid(value: orm.List, port) -> str | None:
    values = value.get_list()
    unit = 'K' if port.name == 'temperatures' else 'GPa'
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 for v in values):
        return f'{port.name}: give a non-empty list of positive numbers ({unit}), got {values}'
    if len(set(values)) != len(values):
        return f'{port.name}: values repeat: {values}'
    return None


class SurfaceMeltingScanWorkChain(ProtocolMixin, WorkChain):
    """SurfaceMeltingWorkChain over a (T, P) grid, all at once, then the reaction map: which conditions absorb H."""

    @classmethod
    def define(cls, spec):
        # fmt: off
        super().define(spec)
        spec.expose_inputs(SurfaceMeltingWorkChain, namespace='single', exclude=('temperature', 'pressure'),
                           namespace_options={'help': 'Inputs of every run; temperature, pressure: from the grid.'})
        spec.input('temperatures', valid_type=orm.List, validator=_validate_grid, help='Temperatures (K).')
        spec.input('pressures', valid_type=orm.List, validator=_validate_grid, help='Pressures (GPa).')
        spec.outline(cls.run_conditions, cls.results)
        spec.output('table', valid_type=orm.ArrayData, required=False,
                    help=f'Reaction map columns {", ".join(REACTION_MAP_COLUMNS)}, absorbs; rows sorted by T, P.')
        spec.output('reaction_map', valid_type=orm.Dict, required=False,
                    help='The same rows with the phase verdict of each condition.')
        spec.output('plot', valid_type=orm.SinglefileData, required=False, help='PNG of the reaction map.')
        spec.output('failed_runs', valid_type=orm.Dict, help='Conditions whose run did not finish OK: pk, exit status.')
        spec.exit_code(401, 'ERROR_SOME_RUNS_FAILED',
                       message='{n_failed} of {n_total} conditions failed ({failed}); the map holds the others.')
        spec.exit_code(402, 'ERROR_ALL_RUNS_FAILED', message='No condition produced a summary: {failed}.')
        # fmt: on

    @classmethod
    def get_protocol_filepath(cls):
        return protocol_file('surface_melting')

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        models: dict[str, AllegroPotentialData] | None,
        temperatures: list[float],
        pressures: list[float],
        metal: str = 'Ca',
        length: float | None = None,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        active_learning: orm.WorkflowNode | None = None,
    ):
        """Builder for the grid ``temperatures`` (K) x ``pressures`` (GPa); the protocol, ``overrides`` and
        ``active_learning`` as SurfaceMeltingWorkChain.get_builder_from_protocol."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        if length is not None:
            inputs['length'] = length
        builder = cls.get_builder()
        _common_protocol_inputs(builder.single, inputs, code, models, metal, active_learning, overrides)
        builder.temperatures = orm.List([float(value) for value in temperatures])
        builder.pressures = orm.List([float(value) for value in pressures])
        return builder

    def run_conditions(self):
        grid = itertools.product(self.inputs.temperatures.get_list(), self.inputs.pressures.get_list())
        running = {}
        for index, (temperature, pressure) in enumerate(grid):
            inputs = AttributeDict(self.exposed_inputs(SurfaceMeltingWorkChain, namespace='single'))
            inputs.temperature, inputs.pressure = orm.Float(temperature), orm.Float(pressure)
            inputs.metadata = {'call_link_label': f'condition_{index}', 'label': f'{temperature} K {pressure} GPa'}
            running[f'condition_{index}'] = self.submit(SurfaceMeltingWorkChain, **inputs)
        self.report(f'submitted {len(running)} conditions')
        return ToContext(**running)

    def results(self):
        keys = sorted((key for key in self.ctx if key.startswith('condition_')), key=lambda k: int(k.split('_')[1]))
        summaries, failed = {}, {}
        for key in keys:
            node = self.ctx[key]
            if not node.is_finished_ok:
                failed[node.label] = {'pk': node.pk, 'exit_status': node.exit_status}
            if 'summary' in node.outputs:  # an incomplete production run still has its analysis
                summaries[key] = node.outputs.summary
        self.out('failed_runs', orm.Dict(failed).store())
        if not summaries:
            return self.exit_codes.ERROR_ALL_RUNS_FAILED.format(failed=failed)
        result = build_reaction_map(**summaries)
        for name in ('table', 'reaction_map', 'plot'):
            self.out(name, result[name])
        absorbing = [f'{row["temperature_K"]} K/{row["pressure_GPa"]} GPa' for row in result['reaction_map']['rows']
                     if row['absorbs']]  # fmt: skip
        self.report(f'reaction map of {len(summaries)} conditions; absorbing H: {", ".join(absorbing) or "none"}')
        if failed:
            return self.exit_codes.ERROR_SOME_RUNS_FAILED.format(n_failed=len(failed), n_total=len(keys), failed=failed)
        return None
