"""Launcher commands: recognise ``deepspeed`` / ``torchrun`` / ``accelerate launch`` / ``python [-m]`` and count GPUs.

Owns splitting one command's words into (launcher, launcher options, entry script, training flags)
and the process count each launcher starts, following:
- DeepSpeed's runner (deepspeed/launcher/runner.py): the hostfile (``host slots=N`` lines) gives the
  resource pool; ``--include``/``--exclude`` (``host[:slot,slot][@host...]``) filter it; ``--num_nodes``
  keeps the first N hosts and ``--num_gpus`` the first N slots of each; a missing hostfile means
  "this node only"; ``CUDA_VISIBLE_DEVICES`` is honoured only without a hostfile and without any of
  ``--include``/``--exclude``/``--num_gpus``/``--num_nodes`` (otherwise the runner ignores it);
- torchrun (``--nproc_per_node`` x ``--nnodes``), accelerate (``--num_processes``/``--num_machines``,
  ``--gpu_ids``, the same keys in its ``--config_file`` YAML, read by ``read_accelerate_config``),
  ``llamafactory-cli train`` (torchrun over ``NPROC_PER_NODE`` or the visible GPUs, ``NNODES`` nodes),
  and plain python (one process).
Imports the standard library, PyYAML (for accelerate configs) and the flag tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ._launch_flags import (
    ACCELERATE_FLAG_OPTIONS,
    DEEPSPEED_FLAG_OPTIONS,
    DEEPSPEED_SHORT,
    DEEPSPEED_VALUE_OPTIONS,
    PYTHON_VALUE_OPTIONS,
    TORCHRUN_FLAG_OPTIONS,
    TORCHRUN_VALUE_OPTIONS,
)

_SKIP_PREFIXES = ("nohup", "time", "exec", "sudo", "stdbuf")
_PYTHON = re.compile(r"^(.*/)?python(\d+(\.\d+)?)?$")
_TORCH_LAUNCH_MODULES = ("torch.distributed.run", "torch.distributed.launch")
_LLAMA_FACTORY_CLIS = ("llamafactory-cli", "lmf")
_ACCELERATE_DISTRIBUTED_TYPES = {"DEEPSPEED": "use_deepspeed", "FSDP": "use_fsdp", "MULTI_GPU": "multi_gpu"}
_ACCELERATE_SECTION_KEYS = {
    "deepspeed_config": ("zero_stage", "offload_optimizer_device", "offload_param_device",
                         "gradient_accumulation_steps", "deepspeed_config_file", "zero3_init_flag",
                         "zero3_save_16bit_model"),
    "fsdp_config": ("fsdp_sharding_strategy", "fsdp_offload_params", "fsdp_version"),
}
"""Keys of an accelerate config's sections that become launcher options (same names as the CLI options)."""


def _canonical(name: str) -> str:
    return name.lstrip("-").replace("-", "_")


def _options(words: list[str], value_opts: frozenset[str], flag_opts: frozenset[str],
             short: Mapping[str, str] | None = None, default_takes_value: bool = False) -> tuple[dict[str, str], int]:
    """Launcher options up to the first positional word; returns (options, index of that word)."""
    opts: dict[str, str] = {}
    k = 0
    while k < len(words):
        word = words[k]
        if not word.startswith("-") or word == "-":
            break
        name, eq, value = word.partition("=")
        raw = name.lstrip("-")
        key = (short or {}).get(raw, _canonical(raw))
        k += 1
        if eq:
            opts[key] = value
            continue
        if key in flag_opts:
            opts[key] = "true"
            if key in ("module", "m"):
                opts["module"] = "true"
            continue
        takes_value = key in value_opts or (default_takes_value and key not in flag_opts)
        if takes_value and k < len(words):
            nxt = words[k]
            if default_takes_value and key not in value_opts and (nxt.startswith("-") or nxt.endswith(".py")):
                opts[key] = "true"
                continue
            opts[key] = nxt
            k += 1
        else:
            opts[key] = "true"
    return opts, k


