"""HydrogenationEnthalpyWorkChain with real pw.x vc-relaxations and the session's tiny Allegro committee.

DFT run at one pressure: CaH2 P6_3/mmc (6 atoms), the 5-atom CaH4 primitive cell and 4-atom solid H2 relaxed with the
fast protocol at low k density. MLIP run (its own work chain, so neither waits for the other): unit cells, a few dozen
MD steps per run.
"""

from __future__ import annotations

import numpy as np
import pytest

PRESSURE_GPA = 40.0
PHASES = ['MH2-P63mmc', 'MH4-I4mmm', 'H2-P63mmc']


def _dft_builder():
    from aiida import orm

    from aiida_polyhydride.workflows.enthalpy import HydrogenationEnthalpyWorkChain

    builder = HydrogenationEnthalpyWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'),
        'Ca',
        [PRESSURE_GPA],
        protocol='fast',
        # 2x2x2-ish meshes and a 2 GPa pressure threshold: a test of the bookkeeping and the pressure control (fewer
        # BFGS steps and meta-convergence reruns than the protocol's 0.5 GPa), not converged numbers
        overrides={
            'phases': PHASES,
            'kpoints_distance': 1.0,
            'max_concurrent': 2,  # 3 relaxations: the third waits for a free slot
            'relax': {'base_relax': {'pw': {'parameters': {'CELL': {'press_conv_thr': 20.0}}}}},
        },
    )
    return builder


def _mlip_builder(tiny_committee):
    from aiida import orm

    from aiida_polyhydride.workflows.enthalpy import HydrogenationEnthalpyWorkChain

    builder = HydrogenationEnthalpyWorkChain.get_builder_from_protocol(
        None,  # MLIP branch only
        'Ca',
        [PRESSURE_GPA],
        protocol='fast',
        overrides={
            'phases': PHASES,
            'mlip': {
                'temperatures': [600.0],
                'md': {'n_steps': 40, 'dump_every': 10, 'compile_model': False},  # 8 short runs: no compiles
                'coexistence': {'temperatures': [300.0, 1200.0], 'n_steps': 40},
                'ramp': {'start_K': 300.0, 'end_K': 1500.0, 'n_steps': 60},
            },
        },
        mlip_code=orm.load_code('python@localhost'),
        models=dict(tiny_committee.outputs.models),
    )
    return builder


@pytest.fixture(scope='module')
def enthalpy_runs(localhost_setup, tiny_committee, run_in_daemon):
    """The DFT and the MLIP branch, submitted together: pw.x relaxations and short MD runs share the two cores."""
    return run_in_daemon(_dft_builder(), _mlip_builder(tiny_committee), timeout=3600)


@pytest.fixture(scope='module')
def dft_run(enthalpy_runs):
    return enthalpy_runs[0]


@pytest.fixture(scope='module')
def mlip_run(enthalpy_runs):
    return enthalpy_runs[1]


def test_relaxations_run_at_most_max_concurrent_at_once(dft_run, peak_concurrency):
    relaxations = [child for child in dft_run.called if child.process_label == 'PwRelaxWorkChain']
    assert len(relaxations) == len(PHASES)
    assert peak_concurrency(relaxations) == 2  # two side by side, never three


