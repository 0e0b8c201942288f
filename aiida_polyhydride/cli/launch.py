"""``aiida-polyhydride launch WORKFLOW``: a workflow's builder from a YAML file and options, validated first.

The inputs are the keyword arguments of the workflow's ``get_builder_from_protocol`` (as in a Python script), from
``--inputs FILE.yaml`` with options and ``--set`` on top. Before any workflow is loaded they are checked where their
names say what they are, anywhere in the mapping (``overrides`` included):

- ``metal``, ``element(s)``, ``metals``, ``species``: chemical symbols (ase.data);
- any key containing ``temperature``: K, > 0; any key containing ``pressure``: GPa, >= 0 (or null: NVT);
- ``code`` / ``*_code``: an existing code label (``pw@localhost``), its computer named if that is what is missing;
  ``computer``: an existing computer; ``pseudo_family``: an installed family covering the elements;
- ``{node: PK-or-UUID}`` at any depth: an existing node (a potential, a dataset, a structure), passed as the node;
  ``{node: PK, output: models}``: that output of a process (a namespace becomes a dict, e.g. a committee's models).
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from .common import clear_errors, profile_option

WORKFLOWS = {
    'active-learning': 'polyhydride.active_learning',
    'surface-melting': 'polyhydride.surface_melting',
    'enthalpy': 'polyhydride.enthalpy',
}
#: workflows whose class can continue an earlier run (``get_builder_from_parent``): their command takes --parent
CONTINUABLE = ('active-learning',)
#: input types a --set value is turned into, from the type the port takes
_SIMPLE_TYPES = ('Int', 'Float', 'Str', 'Bool', 'Dict', 'List')
ELEMENT_KEYS = ('metal', 'metals', 'element', 'elements', 'species')


class LaunchInputError(click.ClickException):
    """An input of `launch` is wrong; the message names the input and what is allowed."""


def read_inputs(path: Path | None) -> dict[str, Any]:
    """The YAML mapping of ``path`` ({} without a file); an unreadable or non-mapping file is a clear error."""
    import yaml

    if path is None:
        return {}
    try:
        content = yaml.safe_load(Path(path).read_text())
    except OSError as exception:
        raise LaunchInputError(f'cannot read {path}: {exception.strerror}') from None
    except yaml.YAMLError as exception:
        where = getattr(exception, 'problem_mark', None)
        position = f' (line {where.line + 1}, column {where.column + 1})' if where is not None else ''
        problem = getattr(exception, 'problem', None) or str(exception).splitlines()[0]
        raise LaunchInputError(f'{path} is not valid YAML{position}: {problem}') from None
    if content is None:
        return {}
    if not isinstance(content, Mapping):
        raise LaunchInputError(f'{path} must be a YAML mapping of inputs (key: value), not a {type(content).__name__}')
    return dict(content)


def apply_settings(inputs: dict[str, Any], settings: tuple[str, ...]) -> dict[str, Any]:
    """``--set a.b=VALUE`` entries (VALUE parsed as YAML) merged into ``inputs``, dotted keys as nested mappings."""
    import yaml

    for setting in settings:
        key, separator, text = setting.partition('=')
        if not separator or not key.strip():
            raise LaunchInputError(f'--set {setting!r}: use KEY=VALUE (e.g. --set overrides.max_iterations=3)')
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise LaunchInputError(f'--set {setting!r}: the value is not valid YAML') from None
        *parents, last = key.strip().split('.')
        target = inputs
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                raise LaunchInputError(f'--set {setting!r}: {parent} is not a mapping')
        target[last] = value
    return inputs


def validate_inputs(inputs: Mapping[str, Any], path: str = '') -> None:
    """Chemical symbols, temperatures and pressures anywhere in ``inputs``; needs no profile."""
    for key, value in inputs.items():
        name = f'{path}{key}'
        lowered = str(key).lower()
        if lowered in ELEMENT_KEYS:
            _check_elements(name, value)
        elif 'temperature' in lowered:
            _check_numbers(name, value, 'K', lambda number: number > 0, 'must be > 0 (kelvin)')
        elif 'pressure' in lowered:
            _check_numbers(name, value, 'GPa', lambda number: number >= 0, 'must be >= 0 (GPa)', allow_none=True)
        if isinstance(value, Mapping) and not _is_node_reference(value):
            validate_inputs(value, f'{name}.')


def resolve_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Codes, computers and nodes loaded, the pseudo family checked; needs the loaded profile."""
    resolved = {}
    for key, value in inputs.items():
        lowered = str(key).lower()
        if lowered == 'code' or lowered.endswith('_code'):
            resolved[key] = _load_code(key, value)
        elif lowered == 'computer':
            resolved[key] = _load_computer(key, value)
        else:
            resolved[key] = _resolve_nodes(str(key), value)
    if 'pseudo_family' in inputs:
        _check_pseudo_family(inputs['pseudo_family'], _elements(inputs))
    return resolved


