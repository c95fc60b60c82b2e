"""Corrected copies of the user's DeepSpeed JSON and launch script (``vramplan doctor --fix-dir DIR``).

``corrected_ds_config`` and ``corrected_script`` are pure (text in, text out): the chosen option's
changes are applied last, after the safe fixes of the findings (those that do not move memory and do
not touch the same keys). Only the analysed launcher command is edited: an existing ``--flag`` gets
its new value in place, a new flag is appended to the command (before a trailing ``> log``, ``2>&1``,
``| tee`` or ``&``), environment changes become ``export`` lines just before it, and a header comment
lists every change and the predicted peak. A flag that the training script reads from its YAML/JSON
config file (LLaMA-Factory, alignment-handbook) is not put on the command line (those scripts do not
all take command-line overrides): the header says to set it in that file.
``write_fix_files`` computes everything first, refuses to overwrite the originals (or to write into a
non-empty folder without ``force``), then writes.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..adapters.deepspeed_config import set_dotted
from ..core.errors import VramplanError
from ..core.units import GiB
from .candidates import DS_TEMPLATE
from .types import Change, Finding, Severity

if TYPE_CHECKING:
    from .diagnose import DoctorReport
    from .prescribe import Option

SAFE_RULE_FIXES = frozenset({"DS002", "DS003", "DS006", "DS007", "DS008", "DS009", "DS011", "HW001", "TR005"})
"""Findings whose fixes never change the memory the option was estimated with."""


def merged_changes(option: Option, findings: tuple[Finding, ...]) -> tuple[Change, ...]:
    """Safe finding fixes first, then the option's changes (which win on the same key)."""
    option_keys = {(c.target, c.key) for c in option.changes}
    out: list[Change] = []
    for f in findings:
        if f.fix is None or f.rule_id not in SAFE_RULE_FIXES or f.severity is Severity.INFO:
            continue
        for c in f.fix.changes:
            if (c.target, c.key) not in option_keys and all(
                not (c.key.startswith(k + ".") or k.startswith(c.key + ".")) for t, k in option_keys if t == c.target
            ):
                out.append(c)
    unique: dict[str, Change] = {}
    for c in out + list(option.changes):
        unique.setdefault(json.dumps(c.as_dict(), sort_keys=True, default=str), c)
    return tuple(unique.values())


def corrected_ds_config(raw: Mapping[str, Any] | None, changes: tuple[Change, ...]) -> dict[str, Any] | None:
    """The DeepSpeed JSON with ``ds_config`` changes applied (a template when there was none and one is needed)."""
    ds_changes = [c for c in changes if c.target == "ds_config"]
    if raw is None and not ds_changes:
        return None
    config = copy.deepcopy(dict(raw)) if raw is not None else copy.deepcopy(DS_TEMPLATE)
    for c in ds_changes:
        set_dotted(config, c.key, copy.deepcopy(c.value), remove=c.remove)
    return config


