"""The training domain of the active-learning loop for a metal M over a pressure range (the study's key trick).

Seeds (labelled before the first committee is trained): bulk MH2 (both prototypes), MH4, MH6 and dense H2 at each
pressure, with rattled and strained copies, off-stoichiometric MH_x, disordered high-T (liquid-like) cells and
small slab/H2 interfaces. Exploration systems (where the committee runs MD each iteration): bulk MH2, MH4, H2
fluid and a slab/H2 interface. Cells are kept small: every seed is one DFT calculation.

Volumes follow the pressure through rough equations of state (Murnaghan for the hydrides around the ~40 GPa
prototype geometry, a fit to solid-H2 data for hydrogen); they only need to put the seeds near the right density,
the MD explores the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from ase import Atoms
from ase.build import find_optimal_cell_shape, make_supercell

from ._validate import check_metal, check_non_negative, check_positive_int, check_seed
from .fluid import dense_h2_fluid
from .interface import slab_h2_interface
from .phases import bulk_phase, primitive_cell
from .sampling import default_volume_per_atom, liquid_like, off_stoichiometric, rattle, strain

__all__ = [
    'convergence_frames',
    'exploration_systems',
    'h2_density',
    'hydride_volume_factor',
    'near_cubic_supercell',
    'training_domain_seeds',
]

#: pressure (GPa) of the prototypes' default geometry
REFERENCE_PRESSURE = 40.0
#: Murnaghan parameters (GPa, -) of the hydride guess: a typical alkaline-earth polyhydride
HYDRIDE_B0, HYDRIDE_B0_PRIME = 60.0, 4.0
#: solid H2: ambient density (g/cm^3) and Murnaghan parameters (GPa, -) that give ~0.24 g/cm^3 at 40 GPa
H2_DENSITY_0, H2_B0, H2_B0_PRIME = 0.086, 0.2, 7.0
#: bulk prototypes seeded at every pressure
SEED_PHASES = ('MH2-Pnma', 'MH2-P63mmc', 'MH4-I4mmm', 'MH6-Im-3m')


def hydride_volume_factor(pressure: float) -> float:
    """V(P) / V(40 GPa) of a hydride by a Murnaghan equation of state (rough: a seed-placement guess)."""
    pressure = check_non_negative(pressure, 'pressure')

    def murnaghan(p: float) -> float:
        return (1.0 + HYDRIDE_B0_PRIME * p / HYDRIDE_B0) ** (-1.0 / HYDRIDE_B0_PRIME)

    return murnaghan(pressure) / murnaghan(REFERENCE_PRESSURE)


def h2_density(pressure: float) -> float:
    """Density (g/cm^3) of dense H2 at ``pressure`` (GPa) from a Murnaghan fit (0.086 at 0, ~0.24 at 40 GPa)."""
    pressure = check_non_negative(pressure, 'pressure')
    return H2_DENSITY_0 * (1.0 + H2_B0_PRIME * pressure / H2_B0) ** (1.0 / H2_B0_PRIME)


def _origin(atoms: Atoms, system: str, pressure: float) -> Atoms:
    atoms.info.update({'origin_builder': 'seeds', 'origin_system': system, 'origin_pressure_GPa': float(pressure)})
    return atoms


def _compressed(name: str, metal: str, pressure: float) -> Atoms:
    """The prototype's conventional cell at the volume guessed for ``pressure``."""
    reference = bulk_phase(name, metal)
    volume_per_atom = reference.get_volume() / len(reference) * hydride_volume_factor(pressure)
    return bulk_phase(name, metal, volume_per_atom=volume_per_atom)


def _bulk(name: str, metal: str, pressure: float) -> Atoms:
    return primitive_cell(_compressed(name, metal, pressure))


