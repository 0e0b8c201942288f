"""MDCalculation through the daemon with the session's QE-trained committee: trajectory, deviations, blow-up."""

from __future__ import annotations

import numpy as np
import pytest


def md_builder(tiny_committee, cah4_primitive, model_cache, **parameters):
    from aiida import orm

    from aiida_polyhydride.calculations.md import MDCalculation

    builder = MDCalculation.get_builder()
    builder.code = orm.load_code('python@localhost')
    builder.structure = orm.StructureData(ase=cah4_primitive * (2, 2, 1))
    builder.models = dict(tiny_committee.outputs.models)
    builder.parameters = orm.Dict({'ensemble': 'nvt', 'temperature_K': 1000, 'timestep_fs': 0.5, **parameters})
    # compiled models are machine-specific files: share them between jobs through the cache directory
    builder.metadata.options.environment_variables = {'AIIDA_POLYHYDRIDE_CACHE': str(model_cache)}
    builder.metadata.options.max_wallclock_seconds = 1200
    return builder


def test_nvt_run_outputs_trajectory_and_committee_deviations(
    tiny_committee, cah4_primitive, model_cache, run_in_daemon
):
    node = run_in_daemon(md_builder(tiny_committee, cah4_primitive, model_cache, n_steps=20, dump_every=5))
    assert node.is_finished_ok, node.exit_message
    trajectory = node.outputs.trajectory
    steps = list(trajectory.get_stepids())
    assert steps == sorted(set(steps))
    assert steps[-1] == 20
    assert trajectory.numsites == 20
    assert np.all(np.isfinite(trajectory.get_array('energies')))
    sigma_f = node.outputs.deviations.get_array('sigma_f')
    assert len(sigma_f) == len(steps)
    assert np.all(sigma_f > 0)  # two members with different seeds disagree
    assert np.allclose(trajectory.get_array('sigma_f'), sigma_f)
    assert node.outputs.result['status'] == 'ok'


def test_blowup_guard_keeps_the_partial_trajectory(tiny_committee, cah4_primitive, model_cache, run_in_daemon):
    # the committee always disagrees by more than 1e-4 eV/A: the guard stops after two failed dumps
    builder = md_builder(
        tiny_committee, cah4_primitive, model_cache, n_steps=100, dump_every=5,
        sigma_f_failed=1e-4, max_consecutive_failed=2,
    )  # fmt: skip
    node = run_in_daemon(builder)
    assert node.exit_status == 320, node.exit_message
    assert 'sigma' in node.exit_message.lower()
    assert node.outputs.result['status'] == 'blowup'
    assert node.outputs.result['n_steps_done'] < 100
    assert len(node.outputs.trajectory.get_stepids()) >= 2  # what was dumped before the stop is kept


@pytest.mark.parametrize(
    ('parameters', 'message'),
    [
        ({'ensemble': 'nve', 'temperature_K': 300, 'timestep_fs': 1, 'n_steps': 5}, 'ensemble'),
        ({'temperature_K': 300, 'timestep_fs': -1, 'n_steps': 5}, 'timestep_fs'),
        ({'temperature_K': 300, 'timestep_fs': 1, 'n_steps': 5, 'models': []}, 'set from the `models`'),
        ({'ensemble': 'npt', 'temperature_K': 300, 'timestep_fs': 1, 'n_steps': 5}, 'pressure_GPa'),
    ],
)
def test_bad_md_parameters_are_refused_before_submission(parameters, message):
    from aiida import orm

    from aiida_polyhydride.calculations.md import MDCalculation

    builder = MDCalculation.get_builder()
    with pytest.raises(ValueError, match=message):
        builder.parameters = orm.Dict(parameters)
