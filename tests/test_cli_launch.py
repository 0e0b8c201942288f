"""``aiida-polyhydride launch``: bad input ends in one clear line before any workflow is loaded; the generic loader."""

from __future__ import annotations

from pathlib import Path

import pytest

TUTORIAL_INPUTS = Path(__file__).parents[1] / 'docs' / 'tutorials' / 'inputs'

BAD_INPUT = [
    (['--metal', 'Xx'], "metal: 'Xx' is not a chemical element"),
    (['-T', '0'], 'temperatures: 0.0 K is not allowed: must be > 0'),
    (['-T', '1500', '-T', '-300'], 'temperatures: -300.0 K is not allowed'),
    (['-P', '-1'], 'pressures: -1.0 GPa is not allowed: must be >= 0'),
    (['--set', 'overrides.md.temperature_K=-5'], 'overrides.md.temperature_K: -5 K is not allowed'),
    (['--set', 'pw_code=nocode@localhost'], "pw_code: code 'nocode@localhost' does not exist"),
    (['--set', 'pw_code=pw@nowhere'], "computer 'nowhere' does not exist"),
    (['--set', 'computer=nowhere'], "computer: computer 'nowhere' does not exist"),
    (['--pseudo-family', 'SSSP/9.9/PBE/none'], "pseudo_family: 'SSSP/9.9/PBE/none' is not installed"),
    (['--set', 'potential={node: 999999999}'], 'potential: no node with PK or UUID 999999999'),
    (['--set', 'novalue'], "--set 'novalue': use KEY=VALUE"),
]


def assert_one_clear_line(result, message: str) -> None:
    assert result.returncode != 0, result.stdout
    assert message in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(('args', 'message'), BAD_INPUT)
def test_bad_launch_input_gives_one_clear_line(session_shell, aiida_profile, localhost_setup, args, message):
    # valid defaults around the one bad input: the message must be about that input, not about anything else
    result = session_shell.cli(
        'launch', 'surface-melting', '-p', aiida_profile.name, '--metal', 'Ca', '-T', '1500', '-P', '40', *args,
        '--set', 'python_code=python@localhost', '--dry-run',
    )  # fmt: skip
    assert_one_clear_line(result, message)


def test_unreadable_yaml_gives_one_clear_line(session_shell, aiida_profile, tmp_path):
    broken = tmp_path / 'broken.yaml'
    broken.write_text('metal: Ca\ntemperatures: [1500, 1600\npressures: [40]\n')
    listed = tmp_path / 'list.yaml'
    listed.write_text('- Ca\n- H\n')
    cases = [
        (broken, 'broken.yaml is not valid YAML (line 3'),
        (listed, 'list.yaml must be a YAML mapping of inputs (key: value), not a list'),
        (tmp_path / 'missing.yaml', 'cannot read ' + str(tmp_path / 'missing.yaml') + ': No such file or directory'),
    ]
    for path, message in cases:
        result = session_shell.cli('launch', 'enthalpy', '-p', aiida_profile.name, '-i', str(path), '--dry-run')
        assert_one_clear_line(result, message)


def test_yaml_values_are_validated_and_options_override_them(session_shell, aiida_profile, tmp_path):
    inputs = tmp_path / 'inputs.yaml'
    inputs.write_text('metal: Ca\ntemperatures: [1500]\noverrides:\n  pressures_GPa: [40, -2]\n')
    result = session_shell.cli('launch', 'active-learning', '-p', aiida_profile.name, '-i', str(inputs), '--dry-run')
    assert_one_clear_line(result, 'overrides.pressures_GPa: -2 GPa is not allowed')
    # the option replaces the file's value, so its own error is the one reported
    result = session_shell.cli(
        'launch', 'active-learning', '-p', aiida_profile.name, '-i', str(inputs), '--metal', 'Qq', '--dry-run'
    )
    assert_one_clear_line(result, "metal: 'Qq' is not a chemical element")


