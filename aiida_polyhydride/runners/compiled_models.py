"""Compile packaged nequip models (``.nequip.zip``) for a device, once, and cache them by content.

Runs wherever a model is used (the AiiDA client for ``AllegroPotentialData.get_calculator``, compute nodes for MD),
so it imports no aiida. The package's sha256 is checked before anything is compiled; the compiled file is keyed by
package sha256 + device + the local nequip / nequip-allegro / torch versions (AOTInductor output is specific to
them), and its own sha256 is checked before it is reused. A lock file per entry makes concurrent users of one
cache compile each model once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

__all__ = ('CompilationError', 'cache_directory', 'compiled_model', 'console_script', 'file_sha256', 'stack_versions')


class CompilationError(RuntimeError):
    """nequip-compile failed, or a file does not match its recorded sha256."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def stack_versions() -> dict[str, str]:
    """Versions of the packages a compiled model depends on, in this environment."""
    return {name: version(name) for name in ('nequip', 'nequip-allegro', 'torch')}


def cache_directory() -> Path:
    """``$AIIDA_POLYHYDRIDE_CACHE`` or ``$XDG_CACHE_HOME/aiida-polyhydride`` (``~/.cache/aiida-polyhydride``)."""
    if 'AIIDA_POLYHYDRIDE_CACHE' in os.environ:
        return Path(os.environ['AIIDA_POLYHYDRIDE_CACHE'])
    return Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'aiida-polyhydride'


def compiled_model(
    package: str | Path,
    sha256: str,
    device: str = 'cpu',
    cache: str | Path | None = None,
    data_path: str | Path | None = None,
    target: str = 'ase',
    threads: int = 1,
) -> Path:
    """Path of ``package`` compiled with AOTInductor for ``device`` and ``target`` (``ase``, or ``pair_allegro`` for
    LAMMPS's pair_style allegro), compiling it on first use.

    ``data_path``: frames with realistic shapes for the compiler (nequip otherwise reads the training data path
    recorded in the package, which need not exist on this machine). ``threads``: on the CPU, the thread count
    AOTInductor generates the kernels for. One (the default) gives serial kernels, which here run a 'cpu'-preset model
    1.7-1.9x as fast as kernels generated for two threads, on one thread and on two alike (the parallel kernels'
    scatters, e.g., must add atomically; benchmarks/README.md, MD). More may pay on a many-core node running one large
    system; not measured.
    """
    if file_sha256(package) != sha256:
        raise CompilationError(f'{package} does not match its recorded sha256 {sha256}: refusing to use it')
    versions = stack_versions()
    tag = hashlib.sha256(repr(sorted(versions.items())).encode()).hexdigest()[:12]
    directory = Path(cache or cache_directory()) / 'compiled'
    threads = threads if device == 'cpu' else None
    device_name = device if threads is None else f'{device}-t{threads}'
    suffix = '' if target == 'ase' else f'-{target}'
    compiled = directory / f'{sha256[:20]}-{device_name}{suffix}-{tag}.nequip.pt2'
    if _is_cached(compiled):
        return compiled
    directory.mkdir(parents=True, exist_ok=True)
    # concurrent jobs on one machine (an exploration grid) wait for the first compilation instead of repeating it
    with open(compiled.with_suffix('.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _is_cached(compiled):
            _compile(package, compiled, device, target, data_path, threads)
    return compiled


def _is_cached(compiled: Path) -> bool:
    checksum = compiled.with_suffix('.sha256')
    return compiled.is_file() and checksum.is_file() and file_sha256(compiled) == checksum.read_text().strip()


def _compile(
    package: str | Path, compiled: Path, device: str, target: str, data_path: str | Path | None, threads: int | None
) -> None:
    with tempfile.TemporaryDirectory(prefix='nequip-compile-', dir=compiled.parent) as workdir:
        # AOTInductor writes its kernels to TORCHINDUCTOR_CACHE_DIR and /tmp/aotinductor_*: keep them per job
        environment = {**os.environ, 'TORCHINDUCTOR_CACHE_DIR': str(Path(workdir) / 'inductor'), 'TMPDIR': workdir}
        if threads is not None:
            environment['OMP_NUM_THREADS'] = str(threads)
        output = Path(workdir) / compiled.name
        command = [
            console_script('nequip-compile'), str(package), str(output),
            '--mode', 'aotinductor', '--device', device, '--target', target,
        ]  # fmt: skip
        if data_path is not None:
            command += ['--data-path', str(data_path)]
        result = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not output.is_file():
            tail = '\n'.join((result.stdout + result.stderr).splitlines()[-20:])
            raise CompilationError(f'nequip-compile failed for {package} on {device} ({result.returncode}):\n{tail}')
        shutil.move(output, compiled)
    compiled.with_suffix('.sha256').write_text(file_sha256(compiled) + '\n')


def console_script(name: str) -> str:
    """A console script (nequip-train, nequip-package, nequip-compile) of this Python environment, which the compute
    node's PATH need not contain; else the one on PATH (packages installed with ``pip --target`` keep theirs apart)."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.is_file() else (shutil.which(name) or name)
