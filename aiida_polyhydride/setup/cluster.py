"""A computer and its codes from a YAML description: a SLURM cluster over SSH, or this machine's own SLURM.

The description is validated completely before anything is created (:func:`load_description`), so a typo never leaves
half a computer behind; :func:`setup_cluster` is idempotent: a second run with the same file changes nothing and says
so. Templates are in ``workflows/computers/`` of the repository.

Schema (keys not listed here are refused)::

    label: my-cluster                 # required: the AiiDA computer label
    hostname: login.cluster.org       # required
    description: free text
    transport: core.ssh               # required: an aiida.transports entry point (core.local, core.ssh, ...)
    configure: {username: me, key_filename: ~/.ssh/id_ed25519}   # options of `verdi computer configure TRANSPORT`
    scheduler: core.slurm             # required: an aiida.schedulers entry point
    workdir: /scratch/{username}/aiida   # required: absolute; {username} is the remote user
    shebang: '#!/bin/bash'
    mpirun_command: srun -n {tot_num_mpiprocs}   # a string (split like a shell) or a list
    mpiprocs_per_machine: 128         # default number of MPI ranks per node
    memory_per_machine_kb: 250000000  # default memory per node (kB), sent to the scheduler
    minimum_job_poll_interval: 10     # seconds between two scheduler queries
    use_double_quotes: false
    prepend_text: module load ...     # job script lines before every code (module loads)
    append_text: ...
    account: project123               # defaults for the jobs of the plugin's workflows (CalcJob metadata options)
    queue_name: cpu                   # partition of CPU jobs (pw.x, CPU training and MD)
    qos: normal
    gpu:                              # jobs that use GPUs (training with accelerator gpu, MD on cuda)
      queue_name: gpu                 # their partition (default: queue_name above); also account, qos
      gres: gpu                       # core.slurm only: a job of N GPUs asks `#SBATCH --gres=gpu:N` (or gpu:a100)
    codes:
      - label: pw                     # required: the code becomes pw@my-cluster
        executable: /path/to/pw.x     # required; with core.local also a name on PATH
        default_plugin: quantumespresso.pw   # an aiida.calculations entry point
        description: free text
        prepend_text: module load qe  # job script lines before this code only
        append_text: ...
        use_double_quotes: false
        with_mpi: true                # run under mpirun_command (default: the plugin decides)
"""

from __future__ import annotations

import os
import shlex
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import SetupError, SetupResult

#: computer metadata property holding the CalcJob options (account, queue_name, qos) of the YAML description
DEFAULT_OPTIONS_PROPERTY = 'polyhydride_default_options'
JOB_OPTION_KEYS = ('account', 'queue_name', 'qos')
#: computer metadata property holding the `gpu` section of the YAML description: options of jobs that use GPUs
GPU_OPTIONS_PROPERTY = 'polyhydride_gpu_options'
GPU_KEYS = (*JOB_OPTION_KEYS, 'gres')
DEFAULT_GRES = 'gpu'
SLURM = 'core.slurm'

REQUIRED_KEYS = ('label', 'hostname', 'transport', 'scheduler', 'workdir')
OPTIONAL_KEYS = (
    'description',
    'configure',
    'shebang',
    'mpirun_command',
    'mpiprocs_per_machine',
    'memory_per_machine_kb',
    'minimum_job_poll_interval',
    'use_double_quotes',
    'prepend_text',
    'append_text',
    *JOB_OPTION_KEYS,
    'gpu',
    'codes',
)
CODE_REQUIRED_KEYS = ('label', 'executable')
CODE_OPTIONAL_KEYS = ('default_plugin', 'description', 'prepend_text', 'append_text', 'use_double_quotes', 'with_mpi')
LOCAL_TRANSPORT = 'core.local'


@dataclass(frozen=True)
class CodeDescription:
    label: str
    executable: str
    default_plugin: str | None = None
    description: str = ''
    prepend_text: str = ''
    append_text: str = ''
    use_double_quotes: bool = False
    with_mpi: bool | None = None