def training_domain_seeds(
    metal: str,
    pressures: Sequence[float],
    n_rattled: int = 1,
    rattle_stdev: float = 0.08,
    max_strain: float = 0.04,
    off_stoichiometric_x: Sequence[float] = (3.0, 5.0),
    n_liquid: int = 1,
    h2_molecules: int = 4,
    include_interfaces: bool = True,
    seed: int = 0,
) -> list[Atoms]:
    """The seed frames of the loop, each with ``origin_builder='seeds'``, ``origin_system`` and the pressure.

    Per pressure: the four bulk prototypes (primitive cells) and ``n_rattled`` rattled + strained copies of each,
    dense H2 (``h2_molecules`` molecules), MH_x for each ``off_stoichiometric_x`` (from the MH4 cell),
    ``n_liquid`` liquid-like MH4 cells, and (``include_interfaces``) one small MH2/H2 interface.
    """
    metal = check_metal(metal)
    pressures = [check_non_negative(pressure, 'pressures') for pressure in pressures]
    if not pressures:
        raise ValueError('pressures: give at least one pressure (GPa)')
    seed = check_seed(seed)
    frames: list[Atoms] = []
    for p_index, pressure in enumerate(pressures):
        rng_seed = seed + 1000 * p_index
        for name in SEED_PHASES:
            system = f'{name.replace("M", metal, 1)}_bulk'
            bulk = _bulk(name, metal, pressure)
            frames.append(_origin(bulk, system, pressure))
            for copy in range(n_rattled):
                distorted = strain(rattle(bulk, rattle_stdev, rng_seed + copy), max_strain, rng_seed + copy)
                frames.append(_origin(distorted, system, pressure))
        density = h2_density(pressure)
        frames.append(_origin(dense_h2_fluid(h2_molecules, density, seed=rng_seed), 'H2_fluid', pressure))
        mh4 = _compressed('MH4-I4mmm', metal, pressure)
        for x_index, x in enumerate(off_stoichiometric_x):
            frames.append(_origin(off_stoichiometric(mh4, x, seed=rng_seed + x_index), f'{metal}H{x:g}', pressure))
        for copy in range(n_liquid):
            volume = default_volume_per_atom(metal, 4.0) * hydride_volume_factor(pressure)
            liquid = liquid_like(metal, 4.0, n_metal=2, volume_per_atom=volume, seed=rng_seed + copy)
            frames.append(_origin(liquid, f'{metal}H4_liquid', pressure))
        if include_interfaces:
            interface = slab_h2_interface(
                'MH2-P63mmc', metal, layers=1, n_molecules=h2_molecules, density_g_cm3=density, seed=rng_seed
            )
            frames.append(_origin(interface, f'{metal}H2_slab_H2', pressure))
    return frames


def near_cubic_supercell(atoms: Atoms, n_atoms: int) -> Atoms:
    """The supercell of ``atoms`` with about ``n_atoms`` atoms whose shape is closest to a cube.

    A bulk cell for MD and labelling that is about as wide in every direction, so a small cell does not sample
    only the short axis of a layered prototype (ase.build.find_optimal_cell_shape).
    """
    multiple = max(1, round(check_positive_int(n_atoms, 'n_atoms') / len(atoms)))
    if multiple == 1:
        return atoms.copy()
    transformation = find_optimal_cell_shape(atoms.cell, multiple, 'sc', lower_limit=-1, upper_limit=1)
    return make_supercell(atoms, transformation)


def _compact_systems(metal: str, pressure: float) -> dict[str, Atoms]:
    """12-24 atoms each over the whole domain: the labels of the frames they give cost a CPU minute or so."""
    density = h2_density(pressure)
    systems = {
        f'{metal}H2_Pnma_bulk': near_cubic_supercell(_bulk('MH2-Pnma', metal, pressure), 24),
        f'{metal}H2_bulk': near_cubic_supercell(_bulk('MH2-P63mmc', metal, pressure), 24),
        f'{metal}H4_bulk': near_cubic_supercell(_bulk('MH4-I4mmm', metal, pressure), 20),
        f'{metal}H6_bulk': near_cubic_supercell(_bulk('MH6-Im-3m', metal, pressure), 21),
        'H2_fluid': dense_h2_fluid(8, density, seed=0),
    }
    for x, n_metal in ((3.0, 4), (5.0, 3)):
        volume = default_volume_per_atom(metal, x) * hydride_volume_factor(pressure)
        systems[f'{metal}H{x:g}_liquid'] = liquid_like(metal, x, n_metal=n_metal, volume_per_atom=volume, seed=0)
    systems[f'{metal}H2_slab_H2'] = slab_h2_interface(
        'MH2-P63mmc', metal, layers=2, n_molecules=4, density_g_cm3=density, seed=0
    )
    systems[f'{metal}H4_slab_H2'] = slab_h2_interface(
        'MH4-I4mmm', metal, layers=1, n_molecules=4, density_g_cm3=density, seed=0
    )
    return systems


