"""What the commands share: the -p/--profile option, node arguments, and bad input turned into one clear line.

A user's mistake (an unknown PK, a missing code, an unreadable file) must end the command with ``Error: ...`` and a
non-zero exit, never a traceback: click prints a :class:`click.ClickException` exactly so, and
:func:`clear_errors` converts the exceptions aiida and this package raise for such mistakes into one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ..setup.profile import DEFAULT_PROFILE


def default_profile_name() -> str:
    """The config's default profile (as verdi), else the plugin's default (what ``aiida-polyhydride setup`` makes)."""
    from aiida.manage.configuration import get_config

    config = get_config(create=True)
    return config.default_profile_name or DEFAULT_PROFILE


def load_profile_or_fail(name: str) -> str:
    """Load the profile ``name``; a missing profile is a clear error that says how to create one."""
    from aiida import load_profile
    from aiida.manage.configuration import get_config

    if name not in get_config(create=True).profile_names:
        raise click.ClickException(
            f'AiiDA profile {name!r} does not exist: create it with `aiida-polyhydride setup -p {name}` '
            '(or `--postgres`) first, or name another with -p.'
        )
    load_profile(name, allow_switch=True)
    return name


def profile_before_command(ctx: click.Context) -> str | None:
    """The profile given before the command (``aiida-polyhydride -p NAME COMMAND``), if any."""
    return ctx.find_root().params.get('profile_name')


def profile_or_default(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """Callback of the -p of ``setup`` and ``demo`` (which create the profile): given, before the command, default."""
    return value or profile_before_command(ctx) or DEFAULT_PROFILE


def _load_profile_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    return load_profile_or_fail(value or profile_before_command(ctx) or default_profile_name())


def profile_option(function: Callable) -> Callable:
    """``-p/--profile`` as in verdi: loaded before the other arguments are converted (node PKs need it)."""
    return click.option(
        '-p',
        '--profile',
        'profile_name',
        default=None,
        is_eager=True,
        callback=_load_profile_option,
        help=f"AiiDA profile; default: the config's default profile, else {DEFAULT_PROFILE!r}.",
    )(function)


class NodeParamType(click.ParamType):
    """A node by PK or UUID, of one of the given classes; a missing or wrong node fails with a clear message."""

    name = 'PK'

    def __init__(self, *classes: str, description: str):
        # dotted class paths, imported on first use: `aiida-polyhydride --help` need not import aiida.orm
        self.classes = classes
        self.description = description

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        from aiida import orm
        from aiida.common.exceptions import MultipleObjectsError, NotExistent

        if isinstance(value, orm.Node):
            return value
        identifier = str(value).strip()
        try:
            node = orm.load_node(int(identifier)) if identifier.isdigit() else orm.load_node(uuid=identifier)
        except NotExistent:
            self.fail(f'no node with PK or UUID {identifier} in profile {_profile_name()!r}', param, ctx)
        except MultipleObjectsError:
            self.fail(f'{identifier} matches more than one node: give more characters of the UUID', param, ctx)
        if self.classes and not isinstance(node, tuple(_import_class(path) for path in self.classes)):
            self.fail(f'node {node.pk} is a {type(node).__name__}, not {self.description}', param, ctx)
        return node


def _import_class(path: str) -> type:
    import importlib

    module, _, name = path.rpartition('.')
    return getattr(importlib.import_module(module), name)


def _profile_name() -> str:
    from aiida.manage import get_manager

    profile = get_manager().get_profile()
    return profile.name if profile is not None else '(none loaded)'


def known_input_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean a user's input is wrong (not a bug): their message is the whole story."""
    from aiida.common.exceptions import MissingEntryPointError, MultipleObjectsError, NotExistent

    from ..setup import SetupError

    return (NotExistent, MultipleObjectsError, MissingEntryPointError, SetupError)


def clear_errors(*extra: type[Exception]) -> Callable:
    """Decorator: the known input errors (and ``extra``) raised by a command become one ``Error: ...`` line."""

    def decorator(function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except (*known_input_errors(), *extra) as exception:
                raise click.ClickException(str(exception)) from None

        return wrapper

    return decorator
