"""Test harness: a real PostgreSQL + RabbitMQ profile, the daemon, and the plugin's own set-up on top.

``make test`` starts PostgreSQL and RabbitMQ where they are absent (.ci/services.sh); nothing here is mocked.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ['aiida.tools.pytest_fixtures']


@pytest.fixture(scope='session', autouse=True)
def aiida_profile(aiida_config, aiida_profile_factory):
    """The session's profile: core.psql_dos on the running PostgreSQL with the RabbitMQ broker."""
    from aiida_polyhydride.setup.profile import (
        create_postgres_storage_config,
        drop_postgres_database,
        postgres_identifier,
    )

    name = f'test_{secrets.token_hex(4)}'
    storage_config = create_postgres_storage_config(name, Path(aiida_config.dirpath))
    try:
        with aiida_profile_factory(
            aiida_config,
            name=name,
            storage_backend='core.psql_dos',
            storage_config=storage_config,
            broker_backend='core.rabbitmq',
        ) as profile:
            aiida_config.set_option('warnings.rabbitmq_version', False, scope=name)
            aiida_config.set_option('daemon.timeout', 30, scope=name)  # stop/start on a loaded 2-core machine
            # The daemon runs as in production, not in AiiDA's test mode: there, a work chain awaiting its children
            # re-queries their state in a busy loop (poll interval 0: two thirds of the worker's CPU, a core taken
            # from pw.x and MD on this 2-core machine) and the broker's task queue is deleted when the daemon stops.
            # Production waits on state-change broadcasts; the backup poll is runner.poll.interval.
            profile.is_test_profile = False
            aiida_config.set_option('runner.poll.interval', 5, scope=name)
            aiida_config.store()
            try:
                yield profile
            finally:
                _delete_broker_queues(profile)
    finally:
        drop_postgres_database(postgres_identifier(name))


def _delete_broker_queues(profile) -> None:
    """Delete the profile's task queue and exchanges: out of test mode, RabbitMQ keeps them after the session."""
    import asyncio

    import aio_pika
    from aiida.brokers.rabbitmq.utils import get_launch_queue_name, get_message_exchange_name, get_task_exchange_name
    from aiida.manage import get_manager

    url, prefix = get_manager().get_broker().get_url(), f'aiida-{profile.uuid}'

    async def delete():
        async with await aio_pika.connect(url) as connection:
            channel = await connection.channel()
            await channel.queue_delete(get_launch_queue_name(prefix))
            for exchange in (get_message_exchange_name(prefix), get_task_exchange_name(prefix)):
                await channel.exchange_delete(exchange)

    asyncio.run(delete())


@pytest.fixture(scope='session')
def cah4_primitive():
    """The 5-atom primitive cell of the CaH4 I4/mmm prototype (a ~40 GPa cell): the tiny Ca-H cell of the DFT tests."""
    from aiida_polyhydride.structures import bulk_phase, primitive_cell

    return primitive_cell(bulk_phase('MH4-I4mmm', 'Ca'))


@pytest.fixture(scope='session')
def localhost_setup(aiida_profile):
    """The plugin's own set-up (computer, codes, generated pseudo family) in the session profile."""
    from aiida_polyhydride.setup.computer import setup_codes, setup_localhost
    from aiida_polyhydride.setup.pseudos import setup_pseudo_family

    computer, _ = setup_localhost()
    setup_codes(computer)
    setup_pseudo_family()
    return computer


class UserShell:
    """Runs the package's commands as a user would: separate processes, a private AiiDA config directory."""

    def __init__(self, aiida_path: Path):
        import os

        self.env = {key: value for key, value in os.environ.items() if not key.startswith('AIIDA')}
        self.env['AIIDA_PATH'] = str(aiida_path)
        self.bin = Path(sys.executable).parent

    def run(self, program: str, *args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        """``program`` of the venv with ``args``; ``env``: variables added for this command only."""
        command = [str(self.bin / program), *args]
        environment = {**self.env, **(env or {})}
        return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=timeout, check=False)

    def cli(self, *args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
        return self.run('aiida-polyhydride', *args, timeout=timeout, env=env)

    def verdi(self, *args: str) -> subprocess.CompletedProcess:
        return self.run('verdi', *args)

    def python_json(self, code: str):
        """Run ``code`` in this user's environment; its last printed line is parsed as JSON."""
        import json

        result = self.run('python', '-c', code)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.splitlines()[-1])