def exploration_systems(metal: str, pressure: float = REFERENCE_PRESSURE, size: str = 'small') -> dict[str, Atoms]:
    """Where the committee runs MD each iteration, by name.

    ``size``: 'tiny' (primitive MH2 and MH4 cells, a 4-molecule fluid: tests), 'compact' (12-24 atoms, the whole
    domain: MH2 in both phases, MH4, MH6, MH3 and MH5 liquids, H2 fluid, MH2/H2 and MH4/H2 interfaces; CPU
    campaigns, where every selected frame is a DFT label of its size), 'small' (bulk MH2 and MH4, H2 fluid and an
    MH2/H2 interface of a few dozen atoms) or 'large' (the same at ~100-300 atoms: GPU production loops). Volumes
    are set for ``pressure`` (GPa).
    """
    metal = check_metal(metal)
    sizes = {'tiny': (1, 4, None), 'compact': None, 'small': (2, 16, (1, 1)), 'large': (3, 64, (2, 2))}
    if size not in sizes:
        raise ValueError(f'size: choose from {", ".join(sizes)}, got {size!r}')
    if size == 'compact':
        return _compact_systems(metal, pressure)
    repeat, n_molecules, interface_repeats = sizes[size]
    systems = {}
    for name in ('MH2-P63mmc', 'MH4-I4mmm'):
        bulk = _bulk(name, metal, pressure)
        systems[f'{name.split("-")[0].replace("M", metal, 1)}_bulk'] = bulk.repeat((repeat, repeat, repeat))
    systems['H2_fluid'] = dense_h2_fluid(n_molecules, h2_density(pressure), seed=0)
    if interface_repeats is not None:
        systems[f'{metal}H2_slab_H2'] = slab_h2_interface(
            'MH2-P63mmc', metal, layers=2, repeats=interface_repeats, n_molecules=n_molecules,
            density_g_cm3=h2_density(pressure), seed=0,
        )  # fmt: skip
    return systems


def convergence_frames(metal: str, seed: int = 0) -> list[Atoms]:
    """Six small frames spanning the training domain, for converging the labelling settings (each named by
    ``origin_system``): MH2 Pnma at 0 GPa, MH4 I4/mmm at 60 GPa, dense H2 fluid at 40 GPa, a liquid-like MH5 cell
    at 40 GPa, a hot (rattled 0.15 Angstrom, strained 4%) MH4 cell at 60 GPa and an MH2/H2 interface at 20 GPa.

    Small cells on purpose: at a fixed k spacing a small cell costs less than a large one, and the dense reference
    mesh is the expensive part of the study.
    """
    metal = check_metal(metal)
    seed = check_seed(seed)
    volume = default_volume_per_atom(metal, 5.0) * hydride_volume_factor(40.0)
    frames = {
        f'{metal}H2_Pnma_0GPa': (_compressed('MH2-Pnma', metal, 0.0), 0.0),
        f'{metal}H4_I4mmm_60GPa': (_bulk('MH4-I4mmm', metal, 60.0), 60.0),
        'H2_fluid_40GPa': (dense_h2_fluid(8, h2_density(40.0), seed=seed), 40.0),
        f'{metal}H5_liquid_40GPa': (liquid_like(metal, 5.0, n_metal=2, volume_per_atom=volume, seed=seed + 1), 40.0),
        f'{metal}H4_hot_60GPa': (
            strain(rattle(_compressed('MH4-I4mmm', metal, 60.0), 0.15, seed + 3), 0.04, seed + 3),
            60.0,
        ),
        f'{metal}H2_H2_interface_20GPa': (
            slab_h2_interface('MH2-P63mmc', metal, layers=1, n_molecules=4, density_g_cm3=h2_density(20.0), seed=seed),
            20.0,
        ),
    }
    return [_origin(atoms, name, pressure) for name, (atoms, pressure) in frames.items()]
