"""One real pw.x single point of a tiny Ca-H cell, submitted to the daemon of the PostgreSQL + RabbitMQ profile."""

from __future__ import annotations

import numpy as np
import pytest


def test_pw_singlepoint_through_the_daemon(localhost_setup, submit_and_await, cah4_primitive):
    from aiida import orm

    from aiida_polyhydride.setup.computer import LOCALHOST, PW_CODE
    from aiida_polyhydride.workflows.pw import get_singlepoint_builder

    assert len(cah4_primitive) == 5
    structure = orm.StructureData(ase=cah4_primitive)
    builder = get_singlepoint_builder(
        orm.load_code(f'{PW_CODE}@{LOCALHOST}'),
        structure,
        cutoff_scale=2 / 3,  # 30/240 Ry: enough for a smoke test
        overrides={'kpoints_distance': 0.5, 'clean_workdir': True},
    )
    node = submit_and_await(builder, timeout=600)

    assert node.is_finished_ok, node.exit_message
    assert node.inputs.pw.structure.uuid == structure.uuid
    calculation = node.called[-1]
    assert calculation.computer.label == LOCALHOST
    parameters = node.outputs.output_parameters.get_dict()
    assert parameters['wfc_cutoff'] == pytest.approx(30.0 * 13.605693122994, rel=1e-6)  # 'low' cutoff, in eV
    energy_per_atom = parameters['energy'] / len(cah4_primitive)
    assert -500 < energy_per_atom < -100  # Ca semicore PAW + H: hundreds of eV per atom, finite
    forces = node.outputs.output_trajectory.get_array('forces')[-1]
    stress = node.outputs.output_trajectory.get_array('stress')[-1]
    assert forces.shape == (5, 3)
    assert np.allclose(forces.sum(axis=0), 0.0, atol=1e-2)  # Newton's third law in a periodic cell
    assert stress.shape == (3, 3)
    assert np.allclose(stress, stress.T, atol=1e-3)
    # the CaH4 prototype is built as a ~40 GPa cell; pw.x (GPa, positive = compressive) must agree roughly
    assert 10.0 < np.trace(stress) / 3 < 80.0