def load_workflow(entry_point: str):
    """The workflow class of ``entry_point`` (loaded only now); a missing one is a clear error."""
    from aiida.common.exceptions import LoadingEntryPointError, MissingEntryPointError
    from aiida.plugins import WorkflowFactory

    try:
        return WorkflowFactory(entry_point)
    except MissingEntryPointError:
        raise LaunchInputError(
            f'the workflow {entry_point!r} is not installed in this environment (no aiida.workflows entry point): '
            'update aiida-polyhydride and reinstall it (pip install -e .)'
        ) from None
    except LoadingEntryPointError as exception:
        raise LaunchInputError(f'the workflow {entry_point!r} cannot be loaded: {exception}') from None


def fit_signature(function, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``inputs`` as keyword arguments of ``function``: generic option keys renamed, unknown keys refused."""
    parameters = inspect.signature(function).parameters
    accepts_any = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    names = [name for name in parameters if name not in ('cls', 'self')]
    fitted = {}
    for key, value in inputs.items():
        target = key if key in names or accepts_any else _matching_parameter(key, names)
        if target is None:
            raise LaunchInputError(
                f'{key}: not an input of {_qualified_name(function)}; it takes {", ".join(names)} '
                '(anything else goes under overrides)'
            )
        if target != key and key in ('temperatures', 'pressures') and not target.startswith(key):
            # -T/-P collect lists; a builder for one run takes one value (e.g. `temperature`)
            if len(value) != 1:
                raise LaunchInputError(f'{target}: {_qualified_name(function)} takes one value, not {value}')
            value = value[0]
        fitted[target] = value
    missing = [
        name
        for name, parameter in parameters.items()
        if name in names
        and parameter.default is inspect.Parameter.empty
        and parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name not in fitted
    ]
    if missing:
        raise LaunchInputError(
            f'{_qualified_name(function)} needs {", ".join(missing)}: give them in the YAML file or with --set'
        )
    return fitted


def build(entry_point: str, inputs: dict[str, Any]):
    """The builder of the workflow behind ``entry_point`` from validated ``inputs``."""
    workflow = load_workflow(entry_point)
    kwargs = fit_signature(workflow.get_builder_from_protocol, inputs)
    try:
        return workflow.get_builder_from_protocol(**kwargs)
    except (ValueError, TypeError, KeyError) as exception:
        # the builders validate their inputs with messages that name them (house rule)
        raise LaunchInputError(f'{workflow.__name__}: {exception}') from None


def builder_from_parent(entry_point: str, parent: Any, settings: tuple[str, ...]):
    """The builder continuing ``parent`` (PK or UUID) with ``--set`` changes to its inputs; needs the profile."""
    workflow = load_workflow(entry_point)
    node = _load_node('--parent', parent)
    try:
        builder = workflow.get_builder_from_parent(node)
    except ValueError as exception:
        raise LaunchInputError(f'--parent: {exception}') from None
    changes = apply_settings({}, settings)
    validate_inputs(changes)
    for key, value in _flatten(changes):
        set_builder_input(builder, key, _resolve_nodes(key, value))
    return builder


def set_builder_input(builder, key: str, value: Any) -> None:
    """Set the dotted input ``key`` of ``builder`` to ``value``, as the node type its port takes.

    A key inside a Dict input (``trust_window.lo``) changes that one entry and keeps the others.
    """
    from aiida import orm
    from plumpy.ports import PortNamespace

    parts = key.split('.')
    target = builder
    for index, part in enumerate(parts):
        namespace = target._port_namespace
        if part not in namespace:
            where = '.'.join(parts[:index]) or 'the workflow'
            raise LaunchInputError(f'--set {key}: {where} has no input {part!r}; it has {", ".join(sorted(namespace))}')
        port = namespace[part]
        rest = parts[index + 1 :]
        if isinstance(port, PortNamespace) and rest:
            target = target[part]
            continue
        valid_types = port.valid_type if isinstance(port.valid_type, tuple) else (port.valid_type,)
        type_name = next((kind.__name__ for kind in valid_types if kind not in (None, type(None))), None)
        if rest and type_name != 'Dict':
            raise LaunchInputError(f'--set {key}: {".".join(parts[: index + 1])} is not a namespace or a Dict input')
        if type_name == 'Dict':
            current = target[part].get_dict() if target.get(part) is not None else {}
            entry = current
            for name in rest[:-1]:
                entry = entry.setdefault(name, {})
            if rest:
                entry[rest[-1]] = value
            else:
                current = value
            value = current
        if type_name in ('AbstractCode', 'Code', 'InstalledCode') and isinstance(value, str):
            value = _load_code(key, value)  # e.g. label.pw_base.pw.code=pw@cluster after moving profiles
        if type_name in _SIMPLE_TYPES and not isinstance(value, orm.Data):
            try:
                value = getattr(orm, type_name)(value)
            except (TypeError, ValueError) as exception:
                raise LaunchInputError(f'--set {key}: {value!r} is not a valid {type_name}: {exception}') from None
        target[part] = value
        return


def _flatten(mapping: Mapping[str, Any], prefix: str = '') -> list[tuple[str, Any]]:
    """``{'a': {'b': 1}}`` -> ``[('a.b', 1)]``; node references stay whole."""
    items = []
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value and not _is_node_reference(value):
            items.extend(_flatten(value, f'{prefix}{key}.'))
        else:
            items.append((f'{prefix}{key}', value))
    return items


@click.group()
def launch() -> None:
    """Launch a workflow from a YAML input file and options (validated before anything is built).

    The inputs are those of the workflow's get_builder_from_protocol. --dry-run prints the builder, --daemon
    submits it and returns; otherwise it runs in this process until it is done.
    """


def _launch_command(name: str, entry_point: str) -> click.Command:
    @click.command(name)
    @click.option(
        '-i', '--inputs', 'inputs_file', type=click.Path(path_type=Path), help='YAML file of the builder inputs.'
    )
    @profile_option
    @click.option('--protocol', default=None, help='Protocol name (e.g. fast, moderate, precise).')
    @click.option('--metal', default=None, help='Metal element (chemical symbol, e.g. Ca).')
    @click.option('-T', '--temperature', 'temperatures', type=float, multiple=True, help='Temperature in K (repeat).')
    @click.option('-P', '--pressure', 'pressures', type=float, multiple=True, help='Pressure in GPa (repeat).')
    @click.option('--pseudo-family', default=None, help='Installed pseudopotential family label.')
    @click.option('--set', 'settings', multiple=True, metavar='KEY=VALUE', help='Any input, dotted keys, YAML value.')
    @click.option('--dry-run', is_flag=True, help='Validate and print the builder; submit nothing.')
    @click.option('-d', '--daemon', is_flag=True, help='Submit to the daemon and return at once.')
    @clear_errors()
    def command(inputs_file, profile_name, protocol, metal, temperatures, pressures, pseudo_family, settings, **flags):
        parent = flags.pop('parent', None)
        if parent is not None:
            given = [option for option, value in (('--inputs', inputs_file), ('--protocol', protocol),
                     ('--metal', metal), ('-T', temperatures), ('-P', pressures), ('--pseudo-family', pseudo_family))
                     if value]  # fmt: skip
            if given:
                raise LaunchInputError(
                    f'--parent continues a run with its own inputs; drop {", ".join(given)} and change inputs of '
                    'the run with --set KEY=VALUE (e.g. --set max_iterations=4)'
                )
            builder = builder_from_parent(entry_point, parent, settings)
            _launch(builder, profile_name, dry_run=flags['dry_run'], daemon=flags['daemon'])
            return
        inputs = apply_settings(read_inputs(inputs_file), settings)
        options = {'protocol': protocol, 'metal': metal, 'pseudo_family': pseudo_family}
        options.update({'temperatures': list(temperatures) or None, 'pressures': list(pressures) or None})
        inputs.update({key: value for key, value in options.items() if value is not None})
        validate_inputs(inputs)
        builder = build(entry_point, resolve_inputs(inputs))
        _launch(builder, profile_name, dry_run=flags['dry_run'], daemon=flags['daemon'])

    command.help = (
        f'Launch the {entry_point} workflow: inputs from --inputs FILE.yaml, options and --set (options win).\n\n'
        'Inputs are checked before the workflow is loaded: elements, temperatures (K, > 0), pressures (GPa, >= 0), '
        'codes, computers, pseudo family and {node: PK} references.'
    )
    if name in CONTINUABLE:
        command.help += (
            '\n\nWith --parent PK it continues that run (finished, failed or killed, e.g. imported from an archive) '
            'from its latest dataset, committee and trust window, with its own inputs; --set KEY=VALUE changes '
            'inputs of the new run by their names in the work chain (e.g. max_iterations=4, '
            'explore.max_concurrent=1, trust_window.target_force_error=0.08).'
        )
        command = click.option(
            '--parent', default=None, metavar='PK', help='Continue this earlier run (PK or UUID); see below.'
        )(command)
    return command


for _name, _entry_point in WORKFLOWS.items():
    launch.add_command(_launch_command(_name, _entry_point))


def _launch(builder, profile_name: str, *, dry_run: bool, daemon: bool) -> None:
    from aiida.engine import run_get_node, submit

    if dry_run:
        click.echo(str(builder))
        click.secho('Valid; nothing submitted (--dry-run).', fg='green')
        return
    if daemon:
        from aiida.engine.daemon.client import get_daemon_client

        node = submit(builder)
        click.echo(f'Submitted {node.process_label}<{node.pk}>.')
        if not get_daemon_client().is_daemon_running:
            click.secho(
                f'The daemon is not running: start it with `verdi -p {profile_name} daemon start`.', fg='yellow'
            )
        click.echo(f'Follow it with `aiida-polyhydride status {node.pk} --watch -p {profile_name}`.')
        return
    _, node = run_get_node(builder)
    click.echo(f'{node.process_label}<{node.pk}> ended {"OK" if node.is_finished_ok else node.exit_status}.')
    if not node.is_finished_ok:
        raise click.ClickException(
            f'{node.process_label}<{node.pk}> failed ({node.exit_status}: {node.exit_message}); '
            f'see `verdi -p {profile_name} process report {node.pk}`.'
        )


def _check_elements(name: str, value: Any) -> None:
    from ase.data import chemical_symbols

    symbols = value if isinstance(value, (list, tuple)) else [value]
    for symbol in symbols:
        if not isinstance(symbol, str) or symbol not in chemical_symbols[1:]:
            raise LaunchInputError(f'{name}: {symbol!r} is not a chemical element (give a symbol such as Ca, La, Y)')


def _check_numbers(name: str, value: Any, unit: str, allowed, rule: str, allow_none: bool = False) -> None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for number in values:
        if number is None and allow_none:
            continue
        if isinstance(number, Mapping):
            continue  # a nested group of settings (e.g. temperature ramps): validated key by key
        if isinstance(number, bool) or not isinstance(number, numbers.Real):
            raise LaunchInputError(f'{name}: {number!r} is not a number ({unit})')
        if not allowed(number):
            raise LaunchInputError(f'{name}: {number} {unit} is not allowed: {rule}')


def _is_node_reference(value: Any) -> bool:
    return isinstance(value, Mapping) and 'node' in value and set(value) <= {'node', 'output'}


def _resolve_nodes(name: str, value: Any):
    """``{node: PK}`` -> the node, ``{node: PK, output: models}`` -> that output (a namespace: a dict), at any depth."""
    if _is_node_reference(value):
        node = _load_node(name, value['node'])
        if 'output' not in value:
            return node
        output = value['output']
        if output not in node.outputs:
            label = getattr(node, 'process_label', None) or type(node).__name__
            raise LaunchInputError(f'{name}: {label}<{node.pk}> has no output {output!r}')
        found = node.outputs[output]
        return dict(found) if isinstance(found, Mapping) else found
    if isinstance(value, Mapping):
        return {key: _resolve_nodes(f'{name}.{key}', item) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_nodes(name, item) for item in value]
    return value


def _load_node(key: str, identifier: Any):
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    try:
        return orm.load_node(identifier)
    except (NotExistent, MultipleObjectsError, ValueError):
        raise LaunchInputError(f'{key}: no node with PK or UUID {identifier} in this profile') from None


def _load_code(key: str, label: Any):
    from aiida import orm
    from aiida.common.exceptions import MultipleObjectsError, NotExistent

    if not isinstance(label, str):
        raise LaunchInputError(f'{key}: give a code label such as pw@localhost, not {label!r}')
    _, at, computer = label.partition('@')
    if at:
        _load_computer(f'{key} ({label})', computer)
    try:
        return orm.load_code(label)
    except (NotExistent, MultipleObjectsError):
        raise LaunchInputError(
            f'{key}: code {label!r} does not exist: create it with `aiida-polyhydride setup` (localhost) or '
            '`aiida-polyhydride setup computer FILE.yaml` (a cluster); `verdi code list` shows the codes'
        ) from None


def _load_computer(key: str, label: Any):
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        return orm.load_computer(str(label))
    except NotExistent:
        raise LaunchInputError(
            f'{key}: computer {label!r} does not exist: set it up with `aiida-polyhydride setup computer FILE.yaml`; '
            '`verdi computer list` shows the computers'
        ) from None


def _check_pseudo_family(label: Any, elements: list[str]) -> None:
    from ..workflows.pw import load_pseudo_family

    try:
        load_pseudo_family(str(label), elements)
    except ValueError as exception:
        raise LaunchInputError(str(exception)) from None


def _elements(inputs: Mapping[str, Any]) -> list[str]:
    """The elements the inputs name at the top level (hydrogen always: these are metal hydrides)."""
    elements = {'H'}
    for key in ELEMENT_KEYS:
        value = inputs.get(key)
        elements.update(value if isinstance(value, (list, tuple)) else [value] if value else [])
    return sorted(elements)


def _matching_parameter(key: str, names: list[str]) -> str | None:
    """The one parameter a generic key stands for: 'temperatures' -> 'temperatures_K', 'metal' -> 'element'."""
    stems = {'temperatures': ('temperature',), 'pressures': ('pressure',), 'metal': ELEMENT_KEYS}.get(key)
    if stems is None:
        return None
    candidates = [name for name in names if any(name.lower().startswith(stem) for stem in stems)]
    return candidates[0] if len(candidates) == 1 else None


def _qualified_name(function) -> str:
    return getattr(function, '__qualname__', getattr(function, '__name__', 'the builder'))
