"""``aiida-polyhydride setup`` as a user runs it: a real process, a fresh AiiDA config directory, real services."""

from __future__ import annotations

import os

import pytest

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

POLL = """
from aiida import load_profile, orm
load_profile('{name}')
print(orm.load_computer('localhost').get_minimum_job_poll_interval())
"""

PIN = """
from aiida import load_profile, orm
load_profile('{name}')
orm.load_computer('localhost').set_mpirun_command({command!r})
print('{{}}')
"""


def test_embedded_default_setup_is_idempotent(user_shell):
    first = user_shell.cli('setup')
    assert first.returncode == 0, first.stderr
    assert 'created' in first.stdout
    state = user_shell.python_json(INSPECT.format(name='polyhydride'))
    assert state['storage'] == 'core.sqlite_dos'
    assert state['broker'] == 'core.zeromq'
    assert state['computers'] == ['localhost']
    assert state['codes'] == ['pw@localhost', 'python@localhost']
    assert state['family_elements'] == ['Ca', 'H']
    if os.geteuid() == 0:
        assert '--allow-run-as-root' in state['mpirun']

    second = user_shell.cli('setup')
    assert second.returncode == 0, second.stderr
    assert 'Nothing changed' in second.stdout
    assert 'created' not in second.stdout
    assert user_shell.python_json(INSPECT.format(name='polyhydride')) == state

    # a localhost from before --bind-to none (its ranks pinned to core 0) gets the current command, nothing else changes
    pinned = [part for part in state['mpirun'] if part not in ('--bind-to', 'none')]
    user_shell.python_json(PIN.format(name='polyhydride', command=pinned))
    third = user_shell.cli('setup')
    assert third.returncode == 0, third.stderr
    assert 'localhost: mpirun no longer pins every job to core 0 (--bind-to none)' in third.stdout
    assert user_shell.python_json(INSPECT.format(name='polyhydride')) == state

    # a campaign's poll interval, on the existing computer; a bad one is refused before anything changes
    slower = user_shell.cli('setup', '--poll-interval', '10')
    assert 'localhost: scheduler poll interval 10 s' in slower.stdout, slower.stdout + slower.stderr
    assert user_shell.python_json(POLL.format(name='polyhydride')) == 10.0
    refused = user_shell.cli('setup', '--poll-interval', '0')
    assert refused.returncode != 0 and '--poll-interval' in refused.stderr and 'Traceback' not in refused.stderr
    assert user_shell.python_json(POLL.format(name='polyhydride')) == 10.0


def test_postgres_setup_is_idempotent(user_shell):
    from aiida_polyhydride.setup.profile import drop_postgres_database, postgres_identifier

    name = f'pgsetup{os.getpid()}'
    try:
        first = user_shell.cli('setup', '--postgres', '-p', name)
        assert first.returncode == 0, first.stderr
        state = user_shell.python_json(INSPECT.format(name=name))
        assert state['storage'] == 'core.psql_dos'
        assert state['broker'] == 'core.rabbitmq'
        assert state['family_elements'] == ['Ca', 'H']

        second = user_shell.cli('setup', '--postgres', '-p', name)
        assert second.returncode == 0, second.stderr
        assert 'Nothing changed' in second.stdout
        assert user_shell.python_json(INSPECT.format(name=name)) == state
        # without --postgres the existing PostgreSQL profile is used as it is (what `demo` does in the docker stack)
        third = user_shell.cli('setup', '-p', name)
        assert third.returncode == 0, third.stderr
        assert 'Nothing changed' in third.stdout
        assert 'storage core.psql_dos' in third.stdout
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
def test_bad_setup_input_gives_one_clear_line(user_shell, args, message):
    result = user_shell.cli('setup', '-p', 'bad', *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert 'Traceback' not in result.stderr + result.stdout


def test_existing_profile_with_other_storage_is_refused(user_shell):
    assert user_shell.cli('setup', '-p', 'mixed').returncode == 0
    result = user_shell.cli('setup', '-p', 'mixed', '--postgres')
    assert result.returncode != 0
    assert "profile 'mixed' exists with storage core.sqlite_dos, not core.psql_dos" in result.stderr
    assert 'Traceback' not in result.stderr


CODES = """
import json
from aiida import load_profile, orm
load_profile('{name}')
print(json.dumps({{
    'computers': sorted(c.label for c in orm.Computer.collection.all()),
    'codes': {{c.full_label: c.uuid for c in orm.QueryBuilder().append(orm.InstalledCode).all(flat=True)}},
    'unhashed': orm.QueryBuilder().append(orm.Node, filters={{'extras': {{'!has_key': '_aiida_hash'}}}}).count(),
}}))
"""


def test_an_archive_imported_by_setup_keeps_its_computer_and_codes(user_shell, tmp_path):
    """A campaign moving machines: its archive, imported before the computer exists, brings its own localhost and
    codes, which setup configures and keeps (a continued run then uses the same code nodes, and the cache)."""
    first = user_shell.cli('setup', '-p', 'old')
    assert first.returncode == 0, first.stderr
    archive = tmp_path / 'campaign.aiida'
    created = user_shell.verdi('-p', 'old', 'archive', 'create', '--all', '--', str(archive))
    assert created.returncode == 0, created.stdout + created.stderr
    old = user_shell.python_json(CODES.format(name='old'))

    moved = user_shell.cli('setup', '-p', 'new', '--import-archive', str(archive))
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert 'nodes imported and hashed for caching' in moved.stdout
    new = user_shell.python_json(CODES.format(name='new'))
    assert new['computers'] == ['localhost'] and new['codes'] == old['codes']  # the same nodes, not new ones
    assert new['unhashed'] == 0

    again = user_shell.cli('setup', '-p', 'new', '--import-archive', str(archive))
    assert again.returncode == 0 and 'every node already in the profile' in again.stdout, again.stdout + again.stderr
    missing = user_shell.cli('setup', '-p', 'other', '--import-archive', str(tmp_path / 'nothing.aiida'))
    assert missing.returncode != 0 and 'does not exist' in missing.stderr and 'Traceback' not in missing.stderr
