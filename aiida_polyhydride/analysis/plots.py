"""PNG figures of the workflows' results: surface melting, active learning (matplotlib Agg: no display). No aiida.

Every function returns the PNG file content as bytes, so a calcfunction can store it as a SinglefileData.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    'plot_density_profiles',
    'plot_force_parity',
    'plot_learning_history',
    'plot_order_map',
    'plot_reaction_map',
    'plot_uptake',
]

_DPI = 120


def _figure(width: float = 6.0, height: float = 4.0):
    from matplotlib.figure import Figure

    # Figure() without pyplot uses the Agg canvas: no global state, safe in a daemon worker
    figure = Figure(figsize=(width, height), layout='constrained')
    return figure, figure.add_subplot()


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=_DPI)
    return buffer.getvalue()


def plot_uptake(time_ps, h_per_metal, rate_per_ps: float | None = None, intercept: float | None = None) -> bytes:
    """H/M of the condensed region versus time (ps), with the fitted uptake line when a rate is given."""
    time_ps, h_per_metal = np.asarray(time_ps, dtype=float), np.asarray(h_per_metal, dtype=float)
    figure, axes = _figure()
    axes.plot(time_ps, h_per_metal, 'o-', markersize=3, label='condensed region')
    if rate_per_ps is not None and intercept is not None and np.isfinite(rate_per_ps):
        axes.plot(time_ps, intercept + rate_per_ps * time_ps, '--', label=f'fit: {rate_per_ps:+.3g} H/M per ps')
    axes.set_xlabel('time (ps)')
    axes.set_ylabel('H/M')
    axes.legend()
    return _png(figure)


def plot_order_map(time_ps, z, q6, threshold: float, molten_top=None, molten_bottom=None) -> bytes:
    """Heat map of the metal q6-bar per layer (z, Angstrom) versus time (ps); the colour scale is centred on the
    solid/liquid ``threshold``. Empty bins (no slab metal) are blank. Molten depths (Angstrom) are shown below."""
    time_ps, z, q6 = np.asarray(time_ps, dtype=float), np.asarray(z, dtype=float), np.asarray(q6, dtype=float)
    with_depth = molten_top is not None and molten_bottom is not None
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 6.0 if with_depth else 4.2), layout='constrained')
    axes = figure.subplots(2 if with_depth else 1, 1, sharex=True, squeeze=False)[:, 0]
    # cell edges from centres; a single frame gets a unit-width column
    dt = np.diff(time_ps).mean() if len(time_ps) > 1 else 1.0
    t_edges = np.concatenate([time_ps - dt / 2, [time_ps[-1] + dt / 2]])
    dz = np.diff(z).mean() if len(z) > 1 else 1.0
    z_edges = np.concatenate([z - dz / 2, [z[-1] + dz / 2]])
    norm = TwoSlopeNorm(vcenter=threshold, vmin=min(0.0, threshold - 1e-3), vmax=max(0.7, threshold + 1e-3))
    mesh = axes[0].pcolormesh(t_edges, z_edges, np.ma.masked_invalid(q6), cmap='coolwarm_r', norm=norm)
    figure.colorbar(mesh, ax=axes[0], label=f'metal q6-bar (solid >= {threshold:.2f})')
    axes[0].set_ylabel('z along the normal (Angstrom)')
    if with_depth:
        axes[1].plot(time_ps, molten_top, 'o-', markersize=3, label='top face')
        axes[1].plot(time_ps, molten_bottom, 's-', markersize=3, label='bottom face')
        axes[1].set_ylabel('molten depth (Angstrom)')
        axes[1].legend()
    axes[-1].set_xlabel('time (ps)')
    return _png(figure)


def plot_density_profiles(profiles: Mapping[str, tuple[Sequence[float], Mapping[str, Sequence[float]]]]) -> bytes:
    """Number density (atoms / Angstrom^3) versus z (Angstrom) per species, one line style per profile.

    ``profiles``: {label (e.g. 'initial', 'final'): (z centres, {species: density})}; one panel per species.
    """
    species = sorted({s for _, densities in profiles.values() for s in densities})
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 2.4 * len(species) + 0.6), layout='constrained')
    axes = figure.subplots(len(species), 1, squeeze=False)[:, 0]
    for ax, symbol in zip(axes, species, strict=True):
        for (label, (z, densities)), style in zip(profiles.items(), ('-', '--', ':', '-.'), strict=False):
            if symbol in densities:
                ax.plot(np.asarray(z), np.asarray(densities[symbol]), style, label=label)
        ax.set_ylabel(f'{symbol} (1/Angstrom^3)')
        ax.legend()
    axes[-1].set_xlabel('z along the normal (Angstrom)')
    return _png(figure)


def plot_reaction_map(temperature, pressure, uptake_rate_per_ps, phases: Sequence[str]) -> bytes:
    """Reaction map: conditions (``temperature`` in K, ``pressure`` in GPa) coloured by the uptake rate (H/M per ps),
    labelled by phase."""
    temperature = np.asarray(temperature, dtype=float)
    pressure = np.asarray(pressure, dtype=float)
    rate = np.nan_to_num(np.asarray(uptake_rate_per_ps, dtype=float), nan=0.0)
    figure, axes = _figure(6.5, 4.5)
    limit = max(float(np.abs(rate).max()), 1e-6)
    points = axes.scatter(temperature, pressure, c=rate, cmap='RdBu_r', vmin=-limit, vmax=limit, s=250, edgecolors='k')
    for t, p, phase in zip(temperature, pressure, phases, strict=True):
        axes.annotate(phase, (t, p), textcoords='offset points', xytext=(0, 14), ha='center', fontsize=8)
    figure.colorbar(points, ax=axes, label='uptake rate (H/M per ps)')
    axes.set_xlabel('temperature (K)')
    axes.set_ylabel('pressure (GPa)')
    axes.margins(0.2)
    return _png(figure)


def plot_learning_history(iterations: Sequence[Mapping]) -> bytes:
    """Active learning: validation force RMSE (meV/Angstrom) and each system's accurate ratio versus iteration."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.0, 3.5), layout='constrained')
    errors, ratios = figure.subplots(1, 2)
    steps = [record['iteration'] for record in iterations]
    errors.plot(steps, [record.get('validation_forces_rmse', np.nan) for record in iterations], 'o-')
    errors.set(xlabel='iteration', ylabel='validation force RMSE (meV/Å)', title='committee error')
    systems = sorted({system for record in iterations for system in record.get('ratios', {})})
    for system in systems:
        values = [record.get('ratios', {}).get(system, {}).get('accurate', np.nan) for record in iterations]
        ratios.plot(steps, values, 'o-', label=system)
    ratios.set(xlabel='iteration', ylabel='accurate ratio', ylim=(-0.05, 1.05), title='exploration')
    if systems:
        ratios.legend(fontsize='small')
    for axes in (errors, ratios):
        axes.set_xticks(steps)
    return _png(figure)


def plot_force_parity(reference, predicted) -> bytes:
    """Model versus reference force components (eV/Angstrom), with the RMSE in the title."""
    reference, predicted = np.ravel(reference), np.ravel(predicted)
    if reference.shape != predicted.shape or not len(reference):
        raise ValueError(
            f'plot_force_parity: need two equal non-empty arrays, got {reference.shape}, {predicted.shape}'
        )
    figure, axes = _figure(4.0, 4.0)
    axes.plot(reference, predicted, '.', markersize=3, alpha=0.6)
    limits = [min(reference.min(), predicted.min()), max(reference.max(), predicted.max())]
    axes.plot(limits, limits, 'k--', linewidth=0.8)
    rmse = float(np.sqrt(np.mean((predicted - reference) ** 2)))
    axes.set(xlabel='DFT force (eV/Å)', ylabel='model force (eV/Å)', title=f'force RMSE {1000 * rmse:.0f} meV/Å')
    axes.set_aspect('equal')
    return _png(figure)
