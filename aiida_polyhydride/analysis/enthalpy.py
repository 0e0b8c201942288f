"""Enthalpies under pressure, hydrogenation reaction enthalpies and melting temperatures (no aiida import).

Units: energies in eV, volumes in Angstrom^3, pressures in GPa, temperatures in K. ``H = E + P V`` with
1 GPa Angstrom^3 = 1/160.21766 eV. Enthalpies are per formula unit: one metal atom for MH_x, one molecule for H2.

Reactions: MH2 + (x-2)/2 H2 -> MH_x (x = 4: MH2 + H2 -> MH4; x = 6: MH2 + 2 H2 -> MH6). At each pressure the lowest
enthalpy phase of each role is used (e.g. the lower of the two MH2 polymorphs); phases whose value is NaN (a failed
relaxation) are skipped, and a reaction with a missing role is NaN at that pressure.

Melting: a solid-liquid coexistence run at T either grows its solid (T < T_m) or melts it (T > T_m); T_m is bracketed
by the highest temperature whose solid survived and the lowest whose solid melted. A heating ramp melts the solid
above T_m (superheating), a cooling ramp freezes the liquid below it (undercooling); the hysteresis estimate of
Luo, Strachan and Swift (J. Chem. Phys. 120, 11640 (2004)) is T_m = T+ + T- - sqrt(T+ T-).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    'GPA_A3_IN_EV',
    'ROLES',
    'block_standard_error',
    'bracket_melting_temperature',
    'coexistence_verdict',
    'enthalpy',
    'hysteresis_melting_temperature',
    'md_enthalpy',
    'phase_role',
    'ramp_transition_temperature',
    'reaction_enthalpies',
    'sign_changes',
    'solid_fraction',
]

#: 1 GPa x 1 Angstrom^3 in eV (1e9 Pa x 1e-30 m^3 = 1e-21 J).
GPA_A3_IN_EV = 1.0 / 160.21766208
#: roles of the phases in the hydrogenation reactions and their H per formula unit
ROLES = {'H2': 2, 'MH2': 2, 'MH4': 4, 'MH6': 6}
#: products of MH2 + (x-2)/2 H2 -> MH_x
PRODUCTS = ('MH4', 'MH6')


def enthalpy(energy, volume, pressure_gpa):
    """H = E + P V in eV (``energy`` eV, ``volume`` Angstrom^3, ``pressure_gpa`` GPa); works on arrays."""
    return (
        np.asarray(energy, dtype=float)
        + np.asarray(pressure_gpa, dtype=float) * np.asarray(volume, dtype=float) * GPA_A3_IN_EV
    )


def phase_role(symbols: Sequence[str]) -> tuple[str, int]:
    """(role, number of formula units) of a cell with chemical ``symbols``.

    Role 'H2' (formula unit: one molecule) for pure hydrogen, 'MH2' / 'MH4' / 'MH6' (formula unit: one metal atom) for
    one metal species with that H/M ratio. Anything else raises ValueError naming the composition.
    """
    symbols = list(symbols)
    n_h = symbols.count('H')
    metals = sorted(set(symbols) - {'H'})
    formula = ''.join(f'{s}{symbols.count(s)}' for s in [*metals, 'H'] if symbols.count(s))
    if not metals:
        if n_h == 0 or n_h % 2:
            raise ValueError(f'{formula or "empty cell"}: a hydrogen cell needs an even, non-zero number of H atoms')
        return 'H2', n_h // 2
    n_metal = symbols.count(metals[0])
    if len(metals) > 1 or n_h % n_metal or f'MH{n_h // n_metal}' not in ROLES:
        raise ValueError(f'{formula}: expected H2, MH2, MH4 or MH6 with one metal species')
    return f'MH{n_h // n_metal}', n_metal


def _lowest(enthalpies: Mapping[str, np.ndarray], names: Sequence[str], n_points: int):
    """Per pressure point: the lowest finite value among ``names`` and the name that has it (None if none)."""
    values = np.full(n_points, np.nan)
    winners: list[str | None] = [None] * n_points
    for name in names:
        for index, value in enumerate(enthalpies[name]):
            if np.isfinite(value) and not value >= values[index]:  # NaN in `values` compares False: first wins
                values[index], winners[index] = value, name
    return values, winners


def reaction_enthalpies(
    pressures: Sequence[float], enthalpies: Mapping[str, Sequence[float]], roles: Mapping[str, str]
) -> dict:
    """Reaction enthalpies of MH2 + (x-2)/2 H2 -> MH_x (eV per metal atom) at each pressure.

    ``enthalpies``: phase name -> enthalpy per formula unit at each of ``pressures`` (NaN where unknown);
    ``roles``: phase name -> 'H2', 'MH2', 'MH4' or 'MH6' (see :func:`phase_role`).

    Returns ``pressure_GPa`` (sorted), per role ``lowest`` (values) and ``lowest_phase`` (names), and per product
    present (MH4, MH6) ``delta_H`` and ``sign_changes`` (:func:`sign_changes`). Negative delta_H: hydrogenation is
    favoured.
    """
    pressures = np.asarray(pressures, dtype=float)
    order = np.argsort(pressures)
    unknown = sorted(set(roles.values()) - set(ROLES))
    if unknown:
        raise ValueError(f'roles: unknown role(s) {unknown}; known: {sorted(ROLES)}')
    missing = sorted(set(roles) ^ set(enthalpies))
    if missing:
        raise ValueError(f'enthalpies and roles must name the same phases; differing: {missing}')
    values = {}
    for name, series in enthalpies.items():
        series = np.asarray(series, dtype=float)
        if series.shape != pressures.shape:
            raise ValueError(f'enthalpies[{name!r}]: {series.shape[0]} values for {len(pressures)} pressures')
        values[name] = series[order]
    lowest, lowest_phase = {}, {}
    for role in ROLES:
        names = sorted(name for name, owner in roles.items() if owner == role)
        if names:
            lowest[role], lowest_phase[role] = _lowest(values, names, len(pressures))
    result = {'pressure_GPa': pressures[order], 'lowest': lowest, 'lowest_phase': lowest_phase, 'delta_H': {}}
    result['sign_changes'] = {}
    if 'MH2' not in lowest or 'H2' not in lowest:
        return result
    for product in PRODUCTS:
        if product in lowest:
            n_h2 = (ROLES[product] - ROLES['MH2']) / 2
            delta = lowest[product] - lowest['MH2'] - n_h2 * lowest['H2']
            result['delta_H'][product] = delta
            result['sign_changes'][product] = sign_changes(result['pressure_GPa'], delta)
    return result


def sign_changes(pressures: Sequence[float], values: Sequence[float]) -> list[dict]:
    """Pressures where ``values`` change sign, by linear interpolation between the bracketing points.

    NaN points are skipped (the bracket is then the nearest finite points on either side). A point exactly at zero
    is a crossing at its own pressure. Each crossing: ``pressure_GPa``, ``bracket_GPa`` [p_low, p_high],
    ``bracket_values`` [v_low, v_high] and ``direction`` ('to_negative': the value falls below zero with pressure).
    """
    pressures, values = np.asarray(pressures, dtype=float), np.asarray(values, dtype=float)
    finite = np.isfinite(values) & np.isfinite(pressures)
    order = np.argsort(pressures[finite])
    p, v = pressures[finite][order], values[finite][order]
    crossings = []
    for i in range(len(p) - 1):
        (p0, p1), (v0, v1) = p[i : i + 2], v[i : i + 2]
        if v0 * v1 < 0:
            at = p0 - v0 * (p1 - p0) / (v1 - v0)
        elif v1 == 0 and v0 != 0:
            at = p1
        else:
            continue
        crossings.append(
            {
                'pressure_GPa': float(at),
                'bracket_GPa': [float(p0), float(p1)],
                'bracket_values': [float(v0), float(v1)],
                'direction': 'to_negative' if v0 > 0 else 'to_positive',
            }
        )
    return crossings


# --- molecular dynamics ----------------------------------------------------------------------------------------------


def block_standard_error(series: Sequence[float], n_blocks: int = 5) -> float:
    """Standard error of the mean of a correlated ``series`` from ``n_blocks`` block averages (NaN if < 2 blocks)."""
    series = np.asarray(series, dtype=float)
    n_blocks = min(n_blocks, len(series))
    if n_blocks < 2:
        return float('nan')
    blocks = np.array([block.mean() for block in np.array_split(series, n_blocks)])
    return float(blocks.std(ddof=1) / np.sqrt(n_blocks))


def md_enthalpy(
    energies: Sequence[float],
    volumes: Sequence[float],
    pressure_gpa: float,
    n_formula_units: int,
    equilibration_fraction: float = 0.2,
) -> dict:
    """Enthalpy per formula unit from an NPT trajectory: (<E_pot> + P <V>) / n (eV), after dropping equilibration.

    ``energies`` (eV, potential) and ``volumes`` (Angstrom^3) per dumped frame; the first ``equilibration_fraction``
    of the frames is discarded (at least one frame is kept). Returns ``enthalpy``, ``enthalpy_error`` (block standard
    error), ``energy``, ``volume`` (per formula unit, means) and ``n_frames`` used.
    """
    energies, volumes = np.asarray(energies, dtype=float), np.asarray(volumes, dtype=float)
    if energies.shape != volumes.shape or energies.ndim != 1 or len(energies) == 0:
        raise ValueError(
            f'energies and volumes: need equal non-empty 1-d series, got {energies.shape}, {volumes.shape}'
        )
    if not 0 <= equilibration_fraction < 1:
        raise ValueError(f'equilibration_fraction must be in [0, 1), got {equilibration_fraction}')
    if n_formula_units < 1:
        raise ValueError(f'n_formula_units must be at least 1, got {n_formula_units}')
    start = min(int(len(energies) * equilibration_fraction), len(energies) - 1)
    series = enthalpy(energies[start:], volumes[start:], pressure_gpa) / n_formula_units
    return {
        'enthalpy': float(series.mean()),
        'enthalpy_error': block_standard_error(series),
        'energy': float(energies[start:].mean() / n_formula_units),
        'volume': float(volumes[start:].mean() / n_formula_units),
        'n_frames': len(series),
    }


# --- melting ---------------------------------------------------------------------------------------------------------


def solid_fraction(frames, metal: str, threshold: float = 0.3, r_max: float | None = None) -> np.ndarray:
    """Per frame: the fraction of ``metal`` atoms whose q6-bar (:func:`.melting.metal_q6`) is >= ``threshold``.

    0.3 sits between the prototypes' metal sublattices (0.42-0.54) and liquid-like cells (~0.1-0.25).
    """
    from .melting import metal_q6

    return np.array([float(np.mean(metal_q6(frame, metal, r_max) >= threshold)) for frame in frames])


def coexistence_verdict(solid_fraction: Sequence[float], tolerance: float = 0.1) -> dict:
    """Did the solid of a two-phase run grow or melt? From the solid fraction of the metal atoms per frame.

    Compares the mean of the last quarter of the frames with the first frame: 'solid' when it rose by more than
    ``tolerance`` or ends fully solid (>= 0.95), 'liquid' when it fell by more than ``tolerance`` or ends fully molten
    (<= 0.05), else 'coexisting' (run longer to decide). Returns ``verdict``, ``initial``, ``final``, ``change``.
    """
    fraction = np.asarray(solid_fraction, dtype=float)
    if fraction.ndim != 1 or len(fraction) < 2:
        raise ValueError('solid_fraction: need at least two frames')
    initial, final = float(fraction[0]), float(fraction[-max(1, len(fraction) // 4) :].mean())
    change = final - initial
    if final <= 0.05 or change < -tolerance:
        verdict = 'liquid'
    elif final >= 0.95 or change > tolerance:
        verdict = 'solid'
    else:
        verdict = 'coexisting'
    return {'verdict': verdict, 'initial': initial, 'final': final, 'change': change}


def bracket_melting_temperature(temperatures: Sequence[float], verdicts: Sequence[str]) -> dict:
    """T_m bracketed by coexistence runs: the highest T that stayed/grew solid and the lowest T that melted.

    Returns ``status``: 'bracketed' (``melting_temperature`` is the midpoint, ``uncertainty`` the half width),
    'above' (every run stayed solid: T_m > the highest T), 'below' (every run melted: T_m < the lowest T),
    'inconsistent' (a run melted below one that stayed solid: longer runs or larger cells needed) or 'undecided';
    plus ``solid_below`` and ``liquid_above`` (K or None). 'coexisting' runs narrow nothing.
    """
    if len(temperatures) != len(verdicts):
        raise ValueError(f'{len(temperatures)} temperatures but {len(verdicts)} verdicts')
    solid = [float(t) for t, v in zip(temperatures, verdicts, strict=True) if v == 'solid']
    liquid = [float(t) for t, v in zip(temperatures, verdicts, strict=True) if v == 'liquid']
    low, high = (max(solid) if solid else None), (min(liquid) if liquid else None)
    result = {'solid_below': low, 'liquid_above': high, 'melting_temperature': None, 'uncertainty': None}
    if low is not None and high is not None:
        if low >= high:
            return {**result, 'status': 'inconsistent'}
        return {
            **result,
            'status': 'bracketed',
            'melting_temperature': 0.5 * (low + high),
            'uncertainty': 0.5 * (high - low),
        }
    if low is not None:
        return {**result, 'status': 'above'}
    if high is not None:
        return {**result, 'status': 'below'}
    return {**result, 'status': 'undecided'}


def ramp_transition_temperature(
    temperatures: Sequence[float], solid_fraction: Sequence[float], heating: bool = True, level: float = 0.5
) -> float | None:
    """Temperature where a ramp's solid fraction first crosses ``level`` (down when heating, up when cooling).

    Linear interpolation between the two frames around the crossing; None when it never crosses.
    """
    t, f = np.asarray(temperatures, dtype=float), np.asarray(solid_fraction, dtype=float)
    if t.shape != f.shape or t.ndim != 1:
        raise ValueError(f'temperatures and solid_fraction: need equal 1-d series, got {t.shape}, {f.shape}')
    above = f >= level
    for i in range(1, len(f)):
        if above[i - 1] == heating and above[i] != heating:
            return float(t[i - 1] + (level - f[i - 1]) * (t[i] - t[i - 1]) / (f[i] - f[i - 1]))
    return None


def hysteresis_melting_temperature(heating: float | None, cooling: float | None) -> dict:
    """T_m from the melting (T+) and freezing (T-) temperatures of heating and cooling ramps (Luo et al. 2004).

    Returns ``melting_temperature`` = T+ + T- - sqrt(T+ T-) and ``hysteresis`` = T+ - T- (K), both None unless both
    transitions were seen; ``heating`` and ``cooling`` are echoed.
    """
    result = {'heating': heating, 'cooling': cooling, 'melting_temperature': None, 'hysteresis': None}
    if heating is None or cooling is None:
        return result
    return {
        **result,
        'melting_temperature': float(heating + cooling - np.sqrt(heating * cooling)),
        'hysteresis': float(heating - cooling),
    }
