"""AiiDA data plugins of aiida-polyhydride."""

from .training_set import TrainingSetData, merge_datasets

__all__ = ('TrainingSetData', 'merge_datasets')
