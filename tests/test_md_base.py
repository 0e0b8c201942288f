"""MDBaseWorkChain through the daemon with the session committee: a blow-up cured by halving the time step, one that
is not, a committee stop that is not retried, and a run stopped by SIGTERM (SLURM at walltime) continued from its
checkpoint to the requested step count."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def md_base_builder(tiny_committee, structure, model_cache, **parameters):
    # callers request compiled_committee: the members are compiled before the first job, which finds them cached
    from aiida import orm

    from aiida_polyhydride.workflows.md import MDBaseWorkChain

    builder = MDBaseWorkChain.get_builder_from_protocol(
        orm.load_code('python@localhost'),
        orm.StructureData(ase=structure),
        dict(tiny_committee.outputs.models),
        temperature_K=300,
        protocol='fast',
        overrides={'parameters': {'num_threads': 1, **parameters}},
    )
    # compiled models are machine-specific files: share them between jobs through the cache directory
    builder.md.metadata.options.environment_variables = {'AIIDA_POLYHYDRIDE_CACHE': str(model_cache)}
    return builder


def md_calculations(node):
    return sorted((child for child in node.called if child.process_label == 'MDCalculation'), key=lambda n: n.pk)


WALLTIME_STEPS, WALLTIME_DUMP = 1000, 50


@pytest.fixture(scope='module')
def restart_runs(tiny_committee, compiled_committee, cah4_primitive, model_cache, daemon_client):
    """The four restart cases submitted together (each is a chain of short single-core jobs), awaited together.

    The walltime case: SIGTERM to its first run once that has dumped a frame, as SLURM sends at the time limit.
    """
    from aiida.engine import submit

    cell = cah4_primitive * (2, 2, 1)
    cured = md_base_builder(tiny_committee, cell, model_cache, timestep_fs=8.0, n_steps=25, dump_every=5)
    cured.max_timestep_halvings = 2
    not_cured = md_base_builder(tiny_committee, cell, model_cache, timestep_fs=8.0, n_steps=25, dump_every=1)
    not_cured.max_timestep_halvings = 1
    committee_stop = md_base_builder(tiny_committee, cell, model_cache,
                                     timestep_fs=0.5, n_steps=50, dump_every=5,
                                     sigma_f_failed=1e-4, max_consecutive_failed=2)  # fmt: skip
    walltime = md_base_builder(tiny_committee, cah4_primitive * (2, 1, 1), model_cache,
                               timestep_fs=0.5, n_steps=WALLTIME_STEPS, dump_every=WALLTIME_DUMP)  # fmt: skip
    if not daemon_client.is_daemon_running:
        daemon_client.start_daemon()
    builders = {'cured': cured, 'not_cured': not_cured, 'committee_stop': committee_stop, 'walltime': walltime}
    nodes = {name: submit(builder) for name, builder in builders.items()}
    deadline, signalled = time.monotonic() + 1800, False
    while not all(node.is_terminated for node in nodes.values()) and time.monotonic() < deadline:
        signalled = signalled or _signal_first_run(nodes['walltime'])
        time.sleep(0.2)
    return {**nodes, 'signalled': signalled}


def _signal_first_run(node) -> bool:
    """SIGTERM to the runner of ``node``'s first MDCalculation once its first frame is written; True if sent."""
    calculations = md_calculations(node)
    if not calculations or not calculations[0].get_remote_workdir():
        return False
    if not Path(calculations[0].get_remote_workdir(), 'trajectory.extxyz').is_file():
        return False
    runners = _runner_processes(calculations[0])
    for process in runners:  # the first dump is written: the run is under way
        process.send_signal(signal.SIGTERM)
    return bool(runners)


def test_blowup_is_cured_by_a_shorter_time_step(restart_runs):
    """8 fs explodes within a few steps (M-H closer than 0.8 A), 4 fs within ~20, 2 fs holds: two halvings."""
    node = restart_runs['cured']
    assert node.is_finished_ok, node.exit_message
    calculations = md_calculations(node)
    assert [calc.inputs.parameters['timestep_fs'] for calc in calculations] == [8.0, 4.0, 2.0]
    assert [calc.exit_status for calc in calculations] == [320, 320, 0]
    assert {calc.outputs.result['blowup_trigger'] for calc in calculations[:2]} <= {'distance', 'nonfinite'}
    # the same simulated time (200 fs) and dump times at every time step
    assert [calc.inputs.parameters['n_steps'] for calc in calculations] == [25, 50, 100]
    times = node.outputs.trajectory.get_times()
    assert np.allclose(times, np.arange(0, 201, 40))
    assert 'parent_folder' not in calculations[-1].inputs  # a retry starts again from the structure


