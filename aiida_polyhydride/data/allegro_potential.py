"""AllegroPotentialData: a packaged Allegro model (``nequip-package build`` output) as a node.

The portable ``.nequip.zip`` is the source of truth; device-specific compiled files are made where the model is
used (``get_calculator``) and cached by content, never stored in the database.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from aiida import orm

from ..runners.compiled_models import cache_directory, compiled_model, stack_versions

__all__ = ('AllegroPotentialData',)

METRIC_UNITS = {'energy': 'meV/atom', 'forces': 'meV/Angstrom', 'stress': 'meV/Angstrom^3'}


class AllegroPotentialData(orm.Data):
    """A packaged Allegro model with its type names, cutoff, versions, seed and validation metrics.

    Attributes: ``type_names``, ``r_max`` (Angstrom), ``sha256`` (of the package), ``versions`` (nequip,
    nequip-allegro, torch it was trained with), ``seed``, ``metrics`` ({'energy'|'forces'|'stress':
    {'mae', 'rmse'}} in meV/atom, meV/Angstrom, meV/Angstrom^3), ``metric_units``.
    """

    FILENAME = 'model.nequip.zip'

    def __init__(
        self,
        package: str | Path | None = None,
        *,
        type_names: list[str] | None = None,
        r_max: float | None = None,
        seed: int | None = None,
        metrics: dict[str, dict[str, float]] | None = None,
        versions: dict[str, str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if package is None:
            return
        if not type_names or r_max is None or r_max <= 0:
            raise ValueError('AllegroPotentialData needs type_names and a positive r_max')
        content = Path(package).read_bytes()
        self.base.repository.put_object_from_bytes(content, self.FILENAME)
        self.base.attributes.set_many(
            {
                'type_names': list(type_names),
                'r_max': float(r_max),
                'sha256': hashlib.sha256(content).hexdigest(),
                'seed': seed,
                'metrics': metrics or {},
                'metric_units': METRIC_UNITS,
                'versions': versions or stack_versions(),
            }
        )

    @property
    def type_names(self) -> list[str]:
        return self.base.attributes.get('type_names')

    @property
    def r_max(self) -> float:
        return self.base.attributes.get('r_max')

    @property
    def sha256(self) -> str:
        return self.base.attributes.get('sha256')

    @property
    def seed(self) -> int | None:
        return self.base.attributes.get('seed')

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return self.base.attributes.get('metrics')

    def export(self, path: str | Path) -> Path:
        """Write the package to ``path`` (a ``.nequip.zip`` file); its sha256 is verified."""
        path = Path(path)
        path.write_bytes(self.base.repository.get_object_content(self.FILENAME, mode='rb'))
        if hashlib.sha256(path.read_bytes()).hexdigest() != self.sha256:
            path.unlink()
            raise ValueError(f'AllegroPotentialData<{self.pk}>: the stored package does not match its sha256')
        return path

    def compiled_path(self, device: str = 'cpu', cache: str | Path | None = None) -> Path:
        """The package compiled for ``device`` (AOTInductor), from the cache or compiled now (~30 s on a CPU)."""
        cache = Path(cache or cache_directory())
        package = cache / 'packages' / f'{self.sha256}.nequip.zip'
        if not package.is_file():
            package.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=package.parent, suffix='.tmp', delete=False) as handle:
                temporary = Path(handle.name)
            self.export(temporary).rename(package)
        return compiled_model(package, self.sha256, device=device, cache=cache)

    def get_calculator(self, device: str = 'cpu', cache: str | Path | None = None):
        """An ASE calculator (energy, forces, stress) of this model on ``device``."""
        from nequip.integrations.ase import NequIPCalculator

        return NequIPCalculator.from_compiled_model(
            str(self.compiled_path(device, cache)), device=device, chemical_species_to_atom_type_map=True
        )

    def __str__(self) -> str:
        return f'{super().__str__()} [Allegro {"/".join(self.type_names)}, r_max {self.r_max} A, seed {self.seed}]'
