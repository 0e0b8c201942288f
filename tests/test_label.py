"""LabelWorkChain with real pw.x on tiny cells: units and sign against pw.x's own output, a finite-difference force,
the failure policy, and the concurrency limit. One shared run keeps the cost to a few pw.x minutes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ase.build import bulk
from ase.units import Bohr, Ry

FD_STEP = 0.01  # Angstrom
MAX_CONCURRENT = 2


def rocksalt_cah(h_shift: float = 0.0):
    """2-atom CaH (rocksalt, compressed): tiny and metallic; H displaced along x by 0.1 + ``h_shift`` Angstrom."""
    atoms = bulk('CaH', 'rocksalt', a=4.4)
    atoms.positions[1, 0] += 0.1 + h_shift
    return atoms


def h2_in_a_large_box():
    """One H2 molecule in an 11 Angstrom box: at a 0.6 1/A k spacing the mesh is 1x1x1, so it runs Gamma-only."""
    from ase import Atoms

    return Atoms('H2', positions=[(5.0, 5.5, 5.8), (5.74, 5.5, 5.8)], cell=[11.0, 11.5, 12.0], pbc=True)


def overlapping_cah2():
    """Two H atoms on the same site: pw.x stops at once (check_atoms), as for a frame from an exploded MD run."""
    atoms = rocksalt_cah()
    atoms.append('H')
    atoms.positions[2] = atoms.positions[1]
    return atoms


@pytest.fixture(scope='module')
def label_run(localhost_setup, run_in_daemon):
    from aiida import orm

    from aiida_polyhydride.workflows.label import LabelWorkChain

    frames = [rocksalt_cah(), rocksalt_cah(+FD_STEP), rocksalt_cah(-FD_STEP), h2_in_a_large_box(), overlapping_cah2()]
    builder = LabelWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'),
        [orm.StructureData(ase=atoms) for atoms in frames],
        protocol='fast',
        overrides={
            'max_concurrent': MAX_CONCURRENT,
            'kpoints_distance': 1.0,
            # tight SCF: the finite difference below resolves ~1 meV energy differences
            'pw_base': {'meta_parameters': {'conv_thr_per_atom': 1e-11}},
        },
    )
    builder.origin = orm.Dict({'origin_builder': 'rocksalt_cah', 'origin_pressure_GPa': 40.0})
    return run_in_daemon(builder)


def test_failure_policy_keeps_the_successful_labels(label_run):
    node = label_run
    assert node.exit_status == 402, node.exit_message  # 1 of 5 failed > max_failed_fraction 0.05
    assert '1 of 5 frames failed' in node.exit_message
    dataset = node.outputs.dataset
    assert len(dataset) == 4
    assert dataset.species == ['Ca', 'H']
    failed = node.outputs.failed.get_dict()
    assert list(failed) == ['frame_00004']
    assert failed['frame_00004']['exit_status'] != 0
    assert failed['frame_00004']['reason']
    # the cause is pw.x's, not only the work chain's
    calculation = failed['frame_00004']['calculation']
    assert calculation['exit_status'] not in (0, None) and calculation['reason']


def _kill_pw_of(calculation, timeout: float = 300) -> int:
    """SIGKILL the pw.x process running ``calculation`` (found by its working directory), as an out-of-memory kill
    or a node failure would; returns its PID."""
    import os
    import signal
    import time
    from pathlib import Path

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workdir = calculation.get_remote_workdir()
        for entry in Path('/proc').iterdir():
            if not entry.name.isdigit():
                continue
            try:
                command = (entry / 'cmdline').read_bytes().split(b'\0')[0]
                cwd = os.readlink(entry / 'cwd')
            except OSError:
                continue
            if command.endswith(b'pw.x') and workdir and cwd == workdir:
                os.kill(int(entry.name), signal.SIGKILL)
                return int(entry.name)
        time.sleep(0.1)
    raise RuntimeError(f'no pw.x of PwCalculation<{calculation.pk}> appeared in {timeout} s')


def test_a_killed_pwx_is_run_once_more(localhost_setup, daemon_client):
    """pw.x killed with SIGKILL: the frame is not dropped; its PwCalculation runs once more and labels it."""
    import time

    from aiida import orm
    from aiida.engine import submit

    from aiida_polyhydride.workflows.label import LabelWorkChain

    frame = rocksalt_cah().repeat((2, 2, 1))  # 8 atoms at k 0.5: long enough to be found running
    code = orm.load_code('pw@localhost')
    structures = [orm.StructureData(ase=frame)]
    overrides = {'kpoints_distance': 0.5}
    builder = LabelWorkChain.get_builder_from_protocol(code, structures, protocol='fast', overrides=overrides)
    if not daemon_client.is_daemon_running:
        daemon_client.start_daemon()
    node = submit(builder)
    deadline = time.monotonic() + 300
    calculations = []
    while not calculations:
        assert time.monotonic() < deadline, 'no PwCalculation started'
        calculations = [n for n in node.called_descendants if n.process_label == 'PwCalculation']
        time.sleep(0.2)
    _kill_pw_of(calculations[0])
    while not node.is_terminated:
        assert time.monotonic() < deadline + 600, f'LabelWorkChain<{node.pk}> did not end'
        time.sleep(0.5)
    assert node.is_finished_ok, node.exit_message
    assert len(node.outputs.dataset) == 1 and not node.outputs.failed.get_dict()
    first, second = sorted(
        (n for n in node.called_descendants if n.process_label == 'PwCalculation'), key=lambda n: n.ctime
    )
    assert first.exit_status not in (0, None)  # the killed run failed ...
    assert second.is_finished_ok  # ... and the same frame ran again


def test_dataset_equals_what_pwx_printed(label_run):
    from aiida import orm

    frames = label_run.outputs.dataset.to_ase()
    for frame in frames:
        assert frame.info['origin_pressure_GPa'] == 40.0
        calculation = orm.load_node(frame.info['label_uuid'])
        assert calculation.process_label == 'PwCalculation'
        output = calculation.outputs.retrieved.base.repository.get_object_content('aiida.out')
        energy_ry = float(re.findall(r'!\s+total energy\s+=\s+(-?\d+\.\d+) Ry', output)[-1])
        forces_ry_bohr = np.array(
            [
                [float(x) for x in row]
                for row in re.findall(r'atom\s+\d+ type\s+\d+\s+force =\s+(\S+)\s+(\S+)\s+(\S+)', output)
            ]
        )[: len(frame)]
        block = output[output.rindex('total   stress  (Ry/bohr**3)') :].splitlines()[1:4]
        stress_ry_bohr3 = np.array([[float(x) for x in line.split()[:3]] for line in block])

        # aiida-quantumespresso and ASE use slightly different CODATA constants: agreement to ~1e-7 relative
        assert frame.get_potential_energy() == pytest.approx(energy_ry * Ry, rel=1e-6)
        assert np.allclose(frame.get_forces(), forces_ry_bohr * Ry / Bohr, rtol=1e-5, atol=1e-5)
        # pw.x prints compression as positive stress (to 1e-8 Ry/bohr^3); ASE's sign is the opposite
        assert np.allclose(frame.get_stress(voigt=False), -stress_ry_bohr3 * Ry / Bohr**3, rtol=1e-5, atol=1e-6)


def test_force_is_minus_the_energy_gradient(label_run):
    reference, plus, minus, _ = label_run.outputs.dataset.to_ase()
    finite_difference = -(plus.get_potential_energy() - minus.get_potential_energy()) / (2 * FD_STEP)
    force = reference.get_forces()[1, 0]
    assert abs(force) > 0.05  # the displaced H feels a real force, so the check is not 0 == 0
    assert force == pytest.approx(finite_difference, rel=0.02, abs=2e-3)


def test_concurrency_never_exceeds_max_concurrent(label_run, peak_concurrency):
    children = [child for child in label_run.called if child.process_label == 'PwBaseWorkChain']
    assert len(children) == 5
    peak = peak_concurrency(children)
    assert peak <= MAX_CONCURRENT
    assert peak == MAX_CONCURRENT  # the batch really ran side by side


def test_next_frame_starts_as_soon_as_a_slot_frees(label_run):
    children = {child.label: child for child in label_run.called if child.process_label == 'PwBaseWorkChain'}
    quick, slow, last = children['frame_00002'], children['frame_00003'], children['frame_00004']
    assert quick.mtime < slow.mtime  # the 2-atom cell ends first, while H2 in its large box still runs
    # with a barrier per batch of two, frame 4 would wait for the end of frames 2 and 3
    assert last.ctime < slow.mtime


def test_scf_threshold_scales_with_each_frame(label_run):
    thresholds = {
        len(child.inputs.pw.structure.sites): child.inputs.pw.parameters['ELECTRONS']['conv_thr']
        for child in label_run.called
        if child.process_label == 'PwBaseWorkChain'
    }
    assert set(thresholds) == {2, 3}
    for n_atoms, conv_thr in thresholds.items():
        assert conv_thr == pytest.approx(1e-11 * n_atoms)  # the run's conv_thr_per_atom


def test_large_cell_runs_gamma_only_with_its_own_pseudos(label_run):
    children = {child.label: child for child in label_run.called if child.process_label == 'PwBaseWorkChain'}
    h2 = children['frame_00003']
    assert h2.inputs.kpoints.get_kpoints_mesh()[0] == [1, 1, 1]
    calculation = h2.called[-1]
    assert 'K_POINTS gamma' in calculation.base.repository.get_object_content('aiida.in')
    assert set(calculation.inputs.pseudos) == {'H'}
    cah = children['frame_00000']
    assert cah.inputs.kpoints.get_kpoints_mesh()[0] != [1, 1, 1]
    assert 'K_POINTS automatic' in cah.called[-1].base.repository.get_object_content('aiida.in')


def test_every_frame_gets_the_same_cutoffs(label_run, localhost_setup):
    from aiida import orm

    from aiida_polyhydride.workflows.label import LabelWorkChain

    cutoffs = {
        (child.inputs.pw.parameters['SYSTEM']['ecutwfc'], child.inputs.pw.parameters['SYSTEM']['ecutrho'])
        for child in label_run.called
        if child.process_label == 'PwBaseWorkChain'
    }
    assert cutoffs == {(30.0, 240.0)}  # 'fast': the family's 45/360 Ry times 2/3, for H2 as for CaH
    builder = LabelWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'), [orm.StructureData(ase=rocksalt_cah())], protocol='moderate'
    )
    system = builder.pw_base.pw.parameters.get_dict()['SYSTEM']
    assert (system['ecutwfc'], system['ecutrho']) == (45.0, 360.0)
    assert (system['occupations'], system['smearing']) == ('smearing', 'cold')


def test_bad_inputs_are_refused_before_running(localhost_setup):
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_polyhydride.data import TrainingSetData
    from aiida_polyhydride.workflows.label import LabelWorkChain

    code = orm.load_code('pw@localhost')
    with pytest.raises(ValueError, match="pseudo_family: 'SSSP/none' is not installed"):
        LabelWorkChain.get_builder_from_protocol(
            code, [orm.StructureData(ase=rocksalt_cah())], pseudo_family='SSSP/none'
        )
    with pytest.raises(ValueError, match='has no pseudopotential for Sr'):
        LabelWorkChain.get_builder_from_protocol(code, [orm.StructureData(ase=bulk('Sr'))])
    builder = LabelWorkChain.get_builder_from_protocol(code, [orm.StructureData(ase=rocksalt_cah())], protocol='fast')
    with pytest.raises(ValueError, match='max_concurrent must be at least 1, got 0'):
        builder.max_concurrent = orm.Int(0)
    with pytest.raises(ValueError, match=r'max_failed_fraction must be between 0 and 1, got 1\.5'):
        builder.max_failed_fraction = orm.Float(1.5)
    builder.frames = TrainingSetData.from_ase([rocksalt_cah()], labelled=False)
    with pytest.raises(ValueError, match='give exactly one of `structures`'):
        run_get_node(builder)


def test_isolated_atom_energies(isolated_energies):
    """The session's IsolatedAtomsWorkChain (the energy shifts of the session committee)."""
    node = isolated_energies.creator.caller
    assert node.process_label == 'IsolatedAtomsWorkChain'
    assert node.is_finished_ok, node.exit_message
    energies = node.outputs.energies.get_dict()
    assert set(energies) == {'H', 'Ca'}
    # the spin-polarised PBE hydrogen atom is -0.5 Ha = -13.6 eV (no core: the PAW valence energy is the total)
    assert energies['H'] == pytest.approx(-13.6, abs=0.1)
    assert energies['Ca'] < -1000  # 10 valence electrons (3s3p semicore)
    assert node.outputs.energies.creator.process_label == 'isolated_atom_energies'
    labels = [child for child in node.called if child.process_label == 'LabelWorkChain']
    for label in labels:
        system = label.inputs.pw_base.pw.parameters['SYSTEM']
        assert (system['ecutwfc'], system['ecutrho']) == (30.0, 240.0)  # as the 'fast' training labels
        calculations = [calc for calc in label.called_descendants if calc.process_label == 'PwCalculation']
        # one SCF each: H at the protocol's mixing and per-atom threshold ran 100 steps and was restarted
        assert len(calculations) == 1, [calc.exit_status for calc in calculations]
        electrons = label.inputs.pw_base.pw.parameters['ELECTRONS']
        assert electrons['conv_thr'] == 1e-9
        if system.get('nspin') == 2:
            assert electrons['mixing_beta'] == 0.2
        for pw in calculations:  # an isolated atom: Gamma only
            assert pw.inputs.kpoints.get_kpoints_mesh()[0] == [1, 1, 1] and pw.inputs.settings['gamma_only']


