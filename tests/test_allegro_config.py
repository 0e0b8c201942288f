"""Allegro training configs (pure Python) and one real nequip-train -> package chain on the 'tiny'
preset with synthetic Morse-labelled Ca-H frames; the learning-curve parser on the metrics.csv it writes
(compiling and the ASE calculator: test_md_runner, on the session committee)."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.io import write

from aiida_polyhydride.analysis.learning_curve import (
    final_metrics,
    first_nonfinite_epoch,
    parse_metrics_csv,
    sorted_versions,
)
from aiida_polyhydride.analysis.synthetic import synthetic_cah_frames
from aiida_polyhydride.calculations.allegro_config import (
    CONFIG_NAME,
    OUTPUT_FILES,
    PRESETS,
    build_config,
    validate_hyperparameters,
)

BIN = Path(sys.executable).parent
SHIFTS = {'Ca': 0.0, 'H': 0.0}


# --- validation -------------------------------------------------------------------------------------------------


def test_presets_validate():
    for name, preset in PRESETS.items():
        assert validate_hyperparameters({}, name) == validate_hyperparameters(preset, name)
    assert validate_hyperparameters({'l_max': 2}, 'cpu')['l_max'] == 2
    merged = validate_hyperparameters({'loss_coeffs': {'stress': 1.0}})
    assert merged['loss_coeffs'] == {'energy': 1.0, 'forces': 1.0, 'stress': 1.0}


def test_unknown_key_and_preset():
    with pytest.raises(ValueError, match=r'`n_layers` is unknown; allowed: .*num_layers'):
        validate_hyperparameters({'n_layers': 2})
    with pytest.raises(ValueError, match=r'preset `huge` is unknown; allowed: tiny, cpu, gpu'):
        validate_hyperparameters({}, 'huge')


@pytest.mark.parametrize(
    ('key', 'value'),
    [
        ('l_max', 4),
        ('l_max', -1),
        ('l_max', 1.5),
        ('num_layers', 0),
        ('num_scalar_features', '16'),
        ('batch_size', True),
        ('mlp_depth', -1),
        ('r_max', 0.0),
        ('r_max', float('nan')),
        ('learning_rate', -1e-3),
        ('ema_decay', 1.0),
        ('lr_factor', 1.5),
        ('train_fraction', 1.0),
        ('accelerator', 'tpu'),
        ('model_dtype', 'float16'),
        ('early_stopping_patience', 0),
        ('gradient_clip_val', 0),
        ('devices', 2),  # more than one device needs accelerator gpu
        ('loss_coeffs', {'energy': 0, 'forces': 0, 'stress': 0}),
        ('loss_coeffs', [1, 1, 1]),
    ],
)
def test_bad_values_name_the_key(key, value):
    with pytest.raises(ValueError, match=rf'`{key}'):
        validate_hyperparameters({key: value})


def test_bad_loss_coeffs_keys():
    with pytest.raises(ValueError, match=r'`loss_coeffs`: unknown key\(s\) virial; allowed: energy, forces, stress'):
        validate_hyperparameters({'loss_coeffs': {'virial': 1.0}})
    with pytest.raises(ValueError, match=r'`loss_coeffs.forces`'):
        validate_hyperparameters({'loss_coeffs': {'forces': -1.0}})


def test_build_config_arguments():
    hp = validate_hyperparameters({})
    with pytest.raises(ValueError, match='per_type_energy_shifts'):
        build_config(hp, ['Ca', 'H'], {'Ca': 0.0}, 'train.extxyz')
    with pytest.raises(ValueError, match='type_names'):
        build_config(hp, ['H', 'H'], {'H': 0.0}, 'train.extxyz')
    split = build_config(hp, ['Ca', 'H'], SHIFTS, 'train.extxyz')['data']['split_dataset']
    assert split == {'file_path': 'train.extxyz', 'train': 0.9, 'val': pytest.approx(0.1)}
    warm = build_config(hp, ['Ca', 'H'], {'Ca': -1.0, 'H': -13.6}, 'a.xyz', 'b.xyz', parent_model='parent.nequip.zip')
    model = warm['training_module']['model']
    assert model['model'] == {'_target_': 'nequip.model.ModelFromPackage', 'package_path': 'parent.nequip.zip'}
    assert model['modifiers'][0]['shifts'] == {'Ca': -1.0, 'H': -13.6}


@pytest.mark.parametrize('preset', list(PRESETS))
def test_config_accepted_by_nequip(preset, tmp_path):
    """Hydra composes the written YAML; nequip builds the datamodule, the Allegro model, the loss and the metrics."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_method, instantiate
    from nequip.utils.global_state import set_global_state
    from omegaconf import OmegaConf

    frames = synthetic_cah_frames(6, seed=3)
    write(tmp_path / 'train.extxyz', frames)
    config = build_config(validate_hyperparameters({}, preset), ['Ca', 'H'], SHIFTS, str(tmp_path / 'train.extxyz'))
    (tmp_path / f'{CONFIG_NAME}.yaml').write_text(yaml.safe_dump(config))
    with initialize_config_dir(config_dir=str(tmp_path), version_base=None):
        composed = compose(config_name=CONFIG_NAME)
    assert composed.run == ['train']
    if not OmegaConf.has_resolver('training_data_stats'):
        OmegaConf.register_new_resolver('training_data_stats', lambda name: 1.0)
    set_global_state(**composed.global_options)
    datamodule = instantiate(OmegaConf.to_container(composed.data, resolve=True), _recursive_=False)
    assert type(datamodule).__name__ == 'ASEDataModule'
    module = OmegaConf.to_container(composed.training_module, resolve=True)
    model_config = dict(module['model'])
    model = get_method(model_config.pop('_target_'))(**model_config)  # as nequip.model.modify builds models
    assert model.type_names == ['Ca', 'H']
    assert sum(parameter.numel() for parameter in model.parameters()) > 1000
    for key in ('loss', 'val_metrics'):
        assert type(instantiate(module[key])).__name__ == 'MetricsManager'


