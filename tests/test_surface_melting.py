"""SurfaceMeltingWorkChain and its (T, P) scan through the daemon with the session committee on a tiny interface.

Tiny on purpose: a 34-atom CaH2 (P6_3/mmc) slab + H2 interface, 20 + 20 fs of equilibration and 50 fs of production,
so the numbers are not physics; the tests check that every number in the summary is the one its trajectory gives.
The run relabels on uncertainty (a threshold every frame passes): one production frame is labelled with pw.x, the
committee retrained from its members on the grown dataset, and the production run again with it.
"""

from __future__ import annotations

import numpy as np
import pytest

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
TINY = {
    'slab': {'phase': 'MH2-P63mmc', 'miller': [0, 0, 1], 'layers': 2, 'repeats': [1, 1]},
    'reservoir': {'density_g_cm3': 0.35, 'seed': 0},
    'equilibration': {'nvt_ps': 0.02, 'npt_ps': 0.02},
    'md_parameters': {'timestep_fs': 0.5, 'dump_every': 5, 'compile_model': False},  # eager: no compile per model
    'analysis': {'diffusion_windows': 2},
    'options': {'max_wallclock_seconds': 1200},
}
TEMPERATURE, PRESSURE, LENGTH = 300.0, 10.0, 0.05  # K, GPa, ps


def _tiny_builder(workchain, tiny_committee, model_cache, **kwargs):
    from aiida import orm

    builder = workchain.get_builder_from_protocol(
        orm.load_code('python@localhost'), dict(tiny_committee.outputs.models), metal='Ca', protocol='fast', **kwargs
    )
    md = builder.single.md if 'single' in workchain.spec().inputs else builder.md
    # compiled models are machine-specific files: share them between jobs through the cache directory
    md.metadata.options.environment_variables = {'AIIDA_POLYHYDRIDE_CACHE': str(model_cache)}
    return builder


def _relabel_templates(tiny_committee) -> dict:
    """relabel_on_uncertainty inputs: the fast pw.x labelling template and the session committee's own training."""
    from aiida import orm

    from aiida_polyhydride.structures import bulk_phase
    from aiida_polyhydride.workflows.label import LabelWorkChain

    # the template's cutoffs come from the elements of an example structure
    label = LabelWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'), [orm.StructureData(ase=bulk_phase('MH4-I4mmm', 'Ca'))], protocol='fast',
        overrides={'kpoints_distance': 1.0},
    )  # fmt: skip
    train = tiny_committee.get_builder_restart()._inputs(prune=True)
    data = train['train']
    return {
        'label': {key: value for key, value in label._inputs(prune=True).items() if key != 'structures'},
        'train': {**train, 'train': {k: v for k, v in data.items() if k not in RELABEL_DATA}},
        **{key: data[key] for key in RELABEL_DATA},
    }


RELABEL_DATA = ('training_set', 'validation_set', 'energy_shifts')


@pytest.fixture(scope='module')
def melting_run(tiny_committee, model_cache, run_in_daemon):
    from aiida import orm

    from aiida_polyhydride.workflows.surface_melting import SurfaceMeltingWorkChain

    overrides = {
        **TINY,
        'analysis': {**TINY['analysis'], 'sigma_f_lo': 1e-5},  # every frame is uncertain: the run relabels
        'relabel': {'max_frames': 1, 'max_rounds': 1, 'hi': 100.0, 'validation_fraction': 0.0},
    }
    builder = _tiny_builder(
        SurfaceMeltingWorkChain, tiny_committee, model_cache,
        temperature=TEMPERATURE, pressure=PRESSURE, length=LENGTH, overrides=overrides,
    )  # fmt: skip
    for key, value in _relabel_templates(tiny_committee).items():
        builder[key] = value
    builder.relabel_on_uncertainty = orm.Bool(True)
    return run_in_daemon(builder, timeout=1800)  # the first MD compiles the session's models (minutes on a busy CPU)


def _md_stage(node, label):
    (stage,) = [child for child in node.called if child.process_label == 'MDBaseWorkChain' and child.label == label]
    return stage


