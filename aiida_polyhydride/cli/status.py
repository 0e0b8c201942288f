"""``aiida-polyhydride status PK``: a live view of a process (state, progress, accurate ratios, steps, report)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click

from .common import NodeParamType, clear_errors, profile_option

MAX_CALLED_SHOWN = 20
BAR_WIDTH = 30


@click.command()
@click.argument(
    'process',
    metavar='PK',
    type=NodeParamType('aiida.orm.ProcessNode', description='a process (workflow or calculation)'),
)
@profile_option
@click.option('--watch', is_flag=True, help='Refresh until the process terminates (Ctrl-C stops watching only).')
@click.option(
    '--interval', default=5.0, show_default=True, type=click.FloatRange(min=0.5), help='Seconds between refreshes.'
)
@click.option('--report-lines', default=10, show_default=True, type=click.IntRange(min=0), help='Last report lines.')
@clear_errors()
def status(process, profile_name: str, watch: bool, interval: float, report_lines: int) -> None:
    """Show the state of process PK: its steps, progress, accurate ratios and last report lines.

    For a workflow: the processes it called with their states, the iteration (of `max_iterations` where it has
    that input) or the share of finished steps as a progress bar, the latest accurate/candidate/failed ratios of an
    exploration and the `history` output where there is one. With --watch the view refreshes every --interval
    seconds until the process terminates; the exit status is then 0 only if it finished OK.
    """
    try:
        while True:
            terminated = process.is_terminated  # before rendering: the last view shown is the final state
            text = render_status(process, report_lines)
            if watch:
                click.clear()
            click.echo(text)
            if not watch or terminated:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo(f'\nStopped watching; {process.process_label}<{process.pk}> goes on in the daemon.')
        return
    if watch and not process.is_finished_ok:
        raise click.ClickException(
            f'{process.process_label}<{process.pk}> ended {state_text(process)}: '
            f'see `verdi -p {profile_name} process report {process.pk}`.'
        )


def render_status(process, report_lines: int = 10) -> str:
    """The whole view of ``process`` as text (what one refresh of the command prints)."""
    called = _called(process)
    descendants = _descendants(process)  # queried once per refresh: a long loop has thousands
    lines = [_headline(process)]
    bar = progress_bar(process, called)
    if bar:
        lines.append(bar)
    lines.extend(_loop_state_lines(process))
    lines.extend(_ratios_lines(process, descendants))
    lines.extend(_summary_lines(process))
    lines.extend(_history_lines(process))
    lines.extend(_called_lines(called))
    lines.extend(_report_lines(process, descendants, report_lines))
    return '\n'.join(lines)


def state_text(process) -> str:
    """'Finished [0]', 'Finished [310] <message>', 'Waiting (scheduler: running)', 'Excepted', ..."""
    state = process.process_state
    if state is None:
        return 'Created'
    text = state.value.capitalize()
    if process.is_finished:
        text += f' [{process.exit_status}]'
        if process.exit_message:
            text += f' {process.exit_message}'
    elif not process.is_terminated:
        scheduler_state = _scheduler_state(process)
        if scheduler_state:
            text += f' (scheduler: {scheduler_state})'
        if process.paused:
            text += ' (paused)'
    return text


def progress_bar(process, called: list | None = None) -> str | None:
    """'[#####.....] iteration 2 of at most 5' where the iteration is known, else the share of called processes
    terminated; ``called`` (the processes ``process`` called, oldest first) is queried when not given."""
    called = _called(process) if called is None else called
    maximum = _input_value(process, 'max_iterations')
    iteration = current_iteration(process, called)
    if maximum and iteration is not None:
        return _bar(min(iteration, maximum), maximum, f'iteration {iteration} of at most {maximum}')
    if called:
        done = sum(1 for node in called if node.is_terminated)
        return _bar(done, len(called), f'{done}/{len(called)} steps terminated')
    return None


def current_iteration(process, called: list | None = None) -> int | None:
    """The iteration: the active-learning state's, else the entries of a `history` output, else the explorations
    called."""
    state = _loop_state(process)
    if isinstance(state.get('iteration'), int):
        return state['iteration']
    history = _output(process, 'history')
    if history is not None:
        iterations = history.get('iterations')
        if isinstance(iterations, list):
            return len(iterations)
    called = _called(process) if called is None else called
    explorations = [node for node in called if node.process_label == 'ExploreWorkChain']
    return len(explorations) or None


def latest_ratios(process, descendants: list | None = None):
    """The newest `ratios` output (accurate/candidate/failed per system) of the process or any process it called.

    Returns (the workflow that made it, the Dict) or None.
    """
    from aiida import orm
    from aiida.common.links import LinkType

    descendants = _descendants(process) if descendants is None else descendants
    pks = [process.pk, *(node.pk for node in descendants)]
    query = orm.QueryBuilder()
    query.append(orm.ProcessNode, filters={'id': {'in': pks}}, tag='process', project=['*'])
    query.append(
        orm.Dict,
        with_incoming='process',
        edge_filters={'label': 'ratios', 'type': {'in': [LinkType.CREATE.value, LinkType.RETURN.value]}},
        project=['*'],
    )
    query.order_by({orm.Dict: {'ctime': 'desc'}})
    rows = query.all()
    if not rows:
        return None
    process_found, ratios = rows[0]
    # name the workflow that made it (the caller of the calcfunction that created it): it has the iteration input
    creator = ratios.creator or process_found
    return creator.caller or creator, ratios


def _headline(process) -> str:
    label = f' "{process.label}"' if process.label else ''
    end = process.mtime if process.is_terminated else datetime.now(timezone.utc)
    elapsed = _duration((end - process.ctime).total_seconds())
    started = process.ctime.astimezone().strftime('%Y-%m-%d %H:%M:%S')
    return f'{process.process_label}<{process.pk}>{label}: {state_text(process)}  (started {started}, {elapsed})'


def _ratios_lines(process, descendants: list) -> list[str]:
    found = latest_ratios(process, descendants)
    if found is None:
        return []
    creator, ratios = found
    iteration = _input_value(creator, 'iteration')
    where = f'{creator.process_label}<{creator.pk}>' + (f', iteration {iteration}' if iteration is not None else '')
    lines = [f'accurate ratios ({where}):']
    for system, ratio in sorted(ratios.get_dict().items()):
        counts = ', '.join(f'{ratio[key]:.2f} {key}' for key in ('accurate', 'candidate', 'failed') if key in ratio)
        frames = f' of {ratio["n_frames"]} frames' if 'n_frames' in ratio else ''
        lines.append(f'  {system:<28} {counts}{frames}')
    return lines


def _loop_state(process) -> dict:
    """The active-learning loop's pointer to its latest dataset, committee and window ({} for other processes)."""
    from ..workflows.active_learning import STATE_EXTRA

    state = process.base.extras.get(STATE_EXTRA, None)
    return state if isinstance(state, dict) else {}


