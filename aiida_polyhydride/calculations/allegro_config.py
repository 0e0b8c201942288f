"""Allegro (nequip 0.19 / nequip-allegro 0.8) training configurations: presets, validation, the Hydra config dict.

Pure Python (no AiiDA import): an ``AllegroTrainCalculation`` validates its ``hyperparameters`` input with
:func:`validate_hyperparameters` and writes ``yaml.safe_dump(build_config(...))`` as ``<CONFIG_NAME>.yaml`` into its
working directory, then runs (all from the working directory, through :mod:`aiida_polyhydride.runners.train`)::

    nequip-train -cp . -cn config
    nequip-package build checkpoints/best.ckpt model.nequip.zip

The package is compiled where a model is used, for that device
(:func:`aiida_polyhydride.runners.compiled_models.compiled_model`).

Hydra writes into the working directory itself (``hydra.run.dir: .``); see :data:`OUTPUT_FILES` for the files that
the run leaves there. Units follow the data (ASE/extxyz): eV, eV/Angstrom, eV/Angstrom^3.

Hyperparameters (one flat dict; :data:`HYPERPARAMETER_DOCS` documents each key):

========================  =====================================================================================
r_max                     cutoff radius (Angstrom)
l_max                     maximum spherical-harmonic order of the tensor track (0..3)
num_layers                Allegro layers
num_scalar_features       scalar (latent) features per edge; also the embedding dimension
num_tensor_features       tensor features per edge
mlp_width                 width of the hidden layers of every MLP (embedding, Allegro, readout)
mlp_depth                 number of hidden layers of every MLP
num_bessels               radial Bessel basis functions
max_epochs                training epochs
batch_size                training batch size (frames); validation uses ``val_batch_size``
val_batch_size            validation batch size (frames)
learning_rate             Adam learning rate
loss_coeffs               {'energy', 'forces', 'stress'}: weights of the per-atom energy, force and stress MSEs
ema_decay                 decay of the exponential moving average of the weights (validation/checkpoints use it)
lr_patience               ReduceLROnPlateau patience (epochs)
lr_factor                 ReduceLROnPlateau factor (0 < f < 1)
model_dtype               'float32' or 'float64'
accelerator               'cpu' or 'gpu'
devices                   number of devices (GPUs; 1 on CPU)
train_fraction            fraction of the frames used for training when no validation file is given
early_stopping_patience   stop after this many epochs without validation improvement (None: never)
gradient_clip_val         clip the gradient norm to this value (None: no clipping)
========================  =====================================================================================
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping, Sequence

__all__ = (
    'CONFIG_NAME',
    'HYPERPARAMETER_DOCS',
    'MONITOR',
    'OUTPUT_FILES',
    'PRESETS',
    'build_config',
    'validate_hyperparameters',
)

#: the name of the config file (``-cn``) the CalcJob writes next to the data: ``config.yaml``
CONFIG_NAME = 'config'
#: the quantity the checkpoint ``best`` and the learning-rate schedule follow (weighted sum of validation MAEs)
MONITOR = 'val0_epoch/weighted_sum'
#: files a ``nequip-train`` run with :func:`build_config` leaves in its working directory (relative paths)
OUTPUT_FILES = {
    'best_checkpoint': 'checkpoints/best.ckpt',
    'last_checkpoint': 'checkpoints/last.ckpt',
    # one CSVLogger version per nequip-train invocation: version_0 for the run, version_1.. for each resume
    'metrics': 'metrics/version_*/metrics.csv',
    'hparams': 'metrics/version_*/hparams.yaml',
    'log': 'train.log',
    'hydra_config': '.hydra/config.yaml',
    # with a validation file: the best model's predictions on it (the committee spread is computed from these)
    'validation_predictions': 'validation_predictions_dataset0.xyz',
}

_LOSS_KEYS = ('energy', 'forces', 'stress')

HYPERPARAMETER_DOCS = {
    'r_max': 'cutoff radius in Angstrom (> 0)',
    'l_max': 'maximum spherical-harmonic order, integer 0..3',
    'num_layers': 'number of Allegro layers (integer >= 1)',
    'num_scalar_features': 'scalar features per edge (integer >= 1)',
    'num_tensor_features': 'tensor features per edge (integer >= 1)',
    'mlp_width': 'width of the hidden layers of the MLPs (integer >= 1)',
    'mlp_depth': 'hidden layers of the MLPs (integer >= 0)',
    'num_bessels': 'radial Bessel basis functions (integer >= 1)',
    'max_epochs': 'training epochs (integer >= 1)',
    'batch_size': 'training batch size in frames (integer >= 1)',
    'val_batch_size': 'validation batch size in frames (integer >= 1)',
    'learning_rate': 'Adam learning rate (> 0)',
    'loss_coeffs': 'dict {energy, forces, stress} of loss weights (>= 0, not all 0)',
    'ema_decay': 'EMA decay of the weights (0 <= d < 1)',
    'lr_patience': 'ReduceLROnPlateau patience in epochs (integer >= 0)',
    'lr_factor': 'ReduceLROnPlateau factor (0 < f < 1)',
    'model_dtype': "'float32' or 'float64'",
    'accelerator': "'cpu' or 'gpu'",
    'devices': 'number of devices (integer >= 1)',
    'train_fraction': 'training fraction when no validation file is given (0 < f < 1)',
    'early_stopping_patience': 'epochs without improvement before stopping (integer >= 1, or None)',
    'gradient_clip_val': 'gradient-norm clipping value (> 0, or None)',
}

_COMMON = {
    'num_bessels': 8,
    'val_batch_size': 10,
    'loss_coeffs': {'energy': 1.0, 'forces': 1.0, 'stress': 10.0},
    'ema_decay': 0.99,
    'lr_factor': 0.6,
    'model_dtype': 'float32',
    'devices': 1,
    'train_fraction': 0.9,
    'early_stopping_patience': None,
    'gradient_clip_val': None,
}

#: named hyperparameter sets; ``validate_hyperparameters(values, preset)`` merges ``values`` onto one of them
PRESETS = {
    # tests: a few-thousand-parameter model that trains an epoch of ~20 small frames in about a second
    'tiny': {
        **_COMMON,
        'r_max': 4.0,
        'l_max': 1,
        'num_layers': 1,
        'num_scalar_features': 16,
        'num_tensor_features': 4,
        'mlp_width': 16,
        'mlp_depth': 1,
        'num_bessels': 6,
        'max_epochs': 3,
        'batch_size': 4,
        'learning_rate': 0.005,
        'lr_patience': 3,
        'accelerator': 'cpu',
    },
    # the reference small CPU model (shared/reference/allegro_small_cpu.yaml): ~9k parameters, ~1.5 s/epoch on
    # 160 frames of 24-48 atoms on 2 cores
    'cpu': {
        **_COMMON,
        'r_max': 5.0,
        'l_max': 1,
        'num_layers': 1,
        'num_scalar_features': 32,
        'num_tensor_features': 8,
        'mlp_width': 32,
        'mlp_depth': 1,
        'max_epochs': 50,
        'batch_size': 4,
        'learning_rate': 0.004,
        'lr_patience': 3,
        'accelerator': 'cpu',
    },
    # production size on one GPU (Allegro paper/tutorial range); too slow for a CPU (~73 s/epoch already at
    # l_max 2, 2 layers, 32 features on 160 frames here)
    'gpu': {
        **_COMMON,
        'r_max': 5.5,
        'l_max': 2,
        'num_layers': 2,
        'num_scalar_features': 64,
        'num_tensor_features': 32,
        'mlp_width': 128,
        'mlp_depth': 2,
        'max_epochs': 500,
        'batch_size': 4,
        'learning_rate': 0.002,
        'lr_patience': 10,
        'lr_factor': 0.5,
        'accelerator': 'gpu',
        'early_stopping_patience': 50,
    },
}

_POSITIVE_INT = {
    'num_layers',
    'num_scalar_features',
    'num_tensor_features',
    'mlp_width',
    'num_bessels',
    'max_epochs',
    'batch_size',
    'val_batch_size',
    'devices',
}
_NON_NEGATIVE_INT = {'mlp_depth', 'lr_patience'}
_CHOICES = {'model_dtype': ('float32', 'float64'), 'accelerator': ('cpu', 'gpu')}


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_value(key: str, value) -> None:
    def fail(expected: str):
        raise ValueError(f'hyperparameter `{key}`: expected {expected}, got {value!r}')

    if key in _POSITIVE_INT:
        if not _is_int(value) or value < 1:
            fail('an integer >= 1')
    elif key in _NON_NEGATIVE_INT:
        if not _is_int(value) or value < 0:
            fail('an integer >= 0')
    elif key in _CHOICES:
        if value not in _CHOICES[key]:
            fail(' or '.join(repr(choice) for choice in _CHOICES[key]))
    elif key == 'l_max':
        if not _is_int(value) or not 0 <= value <= 3:
            fail('an integer in 0..3')
    elif key in ('r_max', 'learning_rate'):
        if not _is_real(value) or value <= 0:
            fail('a number > 0')
    elif key == 'ema_decay':
        if not _is_real(value) or not 0 <= value < 1:
            fail('a number in [0, 1)')
    elif key in ('lr_factor', 'train_fraction'):
        if not _is_real(value) or not 0 < value < 1:
            fail('a number in (0, 1)')
    elif key == 'early_stopping_patience':
        if value is not None and (not _is_int(value) or value < 1):
            fail('an integer >= 1 or None')
    elif key == 'gradient_clip_val':
        if value is not None and (not _is_real(value) or value <= 0):
            fail('a number > 0 or None')
    elif key == 'loss_coeffs':
        if not isinstance(value, Mapping):
            fail(f'a dict with keys {", ".join(_LOSS_KEYS)}')
        unknown = sorted(set(value) - set(_LOSS_KEYS))
        if unknown:
            raise ValueError(
                f'hyperparameter `loss_coeffs`: unknown key(s) {", ".join(map(str, unknown))}; '
                f'allowed: {", ".join(_LOSS_KEYS)}'
            )
        for name, coeff in value.items():
            if not _is_real(coeff) or coeff < 0:
                raise ValueError(f'hyperparameter `loss_coeffs.{name}`: expected a number >= 0, got {coeff!r}')
        if not any(value.get(name, 0) > 0 for name in _LOSS_KEYS):
            fail('at least one positive coefficient')


def validate_hyperparameters(values: Mapping | None = None, preset: str = 'tiny') -> dict:
    """``values`` merged onto ``PRESETS[preset]`` and checked; ValueError names the offending key.

    ``loss_coeffs`` merges key by key (``{'stress': 1.0}`` keeps the preset's energy and force weights).
    ``devices`` > 1 needs ``accelerator='gpu'``.
    """
    if preset not in PRESETS:
        raise ValueError(f'preset `{preset}` is unknown; allowed: {", ".join(PRESETS)}')
    values = dict(values or {})
    unknown = sorted(set(values) - set(PRESETS[preset]))
    if unknown:
        raise ValueError(
            f'hyperparameter `{unknown[0]}` is unknown; allowed: {", ".join(sorted(PRESETS[preset]))}'
            + (f' (also unknown: {", ".join(unknown[1:])})' if len(unknown) > 1 else '')
        )
    merged = copy.deepcopy(PRESETS[preset])
    for key, value in values.items():
        if key == 'loss_coeffs':
            _check_value(key, value)
            merged[key] = {**merged[key], **dict(value)}
        else:
            merged[key] = value
    for key, value in merged.items():
        _check_value(key, value)
    if merged['devices'] > 1 and merged['accelerator'] != 'gpu':
        raise ValueError(f"hyperparameter `devices`: {merged['devices']} devices need accelerator 'gpu'")
    # plain Python numbers (e.g. numpy scalars from a caller) so that yaml.safe_dump accepts the config
    for key in ('r_max', 'learning_rate', 'ema_decay', 'lr_factor', 'train_fraction'):
        merged[key] = float(merged[key])
    if merged['gradient_clip_val'] is not None:
        merged['gradient_clip_val'] = float(merged['gradient_clip_val'])
    for key in (*_POSITIVE_INT, *_NON_NEGATIVE_INT, 'l_max'):
        merged[key] = int(merged[key])
    if merged['early_stopping_patience'] is not None:
        merged['early_stopping_patience'] = int(merged['early_stopping_patience'])
    merged['loss_coeffs'] = {name: float(merged['loss_coeffs'].get(name, 0.0)) for name in _LOSS_KEYS}
    return merged


def _check_types(type_names: Sequence[str], per_type_energy_shifts: Mapping[str, float]) -> list[str]:
    type_names = [str(name) for name in type_names]
    if not type_names or len(set(type_names)) != len(type_names):
        raise ValueError(f'type_names: expected distinct chemical symbols, got {type_names!r}')
    missing = [name for name in type_names if name not in per_type_energy_shifts]
    extra = [name for name in per_type_energy_shifts if name not in type_names]
    if missing or extra:
        raise ValueError(
            f'per_type_energy_shifts: needs exactly one energy per type {type_names}; '
            f'missing {missing or "none"}, extra {extra or "none"}'
        )
    for name in type_names:
        if not _is_real(per_type_energy_shifts[name]):
            raise ValueError(f'per_type_energy_shifts: `{name}` is not a finite number')
    return type_names


def _model_section(hp: dict, type_names: list[str], shifts: dict, seed: int, parent_model: str | None) -> dict:
    if parent_model is not None:
        # warm start: architecture and weights from the parent package; only the per-type energy shifts are reset
        # (to this dataset's isolated-atom energies; a no-op when they are the parent's). The packaged model has
        # its own r_max, type names, avg_num_neighbors and scales; the architectural hyperparameters are ignored.
        return {
            '_target_': 'nequip.model.modify',
            'model': {'_target_': 'nequip.model.ModelFromPackage', 'package_path': str(parent_model)},
            'modifiers': [{'modifier': 'modify_PerTypeScaleShift', 'shifts': shifts, 'shifts_trainable': False}],
        }
    width, depth = hp['mlp_width'], hp['mlp_depth']
    return {
        '_target_': 'allegro.model.AllegroModel',
        'seed': int(seed),
        'model_dtype': hp['model_dtype'],
        'type_names': type_names,
        'r_max': hp['r_max'],
        'radial_chemical_embed': {
            '_target_': 'allegro.nn.TwoBodyBesselScalarEmbed',
            'num_bessels': hp['num_bessels'],
            'bessel_trainable': False,
            'polynomial_cutoff_p': 6,
        },
        'radial_chemical_embed_dim': hp['num_scalar_features'],
        'scalar_embed_mlp_hidden_layers_depth': depth,
        'scalar_embed_mlp_hidden_layers_width': width,
        'scalar_embed_mlp_nonlinearity': 'silu',
        'l_max': hp['l_max'],
        'num_layers': hp['num_layers'],
        'num_scalar_features': hp['num_scalar_features'],
        'num_tensor_features': hp['num_tensor_features'],
        'allegro_mlp_hidden_layers_depth': depth,
        'allegro_mlp_hidden_layers_width': width,
        'allegro_mlp_nonlinearity': 'silu',
        'parity': True,
        'tp_path_channel_coupling': True,
        'readout_mlp_hidden_layers_depth': depth,
        'readout_mlp_hidden_layers_width': width,
        'readout_mlp_nonlinearity': 'silu',
        'avg_num_neighbors': '${training_data_stats:num_neighbors_mean}',
        'per_type_energy_shifts': shifts,
        'per_type_energy_scales': '${training_data_stats:forces_rms}',
        'per_type_energy_scales_trainable': False,
        'per_type_energy_shifts_trainable': False,
        'pair_potential': {
            '_target_': 'nequip.nn.pair_potential.ZBL',
            'units': 'metal',
            'chemical_species': type_names,
        },
    }


def build_config(
    hyperparameters: Mapping,
    type_names: Sequence[str],
    per_type_energy_shifts: Mapping[str, float],
    train_file: str,
    val_file: str | None = None,
    seed: int = 0,
    parent_model: str | None = None,
) -> dict:
    """The nequip 0.19 Hydra config (a plain dict: ``yaml.safe_dump`` it to ``config.yaml``) for one training run.

    Args:
        hyperparameters: a dict as returned by :func:`validate_hyperparameters` (validated again here, on 'tiny').
        type_names: chemical symbols = model atom types, e.g. ``['Ca', 'H']``.
        per_type_energy_shifts: per-type energy shift in eV, normally the isolated-atom DFT energies.
        train_file: extxyz with energy/forces/stress (ASE units and sign); split into train/val by
            ``train_fraction`` when ``val_file`` is None.
        val_file: optional separate validation extxyz.
        seed: model initialisation and data-split seed (committee members differ by seed).
        parent_model: path of a ``.nequip.zip`` package whose architecture and weights initialise the model
            (warm start / fine-tuning); the architectural hyperparameters are then ignored. The package must stay
            at that path until ``nequip-package`` of this run has finished (its checkpoints reference it).
    Files are referenced by the given paths (relative ones are relative to the directory nequip-train runs in).
    """
    hp = validate_hyperparameters(dict(hyperparameters), preset='tiny')
    type_names = _check_types(type_names, per_type_energy_shifts)
    shifts = {name: float(per_type_energy_shifts[name]) for name in type_names}
    if not _is_int(seed) or seed < 0:
        raise ValueError(f'seed: expected an integer >= 0, got {seed!r}')

    monitor = MONITOR
    callbacks = [
        {
            '_target_': 'lightning.pytorch.callbacks.ModelCheckpoint',
            'monitor': monitor,
            'mode': 'min',
            'dirpath': '${hydra:runtime.output_dir}/checkpoints',
            'filename': 'best',
            'save_last': True,
        },
        {'_target_': 'lightning.pytorch.callbacks.LearningRateMonitor', 'logging_interval': 'epoch'},
    ]
    # always present: stops the run at the first non-finite (NaN/inf) validation value (nequip-train itself carries
    # on with NaN weights and exits 0); patience beyond max_epochs when early stopping is not asked for
    patience = hp['early_stopping_patience']
    callbacks.append(
        {
            '_target_': 'lightning.pytorch.callbacks.EarlyStopping',
            'monitor': monitor,
            'mode': 'min',
            'patience': patience if patience is not None else hp['max_epochs'] + 1,
            'check_finite': True,
            'verbose': True,
        }
    )

    if val_file is None:
        split = {'file_path': str(train_file), 'train': hp['train_fraction'], 'val': 1.0 - hp['train_fraction']}
        data_files = {'split_dataset': split}
    else:
        # the validation frames are also the test set: after training, the best model predicts them
        # (validation_predictions_dataset0.xyz), so a committee's spread needs no compiled model in the daemon
        data_files = {
            'train_file_path': str(train_file),
            'val_file_path': str(val_file),
            'test_file_path': str(val_file),
        }
        callbacks.append(
            {
                '_target_': 'nequip.train.callbacks.TestTimeXYZFileWriter',
                'out_file': '${hydra:runtime.output_dir}/validation_predictions',
                'output_fields_from_original_dataset': [],
                'chemical_symbols': type_names,
            }
        )

    trainer = {
        '_target_': 'lightning.Trainer',
        'accelerator': hp['accelerator'],
        'devices': hp['devices'],
        'max_epochs': hp['max_epochs'],
        'check_val_every_n_epoch': 1,
        'log_every_n_steps': 1,
        'enable_progress_bar': False,
        'logger': {
            '_target_': 'lightning.pytorch.loggers.CSVLogger',
            'save_dir': '${hydra:runtime.output_dir}',
            # no fixed version: each nequip-train invocation (a resume too) writes metrics/version_<n>/metrics.csv;
            # a fixed version would make a resumed run delete the earlier metrics.csv
            'name': 'metrics',
        },
        'callbacks': callbacks,
    }
    if hp['gradient_clip_val'] is not None:
        trainer['gradient_clip_val'] = hp['gradient_clip_val']
    if hp['devices'] > 1:
        trainer['strategy'] = 'ddp'

    coeffs = hp['loss_coeffs']
    return {
        # Hydra: write into the directory nequip-train runs in (no outputs/<date>/<time>), log to train.log
        'hydra': {
            'run': {'dir': '.'},
            'job': {'chdir': False, 'name': 'train'},
        },
        'run': ['train'] if val_file is None else ['train', 'test'],
        'seed': int(seed),
        'model_type_names': type_names,
        'data': {
            '_target_': 'nequip.data.datamodule.ASEDataModule',
            'seed': int(seed),
            **data_files,
            'transforms': [
                {
                    '_target_': 'nequip.data.transforms.ChemicalSpeciesToAtomTypeMapper',
                    'model_type_names': type_names,
                    'chemical_species_to_atom_type_map': {name: name for name in type_names},
                },
                {'_target_': 'nequip.data.transforms.NeighborListTransform', 'r_max': hp['r_max']},
            ],
            'train_dataloader': {
                '_target_': 'torch.utils.data.DataLoader',
                'batch_size': hp['batch_size'],
                'shuffle': True,
            },
            'val_dataloader': {'_target_': 'torch.utils.data.DataLoader', 'batch_size': hp['val_batch_size']},
            'test_dataloader': {'_target_': 'torch.utils.data.DataLoader', 'batch_size': hp['val_batch_size']},
            'stats_manager': {'_target_': 'nequip.data.CommonDataStatisticsManager', 'type_names': type_names},
        },
        'trainer': trainer,
        'training_module': {
            '_target_': 'nequip.train.EMALightningModule',
            'ema_decay': hp['ema_decay'],
            'loss': {
                '_target_': 'nequip.train.EnergyForceStressLoss',
                'per_atom_energy': True,
                'coeffs': {'total_energy': coeffs['energy'], 'forces': coeffs['forces'], 'stress': coeffs['stress']},
            },
            # every MAE and RMSE is logged (None: logged, not in the weighted sum); the weighted sum of the
            # per-atom energy, force and stress MAEs selects `best` and drives the learning-rate schedule
            'val_metrics': {
                '_target_': 'nequip.train.EnergyForceStressMetrics',
                'coeffs': {
                    'per_atom_energy_mae': 1.0,
                    'forces_mae': 1.0,
                    'stress_mae': 1.0,
                    'per_atom_energy_rmse': None,
                    'forces_rmse': None,
                    'stress_rmse': None,
                    'total_energy_mae': None,
                    'total_energy_rmse': None,
                },
            },
            'test_metrics': '${training_module.val_metrics}',
            'optimizer': {'_target_': 'torch.optim.Adam', 'lr': hp['learning_rate']},
            'lr_scheduler': {
                'scheduler': {
                    '_target_': 'torch.optim.lr_scheduler.ReduceLROnPlateau',
                    'factor': hp['lr_factor'],
                    'patience': hp['lr_patience'],
                },
                'monitor': monitor,
                'interval': 'epoch',
                'frequency': 1,
            },
            'model': _model_section(hp, type_names, shifts, seed, parent_model),
        },
        'global_options': {'allow_tf32': False},
    }