def _stage_label(stage: str) -> str:
    return f'{stage} {TEMPERATURE} K {PRESSURE} GPa'


def test_equilibration_then_production_continue_from_each_other(melting_run):
    node = melting_run
    assert node.is_finished_ok, node.exit_message
    stages = ('nvt', 'npt', 'production', 'production_2')
    nvt, npt, production, rerun = (_md_stage(node, _stage_label(stage)) for stage in stages)
    parameters = [run.inputs.md.parameters for run in (nvt, npt, production, rerun)]
    assert [p['ensemble'] for p in parameters] == ['nvt', 'npt', 'npt', 'npt']
    assert parameters[2]['n_steps'] == parameters[3]['n_steps'] == round(LENGTH * 1000 / 0.5)
    assert parameters[2]['pressure_GPa'] == PRESSURE
    assert nvt.inputs.md.structure.uuid == node.outputs.interface.uuid
    # each stage starts from the previous stage's last frame
    for previous, following in ((nvt, npt), (npt, production)):
        last = previous.outputs.trajectory.get_positions()[-1]
        assert np.allclose(following.inputs.md.structure.get_ase().positions, last)
        assert following.inputs.md.structure.creator.inputs.trajectory.uuid == previous.outputs.trajectory.uuid
    # the production after relabelling starts again from the equilibrated structure
    assert node.outputs.equilibrated_structure.uuid == production.inputs.md.structure.uuid
    assert rerun.inputs.md.structure.uuid == production.inputs.md.structure.uuid
    assert node.outputs.trajectory.uuid == rerun.outputs.trajectory.uuid


def test_uncertain_frames_are_relabelled_and_the_committee_retrained(melting_run, tiny_committee):
    from aiida.common.links import LinkType

    node = melting_run
    production, rerun = (_md_stage(node, _stage_label(stage)) for stage in ('production', 'production_2'))
    (labelling,) = [child for child in node.called if child.process_label == 'LabelWorkChain']
    (retraining,) = [child for child in node.called if child.process_label == 'CommitteeWorkChain']
    assert labelling.is_finished_ok, labelling.exit_message
    # the labelled frame is a frame of the first production run
    (labelled,) = labelling.outputs.dataset.to_ase()
    frames = production.outputs.trajectory.get_positions()
    assert any(np.allclose(labelled.positions, frame) for frame in frames)
    assert np.isfinite(labelled.get_potential_energy()) and labelled.get_forces().shape == (len(frames[0]), 3)
    # the dataset grew by that label (validation_fraction 0: all to training), the validation set is kept
    inputs = node.inputs
    assert len(node.outputs.training_set) == len(inputs.training_set) + 1
    assert len(node.outputs.validation_set) == len(inputs.validation_set)
    assert retraining.inputs.train.training_set.uuid == node.outputs.training_set.uuid
    # warm start: member i fine-tuned member i of the input committee
    parents = {key: model.uuid for key, model in inputs.models.items()}
    members = retraining.base.links.get_outgoing(link_type=LinkType.CALL_CALC, link_label_filter='member_%').all()
    assert sorted(link.link_label for link in members) == sorted(parents)
    for link in members:
        assert link.node.inputs.parent_model.uuid == parents[link.link_label]
    # the second production ran with the retrained committee, which is output
    retrained = {key: model.uuid for key, model in node.outputs.models.items()}
    assert retrained == {key: model.uuid for key, model in retraining.outputs.models.items()}
    assert {key: model.uuid for key, model in rerun.inputs.md.models.items()} == retrained
    assert set(retrained.values()).isdisjoint(parents.values())
    # round 1's summary is kept; the final summary analyses the second production; max_rounds 1: no third run
    assert node.outputs.earlier_summaries.round_1.creator.inputs.trajectory.uuid == production.outputs.trajectory.uuid
    assert node.outputs.summary.creator.inputs.trajectory.uuid == rerun.outputs.trajectory.uuid
    assert node.outputs.summary['extrapolating']
    assert len([child for child in node.called if child.process_label == 'MDBaseWorkChain']) == 4


