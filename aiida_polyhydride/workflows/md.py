"""MDBaseWorkChain: MDCalculation with the restarts a long MD needs, as PwBaseWorkChain does for pw.x.

- blow-up (non-finite forces, a pair closer than its floor): run again from the start with the time step halved and
  the same simulated time (n_steps and dump_every doubled, thermostat/barostat time scales kept in fs), at most
  ``max_timestep_halvings`` times; if it still blows up, the partial trajectory of the last attempt is output;
- committee stop (sigma_F above ``sigma_f_failed``): not retried, a shorter step cannot make the model trustworthy;
  the partial trajectory is output (its frames are what active learning wants to relabel);
- interrupted (SIGTERM/SIGUSR1 from the scheduler) or ``max_walltime_s`` reached: continue from the checkpoint in the
  run's remote folder (``parent_folder``), until ``n_steps`` or ``max_iterations`` runs.
"""

from __future__ import annotations

from typing import Any

from aiida import orm
from aiida.common import AttributeDict
from aiida.engine import BaseRestartWorkChain, ProcessHandlerReport, process_handler, while_
from aiida_quantumespresso.workflows.protocols.utils import ProtocolMixin, recursive_merge

from ..calculations.md import MDCalculation
from ..data.allegro_potential import AllegroPotentialData
from ..protocols import protocol_file

__all__ = ('MDBaseWorkChain', 'halved_timestep')


def halved_timestep(parameters: dict) -> dict:
    """``parameters`` of the runner with half the time step and the same simulated time, dumps and couplings."""
    from ..runners.md import DEFAULTS

    halved = dict(parameters)
    timestep = float(parameters['timestep_fs'])
    halved['timestep_fs'] = timestep / 2
    halved['n_steps'] = 2 * int(parameters['n_steps'])
    halved['dump_every'] = 2 * int(parameters.get('dump_every', DEFAULTS['dump_every']))
    # the runner's defaults are multiples of the time step: pin them so the coupling times do not halve too
    halved['tdamp_fs'] = parameters.get('tdamp_fs') or 100 * timestep
    halved['pdamp_fs'] = parameters.get('pdamp_fs') or 1000 * timestep
    return halved


def _validate_inputs(inputs: dict, namespace) -> str | None:
    if 'max_timestep_halvings' in inputs and inputs['max_timestep_halvings'].value < 0:
        return f'max_timestep_halvings: must be >= 0, got {inputs["max_timestep_halvings"].value}'
    if 'walltime_fraction' in inputs and not 0 < inputs['walltime_fraction'].value <= 1:
        return f'walltime_fraction: must be in (0, 1], got {inputs["walltime_fraction"].value}'
    return None


