"""Released potentials: a versioned folder with the committee, its datasets, errors, model card and provenance.

A release is a folder ``<name>/<version>/`` holding ``release.json`` (what is in it, with the sha256 of every file
and the UUID of every node), ``MODEL_CARD.md``, ``models/member_<i>.nequip.zip``, ``training_set.extxyz``,
``validation_set.extxyz``, ``test_set.extxyz`` and ``provenance.aiida`` (the archive of the run that made it).
:func:`write_release` makes one from a finished (or stopped) ActiveLearningWorkChain; :func:`import_release`
puts it into the current profile: the whole archive, or only the models and datasets as new nodes.
Releases are looked up by name in ``$POLYHYDRIDE_POTENTIALS`` (folders separated by ``:``) and in the
``potentials/`` folder of a source checkout.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from aiida import orm

from .analysis.frames import frame_hash, frames_from_extxyz
from .data.allegro_potential import AllegroPotentialData
from .data.training_set import TrainingSetData

__all__ = (
    'ReleaseError',
    'available_releases',
    'find_release',
    'import_release',
    'verify_release',
    'write_release',
)

MANIFEST = 'release.json'
SEARCH_PATH_VARIABLE = 'POLYHYDRIDE_POTENTIALS'
DATASETS = ('training_set', 'validation_set', 'test_set')


class ReleaseError(ValueError):
    """A release that cannot be found, read or trusted."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def search_path() -> list[Path]:
    """Folders holding releases: ``$POLYHYDRIDE_POTENTIALS``, then the checkout's ``potentials/``."""
    folders = [Path(entry) for entry in os.environ.get(SEARCH_PATH_VARIABLE, '').split(':') if entry]
    checkout = Path(__file__).resolve().parents[1] / 'potentials'
    return [*folders, checkout] if checkout.is_dir() else folders


def available_releases() -> list[tuple[str, str, Path]]:
    """(name, version, folder) of every release on the search path."""
    found = []
    for root in search_path():
        for manifest in sorted(root.glob(f'*/*/{MANIFEST}')):
            found.append((manifest.parent.parent.name, manifest.parent.name, manifest.parent))
    return found


def _version_key(version: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in version.lstrip('v').replace('-', '.').split('.'))


def find_release(name: str, version: str | None = None) -> Path:
    """The folder of release ``name`` (a folder with a release.json, or a name on the search path), latest version
    unless ``version`` is given."""
    direct = Path(name)
    if (direct / MANIFEST).is_file():
        return direct
    candidates = [(v, folder) for n, v, folder in available_releases() if n == name and version in (None, v)]
    if not candidates:
        known = ', '.join(f'{n} {v}' for n, v, _ in available_releases()) or 'none'
        wanted = f'{name} {version}' if version else name
        raise ReleaseError(
            f'no release {wanted!r} (a folder with {MANIFEST}, or a name in {[str(p) for p in search_path()]}, '
            f'set by ${SEARCH_PATH_VARIABLE}); available: {known}'
        )
    return max(candidates, key=lambda entry: _version_key(entry[0]))[1]