def test_enthalpy_is_e_plus_pv_of_the_relaxed_cell(dft_run):
    from aiida_polyhydride.analysis.enthalpy import GPA_A3_IN_EV, phase_role

    node = dft_run
    assert node.is_finished_ok, node.exit_message
    assert 'md_table' not in node.outputs  # no MLIP inputs, no MD
    table = node.outputs.dft_table.get_dict()
    assert table['pressure_GPa'] == [PRESSURE_GPA]
    relaxations = {call.label: call for call in node.called if call.process_label == 'PwRelaxWorkChain'}
    assert len(relaxations) == len(PHASES)
    for name in ('MH2P63mmc', 'MH4I4mmm', 'H2P63mmc'):
        relax = relaxations[f'{name} at {PRESSURE_GPA} GPa']
        assert relax.is_finished_ok, relax.exit_message
        parameters, structure = relax.outputs.output_parameters, relax.outputs.output_structure
        cell = relax.inputs.base_relax.pw.parameters['CELL']
        assert cell['press'] == pytest.approx(10 * PRESSURE_GPA)  # kbar
        assert cell['cell_dofree'] == 'all'
        tolerance_gpa = 1.1 * cell['press_conv_thr'] / 10  # aiida-quantumespresso accepts 10% over the threshold
        relaxed_pressure = np.trace(relax.outputs.output_trajectory.get_array('stress')[-1]) / 3
        assert abs(relaxed_pressure - PRESSURE_GPA) <= tolerance_gpa
        _, n_units = phase_role(structure.get_ase().get_chemical_symbols())
        volume = structure.get_cell_volume()
        expected = (parameters['energy'] + PRESSURE_GPA * volume * GPA_A3_IN_EV) / n_units
        reported = table['phases'][name]['enthalpy'][0]
        assert reported == pytest.approx(expected, abs=1e-9)
        # the relaxed cell is at the target pressure within the tolerance, so is its enthalpy
        at_relaxed_pressure = (parameters['energy'] + relaxed_pressure * volume * GPA_A3_IN_EV) / n_units
        assert abs(reported - at_relaxed_pressure) <= tolerance_gpa * volume * GPA_A3_IN_EV / n_units
        assert table['phases'][name]['volume'][0] == pytest.approx(volume / n_units)
        assert table['phases'][name]['pressure_relaxed'][0] == pytest.approx(relaxed_pressure)
    phases = table['phases']
    delta = phases['MH4I4mmm']['enthalpy'][0] - phases['MH2P63mmc']['enthalpy'][0] - phases['H2P63mmc']['enthalpy'][0]
    assert table['reactions']['MH4']['delta_H'] == [pytest.approx(delta)]
    assert table['reactions']['MH4']['mh2_phase'] == ['MH2P63mmc']
    assert 'MH6' not in table['reactions']
    assert node.outputs.enthalpy_plot.get_content(mode='rb')[:4] == b'\x89PNG'
    assert node.outputs.failed.get_dict() == {}


def test_mlip_enthalpies_and_melting_tables(mlip_run):
    from aiida_polyhydride.analysis.enthalpy import GPA_A3_IN_EV

    node = mlip_run
    assert node.is_finished_ok, node.exit_message or node.exception
    assert 'dft_table' not in node.outputs  # no structures to relax: the MLIP branch alone
    md_runs = {call.label: call for call in node.called if call.process_label == 'MDBaseWorkChain'}
    # 4 NPT systems (solid MH2, solid MH4, liquid MH4, fluid H2), 2 coexistence temperatures, heating and cooling
    assert len(md_runs) == 8
    assert all(run.inputs.md.parameters['ensemble'] == 'npt' for run in md_runs.values())
    assert md_runs['heating_0'].inputs.md.parameters['temperature_K'] == [300.0, 1500.0]
    assert md_runs['cooling_0'].inputs.md.parameters['temperature_K'] == [1500.0, 300.0]

    points = node.outputs.md_table['points']
    assert len(points) == 1
    point = points[0]
    assert (point['temperature_K'], point['pressure_GPa']) == (600.0, PRESSURE_GPA)
    systems = point['systems']
    assert set(systems) == {'solid_MH2P63mmc', 'solid_MH4I4mmm', 'liquid_MH4', 'fluid_H2'}
    # <E> + P <V> per formula unit from the trajectory of the liquid run, recomputed here
    liquid_run = next(
        run for run in md_runs.values() if run.inputs.md.structure.uuid == node.inputs.mlip.systems['liquid_MH4'].uuid
    )
    energies = liquid_run.outputs.trajectory.get_array('energies')
    volumes = liquid_run.outputs.trajectory.get_array('volume')
    start = int(len(energies) * 0.2)
    n_metal = 4
    expected = (energies[start:].mean() + PRESSURE_GPA * volumes[start:].mean() * GPA_A3_IN_EV) / n_metal
    assert systems['liquid_MH4']['enthalpy'] == pytest.approx(expected)
    reactions = point['reactions_MH4']
    for state, product in (('solid', 'solid_MH4I4mmm'), ('liquid', 'liquid_MH4')):
        assert reactions[state]['product'] == product
        expected_delta = (
            systems[product]['enthalpy'] - systems['solid_MH2P63mmc']['enthalpy'] - systems['fluid_H2']['enthalpy']
        )
        assert reactions[state]['delta_H'] == pytest.approx(expected_delta)

    melting = node.outputs.melting_table.get_dict()
    (entry,) = melting['points']
    assert [run['temperature_K'] for run in entry['coexistence']] == [300.0, 1200.0]
    for run in entry['coexistence']:
        assert run['verdict'] in ('solid', 'liquid', 'coexisting')
        assert 0.0 <= run['final'] <= 1.0
    assert 0.2 < entry['coexistence'][0]['initial'] < 0.8  # half crystal, half disordered at the start
    assert set(entry['ramps']) == {'heating', 'cooling'}
    heating = entry['ramps']['heating']
    assert heating['temperature_K'][0] == pytest.approx(300.0)
    assert heating['temperature_K'][-1] == pytest.approx(1500.0)
    assert heating['solid_fraction'][0] == pytest.approx(1.0)  # the ramp starts from the crystal
    assert entry['bracket']['status'] in ('bracketed', 'above', 'below', 'inconsistent', 'undecided')
    assert node.outputs.melting_plot.get_content(mode='rb')[:4] == b'\x89PNG'


