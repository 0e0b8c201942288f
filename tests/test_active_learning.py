"""ActiveLearningWorkChain end to end: real pw.x labels, real Allegro committees, MD with the committee.

One loop of two iterations (the daemon is restarted while it runs), then a continuation of it through ``parent``.
"""

from __future__ import annotations

import time

import pytest

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _loop_builder(qe_dataset, isolated_energies, cah4_primitive, model_cache, overrides=None):
    from aiida import orm
    from aiida_quantumespresso.workflows.protocols.utils import recursive_merge

    from aiida_polyhydride.workflows.active_learning import ActiveLearningWorkChain

    python = orm.load_code('python@localhost')
    defaults = {
        # iteration 1 takes every frame as a candidate; the labelled ones then calibrate the window
        'trust_window': {'lo': 0.0, 'hi': 1000.0},
        'label': {'overrides': {'kpoints_distance': 1.0, 'max_concurrent': 2}},  # as the session dataset
        'explore': {
            'overrides': {
                'max_per_system': 2,
                'max_total': 2,
                'options': {'environment_variables': {'AIIDA_POLYHYDRIDE_CACHE': str(model_cache)}},
            }
        },
        'observable': {
            'quantity': 'density',
            'system': 'CaH4_bulk',
            'temperature_K': 600.0,
            'pressure_GPa': 40.0,
            'tolerance': 1.0e-6,
        },
    }
    return ActiveLearningWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'),
        python,
        python,
        'Ca',
        pressures=[40.0],
        temperatures=[600.0],
        protocol='fast',
        overrides=recursive_merge(defaults, overrides or {}),
        training_set=qe_dataset['training'],
        validation_set=qe_dataset['validation'],
        energy_shifts=isolated_energies,
        exploration_structures={'CaH4_bulk': orm.StructureData(ase=cah4_primitive)},
    )


def _wait(node, timeout: float, until=None):
    deadline = time.monotonic() + timeout
    while not (until(node) if until else node.is_terminated):
        if time.monotonic() > deadline:
            raise RuntimeError(f'{node.process_label}<{node.pk}> did not get there in {timeout} s')
        time.sleep(1.0)


@pytest.fixture(scope='module')
def loop_run(qe_dataset, isolated_energies, tiny_committee, cah4_primitive, model_cache, daemon_client):
    """Two iterations from the session dataset; the daemon is stopped and restarted during iteration 1's training."""
    from aiida.engine import submit

    builder = _loop_builder(qe_dataset, isolated_energies, cah4_primitive, model_cache)
    if not daemon_client.is_daemon_running:
        daemon_client.start_daemon()
    node = submit(builder)

    def training_running(node):
        """True once every member of iteration 1 is a job in the scheduler: the restart hits a running iteration."""
        committees = [child for child in node.called if child.process_label == 'CommitteeWorkChain']
        members = [calc for committee in committees for calc in committee.called]
        return node.is_terminated or (members and all(calc.get_job_id() is not None for calc in members))

    _wait(node, 600, training_running)
    daemon_client.stop_daemon(wait=True, timeout=180)  # generous: workers finish their current step first
    try:
        assert not node.is_terminated
        _repair_lost_tasks()
    finally:  # the other modules' tests need the daemon whatever happened here
        daemon_client.start_daemon(timeout=180)
    _wait(node, 1500)
    return node


def _repair_lost_tasks() -> None:
    """What ``verdi process repair`` does, should a broker task have been lost with the stopped worker. The session
    profile's task queue is durable (conftest: not AiiDA's test mode, whose queue went with the daemon), so a measured
    restart lost none; this is the user's remedy if one is, not the mechanism the restart relies on."""
    from aiida.engine.processes.control import get_active_processes, get_process_tasks
    from aiida.manage import get_manager

    manager = get_manager()
    lost = set(get_active_processes(project='id')) - set(get_process_tasks(manager.get_broker()))
    for pk in sorted(lost):
        manager.get_process_controller().continue_process(pk)


def _called(node, label: str):
    return node.base.links.get_outgoing(link_label_filter=label).one().node