def verify_release(folder: Path) -> dict:
    """The release's manifest, after checking every file it lists against its sha256 (ReleaseError names the first
    missing or changed file)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exception:
        raise ReleaseError(f'{folder / MANIFEST}: cannot be read as a release manifest ({exception})') from exception
    for relative, expected in manifest.get('files', {}).items():
        path = folder / relative
        if not path.is_file():
            raise ReleaseError(f'{path}: listed in {MANIFEST} but missing')
        if _sha256(path) != expected:
            raise ReleaseError(f'{path}: does not match the sha256 in {MANIFEST}; refusing to use the release')
    return manifest


def write_release(
    run: orm.WorkflowNode,
    folder: Path,
    name: str,
    version: str,
    test_set: TrainingSetData,
    evaluate: Callable[[AllegroPotentialData, TrainingSetData], orm.Dict],
    archive: bool = True,
    notes: str = '',
) -> dict:
    """Write release ``name``/``version`` of ``run``'s committee to ``folder``; return its manifest.

    ``evaluate(model, dataset)`` is the calcfunction giving a model's errors (``potential_errors``): every member is
    evaluated on ``test_set`` (labelled frames the committee was not trained on) and on the validation set.
    """
    from aiida.tools.archive import create_archive

    from .analysis.model_card import model_card

    outputs = run.outputs
    if 'models' not in outputs or 'training_set' not in outputs:
        raise ReleaseError(f'{run.process_label}<{run.pk}> has no models and training_set outputs to release')
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise ReleaseError(f'{folder} exists and is not empty: a release is written once')
    (folder / 'models').mkdir(parents=True)
    seen = {frame_hash(frame) for key in ('training_set', 'validation_set') if key in outputs
            for frame in outputs[key].to_ase()}  # fmt: skip
    overlap = sum(frame_hash(frame) in seen for frame in test_set.to_ase())
    if overlap:
        raise ReleaseError(f'{overlap} frames of the test set are in the training or validation set: not a test set')
    members = {key: outputs.models[key] for key in sorted(outputs.models, key=lambda k: int(k.split('_')[-1]))}
    datasets = {'training_set': outputs.training_set, 'test_set': test_set}
    if 'validation_set' in outputs:
        datasets['validation_set'] = outputs.validation_set
    for key, model in members.items():
        model.export(folder / 'models' / f'{key}.nequip.zip')
    for key, dataset in datasets.items():
        (folder / f'{key}.extxyz').write_bytes(dataset.base.repository.get_object_content(dataset.FILENAME, 'rb'))
    errors = {
        dataset_key: {key: evaluate(model, datasets[dataset_key]) for key, model in members.items()}
        for dataset_key in ('test_set', 'validation_set')
        if dataset_key in datasets
    }
    reference = members[next(iter(members))]
    manifest = {
        'name': name,
        'version': version,
        'created': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'run': {'uuid': run.uuid, 'process_label': run.process_label, 'exit_status': run.exit_status},
        'type_names': reference.type_names,
        'r_max': reference.r_max,
        'versions': reference.base.attributes.get('versions'),
        'models': {
            key: {'uuid': model.uuid, 'sha256': model.sha256, 'seed': model.seed, 'file': f'models/{key}.nequip.zip'}
            for key, model in members.items()
        },
        'datasets': {
            key: {'uuid': dataset.uuid, 'n_frames': len(dataset), 'file': f'{key}.extxyz'}
            for key, dataset in datasets.items()
        },
        'errors': {
            dataset_key: {key: {'uuid': node.uuid, **node.get_dict()} for key, node in nodes.items()}
            for dataset_key, nodes in errors.items()
        },
        'trust_window': outputs.trust_window.get_dict() if 'trust_window' in outputs else None,
        'history': outputs.history.get_dict() if 'history' in outputs else None,
        'dft': _dft_settings(run),
        'notes': notes,
    }
    if archive:
        create_archive([run, *(node for nodes in errors.values() for node in nodes.values())],
                       filename=folder / 'provenance.aiida')  # fmt: skip
    (folder / 'MODEL_CARD.md').write_text(model_card(manifest))
    files = sorted(path for path in folder.rglob('*') if path.is_file())
    manifest['files'] = {str(path.relative_to(folder)): _sha256(path) for path in files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + '\n')
    return manifest


def _dft_settings(run: orm.WorkflowNode) -> dict:
    """Cutoffs, smearing, k spacing and pseudopotentials of the run's labels (from its first pw.x)."""
    calculation = (
        orm.QueryBuilder()
        .append(orm.WorkflowNode, filters={'id': run.pk}, tag='run')
        .append(
            orm.CalcJobNode,
            with_ancestors='run',
            filters={'attributes.process_label': 'PwCalculation', 'attributes.exit_status': 0},
            project='*',
        )
        .first(flat=True)
    )
    if calculation is None:
        return {}
    parameters = calculation.inputs.parameters.get_dict()
    system = parameters.get('SYSTEM', {})
    base = calculation.caller
    return {
        'code': 'Quantum ESPRESSO pw.x',
        'functional': 'PBE',
        'ecutwfc_Ry': system.get('ecutwfc'),
        'ecutrho_Ry': system.get('ecutrho'),
        'smearing': system.get('smearing'),
        'degauss_Ry': system.get('degauss'),
        'kpoints_distance_per_A': base.inputs.kpoints_distance.value if 'kpoints_distance' in base.inputs else None,
        'pseudopotentials': {
            kind: {'filename': pseudo.filename, 'md5': pseudo.md5}
            for kind, pseudo in calculation.inputs.pseudos.items()
        },
    }


def import_release(folder: Path, archive: bool = True) -> dict[str, orm.Node]:
    """Put the release in ``folder`` into the current profile; return its nodes by role (``member_<i>``, datasets).

    ``archive``: import ``provenance.aiida`` (the whole run) and return its nodes; otherwise (or where the release
    ships no archive) store the models and datasets as new nodes. Either way the nodes go into the group
    ``potentials/<name>/<version>``; a release imported before is not imported again.
    """
    folder = Path(folder)
    manifest = verify_release(folder)
    group, _ = orm.Group.collection.get_or_create(label=f'potentials/{manifest["name"]}/{manifest["version"]}')
    imported = group.base.extras.get('roles', None)
    if imported:
        return {key: orm.load_node(uuid) for key, uuid in imported.items()}
    if archive and (folder / 'provenance.aiida').is_file():
        from aiida.tools.archive import import_archive

        import_archive(folder / 'provenance.aiida')
        nodes = {key: orm.load_node(entry['uuid']) for key, entry in manifest['models'].items()}
        nodes.update({key: orm.load_node(entry['uuid']) for key, entry in manifest['datasets'].items()})
    else:
        nodes = {}
        for key, entry in manifest['models'].items():
            nodes[key] = AllegroPotentialData(
                folder / entry['file'],
                type_names=manifest['type_names'],
                r_max=manifest['r_max'],
                seed=entry['seed'],
                versions=manifest['versions'],
            )
        for key, entry in manifest['datasets'].items():
            nodes[key] = TrainingSetData(frames_from_extxyz((folder / entry['file']).read_text()))
        for key, node in nodes.items():
            node.label = f'{manifest["name"]} {manifest["version"]} {key}'
            node.description = f'from the release folder {folder} (models and datasets only, no provenance)'
            node.store()
    group.add_nodes(list(nodes.values()))
    group.base.extras.set('roles', {key: node.uuid for key, node in nodes.items()})
    return nodes