def test_unlabelled_dataset_is_labelled_with_its_frame_info(localhost_setup, run_in_daemon):
    from aiida import orm

    from aiida_polyhydride.data import TrainingSetData
    from aiida_polyhydride.workflows.label import LabelWorkChain

    frame = rocksalt_cah()
    frame.info.update({'origin_system': 'CaH rocksalt', 'origin_temperature_K': 1500.0, 'origin_iteration': 2})
    unlabelled = TrainingSetData.from_ase([frame], labelled=False).store()
    builder = LabelWorkChain.get_builder_from_protocol(
        orm.load_code('pw@localhost'), unlabelled, protocol='fast', overrides={'kpoints_distance': 1.0}
    )
    node = run_in_daemon(builder)

    assert node.is_finished_ok, node.exit_message
    assert node.outputs.failed.get_dict() == {}
    labelled = node.outputs.dataset.to_ase()[0]
    assert labelled.info['origin_system'] == 'CaH rocksalt'
    assert labelled.info['origin_temperature_K'] == 1500.0
    assert labelled.info['origin_iteration'] == 2
    assert np.allclose(labelled.positions, frame.positions)
    # provenance: the labelled structure was split off the input dataset by a calcfunction
    (child,) = [child for child in node.called if child.process_label == 'PwBaseWorkChain']
    creator = child.inputs.pw.structure.creator
    assert creator.process_label == 'dataset_to_structures'
    assert creator.inputs.dataset.uuid == unlabelled.uuid