def test_relabelling_needs_its_templates(tiny_committee):
    from aiida import orm
    from aiida.engine import run

    from aiida_polyhydride.workflows.surface_melting import SurfaceMeltingWorkChain

    builder = SurfaceMeltingWorkChain.get_builder_from_protocol(
        orm.load_code('python@localhost'), dict(tiny_committee.outputs.models), 'Ca', protocol='fast',
        overrides={'relabel_on_uncertainty': True},
    )  # fmt: skip
    with pytest.raises(ValueError, match='relabel_on_uncertainty needs label, train, training_set'):
        run(builder)
    with pytest.raises(ValueError, match='is not an ActiveLearningWorkChain'):
        SurfaceMeltingWorkChain.get_builder_from_protocol(
            orm.load_code('python@localhost'), None, 'Ca', protocol='fast', active_learning=tiny_committee
        )


def test_summary_numbers_come_from_the_trajectory(melting_run):
    from aiida_polyhydride.analysis.uptake import hydrogen_per_metal

    node = melting_run
    summary, analysis, trajectory = node.outputs.summary, node.outputs.analysis, node.outputs.trajectory
    settings = node.inputs.analysis.get_dict()
    h_per_metal = analysis.get_array('h_per_metal')
    assert len(h_per_metal) == trajectory.numsteps == summary['n_frames'] == LENGTH * 1000 / 0.5 / 5 + 1
    # the first H/M is the condensed region's H/M of the structure the production run started from
    start = hydrogen_per_metal(
        node.outputs.equilibrated_structure.get_ase(), 'Ca', margin=settings['margin'],
        metal_cutoff=settings['metal_cutoff'],
    )  # fmt: skip
    assert h_per_metal[0] == pytest.approx(start['h_per_metal'])
    assert summary['initial_h_per_metal'] == pytest.approx(h_per_metal[0])
    assert summary['final_h_per_metal'] == pytest.approx(h_per_metal[-1])
    assert summary['duration_ps'] == pytest.approx(LENGTH)
    assert summary['max_molten_depth_A'] == pytest.approx(analysis.get_array('molten_depth').max())
    q6 = analysis.get_array('order_q6')
    assert q6.shape == (len(analysis.get_array('order_z')), trajectory.numsteps)
    # uncertainty: the fraction of frames the committee doubts, against the protocol's threshold
    sigma_f = trajectory.get_array('sigma_f')
    assert np.all(sigma_f > 0)  # two members with different seeds always disagree a little
    lo = settings['sigma_f_lo']
    assert summary['uncertainty_fraction'] == pytest.approx(np.mean(sigma_f >= lo))
    assert summary['extrapolating'] == (np.mean(sigma_f >= lo) > settings['max_uncertain_fraction'])
    assert summary['phase'] in ('MH2-Pnma', 'MH2-P63mmc', 'MH4-I4mmm', 'MH6-Im-3m', 'liquid', 'unknown')
    assert summary['temperature_K'] == TEMPERATURE and summary['pressure_GPa'] == PRESSURE


def test_status_shows_the_summary(melting_run, session_shell, aiida_profile):
    summary = melting_run.outputs.summary
    result = session_shell.cli('status', str(melting_run.pk), '-p', aiida_profile.name)
    assert result.returncode == 0, result.stderr
    assert (
        f'H/M {summary["initial_h_per_metal"]:.3f} -> {summary["final_h_per_metal"]:.3f}, max molten depth '
        f'{summary["max_molten_depth_A"]:.1f} A, phase {summary["phase"]}'
    ) in result.stdout


def test_plots_are_png_files(melting_run):
    plots = melting_run.outputs.plots
    assert set(plots) == {'uptake', 'order_map', 'density_profiles'}
    for name in plots:
        with plots[name].open(mode='rb') as handle:
            assert handle.read(8) == PNG_MAGIC


