"""Implements tests/guests/kinds/kinds.wit: one export per kind of value."""

import sys

import wit_world
from componentize_py_types import Err
from wit_world import Color, Perms, Point, Shape_Circle, Shape_Square, exports

CALLS = 0


class WitWorld(wit_world.WitWorld):
    def echo(self, s: str) -> str:
        return s

    def add(self, a: int, b: int) -> int:
        return a + b

    def scale(self, x: float, by: float) -> float:
        return x * by

    def reverse_bytes(self, data: bytes) -> bytes:
        return bytes(reversed(data))

    def split_words(self, s: str) -> list[str]:
        return s.split()

    def move_point(self, p: Point, dx: int) -> Point:
        tag = None if p.tag_line is None else p.tag_line.upper()
        return Point(x=p.x + dx, y=p.y, label=p.label + "!", tag_line=tag)

    def next(self, n: int | None) -> int | None:
        return None if n is None else n + 1

    def divide(self, a: float, b: float) -> float:
        if b == 0:
            raise Err("division by zero")
        return a / b

    def check(self, s: str) -> str:
        if not s:
            raise Err("empty")
        return s.upper()

    def validate(self, s: str) -> None:
        if not s.isdigit():
            raise Err(f"not a number: {s!r}")

    def area(self, s) -> float:
        if isinstance(s, Shape_Circle):
            return 3.0 * s.value * s.value
        if isinstance(s, Shape_Square):
            return float(s.value * s.value)
        return 0.0

    def grow(self, s):
        if isinstance(s, Shape_Circle):
            return Shape_Circle(s.value * 2)
        if isinstance(s, Shape_Square):
            return Shape_Square(s.value + 1)
        return Shape_Circle(1.0)

    def next_color(self, c: Color) -> Color:
        return Color((c.value + 1) % 3)

    def toggle(self, p: Perms) -> Perms:
        return p ^ Perms.WRITE

    def pair(self, a: str, b: int) -> tuple[str, int]:
        return (a * 2, b + 1)

    def parse_all(self, items: list[str]):
        from componentize_py_types import Ok
        return [Ok(int(item)) if item.lstrip("-").isdigit() else Err(f"bad: {item}")
                for item in items]

    def greet(self, name: str) -> str:
        print(f"hello, {name}")
        print("a warning", file=sys.stderr)
        return f"greeted {name}"

    def crash(self, message: str) -> str:
        raise ValueError(message)

    def bump(self) -> int:
        global CALLS
        CALLS += 1
        return CALLS


class Text(exports.Text):
    def shout(self, s: str) -> str:
        return s.upper() + "!"