@dataclass(frozen=True)
class ComputerDescription:
    """A validated YAML description; build it with :func:`load_description` or :func:`validate_description`."""

    label: str
    hostname: str
    transport: str
    scheduler: str
    workdir: str
    description: str = ''
    configure: dict[str, Any] = field(default_factory=dict)
    shebang: str = '#!/bin/bash'
    mpirun_command: tuple[str, ...] = ('mpirun', '-np', '{tot_num_mpiprocs}')
    mpiprocs_per_machine: int | None = None
    memory_per_machine_kb: int | None = None
    minimum_job_poll_interval: float | None = None
    use_double_quotes: bool = False
    prepend_text: str = ''
    append_text: str = ''
    job_options: dict[str, str] = field(default_factory=dict)
    gpu_options: dict[str, str] = field(default_factory=dict)
    codes: tuple[CodeDescription, ...] = ()

    @property
    def is_local(self) -> bool:
        return self.transport == LOCAL_TRANSPORT


def load_description(path: str | os.PathLike) -> ComputerDescription:
    """Read and validate the YAML file ``path``; raise SetupError with one clear line if anything is wrong."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exception:
        raise SetupError(f'cannot read computer description {str(path)!r}: {exception.strerror or exception}') from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exception:
        where = getattr(exception, 'problem_mark', None)
        line = f' (line {where.line + 1})' if where is not None else ''
        problem = getattr(exception, 'problem', None) or 'invalid YAML'
        raise SetupError(f'{path}: not valid YAML{line}: {problem}') from None
    try:
        return validate_description(data)
    except SetupError as exception:
        raise SetupError(f'{path}: {exception}') from None


def validate_description(data: Any) -> ComputerDescription:
    """Check a parsed description (keys, types, entry points, placeholders); no profile or connection is needed."""
    from aiida.plugins.entry_point import get_entry_point_names

    if not isinstance(data, dict):
        raise SetupError(f'the description must be a mapping of keys such as {", ".join(REQUIRED_KEYS)}')
    _check_keys(data, REQUIRED_KEYS, OPTIONAL_KEYS, 'computer')
    values = {key: _string(data, key, 'computer') for key in (*REQUIRED_KEYS, 'description', 'shebang')}
    values.update({key: _string(data, key, 'computer', allow_empty=True) for key in ('prepend_text', 'append_text')})
    values = {key: value for key, value in values.items() if value is not None}

    _check_entry_point(values['transport'], 'transport', get_entry_point_names('aiida.transports'))
    _check_entry_point(values['scheduler'], 'scheduler', get_entry_point_names('aiida.schedulers'))
    _check_workdir(values['workdir'])
    values['configure'] = _check_configure(data.get('configure'), values['transport'])

    if data.get('mpirun_command') is not None:
        values['mpirun_command'] = _check_mpirun(data['mpirun_command'], values['scheduler'])
    for key in ('mpiprocs_per_machine', 'memory_per_machine_kb'):
        if data.get(key) is not None:
            values[key] = _positive(data[key], key, int)
    if data.get('minimum_job_poll_interval') is not None:
        values['minimum_job_poll_interval'] = float(
            _positive(data['minimum_job_poll_interval'], 'minimum_job_poll_interval', (int, float))
        )
    if data.get('use_double_quotes') is not None:
        values['use_double_quotes'] = _boolean(data['use_double_quotes'], 'use_double_quotes')
    values['job_options'] = {
        key: value for key in JOB_OPTION_KEYS if (value := _string(data, key, 'computer')) is not None
    }
    values['gpu_options'] = _check_gpu(data.get('gpu'), values['scheduler'])

    codes = data.get('codes') or []
    if not isinstance(codes, list):
        raise SetupError("'codes' must be a list of mappings with at least 'label' and 'executable'")
    values['codes'] = tuple(_check_code(code, index, values['transport']) for index, code in enumerate(codes))
    labels = [code.label for code in values['codes']]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise SetupError(f'code label(s) {", ".join(duplicates)} appear more than once')
    return ComputerDescription(**values)


def setup_cluster(description: ComputerDescription) -> list[SetupResult]:
    """Create (or check) the computer and its codes in the loaded profile; return what was found or done."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    try:
        computer = orm.load_computer(description.label)
    except NotExistent:
        computer = _create_computer(description)
        results = [SetupResult('computer', True, _summary(description))]
    else:
        results = [_update_computer(computer, description)]

    wanted = description.configure
    current = computer.get_configuration() if computer.is_configured else None
    if current is None or any(current.get(key) != value for key, value in wanted.items()):
        computer.configure(**wanted)
        verb = 'configured' if current is None else 'reconfigured'
        shown = ', '.join(f'{key}={value}' for key, value in wanted.items()) or 'transport defaults'
        results.append(SetupResult('configuration', True, f'{description.label}: {verb} ({shown})'))

    results.extend(_setup_code(computer, code, description.is_local) for code in description.codes)
    return results


