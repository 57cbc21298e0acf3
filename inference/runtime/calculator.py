"""`calculator`: arithmetic and common math functions, parsed with `ast` and evaluated node by node
from a whitelist. Nothing is ever handed to eval(): a name, attribute, subscript, lambda or any node
not listed below is refused, and the sizes a tiny expression could blow up (huge powers, products,
factorials, rounding places) are refused before anything is computed: a check after the fact would come
only once the server had spent seconds or minutes on the number."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from inference.runtime.errors import VMFailure, bad_input

MAX_EXPRESSION = 1000
MAX_DEPTH = 50
MAX_FACTORIAL = 1000
# Integers larger than this (about 10^4000) are refused: the next operation on them could take seconds.
MAX_INT_BITS = 13_300
# round()'s ndigits: past every digit of the largest integer allowed (about 4004) and of any float
# (about 324 after the point), and round(1, -10**7) would first build 10**10,000,000 (seconds).
MAX_ROUND_DIGITS = 4100

Number = int | float

_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _factorial(n: Number) -> int:
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if not isinstance(n, int) or n < 0 or n > MAX_FACTORIAL:
        raise bad_input(f"factorial takes a whole number from 0 to {MAX_FACTORIAL}.", "expression")
    return math.factorial(n)


def _round(number: Number, ndigits: int | None = None) -> Number:
    if isinstance(ndigits, int) and abs(ndigits) > MAX_ROUND_DIGITS:
        raise bad_input(f"round() takes at most {MAX_ROUND_DIGITS} digits either side of the point.", "expression",
                        "too_large")
    return round(number, ndigits)


FUNCTIONS: dict[str, Callable[..., Number]] = {
    "abs": abs, "round": _round, "min": min, "max": max,
    "sqrt": math.sqrt, "cbrt": math.cbrt, "exp": math.exp, "log": math.log, "log2": math.log2,
    "log10": math.log10, "ln": math.log, "pow": math.pow, "hypot": math.hypot,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "atan2": math.atan2, "sinh": math.sinh, "cosh": math.cosh, "tanh": math.tanh,
    "degrees": math.degrees, "radians": math.radians, "floor": math.floor, "ceil": math.ceil,
    "trunc": math.trunc, "factorial": _factorial, "gcd": math.gcd,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}


def _too_large() -> VMFailure:
    return bad_input(f"the result is too large (whole numbers are limited to {MAX_INT_BITS} bits, about "
                     "10^4000).", "expression", "too_large")


def _checked(value: Any) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_input("the expression does not give a number.", "expression")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _too_large()
    return value


def _power(base: Number, exponent: Number) -> Number:
    # base ** exponent has about exponent * log2|base| bits: refused before Python builds it (an exponent
    # past MAX_INT_BITS is too large for any base of 2 or more, and too large to make a float of). A
    # negative exponent gives a float (computed as one, cheap); a float anywhere gives a float or an
    # OverflowError.
    if (isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1
            and (exponent > MAX_INT_BITS or exponent * math.log2(abs(base)) > MAX_INT_BITS)):
        raise _too_large()
    return base ** exponent


def _product(left: Number, right: Number) -> Number:
    # The product of two whole numbers has at least the sum of their bit lengths minus one bits.
    if (isinstance(left, int) and isinstance(right, int) and left and right
            and left.bit_length() + right.bit_length() - 1 > MAX_INT_BITS):
        raise _too_large()
    return left * right


def _evaluate(node: ast.AST, depth: int = 0) -> Number:
    if depth > MAX_DEPTH:
        raise bad_input("the expression is nested too deeply.", "expression")
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, depth + 1)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, depth + 1), _evaluate(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            return _checked(_power(left, right))
        if isinstance(node.op, ast.Mult):
            return _checked(_product(left, right))
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand, depth + 1))
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
            and not node.keywords):
        args = [_evaluate(arg, depth + 1) for arg in node.args]
        return _checked(FUNCTIONS[node.func.id](*args))
    if isinstance(node, ast.Name):
        raise bad_input(f"unknown name {node.id!r}; functions: {', '.join(sorted(FUNCTIONS))}; constants: "
                        f"{', '.join(sorted(CONSTANTS))}.", "expression", "unknown_name")
    raise bad_input(f"{type(node).__name__} is not allowed: use numbers, + - * / // % ** ^, parentheses and the "
                    "listed functions.", "expression", "unsupported_syntax")


def evaluate(expression: str) -> Number:
    """The value of `expression`; `^` means power, as on a calculator."""
    if len(expression) > MAX_EXPRESSION:
        raise bad_input(f"'expression' is limited to {MAX_EXPRESSION} characters.", "expression")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise bad_input(f"cannot parse the expression: {exc.msg}.", "expression", "syntax_error") from None
    try:
        value = _evaluate(tree)
    except ZeroDivisionError:
        raise bad_input("division by zero.", "expression", "math_error") from None
    except (ValueError, OverflowError, TypeError) as exc:
        raise bad_input(f"math error: {exc}.", "expression", "math_error") from None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def calculator_operator(inputs: dict[str, Any]) -> dict[str, Any]:
    expression = inputs.get("expression")
    if not isinstance(expression, str) or not expression.strip():
        raise bad_input("'expression' must be a non-empty string.", "expression", "invalid_type")
    try:
        value = evaluate(expression)
    except VMFailure as exc:
        exc.rule = True  # A well-formed string that is not an expression we evaluate.
        raise
    if isinstance(value, float) and not math.isfinite(value):
        raise bad_input("the result is not a finite number.", "expression", "math_error", rule=True)
    return {"value": value}
