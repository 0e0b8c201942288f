"""Per-step resource defaults of the protocols, overrides and the computer's partitions reaching the jobs.

A SLURM cluster with CPU and GPU partitions is described in YAML and set up in the test profile (nothing is submitted
to it): the job scripts that AiiDA writes for it come from dry runs, which upload nothing and need no cluster.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CLUSTER = 'gpu-cluster'
CLUSTER_DESCRIPTION = {
    'label': CLUSTER,
    'hostname': 'localhost',
    'transport': 'core.local',
    'scheduler': 'core.slurm',
    'workdir': '/tmp/aiida-polyhydride-gpu-cluster/{username}',
    'mpiprocs_per_machine': 16,
    'account': 'project123',
    'queue_name': 'cpu',
    'gpu': {'queue_name': 'gpu', 'gres': 'gpu:a100'},
    'codes': [
        {'label': 'pw', 'executable': 'pw.x', 'default_plugin': 'quantumespresso.pw'},
        {'label': 'python', 'executable': 'python', 'with_mpi': False},
    ],
}


@pytest.fixture(scope='module')
def gpu_cluster(localhost_setup):
    """The computer ``gpu-cluster`` (core.slurm, partitions cpu and gpu, gres gpu:a100) and its codes."""
    from aiida import orm

    from aiida_polyhydride.setup.cluster import setup_cluster, validate_description

    setup_cluster(validate_description(CLUSTER_DESCRIPTION))
    return orm.load_computer(CLUSTER)


@pytest.fixture(scope='module')
def synthetic_training():
    """Four labelled Ca-H frames (Morse pair potential) and zero energy shifts: enough for a dry run."""
    from aiida import orm

    from aiida_polyhydride.analysis.synthetic import synthetic_cah_frames
    from aiida_polyhydride.data import TrainingSetData

    return TrainingSetData(synthetic_cah_frames(n_frames=4)), orm.Dict({'Ca': 0.0, 'H': 0.0})


def committee_builder(code_label: str, synthetic_training, protocol: str, overrides: dict | None = None):
    from aiida import orm

    from aiida_polyhydride.workflows.train import CommitteeWorkChain

    training_set, shifts = synthetic_training
    return CommitteeWorkChain.get_builder_from_protocol(
        orm.load_code(code_label), training_set, shifts, protocol=protocol, overrides=overrides
    )


@pytest.fixture
def in_tmp_path(tmp_path, monkeypatch):
    """Work in ``tmp_path``: a dry run writes its folder under the working directory (submit_test/)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def job_script(builder) -> str:
    """The submission script AiiDA writes for one member of the committee ``builder`` (a dry run: nothing runs)."""
    from aiida import orm
    from aiida.engine import run_get_node

    from aiida_polyhydride.calculations.allegro_train import AllegroTrainCalculation

    inputs = dict(builder.train)
    metadata = dict(inputs.pop('metadata'))
    metadata.update(dry_run=True, store_provenance=False)
    _, node = run_get_node(AllegroTrainCalculation, **inputs, seed=orm.Int(0), metadata=metadata)
    return (Path(node.dry_run_info['folder']) / '_aiidasubmit.sh').read_text()


def test_gpu_training_asks_the_gpu_partition_for_a_gpu(gpu_cluster, synthetic_training, in_tmp_path):
    builder = committee_builder(
        f'python@{CLUSTER}', synthetic_training, 'gpu', overrides={'options': {'max_wallclock_seconds': 600}}
    )
    options = builder.train.metadata.options
    assert options['queue_name'] == 'gpu'
    assert options['account'] == 'project123'
    assert options['custom_scheduler_commands'] == '#SBATCH --gres=gpu:a100:1'
    assert options['resources'] == {'num_machines': 1, 'num_mpiprocs_per_machine': 1}

    script = job_script(builder)
    for line in ('#SBATCH --partition=gpu', '#SBATCH --account=project123', '#SBATCH --gres=gpu:a100:1'):
        assert line in script.splitlines(), script
    assert '#SBATCH --time=00:10:00' in script.splitlines()  # the override, not the protocol's 24 h


def test_cpu_training_stays_on_the_cpu_partition(gpu_cluster, synthetic_training):
    options = committee_builder(f'python@{CLUSTER}', synthetic_training, 'cpu').train.metadata.options
    assert options['queue_name'] == 'cpu'
    assert 'custom_scheduler_commands' not in options
    assert options['max_wallclock_seconds'] == 43200


