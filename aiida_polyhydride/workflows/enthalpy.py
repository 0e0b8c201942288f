"""HydrogenationEnthalpyWorkChain: pressure dependence of MH2 + H2 -> MH4 (and -> MH6) and the melting of MH4.

DFT branch: one PwRelaxWorkChain (vc-relax at ``press`` = 10 x P kbar) per phase and pressure; enthalpy per formula
unit H = E + P V of the relaxed cell; reaction enthalpies versus P with the lower MH2 polymorph at each P, and the
pressures where they change sign. MLIP branch (optional, ``mlip`` namespace): NPT MD with an Allegro committee for
the enthalpies of solid/liquid MH4, solid MH2 and fluid H2 at (T, P), solid-liquid coexistence runs that bracket
T_m of MH4, and heating/cooling ramps whose hysteresis gives a second T_m estimate. Every number comes out of a
calcfunction over analysis/enthalpy.py; failed runs are reported and the others' results are still output.
"""

from __future__ import annotations

import io
import itertools
from typing import Any

import numpy as np
from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import WorkChain, calcfunction, if_, while_
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin, recursive_merge
from aiida_quantumespresso.workflows.pw.relax import PwRelaxWorkChain

from ..analysis.enthalpy import (
    bracket_melting_temperature,
    coexistence_verdict,
    enthalpy,
    hysteresis_melting_temperature,
    md_enthalpy,
    phase_role,
    ramp_transition_temperature,
    reaction_enthalpies,
    solid_fraction,
)
from ..analysis.enthalpy_plots import plot_melting_curve, plot_reaction_enthalpy
from ..calculations.md import MDCalculation
from ..data.allegro_potential import AllegroPotentialData
from ..protocols import protocol_file
from ..setup.pseudos import DEFAULT_FAMILY
from .label import _parameters_for_kinds
from .md import MDBaseWorkChain
from .pw import load_pseudo_family, recommended_cutoffs
from .rolling import RollingSubmissionMixin, failure_reason, validate_max_concurrent

__all__ = (
    'HydrogenationEnthalpyWorkChain',
    'dft_enthalpy_table',
    'md_enthalpy_table',
    'melting_table',
    'plot_enthalpies',
    'plot_melting',
)

#: MD system names start with the state of the phase
MD_STATES = ('solid', 'liquid', 'fluid')
KBAR_PER_GPA = 10.0


def _finite_or_none(values) -> list[float | None]:
    """JSON-safe list (a Dict cannot hold NaN): NaN -> None."""
    return [float(value) if np.isfinite(value) else None for value in np.asarray(values, dtype=float)]


def _reaction_summary(result: dict) -> dict:
    return {
        product: {
            'delta_H': _finite_or_none(delta),
            'sign_changes': result['sign_changes'][product],
            'mh2_phase': result['lowest_phase']['MH2'],
            'h2_phase': result['lowest_phase']['H2'],
        }
        for product, delta in result['delta_H'].items()
    }


@calcfunction
def dft_enthalpy_table(pressures: orm.List, **relaxed: orm.Data) -> dict[str, orm.Data]:
    """Enthalpies per formula unit of the relaxed phases and the reaction enthalpies versus pressure.

    ``relaxed``: ``structure_<i>_<phase>`` (relaxed StructureData), ``parameters_<i>_<phase>`` (output_parameters)
    and ``trajectory_<i>_<phase>`` (output_trajectory) of the PwRelaxWorkChain for pressure index i; a missing set is a
    failed relaxation. Returns ``table`` (Dict,
    JSON-safe: None where unknown) and ``enthalpies`` (ArrayData: pressure_GPa and enthalpy_<phase>, NaN where
    unknown). H = E + P_target V, E the total energy of the final SCF, V the relaxed cell volume.
    """
    pressures = [float(value) for value in pressures.get_list()]
    phases: dict[str, dict[str, Any]] = {}
    for key in relaxed:
        kind, index, phase = key.split('_', 2)
        if kind != 'structure':
            continue
        structure, parameters = relaxed[key], relaxed[f'parameters_{index}_{phase}']
        role, n_units = phase_role(structure.get_ase().get_chemical_symbols())
        entry = phases.setdefault(
            phase,
            {
                'role': role,
                'n_formula_units': n_units,
                **{name: [None] * len(pressures) for name in ('energy', 'volume', 'enthalpy', 'pressure_relaxed')},
            },
        )
        i = int(index)
        volume = structure.get_cell_volume()
        entry['energy'][i] = parameters['energy'] / n_units
        entry['volume'][i] = volume / n_units
        entry['enthalpy'][i] = float(enthalpy(parameters['energy'], volume, pressures[i])) / n_units
        # pw.x stress in GPa, positive = compressive: the pressure of the final SCF of the relaxed cell
        entry['pressure_relaxed'][i] = float(
            np.trace(relaxed[f'trajectory_{index}_{phase}'].get_array('stress')[-1]) / 3
        )
    series = {name: np.array([np.nan if v is None else v for v in entry['enthalpy']]) for name, entry in phases.items()}
    result = reaction_enthalpies(pressures, series, {name: entry['role'] for name, entry in phases.items()})
    order = np.argsort(pressures)
    table = {
        'pressure_GPa': [pressures[i] for i in order],
        'phases': {
            name: {
                **{key: entry[key] for key in ('role', 'n_formula_units')},
                **{key: [entry[key][i] for i in order] for key in ('energy', 'volume', 'enthalpy', 'pressure_relaxed')},
            }
            for name, entry in phases.items()
        },
        'reactions': _reaction_summary(result),
        'units': {
            'energy': 'eV per formula unit',
            'enthalpy': 'eV per formula unit',
            'volume': 'Angstrom^3 per formula unit',
            'delta_H': 'eV per metal atom',
            'pressure': 'GPa',
            'formula_unit': 'one metal atom (MH_x), one molecule (H2)',
        },
    }
    arrays = orm.ArrayData()
    arrays.set_array('pressure_GPa', result['pressure_GPa'])
    for name, values in series.items():
        arrays.set_array(f'enthalpy_{name}', values[order])
    for product, delta in result['delta_H'].items():
        arrays.set_array(f'delta_H_{product}', delta)
    return {'table': orm.Dict(table), 'enthalpies': arrays}


