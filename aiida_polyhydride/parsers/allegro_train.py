"""Parser of AllegroTrainCalculation: model, learning curve, metrics, validation predictions; NaN and failures."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
from aiida import orm
from aiida.parsers import Parser

from ..analysis.frames import frames_from_extxyz
from ..analysis.learning_curve import final_metrics, first_nonfinite_epoch, parse_metrics_csv
from ..calculations.allegro_config import validate_hyperparameters
from ..data.allegro_potential import AllegroPotentialData
from ..data.training_set import TrainingSetData


class AllegroTrainParser(Parser):
    """Everything that was produced is output, also when the run failed, so nothing is lost."""

    def parse(self, **kwargs):
        retrieved = self.retrieved
        names = retrieved.base.repository.list_object_names()
        with tempfile.TemporaryDirectory() as directory:
            retrieved.base.repository.copy_tree(directory)
            directory = Path(directory)
            metrics_files = sorted(directory.glob('metrics/version_*/metrics.csv'))
            curve = parse_metrics_csv(metrics_files) if metrics_files else None
            if curve is not None and len(curve['epoch']):
                self.out('learning_curve', _curve_node(curve))

            if 'result.json' not in names:
                return self.exit_codes.ERROR_INTERRUPTED
            result = json.loads((directory / 'result.json').read_text())
            status = result.get('status')
            if status == 'train_failed':
                return self.exit_codes.ERROR_TRAINING_FAILED.format(returncode=result.get('train_returncode'))
            if curve is None or not len(curve['epoch']):
                return self.exit_codes.ERROR_NO_METRICS.format(reason=f'status {status}')
            nonfinite = first_nonfinite_epoch(curve)
            if nonfinite is not None:
                return self.exit_codes.ERROR_NAN_LOSS.format(epoch=nonfinite)
            if status == 'no_checkpoint':
                return self.exit_codes.ERROR_NO_CHECKPOINT
            if status != 'ok':
                return self.exit_codes.ERROR_PACKAGING_FAILED

            best = final_metrics(curve, 'best')
            self.out('metrics', orm.Dict(best))
            self.out('model', self._model(directory / 'model.nequip.zip', best, result['versions']))
            predictions = directory / 'validation_predictions_dataset0.xyz'
            if predictions.is_file():
                self.out('validation_predictions', TrainingSetData(frames_from_extxyz(predictions.read_text())))
        return None

    def _model(self, package: Path, best: dict, versions: dict) -> AllegroPotentialData:
        inputs = self.node.inputs
        species = set(inputs.training_set.species)
        if 'validation_set' in inputs:
            species |= set(inputs.validation_set.species)
        if 'parent_model' in inputs:
            r_max = inputs.parent_model.r_max  # a warm start keeps the parent's architecture
        else:
            r_max = validate_hyperparameters(inputs.hyperparameters.get_dict())['r_max']
        metrics = {
            quantity: {'mae': best[f'{quantity}_mae'], 'rmse': best[f'{quantity}_rmse']}
            for quantity in ('energy', 'forces', 'stress')
        }
        return AllegroPotentialData(
            package, type_names=sorted(species), r_max=r_max, seed=inputs.seed.value, metrics=metrics, versions=versions
        )


def _curve_node(curve: dict[str, np.ndarray]) -> orm.ArrayData:
    node = orm.ArrayData()
    for key, values in curve.items():
        node.set_array(key, np.asarray(values, dtype=float))
    return node
