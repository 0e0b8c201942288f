"""ExploreWorkChain with the session committee: MD over a (T, P) grid, trust-window ratios, capped selection."""

from __future__ import annotations

import pytest


@pytest.fixture(scope='module')
def explore_run(tiny_committee, compiled_committee, cah4_primitive, model_cache, run_in_daemon):
    # compiled_committee: both members compiled at once into the cache before the MD jobs look for them there
    from aiida import orm

    from aiida_polyhydride.workflows.explore import ExploreWorkChain

    builder = ExploreWorkChain.get_builder()
    builder.md.code = orm.load_code('python@localhost')
    builder.md.parameters = orm.Dict({'temperature_K': 300, 'timestep_fs': 0.5, 'n_steps': 30, 'dump_every': 5})
    builder.md.metadata.options.environment_variables = {'AIIDA_POLYHYDRIDE_CACHE': str(model_cache)}
    builder.structures = {'CaH4_bulk': orm.StructureData(ase=cah4_primitive * (2, 2, 1))}
    builder.models = dict(tiny_committee.outputs.models)
    builder.temperatures = orm.List([600.0])
    builder.pressures = orm.List([None, 40.0])
    builder.lo, builder.hi = orm.Float(0.0), orm.Float(1.0e3)  # every frame is a candidate: the caps decide
    builder.max_per_system, builder.max_total = orm.Int(3), orm.Int(3)
    builder.max_concurrent = orm.Int(1)
    return run_in_daemon(builder)


def test_grid_runs_and_selection_is_capped(explore_run):
    node = explore_run
    assert node.is_finished_ok, node.exit_message
    md_runs = [child for child in node.called if child.process_label == 'MDBaseWorkChain']
    assert len(md_runs) == 2  # one system x one temperature x (NVT, 40 GPa), each with its restart handlers
    assert all(run.is_finished_ok for run in md_runs)
    first, second = sorted(md_runs, key=lambda run: run.ctime)
    assert second.ctime >= first.mtime  # max_concurrent 1: the second run starts only once the first has ended
    ensembles = sorted(run.inputs.md.parameters['ensemble'] for run in md_runs)
    assert ensembles == ['npt', 'nvt']
    ratios = node.outputs.ratios.get_dict()
    assert set(ratios) == {'CaH4_bulk'}
    assert ratios['CaH4_bulk']['candidate'] == pytest.approx(1.0)
    candidates = node.outputs.candidates
    assert len(candidates) == 3
    assert not candidates.is_labelled  # ready for LabelWorkChain
    for frame in candidates.to_ase():
        assert frame.info['origin_system'] == 'CaH4_bulk'
        assert frame.info['origin_temperature_K'] == 600.0
        assert frame.info['sigma_f'] > 0


def test_trust_window_moves_frames_between_classes(explore_run):
    from aiida import orm

    from aiida_polyhydride.workflows.explore import select_frames

    selection_inputs = explore_run.outputs.ratios.creator.inputs
    runs = {key: selection_inputs[key] for key in selection_inputs if key != 'settings'}
    settings = selection_inputs['settings'].get_dict()
    everything_accurate = select_frames(orm.Dict({**settings, 'lo': 1.0e3, 'hi': 2.0e3}), **runs)
    assert everything_accurate['ratios']['CaH4_bulk']['accurate'] == pytest.approx(1.0)
    assert 'candidates' not in everything_accurate  # nothing to relabel
    everything_failed = select_frames(orm.Dict({**settings, 'lo': 0.0, 'hi': 1.0e-9}), **runs)
    assert everything_failed['ratios']['CaH4_bulk']['failed'] == pytest.approx(1.0)


def test_status_and_export_of_the_exploration(explore_run, session_shell, aiida_profile, tmp_path):
    """The user's view of this run: the accurate ratios in `status`, the MD trajectories as extxyz from `export`."""
    from ase.io import read

    status = session_shell.cli('status', str(explore_run.pk), '-p', aiida_profile.name)
    assert status.returncode == 0, status.stderr
    assert f'accurate ratios (ExploreWorkChain<{explore_run.pk}>' in status.stdout
    assert 'CaH4_bulk                    0.00 accurate, 1.00 candidate, 0.00 failed' in status.stdout

    exported = session_shell.cli(
        'export', str(explore_run.pk), '--to', str(tmp_path), '--no-graph', '-p', aiida_profile.name
    )
    assert exported.returncode == 0, exported.stderr
    md_runs = [child for child in explore_run.called if child.process_label == 'MDCalculation']
    for run in md_runs:
        trajectory = run.outputs.trajectory
        (path,) = (tmp_path / 'trajectories').glob(f'{trajectory.pk}_*.extxyz')
        frames = read(path, index=':')
        assert [frame.info['step'] for frame in frames] == list(trajectory.get_stepids())
        assert [frame.info['sigma_f'] for frame in frames] == pytest.approx(trajectory.get_array('sigma_f'))
    (candidates,) = (tmp_path / 'datasets').glob(f'{explore_run.outputs.candidates.pk}_*.extxyz')
    assert len(read(candidates, index=':')) == 3
