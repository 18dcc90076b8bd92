"""Python values to and from component-model values, for calling typed exports.

wasmtime-py converts values itself, with quirks this module smooths over:
variants and results come back *untagged* when their cases map to different
Python classes (the err of ``result<f64, string>`` arrives as a bare ``str``);
record fields keep their kebab-case WIT names; ``f64`` refuses ``2``; a
``list<u8>`` must be exactly ``bytes``. Here every value has one spelling:

================  ==========================================================
WIT               Python
================  ==========================================================
bool              ``bool``
s8 … u64          ``int``
f32, f64          ``float`` (an ``int`` is accepted as an argument)
char              ``str`` of length 1
string            ``str``
list<u8>          ``bytes`` (``bytearray``, ``memoryview``, ``list[int]`` accepted)
list<T>           ``list`` (any sequence accepted)
tuple<…>          ``tuple`` (a list accepted)
record            :class:`Record`: fields as snake_case attributes
                  (a ``dict`` or any object with those attributes accepted)
variant           :class:`Variant` ``(tag, payload)``; a bare tag string is
                  accepted for a case without payload
enum              ``str``, the case name
flags             ``set[str]`` (any iterable accepted)
option<T>         ``None`` or the value (``option<option<T>>`` cannot tell
                  ``none`` from ``some(none)``)
result<T, E>      as a function's return value: the ok value, or the err
                  raised as :class:`wasi_magic.errors.GuestError`; nested
                  inside other values: ``Variant("ok", v)`` / ``Variant("err", e)``
================  ==========================================================

Resources, futures and streams are not supported. wasmtime-py 50 converts
lists element by element in Python: a ``list<u8>`` crosses at about 1.7 s per
MiB each way, so pass kilobytes, not megabytes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from wasmtime import component as wc

Variant = wc.Variant
ValType = wc.ValType
#: Integer types and their ranges.
_RANGES = {wc.S8: (-(1 << 7), (1 << 7) - 1), wc.S16: (-(1 << 15), (1 << 15) - 1),
           wc.S32: (-(1 << 31), (1 << 31) - 1), wc.S64: (-(1 << 63), (1 << 63) - 1),
           wc.U8: (0, (1 << 8) - 1), wc.U16: (0, (1 << 16) - 1), wc.U32: (0, (1 << 32) - 1),
           wc.U64: (0, (1 << 64) - 1)}
_NAMES = {wc.Bool: "bool", wc.S8: "s8", wc.S16: "s16", wc.S32: "s32", wc.S64: "s64",
          wc.U8: "u8", wc.U16: "u16", wc.U32: "u32", wc.U64: "u64", wc.F32: "f32",
          wc.F64: "f64", wc.Char: "char", wc.String: "string"}


class Record(wc.Record):
    """A record value: its fields are attributes with snake_case names."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in self.__dict__.items())
        return f"Record({inner})"

    def asdict(self) -> dict[str, Any]:
        """The fields as a dict (nested records stay records)."""
        return dict(self.__dict__)


def snake(name: str) -> str:
    """The Python spelling of a WIT name: ``tag-line`` -> ``tag_line``."""
    return name.replace("-", "_")


# --- describing types ---------------------------------------------------------------------


def describe(ty: Optional[ValType]) -> str:
    """A WIT-like spelling of a type, for signatures and messages."""
    if ty is None:
        return "_"
    for cls, name in _NAMES.items():
        if type(ty) is cls:
            return name
    if isinstance(ty, wc.ListType):
        return f"list<{describe(ty.element)}>"
    if isinstance(ty, wc.TupleType):
        return f"tuple<{', '.join(describe(t) for t in ty.elements)}>"
    if isinstance(ty, wc.OptionType):
        return f"option<{describe(ty.payload)}>"
    if isinstance(ty, wc.ResultType):
        return f"result<{describe(ty.ok)}, {describe(ty.err)}>"
    if isinstance(ty, wc.RecordType):
        return "record { " + ", ".join(f"{n}: {describe(t)}" for n, t in ty.fields) + " }"
    if isinstance(ty, wc.VariantType):
        cases = (n if t is None else f"{n}({describe(t)})" for n, t in ty.cases)
        return "variant { " + ", ".join(cases) + " }"
    if isinstance(ty, wc.EnumType):
        return "enum { " + ", ".join(ty.names) + " }"
    if isinstance(ty, wc.FlagsType):
        return "flags { " + ", ".join(ty.names) + " }"
    return type(ty).__name__.lower()


