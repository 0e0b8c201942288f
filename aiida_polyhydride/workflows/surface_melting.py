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
from aiida.engine import ToContext, WorkChain, calcfunction, if_
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
    return None


# --------------------------------------------------------------------------------------------------- work chains


def _common_protocol_inputs(builder, inputs: dict, code: orm.AbstractCode, models: dict, metal: str) -> None:
    """Fill the inputs shared by the single run and the scan from protocol ``inputs`` into ``builder``."""
    builder.md.code = code
    builder.md.metadata.options = recursive_merge(dict(builder.md.metadata.options), inputs['options'])
    builder.models = dict(models)
    builder.metal = orm.Str(metal)
    for key in ('slab', 'reservoir', 'equilibration', 'md_parameters', 'analysis'):
        builder[key] = orm.Dict(inputs[key])
    builder.length = orm.Float(inputs['length'])


class SurfaceMeltingWorkChain(ProtocolMixin, WorkChain):
    """Slab + dense H2 at (T, P): build, equilibrate (NVT, NPT), production NPT with committee monitoring, analysis."""

    @classmethod
    def define(cls, spec):
        # fmt: off
        super().define(spec)
        spec.expose_inputs(MDCalculation, namespace='md',
                           exclude=('structure', 'models', 'parameters', 'parent_folder'),
                           namespace_options={'help': 'Code and scheduler options of the MD runs.'})
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
        spec.inputs.validator = _validate_inputs
        spec.outline(
            cls.build,
            if_(cls.should_run_nvt)(cls.run_nvt, cls.inspect_nvt),
            if_(cls.should_run_npt)(cls.run_npt, cls.inspect_npt),
            cls.run_production,
            cls.inspect_production,
            cls.analyse,
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
        spec.exit_code(401, 'ERROR_EQUILIBRATION_FAILED',
                       message='The {stage} equilibration MD<{pk}> failed: {reason}. Check the models on this system '
                       '(blow-ups: a shorter timestep_fs, a lower temperature, or more training data).')
        spec.exit_code(402, 'ERROR_PRODUCTION_FAILED',
                       message='The production MD<{pk}> failed with no frame to analyse: {reason}.')
        spec.exit_code(403, 'ERROR_PRODUCTION_INCOMPLETE',
                       message='The production MD<{pk}> stopped early ({reason}); the frames it dumped are analysed '
                       'and output. Continue it from its remote_folder or rerun with a shorter time step.')
        # fmt: on

    @classmethod
    def get_protocol_filepath(cls):
        return protocol_file('surface_melting')

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        models: dict[str, AllegroPotentialData],
        metal: str = 'Ca',
        temperature: float | None = None,
        pressure: float | None = None,
        length: float | None = None,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """Builder for one (T in K, P in GPa) run of ``length`` ps; protocol fast / moderate / precise.

        ``overrides`` override protocol keys (slab, reservoir, equilibration, md_parameters, analysis, options,
        temperature, pressure, length); explicit ``temperature``, ``pressure`` and ``length`` win over both.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        for key, value in (('temperature', temperature), ('pressure', pressure), ('length', length)):
            if value is not None:
                inputs[key] = value
        builder = cls.get_builder()
        _common_protocol_inputs(builder, inputs, code, models, metal)
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
        """One MD stage from ``ctx.structure`` at the work chain's T (and P for npt), ``length_ps`` long."""
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
        inputs.models = dict(self.inputs.models)
        label = f'{stage} {self.inputs.temperature.value} K {self.inputs.pressure.value} GPa'
        inputs.metadata = {**inputs.get('metadata', {}), 'call_link_label': stage, 'label': label}
        node = self.submit(MDCalculation, **inputs)
        self.report(f'{stage}: {ensemble} {length_ps} ps, {parameters["n_steps"]} steps, MD<{node.pk}>')
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

    def run_production(self):
        if self.ctx.structure.pk != self.ctx.interface.pk:
            self.out('equilibrated_structure', self.ctx.structure)
        return self._submit_md('production', 'npt', self.inputs.length.value)

    def inspect_production(self):
        node = self.ctx.production
        reason = node.exit_message or f'exit status {node.exit_status}'
        if 'trajectory' not in node.outputs or node.outputs.trajectory.numsteps < 2:
            return self.exit_codes.ERROR_PRODUCTION_FAILED.format(pk=node.pk, reason=reason)
        self.out('trajectory', node.outputs.trajectory)
        if not node.is_finished_ok:
            self.ctx.incomplete = self.exit_codes.ERROR_PRODUCTION_INCOMPLETE.format(pk=node.pk, reason=reason)
            self.report(f'production MD<{node.pk}> stopped early ({reason}): analysing the frames it dumped')
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
        result = analyse_surface_melting(self.ctx.production.outputs.trajectory, orm.Dict(settings))
        self.out('analysis', result['analysis'])
        self.out('summary', result['summary'])
        for name, node in plot_surface_melting(result['analysis'], result['summary']).items():
            self.out(f'plots.{name}', node)
        summary = result['summary']
        self.report(
            f'H/M {summary["initial_h_per_metal"]:.3f} -> {summary["final_h_per_metal"]:.3f}, max molten depth '
            f'{summary["max_molten_depth_A"]:.1f} A, phase {summary["phase"]}'
        )
        if summary['extrapolating']:
            uncertainty = summary['uncertainty']
            self.report(
                f'WARNING extrapolating: {summary["uncertainty_fraction"]:.0%} of the frames have sigma_F >= '
                f'{uncertainty["sigma_f_lo"]} eV/A (allowed {uncertainty["max_uncertain_fraction"]:.0%}): '
                'add these conditions to the active-learning loop before trusting the numbers'
            )

    def finalize(self):
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
        models: dict[str, AllegroPotentialData],
        temperatures: list[float],
        pressures: list[float],
        metal: str = 'Ca',
        length: float | None = None,
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """Builder for the grid ``temperatures`` (K) x ``pressures`` (GPa); the protocol as SurfaceMeltingWorkChain."""
        inputs = cls.get_protocol_inputs(protocol, overrides)
        if length is not None:
            inputs['length'] = length
        builder = cls.get_builder()
        _common_protocol_inputs(builder.single, inputs, code, models, metal)
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
