"""TrainingSetData: an immutable set of (labelled) frames stored as one extxyz file in the node repository."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from aiida import orm
from aiida.engine import calcfunction
from ase import Atoms

from ..analysis.frames import (
    UNITS,
    frames_from_extxyz,
    frames_to_extxyz,
    least_squares_energy_shifts,
    unique_frames,
    validate_frames,
)

__all__ = ('TrainingSetData', 'fit_energy_shifts', 'merge_datasets', 'split_dataset')


class TrainingSetData(orm.Data):
    """Frames (ase.Atoms) with their labels, as one extxyz file; ``len(node)`` is the number of frames.

    Attributes: ``n_frames``, ``species``, ``n_atoms_total``, ``sha256`` (of the file), ``properties`` (labels every
    frame carries: energy, forces, stress), ``units``. Per-frame provenance lives in each frame's ``info``
    (e.g. ``label_uuid``, ``origin_builder``, ``origin_iteration``, ``origin_system``, ``origin_temperature_K``,
    ``origin_pressure_GPa``).
    """

    FILENAME = 'frames.extxyz'

    def __init__(self, frames: Sequence[Atoms] | None = None, labelled: bool = True, **kwargs):
        super().__init__(**kwargs)
        if frames is not None:
            self._set_frames(list(frames), labelled)

    @classmethod
    def from_ase(cls, frames: Sequence[Atoms], labelled: bool = True) -> TrainingSetData:
        """A new (unstored) node of ``frames``; ``labelled=False`` accepts frames without energy/forces."""
        return cls(frames, labelled=labelled)

    def _set_frames(self, frames: list[Atoms], labelled: bool) -> None:
        properties = validate_frames(frames, labelled=labelled)
        content = frames_to_extxyz(frames).encode()
        self.base.repository.put_object_from_bytes(content, self.FILENAME)
        self.base.attributes.set_many(
            {
                'n_frames': len(frames),
                'species': sorted({symbol for frame in frames for symbol in frame.get_chemical_symbols()}),
                'n_atoms_total': sum(len(frame) for frame in frames),
                'sha256': hashlib.sha256(content).hexdigest(),
                'properties': list(properties),
                'units': {key: UNITS[key] for key in properties},
            }
        )

    def to_ase(self) -> list[Atoms]:
        """The frames, with labels as SinglePointCalculator results; the file's sha256 is checked first."""
        content = self.base.repository.get_object_content(self.FILENAME, mode='rb')
        if hashlib.sha256(content).hexdigest() != self.sha256:
            raise ValueError(f'TrainingSetData<{self.pk}>: {self.FILENAME} does not match its recorded sha256')
        return frames_from_extxyz(content.decode())

    def __len__(self) -> int:
        return self.n_frames

    @property
    def n_frames(self) -> int:
        return self.base.attributes.get('n_frames')

    @property
    def species(self) -> list[str]:
        return self.base.attributes.get('species')

    @property
    def n_atoms_total(self) -> int:
        return self.base.attributes.get('n_atoms_total')

    @property
    def sha256(self) -> str:
        return self.base.attributes.get('sha256')

    @property
    def properties(self) -> list[str]:
        return self.base.attributes.get('properties')

    @property
    def is_labelled(self) -> bool:
        return {'energy', 'forces'} <= set(self.properties)

    def __str__(self) -> str:
        return f'{super().__str__()} [{self.n_frames} frames, {"/".join(self.species)}, {"+".join(self.properties)}]'


@calcfunction
def merge_datasets(**datasets: TrainingSetData) -> TrainingSetData:
    """Union of ``datasets`` (in the order of their sorted keyword names) without structurally identical frames.

    All inputs must carry the same label properties, so the union is a consistent training set.
    """
    if not datasets:
        raise ValueError('merge_datasets: give at least one dataset')
    properties = {name: tuple(dataset.properties) for name, dataset in datasets.items()}
    if len(set(properties.values())) > 1:
        listing = ', '.join(f'{name}: {"+".join(value) or "unlabelled"}' for name, value in sorted(properties.items()))
        raise ValueError(f'merge_datasets: datasets carry different properties ({listing})')
    frames = [frame for name in sorted(datasets) for frame in datasets[name].to_ase()]
    labelled = all(dataset.is_labelled for dataset in datasets.values())
    return TrainingSetData(unique_frames(frames), labelled=labelled)


@calcfunction
def fit_energy_shifts(dataset: TrainingSetData) -> orm.Dict:
    """{element: eV} per-type energy shifts fitted by least squares to the dataset's energies (by composition)."""
    return orm.Dict(least_squares_energy_shifts(dataset.to_ase()))


@calcfunction
def split_dataset(
    dataset: TrainingSetData, validation_fraction: orm.Float, seed: orm.Int
) -> dict[str, TrainingSetData]:
    """Random split into ``training`` and ``validation`` (at least one frame each; seeded)."""
    frames = dataset.to_ase()
    if len(frames) < 2 or not 0.0 < validation_fraction.value < 1.0:
        raise ValueError(
            f'split_dataset: need >= 2 frames and 0 < fraction < 1, got {len(frames)}, {validation_fraction.value}'
        )
    order = np.random.default_rng(seed.value).permutation(len(frames))
    n_validation = min(len(frames) - 1, max(1, round(validation_fraction.value * len(frames))))
    validation, training = sorted(order[:n_validation]), sorted(order[n_validation:])
    return {
        'training': TrainingSetData([frames[index] for index in training]),
        'validation': TrainingSetData([frames[index] for index in validation]),
    }