def test_two_iterations_grow_the_dataset_and_warm_start(loop_run):
    from aiida.cmdline.utils.common import get_workchain_report

    from aiida_polyhydride.workflows.active_learning import ActiveLearningWorkChain

    node = loop_run
    report = get_workchain_report(node, 'REPORT')
    assert node.exit_status == ActiveLearningWorkChain.exit_codes.ERROR_MAX_ITERATIONS.status, report
    history = node.outputs.history['iterations']
    assert [record['iteration'] for record in history] == [1, 2]

    # the dataset grew by the labels of iteration 1 (no labelling after the last iteration)
    added = history[0]['labels_added']
    assert added >= 1
    assert history[0]['labels_failed'] == 0
    assert history[1]['n_training'] + history[1]['n_validation'] == 8 + added
    assert len(node.outputs.training_set) + len(node.outputs.validation_set) == 8 + added
    labelled = {frame.info['label_uuid'] for frame in node.outputs.training_set.to_ase()}
    labelled |= {frame.info['label_uuid'] for frame in node.outputs.validation_set.to_ase()}
    new_labels = _called(node, 'label_1').outputs.dataset
    assert {frame.info['label_uuid'] for frame in new_labels.to_ase()} <= labelled

    # the second committee fine-tuned the first one's members
    first = _called(node, 'train_1').outputs.models
    second = _called(node, 'train_2')
    assert {model.uuid for model in second.inputs.parent_models.values()} == {model.uuid for model in first.values()}
    assert {model.uuid for model in node.outputs.models.values()} == {
        model.uuid for model in second.outputs.models.values()
    }

    # ratios, errors, thresholds reported and recorded every iteration
    for record in history:
        assert set(record['ratios']) == {'CaH4_bulk'}
        assert record['validation_forces_rmse'] > 0
        assert record['observable'] > 0.5  # CaH4 density, g/cm^3
    assert report.count('accurate/candidate/failed') == 2
    assert report.count('validation force RMSE') == 2
    assert 'trust window' in report


def test_the_window_is_calibrated_from_the_new_labels(loop_run):
    node = loop_run
    history = node.outputs.history['iterations']
    (calibration,) = [child for child in node.called if child.process_label == 'calibrate_window']  # one labelled batch
    window = calibration.outputs.result
    assert len(window['sigma_f']) == history[0]['labels_added']
    assert all(error > 0 for error in window['true_error'])  # a tiny model is never exact
    assert window['calibrated']  # min_frames of the fast protocol is 2
    assert history[1]['lo'] == pytest.approx(window['lo'])  # iteration 2 explored with it
    assert node.outputs.trust_window.uuid == window.uuid
    assert history[0]['lo'] == 0.0


def test_plots_and_report_of_the_loop(loop_run):
    plots = loop_run.outputs.plots
    assert set(plots) == {'history', 'force_parity'}
    for plot in plots.values():
        assert plot.get_content(mode='rb').startswith(PNG_MAGIC)


def test_production_takes_committee_templates_and_window_from_the_loop(loop_run):
    from aiida import orm

    from aiida_polyhydride.workflows.surface_melting import SurfaceMeltingWorkChain

    builder = SurfaceMeltingWorkChain.get_builder_from_protocol(
        orm.load_code('python@localhost'), None, 'Ca', protocol='fast', active_learning=loop_run
    )
    outputs = loop_run.outputs
    assert {key: model.uuid for key, model in builder.models.items()} == {
        key: model.uuid for key, model in outputs.models.items()
    }
    assert builder.relabel_on_uncertainty.value is True
    for key in ('training_set', 'validation_set', 'energy_shifts'):
        assert builder[key].uuid == outputs[key].uuid
    assert builder.label.pw_base.pw.code.uuid == loop_run.inputs.label.pw_base.pw.code.uuid
    assert builder.train.train.hyperparameters.uuid == loop_run.inputs.train.train.hyperparameters.uuid
    # the loop's (calibrated) trust window decides which production frames are uncertain
    assert builder.analysis['sigma_f_lo'] == outputs.trust_window['lo']
    assert builder.relabel['hi'] == outputs.trust_window['hi']