def test_failed_relaxations_are_reported_and_the_others_kept(localhost_setup, run_in_daemon):
    from aiida import orm
    from ase import Atoms

    from aiida_polyhydride.structures.enthalpy_cells import solid_h2
    from aiida_polyhydride.workflows.enthalpy import HydrogenationEnthalpyWorkChain

    # pw.x refuses atoms at the same position at once (check_atoms): two relaxations fail in seconds, H2 succeeds
    cell = [4.0, 4.0, 4.0]
    structures = {
        'MH2_overlap': orm.StructureData(ase=Atoms('CaH2', [[0, 0, 0], [0, 0, 0], [2, 2, 2]], cell=cell, pbc=True)),
        'MH4_overlap': orm.StructureData(ase=Atoms('CaH4', [[0, 0, 0], [0, 0, 0], [2, 2, 2], [1, 1, 1], [3, 3, 3]],
                                                   cell=cell, pbc=True)),
        'H2': orm.StructureData(ase=solid_h2()),
    }  # fmt: skip
    builder = HydrogenationEnthalpyWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'),
        'Ca',
        [PRESSURE_GPA],
        protocol='fast',
        structures=structures,
        overrides={'kpoints_distance': 1.0},
    )
    node = run_in_daemon(builder, timeout=1200)
    assert node.exit_status == HydrogenationEnthalpyWorkChain.exit_codes.ERROR_RELAXATIONS_FAILED.status
    assert 'relax_0_MH2_overlap' in node.exit_message
    assert 'relax_0_MH4_overlap' in node.exit_message
    failed = node.outputs.failed.get_dict()
    assert set(failed) == {'relax_0_MH2_overlap', 'relax_0_MH4_overlap'}
    assert all(entry['pk'] and entry['exit_status'] for entry in failed.values())
    table = node.outputs.dft_table.get_dict()
    assert set(table['phases']) == {'H2'}  # the successful relaxation is kept
    assert table['phases']['H2']['enthalpy'][0] is not None
    assert table['reactions'] == {}  # no MH2: no reaction enthalpy is invented


@pytest.mark.parametrize(
    ('port', 'value', 'message'),
    [
        ('pressures', [-5.0, 10.0], 'pressures >= 0'),
        ('pressures', [], 'one or more'),
        ('pressures', [10.0, 10.0], 'duplicate'),
    ],
)
def test_bad_pressures_are_refused(port, value, message):
    from aiida import orm

    from aiida_polyhydride.workflows.enthalpy import HydrogenationEnthalpyWorkChain

    builder = HydrogenationEnthalpyWorkChain.get_builder()
    with pytest.raises(ValueError, match=message):
        setattr(builder, port, orm.List(value))


def test_phases_without_a_reaction_are_refused():
    from aiida import orm
    from ase import Atoms

    from aiida_polyhydride.structures.enthalpy_cells import solid_h2
    from aiida_polyhydride.workflows.enthalpy import _validate_structures

    cah3 = orm.StructureData(ase=Atoms('CaH3', [[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3]], cell=[4] * 3, pbc=True))
    h2 = orm.StructureData(ase=solid_h2())
    assert 'structures.CaH3: Ca1H3' in _validate_structures({'CaH3': cah3, 'H2': h2}, None)
    assert 'need an MH2, an H2 and an MH4 or MH6' in _validate_structures({'H2': h2}, None)


def test_a_run_needs_one_branch():
    from aiida_polyhydride.workflows.enthalpy import _validate_inputs

    assert 'give `structures` (DFT branch), `mlip` (MLIP branch) or both' in _validate_inputs({}, None)
