"""What the plugin's CalcJobs share: running a compute-node runner module with the environment's Python."""

from __future__ import annotations

from aiida import orm
from aiida.common import CalcInfo, CodeInfo


def runner_calcinfo(
    code: orm.AbstractCode,
    module: str,
    log: str,
    local_copy_list: list,
    retrieve_list: list[str],
    parent_folder: orm.RemoteData | None = None,
    restart_files: tuple[str, ...] = (),
) -> CalcInfo:
    """CalcInfo running ``python -m <module>`` (stdout and stderr to ``log``), copying ``restart_files`` from
    ``parent_folder`` when given. The installed package's runner is used, so the compute node runs the same
    version that prepared the inputs."""
    codeinfo = CodeInfo()
    codeinfo.code_uuid = code.uuid
    codeinfo.cmdline_params = ['-m', module]
    codeinfo.stdout_name = log
    codeinfo.join_files = True

    calcinfo = CalcInfo()
    calcinfo.codes_info = [codeinfo]
    calcinfo.local_copy_list = local_copy_list
    calcinfo.remote_copy_list = [
        (parent_folder.computer.uuid, f'{parent_folder.get_remote_path()}/{name}', name) for name in restart_files
    ] if parent_folder is not None else []  # fmt: skip
    calcinfo.retrieve_list = [log, *retrieve_list]
    return calcinfo