def split_launcher(words: list[str]) -> tuple[str, dict[str, str], str, bool, list[str]] | None:
    """(launcher, launcher options, entry, entry is a module, training words), or None if not a launcher."""
    w = list(words)
    while w and (w[0] in _SKIP_PREFIXES or w[0] == "env"):
        if w[0] == "env":
            w = w[1:]
            while w and "=" in w[0] and not w[0].startswith("-"):
                w = w[1:]
            continue
        w = w[1:]
    if not w:
        return None
    head = w[0].rsplit("/", 1)[-1]
    if head == "deepspeed":
        opts, k = _options(w[1:], DEEPSPEED_VALUE_OPTIONS, DEEPSPEED_FLAG_OPTIONS, DEEPSPEED_SHORT)
        return _entry("deepspeed", opts, w[1 + k:])
    if head == "torchrun":
        opts, k = _options(w[1:], TORCHRUN_VALUE_OPTIONS, TORCHRUN_FLAG_OPTIONS)
        return _entry("torchrun", opts, w[1 + k:])
    if head == "accelerate" and len(w) > 1 and w[1] == "launch":
        opts, k = _options(w[2:], frozenset(), ACCELERATE_FLAG_OPTIONS, default_takes_value=True)
        return _entry("accelerate", opts, w[2 + k:])
    if head in _LLAMA_FACTORY_CLIS and len(w) > 1 and w[1] == "train":
        return "llamafactory", {}, "llamafactory-cli train", False, w[2:]
    if _PYTHON.match(w[0]):
        module = None
        k = 1
        while k < len(w) and w[k].startswith("-"):  # interpreter options end at -m MODULE or the script
            opt = w[k].lstrip("-")
            if opt == "m" and k + 1 < len(w):
                module, k = w[k + 1], k + 2
                break
            if opt == "c":
                return None
            k += 2 if opt in PYTHON_VALUE_OPTIONS else 1
        rest = w[k:]
        if module in _TORCH_LAUNCH_MODULES:
            opts, j = _options(rest, TORCHRUN_VALUE_OPTIONS, TORCHRUN_FLAG_OPTIONS)
            return _entry("torchrun", opts, rest[j:])
        if module == "deepspeed.launcher.runner":
            opts, j = _options(rest, DEEPSPEED_VALUE_OPTIONS, DEEPSPEED_FLAG_OPTIONS, DEEPSPEED_SHORT)
            return _entry("deepspeed", opts, rest[j:])
        if module == "accelerate.commands.launch":
            opts, j = _options(rest, frozenset(), ACCELERATE_FLAG_OPTIONS, default_takes_value=True)
            return _entry("accelerate", opts, rest[j:])
        if module:
            return "python", {}, module, True, rest
        if rest and rest[0].endswith(".py"):
            return "python", {}, rest[0], False, rest[1:]
        return None
    if w[0].endswith(".py") and len(w) > 1:
        return "python", {}, w[0], False, w[1:]
    return None


def read_accelerate_config(path: Path) -> dict[str, str]:
    """``accelerate launch --config_file`` YAML -> launcher options under the CLI's names.

    ``distributed_type: DEEPSPEED`` becomes ``use_deepspeed``, ``FSDP`` ``use_fsdp``; the
    ``deepspeed_config``/``fsdp_config`` keys that move memory (``zero_stage``, offload devices, a
    ``deepspeed_config_file``, the FSDP sharding strategy) and ``num_processes``, ``num_machines``,
    ``gpu_ids``, ``mixed_precision`` keep their names. Options on the command line override these.
    """
    import yaml

    from ..core.errors import VramplanError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise VramplanError(f"{path}: cannot read the accelerate config ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise VramplanError(f"{where}: invalid YAML in the accelerate config: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, Mapping):
        raise VramplanError(f"{path}: an accelerate config must be a YAML mapping (accelerate config writes one)")

    def text(value: object) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    opts: dict[str, str] = {}
    for key in ("num_processes", "num_machines", "gpu_ids", "mixed_precision"):
        if data.get(key) is not None:
            opts[key] = text(data[key])
    kind = str(data.get("distributed_type", "")).upper()
    if kind in _ACCELERATE_DISTRIBUTED_TYPES:
        opts[_ACCELERATE_DISTRIBUTED_TYPES[kind]] = "true"
    for section_name, keys in _ACCELERATE_SECTION_KEYS.items():
        block = data.get(section_name)
        if isinstance(block, Mapping):
            opts.update({key: text(block[key]) for key in keys if block.get(key) is not None})
    return opts


