"""pw.x single points with forces and stress through aiida-quantumespresso's PwBaseWorkChain."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiida import orm
from aiida.engine import ProcessBuilder
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

from ..setup.cluster import job_options
from ..setup.pseudos import DEFAULT_FAMILY


def load_pseudo_family(label: str, elements: Iterable[str]):
    """The installed pseudo family ``label``; ValueError naming what is missing."""
    from aiida.common.exceptions import NotExistent
    from aiida_pseudo.groups.family import PseudoPotentialFamily

    try:
        family = orm.QueryBuilder().append(PseudoPotentialFamily, filters={'label': label}).one()[0]
    except NotExistent:
        raise ValueError(
            f'pseudo_family: {label!r} is not installed (aiida-pseudo install ..., or aiida-polyhydride setup)'
        ) from None
    missing = sorted(set(elements) - set(family.elements))
    if missing:
        raise ValueError(f'pseudo_family: {label!r} has no pseudopotential for {", ".join(missing)}')
    return family


def recommended_cutoffs(pseudo_family: str, elements: Iterable[str], scale: float = 1.0) -> dict[str, float]:
    """ecutwfc/ecutrho (Ry): the family's recommendation for ``elements`` (default stringency) times ``scale``."""
    elements = sorted(set(elements))
    family = load_pseudo_family(pseudo_family, elements)
    ecutwfc, ecutrho = family.get_recommended_cutoffs(elements=tuple(elements), unit='Ry')
    return {'ecutwfc': round(ecutwfc * scale, 1), 'ecutrho': round(ecutrho * scale, 1)}


def get_singlepoint_builder(
    code: orm.AbstractCode,
    structure: orm.StructureData,
    pseudo_family: str = DEFAULT_FAMILY,
    protocol: str = 'fast',
    cutoff_scale: float = 1.0,
    overrides: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> ProcessBuilder:
    """PwBaseWorkChain builder of an SCF with forces and stress (what a training label needs).

    ``protocol`` is aiida-quantumespresso's (fast / balanced / stringent); cutoffs are the family's recommendation
    times ``cutoff_scale`` unless ``overrides`` set ecutwfc and ecutrho. ``options`` (resources,
    max_wallclock_seconds, queue_name, ...) go to the PwCalculation's ``metadata.options`` over the account/queue/qos
    that the code's computer was set up with (``aiida-polyhydride setup computer``); ranks per node default to the
    computer's ``mpiprocs_per_machine``.
    """
    cutoffs = recommended_cutoffs(pseudo_family, structure.get_symbols_set(), cutoff_scale)
    overrides = recursive_merge(
        {
            'pseudo_family': pseudo_family,
            'pw': {'parameters': {'CONTROL': {'tprnfor': True, 'tstress': True}, 'SYSTEM': cutoffs}},
        },
        overrides or {},
    )
    return PwBaseWorkChain.get_builder_from_protocol(
        code,
        structure,
        protocol=protocol,
        overrides=overrides,
        options=job_options(code.computer, options),
    )
