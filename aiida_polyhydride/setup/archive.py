"""Import an archive into a new profile before its computer and codes exist (a campaign moving machines)."""

from __future__ import annotations

from pathlib import Path

from aiida import orm

from . import SetupError, SetupResult

__all__ = ('setup_archive',)


def setup_archive(path: str | Path) -> SetupResult:
    """Import the archive at ``path`` and give its nodes their caching hashes.

    Imported first, the archive's computer and codes keep their labels (``localhost``, ``pw@localhost``), so the set-up
    steps after this one find and keep them, and runs continued here use the same code nodes: with caching on, a
    calculation that finished before the move is then taken from the cache. Importing an archive twice changes
    nothing.
    """
    from aiida.tools.archive import import_archive

    path = Path(path)
    if not path.is_file():
        raise SetupError(f'archive {path}: no such file')
    before = orm.QueryBuilder().append(orm.Node).count()
    try:
        import_archive(path)
    except Exception as exception:  # aiida raises several types for a file that is not a readable archive
        raise SetupError(f'archive {path}: cannot be imported ({type(exception).__name__}: {exception})') from None
    imported = orm.QueryBuilder().append(orm.Node).count() - before
    if imported == 0:
        return SetupResult('archive', False, f'{path}: every node already in the profile')
    for node in orm.QueryBuilder().append(orm.Node, filters={'extras': {'!has_key': '_aiida_hash'}}).all(flat=True):
        node.base.caching.rehash()
    return SetupResult('archive', True, f'{path}: {imported} nodes imported and hashed for caching')
