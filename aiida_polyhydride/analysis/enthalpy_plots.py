"""PNG plots of the enthalpy workflow's tables (matplotlib, Agg backend; no aiida import).

Both functions take the JSON tables the work chain outputs (plain dicts) and write a PNG to a path or a binary file.
"""

from __future__ import annotations

from typing import IO

import numpy as np

__all__ = ['plot_melting_curve', 'plot_reaction_enthalpy']


def _figure():
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(5.5, 4.0), dpi=120)


def _values(series) -> np.ndarray:
    return np.array([np.nan if value is None else value for value in series], dtype=float)


def plot_reaction_enthalpy(dft_table: dict, md_table: dict | None, output: str | IO[bytes]) -> None:
    """Delta H (eV per metal atom) versus P: DFT lines for MH2 + H2 -> MH4 / MH6 and sign changes; MLIP points at T
    for solid (filled) and liquid (open) MH4 products."""
    plt, figure, axes = _figure()
    pressures = np.array(dft_table['pressure_GPa'], dtype=float)
    for (product, reaction), color in zip(sorted(dft_table['reactions'].items()), ('C0', 'C1', 'C2'), strict=False):
        label = f'MH2 + {"" if product == "MH4" else "2 "}H2 -> {product} (DFT, static)'
        axes.plot(pressures, _values(reaction['delta_H']), 'o-', color=color, label=label)
        for crossing in reaction['sign_changes']:
            axes.axvline(crossing['pressure_GPa'], color=color, linestyle=':', linewidth=1)
    for point in (md_table or {}).get('points', []):
        for state, marker in (('solid', 's'), ('liquid', 'D')):
            reaction = point['reactions_MH4'].get(state)
            if reaction and reaction['delta_H'] is not None:
                axes.plot(
                    point['pressure_GPa'], reaction['delta_H'], marker, color='C3',
                    fillstyle='full' if state == 'solid' else 'none',
                    label=f'-> {state} MH4 (MLIP, {point["temperature_K"]:g} K)',
                )  # fmt: skip
    axes.axhline(0.0, color='k', linewidth=0.8)
    axes.set_xlabel('pressure (GPa)')
    axes.set_ylabel('reaction enthalpy (eV per metal atom)')
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axes.legend(unique.values(), unique.keys(), fontsize=7)
    figure.tight_layout()
    figure.savefig(output, format='png')
    plt.close(figure)


def plot_melting_curve(melting_table: dict, output: str | IO[bytes]) -> None:
    """T_m of MH4 versus P: the coexistence bracket (error bar: half width; arrows where only a bound is known) and
    the heating/cooling ramp transitions with the hysteresis estimate."""
    plt, figure, axes = _figure()
    for point in melting_table['points']:
        pressure, bracket = point['pressure_GPa'], point['bracket']
        if bracket['status'] == 'bracketed':
            axes.errorbar(pressure, bracket['melting_temperature'], yerr=bracket['uncertainty'], fmt='o', color='C0',
                          capsize=3, label='coexistence bracket')  # fmt: skip
        elif bracket['solid_below'] is not None:
            axes.plot(pressure, bracket['solid_below'], '^', color='C0', label='coexistence: T_m above')
        elif bracket['liquid_above'] is not None:
            axes.plot(pressure, bracket['liquid_above'], 'v', color='C0', label='coexistence: T_m below')
        hysteresis = point['hysteresis']
        for key, marker, label in (('heating', '1', 'heating ramp T+'), ('cooling', '2', 'cooling ramp T-')):
            if hysteresis[key] is not None:
                axes.plot(pressure, hysteresis[key], marker, color='C1', markersize=10, label=label)
        if hysteresis['melting_temperature'] is not None:
            axes.plot(pressure, hysteresis['melting_temperature'], 's', color='C1', fillstyle='none',
                      label='hysteresis estimate')  # fmt: skip
    axes.set_xlabel('pressure (GPa)')
    axes.set_ylabel('melting temperature of MH4 (K)')
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        unique = dict(zip(labels, handles, strict=True))
        axes.legend(unique.values(), unique.keys(), fontsize=7)
    else:
        axes.text(0.5, 0.5, 'no transition seen', transform=axes.transAxes, ha='center')
    figure.tight_layout()
    figure.savefig(output, format='png')
    plt.close(figure)