def _trajectory_series(trajectory: orm.TrajectoryData) -> tuple[np.ndarray, np.ndarray]:
    return trajectory.get_array('energies'), trajectory.get_array('volume')


@calcfunction
def md_enthalpy_table(settings: orm.Dict, **runs: orm.Data) -> orm.Dict:
    """MLIP enthalpies per formula unit at each (T, P) and the reaction enthalpies with solid and liquid products.

    ``runs``: ``trajectory_<i>`` and ``conditions_<i>`` (Dict: system, temperature_K, pressure_GPa) per NPT run;
    ``settings``: equilibration_fraction. A system named ``solid_*`` is a solid, ``liquid_*`` / ``fluid_*`` a liquid.
    Reactions: MH2 (solid) + H2 (fluid) -> MH4 (solid or liquid), with the lowest MH2 and H2 systems at each point.
    """
    fraction = settings['equilibration_fraction']
    points: dict[tuple[float, float], dict[str, dict]] = {}
    for key in runs:
        if not key.startswith('trajectory_'):
            continue
        index = key.split('_', 1)[1]
        conditions = runs[f'conditions_{index}'].get_dict()
        trajectory = runs[key]
        role, n_units = phase_role(trajectory.symbols)
        energies, volumes = _trajectory_series(trajectory)
        values = md_enthalpy(energies, volumes, conditions['pressure_GPa'], n_units, fraction)
        values['enthalpy_error'] = _finite_or_none([values['enthalpy_error']])[0]  # NaN with too few frames
        point = points.setdefault((conditions['temperature_K'], conditions['pressure_GPa']), {})
        point[conditions['system']] = {**values, 'role': role, 'state': conditions['system'].split('_', 1)[0]}
    table = []
    for (temperature, pressure), systems in sorted(points.items()):
        reactions = {}
        for product_state in ('solid', 'liquid'):
            chosen = _reaction_systems(systems, product_state)
            result = reaction_enthalpies(
                [pressure],
                {name: [entry['enthalpy']] for name, entry in chosen.items()},
                {name: entry['role'] for name, entry in chosen.items()},
            )
            if 'MH4' in result['delta_H']:
                reactions[product_state] = {
                    'delta_H': _finite_or_none(result['delta_H']['MH4'])[0],
                    'product': result['lowest_phase']['MH4'][0],
                    'mh2': result['lowest_phase']['MH2'][0],
                    'h2': result['lowest_phase']['H2'][0],
                }
        table.append(
            {
                'temperature_K': temperature,
                'pressure_GPa': pressure,
                'systems': {
                    name: {key: value for key, value in entry.items() if key != 'state'}
                    for name, entry in systems.items()
                },
                'reactions_MH4': reactions,
            }
        )
    return orm.Dict(
        {
            'points': table,
            'units': {
                'enthalpy': 'eV per formula unit',
                'volume': 'Angstrom^3 per formula unit',
                'delta_H': 'eV per metal atom',
            },
        }
    )