def test_tutorial_surface_melting_input_uses_the_loop(loop_run, session_shell, aiida_profile):
    from pathlib import Path

    inputs = Path(__file__).parents[1] / 'docs' / 'tutorials' / 'inputs' / 'cah2-h2-melting.yaml'
    result = session_shell.cli(
        'launch', 'surface-melting', '-p', aiida_profile.name, '-i', str(inputs),
        '--set', f'active_learning={{node: {loop_run.pk}}}', '--dry-run',
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Valid; nothing submitted (--dry-run).' in result.stdout


def test_status_shows_the_loop_state(loop_run, session_shell, aiida_profile):
    result = session_shell.cli('status', str(loop_run.pk), '-p', aiida_profile.name)
    assert result.returncode == 0, result.stderr
    outputs = loop_run.outputs
    window = outputs.trust_window
    assert (
        f'latest state (iteration 2): dataset {len(outputs.training_set)} training + {len(outputs.validation_set)} '
        f'validation frames, committee of 2, trust window [{window["lo"]:.3f}, {window["hi"]:.3f}) eV/A'
    ) in result.stdout
    assert 'iteration 2 of at most 2' in result.stdout


def test_continue_from_parent_until_converged(loop_run, qe_dataset, isolated_energies, run_in_daemon):
    from aiida import orm

    from aiida_polyhydride.workflows.active_learning import ActiveLearningWorkChain

    builder = ActiveLearningWorkChain.get_builder_from_parent(
        loop_run, max_iterations=orm.Int(1), convergence=orm.Dict({'accurate_ratio': 0.95, 'consecutive': 1})
    )
    assert builder.parent.training_set.uuid == loop_run.outputs.training_set.uuid
    # a window that trusts everything: the first exploration converges
    builder.parent.trust_window = orm.Dict({'lo': 1.0e3, 'hi': 2.0e3})
    builder.pop('observable')  # one generation cannot settle an observable
    node = run_in_daemon(builder, timeout=900)
    assert node.is_finished_ok, node.exit_message
    (committee,) = [child for child in node.called if child.process_label == 'CommitteeWorkChain']
    parents = {model.uuid for model in committee.inputs.parent_models.values()}
    assert parents == {model.uuid for model in loop_run.outputs.models.values()}
    assert committee.inputs.train.training_set.uuid == loop_run.outputs.training_set.uuid
    assert node.outputs.history['iterations'][0]['ratios']['CaH4_bulk']['accurate'] == 1.0


def test_bad_inputs_are_refused_with_a_clear_message(qe_dataset, isolated_energies, cah4_primitive, model_cache):
    from aiida import orm
    from aiida.engine import run

    from aiida_polyhydride.workflows.active_learning import ActiveLearningWorkChain, seed_frames

    def refused(builder, match):
        with pytest.raises(ValueError, match=match):
            run(builder)

    builder = _loop_builder(qe_dataset, isolated_energies, cah4_primitive, model_cache)
    builder.metal = orm.Str('Xx')
    refused(builder, "metal: 'Xx' is not a metal")
    builder = _loop_builder(qe_dataset, isolated_energies, cah4_primitive, model_cache)
    builder.temperatures = orm.List([600.0, -10.0])
    refused(builder, 'temperatures: give positive')
    builder = _loop_builder(qe_dataset, isolated_energies, cah4_primitive, model_cache, {'trust_window': {'lo': 0.5}})
    builder.trust_window = orm.Dict({**builder.trust_window.get_dict(), 'lo': 0.5, 'hi': 0.1})
    refused(builder, 'need 0 <= lo < hi')
    builder = _loop_builder(qe_dataset, isolated_energies, cah4_primitive, model_cache)
    builder.observable = orm.Dict({'quantity': 'viscosity', 'system': 'CaH4_bulk', 'temperature_K': 600})
    refused(builder, 'observable: quantity must be one of')
    with pytest.raises(ValueError, match='is not an ActiveLearningWorkChain'):
        ActiveLearningWorkChain.get_builder_from_parent(qe_dataset['training'].creator)

    seeds = seed_frames(orm.Str('Ca'), orm.List([40.0]), orm.Dict({'n_rattled': 0, 'include_interfaces': False}))
    assert not seeds.is_labelled
    assert {frame.info['origin_builder'] for frame in seeds.to_ase()} == {'seeds'}


def test_calibration_and_dataset_growth_on_constructed_frames():
    """The calcfunctions pair labels with their candidates, measure the true error and grow the sets."""
    import numpy as np
    from aiida import orm
    from ase.build import bulk

    from aiida_polyhydride.analysis.frames import frame_hash, label_frame
    from aiida_polyhydride.data import TrainingSetData
    from aiida_polyhydride.workflows.active_learning import calibrate_window, grow_dataset, learning_history

    candidates, labels = [], []
    for index in range(6):
        frame = bulk('CaH', 'rocksalt', a=4.4 + 0.05 * index)
        frame.arrays['model_forces'] = np.zeros((2, 3))
        frame.info.update({'sigma_f': 0.02 * (index + 1), 'candidate_index': index})
        candidates.append(frame)
        if index != 2:  # frame 2 failed to label
            true_forces = np.array([[0.0, 0.0, 0.04 * (index + 1)], [0.0, 0.0, 0.0]])  # error = 2 sigma_F
            labels.append(label_frame(frame.copy(), energy=-1.0, forces=true_forces, stress=np.zeros(6),
                                      info={'candidate_index': index}))  # fmt: skip
    candidates, labels = TrainingSetData(candidates, labelled=False), TrainingSetData(labels)
    settings = {'lo': 0.05, 'hi': 0.25, 'target_force_error': 0.1, 'hi_over_lo': 4.0, 'min_frames': 3, 'quantile': 0.9}
    window = calibrate_window(candidates, labels, orm.Dict(settings))
    assert window['sigma_f'] == pytest.approx([0.02, 0.04, 0.08, 0.10, 0.12])
    assert window['true_error'] == pytest.approx([0.04, 0.08, 0.16, 0.20, 0.24])
    assert window['calibrated']
    assert window['lo'] == pytest.approx(0.05)  # target 0.1 / ratio 2
    assert window['hi'] == pytest.approx(0.2)

    start = {'training': TrainingSetData(labels.to_ase()[:2]), 'validation': TrainingSetData(labels.to_ase()[2:3])}
    grown = grow_dataset(start['training'], start['validation'], labels, orm.Dict({'validation_fraction': 0.4,
                                                                                     'seed': 1}))  # fmt: skip
    # 5 labels, 3 already present: the 2 new ones are split 0.4 -> 1 to validation; nothing duplicated or lost
    assert (len(grown['training_set']), len(grown['validation_set'])) == (3, 2)
    hashes = [frame_hash(frame) for name in ('training_set', 'validation_set') for frame in grown[name].to_ase()]
    assert sorted(hashes) == sorted(frame_hash(frame) for frame in labels.to_ase())
    history = learning_history(
        training_1=start['training'], validation_1=start['validation'], labels_1=labels, calibration_1=window,
        window_1=orm.Dict(settings), failed_1=orm.Dict({'frame_00002': {'exit_status': 400}}),
    )  # fmt: skip
    (record,) = history['iterations']
    assert record == {
        'iteration': 1, 'n_training': 2, 'n_validation': 1, 'lo': 0.05, 'hi': 0.25, 'labels_added': 5,
        'labels_failed': 1, 'calibrated': True, 'calibrated_lo': pytest.approx(0.05),
        'calibrated_hi': pytest.approx(0.2),
    }  # fmt: skip


def test_launch_continues_a_run_with_changed_inputs(loop_run, session_shell, aiida_profile):
    """`launch active-learning --parent PK --set ...`: the user's path when an allocation ended."""
    result = session_shell.cli(
        'launch', 'active-learning', '-p', aiida_profile.name, '--parent', str(loop_run.pk),
        '--set', 'max_iterations=5', '--set', 'trust_window.target_force_error=0.08',
        '--set', 'explore.max_concurrent=1', '--dry-run',
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Valid; nothing submitted (--dry-run).' in result.stdout
    builder_state = session_shell.python_json(
        'import json\n'
        'from aiida import load_profile\n'
        f"load_profile('{aiida_profile.name}')\n"
        'from aiida_polyhydride.cli.launch import builder_from_parent\n'
        f"builder = builder_from_parent('polyhydride.active_learning', {loop_run.pk}, "
        "('max_iterations=5', 'trust_window.target_force_error=0.08', 'explore.max_concurrent=1'))\n"
        'print(json.dumps({"max_iterations": builder.max_iterations.value, "window": builder.trust_window.get_dict(),'
        ' "explore": builder.explore.max_concurrent.value, "training": builder.parent.training_set.uuid}))'
    )
    assert builder_state['max_iterations'] == 5
    assert builder_state['explore'] == 1
    assert builder_state['window']['target_force_error'] == 0.08
    assert builder_state['window']['lo'] == loop_run.inputs.trust_window['lo']  # the other entries kept
    assert builder_state['training'] == loop_run.outputs.training_set.uuid

    refusals = [
        (['--protocol', 'fast'], '--parent continues a run with its own inputs; drop --protocol'),
        (['--set', 'max_iteration=5'], "--set max_iteration: the workflow has no input 'max_iteration'"),
        (['--set', 'explore.nosuch=1'], "--set explore.nosuch: explore has no input 'nosuch'"),
        (['--set', 'max_iterations=many'], "--set max_iterations: 'many' is not a valid Int"),
    ]
    for args, message in refusals:
        refused = session_shell.cli(
            'launch', 'active-learning', '-p', aiida_profile.name, '--parent', str(loop_run.pk), *args, '--dry-run'
        )
        assert refused.returncode != 0
        assert message in refused.stderr, refused.stderr
        assert 'Traceback' not in refused.stderr
    not_a_loop = session_shell.cli(
        'launch', 'active-learning', '-p', aiida_profile.name, '--parent',
        str(loop_run.outputs.training_set.pk), '--dry-run',
    )  # fmt: skip
    assert 'is not an ActiveLearningWorkChain' in not_a_loop.stderr, not_a_loop.stderr


def test_archive_of_a_run_continues_in_a_fresh_profile(loop_run, session_shell, aiida_profile, user_shell, tmp_path):
    """The campaign's path between sessions or machines: archive the run, import it elsewhere, continue it."""
    archive = tmp_path / 'loop.aiida'
    created = session_shell.verdi(
        '-p', aiida_profile.name, 'archive', 'create', '-N', str(loop_run.pk), '--', str(archive)
    )
    assert created.returncode == 0, created.stderr
    setup = user_shell.verdi(
        'profile', 'setup', 'core.sqlite_dos', '-n', '--profile-name', 'fresh', '--email', 'fresh@localhost',
        '--first-name', 'A', '--last-name', 'User', '--institution', 'Lab', '--broker', 'none',
    )  # fmt: skip
    assert setup.returncode == 0, setup.stdout + setup.stderr
    imported = user_shell.verdi('-p', 'fresh', 'archive', 'import', str(archive))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    state = user_shell.python_json(
        'import json\n'
        "from aiida import load_profile, orm\nload_profile('fresh')\n"
        'from aiida_polyhydride.cli.launch import builder_from_parent\n'
        f"builder = builder_from_parent('polyhydride.active_learning', '{loop_run.uuid}', ('max_iterations=1',))\n"
        'print(json.dumps({"training": builder.parent.training_set.uuid,'
        ' "models": sorted(model.uuid for model in builder.parent.models.values()),'
        ' "pw": builder.label.pw_base.pw.code.full_label}))'
    )
    assert state['training'] == loop_run.outputs.training_set.uuid
    assert state['models'] == sorted(model.uuid for model in loop_run.outputs.models.values())
    assert state['pw'] == loop_run.inputs.label.pw_base.pw.code.full_label
    dry_run = user_shell.cli('launch', 'active-learning', '-p', 'fresh', '--parent', loop_run.uuid, '--dry-run')
    assert dry_run.returncode == 0, dry_run.stdout + dry_run.stderr


def test_release_of_the_loop_is_checked_and_imported(
    loop_run, run_in_daemon, session_shell, aiida_profile, user_shell, model_cache, tmp_path
):
    """`potentials release` writes the committee, datasets, per-system test errors and archive with their hashes;
    `potentials import` refuses a changed file and imports the release once (models only, or the archive)."""
    import json

    from aiida import orm
    from ase.build import bulk

    from aiida_polyhydride.data import TrainingSetData
    from aiida_polyhydride.structures import rattle
    from aiida_polyhydride.workflows.label import LabelWorkChain

    # two frames the loop never saw, labelled as its labels were: the test set
    frames = [rattle(bulk('CaH', 'rocksalt', a=a), stdev=0.1, seed=40 + i) for i, a in enumerate((4.35, 4.55))]
    for frame in frames:
        frame.info['origin_system'] = 'CaH_rocksalt'
    builder = LabelWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'),
        TrainingSetData(frames, labelled=False).store(),
        protocol='fast',
        overrides={'kpoints_distance': 1.0, 'max_concurrent': 2},
    )
    test_set = run_in_daemon(builder).outputs.dataset
    root = tmp_path / 'potentials'
    released = session_shell.cli(
        'potentials', 'release', str(loop_run.pk), '--name', 'ca-h-test', '--version', 'v0', '--test-set',
        str(test_set.pk), '--to', str(root), '--notes', 'A test release.', '-p', aiida_profile.name,
        env={'AIIDA_POLYHYDRIDE_CACHE': str(model_cache)},  # the models the loop's MD compiled
    )  # fmt: skip
    assert released.returncode == 0, released.stdout + released.stderr
    folder = root / 'ca-h-test' / 'v0'
    manifest = json.loads((folder / 'release.json').read_text())
    members = sorted(loop_run.outputs.models)
    assert sorted(manifest['models']) == members
    assert all((folder / 'models' / f'{key}.nequip.zip').is_file() for key in members)
    assert manifest['datasets']['training_set']['n_frames'] == len(loop_run.outputs.training_set)
    assert manifest['datasets']['test_set']['n_frames'] == 2
    assert (folder / 'provenance.aiida').stat().st_size > 0
    errors = orm.load_node(manifest['errors']['test_set']['member_0']['uuid'])
    assert errors.creator.process_label == 'potential_errors'
    assert set(errors['systems']) == {'CaH_rocksalt'} and errors['all']['n_frames'] == 2
    assert errors['all']['forces_rmse_meV_per_A'] > 0
    card = (folder / 'MODEL_CARD.md').read_text()
    assert 'A test release.' in card and '| CaH_rocksalt | 2 |' in card

    # a frame of the training set is not a test set
    reused = session_shell.cli(
        'potentials', 'release', str(loop_run.pk), '--name', 'ca-h-test', '--version', 'v1', '--test-set',
        str(loop_run.outputs.validation_set.pk), '--to', str(root), '-p', aiida_profile.name,
    )  # fmt: skip
    assert reused.returncode != 0 and 'not a test set' in reused.stderr, reused.stderr

    # a changed file is refused, naming it
    tampered = tmp_path / 'tampered'
    tampered.mkdir()
    for path in folder.iterdir():
        target = tampered / path.name
        if path.is_dir():
            target.mkdir()
            for child in path.iterdir():
                (target / child.name).write_bytes(child.read_bytes())
        else:
            target.write_bytes(path.read_bytes())
    with open(tampered / 'models' / 'member_0.nequip.zip', 'ab') as handle:
        handle.write(b'\0')
    refused = session_shell.cli('potentials', 'import', str(tampered), '--models-only', '-p', aiida_profile.name)
    assert refused.returncode != 0, refused.stdout
    assert 'member_0.nequip.zip: does not match the sha256' in refused.stderr, refused.stderr
    assert 'Traceback' not in refused.stderr

    found = session_shell.cli('potentials', 'list', env={'POLYHYDRIDE_POTENTIALS': str(root)})
    assert 'ca-h-test v0: 2 models of Ca/H' in found.stdout, found.stdout + found.stderr
    imported = session_shell.cli(
        'potentials', 'import', 'ca-h-test', '--models-only', '-p', aiida_profile.name,
        env={'POLYHYDRIDE_POTENTIALS': str(root)},
    )  # fmt: skip
    assert imported.returncode == 0, imported.stdout + imported.stderr
    group = orm.load_group('potentials/ca-h-test/v0')
    models = {node.sha256 for node in group.nodes if node.node_type.endswith('AllegroPotentialData.')}
    assert models == {loop_run.outputs.models[key].sha256 for key in members}
    again = session_shell.cli('potentials', 'import', str(folder), '-p', aiida_profile.name)
    assert again.returncode == 0 and group.count() == len(members) + 3, again.stdout + again.stderr

    # with its archive, in a fresh profile: the run's own nodes, same UUIDs
    setup = user_shell.verdi(
        'profile', 'setup', 'core.sqlite_dos', '-n', '--profile-name', 'fresh', '--email', 'fresh@localhost',
        '--first-name', 'A', '--last-name', 'User', '--institution', 'Lab', '--broker', 'none',
    )  # fmt: skip
    assert setup.returncode == 0, setup.stdout + setup.stderr
    fresh = user_shell.cli('potentials', 'import', str(folder), '-p', 'fresh')
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert loop_run.outputs.models['member_0'].uuid in fresh.stdout
    assert loop_run.outputs.training_set.uuid in fresh.stdout
