"""Locally made pseudopotentials: ld1.x inputs shipped with the package, or files of the system's QE data.

Nothing here downloads anything or imports aiida. ``generate_pseudopotentials`` writes one UPF file per element
into a directory; ``aiida_polyhydride.setup.pseudos`` installs that directory as an aiida-pseudo family.

Ca (PBE PAW, 3s3p semicore) is generated with ld1.x from the input in this folder. H is Debian's
``H.pbe-kjpaw.UPF`` (package quantum-espresso-data): a PAW generated the same way with ld1.x, whose augmentation is
tuned so that dense Ca-H cells show no negative charge density; our first own H input did, and its SCF diverged.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = (
    'LD1_INPUTS',
    'QE_DATA_FILES',
    'PseudoGenerationError',
    'generate_pseudopotential',
    'generate_pseudopotentials',
    'wrap_upf_lines',
)

PSEUDO_DIRECTORY = Path(__file__).parent

#: element -> ld1.x input file shipped in this folder (PBE PAW; Ca with 3s3p semicore states in valence)
LD1_INPUTS: dict[str, Path] = {
    'Ca': PSEUDO_DIRECTORY / 'Ca.pbe-spn-kjpaw.ld1.in',
}
#: element -> UPF file name in the system's Quantum ESPRESSO pseudopotential data
QE_DATA_FILES: dict[str, str] = {
    'H': 'H.pbe-kjpaw.UPF',
}
QE_DATA_DIRECTORY = Path('/usr/share/espresso/pseudo')

#: recommended cutoffs (wavefunction, charge density) in Ry per stringency for the family made from these files.
#: 'normal' is the value the H PAW needs for ~meV/atom total energies (30/240 Ry is ~30 meV/atom off);
#: 'low' is for tests and smoke runs only.
RECOMMENDED_CUTOFFS_RY: dict[str, tuple[float, float]] = {
    'low': (30.0, 240.0),
    'normal': (45.0, 360.0),
    'high': (60.0, 480.0),
}

# pw.x 6.7 (xmltools) cannot read the very long numeric lines that ld1.x writes into the UPF.
MAX_UPF_LINE_LENGTH = 120
_NUMERIC_LINE = re.compile(r'^[\s0-9eEdD+\-.]+$')
_UPF_OUTPUT = re.compile(r"file_pseudopw\s*=\s*'([^']+)'")


class PseudoGenerationError(RuntimeError):
    """ld1.x is missing or did not produce a pseudopotential."""


def wrap_upf_lines(text: str, values_per_line: int = 4) -> str:
    """Return UPF ``text`` with numeric data lines longer than ``MAX_UPF_LINE_LENGTH`` split into short lines."""
    lines = []
    for line in text.splitlines():
        if len(line) > MAX_UPF_LINE_LENGTH and _NUMERIC_LINE.match(line):
            values = line.split()
            lines.extend(
                '  ' + '  '.join(values[i : i + values_per_line]) for i in range(0, len(values), values_per_line)
            )
        else:
            lines.append(line)
    return '\n'.join(lines) + '\n'


def upf_filename(element: str) -> str:
    """Name of the UPF file that the shipped ld1.x input of ``element`` writes."""
    match = _UPF_OUTPUT.search(_ld1_input(element).read_text())
    if match is None:
        raise PseudoGenerationError(f'{_ld1_input(element)} does not set file_pseudopw')
    return match.group(1)


def generate_pseudopotential(element: str, directory: str | Path, ld1_executable: str = 'ld1.x') -> Path:
    """Run ld1.x on the shipped input of ``element`` and write the wrapped UPF file into ``directory``."""
    ld1_input = _ld1_input(element)
    executable = shutil.which(ld1_executable)
    if executable is None:
        raise PseudoGenerationError(
            f'ld1.x executable {ld1_executable!r} not found on PATH: install Quantum ESPRESSO '
            '(Debian/Ubuntu: apt-get install quantum-espresso) or name an existing pseudo family instead.'
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    filename = upf_filename(element)
    with tempfile.TemporaryDirectory(prefix=f'ld1_{element}_') as workdir:
        result = subprocess.run(
            [executable],
            stdin=ld1_input.open(),
            cwd=workdir,
            capture_output=True,
            text=True,
            check=False,
        )
        generated = Path(workdir) / filename
        if result.returncode != 0 or not generated.is_file():
            tail = '\n'.join((result.stdout + result.stderr).splitlines()[-15:])
            raise PseudoGenerationError(f'ld1.x failed for {element} (exit code {result.returncode}):\n{tail}')
        target = directory / filename
        target.write_text(wrap_upf_lines(generated.read_text()))
    return target


def generate_pseudopotentials(
    directory: str | Path, elements: tuple[str, ...] = ('Ca', 'H'), ld1_executable: str = 'ld1.x'
) -> list[Path]:
    """Write the UPF file of each element into ``directory`` (ld1.x or the system's QE data); return their paths."""
    return [_make_pseudopotential(element, Path(directory), ld1_executable) for element in elements]


def _make_pseudopotential(element: str, directory: Path, ld1_executable: str) -> Path:
    if element in LD1_INPUTS:
        return generate_pseudopotential(element, directory, ld1_executable)
    if element in QE_DATA_FILES:
        source = QE_DATA_DIRECTORY / QE_DATA_FILES[element]
        if not source.is_file():
            raise PseudoGenerationError(
                f"{source} not found: install Quantum ESPRESSO's pseudopotential data "
                '(Debian/Ubuntu: apt-get install quantum-espresso-data) or name an existing pseudo family instead.'
            )
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / source.name
        target.write_text(wrap_upf_lines(source.read_text()))
        return target
    raise ValueError(
        f'element: no pseudopotential source for {element!r} (ld1.x inputs: {", ".join(sorted(LD1_INPUTS))}; '
        f'QE data: {", ".join(sorted(QE_DATA_FILES))}); install a family such as SSSP with aiida-pseudo and name it.'
    )


def _ld1_input(element: str) -> Path:
    try:
        return LD1_INPUTS[element]
    except KeyError:
        raise ValueError(
            f'element: no ld1.x input is shipped for {element!r} (available: {", ".join(sorted(LD1_INPUTS))}); '
            'install a pseudo family such as SSSP with aiida-pseudo and name it instead.'
        ) from None
