"""The model card of a released potential (Markdown), written from its release manifest."""

from __future__ import annotations

import statistics

__all__ = ('model_card',)

_COLUMNS = (
    ('energy_rmse_meV_per_atom', 'E RMSE (meV/atom)', '.1f'),
    ('forces_rmse_meV_per_A', 'F RMSE (meV/Å)', '.0f'),
    ('stress_rmse_GPa', 'stress RMSE (GPa)', '.2f'),
)


def _row(label: str, entry: dict) -> str:
    values = [f'{entry[key]:{fmt}}' if entry.get(key) is not None else '' for key, _, fmt in _COLUMNS]
    return f'| {label} | {entry["n_frames"]} | ' + ' | '.join(values) + ' |'


def error_table(errors: dict) -> str:
    """Per-system table of one model's errors (``prediction_errors`` output)."""
    lines = ['| system | frames | ' + ' | '.join(title for _, title, _ in _COLUMNS) + ' |', '|---' * 5 + '|']
    lines += [_row(system, entry) for system, entry in errors['systems'].items()]
    lines.append(_row('**all**', errors['all']))
    return '\n'.join(lines)


def _spread(errors_by_member: dict, key: str) -> str:
    values = [errors['all'][key] for errors in errors_by_member.values() if errors['all'].get(key) is not None]
    if not values:
        return 'n/a'
    return f'{statistics.mean(values):.3g} (members {min(values):.3g}-{max(values):.3g})'


def _dft_line(dft: dict) -> str:
    pseudos = ', '.join(
        f'{kind} `{entry["filename"]}` (md5 {entry["md5"]})' for kind, entry in dft.get('pseudopotentials', {}).items()
    )
    return (
        f'{dft.get("code", "pw.x")}, {dft.get("functional", "PBE")}, '
        f'{dft.get("ecutwfc_Ry")}/{dft.get("ecutrho_Ry")} Ry, '
        f'{dft.get("smearing")} smearing {dft.get("degauss_Ry")} Ry, '
        f'k spacing {dft.get("kpoints_distance_per_A")} 1/Å; pseudopotentials: {pseudos}'
    )


def model_card(manifest: dict) -> str:
    """Markdown: what the potential is, its DFT settings, domain, errors per system, trust window and limits."""
    dft = manifest.get('dft') or {}
    window = manifest.get('trust_window') or {}
    history = manifest.get('history') or {}
    datasets = manifest['datasets']
    member_0 = next(iter(manifest['models']))
    lines = [
        f'# {manifest["name"]} {manifest["version"]}: a committee of {len(manifest["models"])} Allegro models',
        '',
        f'Elements {", ".join(manifest["type_names"])}; cutoff radius {manifest["r_max"]} Å; made by '
        f'{manifest["run"]["process_label"]} `{manifest["run"]["uuid"]}` (exit status {manifest["run"]["exit_status"]})'
        f' on {manifest["created"]}. `{member_0}` drives MD; the others give the committee deviation.',
        '',
        manifest.get('notes', '').strip(),
        '',
        '## DFT labels',
        '',
        _dft_line(dft),
        '',
        '## Data',
        '',
        '| set | frames | role |',
        '|---|---|---|',
        f'| training | {datasets["training_set"]["n_frames"]} | fitted |',
    ]
    if 'validation_set' in datasets:
        lines.append(f'| validation | {datasets["validation_set"]["n_frames"]} | early stopping and learning rate |')
    lines += [
        f'| test | {datasets["test_set"]["n_frames"]} | never seen in training: the errors below |',
        '',
        f'## Errors of `{member_0}` on the test set, per system',
        '',
        error_table(manifest['errors']['test_set'][member_0]),
        '',
        'Committee, all systems (mean over members, range): energy RMSE '
        f'{_spread(manifest["errors"]["test_set"], "energy_rmse_meV_per_atom")} meV/atom, force RMSE '
        f'{_spread(manifest["errors"]["test_set"], "forces_rmse_meV_per_A")} meV/Å.',
        '',
        '## Trust window and the loop',
        '',
        f'Committee force deviation sigma_F: frames below {window.get("lo", "n/a")} eV/Å are trusted, above '
        f"{window.get('hi', 'n/a')} eV/Å they are outside the training domain (calibrated to the loop's target "
        'force error).',
    ]
    records = history.get('iterations', [])
    if records:
        lines += [
            '',
            '| iteration | training frames | validation F RMSE (meV/Å) | lowest accurate ratio | labels added |',
            '|---|---|---|---|---|',
        ]
        for record in records:
            ratios = [entry['accurate'] for entry in record.get('ratios', {}).values()]
            lowest = f'{min(ratios):.2f}' if ratios else ''
            rmse = record.get('validation_forces_rmse')
            lines.append(
                f'| {record["iteration"]} | {record.get("n_training", "")} | {"" if rmse is None else f"{rmse:.0f}"} '
                f'| {lowest} | {record.get("labels_added", "")} |'
            )
    lines += [
        '',
        '## Valid for, and not',
        '',
        'Valid where the training data are: the systems in the table, at the pressures and temperatures the loop '
        'explored (`release.json`). Check the committee deviation of every production run against the trust window '
        '(SurfaceMeltingWorkChain does, and relabels with `relabel_on_uncertainty`). Not valid for other elements, '
        'for vacuum surfaces or isolated molecules far from the training densities, or for any quantity beyond the '
        'PBE labels it reproduces (PBE itself: no van der Waals, no nuclear quantum effects).',
        '',
    ]
    return '\n'.join(lines)