def default_job_options(computer) -> dict[str, str]:
    """CalcJob metadata options (account, queue_name, qos) that the computer's YAML description set as defaults."""
    return dict(computer.get_property(DEFAULT_OPTIONS_PROPERTY, {}) or {})


def job_options(computer, options: Mapping[str, Any] | None = None, gpus: int = 0) -> dict[str, Any]:
    """``metadata.options`` of one of the plugin's jobs on ``computer``.

    From weakest to strongest: the computer's defaults from its YAML description (account, queue_name, qos; for a
    job with ``gpus`` > 0 overlaid by its ``gpu`` section), then ``options``, a workflow step's protocol options with
    the user's overrides (resources, max_wallclock_seconds, withmpi, or a queue_name of their own). GPUs are asked for
    only where the scheduler is core.slurm: ``#SBATCH --gres=<gres>:<gpus>`` is added to custom_scheduler_commands
    unless those already ask for a gres. Other schedulers have no gres: core.direct runs on this machine, whose GPUs
    the job sees anyway, and a ``#SBATCH`` line would be a mere comment in its job script.
    """
    from aiida_quantumespresso.workflows.protocols.utils import recursive_merge

    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
        raise ValueError(f'gpus must be a whole number >= 0, got {gpus!r}')
    defaults: dict[str, Any] = default_job_options(computer)
    gpu_section = dict(computer.get_property(GPU_OPTIONS_PROPERTY, {}) or {}) if gpus else {}
    gres = gpu_section.pop('gres', DEFAULT_GRES)
    defaults.update(gpu_section)
    merged = recursive_merge(defaults, dict(options or {}))
    if gpus and computer.scheduler_type == SLURM:
        commands = merged.get('custom_scheduler_commands', '')
        if '--gres' not in commands:
            merged['custom_scheduler_commands'] = '\n'.join(filter(None, [commands, f'#SBATCH --gres={gres}:{gpus}']))
    return merged


# --- creation ----------------------------------------------------------------------------------------------------


def _mutable_settings(description: ComputerDescription) -> dict[str, tuple[Callable, Callable, Any]]:
    """Computer settings that may change after creation: name -> (getter, setter, wanted value)."""
    from aiida import orm

    def prop(name, default=None):
        return (
            lambda computer: computer.get_property(name, default),
            lambda computer, value: computer.set_property(name, value),
        )

    poll = description.minimum_job_poll_interval
    return {
        'description': (lambda c: c.description, lambda c, v: setattr(c, 'description', v), description.description),
        'workdir': (orm.Computer.get_workdir, orm.Computer.set_workdir, description.workdir),
        'shebang': (orm.Computer.get_shebang, orm.Computer.set_shebang, description.shebang),
        'mpirun_command': (
            lambda c: list(c.get_mpirun_command()),
            orm.Computer.set_mpirun_command,
            list(description.mpirun_command),
        ),
        'mpiprocs_per_machine': (
            orm.Computer.get_default_mpiprocs_per_machine,
            orm.Computer.set_default_mpiprocs_per_machine,
            description.mpiprocs_per_machine,
        ),
        'memory_per_machine_kb': (
            orm.Computer.get_default_memory_per_machine,
            orm.Computer.set_default_memory_per_machine,
            description.memory_per_machine_kb,
        ),
        'minimum_job_poll_interval': (
            *prop(orm.Computer.PROPERTY_MINIMUM_SCHEDULER_POLL_INTERVAL),
            poll,
        ),
        'use_double_quotes': (
            orm.Computer.get_use_double_quotes,
            orm.Computer.set_use_double_quotes,
            description.use_double_quotes,
        ),
        'prepend_text': (orm.Computer.get_prepend_text, orm.Computer.set_prepend_text, description.prepend_text),
        'append_text': (orm.Computer.get_append_text, orm.Computer.set_append_text, description.append_text),
        'default job options': (*prop(DEFAULT_OPTIONS_PROPERTY, {}), description.job_options),
        'gpu job options': (*prop(GPU_OPTIONS_PROPERTY, {}), description.gpu_options),
    }


