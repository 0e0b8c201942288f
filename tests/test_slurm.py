"""pw.x through this machine's single-node SLURM: the computer comes from the YAML template through the real CLI.

Needs a running SLURM node `localhost` with partition `debug`: `make test` starts it (.ci/slurm.sh). Also
``aiida-polyhydride setup computer``'s validation of bad descriptions, as a user runs it (a subprocess, its own
AIIDA_PATH), and of the cluster example, without connecting to it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

COMPUTERS = Path(__file__).resolve().parents[1] / 'workflows' / 'computers'
LOCALHOST_SLURM = COMPUTERS / 'localhost-slurm.yaml'
CLUSTER_EXAMPLE = COMPUTERS / 'cluster-example.yaml'
SLURM_LABEL = 'localhost-slurm'
CLI = str(Path(sys.executable).with_name('aiida-polyhydride'))


@pytest.fixture
def user_environment(tmp_path):
    """Environment of a user whose AiiDA config lives in ``tmp_path`` (never the test session's)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith('AIIDA')}
    environment['AIIDA_PATH'] = str(tmp_path)
    return environment


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def report(node) -> str:
    """The work chain's report and its CalcJobs' exit statuses, for assertion messages."""
    from aiida import orm
    from aiida.cmdline.utils.common import get_workchain_report

    calcjobs = [f'{c.pk}: {c.exit_status} {c.exit_message}' for c in node.called if isinstance(c, orm.CalcJobNode)]
    return '\n'.join([get_workchain_report(node, 'REPORT'), *calcjobs])


def squeue_state(job_id: str) -> str:
    """SLURM state of ``job_id`` (RUNNING, PENDING, ...) or '' once it left the queue."""
    result = subprocess.run(
        ['squeue', '--noheader', '--jobs', job_id, '--format', '%T'], capture_output=True, text=True, check=False
    )
    return result.stdout.strip()


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f'{what}: not within {timeout} s')


@pytest.fixture(scope='module')
def slurm_setup(localhost_setup, aiida_profile):
    """`aiida-polyhydride setup computer localhost-slurm.yaml` in the session profile, run twice."""
    from click.testing import CliRunner

    from aiida_polyhydride.cli import cli

    if shutil.which('sinfo') is None or 'idle' not in subprocess.run(
        ['sinfo', '--noheader', '--Node', '--format=%T'], capture_output=True, text=True, check=False
    ).stdout.replace('mixed', 'idle'):
        pytest.fail('no idle SLURM node on this machine: start one with `make services` (.ci/slurm.sh)')
    arguments = ['setup', 'computer', '-p', aiida_profile.name, str(LOCALHOST_SLURM)]
    first = CliRunner().invoke(cli, arguments)
    second = CliRunner().invoke(cli, arguments)
    return first, second


def test_setup_computer_from_yaml_is_idempotent(slurm_setup):
    from aiida import orm

    first, second = slurm_setup
    assert first.exit_code == 0, first.output
    assert f'computer: created: {SLURM_LABEL} (localhost, core.local, core.slurm, queue_name debug)' in first.output
    assert f'code: created: pw@{SLURM_LABEL} -> ' in first.output
    assert second.exit_code == 0, second.output
    assert 'Nothing changed' in second.output
    assert 'created' not in second.output

    computer = orm.load_computer(SLURM_LABEL)
    assert (computer.transport_type, computer.scheduler_type) == ('core.local', 'core.slurm')
    assert computer.is_configured
    assert computer.get_configuration() == {'safe_interval': 0.0, 'use_login_shell': False}
    assert computer.get_minimum_job_poll_interval() == 1.0
    assert computer.get_mpirun_command()[:3] == ['mpirun', '--allow-run-as-root', '--oversubscribe']
    assert 'export OMP_NUM_THREADS=1' in computer.get_prepend_text()
    code = orm.load_code(f'pw@{SLURM_LABEL}')
    assert code.default_calc_job_plugin == 'quantumespresso.pw'
    assert code.filepath_executable == Path(shutil.which('pw.x'))


