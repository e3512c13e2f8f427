"""Host-side preconditions: symbolic facts the compiler relied on, checked before launch.

An assertion is `{"expr": <ast>, "message": str}`, the AST a nested list: ["var", name], ["int", v], or
[op, args...] with op in add sub mul floordiv floormod min max eq ne lt le gt ge and or not. The compiler writes
them (recom_tvm.shapes.assertions) when a rewrite holds only under a condition on the input sizes, e.g. a
divisor being non-zero; the runtime evaluates them on the symbol values bound from the feeds.
"""

from __future__ import annotations

from ..errors import InvalidArgumentError

_OPS = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "floordiv": lambda a, b: a // b if b else None, "floormod": lambda a, b: a % b if b else None,
    "min": min, "max": max, "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b,
    "and": lambda a, b: bool(a) and bool(b), "or": lambda a, b: bool(a) or bool(b), "not": lambda a: not a,
}


def evaluate(ast, env: dict[str, int]):
    """Value of an assertion AST under symbol values `env` (None if a division by zero occurs)."""
    kind = ast[0]
    if kind == "int":
        return int(ast[1])
    if kind == "var":
        return env[ast[1]]
    args = [evaluate(a, env) for a in ast[1:]]
    if any(a is None for a in args):
        return None
    return _OPS[kind](*args)


def assertion_symbols(spec) -> set[str]:
    """The symbols a spec's assertions read (computed once per spec)."""
    cached = spec.__dict__.get("_assertion_symbols")
    if cached is None or cached[0] is not spec.assertions:
        names: set[str] = set()

        def walk(ast):
            if ast[0] == "var":
                names.add(ast[1])
            elif ast[0] != "int":
                for a in ast[1:]:
                    walk(a)

        for a in spec.assertions:
            walk(a["expr"])
        cached = spec.__dict__["_assertion_symbols"] = (spec.assertions, names)
    return cached[1]


def check_all(assertions: list[dict], env: dict[str, int]) -> None:
    """Raise InvalidArgumentError with the message of the first assertion that fails under `env`."""
    pairs = _equal_pairs(assertions)
    if pairs is not None:  # all "symbol == symbol" (the common case: one per merged batch dim): vectorized
        left, right = pairs
        if all(env[a] == env[b] for a, b in zip(left, right)):
            return
    for a in assertions:
        if not evaluate(a["expr"], env):
            raise InvalidArgumentError(a["message"])


def _equal_pairs(assertions: list[dict]):
    key = id(assertions)
    if _PAIRS_CACHE.get(key, (None,))[0] is not assertions:
        ok = all(a["expr"][0] == "eq" and len(a["expr"]) == 3 and a["expr"][1][0] == "var" and
                 a["expr"][2][0] == "var" for a in assertions)
        pairs = ([a["expr"][1][1] for a in assertions], [a["expr"][2][1] for a in assertions]) if ok else None
        _PAIRS_CACHE[key] = (assertions, pairs)
    return _PAIRS_CACHE[key][1]


_PAIRS_CACHE: dict[int, tuple] = {}