# --- variant-like types (variant, option, result) ----------------------------------------------


def _cases(ty: ValType) -> list[tuple[str, Optional[ValType]]]:
    if isinstance(ty, wc.OptionType):
        return [("none", None), ("some", ty.payload)]
    if isinstance(ty, wc.ResultType):
        return [("ok", ty.ok), ("err", ty.err)]
    return list(ty.cases)


def _classes(ty: Optional[ValType]) -> set[type]:
    """The Python classes wasmtime-py uses for a case's payload (``object`` for none)."""
    found: set[type] = set()
    if ty is None:
        found.add(object)
    else:
        ty.add_classes(found)
    return found


def _tagged(cases: list[tuple[str, Optional[ValType]]]) -> bool:
    """Whether wasmtime-py passes this variant as ``Variant`` (cases' classes overlap)."""
    seen: set[type] = set()
    for _, ty in cases:
        classes = _classes(ty)
        if classes & seen:
            return True
        seen |= classes
    return False


def _wasmtime_pick(cases: list[tuple[str, Optional[ValType]]], raw: Any) -> str | None:
    """Which case wasmtime-py will choose for an untagged value (the first that fits)."""
    for name, ty in cases:
        if ty is None:
            if raw is None:
                return name
        elif isinstance(raw, tuple(_classes(ty))):
            return name
    return None


def _untagged_case(cases: list[tuple[str, Optional[ValType]]], raw: Any) -> str:
    """The case an untagged value came from: its exact class names it (classes are disjoint)."""
    for name, ty in cases:
        classes = _classes(ty)
        if (raw is None and object in classes) or type(raw) in classes:
            return name
    picked = _wasmtime_pick(cases, raw)
    if picked is None:
        raise TypeError(f"cannot tell which case {raw!r} belongs to")
    return picked


# --- Python -> wasmtime-py ----------------------------------------------------------------


def lower(ty: ValType, value: Any) -> Any:
    """Turn a Python value into what wasmtime-py expects for ``ty``.

    Raises TypeError or ValueError with a short reason.
    """
    if type(ty) in _NAMES:
        return _lower_primitive(ty, value)
    if isinstance(ty, wc.ListType):
        return _lower_list(ty, value)
    if isinstance(ty, wc.TupleType):
        return _lower_tuple(ty, value)
    if isinstance(ty, wc.RecordType):
        return _lower_record(ty, value)
    if isinstance(ty, wc.EnumType):
        return _lower_enum(ty, value)
    if isinstance(ty, wc.FlagsType):
        return _lower_flags(ty, value)
    if isinstance(ty, wc.OptionType):
        return _lower_option(ty, value)
    if isinstance(ty, (wc.VariantType, wc.ResultType)):
        return _lower_variant(ty, value)
    return value


def _lower_primitive(ty: ValType, value: Any) -> Any:
    name = _NAMES[type(ty)]
    if type(ty) in _RANGES:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"expected an int for {name}, got {type(value).__name__}")
        low, high = _RANGES[type(ty)]
        if not low <= value <= high:
            raise ValueError(f"{value} is out of range for {name} ({low}..{high})")
        return value
    if isinstance(ty, (wc.F32, wc.F64)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"expected a float for {name}, got {type(value).__name__}")
    expected = {"bool": bool, "char": str, "string": str}[name]
    if not isinstance(value, expected) or (name == "char" and len(value) != 1):
        raise TypeError(f"expected {'one character' if name == 'char' else expected.__name__} "
                        f"for {name}, got {value!r}")
    return value


def _lower_list(ty: wc.ListType, value: Any) -> Any:
    element = ty.element
    if isinstance(element, wc.U8):
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, (list, tuple)):
            return bytes(value)
        raise TypeError(f"expected bytes for list<u8>, got {type(value).__name__}")
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"expected a list for {describe(ty)}, got {type(value).__name__}")
    return [lower(element, item) for item in value]


