"""pw.x single points with forces and stress through aiida-quantumespresso's PwBaseWorkChain."""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.engine import ProcessBuilder
from aiida_quantumespresso.workflows.protocols.utils import recursive_merge
from aiida_quantumespresso.workflows.pw.base import PwBaseWorkChain

from ..setup.cluster import default_job_options
from ..setup.pseudos import DEFAULT_FAMILY


def get_singlepoint_builder(
    code: orm.AbstractCode,
    structure: orm.StructureData,
    pseudo_family: str = DEFAULT_FAMILY,
    protocol: str = 'fast',
    stringency: str | None = None,
    overrides: dict[str, Any] | None = None,
    num_mpiprocs: int = 1,
) -> ProcessBuilder:
    """PwBaseWorkChain builder of an SCF with forces and stress (what a training label needs).

    ``stringency`` picks the family's recommended cutoffs ('low', 'normal', 'high') for families that define
    several, such as the generated ``polyhydride/PBE/PAW``; explicit ``ecutwfc``/``ecutrho`` overrides win. The job
    goes to the account/queue/qos that the code's computer was set up with (``aiida-polyhydride setup computer``).
    """
    overrides = recursive_merge(
        {'pseudo_family': pseudo_family, 'pw': {'parameters': {'CONTROL': {'tprnfor': True, 'tstress': True}}}},
        overrides or {},
    )
    if stringency is not None:
        cutoffs = _family_cutoffs(pseudo_family, structure, stringency)
        overrides = recursive_merge({'pw': {'parameters': {'SYSTEM': cutoffs}}}, overrides)
    return PwBaseWorkChain.get_builder_from_protocol(
        code,
        structure,
        protocol=protocol,
        overrides=overrides,
        options={
            'resources': {'num_machines': 1, 'num_mpiprocs_per_machine': num_mpiprocs},
            **default_job_options(code.computer),
        },
    )


def _family_cutoffs(label: str, structure: orm.StructureData, stringency: str) -> dict[str, float]:
    family = orm.Group.collection.get(label=label)
    ecutwfc, ecutrho = family.get_recommended_cutoffs(structure=structure, stringency=stringency, unit='Ry')
    return {'ecutwfc': ecutwfc, 'ecutrho': ecutrho}
