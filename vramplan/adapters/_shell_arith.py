"""Static evaluation of shell integer arithmetic ``$((...))`` over known variables (nothing is executed).

Follows bash's arithmetic for the subset launch scripts use (``GRADIENT_ACC=$((BATCH / PER_DEVICE / GPUS))``):
integers, variables, ``+ - * / %``, unary signs and parentheses; division truncates toward zero. Imports only
the standard library.
"""

from __future__ import annotations

import re

_ARITH_TOKEN = re.compile(r"\s*(\d+|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|[A-Za-z_][A-Za-z0-9_]*|[-+*/%()])")


class _ArithmeticError(Exception):
    """An ``$((...))`` expression that cannot be evaluated statically."""


def evaluate_arithmetic(expression: str, variables: dict[str, str]) -> int | None:
    """``$((expression))`` with integers, known variables, ``+ - * / %`` and parentheses; None otherwise.

    Division truncates toward zero as in bash. An unset or non-integer variable makes the whole
    expression unknown (None) rather than bash's silent 0, so the caller reports it as unresolved.
    """
    tokens: list[str] = []
    pos = 0
    text = expression.rstrip()
    while pos < len(text):
        m = _ARITH_TOKEN.match(text, pos)
        if m is None:
            return None
        tokens.append(m.group(1))
        pos = m.end()
    values: list[int | str] = []
    for tok in tokens:
        if tok[0].isdigit():
            values.append(int(tok))
        elif tok[0] == "$" or tok[0].isalpha() or tok[0] == "_":
            name = tok.strip("${}")
            raw = variables.get(name, "").strip()
            if not re.fullmatch(r"-?\d+", raw):
                return None
            values.append(int(raw))
        else:
            values.append(tok)
    k = 0

    def peek() -> int | str | None:
        return values[k] if k < len(values) else None

    def take() -> int | str:
        nonlocal k
        if k >= len(values):
            raise _ArithmeticError
        k += 1
        return values[k - 1]

    def factor() -> int:
        tok = take()
        if tok == "-":
            return -factor()
        if tok == "+":
            return factor()
        if tok == "(":
            value = expr()
            if take() != ")":
                raise _ArithmeticError
            return value
        if isinstance(tok, int):
            return tok
        raise _ArithmeticError

    def term() -> int:
        value = factor()
        while peek() in ("*", "/", "%"):
            op, rhs = take(), factor()
            if op == "*":
                value *= rhs
                continue
            if rhs == 0:
                raise _ArithmeticError
            quotient = abs(value) // abs(rhs) * (1 if (value >= 0) == (rhs >= 0) else -1)
            value = quotient if op == "/" else value - quotient * rhs
        return value

    def expr() -> int:
        value = term()
        while peek() in ("+", "-"):
            value = value + term() if take() == "+" else value - term()
        return value

    try:
        result = expr()
    except _ArithmeticError:
        return None
    return result if k == len(values) else None