@pytest.mark.parametrize(
    ('workflow', 'filename'), [('active-learning', 'cah-active-learning.yaml'), ('enthalpy', 'cah-enthalpy.yaml')]
)
def test_tutorial_inputs_are_valid(session_shell, aiida_profile, localhost_setup, workflow, filename):
    result = session_shell.cli(
        'launch', workflow, '-p', aiida_profile.name, '-i', str(TUTORIAL_INPUTS / filename), '--dry-run'
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'Valid; nothing submitted (--dry-run).' in result.stdout


def test_unknown_profile_gives_one_clear_line(session_shell):
    result = session_shell.cli('launch', 'enthalpy', '-p', 'no_such_profile', '--metal', 'Ca', '--dry-run')
    assert_one_clear_line(result, "AiiDA profile 'no_such_profile' does not exist")


def test_missing_workflow_entry_point_is_a_clear_error():
    from aiida_polyhydride.cli.launch import LaunchInputError, load_workflow

    with pytest.raises(LaunchInputError, match=r"workflow 'polyhydride\.no_such_workflow' is not installed"):
        load_workflow('polyhydride.no_such_workflow')


def test_generic_loader_builds_an_existing_workflow(localhost_setup, cah4_primitive):
    """The loader path after validation (resolve -> entry point -> signature -> builder) on LabelWorkChain."""
    from aiida import orm

    from aiida_polyhydride.cli.launch import apply_settings, build, resolve_inputs, validate_inputs
    from aiida_polyhydride.workflows.label import LabelWorkChain

    structure = orm.StructureData(ase=cah4_primitive).store()
    inputs = apply_settings(
        {'protocol': 'fast', 'code': 'pw@localhost'},
        (f'structures=[{{node: {structure.pk}}}]', 'pseudo_family=polyhydride/PBE/PAW', 'overrides.max_concurrent=3'),
    )
    validate_inputs(inputs)
    builder = build('polyhydride.label', resolve_inputs(inputs))
    assert builder.process_class is LabelWorkChain
    assert builder.max_concurrent.value == 3
    assert builder.structures[next(iter(builder.structures))].pk == structure.pk


def test_signature_fitting_renames_generic_keys_and_refuses_unknown_ones():
    from aiida_polyhydride.cli.launch import LaunchInputError, fit_signature

    def get_builder_from_protocol(code, element, temperatures_K=(), pressures_GPa=(), protocol=None, overrides=None):
        """A builder signature of the shape the workflows use."""

    fitted = fit_signature(
        get_builder_from_protocol, {'code': 1, 'metal': 'Ca', 'temperatures': [1500.0], 'pressures': [40.0]}
    )
    assert fitted == {'code': 1, 'element': 'Ca', 'temperatures_K': [1500.0], 'pressures_GPa': [40.0]}
    with pytest.raises(LaunchInputError, match=r'max_iterations: not an input of .*it takes code, element'):
        fit_signature(get_builder_from_protocol, {'code': 1, 'element': 'Ca', 'max_iterations': 3})
    with pytest.raises(LaunchInputError, match='needs element'):
        fit_signature(get_builder_from_protocol, {'code': 1})

    def one_run_builder(code, metal='Ca', temperature=None, pressure=None):
        """A builder for one (T, P): -T/-P give one value each."""

    assert fit_signature(one_run_builder, {'code': 1, 'temperatures': [1473.0], 'pressures': [40.0]}) == {
        'code': 1,
        'temperature': 1473.0,
        'pressure': 40.0,
    }
    with pytest.raises(LaunchInputError, match=r'temperature: .* takes one value, not \[1000.0, 1500.0\]'):
        fit_signature(one_run_builder, {'code': 1, 'temperatures': [1000.0, 1500.0]})


def test_node_references_resolve_at_any_depth(tiny_committee):
    from aiida_polyhydride.cli.launch import LaunchInputError, resolve_inputs

    models = {key: node.pk for key, node in tiny_committee.outputs.models.items()}
    resolved = resolve_inputs(
        {
            'models': {'node': tiny_committee.pk, 'output': 'models'},  # a committee's models namespace: a dict
            'overrides': {'parent': {'node': tiny_committee.uuid}},
        }
    )
    assert {key: node.pk for key, node in resolved['models'].items()} == models
    assert resolved['overrides']['parent'].pk == tiny_committee.pk
    with pytest.raises(LaunchInputError, match=r'models: CommitteeWorkChain.*has no output .nothing.'):
        resolve_inputs({'models': {'node': tiny_committee.pk, 'output': 'nothing'}})