def _reaction_systems(systems: dict[str, dict], product_state: str) -> dict[str, dict]:
    """The systems of MH2 (solid) + H2 (any) -> MH4 in ``product_state`` ('solid' or 'liquid': liquid_* / fluid_*)."""
    product_states = {'solid'} if product_state == 'solid' else {'liquid', 'fluid'}
    return {
        name: entry
        for name, entry in systems.items()
        if entry['role'] == 'H2'
        or (entry['role'] == 'MH2' and entry['state'] == 'solid')
        or (entry['role'] == 'MH4' and entry['state'] in product_states)
    }


def _solid_fractions(trajectory: orm.TrajectoryData, metal: str, threshold: float) -> np.ndarray:
    frames = [trajectory.get_step_structure(step).get_ase() for step in range(trajectory.numsteps)]
    return solid_fraction(frames, metal, threshold)


@calcfunction
def melting_table(settings: orm.Dict, **runs: orm.Data) -> orm.Dict:
    """T_m of MH4 per pressure from coexistence runs (bracket) and heating/cooling ramps (hysteresis).

    ``runs``: ``trajectory_<i>`` and ``conditions_<i>`` (Dict: kind 'coexistence' / 'heating' / 'cooling',
    temperature_K (coexistence) or start_K/end_K/n_steps (ramps), pressure_GPa) per run; ``settings``: metal,
    q6_threshold. The solid fraction per frame is the fraction of metal atoms with q6-bar >= q6_threshold.
    """
    metal, threshold = settings['metal'], settings['q6_threshold']
    by_pressure: dict[float, dict] = {}
    for key in sorted(runs):
        if not key.startswith('trajectory_'):
            continue
        conditions = runs[f'conditions_{key.split("_", 1)[1]}'].get_dict()
        trajectory = runs[key]
        fractions = _solid_fractions(trajectory, metal, threshold)
        entry = by_pressure.setdefault(conditions['pressure_GPa'], {'coexistence': [], 'ramps': {}})
        if conditions['kind'] == 'coexistence':
            verdict = coexistence_verdict(fractions)
            entry['coexistence'].append({'temperature_K': conditions['temperature_K'], **verdict})
        else:
            steps = np.asarray(trajectory.get_stepids(), dtype=float)
            start, end = conditions['start_K'], conditions['end_K']
            temperatures = start + (end - start) * np.minimum(steps / conditions['n_steps'], 1.0)
            heating = conditions['kind'] == 'heating'
            entry['ramps'][conditions['kind']] = {
                'transition_K': ramp_transition_temperature(temperatures, fractions, heating=heating),
                'temperature_K': temperatures.tolist(),
                'solid_fraction': fractions.tolist(),
            }
    table = []
    for pressure, entry in sorted(by_pressure.items()):
        runs_at_p = sorted(entry['coexistence'], key=lambda run: run['temperature_K'])
        bracket = bracket_melting_temperature(
            [run['temperature_K'] for run in runs_at_p], [run['verdict'] for run in runs_at_p]
        )
        ramps = entry['ramps']
        hysteresis = hysteresis_melting_temperature(
            ramps.get('heating', {}).get('transition_K'), ramps.get('cooling', {}).get('transition_K')
        )
        table.append(
            {
                'pressure_GPa': pressure,
                'coexistence': runs_at_p,
                'bracket': bracket,
                'ramps': ramps,
                'hysteresis': hysteresis,
            }
        )
    return orm.Dict({'points': table, 'metal': metal, 'q6_threshold': threshold, 'units': {'temperature': 'K'}})


def _png(figure_writer, *args) -> orm.SinglefileData:
    buffer = io.BytesIO()
    figure_writer(*args, buffer)
    buffer.seek(0)
    return orm.SinglefileData(buffer, filename='plot.png')


@calcfunction
def plot_enthalpies(dft_table: orm.Dict, **md_table: orm.Dict) -> orm.SinglefileData:
    """PNG: Delta H versus P of MH2 + H2 -> MH4 / MH6 (DFT, static) and -> solid / liquid MH4 (MLIP, at T)."""
    md = md_table['md_table'].get_dict() if 'md_table' in md_table else None
    return _png(plot_reaction_enthalpy, dft_table.get_dict(), md)


@calcfunction
def plot_melting(table: orm.Dict) -> orm.SinglefileData:
    """PNG: T_m of MH4 versus P: coexistence bracket and the ramp (hysteresis) estimate."""
    return _png(plot_melting_curve, table.get_dict())


# --- validation ------------------------------------------------------------------------------------------------------


