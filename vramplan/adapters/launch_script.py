"""Launch scripts (``deepspeed``, ``torchrun``, ``accelerate launch``, ``python [-m]``) -> ``LaunchSpec`` -> scenario dict.

Owns finding the launcher command(s) in a shell script (continuations, comments and variables
handled by ``_shell``), splitting launcher options from the training script's flags, the GPU count
the launcher starts (``--include``/``--exclude``/``--num_gpus``/``--num_nodes``/``--hostfile`` as
DeepSpeed's runner reads them, ``--nproc_per_node``/``--nnodes``, ``--num_processes``/``--num_machines``,
``CUDA_VISIBLE_DEVICES``), and turning the HF / MGM / LLaVA training flags into the scenario-file
schema (``launch_to_scenario_dict``). Relative paths (hostfile, DeepSpeed JSON, model folder) are
looked up in ``base_dir``, then its parent folders (scripts are usually run from the repository root),
then the current folder. Unknown flags are listed, never fatal. Reads files but imports no third-party
package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import ScenarioError, VramplanError
from ._launch_flags import KNOWN_TRAINING_FLAGS, SEQ_LEN_FLAGS
from ._launcher import split_launcher, world_from_launcher
from ._shell import ShellState, split_commands

LAUNCHERS_LOOKED_FOR = ("deepspeed", "torchrun", "accelerate launch", "python -m torch.distributed.run/launch",
                        "python -m <module>", "python <script>.py")
TRAINING_HINT_FLAGS = ("per_device_train_batch_size", "deepspeed", "model_name_or_path", "output_dir",
                       "gradient_accumulation_steps")

_TRUE = ("true", "1", "yes", "y", "on")
_FALSE = ("false", "0", "no", "n", "off")


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchSpec:
    """One launcher command of a script, with the training flags it passes."""

    launcher: str
    """``deepspeed``, ``torchrun``, ``accelerate`` or ``python``."""
    entry: str
    """Training script path, or module name when ``entry_is_module``."""
    entry_is_module: bool = False
    launcher_args: Mapping[str, str] = field(default_factory=dict)
    """Launcher options, canonical names (``num_gpus``, ``include``, ``nproc_per_node`` ...); flags map to "true"."""
    args: Mapping[str, str] = field(default_factory=dict)
    """Training flags, canonical names without dashes -> value (a bare ``--flag`` gives "True"; the last one wins)."""
    arg_order: tuple[str, ...] = ()
    unknown_flags: tuple[str, ...] = ()
    """Training flags vramplan does not know, as typed (``--lr_multi``)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment of the command: caller env, exported script variables, ``VAR=x`` before the command."""
    gpus_per_node: int | None = None
    """Processes per node the launcher starts (None: "every GPU of the node", unknown here)."""
    nodes: int | None = None
    gpu_count_source: str = ""
    """How the count was found, e.g. ``--include localhost:0,1,2,3``."""
    hostfile: str | None = None
    hostfile_path: str | None = None
    hostfile_slots: tuple[tuple[str, int], ...] = ()
    deepspeed_config: str | None = None
    """The DeepSpeed JSON as written in the script (``--deepspeed``/``--deepspeed_config_file``)."""
    deepspeed_config_path: str | None = None
    """That JSON resolved to an existing file, if found."""
    line: int = 1
    end_line: int = 1
    command_index: int = 1
    """1-based index among the script's launcher commands."""
    num_commands: int = 1
    unresolved: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    text: str = ""
    """The whole script text (used to write a corrected copy)."""
    base_dir: str | None = None

    # -- typed flag access -------------------------------------------------------------------------
    def flag(self, name: str, default: str | None = None) -> str | None:
        """A training flag's raw value."""
        return self.args.get(name, default)

    def bool_flag(self, name: str, default: bool = False) -> bool:
        """``--name``, ``--name True`` -> True; ``--name False`` -> False; absent -> ``default``."""
        value = self.args.get(name)
        if value is None:
            return default
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ScenarioError(f"--{name}", value, "must be True or False")

    def int_flag(self, name: str, default: int | None = None) -> int | None:
        """An integer training flag (``VramplanError`` naming the flag when it is not a number)."""
        value = self.args.get(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ScenarioError(f"--{name}", value, "must be a whole number", "check the variable it comes from") from None
        if number != int(number):
            raise ScenarioError(f"--{name}", value, "must be a whole number")
        return int(number)

    @property
    def micro_batch(self) -> int:
        """``--per_device_train_batch_size`` (HF default 8)."""
        return self.int_flag("per_device_train_batch_size") or self.int_flag("per_gpu_train_batch_size") or 8

    @property
    def grad_accum(self) -> int:
        """``--gradient_accumulation_steps`` (default 1)."""
        return self.int_flag("gradient_accumulation_steps") or 1

    @property
    def bf16(self) -> bool:
        return self.bool_flag("bf16")

    @property
    def fp16(self) -> bool:
        return self.bool_flag("fp16")

    @property
    def gradient_checkpointing(self) -> bool:
        return self.bool_flag("gradient_checkpointing")

    @property
    def seq_len(self) -> int | None:
        """``--model_max_length`` (or max_seq_length / max_length / cutoff_len / seq_length)."""
        for name in SEQ_LEN_FLAGS:
            if name in self.args:
                return self.int_flag(name)
        return None

    @property
    def world_size(self) -> int | None:
        """Processes the launcher starts in total, when known."""
        if self.gpus_per_node is None:
            return None
        return self.gpus_per_node * (self.nodes or 1)

    @property
    def uses_deepspeed(self) -> bool:
        """A DeepSpeed config is passed (HF ``--deepspeed``, accelerate ``--use_deepspeed``)."""
        return bool(self.deepspeed_config) or self.launcher_args.get("use_deepspeed") == "true"


def search_dirs(base_dir: str | Path | None) -> list[Path]:
    """Folders relative paths are looked up in: base_dir, its parents (3 levels), the current folder."""
    dirs: list[Path] = []
    if base_dir is not None:
        base = Path(base_dir).resolve()
        dirs += [base, *list(base.parents)[:3]]
    cwd = Path.cwd().resolve()
    if cwd not in dirs:
        dirs.append(cwd)
    return dirs


def resolve_path(path: str, base_dir: str | Path | None) -> Path | None:
    """``path`` as an existing file (absolute, or under one of ``search_dirs``), else None."""
    p = Path(os.path.expanduser(path))
    if p.is_absolute():
        return p if p.exists() else None
    for d in search_dirs(base_dir):
        if (d / p).exists():
            return d / p
    return None


def _parse_training_args(words: list[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """``--key value`` / ``--key=value`` / bare ``--flag`` -> (args, order, unknown flags as typed)."""
    args: dict[str, str] = {}
    order: list[str] = []
    unknown: list[str] = []
    k = 0
    while k < len(words):
        word = words[k]
        k += 1
        if not word.startswith("--") or word == "--":
            continue  # positional argument of the training script
        name, eq, value = word[2:].partition("=")
        key = name.replace("-", "_")
        if not eq:
            if k < len(words) and not words[k].startswith("--"):
                value = words[k]
                k += 1
            else:
                value = "True"
        if key.startswith("no_") and key[3:] in KNOWN_TRAINING_FLAGS and not eq and value == "True":
            key, value = key[3:], "False"  # HfArgumentParser's --no_<bool field>
        if key not in KNOWN_TRAINING_FLAGS and "--" + name not in unknown:
            unknown.append("--" + name)
        args[key] = value
        if key not in order:
            order.append(key)
    return args, order, unknown


def parse_launch_commands(
    text: str, *, base_dir: str | Path | None = None, env: Mapping[str, str] | None = None, source: str = "script"
) -> list[LaunchSpec]:
    """Every launcher command of ``text`` (usually one; MGM's ``stage_1_2_*`` scripts hold two)."""
    state = ShellState(variables=dict(env or {}), exported=set(env or {}))
    found = []
    for cmd in split_commands(text, state):
        parsed = split_launcher(cmd.words)
        if parsed is None:
            continue
        cmd_env = {k: v for k, v in state.variables.items() if k in state.exported}
        cmd_env.update(cmd.prefix_env)
        found.append((cmd, parsed, cmd_env))
    if not found:
        raise VramplanError(
            f"{source}: no launcher line found; looked for a command starting with "
            + ", ".join(LAUNCHERS_LOOKED_FOR) + " (pass the command with --args \"deepspeed train.py ...\")"
        )
    specs: list[LaunchSpec] = []
    for index, (cmd, parsed, cmd_env) in enumerate(found, start=1):
        launcher, largs, entry, is_module, script_words = parsed
        args, order, unknown = _parse_training_args(script_words)
        warnings: list[str] = []
        world = world_from_launcher(launcher, largs, cmd_env, lambda p: resolve_path(p, base_dir), warnings)
        ds_written = args.get("deepspeed")
        if ds_written is not None and ds_written.strip().lower() in _TRUE:  # legacy --deepspeed --deepspeed_config X
            ds_written = args.get("deepspeed_config")
        if ds_written is None:
            ds_written = largs.get("deepspeed_config_file")
        ds_path = resolve_path(ds_written, base_dir) if ds_written and "$" not in ds_written else None
        if ds_written and ds_path is None:
            warnings.append(f"DeepSpeed config {ds_written} not found (looked in "
                            f"{', '.join(str(d) for d in search_dirs(base_dir))}); pass it with --deepspeed")
        specs.append(LaunchSpec(
            launcher=launcher, entry=entry, entry_is_module=is_module, launcher_args=largs, args=args,
            arg_order=tuple(order), unknown_flags=tuple(unknown), env=cmd_env,
            gpus_per_node=world.gpus_per_node, nodes=world.nodes, gpu_count_source=world.source,
            hostfile=world.hostfile, hostfile_path=world.hostfile_path, hostfile_slots=world.hostfile_slots,
            deepspeed_config=ds_written, deepspeed_config_path=str(ds_path) if ds_path else None,
            line=cmd.line, end_line=cmd.end_line, command_index=index, num_commands=len(found),
            unresolved=tuple(dict.fromkeys(cmd.unresolved)), warnings=tuple(warnings), text=text,
            base_dir=str(base_dir) if base_dir is not None else None,
        ))
    return specs


def parse_launch_script(
    text: str,
    *,
    base_dir: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    command: int | None = None,
    source: str = "script",
) -> LaunchSpec:
    """The launcher command to analyse: ``command`` (1-based), else the last one that passes training flags.

    ``env`` are variables the script inherits (e.g. ``CUDA_VISIBLE_DEVICES``); ``source`` names the
    script in error messages. Raises ``VramplanError`` when the script has no launcher line.
    """
    specs = parse_launch_commands(text, base_dir=base_dir, env=env, source=source)
    if command is not None:
        if not 1 <= command <= len(specs):
            raise ScenarioError("--command", command, f"the script has {len(specs)} launcher command(s)",
                                f"use 1..{len(specs)}")
        return specs[command - 1]
    training = [s for s in specs if any(f in s.args for f in TRAINING_HINT_FLAGS)]
    return (training or specs)[-1]


def read_launch_script(path: str | Path, *, env: Mapping[str, str] | None = None, command: int | None = None) -> LaunchSpec:
    """``parse_launch_script`` on a file (its folder is the base for relative paths)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VramplanError(f"{p}: script not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VramplanError(f"{p}: cannot read the script ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    return parse_launch_script(text, base_dir=p.parent, env=env, command=command, source=str(p))


from ._launch_scenario import launch_to_scenario_dict

__all__ = [
    "LaunchSpec",
    "launch_to_scenario_dict",
    "parse_launch_commands",
    "parse_launch_script",
    "read_launch_script",
    "resolve_path",
    "search_dirs",
]