def _loop_state_lines(process) -> list[str]:
    """Iteration, dataset, committee and trust window of a running (or stopped) active-learning loop."""
    from aiida import orm
    from aiida.common.exceptions import NotExistent

    state = _loop_state(process)
    if not state:
        return []
    try:
        training, validation = orm.load_node(state['training_set']), orm.load_node(state['validation_set'])
        window = orm.load_node(state['trust_window'])
    except (KeyError, NotExistent):
        return []
    return [
        f'latest state (iteration {state.get("iteration")}): dataset {len(training)} training + {len(validation)} '
        f'validation frames, committee of {len(state.get("models", {}))}, trust window [{window["lo"]:.3f}, '
        f'{window["hi"]:.3f}) eV/A'
    ]


def _summary_lines(process) -> list[str]:
    """The headline numbers of a surface-melting run's summary."""
    summary = _output(process, 'summary')
    if summary is None or 'final_h_per_metal' not in summary.get_dict():
        return []
    flag = ', extrapolating' if summary.get('extrapolating') else ''
    return [
        f'summary (Dict<{summary.pk}>): H/M {summary["initial_h_per_metal"]:.3f} -> '
        f'{summary["final_h_per_metal"]:.3f}, max molten depth {summary["max_molten_depth_A"]:.1f} A, '
        f'phase {summary["phase"]}, '
        f'{summary["uncertainty_fraction"]:.0%} of frames uncertain{flag}'
    ]


