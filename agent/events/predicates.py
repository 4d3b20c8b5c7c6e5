"""Safe rule predicates: a small boolean language over an observation, never Python ``eval``.

A predicate is parsed with :mod:`ast` and only a whitelist of node types is accepted:
``and``/``or``/``not``, comparisons (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, chained),
``in``/``not in``, the word ``contains`` (``summary contains 'cash'`` is ``'cash' in summary``),
names from a fixed vocabulary, and literals (text, numbers, ``true``/``false``/``none``, lists
of literals). Calls, attributes, subscripts and arithmetic are rejected when the rules file is
loaded, as are names outside the vocabulary and comparisons whose types can never match.

Text matching is case-insensitive; ``'cigarette' in objects`` is true when any object mentions
"cigarette" (``"pack of cigarettes"``); ``source in ['door', 'porch']`` compares whole values.
A comparison with a missing value (``people`` of an unparsed answer) is false.

What the object detector and the tracker saw (None when no detector ran on the frame):
``detected`` (the labels in view, one per object: ``'car' in detected``), ``count_<label>`` (objects
of a COCO class in view: ``count_person >= 2``, ``count_traffic_light``), ``entered`` and
``exited`` (labels of the tracks that came or went since the source's previous observation),
``dwell_s`` (seconds the longest-present track in view has been there), and per zone of the rules
file ``zone_<name>`` (labels of the tracks in it: ``'person' in zone_door``).
"""

from __future__ import annotations

import ast
import difflib
import io
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tools.perception.labels import coco_labels

# Types of the values a predicate sees.
BOOL, NUMBER, TEXT, LIST, NONE = "yes/no", "number", "text", "list", "none"

COUNT_PREFIX = "count_"


def count_name(label: str) -> str:
    """The predicate name of a class's count: ``count_person``, ``count_traffic_light``."""
    return COUNT_PREFIX + label.replace(" ", "_")


# The names every predicate may use, besides the watch questions (which are yes/no) and zones.
BASE_VOCABULARY: dict[str, str] = {
    "people": NUMBER,
    "objects": LIST,
    "actions": LIST,
    "summary": TEXT,
    "changes": TEXT,
    "gate_score": NUMBER,
    "source": TEXT,
    "hour": NUMBER,
    "minute": NUMBER,
    "weekday": TEXT,
    "parsed": BOOL,
    "detected": LIST,
    "entered": LIST,
    "exited": LIST,
    "dwell_s": NUMBER,
    **{count_name(label): NUMBER for label in coco_labels()},
}

MAX_DEPTH = 100
"""How deep a predicate may nest (``not``, ``and``/``or``, comparisons, lists): Python's parser
already refuses more than 200 nested parentheses; a chain of ``not`` needs none, so it is bounded
here, well before Python's recursion limit."""

_LITERAL_NAMES = {"true": True, "false": False, "none": None}
_CONTAINS = "contains"
_CONTAINS_OP = "@"  # ``contains`` is rewritten to this operator before parsing (same columns)
_COMPARE_SYMBOLS = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}
_FORBIDDEN = {
    ast.Call: "function calls are not allowed",
    ast.Attribute: "attribute access ('.') is not allowed",
    ast.Subscript: "subscripts ('[...]' after a value) are not allowed",
    ast.BinOp: "arithmetic is not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.NamedExpr: "assignments are not allowed",
}


class PredicateError(ValueError):
    """A predicate that is not valid, with its 1-based position inside the predicate text."""

    def __init__(self, reason: str, line: int = 1, column: int = 1) -> None:
        super().__init__(reason)
        self.reason, self.line, self.column = reason, line, column


@dataclass(frozen=True, eq=False)
class Predicate:
    """A checked predicate: call it with a ``name -> value`` context to get a bool."""

    text: str
    names: frozenset[str]
    _tree: ast.expr

    def __call__(self, context: Mapping[str, Any]) -> bool:
        return bool(_evaluate(self._tree, context))

    def __str__(self) -> str:
        return self.text


