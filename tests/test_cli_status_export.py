"""``aiida-polyhydride status`` and ``export`` as a user runs them, on nodes of the session profile."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from aiida import orm
from aiida.engine import calcfunction, workfunction


@calcfunction
def md_products(n_steps: orm.Int) -> dict:
    """A short trajectory of a rattled CaH4 cell with energies and temperatures, and a PNG plot of the energies."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from aiida_polyhydride.structures import bulk_phase, primitive_cell, rattle

    frames = [rattle(primitive_cell(bulk_phase('MH4-I4mmm', 'Ca')), 0.05, seed=seed) for seed in range(n_steps.value)]
    energies = np.linspace(-10.0, -9.0, len(frames))
    trajectory = orm.TrajectoryData()
    trajectory.set_trajectory(
        symbols=frames[0].get_chemical_symbols(),
        positions=np.array([frame.positions for frame in frames]),
        stepids=np.arange(len(frames)) * 10,
        cells=np.array([frame.cell.array for frame in frames]),
        times=np.arange(len(frames)) * 5.0,
        pbc=(True, True, True),
    )
    trajectory.set_array('energies', energies)
    trajectory.set_array('temperature_K', np.full(len(frames), 1500.0))
    figure, axis = plt.subplots()
    axis.plot(energies)
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png')
    plt.close(figure)
    buffer.seek(0)
    return {'trajectory': trajectory, 'energy_plot': orm.SinglefileData(buffer, filename='energy.png')}


@calcfunction
def summarise(trajectory: orm.TrajectoryData) -> dict:
    """Accurate ratios and an iteration history of the shape the loop workflows report."""
    n_frames = len(trajectory.get_stepids())
    return {
        'ratios': orm.Dict({'CaH4': {'accurate': 0.75, 'candidate': 0.25, 'failed': 0.0, 'n_frames': n_frames}}),
        'history': orm.Dict({'iterations': [{'accurate': {'CaH4': 0.5}}, {'accurate': {'CaH4': 0.75}}]}),
    }


@workfunction
def small_run(n_steps: orm.Int) -> dict:
    products = md_products(n_steps)
    return {**products, **summarise(products['trajectory'])}


@pytest.fixture(scope='module')
def small_run_node():
    _, node = small_run.run_get_node(orm.Int(4))
    return node


def cli(session_shell, aiida_profile, *args, **kwargs):
    return session_shell.cli(*args, '-p', aiida_profile.name, **kwargs)


def test_status_of_a_finished_committee(session_shell, aiida_profile, tiny_committee):
    result = cli(session_shell, aiida_profile, 'status', str(tiny_committee.pk))
    assert result.returncode == 0, result.stderr
    assert f'CommitteeWorkChain<{tiny_committee.pk}>' in result.stdout
    assert 'Finished [0]' in result.stdout.splitlines()[0]
    n_called = len(tiny_committee.called)
    assert f'{n_called}/{n_called} steps terminated' in result.stdout
    assert result.stdout.count('AllegroTrainCalculation') == 2
    assert f'called processes: {n_called} ({n_called} finished OK, 0 failed, 0 active)' in result.stdout


def test_status_shows_history_ratios_and_report(session_shell, aiida_profile, small_run_node):
    result = cli(session_shell, aiida_profile, 'status', str(small_run_node.pk), '--report-lines', '3')
    assert result.returncode == 0, result.stderr
    assert f'accurate ratios (small_run<{small_run_node.pk}>)' in result.stdout
    assert 'CaH4' in result.stdout
    assert '0.75 accurate, 0.25 candidate, 0.00 failed of 4 frames' in result.stdout
    assert 'history (Dict<' in result.stdout
    assert '1: {"accurate": {"CaH4": 0.75}}' in result.stdout


@pytest.fixture(scope='module')
def bash_code(localhost_setup):
    label = 'bash-add'
    try:
        return orm.load_code(f'{label}@{localhost_setup.label}')
    except Exception:
        return orm.InstalledCode(
            label=label,
            computer=localhost_setup,
            filepath_executable='/bin/bash',
            default_calc_job_plugin='core.arithmetic.add',
        ).store()


@pytest.mark.parametrize(('x', 'ok'), [(2, True), (-5, False)])
def test_watch_follows_a_daemon_process_until_it_terminates(
    session_shell, aiida_profile, daemon_client, bash_code, x, ok
):
    from aiida.engine import submit
    from aiida.plugins import CalculationFactory

    if not daemon_client.is_daemon_running:
        daemon_client.start_daemon()
    builder = CalculationFactory('core.arithmetic.add').get_builder()
    builder.code = bash_code
    builder.x = orm.Int(x)
    builder.y = orm.Int(1)
    node = submit(builder)
    result = cli(session_shell, aiida_profile, 'status', str(node.pk), '--watch', '--interval', '1', timeout=300)
    assert node.is_terminated  # the command returned only once the process was done
    assert 'Traceback' not in result.stderr
    if ok:
        assert result.returncode == 0, result.stderr
        assert 'Finished [0]' in result.stdout
    else:
        assert result.returncode != 0
        assert f'ArithmeticAddCalculation<{node.pk}> ended Finished [{node.exit_status}]' in result.stderr


