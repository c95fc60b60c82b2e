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
from ._launch_flags import (
    GRAD_CKPT_FLAGS,
    KNOWN_TRAINING_FLAGS,
    MODEL_PATH_FLAGS,
    SEQ_LEN_FLAGS,
)
from ._launcher import read_accelerate_config, split_launcher, world_from_launcher
from ._shell import ShellState, split_commands
from ._training_config import read_training_config, training_config_word

LAUNCHERS_LOOKED_FOR = ("deepspeed", "torchrun", "accelerate launch", "python -m torch.distributed.run/launch",
                        "python -m <module>", "python <script>.py", "llamafactory-cli train")
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
    workdir: str | None = None
    """Where the script's ``cd`` commands moved before this command (``_shell.ShellState.workdir``)."""
    training_config: str | None = None
    """The YAML/JSON config file the training script reads its flags from, as written (its keys are in
    ``args``; flags on the command line win)."""
    config_keys: tuple[str, ...] = ()
    """Keys of ``args`` whose value comes from ``training_config`` (not overridden on the command line):
    a correction of these belongs in that file, not on the command line."""

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
        """``--per_device_train_batch_size`` (alpaca-lora: ``--micro_batch_size``; HF default 8)."""
        return (self.int_flag("per_device_train_batch_size") or self.int_flag("per_gpu_train_batch_size")
                or self.int_flag("micro_batch_size") or 8)

    @property
    def grad_accum(self) -> int:
        """``--gradient_accumulation_steps`` (default 1), for the launcher's own process count."""
        return self.grad_accum_for(self.world_size)

    def grad_accum_for(self, world: int | None) -> int:
        """Gradient accumulation with ``world`` processes.

        ``--gradient_accumulation_steps`` when given; otherwise alpaca-lora's ``finetune.py`` rule when it
        passes a global ``--batch_size`` and a ``--micro_batch_size``: ``batch_size // micro_batch_size``,
        divided by the world size under DDP; else 1.
        """
        steps = self.int_flag("gradient_accumulation_steps")
        if steps:
            return steps
        batch, micro = self.int_flag("batch_size"), self.int_flag("micro_batch_size")
        if batch and micro and "per_device_train_batch_size" not in self.args:
            return max(1, batch // micro // max(1, world or 1))
        return 1

    @property
    def accelerate_mixed_precision(self) -> str:
        """``no``/``fp16``/``bf16`` from ``accelerate launch --mixed_precision`` or its config file
        (the ``ACCELERATE_MIXED_PRECISION`` the run sees); ``no`` for other launchers."""
        value = self.launcher_args.get("mixed_precision") if self.launcher == "accelerate" else None
        value = value or self.env.get("ACCELERATE_MIXED_PRECISION", "no")
        return str(value).strip().strip("'\"").lower()

    @property
    def bf16(self) -> bool:
        """``--bf16``; with neither ``--bf16`` nor ``--fp16`` on, accelerate's mixed precision (HF
        TrainingArguments falls back to ``ACCELERATE_MIXED_PRECISION``)."""
        if self.bool_flag("bf16"):
            return True
        return not self.bool_flag("fp16") and self.accelerate_mixed_precision == "bf16"

    @property
    def fp16(self) -> bool:
        """``--fp16``; else accelerate's mixed precision when neither precision flag is on (see ``bf16``)."""
        if self.bool_flag("fp16"):
            return True
        return not self.bool_flag("bf16") and self.accelerate_mixed_precision == "fp16"

    @property
    def is_llama_factory(self) -> bool:
        """LLaMA-Factory's trainer (``llamafactory-cli train``, ``src/train.py`` with its flags)."""
        return "llamafactory" in self.entry.replace("_", "").lower() or (
            "finetuning_type" in self.args or ("stage" in self.args and "template" in self.args))

    @property
    def gradient_checkpointing(self) -> bool:
        """``--gradient_checkpointing`` (InternVL: ``--grad_checkpoint``). LLaMA-Factory turns it on
        unless ``disable_gradient_checkpointing`` (its ``model_args`` default)."""
        for name in GRAD_CKPT_FLAGS:
            if name in self.args:
                return self.bool_flag(name)
        if self.is_llama_factory:
            return not self.bool_flag("disable_gradient_checkpointing")
        return False

    @property
    def model_path(self) -> str | None:
        """``--model_name_or_path`` (alpaca-lora: ``--base_model``)."""
        return next((self.args[name] for name in MODEL_PATH_FLAGS if name in self.args), None)

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


def resolve_path(path: str, base_dir: str | Path | None, workdir: str | None = None) -> Path | None:
    """``path`` as an existing file (absolute, or under one of ``search_dirs``), else None.

    ``workdir`` is where the script's ``cd`` commands moved before the command (``cd finetune``):
    an absolute folder is tried first; a relative one is tried under each search folder before the
    folder itself.
    """
    p = Path(os.path.expanduser(path))
    if p.is_absolute():
        return p if p.exists() else None
    candidates: list[Path] = []
    if workdir and Path(workdir).is_absolute():
        candidates.append(Path(workdir) / p)
    for d in search_dirs(base_dir):
        if workdir and not Path(workdir).is_absolute():
            candidates.append(d / workdir / p)
        candidates.append(d / p)
    return next((c for c in candidates if c.exists()), None)


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
    state = ShellState(variables=dict(env or {}), exported=set(env or {}),
                       script_dir=str(Path(base_dir).resolve()) if base_dir is not None else None)
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
        warnings: list[str] = []
        workdir = cmd.workdir

        def resolve(path: str, workdir: str | None = workdir) -> Path | None:
            return resolve_path(path, base_dir, workdir)

        config_written, script_words = training_config_word(script_words)
        config_keys: tuple[str, ...] = ()
        args, order, unknown = _parse_training_args(script_words)
        if config_written is not None:
            config_path = resolve(config_written) if "$" not in config_written else None
            if config_path is None:
                warnings.append(f"training config {config_written} not found (looked in "
                                f"{', '.join(str(d) for d in search_dirs(base_dir))}): the flags it sets are unknown "
                                "and HF defaults are assumed for them (micro-batch 8, no bf16/fp16, no gradient "
                                "checkpointing); run doctor where the file is, or pass --model and check the numbers")
            else:
                from_file = read_training_config(config_path)
                config_keys = tuple(k for k in from_file if k not in args)
                args = {**from_file, **args}
                order = list(dict.fromkeys([*from_file, *order]))
                unknown = [*(f"--{k}" for k in from_file if k not in KNOWN_TRAINING_FLAGS), *unknown]
        if launcher == "accelerate" and largs.get("config_file"):
            config_path = resolve(largs["config_file"]) if "$" not in largs["config_file"] else None
            if config_path is None:
                warnings.append(f"accelerate config {largs['config_file']} not found: its process count, precision and "
                                "DeepSpeed/FSDP settings are unknown; the GPU count comes from --gpus")
            else:
                largs = {**read_accelerate_config(config_path), **largs}
        world = world_from_launcher(launcher, largs, cmd_env, resolve, warnings)
        ds_written = args.get("deepspeed")
        if ds_written is not None and ds_written.strip().lower() in _TRUE:  # legacy --deepspeed --deepspeed_config X
            ds_written = args.get("deepspeed_config")
        if ds_written is None:
            ds_written = largs.get("deepspeed_config_file")
        ds_path = resolve(ds_written) if ds_written and "$" not in ds_written else None
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
            base_dir=str(base_dir) if base_dir is not None else None, workdir=workdir,
            training_config=config_written, config_keys=config_keys,
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
    training = [s for s in specs if any(f in s.args for f in TRAINING_HINT_FLAGS) or s.training_config]
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