def compile_predicate(text: str, vocabulary: Mapping[str, str]) -> Predicate:
    """Parse and check ``text`` against ``vocabulary`` (name -> type); raises PredicateError."""
    if not text.strip():
        raise PredicateError("the predicate is empty")
    flat = text.replace("\r", " ").replace("\n", " ")
    lead = len(flat) - len(flat.lstrip())
    flat = flat.strip()
    source = _rewrite_contains(flat, text, lead)
    try:
        tree = ast.parse(source, mode="eval").body
    except (RecursionError, MemoryError):
        raise PredicateError(_too_deep()) from None
    except SyntaxError as exc:
        column = (exc.offset or 1) - 1
        near = flat[column : column + 20].strip()
        detail = "" if exc.msg == "invalid syntax" else f": {exc.msg}"
        where = f"near '{near}'" if near else "at the end"
        raise PredicateError(f"invalid syntax {where}{detail}", *_position(text, lead, column)) from None
    checker = _Checker(text, flat, lead, vocabulary)
    checker.type_of(tree)
    return Predicate(text=text.strip(), names=frozenset(checker.names), _tree=tree)


def _too_deep() -> str:
    return f"the predicate nests more than {MAX_DEPTH} levels deep (not, and/or, comparisons): simplify it"


def _rewrite_contains(flat: str, text: str, lead: int) -> str:
    """``flat`` (one line) with the word ``contains`` turned into an operator, columns unchanged."""
    chars = list(flat)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(flat).readline))
    except (tokenize.TokenError, SyntaxError):
        return flat  # the parser reports the error with its position
    for token in tokens:
        if token.type == tokenize.OP and token.string == _CONTAINS_OP:
            raise PredicateError("'@' is not allowed", *_position(text, lead, token.start[1]))
        if token.type == tokenize.NAME and token.string == _CONTAINS:
            start = token.start[1]
            chars[start : start + len(_CONTAINS)] = _CONTAINS_OP + " " * (len(_CONTAINS) - 1)
    return "".join(chars)


def _position(text: str, lead: int, column: int) -> tuple[int, int]:
    """(line, column), 1-based, in ``text`` of a 0-based column of the flattened source."""
    offset = min(lead + max(column, 0), len(text))
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1