def _history_lines(process) -> list[str]:
    history = _output(process, 'history')
    if history is None:
        return []
    lines = [f'history (Dict<{history.pk}>):']
    for key, value in history.get_dict().items():
        if isinstance(value, list):
            lines.append(f'  {key}:')
            lines.extend(f'    {index}: {_compact(item)}' for index, item in enumerate(value))
        else:
            lines.append(f'  {key}: {_compact(value)}')
    return lines


def _called_lines(called: list) -> list[str]:
    if not called:
        return []
    finished_ok = sum(1 for node in called if node.is_finished_ok)
    failed = sum(1 for node in called if node.is_terminated and not node.is_finished_ok)
    active = len(called) - finished_ok - failed
    lines = [f'called processes: {len(called)} ({finished_ok} finished OK, {failed} failed, {active} active)']
    if len(called) > MAX_CALLED_SHOWN:
        lines.append(f'  ... {len(called) - MAX_CALLED_SHOWN} earlier ones')
    for node in called[-MAX_CALLED_SHOWN:]:
        label = f' "{node.label}"' if node.label else ''
        lines.append(f'  {node.pk:>8}  {node.process_label:<28} {state_text(node)}{label}')
    return lines


def _report_lines(process, descendants: list, count: int) -> list[str]:
    """The last ``count`` log messages of the process and everything it called, oldest first."""
    from aiida import orm

    if count == 0:
        return []
    processes = {node.pk: node for node in (process, *descendants)}
    query = orm.QueryBuilder().append(
        orm.Log, filters={'dbnode_id': {'in': list(processes)}}, project=['time', 'levelname', 'message', 'dbnode_id']
    )
    query.order_by({orm.Log: [{'time': 'desc'}, {'id': 'desc'}]}).limit(count)
    rows = list(reversed(query.all()))
    if not rows:
        return []
    lines = [f'last report lines (verdi process report {process.pk}):']
    for logged, level, message, pk in rows:
        source = f'{processes[pk].process_label}<{pk}>'
        text = message.splitlines()[0] if message else ''
        lines.append(f'  {logged.astimezone():%H:%M:%S} {source} {level}: {text}')
    return lines


def _called(process) -> list:
    return sorted(getattr(process, 'called', []), key=lambda node: node.ctime)


def _descendants(process) -> list:
    return list(getattr(process, 'called_descendants', []))


def _output(process, name: str):
    # NodeLinksManager has no .get()
    return process.outputs[name] if name in process.outputs else None  # noqa: SIM401


def _input_value(process, name: str):
    node = process.inputs[name] if name in process.inputs else None  # noqa: SIM401
    return getattr(node, 'value', None)


def _scheduler_state(process) -> str | None:
    getter = getattr(process, 'get_scheduler_state', None)
    state = getter() if getter else None
    return state.value if state is not None else None


def _bar(done: int, total: int, text: str) -> str:
    filled = round(BAR_WIDTH * done / total) if total else BAR_WIDTH
    return f'[{"#" * filled}{"." * (BAR_WIDTH - filled)}] {text}'


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}h {minutes:02d}m {seconds:02d}s' if hours else f'{minutes}m {seconds:02d}s'


def _compact(value, limit: int = 100) -> str:
    import json

    text = json.dumps(value, default=str, separators=(', ', ': '))
    return text if len(text) <= limit else text[: limit - 3] + '...'