@pytest.mark.parametrize('label', ['localhost', SLURM_LABEL])
def test_mpi_ranks_are_not_pinned_to_one_core(label, slurm_setup):
    """Jobs side by side on one machine must not share a core: Open MPI pins rank 0 of every mpirun to core 0 unless
    told otherwise, and neither the direct scheduler nor SLURM's task/none gives a job its own CPU set."""
    from aiida import orm

    mpirun = [part.format(tot_num_mpiprocs=1) for part in orm.load_computer(label).get_mpirun_command()]
    probe = [sys.executable, '-c', 'import os; print(len(os.sched_getaffinity(0)))']
    result = subprocess.run(mpirun + probe, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) == len(os.sched_getaffinity(0))


def test_pw_singlepoint_through_slurm(slurm_setup, submit_and_await, cah4_primitive):
    from aiida import orm

    from aiida_polyhydride.workflows.pw import get_singlepoint_builder

    structure = orm.StructureData(ase=cah4_primitive)
    builder = get_singlepoint_builder(
        orm.load_code(f'pw@{SLURM_LABEL}'),
        structure,
        cutoff_scale=2 / 3,  # 30/240 Ry: enough for a smoke test
        overrides={'kpoints_distance': 0.6, 'clean_workdir': True},
    )
    node = submit_and_await(builder, timeout=600)

    assert node.is_finished_ok, f'{node.exit_status}: {node.exit_message}'
    calculations = [child for child in node.called if isinstance(child, orm.CalcJobNode)]
    assert len(calculations) == 1, report(node)
    calculation = calculations[0]
    assert calculation.is_finished_ok
    assert calculation.computer.label == SLURM_LABEL
    assert calculation.computer.scheduler_type == 'core.slurm'
    assert calculation.get_option('queue_name') == 'debug'  # the computer's default from the YAML file
    job_id = calculation.get_job_id()
    assert job_id is not None and job_id.isdigit(), job_id
    assert calculation.get_scheduler_state().value == 'done'
    forces = node.outputs.output_trajectory.get_array('forces')[-1]
    assert forces.shape == (5, 3)
    assert np.allclose(forces.sum(axis=0), 0.0, atol=1e-2)  # Newton's third law in a periodic cell


def test_scancel_of_a_running_job(slurm_setup, started_daemon_client, cah4_primitive):
    """A job cancelled in SLURM while pw.x runs: the CalcJob fails, the work chain stops with a clear exit status."""
    from aiida import orm
    from aiida.engine import ProcessState, submit
    from aiida_quantumespresso.calculations.pw import PwCalculation
    from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

    from aiida_polyhydride.workflows.pw import get_singlepoint_builder

    # A k mesh dense enough that pw.x runs for minutes: the job is still running when it is cancelled.
    builder = get_singlepoint_builder(
        orm.load_code(f'pw@{SLURM_LABEL}'),
        orm.StructureData(ase=cah4_primitive),
        cutoff_scale=2 / 3,  # 30/240 Ry: enough for a smoke test
        overrides={'kpoints_distance': 0.15, 'clean_workdir': True},
    )
    node = submit(builder)

    def first_calcjob():
        return next((child for child in node.called if isinstance(child, orm.CalcJobNode)), None)

    calculation = wait_for(first_calcjob, 120, 'PwCalculation launched')
    job_id = wait_for(calculation.get_job_id, 120, 'job id recorded')
    wait_for(lambda: squeue_state(job_id) == 'RUNNING', 120, f'SLURM job {job_id} running')
    time.sleep(3)  # let pw.x get going inside the job
    assert squeue_state(job_id) == 'RUNNING'
    subprocess.run(['scancel', job_id], check=True)

    wait_for(lambda: node.is_terminated, 300, f'PwBaseWorkChain<{node.pk}> terminated after scancel')

    assert node.process_state == ProcessState.FINISHED  # neither excepted nor killed
    assert calculation.process_state == ProcessState.FINISHED
    calcjobs = [child.pk for child in node.called if isinstance(child, orm.CalcJobNode)]
    assert calcjobs == [calculation.pk]  # no restart
    stderr = calculation.outputs.retrieved.base.repository.get_object_content('_scheduler-stderr.txt')
    assert f'JOB {job_id} ON localhost CANCELLED AT' in stderr
    assert calculation.exit_status == PwCalculation.exit_codes.ERROR_OUTPUT_FILES.status, (
        calculation.exit_status,
        calculation.exit_message,
    )
    assert node.exit_status == PwBaseWorkChain.exit_codes.ERROR_UNHANDLED_FAILURE.status, (
        node.exit_status,
        node.exit_message,
    )
    assert squeue_state(job_id) == ''