def _validate_pressures(value: orm.List, _) -> str | None:
    values = value.get_list()
    if not values or any(isinstance(p, bool) or not isinstance(p, (int, float)) or p < 0 for p in values):
        return f'pressures: give one or more pressures >= 0 in GPa, got {values}'
    if len(set(values)) != len(values):
        return f'pressures: duplicate values in {values}'
    return None


def _validate_structures(value: dict, _) -> str | None:
    if not value:
        return None
    roles = {}
    for name, structure in value.items():
        try:
            roles[name] = phase_role(structure.get_ase().get_chemical_symbols())[0]
        except ValueError as exception:
            return f'structures.{name}: {exception}'
    present = set(roles.values())
    if not {'MH2', 'H2'} <= present or not present & {'MH4', 'MH6'}:
        return f'structures: need an MH2, an H2 and an MH4 or MH6 phase; got roles {roles}'
    return None


def _validate_inputs(inputs: dict, _) -> str | None:
    has_dft, has_mlip = bool(inputs.get('structures')), bool(inputs.get('mlip', {}).get('models'))
    if not has_dft and not has_mlip:
        return 'give `structures` (DFT branch), `mlip` (MLIP branch) or both'
    if has_dft and 'relax' not in inputs:
        return '`relax`: the vc-relax template is required with `structures` (get_builder_from_protocol makes it)'
    return None


MLIP_SETTINGS = {'temperatures', 'equilibration_fraction', 'q6_threshold', 'md', 'coexistence', 'ramp'}


def _validate_mlip(value: dict, _) -> str | None:
    if not value:
        return None
    settings = value['settings'].get_dict() if 'settings' in value else {}
    missing = sorted(MLIP_SETTINGS - set(settings))
    if missing:
        return f'mlip.settings: missing {missing}'
    for name in value.get('systems', {}):
        if name.split('_', 1)[0] not in MD_STATES:
            return f'mlip.systems.{name}: the name must start with one of {[f"{s}_" for s in MD_STATES]}'
    if 'member_0' not in value.get('models', {}):
        return 'mlip.models: member_0 (the model that drives the MD) is required'
    return None


