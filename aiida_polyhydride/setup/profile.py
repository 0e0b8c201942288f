"""AiiDA profiles: the embedded default (SQLite + ZeroMQ broker) and PostgreSQL + RabbitMQ."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from aiida.manage.configuration import Profile, create_profile, get_config

from . import SetupError, SetupResult

DEFAULT_PROFILE = 'polyhydride'
DEFAULT_EMAIL = 'polyhydride@localhost'


def setup_profile(
    name: str = DEFAULT_PROFILE,
    *,
    postgres: bool = False,
    email: str = DEFAULT_EMAIL,
    postgres_superuser: dict[str, Any] | None = None,
    set_default: bool = True,
) -> SetupResult:
    """Create the profile ``name`` unless it exists; with ``postgres`` on PostgreSQL + RabbitMQ.

    An existing profile is kept as it is; with ``postgres`` it must be a PostgreSQL one.

    The embedded default needs no services: SQLite storage and aiida's ZeroMQ broker, which the daemon starts
    itself, so ``submit`` and ``verdi daemon`` work on a laptop.
    """
    config = get_config(create=True)
    wanted_storage = 'core.psql_dos' if postgres else 'core.sqlite_dos'
    if name in config.profile_names:
        profile = config.get_profile(name)
        # without --postgres an existing profile of any storage is used as it is (e.g. the docker stack's)
        if postgres and profile.storage_backend != wanted_storage:
            raise SetupError(
                f'profile {name!r} exists with storage {profile.storage_backend}, not {wanted_storage}: '
                f'choose another name with --profile-name or delete it with `verdi profile delete {name}`.'
            )
        return SetupResult('profile', False, f'{name} ({_describe(profile)})')

    if postgres:
        storage_config = create_postgres_storage_config(name, Path(config.dirpath), postgres_superuser)
        broker_backend, broker_config = 'core.rabbitmq', _rabbitmq_config()
    else:
        storage_config = {'filepath': str(Path(config.dirpath) / 'repository' / f'sqlite_dos_{name}')}
        broker_backend, broker_config = 'core.zeromq', _zeromq_config()

    profile = create_profile(
        config,
        name=name,
        email=email,
        storage_backend=wanted_storage,
        storage_config=storage_config,
        broker_backend=broker_backend,
        broker_config=broker_config,
    )
    if postgres:
        # Debian 12 ships RabbitMQ 3.10; the consumer timeout is lifted in the server's advanced.config instead.
        config.set_option('warnings.rabbitmq_version', False, scope=name)
    if set_default or config.default_profile_name is None:
        config.set_default_profile(name, overwrite=True)
    config.store()
    return SetupResult('profile', True, f'{name} ({_describe(profile)})')


def create_postgres_storage_config(
    profile_name: str, config_dir: Path, superuser: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Create a PostgreSQL role and database for ``profile_name``; return the ``core.psql_dos`` storage config.

    The database is created from template0 with the server's own locale: ``verdi presto --use-postgres`` asks for
    en_US.UTF-8, which C.UTF-8-only machines do not have.
    """
    from pgsu import PGSU

    dsn = {'host': '127.0.0.1', 'port': 5432, 'user': 'postgres', **(superuser or {})}
    postgres = PGSU(dsn=dsn, interactive=False)
    if not postgres.is_connected:
        raise SetupError(
            f'cannot connect to PostgreSQL as superuser with {_safe(dsn)}: is the server running '
            '(`make services` starts it) and may this user create roles and databases?'
        )
    identifier = postgres_identifier(profile_name)
    password = secrets.token_hex(16)
    if postgres.execute(f"SELECT datname FROM pg_database WHERE datname='{identifier}'"):
        raise SetupError(
            f'PostgreSQL database {identifier!r} exists but no AiiDA profile {profile_name!r} uses it: '
            f'drop it (`DROP DATABASE {identifier}`) or choose another --profile-name.'
        )
    if postgres.execute(f"SELECT rolname FROM pg_roles WHERE rolname='{identifier}'"):
        postgres.execute(f"ALTER ROLE {identifier} WITH LOGIN PASSWORD '{password}'")
    else:
        postgres.execute(f"CREATE ROLE {identifier} WITH LOGIN PASSWORD '{password}'")
    postgres.execute(f"CREATE DATABASE {identifier} OWNER {identifier} ENCODING 'UTF8' TEMPLATE template0")
    return {
        'database_engine': 'postgresql_psycopg',
        'database_hostname': dsn['host'],
        'database_port': int(dsn['port']),
        'database_name': identifier,
        'database_username': identifier,
        'database_password': password,
        'repository_uri': (config_dir / 'repository' / profile_name).as_uri(),
    }


def postgres_identifier(profile_name: str) -> str:
    """Name of the role and database of ``profile_name`` (a safe SQL identifier: it is inlined into SQL)."""
    return 'aiida_' + re.sub(r'[^a-z0-9_]', '_', profile_name.lower())


def drop_postgres_database(name: str, superuser: dict[str, Any] | None = None) -> None:
    """Drop database and role ``name`` (test clean-up and failed set-ups)."""
    from pgsu import PGSU

    postgres = PGSU(dsn={'host': '127.0.0.1', 'port': 5432, 'user': 'postgres', **(superuser or {})}, interactive=False)
    postgres.execute(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
    postgres.execute(f'DROP ROLE IF EXISTS {name}')


def _rabbitmq_config() -> dict[str, Any]:
    from aiida.brokers.rabbitmq.defaults import detect_rabbitmq_config

    try:
        return detect_rabbitmq_config()
    except ConnectionError as exception:
        raise SetupError(
            f'RabbitMQ is not reachable ({exception}): start it (`make services`) or use the embedded default '
            '(without --postgres).'
        ) from None


def _zeromq_config() -> dict[str, Any]:
    from aiida.plugins import BrokerFactory

    return BrokerFactory('core.zeromq').get_default_config()


def _describe(profile: Profile) -> str:
    return f'storage {profile.storage_backend}, broker {profile.process_control_backend}'


def _safe(dsn: dict[str, Any]) -> dict[str, Any]:
    return {key: ('***' if key == 'password' else value) for key, value in dsn.items()}