class _Checker:
    """Walks a parsed predicate, rejecting what is not whitelisted, and infers types."""

    def __init__(self, text: str, flat: str, lead: int, vocabulary: Mapping[str, str]) -> None:
        self.text, self.flat, self.lead, self.vocabulary = text, flat, lead, vocabulary
        self.names: set[str] = set()
        self.depth = 0

    def fail(self, node: ast.AST, reason: str) -> PredicateError:
        return PredicateError(reason, *_position(self.text, self.lead, getattr(node, "col_offset", 0)))

    def segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.flat, node) or ""

    def type_of(self, node: ast.AST) -> str:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self.fail(node, _too_deep())
            return self._type_of(node)
        finally:
            self.depth -= 1

    def _type_of(self, node: ast.AST) -> str:
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self.type_of(value)
            return BOOL
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                self._check_pair(node, type(op), left, right)
                left = right
            return BOOL
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            self._check_pair(node, ast.In, node.right, node.left)
            return BOOL
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.List | ast.Tuple):
            for item in node.elts:
                if self.type_of(item) not in (TEXT, NUMBER, BOOL, NONE):
                    raise self.fail(item, "a list may only hold literal values")
            return LIST
        reason = next((r for kind, r in _FORBIDDEN.items() if isinstance(node, kind)), None)
        if reason is None:
            reason = f"'{type(node).__name__}' expressions are not allowed"
        raise self.fail(node, f"{reason}: {self.segment(node)}")

    def _unary(self, node: ast.UnaryOp) -> str:
        if isinstance(node.op, ast.Not):
            self.type_of(node.operand)
            return BOOL
        signed = isinstance(node.op, ast.USub | ast.UAdd) and isinstance(node.operand, ast.Constant)
        if signed and self._constant(node.operand) == NUMBER:
            return NUMBER
        raise self.fail(node, f"arithmetic is not allowed: {self.segment(node)}")

    def _name(self, node: ast.Name) -> str:
        if node.id in _LITERAL_NAMES:
            return NONE if _LITERAL_NAMES[node.id] is None else BOOL
        if node.id not in self.vocabulary:
            close = difflib.get_close_matches(node.id, list(self.vocabulary), n=1)
            names = sorted(name for name in self.vocabulary if not name.startswith(COUNT_PREFIX))
            known = ", ".join([*names, "count_<label>"])
            hint = f"did you mean '{close[0]}'?" if close else f"known: {known}"
            raise self.fail(node, f"unknown name '{node.id}' ({hint})")
        self.names.add(node.id)
        return self.vocabulary[node.id]

    def _constant(self, node: ast.Constant) -> str:
        value = node.value
        if value is None:
            return NONE
        if isinstance(value, bool):
            return BOOL
        if isinstance(value, int | float):
            return NUMBER
        if isinstance(value, str):
            return TEXT
        raise self.fail(node, f"literal {self.segment(node)} is not allowed (use text, numbers, true, false)")

    def _check_pair(self, node: ast.AST, op: type, left: ast.AST, right: ast.AST) -> None:
        left_type, right_type = self.type_of(left), self.type_of(right)
        symbol = _COMPARE_SYMBOLS.get(op, "contains")
        if op in (ast.In, ast.NotIn):
            if right_type not in (TEXT, LIST):
                where = f"{self.segment(right)} is {right_type}"
                raise self.fail(node, f"'{symbol}' needs text or a list on its right; {where}")
            if left_type not in (TEXT, NUMBER) or (right_type == TEXT and left_type != TEXT):
                raise self.fail(node, f"cannot look for {self.segment(left)} ({left_type}) in {right_type}")
        elif op in (ast.Lt, ast.LtE, ast.Gt, ast.GtE):
            if left_type != NUMBER or right_type != NUMBER:
                raise self.fail(node, f"'{symbol}' compares numbers: {self.segment(node)}")
        elif NONE not in (left_type, right_type) and left_type != right_type:
            hint = " (use 'in' to look inside a list)" if LIST in (left_type, right_type) else ""
            raise self.fail(node, f"{self.segment(node)} compares {left_type} with {right_type}{hint}")


def _evaluate(node: ast.AST, context: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_evaluate(value, context) for value in node.values)
        return any(_evaluate(value, context) for value in node.values)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, context)
        if isinstance(node.op, ast.Not):
            return not operand
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, context)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _evaluate(right_node, context)
            if not _compare(type(op), left, right, literal_list=isinstance(right_node, ast.List | ast.Tuple)):
                return False
            left = right
        return True
    if isinstance(node, ast.BinOp):  # ``left contains right``
        literal = isinstance(node.left, ast.List | ast.Tuple)
        return _compare(
            ast.In, _evaluate(node.right, context), _evaluate(node.left, context), literal_list=literal
        )
    if isinstance(node, ast.Name):
        return _LITERAL_NAMES[node.id] if node.id in _LITERAL_NAMES else context.get(node.id)
    if isinstance(node, ast.List | ast.Tuple):
        return [_evaluate(item, context) for item in node.elts]
    if isinstance(node, ast.Constant):
        return node.value
    raise TypeError(f"unchecked predicate node {type(node).__name__}")  # compile_predicate rejects these


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _compare(op: type, left: Any, right: Any, *, literal_list: bool) -> bool:
    if op in (ast.In, ast.NotIn):
        if left is None or right is None:
            return False
        needle = _fold(left)
        if isinstance(right, str):
            found = isinstance(needle, str) and needle in right.casefold()
        elif literal_list or not isinstance(needle, str):
            found = any(needle == _fold(item) for item in right)
        else:
            found = any(isinstance(item, str) and needle in item.casefold() for item in right)
        return found if op is ast.In else not found
    if op is ast.Eq:
        return _fold(left) == _fold(right)
    if op is ast.NotEq:
        return _fold(left) != _fold(right)
    if not isinstance(left, int | float) or not isinstance(right, int | float):
        return False
    return {ast.Lt: left < right, ast.LtE: left <= right, ast.Gt: left > right, ast.GtE: left >= right}[op]
