"""``aiida-polyhydride setup`` as a user runs it: a real process, a fresh AiiDA config directory, real services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name('aiida-polyhydride'))

INSPECT = """
import json
from aiida import load_profile, orm
profile = load_profile('{name}')
family = orm.Group.collection.get(label='polyhydride/PBE/PAW')
print(json.dumps({{
    'storage': profile.storage_backend,
    'broker': profile.process_control_backend,
    'computers': [c.label for c in orm.Computer.collection.all()],
    'mpirun': orm.load_computer('localhost').get_mpirun_command(),
    'codes': sorted(c.full_label for c in orm.QueryBuilder().append(orm.InstalledCode).all(flat=True)),
    'family_elements': sorted(family.elements),
    'n_nodes': orm.QueryBuilder().append(orm.Node).count(),
}}))
"""


@pytest.fixture
def user_environment(tmp_path):
    """Environment of a user whose AiiDA config lives in ``tmp_path`` (never the test session's)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith('AIIDA')}
    environment['AIIDA_PATH'] = str(tmp_path)
    return environment


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=300, check=False)


def inspect_profile(name: str, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, '-c', INSPECT.format(name=name)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.splitlines()[-1])


def test_embedded_default_setup_is_idempotent(user_environment):
    first = run_cli('setup', env=user_environment)
    assert first.returncode == 0, first.stderr
    assert 'created' in first.stdout
    state = inspect_profile('polyhydride', user_environment)
    assert state['storage'] == 'core.sqlite_dos'
    assert state['broker'] == 'core.zeromq'
    assert state['computers'] == ['localhost']
    assert state['codes'] == ['pw@localhost', 'python@localhost']
    assert state['family_elements'] == ['Ca', 'H']
    if os.geteuid() == 0:
        assert '--allow-run-as-root' in state['mpirun']

    second = run_cli('setup', env=user_environment)
    assert second.returncode == 0, second.stderr
    assert 'Nothing changed' in second.stdout
    assert 'created' not in second.stdout
    assert inspect_profile('polyhydride', user_environment) == state


def test_postgres_setup_is_idempotent(user_environment):
    from aiida_polyhydride.setup.profile import drop_postgres_database, postgres_identifier

    name = f'pgsetup{os.getpid()}'
    try:
        first = run_cli('setup', '--postgres', '-p', name, env=user_environment)
        assert first.returncode == 0, first.stderr
        state = inspect_profile(name, user_environment)
        assert state['storage'] == 'core.psql_dos'
        assert state['broker'] == 'core.rabbitmq'
        assert state['family_elements'] == ['Ca', 'H']

        second = run_cli('setup', '--postgres', '-p', name, env=user_environment)
        assert second.returncode == 0, second.stderr
        assert 'Nothing changed' in second.stdout
        assert inspect_profile(name, user_environment) == state
    finally:
        drop_postgres_database(postgres_identifier(name))


@pytest.mark.parametrize(
    ('args', 'message'),
    [
        (['--pseudo-family', 'SSSP/9.9/PBE/nothing'], "pseudo family 'SSSP/9.9/PBE/nothing' is not installed"),
        (['--pw-executable', 'no-such-pw.x'], "executable 'no-such-pw.x' for code pw@localhost not found"),
        (['--postgres', '--pg-port', '1'], 'cannot connect to PostgreSQL'),
    ],
)
def test_bad_setup_input_gives_one_clear_line(user_environment, args, message):
    result = run_cli('setup', '-p', 'bad', *args, env=user_environment)
    assert result.returncode != 0
    assert message in result.stderr
    assert 'Traceback' not in result.stderr + result.stdout


def test_existing_profile_with_other_storage_is_refused(user_environment):
    assert run_cli('setup', '-p', 'mixed', env=user_environment).returncode == 0
    result = run_cli('setup', '-p', 'mixed', '--postgres', env=user_environment)
    assert result.returncode != 0
    assert "profile 'mixed' exists with storage core.sqlite_dos, not core.psql_dos" in result.stderr
    assert 'Traceback' not in result.stderr