def test_blowup_not_cured_outputs_the_partial_trajectory(restart_runs):
    node = restart_runs['not_cured']
    assert node.exit_status == 410, node.exit_message
    assert '4.0 fs' in node.exit_message
    calculations = md_calculations(node)
    assert [calc.inputs.parameters['timestep_fs'] for calc in calculations] == [8.0, 4.0]
    assert node.outputs.result['status'] == 'blowup'
    # the frames dumped before the last attempt blew up are kept, those of the last attempt
    assert node.outputs.trajectory.uuid == calculations[-1].outputs.trajectory.uuid
    assert len(node.outputs.trajectory.get_stepids()) >= 2


def test_committee_stop_is_not_retried(restart_runs):
    """The two members always disagree by more than 1e-4 eV/A: a shorter time step would not help."""
    node = restart_runs['committee_stop']
    assert node.exit_status == 411, node.exit_message
    assert len(md_calculations(node)) == 1
    assert node.outputs.result['blowup_trigger'] == 'committee'
    assert len(node.outputs.trajectory.get_stepids()) == 2


def _runner_processes(calculation):
    """The runner process of a calculation on the core.direct scheduler (the job id is the submit script's PID)."""
    import psutil

    if not calculation.get_job_id():
        return []
    try:
        script = psutil.Process(int(calculation.get_job_id()))
        return [p for p in script.children(recursive=True) if 'aiida_polyhydride.runners.md' in ' '.join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


def test_run_stopped_at_walltime_continues_from_its_checkpoint(restart_runs):
    """SIGTERM to the running job, as SLURM sends at the time limit: checkpoint, exit 330, then a second run in a new
    folder continues from the checkpoint (parent_folder) to the requested step count, with no step twice."""
    assert restart_runs['signalled'], 'the first run never started or finished before it could be signalled'
    node = restart_runs['walltime']
    assert node.is_finished_ok, node.exit_message
    first, second = md_calculations(node)
    assert first.exit_status == 330 and first.outputs.result['status'] == 'interrupted'
    stopped_at = first.outputs.result['n_steps_done']
    assert 0 < stopped_at < WALLTIME_STEPS
    assert second.inputs.parent_folder.uuid == first.outputs.remote_folder.uuid
    result = second.outputs.result
    assert result['restarted_from_step'] == stopped_at
    assert result['n_steps_done'] == WALLTIME_STEPS and result['n_steps_this_run'] == WALLTIME_STEPS - stopped_at
    assert list(node.outputs.trajectory.get_stepids()) == list(range(0, WALLTIME_STEPS + 1, WALLTIME_DUMP))
    assert list(node.outputs.deviations.get_array('step')) == list(range(0, WALLTIME_STEPS + 1, WALLTIME_DUMP))


def test_halved_timestep_keeps_simulated_time_and_couplings():
    from aiida_polyhydride.workflows.md import halved_timestep

    parameters = {'timestep_fs': 1.0, 'n_steps': 100, 'dump_every': 10, 'pdamp_fs': 500.0, 'temperature_K': 300}
    halved = halved_timestep(parameters)
    assert halved == {**parameters, 'timestep_fs': 0.5, 'n_steps': 200, 'dump_every': 20, 'tdamp_fs': 100.0}
    assert halved_timestep({'timestep_fs': 2.0, 'n_steps': 3})['dump_every'] == 20  # the runner's default 10, doubled


def test_protocol_builder(localhost_setup, tiny_committee):
    from aiida import orm

    from aiida_polyhydride.workflows.md import MDBaseWorkChain

    structure = orm.StructureData(cell=[[3, 0, 0], [0, 3, 0], [0, 0, 3]])
    structure.append_atom(position=(0, 0, 0), symbols='Ca')
    models = dict(tiny_committee.outputs.models)
    code = orm.load_code('python@localhost')
    npt = MDBaseWorkChain.get_builder_from_protocol(code, structure, models, [300, 600], 40.0, protocol='precise')
    assert npt.md.parameters['ensemble'] == 'npt' and npt.md.parameters['pressure_GPa'] == 40.0
    assert npt.md.parameters['temperature_K'] == [300, 600] and npt.max_iterations.value == 8
    overrides = {'max_timestep_halvings': 0}
    nvt = MDBaseWorkChain.get_builder_from_protocol(code, structure, models, 300, overrides=overrides)
    assert nvt.md.parameters['ensemble'] == 'nvt' and 'pressure_GPa' not in nvt.md.parameters
    assert nvt.max_timestep_halvings.value == 0


def test_bad_restart_settings_are_named():
    from aiida import orm

    from aiida_polyhydride.workflows.md import _validate_inputs

    assert 'max_timestep_halvings' in _validate_inputs({'max_timestep_halvings': orm.Int(-1)}, None)
    assert 'walltime_fraction' in _validate_inputs({'walltime_fraction': orm.Float(1.5)}, None)
    assert _validate_inputs({'max_timestep_halvings': orm.Int(0), 'walltime_fraction': orm.Float(0.9)}, None) is None