def _whole_floats_as_ints(node: Any) -> Any:
    """1e9 read from JSON is the float 1000000000.0; write it back as 1000000000."""
    if isinstance(node, dict):
        return {k: _whole_floats_as_ints(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_whole_floats_as_ints(v) for v in node]
    if isinstance(node, float) and node.is_integer():
        return int(node)
    return node


def _flag_pattern(key: str) -> re.Pattern[str]:
    names = "|".join(re.escape(n) for n in {key, key.replace("_", "-")})
    value = r"""(?:'[^']*'|"(?:[^"\\]|\\.)*"|(?!--)[^\s\\]\S*)"""
    return re.compile(rf"(?<!\S)--(?:{names})(?:=(?P<eq>{value})|(?P<sp>[ \t]+)(?P<val>{value}))?(?=\s|$)")


def _quote(value: str) -> str:
    return value if re.fullmatch(r"[\w@%+=:,./-]+", value) else shlex.quote(value)


_SHELL_TAIL = re.compile(r"""(?:^|(?<=\s))(?:\d*>>?|&>>?|\d*<|\||&|;)""")
"""Where a command's redirections, pipes or separators begin (outside quotes): flags go before this."""


def _shell_tail_start(line: str, start: int = 0) -> int | None:
    """Index in ``line`` (at or after ``start``) where a redirection/pipe/``&``/``;`` starts, if any."""
    quote = ""
    k = start
    while k < len(line):
        ch = line[k]
        if quote:
            if ch == "\\" and quote == '"':
                k += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (k == 0 or line[k - 1].isspace()):
            return None
        elif _SHELL_TAIL.match(line, k) and (k == 0 or line[k - 1].isspace()):
            return k
        k += 1
    return None


_FLAG_START = re.compile(r"(?<!\S)--\w")


def _command_tail(lines: list[str], first: int, last: int) -> tuple[int, int] | None:
    """(line, column) where the analysed command's trailing redirections/pipes begin: the first one after
    its last ``--flag`` (so ``for ...; do deepspeed ...`` keeps its ``;`` in front)."""
    flag_line, flag_col = first, 0
    for i in range(first, last + 1):
        starts = [m.start() for m in _FLAG_START.finditer(lines[i])]
        if starts:
            flag_line, flag_col = i, starts[-1]
    for i in range(flag_line, last + 1):
        k = _shell_tail_start(lines[i], flag_col if i == flag_line else 0)
        if k is not None:
            return i, k
    return None


def config_file_changes(changes: tuple[Change, ...], config_keys: tuple[str, ...], config_file: str | None) -> tuple[Change, ...]:
    """Script changes of flags that come from the training config file, turned into notes to edit that file."""
    if not config_file:
        return changes
    out: list[Change] = []
    for c in changes:
        if c.target == "script" and c.key in config_keys:
            text = (f"remove {c.key} from {config_file}" if c.remove else
                    f"set {c.key}: {c.value} in {config_file} (the training script reads it from there)")
            out.append(Change("code", f"config:{c.key}", text))
        else:
            out.append(c)
    return tuple(out)


def corrected_script(text: str, line: int, end_line: int, changes: tuple[Change, ...], header: list[str]) -> str:
    """``text`` with the command on lines ``line``..``end_line`` (1-based) edited (module docstring)."""
    lines = text.split("\n")
    first, last = line - 1, end_line - 1
    appended: list[str] = []
    for c in (c for c in changes if c.target == "script"):
        pattern = _flag_pattern(c.key)
        found = False
        for i in range(first, last + 1):
            def repl(m: re.Match[str], c: Change = c) -> str:
                if c.remove:
                    return ""
                return f"--{c.key} {_quote(str(c.value))}"
            new, n = pattern.subn(repl, lines[i])
            if n:
                found = True
                if c.remove and new.strip() in ("", "\\"):
                    new = "\\" if i < last else ""
                lines[i] = new
        if not found and not c.remove:
            appended.append(f"--{c.key} {_quote(str(c.value))}")
    tail_at = _command_tail(lines, first, last)
    if appended and tail_at is not None:
        i, k = tail_at
        if lines[i][:k].strip() in ("", "\\"):  # "    > train.log 2>&1 &" on its own line: new lines before it
            leading = re.match(r"^[ \t]*", lines[i])
            indent = (leading.group(0) if leading else "") or "    "
            lines[i:i] = [indent + a + " \\" for a in appended]
        else:
            lines[i] = lines[i][:k].rstrip() + " " + " ".join(appended) + " " + lines[i][k:]
        appended = []
    if appended:
        leading = re.match(r"^[ \t]*", lines[last])
        indent = (leading.group(0) if leading and last > first else "") or "    "
        if last == first:
            lines[last] = lines[last].rstrip() + " " + " ".join(appended)
        else:
            lines[last] = lines[last].rstrip() + " \\"
            new_lines = [indent + a + " \\" for a in appended]
            new_lines[-1] = new_lines[-1][:-2]
            lines[last + 1:last + 1] = new_lines
    env_lines = []
    for c in (c for c in changes if c.target == "env"):
        env_lines.append(f"unset {c.key}" if c.remove else f"export {c.key}={_quote(str(c.value))}")
    lines[first:first] = env_lines
    start = 1 if lines and lines[0].startswith("#!") else 0
    lines[start:start] = header
    return "\n".join(lines)


def _header(report: DoctorReport, option: Option, changes: tuple[Change, ...], source: str) -> list[str]:
    est = option.estimate
    launch = report.context.launch
    out = [f"# Corrected by `vramplan doctor` from {source} (the original is left untouched).",
           f"# Option: {option.title}",
           (f"# Predicted peak per GPU: {est.device_used_bytes / GiB:.2f} GiB of {est.usable_bytes / GiB:.2f} GiB usable"
            f" ({'fits' if option.fits else 'does NOT fit'})."),
           "# Changes:"]
    out += [f"#   {c.describe()}" for c in changes]
    todo = [c for c in changes if c.target in ("code", "hardware")]
    if todo:
        out.append("# Not applied here (do these yourself):")
        out += [f"#   {c.describe()}" for c in todo]
    if launch is not None and launch.num_commands > 1:
        out.append(f"# Only launcher command {launch.command_index} of {launch.num_commands} (line {launch.line}) was edited.")
    return out


def fix_file_texts(report: DoctorReport, *, choice: int | None = None,
                   ds_reference: Callable[[str], str] = lambda name: name) -> list[tuple[str, str]]:
    """The corrected files as ``(file name, text)``: the script first, then the DeepSpeed JSON when one is used.

    Pure (nothing is read or written). ``ds_reference`` maps the JSON's file name to the path the corrected
    script passes to ``--deepspeed`` (``write_fix_files``: its absolute path in the fix folder; the web page:
    the bare name, next to the script)."""
    option = report.option_to_apply(choice)
    if option is None:
        raise VramplanError("nothing fits on these GPUs, not even LoRA/QLoRA: no corrected files were written "
                            "(see the alternatives; pick one with --fix-choice N)")
    ctx = report.context
    launch = ctx.launch
    if launch is None:
        raise VramplanError("no launch command to correct")
    changes = merged_changes(option, report.findings)
    script_name = Path(report.script_path).name if report.script_path else "launch.sh"
    ds_src = Path(ctx.ds.source) if ctx.ds is not None and Path(ctx.ds.source).exists() else None
    config = corrected_ds_config(ctx.ds.raw if ctx.ds is not None else None, changes)
    ds_name = ds_src.name if ds_src else "ds_config.json"
    if config is not None:
        changes = tuple(c for c in changes if not (c.target == "script" and c.key == "deepspeed")) + (
            Change("script", "deepspeed", ds_reference(ds_name)),)
    changes = config_file_changes(changes, launch.config_keys, launch.training_config)
    source = report.script_path or "--args"
    text = launch.text if report.script_path else "#!/bin/bash\n" + launch.text.strip() + "\n"
    offset = 0 if report.script_path else 1
    script = corrected_script(text, launch.line + offset, launch.end_line + offset, changes,
                              _header(report, option, changes, source))
    files = [(script_name, script)]
    if config is not None:
        files.append((ds_name, json.dumps(_whole_floats_as_ints(config), indent=4) + "\n"))
    return files


def write_fix_files(report: DoctorReport, fix_dir: str | Path, *, choice: int | None = None, force: bool = False) -> list[Path]:
    """Write the corrected JSON (when DeepSpeed is used) and script into ``fix_dir``; returns the paths written.

    Everything is computed first (``fix_file_texts``); the originals are never overwritten and a non-empty
    folder is refused without ``force``."""
    out_dir = Path(fix_dir)
    files = fix_file_texts(report, choice=choice, ds_reference=lambda name: str((out_dir / name).resolve()))
    ctx = report.context
    ds_src = Path(ctx.ds.source) if ctx.ds is not None and Path(ctx.ds.source).exists() else None
    originals = {p.resolve() for p in (Path(report.script_path) if report.script_path else None, ds_src) if p}
    for name, _ in files:
        if (out_dir / name).resolve() in originals:
            raise VramplanError(f"--fix-dir {fix_dir} would overwrite the original {out_dir / name}; choose another folder")
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir()) and not force)):
        raise VramplanError(f"--fix-dir {fix_dir} exists and is not an empty folder; choose another or add --force")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files:
        path = out_dir / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    written[0].chmod(0o755)
    return written