# --- learning-curve parser on hand-written CSV -----------------------------------------------------------------

_CSV = """epoch,lr-Adam,step,train_loss_epoch/weighted_sum,val0_epoch/forces_mae,val0_epoch/weighted_sum
,0.01,0,,,
0,,1,,0.5,2.0
0,,1,3.0,,
,0.01,2,,,
1,,3,,0.25,1.0
1,,3,2.0,,
"""


def test_learning_curve_resume_and_nan():
    resumed = """epoch,lr-Adam,step,train_loss_epoch/weighted_sum,val0_epoch/forces_mae,val0_epoch/weighted_sum
,0.005,4,,,
1,,5,,0.2,0.8
1,,5,1.5,,
,0.005,6,,,
2,,7,,nan,nan
2,,7,nan,,
"""
    curve = parse_metrics_csv([_CSV, resumed])
    assert curve['epoch'].tolist() == [0, 1, 2]
    assert curve['lr'].tolist() == [0.01, 0.005, 0.005]
    assert curve['val_forces_mae'][:2].tolist() == [0.5, 0.2]  # the resumed run's epoch 1 replaces the first
    assert first_nonfinite_epoch(curve) == 2
    best = final_metrics(curve)
    assert best['epoch'] == 1 and best['forces_mae'] == pytest.approx(200.0) and best['finite'] is False
    assert best['energy_mae'] is None  # not logged
    assert final_metrics(curve, 'last')['forces_mae'] is None
    assert first_nonfinite_epoch(parse_metrics_csv(_CSV)) is None
    assert str(sorted_versions(['m/version_10/a', 'm/version_2/a'])[0]) == 'm/version_2/a'


# --- the real chain ------------------------------------------------------------------------------------------------


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, 'TMPDIR': str(cwd / 'tmp'), 'TORCHINDUCTOR_CACHE_DIR': str(cwd / 'inductor_cache')}
    (cwd / 'tmp').mkdir(exist_ok=True)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f'{command[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
    return result


def _train(directory: Path, parent_model: str | None = None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    frames = synthetic_cah_frames(30, seed=0)
    write(directory / 'train.extxyz', frames[:24])
    write(directory / 'val.extxyz', frames[24:])
    hyperparameters = validate_hyperparameters({'max_epochs': 3}, 'tiny')
    config = build_config(
        hyperparameters, ['Ca', 'H'], SHIFTS, 'train.extxyz', 'val.extxyz', seed=1, parent_model=parent_model
    )
    (directory / f'{CONFIG_NAME}.yaml').write_text(yaml.safe_dump(config, sort_keys=False))
    _run([str(BIN / 'nequip-train'), '-cp', str(directory), '-cn', CONFIG_NAME], directory)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A 3-epoch 'tiny' run through the real nequip-train, packaged with nequip-package."""
    directory = tmp_path_factory.mktemp('allegro_train')
    _train(directory)
    _run([str(BIN / 'nequip-package'), 'build', OUTPUT_FILES['best_checkpoint'], 'model.nequip.zip'], directory)
    return directory


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_train_outputs_and_learning_curve(trained):
    for key in ('best_checkpoint', 'last_checkpoint', 'log', 'hydra_config'):
        assert (trained / OUTPUT_FILES[key]).is_file(), key
    paths = glob.glob(str(trained / OUTPUT_FILES['metrics']))
    assert [Path(path).parent.name for path in paths] == ['version_0']
    curve = parse_metrics_csv(sorted_versions(paths))
    assert curve['epoch'].tolist() == [0, 1, 2]
    assert curve['validated'].all() and np.all(np.isfinite(curve['train_loss']))
    assert np.all(curve['lr'] == PRESETS['tiny']['learning_rate'])
    metrics = final_metrics(curve)
    for key in ('energy_mae', 'energy_rmse', 'forces_mae', 'forces_rmse', 'stress_mae', 'stress_rmse'):
        assert 0 < metrics[key] < 1e5, key
        assert metrics[key.replace('mae', 'rmse')] >= metrics[key.replace('rmse', 'mae')]
    # the logged values are eV units: final_metrics is 1000x
    assert metrics['forces_mae'] == pytest.approx(1000 * curve['val_forces_mae'][metrics['epoch']])
    assert metrics['finite'] is True and metrics['n_epochs'] == 3


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_warm_start_from_package(trained, tmp_path):
    """A run initialised from the packaged model starts with a lower validation loss than the fresh run did."""
    directory = tmp_path / 'warm'
    directory.mkdir()
    (directory / 'parent.nequip.zip').write_bytes((trained / 'model.nequip.zip').read_bytes())
    _train(directory, parent_model='parent.nequip.zip')  # relative to the run directory, as in a CalcJob
    fresh = parse_metrics_csv(glob.glob(str(trained / OUTPUT_FILES['metrics'])))
    warm = parse_metrics_csv(glob.glob(str(directory / OUTPUT_FILES['metrics'])))
    assert warm['val_weighted_sum'][0] < fresh['val_weighted_sum'][0]
    assert warm['val_weighted_sum'][0] < 1.05 * np.nanmin(fresh['val_weighted_sum'])
    # the warm-started checkpoint packages (nequip-package finds the parent package by its recorded path)
    _run([str(BIN / 'nequip-package'), 'build', OUTPUT_FILES['best_checkpoint'], 'warm.nequip.zip'], directory)
    assert (directory / 'warm.nequip.zip').stat().st_size > 0