@pytest.fixture
def user_shell(tmp_path):
    """A user's shell with its own AiiDA config in ``tmp_path``; daemons it started are stopped afterwards."""
    shell = UserShell(tmp_path)
    yield shell
    for profile in ('polyhydride',):
        shell.verdi('-p', profile, 'daemon', 'stop')


class BackgroundDemo:
    """``aiida-polyhydride demo`` running as a user would, in its own config directory, profile and daemon."""

    def __init__(self, home: Path):
        self.shell = UserShell(home)
        self.output = home / 'plots'
        self.stdout, self.stderr = home / 'demo.stdout', home / 'demo.stderr'
        command = [str(self.shell.bin / 'aiida-polyhydride'), 'demo', '--output-dir', str(self.output)]
        with self.stdout.open('w') as stdout, self.stderr.open('w') as stderr:  # files: a full pipe would block it
            self.process = subprocess.Popen(command, env=self.shell.env, stdout=stdout, stderr=stderr)

    def result(self, timeout: float) -> subprocess.CompletedProcess:
        """Wait for the demo; its exit code and output as subprocess.run gives them."""
        self.process.wait(timeout=timeout)
        stdout, stderr = self.stdout.read_text(), self.stderr.read_text()
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, stdout, stderr)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.shell.verdi('-p', 'polyhydride', 'daemon', 'stop')


@pytest.fixture(scope='session', autouse=True)
def demo_in_background(request, tmp_path_factory):
    """When test_demo is selected, the demo starts before the first test: it needs nothing from this session (its own
    profile, daemon and processes), so it fills the CPU the other tests leave idle instead of running after them."""
    if not any(item.path.name == 'test_demo.py' for item in request.session.items):
        yield None
        return
    demo = BackgroundDemo(tmp_path_factory.mktemp('demo_user'))
    try:
        yield demo
    finally:
        demo.stop()


@pytest.fixture(scope='session')
def session_shell(aiida_profile):
    """A user's shell on the session's profile (its config directory): the CLI sees the nodes the fixtures made.

    Commands need ``-p``: ``session_shell.cli('status', pk, '-p', aiida_profile.name)``.
    """
    import os

    return UserShell(Path(os.environ['AIIDA_PATH']))


@pytest.fixture(scope='session')
def run_in_daemon(daemon_client):
    """Submit builders to the session profile's daemon and wait until they terminate; returns the node (nodes).

    Session-scoped (aiida's ``submit_and_await`` is per test), so expensive runs can be shared by module fixtures.
    """
    import time

    from aiida.cmdline.utils.common import get_workchain_report
    from aiida.engine import submit

    def run(*builders, timeout: float = 900):
        if not daemon_client.is_daemon_running:
            daemon_client.start_daemon()
        nodes = [submit(builder) for builder in builders]
        deadline = time.monotonic() + timeout
        for node in nodes:
            while not node.is_terminated:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f'{node.process_label}<{node.pk}> not done in {timeout} s:\n'
                        f'{get_workchain_report(node, "REPORT")}'
                    )
                time.sleep(0.5)
        return nodes[0] if len(nodes) == 1 else nodes

    return run


def _peak_concurrency(nodes) -> int:
    events = sorted([(node.ctime, 1) for node in nodes] + [(node.mtime, -1) for node in nodes])
    running, peak = 0, 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


@pytest.fixture(scope='session')
def peak_concurrency():
    """``peak_concurrency(nodes)``: most of ``nodes`` (processes) alive at once, from their ctime and mtime."""
    return _peak_concurrency