@pytest.mark.parametrize(
    ('port', 'value', 'message'),
    [
        ('metal', 'Xx', 'not a chemical element'),
        ('slab', {'phase': 'MH3-Fm-3m'}, 'slab.phase'),
        ('slab', {'phase': 'MH2-Pnma', 'layers': 0}, 'slab.layers'),
        ('reservoir', {'n_molecules': 4, 'reservoir_thickness': 8.0}, 'not both'),
        ('temperature', 0.0, 'temperature must be positive'),
        ('pressure', -5.0, 'pressure must be positive'),
        ('length', 0.0, 'length must be positive'),
        ('md_parameters', {'timestep_fs': 0.5, 'n_steps': 10}, 'set by the work chain'),
        ('md_parameters', {'timestep_fs': 0.5, 'barostat': 'fancy'}, 'barostat'),
        ('analysis', {'max_uncertain_fraction': 2.0}, 'max_uncertain_fraction'),
        ('relabel', {'max_frames': 0}, 'relabel.max_frames'),
        ('relabel', {'validation_fraction': 1.0}, 'relabel.validation_fraction'),
        ('relabel', {'frames': 3}, 'unknown key'),
    ],
)
def test_bad_inputs_are_refused_with_a_message(port, value, message):
    from aiida import orm

    from aiida_polyhydride.workflows.surface_melting import SurfaceMeltingWorkChain

    node = {str: orm.Str, float: orm.Float, dict: orm.Dict}[type(value)](value)
    builder = SurfaceMeltingWorkChain.get_builder()
    with pytest.raises(ValueError, match=message):
        setattr(builder, port, node)


def test_models_must_know_the_metal(tiny_committee):
    from aiida import orm
    from aiida.engine import run

    from aiida_polyhydride.workflows.surface_melting import SurfaceMeltingWorkChain

    builder = SurfaceMeltingWorkChain.get_builder_from_protocol(
        orm.load_code('python@localhost'), dict(tiny_committee.outputs.models), 'La', protocol='fast'
    )
    with pytest.raises(ValueError, match='no atom type for La'):
        run(builder)


def test_scan_over_two_pressures_gives_the_reaction_map(tiny_committee, model_cache, run_in_daemon):
    from aiida_polyhydride.workflows.surface_melting import SurfaceMeltingScanWorkChain

    overrides = {**TINY, 'equilibration': {'nvt_ps': 0.0, 'npt_ps': 0.0}}  # production only: keep the test short
    builder = _tiny_builder(
        SurfaceMeltingScanWorkChain, tiny_committee, model_cache,
        temperatures=[TEMPERATURE], pressures=[20.0, 10.0], length=0.025, overrides=overrides,
    )  # fmt: skip
    node = run_in_daemon(builder, timeout=1800)
    assert node.is_finished_ok, node.exit_message
    runs = sorted(
        (child for child in node.called if child.process_label == 'SurfaceMeltingWorkChain'),
        key=lambda child: child.inputs.pressure.value,
    )
    assert [run.inputs.pressure.value for run in runs] == [10.0, 20.0]
    assert all(len([c for c in run.called if c.process_label == 'MDBaseWorkChain']) == 1 for run in runs)
    table = node.outputs.table
    assert np.array_equal(table.get_array('pressure_GPa'), [10.0, 20.0])  # sorted by T, then P
    assert np.array_equal(table.get_array('temperature_K'), [TEMPERATURE] * 2)
    rows = node.outputs.reaction_map['rows']
    for run, row, rate in zip(runs, rows, table.get_array('uptake_rate_per_ps'), strict=True):
        summary = run.outputs.summary
        assert row['final_h_per_metal'] == pytest.approx(summary['final_h_per_metal'])
        assert row['phase'] == summary['phase']
        assert rate == pytest.approx(summary['uptake_rate_per_ps'])
        grew = summary['final_h_per_metal'] > summary['initial_h_per_metal']
        assert row['absorbs'] == (grew and summary['uptake_rate_per_ps'] > 0)
    with node.outputs.plot.open(mode='rb') as handle:
        assert handle.read(8) == PNG_MAGIC
