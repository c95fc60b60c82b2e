"""A small, safe subset of POSIX shell: split a script into simple commands with variables expanded.

Owns: line continuations (backslash-newline), comments, single/double quotes, backslash escapes,
command separators (newline, ``;``, ``&&``, ``||``, ``|``, ``&``), redirections (``> log``, ``2>&1``,
``&> log``, ``< in``: dropped with their target, so they never become flag values), ``VAR=value`` /
``export VAR=value`` assignments, parameter expansion ``$VAR``, ``${VAR}``, ``${VAR:-x}``, ``${VAR-x}``,
``${VAR:=x}``, ``${VAR:+x}`` (unquoted expansions are split into words), integer arithmetic
``$((a / b * 2))`` over known variables, the reserved words that start a command inside a loop or an
``if`` (``do deepspeed ...``, ``then torchrun ...``), ``for VAR in a b c`` (the body is read once, with
``VAR=a``), and ``cd``/``pushd`` (the folder each command runs in, for relative paths). Nothing is executed: command substitution ``$(...)``, backticks and unknown
positional parameters stay literal (one word each) and are reported as unresolved. The lexer reads one
command at a time, so each command sees the assignments made before it. Imports only the standard library.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from ._shell_arith import evaluate_arithmetic

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
_BRACED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*|\d+)(?:(:?[-=+])(.*))?$", re.DOTALL)
_REDIRECT_OP = re.compile(r"&>>|&>|>>|>&|>\||<<<|<<-|<<|<&|<>|>|<")
_FD_DUP_TARGET = re.compile(r"\d+-?|-")
COMMAND_PREFIX_WORDS = frozenset({"do", "then", "else", "elif", "if", "while", "until", "{", "!"})
"""Reserved words that may stand before a simple command on the same line (``for ...; do deepspeed ...``)."""


@dataclass
class Command:
    """One simple command: its words (expanded), the assignments before it and where it is."""

    words: list[str]
    line: int
    """1-based line of the command's first word in the original text."""
    end_line: int
    """1-based line of its last word."""
    prefix_env: dict[str, str] = field(default_factory=dict)
    """``VAR=value`` words before the command name (environment of this command only)."""
    unresolved: list[str] = field(default_factory=list)
    """Expansions that could not be resolved (``$1``, ``$(...)``, unset variables)."""
    workdir: str | None = None
    """Folder the command runs in after the script's ``cd`` commands (``ShellState.workdir``)."""


@dataclass
class ShellState:
    """Variables known while walking the script (assigned, exported, or given by the caller)."""

    variables: dict[str, str] = field(default_factory=dict)
    exported: set[str] = field(default_factory=set)
    script_dir: str | None = None
    """Absolute folder of the script (what ``cd "$(dirname "$0")"`` changes to), when known."""
    workdir: str | None = None
    """Where ``cd`` has moved: None (the folder the script is started from, unknown), a path relative to
    it (``cd finetune`` -> ``finetune``), or an absolute path."""

    def change_dir(self, target: str | None) -> None:
        """Apply ``cd target``: relative targets stack on the current folder; unknown ones reset it to None."""
        if target is None or not target.strip() or target == "-" or target.startswith("~"):
            self.workdir = None
            return
        if "dirname" in target and "$0" in target:  # cd "$(dirname "$0")", cd `dirname $0`
            self.workdir = self.script_dir
            return
        if "$" in target or "`" in target:
            self.workdir = None
            return
        if posixpath.isabs(target):
            self.workdir = posixpath.normpath(target)
        else:
            self.workdir = posixpath.normpath(posixpath.join(self.workdir or "", target))


Part = tuple[str, bool]
"""A piece of a word and whether it came from an unquoted expansion (subject to word splitting)."""