class HydrogenationEnthalpyWorkChain(RollingSubmissionMixin, ProtocolMixin, WorkChain):
    """Hydrogenation enthalpy of MH2 + H2 -> MH4 / MH6 versus pressure (DFT, optionally MLIP MD) and T_m of MH4."""

    @classmethod
    def define(cls, spec):
        # fmt: off
        super().define(spec)
        spec.expose_inputs(
            PwRelaxWorkChain, namespace='relax',
            exclude=('structure', 'clean_workdir', 'base_init_relax', 'base_relax.pw.pseudos', 'base_relax.kpoints',
                     'base_relax.kpoints_distance'),
            namespace_options={'required': False, 'populate_defaults': False,
                               'help': 'Template of the vc-relax of every phase; CELL.press is set per pressure.'},
        )
        spec.input_namespace('structures', valid_type=orm.StructureData, dynamic=True, validator=_validate_structures,
                             required=False,
                             help='Phases to relax (DFT branch) by name; the role (MH2, MH4, MH6, H2) comes from the '
                             'composition. Without them only the MLIP branch runs.')
        spec.input('pressures', valid_type=orm.List, validator=_validate_pressures, help='Target pressures (GPa).')
        spec.input('pseudo_family', valid_type=orm.Str, default=lambda: orm.Str(DEFAULT_FAMILY),
                   help='Label of an installed aiida-pseudo family covering every element.')
        spec.input('kpoints_distance', valid_type=orm.Float, default=lambda: orm.Float(0.25),
                   help='k-point spacing (1/Angstrom) of every relaxation.')
        spec.input('clean_workdir', valid_type=orm.Bool, default=lambda: orm.Bool(True),
                   help='Clean the remote folders of the pw.x calculations when they finish.')
        spec.input('max_concurrent', valid_type=orm.Int, default=lambda: orm.Int(4),
                   validator=validate_max_concurrent,
                   help='Relaxations and MD runs at once; the next starts as soon as one ends.')
        spec.input_namespace('mlip', required=False, populate_defaults=False, validator=_validate_mlip,
                             help='Optional MLIP branch: NPT MD with an Allegro committee.')
        spec.expose_inputs(MDCalculation, namespace='mlip.md',
                           exclude=('structure', 'models', 'parameters', 'parent_folder'),
                           namespace_options={'required': False, 'populate_defaults': False,
                                              'help': 'Code and options of every MD run.'})
        spec.expose_inputs(MDBaseWorkChain, namespace='mlip.md_restart', exclude=('md',),
                           namespace_options={'required': False,
                                              'help': 'Restart policy of every MD run (blow-ups, walltime).'})
        spec.input_namespace('mlip.models', valid_type=AllegroPotentialData, dynamic=True, required=False,
                             help='The committee (member_0 drives the MD).')
        spec.input_namespace('mlip.systems', valid_type=orm.StructureData, dynamic=True, required=False,
                             help='NPT enthalpy systems: solid_<name>, liquid_<name> or fluid_<name>.')
        spec.input('mlip.coexistence_structure', valid_type=orm.StructureData, required=False,
                   help='Solid-liquid two-phase MH4 cell (structures.solid_liquid_cell).')
        spec.input('mlip.heating_structure', valid_type=orm.StructureData, required=False,
                   help='Solid MH4 cell of the heating ramp.')
        spec.input('mlip.cooling_structure', valid_type=orm.StructureData, required=False,
                   help='Liquid MH4 cell of the cooling ramp.')
        spec.input('mlip.metal', valid_type=orm.Str, required=False, help='The metal (for the q6 order parameter).')
        spec.input('mlip.settings', valid_type=orm.Dict, required=False,
                   help='temperatures, equilibration_fraction, q6_threshold, md (MD parameters template), '
                   'coexistence {temperatures, n_steps}, ramp {start_K, end_K, n_steps}.')
        spec.inputs.validator = _validate_inputs
        spec.outline(
            cls.setup,
            while_(cls.children_left)(cls.run_all),
            cls.analyse_dft,
            if_(cls.has_mlip)(cls.analyse_md),
            cls.results,
        )
        spec.output('dft_table', valid_type=orm.Dict, required=False,
                    help='Enthalpies per formula unit, reaction enthalpies and sign-change pressures (DFT).')
        spec.output('dft_enthalpies', valid_type=orm.ArrayData, required=False, help='The same as arrays.')
        spec.output('md_table', valid_type=orm.Dict, required=False, help='MLIP enthalpies at (T, P).')
        spec.output('melting_table', valid_type=orm.Dict, required=False, help='T_m of MH4 per pressure.')
        spec.output('enthalpy_plot', valid_type=orm.SinglefileData, required=False, help='Delta H versus P (PNG).')
        spec.output('melting_plot', valid_type=orm.SinglefileData, required=False, help='T_m versus P (PNG).')
        spec.output('failed', valid_type=orm.Dict, help='Failed runs: label -> pk, exit status and reason.')
        spec.exit_code(300, 'ERROR_PSEUDO_FAMILY', message='The pseudo family cannot be used: {reason}')
        spec.exit_code(410, 'ERROR_RELAXATIONS_FAILED',
                       message='{n_failed} of {n_total} relaxations failed ({labels}); the tables hold the others. '
                       'See the `failed` output and `verdi process report` of the failed PwRelaxWorkChains.')
        spec.exit_code(411, 'ERROR_NO_RELAXATION', message='Every relaxation failed; see the `failed` output.')
        spec.exit_code(420, 'ERROR_MD_FAILED',
                       message='{n_failed} MD runs failed ({labels}); the MLIP tables hold the others.')
        # fmt: on

    @classmethod
    def get_protocol_filepath(cls):
        return protocol_file('enthalpy')

    @classmethod
    def get_builder_from_protocol(
        cls,
        pw_code: orm.AbstractCode | None,
        metal: str,
        pressures: list[float],
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
        pseudo_family: str = DEFAULT_FAMILY,
        structures: dict[str, orm.StructureData] | None = None,
        mlip_code: orm.AbstractCode | None = None,
        models: dict[str, AllegroPotentialData] | None = None,
        num_mpiprocs: int = 1,
    ):
        """Builder for ``metal`` at ``pressures`` (GPa) with the protocol (fast / moderate / precise).

        ``structures`` default to the protocol's ``phases`` built by :mod:`aiida_polyhydride.structures` (primitive
        cells). With ``mlip_code`` and ``models`` the MLIP branch is switched on with the protocol's MD cells; with
        ``pw_code=None`` only the MLIP branch runs.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        builder = cls.get_builder()
        builder.pressures = orm.List([float(p) for p in pressures])
        builder.max_concurrent = orm.Int(inputs['max_concurrent'])
        if pw_code is not None:
            cls._set_dft_inputs(builder, inputs, pw_code, metal, pseudo_family, structures, num_mpiprocs)
        if mlip_code is None and models is None:
            return builder
        if mlip_code is None or not models:
            raise ValueError('mlip: give both mlip_code (the python code of the MD runner) and models (the committee)')
        cls._set_mlip_inputs(builder, inputs, metal, mlip_code, models)
        return builder

    @staticmethod
    def _set_dft_inputs(builder, inputs, pw_code, metal, pseudo_family, structures, num_mpiprocs) -> None:
        from ..setup.cluster import default_job_options
        from ..structures import bulk_phase, primitive_cell
        from ..structures.enthalpy_cells import solid_h2

        if structures is None:
            structures = {
                name.replace('-', ''): orm.StructureData(
                    ase=solid_h2() if name == 'H2-P63mmc' else primitive_cell(bulk_phase(name, metal))
                )
                for name in inputs['phases']
            }
        elements = set().union(*(structure.get_symbols_set() for structure in structures.values()))
        cutoffs = recommended_cutoffs(pseudo_family, elements, inputs['cutoff_scale'])
        example = min(structures.values(), key=lambda structure: len(structure.sites))
        template = PwRelaxWorkChain.get_builder_from_protocol(
            pw_code,
            example,
            protocol=inputs['pw_base_protocol'],
            overrides=recursive_merge(
                inputs['relax'],
                {
                    'base_relax': {'pseudo_family': pseudo_family, 'pw': {'parameters': {'SYSTEM': cutoffs}}},
                    'base_init_relax': {'pseudo_family': pseudo_family},  # built by aiida-quantumespresso, unused here
                },
            ),
            options={
                'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': num_mpiprocs},
                **default_job_options(pw_code.computer),
            },
        )
        base_relax = template.base_relax
        for key in ('pseudos', 'structure'):
            base_relax.pw.pop(key, None)
        for key in ('kpoints', 'kpoints_distance'):
            base_relax.pop(key, None)
        builder.relax.base_relax = base_relax
        builder.relax.meta_convergence = template.meta_convergence
        builder.relax.max_meta_convergence_iterations = template.max_meta_convergence_iterations
        builder.structures = structures
        builder.pseudo_family = orm.Str(pseudo_family)
        builder.kpoints_distance = orm.Float(inputs['kpoints_distance'])
        builder.clean_workdir = orm.Bool(inputs['clean_workdir'])

    @staticmethod
    def _set_mlip_inputs(builder, inputs, metal, mlip_code, models) -> None:
        from ..structures import bulk_phase, dense_h2_fluid, liquid_like
        from ..structures.enthalpy_cells import solid_liquid_cell

        mlip, cells = inputs['mlip'], inputs['mlip']['cells']
        solid_repeat = tuple(cells['solid_repeat'])
        systems = {
            f'solid_{name.replace("-", "")}': bulk_phase(name, metal) * solid_repeat
            for name in inputs['phases']
            if name.startswith(('MH2', 'MH4'))
        }
        systems['liquid_MH4'] = liquid_like(metal, 4.0, n_metal=cells['liquid_n_metal'], seed=1)
        systems['fluid_H2'] = dense_h2_fluid(cells['fluid_h2_molecules'], cells['fluid_h2_density_g_cm3'], seed=1)
        builder.mlip.md.code = mlip_code
        builder.mlip.models = dict(models)
        builder.mlip.systems = {name: orm.StructureData(ase=atoms) for name, atoms in systems.items()}
        solid_mh4 = bulk_phase('MH4-I4mmm', metal)
        builder.mlip.coexistence_structure = orm.StructureData(
            ase=solid_liquid_cell(solid_mh4 * tuple(cells['coexistence_repeat']), repeat_along_z=2, seed=1)
        )
        builder.mlip.heating_structure = orm.StructureData(ase=solid_mh4 * solid_repeat)
        builder.mlip.cooling_structure = builder.mlip.systems['liquid_MH4']
        builder.mlip.metal = orm.Str(metal)
        builder.mlip.settings = orm.Dict({key: mlip[key] for key in MLIP_SETTINGS})

    # --- steps ---------------------------------------------------------------------------------------------------

    def setup(self):
        self.ctx.failed = {}
        self.ctx.finished = {}
        self.ctx.n_relaxations = 0
        queue = [['md', key] for key in self._md_runs()] if self.has_mlip() else []
        if self.inputs.get('structures'):
            elements = set().union(*(structure.get_symbols_set() for structure in self.inputs.structures.values()))
            try:
                self.ctx.family = load_pseudo_family(self.inputs.pseudo_family.value, elements)
            except ValueError as exception:
                return self.exit_codes.ERROR_PSEUDO_FAMILY.format(reason=str(exception))
            relaxations = itertools.product(range(len(self.inputs.pressures)), sorted(self.inputs.structures))
            queue = [['relax', index, phase] for index, phase in relaxations] + queue
        self.start_queue(queue)
        self.report(f'{len(queue)} runs, at most {self.inputs.max_concurrent.value} at once')
        return None

    def has_mlip(self) -> bool:
        return bool(self.inputs.get('mlip', {}).get('models'))

    def run_all(self):
        """The relaxations and, with the MLIP branch, the MD runs (none depends on another), at most
        ``max_concurrent`` at once, the next starting as soon as one ends."""
        return self.roll(self._submit_next, self._collect)

    def _submit_next(self, entry: list) -> tuple[str, orm.WorkflowNode]:
        if entry[0] == 'relax':
            _, index, phase = entry
            pressure = self.inputs.pressures.get_list()[index]
            structure = self.inputs.structures[phase]
            key = f'relax_{index}_{phase}'
            node = self.submit(PwRelaxWorkChain, **self._relax_inputs(phase, structure, index, pressure))
        else:
            key = entry[1]
            structure, parameters, conditions = self._md_runs()[key]
            node = self._submit_md(key, structure, parameters)
            self.ctx[f'conditions_{key}'] = conditions
        self.report(f'{key}: {node.process_label}<{node.pk}>; {len(self.ctx.pending)} waiting')
        return key, node

    def _collect(self, key: str, node: orm.WorkflowNode) -> None:
        self.ctx.finished[key] = node

    def _relax_inputs(self, phase: str, structure: orm.StructureData, index: int, pressure: float) -> AttributeDict:
        inputs = AttributeDict(self.exposed_inputs(PwRelaxWorkChain, namespace='relax'))
        base = AttributeDict(inputs.base_relax)
        base.pw = AttributeDict(base.pw)
        parameters = _parameters_for_kinds(base.pw.parameters, structure.get_kind_names()).get_dict()
        parameters.setdefault('CELL', {})['press'] = pressure * KBAR_PER_GPA
        base.pw.parameters = orm.Dict(parameters)
        base.pw.pseudos = self.ctx.family.get_pseudos(structure=structure)
        base.kpoints_distance = self.inputs.kpoints_distance
        inputs.base_relax = base
        inputs.structure = structure
        inputs.clean_workdir = self.inputs.clean_workdir
        inputs.metadata = {'call_link_label': f'relax_{index}_{phase}', 'label': f'{phase} at {pressure} GPa'}
        return inputs

    def _md_runs(self) -> dict[str, tuple[orm.StructureData, dict, dict]]:
        """(structure, MD parameters, conditions) of every MD run, by context key."""
        mlip, settings = self.inputs.mlip, self.inputs.mlip.settings.get_dict()
        template = {**settings['md'], 'ensemble': 'npt'}
        runs = {}
        pressures = self.inputs.pressures.get_list()
        systems = sorted(mlip.get('systems', {}).items())
        grid = itertools.product(enumerate(pressures), settings['temperatures'], systems)
        for number, ((_, pressure), temperature, (name, structure)) in enumerate(grid):
            parameters = {**template, 'temperature_K': temperature, 'pressure_GPa': pressure}
            if not name.startswith('solid_'):  # a liquid has no shear stiffness: a fully flexible cell would drift
                parameters['barostat'] = 'isotropic'
            conditions = {'system': name, 'temperature_K': temperature, 'pressure_GPa': pressure}
            runs[f'npt_{number}'] = (structure, parameters, conditions)
        for index, pressure in enumerate(pressures):
            if 'coexistence_structure' in mlip:
                for number, temperature in enumerate(settings['coexistence']['temperatures']):
                    parameters = {
                        **template, 'temperature_K': temperature, 'pressure_GPa': pressure,
                        'n_steps': settings['coexistence']['n_steps'],
                    }  # fmt: skip
                    conditions = {'kind': 'coexistence', 'temperature_K': temperature, 'pressure_GPa': pressure}
                    runs[f'coexistence_{index}_{number}'] = (mlip.coexistence_structure, parameters, conditions)
            ramp = settings['ramp']
            for kind, span in (
                ('heating', (ramp['start_K'], ramp['end_K'])),
                ('cooling', (ramp['end_K'], ramp['start_K'])),
            ):
                if f'{kind}_structure' not in mlip:
                    continue
                parameters = {
                    **template,
                    'temperature_K': list(span),
                    'pressure_GPa': pressure,
                    'n_steps': ramp['n_steps'],
                }
                conditions = {'kind': kind, 'start_K': span[0], 'end_K': span[1], 'n_steps': ramp['n_steps']}
                conditions['pressure_GPa'] = pressure
                runs[f'{kind}_{index}'] = (mlip[f'{kind}_structure'], parameters, conditions)
        return runs

    def _submit_md(self, key: str, structure: orm.StructureData, parameters: dict):
        """One NPT run (MDBaseWorkChain: a blow-up is retried with a shorter time step, a walltime stop continued)."""
        inputs = AttributeDict(self.exposed_inputs(MDCalculation, namespace='mlip.md'))
        inputs.structure = structure
        inputs.models = dict(self.inputs.mlip.models)
        inputs.parameters = orm.Dict(parameters)
        inputs.metadata = {**inputs.get('metadata', {}), 'label': key}
        restart = AttributeDict(self.exposed_inputs(MDBaseWorkChain, namespace='mlip.md_restart'))
        restart.md = inputs
        restart.metadata = {**restart.get('metadata', {}), 'call_link_label': key, 'label': key}
        return self.submit(MDBaseWorkChain, **restart)

    def _record_failure(self, key: str, node) -> None:
        reason = failure_reason(node)
        self.ctx.failed[key] = {'pk': node.pk, 'exit_status': node.exit_status, 'reason': reason}
        self.report(f'{key}: {node.process_label}<{node.pk}> failed [{node.exit_status}]: {reason}')

    def analyse_dft(self):
        """Enthalpies of the relaxations that succeeded, reaction enthalpies, the plot."""
        relaxed = {}
        keys = sorted(key for key in self.ctx.finished if key.startswith('relax_'))
        for key in keys:
            node = self.ctx.finished[key]
            if node.is_finished_ok and 'output_structure' in node.outputs:
                _, index, phase = key.split('_', 2)
                relaxed[f'structure_{index}_{phase}'] = node.outputs.output_structure
                relaxed[f'parameters_{index}_{phase}'] = node.outputs.output_parameters
                relaxed[f'trajectory_{index}_{phase}'] = node.outputs.output_trajectory
            else:
                self._record_failure(key, node)
        self.ctx.n_relaxations = len(keys)
        if relaxed:
            tables = dft_enthalpy_table(self.inputs.pressures, **relaxed)
            self.out('dft_table', tables['table'])
            self.out('dft_enthalpies', tables['enthalpies'])
            for product, reaction in tables['table']['reactions'].items():
                crossings = ', '.join(
                    f'{c["pressure_GPa"]:.2f} GPa ({c["direction"]})' for c in reaction['sign_changes']
                )
                self.report(f'MH2 -> {product}: delta_H {reaction["delta_H"]} eV; sign changes: {crossings or "none"}')

    def analyse_md(self):
        """MLIP enthalpies, the melting table; failed runs still contribute what they dumped."""
        enthalpy_runs, melting_runs = {}, {}
        for key in sorted(key for key in self.ctx.finished if not key.startswith('relax_')):
            node = self.ctx.finished[key]
            if not node.is_finished_ok:
                self._record_failure(key, node)
                continue  # a blown-up or interrupted run is not an equilibrium average
            target = enthalpy_runs if key.startswith('npt_') else melting_runs
            target[f'trajectory_{key}'] = node.outputs.trajectory
            target[f'conditions_{key}'] = orm.Dict(self.ctx[f'conditions_{key}'])
        settings = self.inputs.mlip.settings.get_dict()
        if enthalpy_runs:
            self.out('md_table', md_enthalpy_table(
                orm.Dict({'equilibration_fraction': settings['equilibration_fraction']}), **enthalpy_runs
            ))  # fmt: skip
        if melting_runs:
            table = melting_table(
                orm.Dict({'metal': self.inputs.mlip.metal.value, 'q6_threshold': settings['q6_threshold']}),
                **melting_runs,
            )
            self.out('melting_table', table)
            self.out('melting_plot', plot_melting(table))
            for point in table['points']:
                self.report(
                    f'T_m at {point["pressure_GPa"]} GPa: coexistence {point["bracket"]}, ramps {point["hysteresis"]}'
                )

    def results(self):
        if 'dft_table' in self.outputs:
            md = {'md_table': self.outputs['md_table']} if 'md_table' in self.outputs else {}
            self.out('enthalpy_plot', plot_enthalpies(self.outputs['dft_table'], **md))
        self.out('failed', orm.Dict(self.ctx.failed).store())
        failed_relax = sorted(key for key in self.ctx.failed if key.startswith('relax_'))
        if self.ctx.n_relaxations and 'dft_table' not in self.outputs:
            return self.exit_codes.ERROR_NO_RELAXATION
        if failed_relax:
            return self.exit_codes.ERROR_RELAXATIONS_FAILED.format(
                n_failed=len(failed_relax), n_total=self.ctx.n_relaxations, labels=', '.join(failed_relax)
            )
        failed_md = sorted(key for key in self.ctx.failed if not key.startswith('relax_'))
        if failed_md:
            return self.exit_codes.ERROR_MD_FAILED.format(n_failed=len(failed_md), labels=', '.join(failed_md))
        return None