def _entry(launcher: str, opts: dict[str, str], rest: list[str]) -> tuple[str, dict[str, str], str, bool, list[str]] | None:
    if not rest:
        return None
    if opts.get("module") == "true" or opts.get("m") == "true":
        return launcher, opts, rest[0], True, rest[1:]
    if opts.get("no_python") == "true" or not rest[0].endswith(".py"):
        return launcher, opts, rest[0], not rest[0].endswith(".py") and "/" not in rest[0], rest[1:]
    return launcher, opts, rest[0], False, rest[1:]


@dataclass(frozen=True, slots=True)
class World:
    """How many processes a launcher starts."""

    gpus_per_node: int | None
    nodes: int | None
    source: str
    hostfile: str | None = None
    hostfile_path: str | None = None
    hostfile_slots: tuple[tuple[str, int], ...] = ()


def read_hostfile(path: Path) -> list[tuple[str, int]]:
    """DeepSpeed hostfile lines ``host slots=N`` (comments and blank lines skipped)."""
    hosts: list[tuple[str, int]] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^(\S+)\s+slots\s*=\s*(\d+)\s*$", line)
        if m is None:
            from ..core.errors import VramplanError

            raise VramplanError(f"{path}: hostfile line {raw.strip()!r} is not 'host slots=N'; fix the line")
        hosts.append((m.group(1), int(m.group(2))))
    return hosts


def _parse_filter(text: str) -> dict[str, list[int] | None]:
    """``host1:0,1@host2`` -> {host1: [0, 1], host2: None (all slots)}."""
    out: dict[str, list[int] | None] = {}
    for spec in text.split("@"):
        spec = spec.strip()
        if not spec:
            continue
        host, _, slots = spec.partition(":")
        out[host] = [int(s) for s in slots.split(",") if s.strip().isdigit()] if slots else None
    return out


def _visible(env: Mapping[str, str]) -> list[str] | None:
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None or not value.strip():
        return None
    return [v for v in value.split(",") if v.strip()]