def tiny_ca_h_frames():
    """Eight tiny Ca-H cells (2-5 atoms) of different compositions, strains and rattles for the shared dataset."""
    from ase.build import bulk

    from aiida_polyhydride.structures import bulk_phase, primitive_cell, rattle

    cah4 = primitive_cell(bulk_phase('MH4-I4mmm', 'Ca'))
    rocksalt = [bulk('CaH', 'rocksalt', a=a) for a in (4.2, 4.3, 4.4, 4.5, 4.6, 4.7)]
    frames = [rattle(atoms, stdev=0.08, seed=index) for index, atoms in enumerate(rocksalt)]
    return [*frames, rattle(cah4, stdev=0.05, seed=10), rattle(cah4, stdev=0.1, seed=11)]


@pytest.fixture(scope='session')
def dft_runs(localhost_setup, run_in_daemon):
    """The suite's pw.x work, submitted together (it is independent): the labels of the shared dataset (protocol
    fast, 8 tiny frames) and the isolated atoms of Ca and H with the same protocol."""
    from aiida import orm

    from aiida_polyhydride.workflows.isolated_atoms import IsolatedAtomsWorkChain
    from aiida_polyhydride.workflows.label import LabelWorkChain

    code = orm.load_code('pw@localhost')
    labels = LabelWorkChain.get_builder_from_protocol(
        code,
        [orm.StructureData(ase=frame) for frame in tiny_ca_h_frames()],
        protocol='fast',
        overrides={'max_concurrent': 2, 'kpoints_distance': 1.0},  # ~2x2x2 meshes: labels for machinery, not physics
    )
    isolated = IsolatedAtomsWorkChain.get_builder_from_protocol(code, ['Ca', 'H'], protocol='fast')
    labels, isolated = run_in_daemon(labels, isolated)
    for node in (labels, isolated):
        assert node.is_finished_ok, node.exit_message
    return {'labels': labels, 'isolated': isolated}


@pytest.fixture(scope='session')
def qe_dataset(dft_runs):
    """The suite's one QE-labelled dataset (protocol fast), split into {'training': 6, 'validation': 2} frames."""
    from aiida import orm

    from aiida_polyhydride.data import split_dataset

    return split_dataset(dft_runs['labels'].outputs.dataset, orm.Float(0.25), orm.Int(0))


@pytest.fixture(scope='session')
def isolated_energies(dft_runs):
    """Isolated-atom energies of Ca and H with the same (fast) protocol: the per-type energy shifts."""
    return dft_runs['isolated'].outputs.energies


@pytest.fixture(scope='session')
def tiny_committee(qe_dataset, isolated_energies, run_in_daemon):
    """The suite's one trained committee: 2 tiny Allegro models (3 epochs) on the QE dataset."""
    from aiida import orm

    from aiida_polyhydride.workflows.train import CommitteeWorkChain

    builder = CommitteeWorkChain.get_builder_from_protocol(
        orm.load_code('python@localhost'),
        qe_dataset['training'],
        isolated_energies,
        qe_dataset['validation'],
        protocol='tiny',
        overrides={'committee_size': 2},
    )
    node = run_in_daemon(builder)
    assert node.is_finished_ok, node.exit_message
    return node


@pytest.fixture(scope='session')
def model_cache(tmp_path_factory):
    """One compiled-model cache for the session ($AIIDA_POLYHYDRIDE_CACHE of the MD jobs): each model compiles once."""
    return tmp_path_factory.mktemp('compiled_models')


@pytest.fixture(scope='session')
def compiled_committee(tiny_committee, model_cache):
    """``tiny_committee``'s packages as files, both compiled into ``model_cache`` at once (MD jobs then find them
    there): {'member_0': {'path': ..., 'sha256': ...}, ...}."""
    from concurrent.futures import ThreadPoolExecutor

    from aiida_polyhydride.runners.compiled_models import compiled_model

    directory = model_cache / 'packages'  # where AllegroPotentialData.compiled_path looks for them
    directory.mkdir(exist_ok=True)
    packages = {}
    for key, node in tiny_committee.outputs.models.items():
        path = directory / f'{node.sha256}.nequip.zip'
        packages[key] = {'path': path if path.is_file() else node.export(path), 'sha256': node.sha256}
    with ThreadPoolExecutor(len(packages)) as pool:  # nequip-compile is mostly single-threaded
        futures = [pool.submit(compiled_model, p['path'], p['sha256'], cache=model_cache) for p in packages.values()]
        for future in futures:
            future.result()
    return packages
