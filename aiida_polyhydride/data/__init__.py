"""AiiDA data plugins of aiida-polyhydride."""

from .allegro_potential import AllegroPotentialData
from .training_set import TrainingSetData, fit_energy_shifts, merge_datasets, split_dataset

__all__ = ('AllegroPotentialData', 'TrainingSetData', 'fit_energy_shifts', 'merge_datasets', 'split_dataset')