def cancel_running_job(calculation, ready, what: str, timeout: float = 300) -> str:
    """scancel the SLURM job of ``calculation`` once it runs and ``ready(remote workdir)`` holds (within ``timeout``
    seconds); returns the job id."""
    job_id = wait_for(calculation.get_job_id, 180, f'{calculation.process_label}<{calculation.pk}> job id recorded')
    wait_for(lambda: squeue_state(job_id) == 'RUNNING', 180, f'SLURM job {job_id} running')
    workdir = Path(calculation.get_remote_workdir())
    wait_for(lambda: ready(workdir), timeout, f'SLURM job {job_id}: {what}')
    assert squeue_state(job_id) == 'RUNNING'
    subprocess.run(['scancel', job_id], check=True)
    return job_id


def assert_cancelled(calculation, job_id: str) -> None:
    """The job was cancelled by SLURM (scheduler stderr) and the CalcJob finished: neither excepted nor killed."""
    from aiida.engine import ProcessState

    assert calculation.process_state == ProcessState.FINISHED, calculation.process_state
    stderr = calculation.outputs.retrieved.base.repository.get_object_content('_scheduler-stderr.txt')
    assert f'JOB {job_id} ON localhost CANCELLED AT' in stderr
    assert squeue_state(job_id) == ''


def test_training_through_slurm_cancelled_then_resumed(
    slurm_setup, started_daemon_client, run_in_daemon, qe_dataset, isolated_energies
):
    """A committee member trains through SLURM with the protocol's job options; scancel while it trains ends it with
    ERROR_INTERRUPTED, the learning curve so far as output and the checkpoint in its remote folder; a resubmission
    from that folder continues the same training and finishes OK through SLURM."""
    from aiida import orm
    from aiida.engine import submit

    from aiida_polyhydride.calculations.allegro_train import AllegroTrainCalculation
    from aiida_polyhydride.workflows.train import CommitteeWorkChain

    builder = CommitteeWorkChain.get_builder_from_protocol(
        orm.load_code(f'python@{SLURM_LABEL}'),
        qe_dataset['training'],
        isolated_energies,
        qe_dataset['validation'],
        protocol='tiny',
        # far more epochs than it gets: the job is still training when it is cancelled
        overrides={'committee_size': 1, 'hyperparameters': {'max_epochs': 100000}},
    )
    node = submit(builder)
    calculation = wait_for(lambda: next(iter(node.called), None), 120, 'AllegroTrainCalculation launched')
    assert calculation.get_option('queue_name') == 'debug'  # the computer's default partition
    assert not calculation.get_option('custom_scheduler_commands')  # the tiny preset trains on CPU: no gres

    # cancelled once an epoch is checkpointed
    job_id = cancel_running_job(
        calculation, lambda workdir: (workdir / 'checkpoints' / 'last.ckpt').is_file(), 'first checkpoint written'
    )
    wait_for(lambda: node.is_terminated, 300, f'CommitteeWorkChain<{node.pk}> terminated after scancel')
    assert_cancelled(calculation, job_id)
    assert calculation.exit_status == AllegroTrainCalculation.exit_codes.ERROR_INTERRUPTED.status, report(node)
    assert 'model' not in calculation.outputs
    epochs_before = calculation.outputs.learning_curve.get_array('epoch')
    assert len(epochs_before) >= 1
    remote = Path(calculation.outputs.remote_folder.get_remote_path())
    assert (remote / 'checkpoints' / 'last.ckpt').is_file()
    assert node.exit_status == CommitteeWorkChain.exit_codes.ERROR_ALL_MEMBERS_FAILED.status, report(node)

    restart = calculation.get_builder_restart()
    restart.parent_folder = calculation.outputs.remote_folder
    restart.hyperparameters = orm.Dict(
        {**calculation.inputs.hyperparameters.get_dict(), 'max_epochs': int(epochs_before[-1]) + 2}
    )
    resumed = run_in_daemon(restart, timeout=600)
    assert resumed.is_finished_ok, f'{resumed.exit_status}: {resumed.exit_message}'
    assert resumed.computer.label == SLURM_LABEL
    assert resumed.get_scheduler_state().value == 'done'
    assert '"resumed": true' in resumed.outputs.retrieved.base.repository.get_object_content('result.json')
    assert resumed.outputs.model.type_names == ['Ca', 'H']
    epochs = resumed.outputs.learning_curve.get_array('epoch')
    assert epochs[-1] == epochs_before[-1] + 1  # one more epoch than before the cancel, none lost or repeated
    assert list(epochs) == sorted(set(epochs))