def world_from_launcher(
    launcher: str, opts: Mapping[str, str], env: Mapping[str, str],
    resolve: Callable[[str], Path | None], warnings: list[str],
) -> World:
    """Processes per node and nodes (None where the launcher uses "every GPU of the node")."""
    visible = _visible(env)
    if launcher == "deepspeed":
        return _deepspeed_world(opts, visible, resolve, warnings)
    if launcher == "torchrun":
        nproc = opts.get("nproc_per_node")
        nnodes = opts.get("nnodes", "1")
        nodes = int(nnodes.split(":")[-1]) if nnodes.split(":")[-1].isdigit() else None
        if nproc and nproc.isdigit():
            return World(int(nproc), nodes, f"--nproc_per_node {nproc}" + (f" --nnodes {nnodes}" if nnodes != "1" else ""))
        if visible:
            return World(len(visible), nodes, f"CUDA_VISIBLE_DEVICES={','.join(visible)}")
        return World(None if nproc in ("gpu", "auto") else 1, nodes,
                     f"--nproc_per_node {nproc}" if nproc else "torchrun default (1 process per node)")
    if launcher == "accelerate":
        machines = int(opts["num_machines"]) if opts.get("num_machines", "").isdigit() else 1
        if opts.get("num_processes", "").isdigit():
            total = int(opts["num_processes"])
            return World(max(1, total // machines), machines, f"--num_processes {total}")
        if opts.get("gpu_ids") and opts["gpu_ids"] != "all":
            ids = [g for g in opts["gpu_ids"].split(",") if g.strip()]
            return World(len(ids), machines, f"--gpu_ids {opts['gpu_ids']}")
        if visible:  # accelerate's default num_processes is torch.cuda.device_count(), which honours it
            return World(len(visible), machines, f"CUDA_VISIBLE_DEVICES={','.join(visible)}")
        return World(None, machines, "accelerate default (all GPUs)")
    if launcher == "llamafactory":
        nnodes = env.get("NNODES", "1")
        nodes = int(nnodes) if nnodes.isdigit() else None
        nproc = env.get("NPROC_PER_NODE", "")
        if nproc.isdigit():
            return World(int(nproc), nodes, f"NPROC_PER_NODE={nproc}")
        if visible:
            return World(len(visible), nodes, f"CUDA_VISIBLE_DEVICES={','.join(visible)}")
        return World(None, nodes, "llamafactory-cli default (every visible GPU)")
    return World(1, 1, "single process (python)")


def _deepspeed_world(opts: Mapping[str, str], visible: list[str] | None,
                     resolve: Callable[[str], Path | None], warnings: list[str]) -> World:
    hostfile = opts.get("hostfile")
    pool: list[tuple[str, int]] = []
    hostfile_path = None
    if hostfile:
        found = resolve(hostfile)
        if found is None:
            warnings.append(f"hostfile {hostfile} not found: DeepSpeed then runs on this node's GPUs only")
        else:
            hostfile_path = str(found)
            pool = read_hostfile(found)
    include, exclude = opts.get("include", ""), opts.get("exclude", "")
    num_gpus = int(opts["num_gpus"]) if opts.get("num_gpus", "").isdigit() else None
    if num_gpus is None and opts.get("num_accelerators", "").isdigit():
        num_gpus = int(opts["num_accelerators"])
    num_nodes = int(opts["num_nodes"]) if opts.get("num_nodes", "").lstrip("-").isdigit() else -1
    explicit = bool(include or exclude or num_gpus or num_nodes > 1)
    if visible and (pool or explicit):
        warnings.append(f"CUDA_VISIBLE_DEVICES={','.join(visible)} is ignored by the deepspeed launcher because "
                        "a hostfile or --include/--exclude/--num_gpus/--num_nodes is given")
    if pool:
        hosts: dict[str, list[int]] = {h: list(range(s)) for h, s in pool}
        if include:
            flt = _parse_filter(include)
            hosts = {h: (flt[h] if flt[h] is not None else slots) for h, slots in hosts.items() if h in flt}  # type: ignore[misc]
        if exclude:
            for h, slots in _parse_filter(exclude).items():
                if h in hosts:
                    hosts[h] = [] if slots is None else [s for s in hosts[h] if s not in slots]
            hosts = {h: s for h, s in hosts.items() if s}
        names = list(hosts)[: num_nodes if num_nodes > 0 else None]
        counts = [min(len(hosts[h]), num_gpus) if num_gpus else len(hosts[h]) for h in names]
        if not counts:
            warnings.append(f"hostfile {hostfile} leaves no GPU after --include/--exclude")
            return World(None, None, f"hostfile {hostfile}", hostfile, hostfile_path, tuple(pool))
        if len(set(counts)) > 1:
            warnings.append(f"hosts have different GPU counts {counts}; the largest is used per node")
        src = f"hostfile {hostfile} ({len(names)} host(s) x {max(counts)} slots)"
        return World(max(counts), len(names), src, hostfile, hostfile_path, tuple(pool))
    if include:
        flt = _parse_filter(include)
        sizes = [len(s) for s in flt.values() if s is not None]
        if len(flt) == 1 and sizes:
            return World(sizes[0], 1, f"--include {include}", hostfile, hostfile_path)
        if sizes:
            return World(max(sizes), len(flt), f"--include {include}", hostfile, hostfile_path)
    if num_gpus:
        return World(num_gpus, 1, f"--num_gpus {num_gpus}", hostfile, hostfile_path)
    if visible and not explicit:
        return World(len(visible), 1, f"CUDA_VISIBLE_DEVICES={','.join(visible)}", hostfile, hostfile_path)
    return World(None, 1, "all GPUs of this node (deepspeed default)", hostfile, hostfile_path)