def _create_computer(description: ComputerDescription):
    from aiida import orm
    from aiida.common.exceptions import ValidationError

    computer = orm.Computer(
        label=description.label,
        hostname=description.hostname,
        description=description.description,
        transport_type=description.transport,
        scheduler_type=description.scheduler,
        workdir=description.workdir,
    )
    for name, (_, setter, value) in _mutable_settings(description).items():
        if value is not None and name not in ('description', 'workdir'):
            setter(computer, value)
    try:
        computer.store()
    except ValidationError as exception:
        raise SetupError(f'computer {description.label!r} is not valid: {exception}') from None
    return computer


def _update_computer(computer, description: ComputerDescription) -> SetupResult:
    """Refuse a different hostname/transport/scheduler; bring the other settings in line with the description."""
    fixed = {
        'hostname': (computer.hostname, description.hostname),
        'transport': (computer.transport_type, description.transport),
        'scheduler': (computer.scheduler_type, description.scheduler),
    }
    different = [f'{name} {have!r} (file: {want!r})' for name, (have, want) in fixed.items() if have != want]
    if different:
        raise SetupError(
            f'computer {description.label!r} exists with another {", ".join(different)}: choose another label, or '
            f'delete it with `verdi computer delete {description.label}` if no calculation used it.'
        )
    changed = []
    for name, (getter, setter, value) in _mutable_settings(description).items():
        if value is not None and getter(computer) != value:
            setter(computer, value)
            changed.append(name)
    if changed:
        return SetupResult('computer', True, f'{description.label}: updated {", ".join(changed)}')
    return SetupResult('computer', False, _summary(description))


def _setup_code(computer, code: CodeDescription, is_local: bool) -> SetupResult:
    from .computer import setup_code

    full_label = f'{code.label}@{computer.label}'
    created, result = setup_code(
        computer,
        code.label,
        code.executable,
        code.default_plugin,
        code.description,
        prepend_text=code.prepend_text,
        append_text=code.append_text,
        use_double_quotes=code.use_double_quotes,
        with_mpi=code.with_mpi,
        resolve=is_local,
    )
    if result.changed:
        return result
    # An existing code is immutable once used: refuse a description that no longer matches it.
    wanted = {
        'default_plugin': (created.default_calc_job_plugin, code.default_plugin),
        'prepend_text': (created.prepend_text, code.prepend_text),
        'append_text': (created.append_text, code.append_text),
        'with_mpi': (created.with_mpi, code.with_mpi),
    }
    if not is_local:
        wanted['executable'] = (str(created.filepath_executable), code.executable)
    different = [f'{name} {have!r} (file: {want!r})' for name, (have, want) in wanted.items() if have != want]
    if different:
        raise SetupError(
            f'code {full_label} exists with another {", ".join(different)}: give the code another label, or '
            f'hide the old one with `verdi code hide {full_label}` and relabel it (`verdi code relabel`).'
        )
    return result


def _summary(description: ComputerDescription) -> str:
    options = ', '.join(f'{key} {value}' for key, value in description.job_options.items())
    return (
        f'{description.label} ({description.hostname}, {description.transport}, {description.scheduler}'
        f'{", " + options if options else ""})'
    )


# --- validation helpers ------------------------------------------------------------------------------------------


def _check_keys(data: dict, required: tuple[str, ...], optional: tuple[str, ...], where: str) -> None:
    unknown = sorted(str(key) for key in data if key not in required and key not in optional)
    if unknown:
        raise SetupError(
            f'unknown key(s) in {where}: {", ".join(unknown)} (allowed: {", ".join((*required, *optional))})'
        )
    missing = [key for key in required if data.get(key) in (None, '')]
    if missing:
        raise SetupError(f'missing required key(s) in {where}: {", ".join(missing)}')