def test_md_through_slurm_cancelled_then_continued(
    slurm_setup, started_daemon_client, run_in_daemon, tiny_committee, cah4_primitive, model_cache
):
    """MD through SLURM: scancel while it runs makes the runner checkpoint (SIGTERM, then SLURM's KillWait) and the
    CalcJob ends with ERROR_INTERRUPTED and the trajectory so far; continued from its remote folder it finishes OK."""
    from aiida import orm
    from aiida.engine import submit

    from aiida_polyhydride.calculations.md import MDCalculation

    structure = orm.StructureData(ase=cah4_primitive * (2, 2, 1))

    def md_builder(parameters: dict):
        builder = MDCalculation.get_builder()
        builder.code = orm.load_code(f'python@{SLURM_LABEL}')
        builder.structure = structure
        builder.models = dict(tiny_committee.outputs.models)
        builder.parameters = orm.Dict(parameters)
        builder.metadata.options.environment_variables = {'AIIDA_POLYHYDRIDE_CACHE': str(model_cache)}
        builder.metadata.options.max_wallclock_seconds = 3600  # beyond the wait below: SLURM must not end it first
        return builder

    # far more steps than it gets: the job is still running when it is cancelled
    parameters = {'ensemble': 'nvt', 'temperature_K': 1000, 'timestep_fs': 0.5, 'n_steps': 10_000_000, 'dump_every': 10}
    calculation = submit(md_builder(parameters))

    # cancelled once the MD steps (a checkpoint exists); the job first compiles the models unless an earlier MD test
    # of the session left them in model_cache, minutes on a busy machine
    job_id = cancel_running_job(
        calculation, lambda workdir: (workdir / 'checkpoint.json').is_file(), 'MD stepping', timeout=1500
    )
    wait_for(lambda: calculation.is_terminated, 300, f'MDCalculation<{calculation.pk}> terminated after scancel')
    assert_cancelled(calculation, job_id)
    assert calculation.exit_status == MDCalculation.exit_codes.ERROR_INTERRUPTED.status, calculation.exit_message
    assert 'SIGTERM' in calculation.outputs.result['reason']
    steps_done = calculation.outputs.result['n_steps_done']
    assert 0 < steps_done < parameters['n_steps']
    dumped = list(calculation.outputs.trajectory.get_stepids())
    assert dumped[0] == 0 and len(dumped) >= 2

    target = (steps_done // 10 + 3) * 10  # a dump step, 20 to 30 steps on
    restart = md_builder({**parameters, 'n_steps': target})
    restart.parent_folder = calculation.outputs.remote_folder
    continued = run_in_daemon(restart, timeout=600)
    assert continued.is_finished_ok, f'{continued.exit_status}: {continued.exit_message}'
    assert continued.computer.label == SLURM_LABEL
    assert continued.outputs.result['restarted_from_step'] == steps_done
    steps = list(continued.outputs.trajectory.get_stepids())
    assert steps[-1] == target
    assert steps[: len(dumped)] == dumped  # the trajectory before the cancel is kept, then continued


def signal_job_while_compiling(workdir: Path) -> tuple[dict, int]:
    """Run the MD runner in ``workdir`` with an empty model cache and SIGTERM its whole process group, as SLURM
    signals every process of a cancelled job, once it has started compiling; return result.json and its exit code."""
    import json
    import signal

    environment = {**os.environ, 'AIIDA_POLYHYDRIDE_CACHE': str(workdir / 'empty_cache')}
    with (workdir / 'md.log').open('w') as log:
        process = subprocess.Popen(
            [sys.executable, '-m', 'aiida_polyhydride.runners.md'],
            cwd=workdir, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        children = Path(f'/proc/{process.pid}/task/{process.pid}/children')
        wait_for(lambda: children.read_text().split(), 600, 'the runner started nequip-compile')
        os.killpg(process.pid, signal.SIGTERM)
        returncode = process.wait(timeout=300)
    return json.loads((workdir / 'result.json').read_text()), returncode


def test_md_cancelled_while_compiling_is_interrupted_not_an_error(tiny_committee, cah4_primitive, tmp_path):
    """A job cancelled (or out of walltime) before the MD starts: the compilation dies with the job, and the runner
    says 'interrupted' (exit 330 of MDCalculation: run it again), not an input error."""
    import json

    from aiida_polyhydride.runners.md import EXIT_CODES, FILES

    model = tiny_committee.outputs.models['member_0']
    model.export(tmp_path / 'member_0.nequip.zip')
    cah4_primitive.write(tmp_path / FILES['structure'], format='extxyz')
    parameters = {'ensemble': 'nvt', 'temperature_K': 1000, 'timestep_fs': 0.5, 'n_steps': 10}
    parameters.update(models=[{'file': 'member_0.nequip.zip', 'sha256': model.sha256}], structure=FILES['structure'])
    (tmp_path / FILES['input_json']).write_text(json.dumps(parameters))

    result, returncode = signal_job_while_compiling(tmp_path)
    assert result['status'] == 'interrupted', result
    assert result['reason'].startswith('SIGTERM received before the MD started (nequip-compile failed')
    assert result['n_steps_done'] == 0
    assert returncode == EXIT_CODES['interrupted']


@pytest.mark.parametrize(
    ('content', 'message'),
    [
        (
            'label: x\nhostname: h\ntransport: core.local\nscheduler: core.slurm\nworkdir: /tmp/x\nqueue: debug\n',
            'unknown key(s) in computer: queue (allowed: label, hostname,',
        ),
        (
            'label: x\ntransport: core.local\nscheduler: core.slurm\nworkdir: /tmp/x\n',
            'missing required key(s) in computer: hostname',
        ),
        (
            'label: x\nhostname: h\ntransport: core.local\nscheduler: core.slurmm\nworkdir: /tmp/x\n',
            "unknown scheduler 'core.slurmm': installed schedulers are core.direct,",
        ),
        (
            'label: x\nhostname: h\ntransport: core.sftp\nscheduler: core.slurm\nworkdir: /tmp/x\n',
            "unknown transport 'core.sftp'",
        ),
        (
            'label: x\nhostname: h\ntransport: core.ssh\nscheduler: core.slurm\nworkdir: /tmp/x\n'
            'configure: {user: me}\n',
            'unknown option(s) for transport core.ssh in configure: user (allowed: username,',
        ),
        (
            'label: x\nhostname: h\ntransport: core.ssh\nscheduler: core.slurm\nworkdir: /tmp/x\n'
            'codes: [{label: pw, executable: pw.x}]\n',
            "code 'pw': executable 'pw.x' must be an absolute path on the remote machine",
        ),
        (
            'label: x\nhostname: h\ntransport: core.local\nscheduler: core.slurm\nworkdir: /tmp/x\n'
            'codes: [{label: pw, executable: pw.x, default_plugin: quantumespresso.pww}]\n',
            "unknown calculation plugin 'quantumespresso.pww'",
        ),
        (
            'label: x\nhostname: h\ntransport: core.local\nscheduler: core.slurm\nworkdir: /tmp/x\n'
            'gpu: {partition: gpu}\n',
            'unknown key(s) in gpu: partition (allowed: account, queue_name, qos, gres)',
        ),
        (
            'label: x\nhostname: h\ntransport: core.local\nscheduler: core.direct\nworkdir: /tmp/x\ngpu: {gres: gpu}\n',
            'gpu: gres is a SLURM option, the scheduler is core.direct: remove it',
        ),
        ('label: [unclosed\n', 'not valid YAML (line 2)'),
    ],
    ids=[
        'unknown-key',
        'missing-hostname',
        'bad-scheduler',
        'bad-transport',
        'bad-configure',
        'relative-remote-exe',
        'bad-plugin',
        'bad-gpu-key',
        'gres-without-slurm',
        'bad-yaml',
    ],
)
def test_bad_description_gives_one_clear_line(user_environment, tmp_path, content, message):
    path = tmp_path / 'computer.yaml'
    path.write_text(content)
    result = run_cli('setup', 'computer', str(path), env=user_environment)
    assert result.returncode == 1
    assert message in result.stderr
    # aiida itself may warn first that it creates the (empty) config folder; the error is one line, the last.
    errors = [line for line in result.stderr.splitlines() if line.startswith('Error:')]
    assert errors == [result.stderr.strip().splitlines()[-1]], result.stderr
    assert errors[0].startswith(f'Error: {path}: ')
    assert 'Traceback' not in result.stderr + result.stdout


def test_missing_description_file(user_environment, tmp_path):
    missing = tmp_path / 'nowhere.yaml'
    result = run_cli('setup', 'computer', str(missing), env=user_environment)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: cannot read computer description '{missing}': No such file or directory"
    )
    assert 'Traceback' not in result.stderr


def test_setup_computer_needs_an_existing_profile(user_environment):
    result = run_cli('setup', 'computer', '-p', 'nosuch', str(LOCALHOST_SLURM), env=user_environment)
    assert result.returncode == 1
    assert "AiiDA profile 'nosuch' does not exist" in result.stderr
    assert 'Traceback' not in result.stderr


def test_cluster_example_is_valid_without_connecting(user_environment):
    from aiida_polyhydride.setup.cluster import load_description

    description = load_description(CLUSTER_EXAMPLE)
    assert (description.transport, description.scheduler) == ('core.ssh', 'core.slurm')
    assert description.job_options == {'account': 'project123', 'queue_name': 'cpu'}
    assert description.gpu_options == {'queue_name': 'gpu', 'gres': 'gpu'}
    assert description.configure['key_filename'].endswith('/.ssh/id_ed25519')
    assert [code.label for code in description.codes] == ['pw', 'python-gpu']
    assert all(code.executable.startswith('/') for code in description.codes)

    result = run_cli('setup', 'computer', '--dry-run', str(CLUSTER_EXAMPLE), env=user_environment)
    assert result.returncode == 0, result.stderr
    assert 'valid: computer my-cluster (login.my-cluster.example.org, core.ssh, core.slurm)' in result.stdout