def _lower_tuple(ty: wc.TupleType, value: Any) -> tuple:
    elements = ty.elements
    if not isinstance(value, (tuple, list)) or len(value) != len(elements):
        raise TypeError(f"expected a tuple of {len(elements)} for {describe(ty)}, got {value!r}")
    return tuple(lower(t, v) for t, v in zip(elements, value))


def _field(value: Any, name: str) -> Any:
    for key in (snake(name), name):
        if isinstance(value, Mapping):
            if key in value:
                return value[key]
        elif hasattr(value, key):
            return getattr(value, key)
    raise TypeError(f"record field {snake(name)!r} is missing")


def _lower_record(ty: wc.RecordType, value: Any) -> wc.Record:
    raw = wc.Record()
    for name, field_ty in ty.fields:
        try:
            setattr(raw, name, lower(field_ty, _field(value, name)))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"field {snake(name)!r}: {exc}") from None
    return raw


def _lower_enum(ty: wc.EnumType, value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.name.lower().replace("_", "-")
    names = ty.names
    if value not in names:
        raise ValueError(f"{value!r} is not one of {', '.join(names)}")
    return value


def _lower_flags(ty: wc.FlagsType, value: Any) -> set[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"expected a set of flag names for {describe(ty)}, got {value!r}")
    flags = set(value)
    unknown = flags - set(ty.names)
    if unknown:
        raise ValueError(f"unknown flags {sorted(unknown)}; known: {', '.join(ty.names)}")
    return flags


def _lower_option(ty: wc.OptionType, value: Any) -> Any:
    tagged = _tagged(_cases(ty))
    if value is None:
        return Variant("none") if tagged else None
    inner = lower(ty.payload, value)
    return Variant("some", inner) if tagged else inner


def _lower_variant(ty: ValType, value: Any) -> Any:
    cases = _cases(ty)
    if isinstance(value, str) and any(n == value and t is None for n, t in cases):
        value = Variant(value)
    if not isinstance(value, Variant):
        names = ", ".join(n for n, _ in cases)
        raise TypeError(f"expected Variant(tag, payload) with a tag among {names}, got {value!r}")
    case_ty = dict(cases).get(value.tag, "missing")
    if case_ty == "missing":
        raise ValueError(f"no case {value.tag!r}; cases: {', '.join(n for n, _ in cases)}")
    payload = None if case_ty is None else lower(case_ty, value.payload)
    if _tagged(cases):
        return Variant(value.tag, payload)
    if _wasmtime_pick(cases, payload) != value.tag:
        raise TypeError(f"wasmtime-py cannot pass case {value.tag!r} of {describe(ty)} with "
                        f"payload {payload!r} unambiguously")
    return payload


# --- wasmtime-py -> Python ----------------------------------------------------------------


def lift(ty: Optional[ValType], raw: Any) -> Any:
    """Turn what wasmtime-py returned for ``ty`` into this module's Python spelling."""
    if ty is None:
        return None
    if isinstance(ty, wc.ListType):
        if isinstance(raw, bytes):
            return raw
        return [lift(ty.element, item) for item in raw]
    if isinstance(ty, wc.TupleType):
        return tuple(lift(t, v) for t, v in zip(ty.elements, raw))
    if isinstance(ty, wc.RecordType):
        return Record(**{snake(name): lift(t, getattr(raw, name)) for name, t in ty.fields})
    if isinstance(ty, wc.OptionType):
        tag, payload = lift_case(ty, raw)
        return payload if tag == "some" else None
    if isinstance(ty, (wc.VariantType, wc.ResultType)):
        return Variant(*lift_case(ty, raw))
    return raw


def lift_case(ty: ValType, raw: Any) -> tuple[str, Any]:
    """``(tag, payload)`` of a variant, option or result value returned by wasmtime-py."""
    cases = _cases(ty)
    if _tagged(cases):
        tag, payload = raw.tag, raw.payload
    else:
        tag, payload = _untagged_case(cases, raw), raw
    case_ty = dict(cases)[tag]
    return tag, (None if case_ty is None else lift(case_ty, payload))