def _string(data: dict, key: str, where: str, allow_empty: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise SetupError(f'{where} key {key!r} must be a non-empty string, not {value!r}')
    return value


def _check_entry_point(name: str, kind: str, known: list[str]) -> None:
    if name not in known:
        raise SetupError(f'unknown {kind} {name!r}: installed {kind}s are {", ".join(sorted(known))}')


def _check_workdir(workdir: str) -> None:
    try:
        expanded = workdir.format(username='user')
    except (KeyError, IndexError, ValueError) as exception:
        raise SetupError(f'workdir {workdir!r}: only the placeholder {{username}} is allowed ({exception})') from None
    if not os.path.isabs(expanded):
        raise SetupError(f'workdir {workdir!r} must be an absolute path')


def _check_configure(configure: Any, transport: str) -> dict[str, Any]:
    import click
    from aiida.cmdline.params.types import AbsolutePathParamType
    from aiida.plugins import TransportFactory

    if configure is None:
        configure = {}
    if not isinstance(configure, dict):
        raise SetupError("'configure' must be a mapping of transport options, e.g. {username: me}")
    options = TransportFactory(transport).auth_options
    unknown = sorted(str(key) for key in configure if key not in options)
    if unknown:
        raise SetupError(
            f'unknown option(s) for transport {transport} in configure: {", ".join(unknown)} '
            f'(allowed: {", ".join(options)})'
        )
    checked = {}
    for key, value in configure.items():
        kind = options[key].get('type')
        if isinstance(kind, AbsolutePathParamType):
            # Checked on the machine that uses it, not here: a template is valid before the key exists.
            if not isinstance(value, str):
                raise SetupError(f'configure option {key!r} must be a path, not {value!r}')
            checked[key] = os.path.abspath(os.path.expanduser(value)) if value else value
            continue
        if kind is None:
            checked[key] = value
            continue
        try:
            checked[key] = click.types.convert_type(kind).convert(value, None, None)
        except click.BadParameter as exception:
            raise SetupError(f'configure option {key!r}: {exception.format_message()}') from None
    return checked


def _check_mpirun(value: Any, scheduler: str) -> tuple[str, ...]:
    from aiida.plugins import SchedulerFactory

    if isinstance(value, str):
        arguments = shlex.split(value)
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        arguments = list(value)
    else:
        raise SetupError(f'mpirun_command must be a string or a list of strings, not {value!r}')
    if not arguments:
        raise SetupError('mpirun_command is empty')
    allowed = {'tot_num_mpiprocs', *SchedulerFactory(scheduler).job_resource_class.get_valid_keys()}
    for argument in arguments:
        for _, name, _, _ in string.Formatter().parse(argument):
            if name is not None and name not in allowed:
                raise SetupError(
                    f'mpirun_command: unknown placeholder {{{name}}} for {scheduler} '
                    f'(allowed: {", ".join(f"{{{key}}}" for key in sorted(allowed))})'
                )
    return tuple(arguments)


def _check_gpu(value: Any, scheduler: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SetupError("'gpu' must be a mapping of options of GPU jobs, e.g. {queue_name: gpu, gres: gpu}")
    _check_keys(value, (), GPU_KEYS, 'gpu')
    checked = {key: _string(value, key, 'gpu') for key in value}
    if 'gres' in checked and scheduler != SLURM:
        raise SetupError(f'gpu: gres is a SLURM option, the scheduler is {scheduler}: remove it')
    return checked


def _positive(value: Any, key: str, kind) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        raise SetupError(f'{key} must be a positive number, not {value!r}')
    return value


def _boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise SetupError(f'{key} must be true or false, not {value!r}')
    return value


def _check_code(data: Any, index: int, transport: str) -> CodeDescription:
    from aiida.plugins.entry_point import get_entry_point_names

    where = f'codes[{index}]'
    if not isinstance(data, dict):
        raise SetupError(f'{where} must be a mapping with at least label and executable, not {data!r}')
    _check_keys(data, CODE_REQUIRED_KEYS, CODE_OPTIONAL_KEYS, where)
    values = {key: _string(data, key, where) for key in (*CODE_REQUIRED_KEYS, 'default_plugin', 'description')}
    values.update({key: _string(data, key, where, allow_empty=True) for key in ('prepend_text', 'append_text')})
    values = {key: value for key, value in values.items() if value is not None}
    where = f'code {values["label"]!r}'
    if '@' in values['label']:
        raise SetupError(f"{where}: the label must not contain '@' (the computer label is added)")
    if transport != LOCAL_TRANSPORT and not values['executable'].startswith('/'):
        raise SetupError(
            f'{where}: executable {values["executable"]!r} must be an absolute path on the remote machine '
            f'(only {LOCAL_TRANSPORT} looks names up on PATH)'
        )
    plugin = values.get('default_plugin')
    if plugin is not None:
        _check_entry_point(plugin, 'calculation plugin', get_entry_point_names('aiida.calculations'))
    for key in ('use_double_quotes', 'with_mpi'):
        if data.get(key) is not None:
            values[key] = _boolean(data[key], f'{where} {key}')
    return CodeDescription(**values)
