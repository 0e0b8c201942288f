"""Allegro training as AiiDA CalcJobs on real QE labels: model node, calculator, warm start, validation, committee."""

from __future__ import annotations

import numpy as np
import pytest


def test_committee_of_two_gives_two_different_models(tiny_committee):
    models = tiny_committee.outputs.models
    assert set(models) == {'member_0', 'member_1'}
    assert models['member_0'].seed != models['member_1'].seed
    assert models['member_0'].sha256 != models['member_1'].sha256
    spread = tiny_committee.outputs.spread.get_dict()
    assert spread['n_members'] == 2
    assert spread['n_frames'] == 2
    assert spread['sigma_f_mean'] > 0  # different seeds disagree
    assert tiny_committee.outputs.spread.creator.process_label == 'committee_spread'


def test_model_node_records_what_made_it(tiny_committee, qe_dataset):
    model = tiny_committee.outputs.models['member_0']
    assert model.type_names == ['Ca', 'H']
    assert model.r_max == 4.0  # the 'tiny' preset
    assert set(model.base.attributes.get('versions')) == {'nequip', 'nequip-allegro', 'torch'}
    for quantity in ('energy', 'forces', 'stress'):
        assert model.metrics[quantity]['mae'] > 0
        assert model.metrics[quantity]['rmse'] >= model.metrics[quantity]['mae']
    training = model.creator
    assert training.process_label == 'AllegroTrainCalculation'
    assert training.inputs.training_set.uuid == qe_dataset['training'].uuid
    curve = training.outputs.learning_curve
    assert len(curve.get_array('epoch')) == 3  # max_epochs of the 'tiny' preset


def test_calculator_reproduces_the_models_own_predictions(tiny_committee, qe_dataset, model_cache):
    model = tiny_committee.outputs.models['member_0']
    calculator = model.get_calculator(device='cpu', cache=model_cache)
    predictions = model.creator.outputs.validation_predictions.to_ase()
    for frame, predicted in zip(qe_dataset['validation'].to_ase(), predictions, strict=True):
        atoms = frame.copy()
        atoms.calc = calculator
        energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        assert np.isscalar(energy) or np.ndim(energy) == 0
        assert forces.shape == (len(atoms), 3)
        assert stress.shape == (6,)
        # the compiled model agrees with nequip's own test-time predictions: same units (eV, eV/A) and sign
        assert energy == pytest.approx(predicted.get_potential_energy(), abs=1e-3)
        assert np.allclose(forces, predicted.get_forces(), atol=1e-3)
        assert np.allclose(stress, predicted.get_stress(), atol=1e-4)
    compiled = model.compiled_path('cpu', cache=model_cache)
    mtime = compiled.stat().st_mtime_ns
    assert model.compiled_path('cpu', cache=model_cache) == compiled  # cached: not compiled again
    assert compiled.stat().st_mtime_ns == mtime


def test_tampered_package_is_refused(tiny_committee, tmp_path):
    from aiida_polyhydride.runners.compiled_models import CompilationError, compiled_model

    model = tiny_committee.outputs.models['member_1']
    package = model.export(tmp_path / 'model.nequip.zip')
    package.write_bytes(package.read_bytes() + b'x')
    with pytest.raises(CompilationError, match='does not match its recorded sha256'):
        compiled_model(package, model.sha256, cache=tmp_path)


def test_warm_start_begins_from_the_parents_weights(tiny_committee, qe_dataset, run_in_daemon):
    from aiida import orm

    from aiida_polyhydride.calculations.allegro_train import AllegroTrainCalculation

    fresh = tiny_committee.outputs.models['member_0'].creator
    builder = fresh.get_builder_restart()
    builder.parent_model = fresh.outputs.model
    builder.hyperparameters = orm.Dict({**fresh.inputs.hyperparameters.get_dict(), 'max_epochs': 1})
    warm = run_in_daemon(builder)
    assert warm.is_finished_ok, warm.exit_message
    assert warm.process_class is AllegroTrainCalculation
    first_fresh = fresh.outputs.learning_curve.get_array('val_weighted_sum')[0]
    first_warm = warm.outputs.learning_curve.get_array('val_weighted_sum')[0]
    assert first_warm < first_fresh
    assert warm.outputs.model.r_max == fresh.outputs.model.r_max


def test_nan_loss_gives_its_exit_code_and_keeps_the_learning_curve(tiny_committee, run_in_daemon):
    from aiida import orm

    builder = tiny_committee.outputs.models['member_0'].creator.get_builder_restart()
    builder.hyperparameters = orm.Dict({**builder.hyperparameters.get_dict(), 'learning_rate': 1.0e8})
    node = run_in_daemon(builder)
    assert node.exit_status == 340, node.exit_message
    assert 'learning_curve' in node.outputs
    assert 'model' not in node.outputs


@pytest.mark.parametrize(
    ('hyperparameters', 'message'),
    [({'l_max': 7}, 'l_max'), ({'learning_rat': 0.01}, 'learning_rat'), ({'batch_size': 0}, 'batch_size')],
)
def test_bad_hyperparameters_are_refused_before_submission(hyperparameters, message, qe_dataset, isolated_energies):
    from aiida import orm

    from aiida_polyhydride.calculations.allegro_train import AllegroTrainCalculation

    builder = AllegroTrainCalculation.get_builder()
    with pytest.raises(ValueError, match=message):
        builder.hyperparameters = orm.Dict(hyperparameters)


def test_missing_energy_shift_is_refused(qe_dataset):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_polyhydride.calculations.allegro_train import AllegroTrainCalculation

    builder = AllegroTrainCalculation.get_builder()
    builder.code = orm.load_code('python@localhost')
    builder.training_set = qe_dataset['training']
    builder.hyperparameters = orm.Dict({})
    builder.energy_shifts = orm.Dict({'Ca': -1814.0})
    with pytest.raises(ValueError, match='energy_shifts: no per-type energy shift for H'):
        run_get_node(builder)


def test_least_squares_energy_shifts(qe_dataset):
    from aiida_polyhydride.data import fit_energy_shifts

    shifts = fit_energy_shifts(qe_dataset['training']).get_dict()
    assert set(shifts) == {'Ca', 'H'}
    frames = qe_dataset['training'].to_ase()
    predicted = [sum(shifts[symbol] for symbol in frame.get_chemical_symbols()) for frame in frames]
    residual = np.array([frame.get_potential_energy() for frame in frames]) - predicted
    assert np.abs(residual).max() / max(len(frame) for frame in frames) < 1.0  # eV/atom: composition explains most


def test_resume_from_the_remote_checkpoint(tiny_committee, run_in_daemon):
    """What an interrupted (walltime) training does next: continue from checkpoints/last.ckpt of its folder."""
    from aiida import orm

    previous = tiny_committee.outputs.models['member_1'].creator
    builder = previous.get_builder_restart()
    builder.parent_folder = previous.outputs.remote_folder
    builder.hyperparameters = orm.Dict({**previous.inputs.hyperparameters.get_dict(), 'max_epochs': 5})
    node = run_in_daemon(builder)
    assert node.is_finished_ok, node.exit_message
    result = node.outputs.retrieved.base.repository.get_object_content('result.json')
    assert '"resumed": true' in result
    epochs = node.outputs.learning_curve.get_array('epoch')
    assert list(epochs) == [0, 1, 2, 3, 4]  # the earlier metrics and the resumed epochs, once each
    before = previous.outputs.learning_curve.get_array('val_weighted_sum')
    assert np.allclose(node.outputs.learning_curve.get_array('val_weighted_sum')[:3], before)