def test_own_gres_line_is_not_doubled(gpu_cluster, synthetic_training):
    overrides = {'options': {'custom_scheduler_commands': '#SBATCH --gres=gpu:h100:1\n#SBATCH --constraint=h100'}}
    options = committee_builder(f'python@{CLUSTER}', synthetic_training, 'gpu', overrides).train.metadata.options
    assert options['custom_scheduler_commands'] == overrides['options']['custom_scheduler_commands']


def test_gpu_protocol_on_the_direct_scheduler_is_harmless(localhost_setup, synthetic_training, in_tmp_path):
    """core.direct has no partitions or gres: the local job script gets no #SBATCH line, the protocol's walltime
    and resources stay."""
    builder = committee_builder('python@localhost', synthetic_training, 'gpu')
    options = builder.train.metadata.options
    assert 'custom_scheduler_commands' not in options
    assert 'queue_name' not in options
    assert options['max_wallclock_seconds'] == 86400
    assert '#SBATCH' not in job_script(builder)


def test_label_options_default_to_one_cpu_node_and_take_overrides(gpu_cluster, cah4_primitive):
    from aiida import orm

    from aiida_polyhydride.workflows.label import LabelWorkChain

    code = orm.load_code(f'pw@{CLUSTER}')
    structures = [orm.StructureData(ase=cah4_primitive)]
    options = LabelWorkChain.get_builder_from_protocol(code, structures, protocol='fast').pw_base.pw.metadata.options
    # MPI on one node of the CPU partition, as many ranks as the computer's mpiprocs_per_machine
    assert options['queue_name'] == 'cpu'
    assert options['account'] == 'project123'
    assert options['resources'] == {'num_machines': 1, 'num_mpiprocs_per_machine': 16}
    assert options['withmpi'] is True
    assert options['max_wallclock_seconds'] == 43200
    assert 'custom_scheduler_commands' not in options

    overrides = {
        'options': {'resources': {'num_machines': 2, 'num_mpiprocs_per_machine': 64}, 'queue_name': 'debug'},
    }
    builder = LabelWorkChain.get_builder_from_protocol(code, structures, protocol='fast', overrides=overrides)
    options = builder.pw_base.pw.metadata.options
    assert options['resources'] == {'num_machines': 2, 'num_mpiprocs_per_machine': 64}
    assert options['queue_name'] == 'debug'
    assert options['account'] == 'project123'  # still the computer's


def test_isolated_atoms_pass_options_on(gpu_cluster):
    from aiida import orm

    from aiida_polyhydride.workflows.isolated_atoms import IsolatedAtomsWorkChain

    builder = IsolatedAtomsWorkChain.get_builder_from_protocol(
        orm.load_code(f'pw@{CLUSTER}'), ['Ca', 'H'], protocol='fast', overrides={'options': {'queue_name': 'short'}}
    )
    assert builder.label.pw_base.pw.metadata.options['queue_name'] == 'short'


@pytest.mark.parametrize(
    ('protocol', 'device', 'partition', 'gres'),
    [('gpu', 'cuda', 'gpu', '#SBATCH --gres=gpu:a100:1'), ('tiny', 'cpu', 'cpu', None)],
)
def test_explore_md_options_follow_the_device(gpu_cluster, cah4_primitive, protocol, device, partition, gres):
    from aiida import orm

    from aiida_polyhydride.workflows.explore import ExploreWorkChain

    builder = ExploreWorkChain.get_builder_from_protocol(
        orm.load_code(f'python@{CLUSTER}'),
        {'CaH4': orm.StructureData(ase=cah4_primitive)},
        {},
        [1000.0],
        [None],
        protocol=protocol,
        overrides={'options': {'max_wallclock_seconds': 900}},
    )
    assert builder.md.parameters['device'] == device
    options = builder.md.metadata.options
    assert options['queue_name'] == partition
    assert options.get('custom_scheduler_commands') == gres
    assert options['max_wallclock_seconds'] == 900
    assert options['resources'] == {'num_machines': 1, 'num_mpiprocs_per_machine': 1}


def test_job_options_refuses_a_bad_gpu_count(gpu_cluster):
    from aiida_polyhydride.setup.cluster import job_options

    with pytest.raises(ValueError, match='gpus must be a whole number >= 0'):
        job_options(gpu_cluster, {}, gpus=-1)