class _Lexer:
    def __init__(self, text: str, state: ShellState) -> None:
        self.text = text
        self.i = 0
        self.line = 1
        self.state = state
        self.unresolved: list[str] = []
        self.last_expansion_literal = False
        """Whether the last ``_expand`` left its text literal (``$(...)``): one word, never split."""

    def _at(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.text[j] if j < len(self.text) else ""

    def _kept_literal(self, value: str) -> str:
        """A variable's value; one that holds an unevaluated ``$(...)``/backticks stays one word, unresolved."""
        text = value.strip()
        if (text.startswith("$(") and text.endswith(")")) or (len(text) > 1 and text[0] == text[-1] == "`"):
            self.last_expansion_literal = True
            self.unresolved.append(text)
        return value

    def _expand(self) -> str:
        """Expand the ``$...`` at ``self.i``."""
        self.i += 1
        self.last_expansion_literal = False
        c = self._at()
        if c == "{":
            end = self.text.find("}", self.i)
            if end < 0:
                return "${"
            body = self.text[self.i + 1 : end]
            self.i = end + 1
            m = _BRACED.match(body)
            if m is None:
                self.unresolved.append("${" + body + "}")
                return "${" + body + "}"
            name, op, word = m.group(1), m.group(2), m.group(3) or ""
            value = self.state.variables.get(name)
            if op in (":-", ":=") and not value:
                value = word
                if op == ":=":
                    self.state.variables[name] = word
            elif op in ("-", "=") and value is None:
                value = word
                if op == "=":
                    self.state.variables[name] = word
            elif op in (":+", "+"):
                value = word if (value if op == ":+" else value is not None) else ""
            if value is None:
                self.unresolved.append("${" + name + "}")
                return "${" + name + "}"
            return self._kept_literal(value)
        if c == "(":
            depth, j = 0, self.i
            while j < len(self.text):
                depth += {"(": 1, ")": -1}.get(self.text[j], 0)
                if depth == 0:
                    break
                j += 1
            literal = "$" + self.text[self.i : j + 1]
            self.i = j + 1
            if literal.startswith("$((") and literal.endswith("))"):
                number = evaluate_arithmetic(literal[3:-2], self.state.variables)
                if number is not None:
                    return str(number)
            self.unresolved.append(literal)
            self.last_expansion_literal = True
            return literal
        m = _NAME.match(self.text, self.i)
        if m:
            self.i = m.end()
            value = self.state.variables.get(m.group(0))
            if value is None:
                self.unresolved.append("$" + m.group(0))
                return "$" + m.group(0)
            return self._kept_literal(value)
        if c and (c.isdigit() or c in "@*#?$!"):
            self.i += 1
            self.unresolved.append("$" + c)
            return "$" + c
        return "$"

    def _double_quoted(self) -> str:
        self.i += 1
        buf: list[str] = []
        while self.i < len(self.text) and self.text[self.i] != '"':
            ch = self.text[self.i]
            if ch == "\\" and self._at(1) in ('"', "\\", "$", "`", "\n"):
                if self._at(1) == "\n":
                    self.line += 1
                else:
                    buf.append(self._at(1))
                self.i += 2
            elif ch == "$":
                buf.append(self._expand())
            else:
                self.line += ch == "\n"
                buf.append(ch)
                self.i += 1
        self.i += 1
        return "".join(buf)

    def next_command(self) -> tuple[list[tuple[list[Part], int]], int] | None:
        """Words (as parts, with their line) of the next command, and the line it ended on; None at EOF."""
        if self.i >= len(self.text):
            return None
        words: list[tuple[list[Part], int]] = []
        parts: list[Part] = []
        in_word = False
        drop_next_word = False  # the target of a redirection (``> train.log``)
        word_line = self.line
        text = self.text

        def flush() -> None:
            nonlocal parts, in_word, drop_next_word
            if in_word:
                if drop_next_word:
                    drop_next_word = False
                else:
                    words.append((parts, word_line))
            parts, in_word = [], False

        while self.i < len(text):
            c = text[self.i]
            if c == "\\" and self._at(1) == "\n":  # line continuation
                self.i += 2
                self.line += 1
                continue
            if c == "\n":
                flush()
                end = self.line
                self.line += 1
                self.i += 1
                return words, end
            if c in " \t\r":
                flush()
                self.i += 1
                continue
            if c == "#" and not in_word:
                while self.i < len(text) and text[self.i] != "\n":
                    self.i += 1
                continue
            if c in "<>" or (c == "&" and self._at(1) == ">"):
                if in_word and parts and all(not split and piece.isdigit() for piece, split in parts):
                    parts, in_word = [], False  # the ``2`` of ``2>&1`` is a file descriptor, not a word
                flush()
                m = _REDIRECT_OP.match(text, self.i)
                assert m is not None
                self.i = m.end()
                if m.group(0).endswith("&"):  # 2>&1, >&2, <&0: duplicates a descriptor, no file word
                    dup = _FD_DUP_TARGET.match(text, self.i)
                    if dup is not None:
                        self.i = dup.end()
                else:
                    drop_next_word = True
                continue
            if c in ";|&":
                flush()
                self.i += 2 if text[self.i : self.i + 2] in ("&&", "||") else 1
                return words, self.line
            if not in_word:
                in_word, word_line = True, self.line
            if c == "'":
                end = text.find("'", self.i + 1)
                end = len(text) if end < 0 else end
                chunk = text[self.i + 1 : end]
                self.line += chunk.count("\n")
                parts.append((chunk, False))
                self.i = end + 1
            elif c == '"':
                parts.append((self._double_quoted(), False))
            elif c == "\\":
                parts.append((self._at(1), False))
                self.i += 2
            elif c == "$":
                expanded = self._expand()
                parts.append((expanded, not self.last_expansion_literal))
            elif c == "`":
                end = text.find("`", self.i + 1)
                end = len(text) if end < 0 else end
                literal = text[self.i : end + 1]
                self.unresolved.append(literal)
                parts.append((literal, False))
                self.i = end + 1
            else:
                parts.append((c, False))
                self.i += 1
        flush()
        return words, self.line


def join_parts(parts: list[Part]) -> list[str]:
    """One lexed word -> shell words: unquoted expansions are split on whitespace (field splitting)."""
    out: list[str] = []
    current = ""
    has_current = False
    for text, splittable in parts:
        if not splittable:
            current += text
            has_current = True
            continue
        pieces = text.split()
        if not pieces:
            continue
        if text[:1].isspace() and has_current:
            out.append(current)
            current, has_current = "", False
        for n, piece in enumerate(pieces):
            if n:
                out.append(current)
                current = ""
            current += piece
            has_current = True
        if text[-1:].isspace():
            out.append(current)
            current, has_current = "", False
    if has_current:
        out.append(current)
    return out


def split_commands(text: str, state: ShellState) -> list[Command]:
    """Walk ``text`` top to bottom, applying assignments to ``state``; return every simple command."""
    lexer = _Lexer(text, state)
    commands: list[Command] = []
    while True:
        start_unresolved = len(lexer.unresolved)
        item = lexer.next_command()
        if item is None:
            break
        lexed, end_line = item
        words: list[str] = []
        lines: list[int] = []
        for parts, line in lexed:
            for w in join_parts(parts):
                words.append(w)
                lines.append(line)
        if not words:
            continue
        while words and (words[0] in COMMAND_PREFIX_WORDS or words[0].startswith("(") and not _ASSIGN.match(words[0])):
            if words[0].startswith("(") and words[0] != "(":
                words[0] = words[0][1:]  # "(cd dir && deepspeed ...)": a subshell
                continue
            words, lines = words[1:], lines[1:]
        if not words:
            continue
        prefix: dict[str, str] = {}
        k = 0
        while k < len(words) and _ASSIGN.match(words[k]):
            m = _ASSIGN.match(words[k])
            assert m is not None
            prefix[m.group(1)] = m.group(2)
            k += 1
        rest = words[k:]
        if not rest:
            state.variables.update(prefix)  # a plain assignment line
            continue
        if rest[0] in ("export", "declare", "local", "readonly", "typeset"):
            for item_word in rest[1:]:
                m = _ASSIGN.match(item_word)
                if m:
                    state.variables[m.group(1)] = m.group(2)
                    state.exported.add(m.group(1))
                elif _NAME.fullmatch(item_word):
                    state.exported.add(item_word)
            continue
        if rest[0] == "unset":
            for name in rest[1:]:
                state.variables.pop(name, None)
            continue
        if rest[0] == "for" and len(rest) > 3 and rest[2] == "in" and _NAME.fullmatch(rest[1]):
            if "$" not in rest[3] and "`" not in rest[3]:  # the loop body is read once, with the first value
                state.variables[rest[1]] = rest[3]
            continue
        if rest[0] in ("cd", "pushd"):
            targets = [w for w in rest[1:] if not w.startswith("-") or w == "-"]
            state.change_dir(targets[0] if targets else None)
            continue
        if rest[0] == "popd":
            state.change_dir(None)
            continue
        commands.append(Command(
            words=rest, line=lines[k], end_line=max(lines[-1], end_line if lexed else lines[-1]),
            prefix_env=prefix, unresolved=lexer.unresolved[start_unresolved:], workdir=state.workdir,
        ))
    return commands
