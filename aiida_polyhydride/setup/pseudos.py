"""The pseudopotential family: generated locally with ld1.x by default, or any installed family by label."""

from __future__ import annotations

import tempfile
from pathlib import Path

from aiida import orm
from aiida.common.exceptions import NotExistent

from ..pseudos import RECOMMENDED_CUTOFFS_RY, generate_pseudopotentials
from . import SetupError, SetupResult

DEFAULT_FAMILY = 'polyhydride/PBE/PAW'
REQUIRED_ELEMENTS = ('Ca', 'H')


def setup_pseudo_family(label: str = DEFAULT_FAMILY, elements: tuple[str, ...] = REQUIRED_ELEMENTS) -> SetupResult:
    """Make sure the family ``label`` exists and covers ``elements``.

    The default label is generated from the ld1.x inputs shipped in ``aiida_polyhydride/pseudos`` and installed as an
    aiida-pseudo family with recommended cutoffs; any other label must already be installed (e.g. SSSP with
    ``aiida-pseudo install sssp``).
    """
    try:
        family = orm.Group.collection.get(label=label)
    except NotExistent:
        if label != DEFAULT_FAMILY:
            raise SetupError(
                f'pseudo family {label!r} is not installed: install it with aiida-pseudo '
                f'(e.g. `aiida-pseudo install sssp`) or omit --pseudo-family to generate {DEFAULT_FAMILY!r}.'
            ) from None
        return _install_generated_family(label, elements)

    missing = sorted(set(elements) - set(getattr(family, 'elements', ())))
    if missing:
        raise SetupError(f'pseudo family {label!r} has no pseudopotential for {", ".join(missing)}.')
    return SetupResult('pseudo family', False, f'{label} ({", ".join(sorted(family.elements))})')


def _install_generated_family(label: str, elements: tuple[str, ...]) -> SetupResult:
    from aiida_pseudo.data.pseudo import UpfData
    from aiida_pseudo.groups.family import CutoffsPseudoPotentialFamily

    with tempfile.TemporaryDirectory(prefix='polyhydride_pseudos_') as directory:
        generate_pseudopotentials(directory, elements)
        family = CutoffsPseudoPotentialFamily.create_from_folder(
            Path(directory),
            label,
            description='PBE PAW pseudopotentials: Ca (3s3p semicore) generated with ld1.x from the input in '
            "aiida_polyhydride/pseudos, H from Quantum ESPRESSO's data (H.pbe-kjpaw.UPF).",
            pseudo_type=UpfData,
        )
    for stringency, (ecutwfc, ecutrho) in RECOMMENDED_CUTOFFS_RY.items():
        cutoffs = {element: {'cutoff_wfc': ecutwfc, 'cutoff_rho': ecutrho} for element in elements}
        family.set_cutoffs(cutoffs, stringency, unit='Ry')
    family.set_default_stringency('normal')
    return SetupResult('pseudo family', True, f'{label} ({", ".join(elements)}, made locally)')
