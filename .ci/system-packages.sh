#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the project runs: Quantum ESPRESSO (pw.x, ld1.x, pseudopotential data),
# Open MPI, python3-venv, Graphviz (dot renders the provenance graph of `aiida-polyhydride export`),
# LAMMPS (Debian's lmp: checks the LAMMPS input/parser; it has no pair_allegro).
# Only what is missing is installed; nothing is downloaded outside the package manager.
set -euo pipefail

need=()
command -v pw.x >/dev/null || need+=(quantum-espresso)
command -v ld1.x >/dev/null || need+=(quantum-espresso)
[ -f /usr/share/espresso/pseudo/H.pbe-kjpaw.UPF ] || need+=(quantum-espresso-data)
command -v mpirun >/dev/null || need+=(openmpi-bin)
command -v lmp >/dev/null || need+=(lammps)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# aiida's ZeroMQ broker and matplotlib need nothing more; gcc is needed by nequip-compile (AOTInductor).
command -v gcc >/dev/null || need+=(gcc g++)
command -v dot >/dev/null || need+=(graphviz)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing system packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u) >/dev/null