def test_export_of_a_committee_and_a_dataset(session_shell, aiida_profile, tiny_committee, qe_dataset, tmp_path):
    from ase.io import read

    result = cli(session_shell, aiida_profile, 'export', str(tiny_committee.pk), '--to', str(tmp_path / 'committee'))
    assert result.returncode == 0, result.stderr
    models = dict(tiny_committee.outputs.models.items())
    manifest = json.loads((tmp_path / 'committee' / 'export.json').read_text())
    exported_models = {entry['pk']: entry for entry in manifest if entry['type'] == 'AllegroPotentialData'}
    assert set(exported_models) == {model.pk for model in models.values()}
    for model in models.values():
        path = tmp_path / 'committee' / exported_models[model.pk]['path']
        assert path.name.endswith('.nequip.zip')
        assert hashlib.sha256(path.read_bytes()).hexdigest() == model.sha256
    graph = (tmp_path / 'committee' / 'provenance.gv').read_text()
    assert f'CommitteeWorkChain ({tiny_committee.pk})' in graph
    assert (tmp_path / 'committee' / 'provenance.svg').read_text().lstrip().startswith('<?xml')

    training = qe_dataset['training']
    result = cli(session_shell, aiida_profile, 'export', str(training.pk), '--to', str(tmp_path / 'data'), '--no-graph')
    assert result.returncode == 0, result.stderr
    (path,) = (tmp_path / 'data' / 'datasets').glob('*.extxyz')
    frames = read(path, index=':')
    assert len(frames) == len(training) == 6
    expected = [frame.get_potential_energy() for frame in training.to_ase()]
    assert [frame.get_potential_energy() for frame in frames] == pytest.approx(expected)


def test_export_of_trajectories_and_plots(session_shell, aiida_profile, small_run_node, tmp_path):
    from ase.io import read

    result = cli(
        session_shell, aiida_profile, 'export', str(small_run_node.pk), '--to', str(tmp_path), '--graph-format', 'png'
    )
    assert result.returncode == 0, result.stderr
    (trajectory_file,) = (tmp_path / 'trajectories').glob('*.extxyz')
    frames = read(trajectory_file, index=':')
    trajectory = small_run_node.outputs.trajectory
    assert len(frames) == 4
    assert np.allclose(frames[2].positions, trajectory.get_positions()[2])
    assert [frame.info['step'] for frame in frames] == [0, 10, 20, 30]
    assert frames[3].get_potential_energy() == pytest.approx(-9.0)
    assert frames[0].info['temperature_K'] == 1500.0
    (plot,) = (tmp_path / 'plots').glob('*.png')
    with small_run_node.outputs.energy_plot.open(mode='rb') as stored:
        assert plot.read_bytes() == stored.read()
    assert (tmp_path / 'provenance.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize(
    ('command', 'identifier', 'message'),
    [
        ('status', '999999999', 'no node with PK or UUID 999999999'),
        ('export', '999999999', 'no node with PK or UUID 999999999'),
        ('status', 'dict', 'is a Dict, not a process (workflow or calculation)'),
        ('export', 'dict', 'is a Dict, not a process, a TrainingSetData'),
    ],
)
def test_bad_node_gives_one_clear_line(session_shell, aiida_profile, tmp_path, command, identifier, message):
    if identifier == 'dict':
        identifier = str(orm.Dict({'not': 'a process'}).store().pk)
    args = [command, identifier] + (['--to', str(tmp_path)] if command == 'export' else [])
    result = cli(session_shell, aiida_profile, *args)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr + result.stdout


def test_missing_profile_gives_one_clear_line(user_shell):
    result = user_shell.cli('status', '1')
    assert result.returncode != 0
    assert "AiiDA profile 'polyhydride' does not exist: create it with `aiida-polyhydride setup" in result.stderr
    assert 'Traceback' not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # not even aiida's config-folder warning


def test_profile_goes_before_or_after_the_command(user_shell, session_shell, aiida_profile, localhost_setup):
    """`aiida-polyhydride -p NAME COMMAND`, as with verdi, and `COMMAND -p NAME`; the one after the command wins."""
    before = user_shell.cli('-p', 'elsewhere', 'status', '1')
    assert "AiiDA profile 'elsewhere' does not exist" in before.stderr, before.stderr
    both = user_shell.cli('-p', 'elsewhere', 'status', '1', '-p', 'other')
    assert "AiiDA profile 'other' does not exist" in both.stderr, both.stderr
    found = session_shell.cli(
        '-p', aiida_profile.name, 'launch', 'enthalpy', '--metal', 'Ca', '-P', '40', '--set', 'pw_code=pw@localhost',
        '--dry-run',
    )  # fmt: skip
    assert found.returncode == 0, found.stdout + found.stderr