class MDBaseWorkChain(ProtocolMixin, BaseRestartWorkChain):
    """MDCalculation restarted on blow-ups (shorter time step) and interruptions (from the checkpoint)."""

    _process_class = MDCalculation

    @classmethod
    def define(cls, spec):
        # fmt: off
        super().define(spec)
        spec.expose_inputs(MDCalculation, namespace='md')
        spec.input('max_timestep_halvings', valid_type=orm.Int, default=lambda: orm.Int(2),
                   help='How often a blown-up run is retried with half the time step.')
        spec.input('walltime_fraction', valid_type=orm.Float, default=lambda: orm.Float(0.95),
                   help='Unless parameters set max_walltime_s, the runner stops cleanly (checkpoint) at this '
                   'fraction of metadata.options.max_wallclock_seconds.')
        spec.inputs.validator = _validate_inputs
        spec.outline(
            cls.setup,
            while_(cls.should_run_process)(
                cls.run_process,
                cls.inspect_process,
            ),
            cls.results,
        )
        spec.expose_outputs(MDCalculation)
        spec.exit_code(410, 'ERROR_BLOWUP_NOT_CURED',
                       message='The MD still blew up at a time step of {timestep} fs ({reason}); the partial '
                       'trajectory of that attempt is output. Check the structure and the model, or allow more '
                       'max_timestep_halvings.')
        spec.exit_code(411, 'ERROR_COMMITTEE_STOP',
                       message='The committee disagreed beyond sigma_f_failed ({reason}): the model is outside its '
                       'trust domain here; the partial trajectory is output (relabel its frames, do not retry).')
        spec.exit_code(420, 'ERROR_INPUT', message='The MD runner refused its input: {reason}')
        spec.exit_code(430, 'ERROR_NO_PROGRESS',
                       message='The run was stopped ({status}) at step {step} without a step done since the previous '
                       'run: raise metadata.options.max_wallclock_seconds (or max_walltime_s).')
        # fmt: on

    @classmethod
    def get_protocol_filepath(cls):
        return protocol_file('md')

    @classmethod
    def get_builder_from_protocol(
        cls,
        code: orm.AbstractCode,
        structure: orm.StructureData,
        models: dict[str, AllegroPotentialData],
        temperature_K: float | list[float],  # noqa: N803 - the runner's key, with its unit
        pressure_GPa: float | None = None,  # noqa: N803
        protocol: str | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        """Builder of an MD of ``structure`` with the committee ``models`` (member_0 drives it).

        ``pressure_GPa`` None: NVT at the structure's cell; a number: NPT (barostat from the protocol/overrides).
        Protocols fast / moderate / precise (protocols/md.yaml); ``overrides`` may set any of its keys.
        """
        inputs = cls.get_protocol_inputs(protocol, overrides)
        parameters = {**inputs['parameters'], 'temperature_K': temperature_K}
        if pressure_GPa is None:
            parameters['ensemble'] = 'nvt'
            parameters.pop('pressure_GPa', None)
        else:
            parameters.update({'ensemble': 'npt', 'pressure_GPa': pressure_GPa})
        builder = cls.get_builder()
        builder.md.code = code
        builder.md.structure = structure
        builder.md.models = dict(models)
        builder.md.parameters = orm.Dict(parameters)
        builder.md.metadata.options = recursive_merge(dict(builder.md.metadata.options), inputs['options'])
        builder.max_iterations = orm.Int(inputs['max_iterations'])
        builder.max_timestep_halvings = orm.Int(inputs['max_timestep_halvings'])
        builder.walltime_fraction = orm.Float(inputs['walltime_fraction'])
        builder.clean_workdir = orm.Bool(inputs['clean_workdir'])
        return builder

    def setup(self):
        super().setup()
        self.ctx.inputs = AttributeDict(self.exposed_inputs(MDCalculation, 'md'))
        parameters = self.ctx.inputs.parameters.get_dict()
        walltime = self.ctx.inputs.metadata.get('options', {}).get('max_wallclock_seconds')
        if parameters.get('max_walltime_s') is None and walltime:
            parameters['max_walltime_s'] = self.inputs.walltime_fraction.value * walltime
        self.ctx.inputs.parameters = parameters  # a plain dict: the handlers change it, run_process wraps it
        self.ctx.timestep_halvings = 0

    def _keep_partial_outputs(self, node) -> None:
        """Output what ``node`` produced: the workchain is about to stop on a failure."""
        self.out_many(self.exposed_outputs(node, MDCalculation))

    def _result(self, node) -> dict:
        return node.outputs.result.get_dict() if 'result' in node.outputs else {}

    @process_handler(priority=600, exit_codes=MDCalculation.exit_codes.ERROR_INPUT)
    def handle_input_error(self, node):
        """The runner refused its input: nothing to retry."""
        reason = self._result(node).get('reason')
        return ProcessHandlerReport(True, self.exit_codes.ERROR_INPUT.format(reason=reason))

    @process_handler(priority=500, exit_codes=MDCalculation.exit_codes.ERROR_BLOWUP)
    def handle_blowup(self, node):
        """Physical blow-up: halve the time step and start again; committee stop: keep the partial trajectory."""
        result = self._result(node)
        reason = result.get('reason')
        if result.get('blowup_trigger') == 'committee':
            self._keep_partial_outputs(node)
            return ProcessHandlerReport(True, self.exit_codes.ERROR_COMMITTEE_STOP.format(reason=reason))
        timestep = self.ctx.inputs.parameters['timestep_fs']
        if self.ctx.timestep_halvings >= self.inputs.max_timestep_halvings.value:
            self._keep_partial_outputs(node)
            exit_code = self.exit_codes.ERROR_BLOWUP_NOT_CURED.format(timestep=timestep, reason=reason)
            return ProcessHandlerReport(True, exit_code)
        self.ctx.inputs.parameters = halved_timestep(self.ctx.inputs.parameters)
        self.ctx.inputs.pop('parent_folder', None)  # the step count restarts with the new time step
        self.ctx.timestep_halvings += 1
        self.report(f'{node.process_label}<{node.pk}> blew up ({reason}): restarting from the structure with '
                    f'timestep_fs {timestep / 2}')  # fmt: skip
        self._keep_outputs_at_last_iteration(node)
        return ProcessHandlerReport(True)

    @process_handler(priority=400, exit_codes=MDCalculation.exit_codes.ERROR_INTERRUPTED)
    def handle_interrupted(self, node):
        """Stopped by a signal or max_walltime_s: continue from the checkpoint in its remote folder."""
        result = self._result(node)
        if not result.get('n_steps_this_run'):
            self._keep_partial_outputs(node)
            exit_code = self.exit_codes.ERROR_NO_PROGRESS.format(
                status=result.get('status'), step=result.get('n_steps_done')
            )
            return ProcessHandlerReport(True, exit_code)
        self.ctx.inputs.parent_folder = node.outputs.remote_folder
        self.report(f'{node.process_label}<{node.pk}> stopped ({result.get("status")}) at step '
                    f'{result.get("n_steps_done")}: continuing from its checkpoint')  # fmt: skip
        self._keep_outputs_at_last_iteration(node)
        return ProcessHandlerReport(True)

    def _keep_outputs_at_last_iteration(self, node) -> None:
        # BaseRestartWorkChain aborts after max_iterations runs without attaching outputs: keep the partial ones
        if self.ctx.iteration >= self.inputs.max_iterations.value:
            self._keep_partial_outputs(node)
