"""unit-convert in Python: the same tools as plugins/unit-convert/plugin.js (JavaScript) and
tests/plugins/unit-convert-rust (Rust), answering alike (tests/all/languages.rs holds the
table all three must pass)."""

from fedmcp import InvalidParams, Plugin, Result, text

# Factors to the base unit of each quantity (metre, kilogram, byte).
FACTORS = {
    "length": {"mm": 0.001, "cm": 0.01, "m": 1, "km": 1000, "in": 0.0254, "ft": 0.3048, "yd": 0.9144, "mi": 1609.344},
    "mass": {"mg": 1e-6, "g": 0.001, "kg": 1, "t": 1000, "oz": 0.028349523125, "lb": 0.45359237},
    "data": {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 1024, "MiB": 1048576, "GiB": 1073741824},
}

TO_KELVIN = {"C": lambda v: v + 273.15, "F": lambda v: (v - 32) * 5 / 9 + 273.15, "K": lambda v: v}
FROM_KELVIN = {"C": lambda v: v - 273.15, "F": lambda v: (v - 273.15) * 9 / 5 + 32, "K": lambda v: v}

plugin = Plugin()


def _quantity_of(unit: str):
    if unit in TO_KELVIN:
        return "temperature"
    return next((quantity for quantity, units in FACTORS.items() if unit in units), None)


def _convert(value: float, source: str, target: str) -> float:
    quantity = _quantity_of(source)
    if quantity is None:
        raise InvalidParams(f"unknown unit: {source}")
    if _quantity_of(target) != quantity:
        raise InvalidParams(f"cannot convert {quantity} ({source}) to {target}")
    if quantity == "temperature":
        return FROM_KELVIN[target](TO_KELVIN[source](value))
    return value * FACTORS[quantity][source] / FACTORS[quantity][target]


def _number(value: float) -> str:
    "A number as JavaScript prints it: integral values without a fraction."
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


@plugin.tool(read_only=True)
def convert(value: float, from_: str, to: str) -> Result:
    "Convert a value between units of the same quantity (length, mass, temperature, data size)."
    rounded = float(f"{_convert(value, from_, to):.11e}")
    line = f"{_number(value)} {from_} = {_number(rounded)} {to}"
    return Result(content=[text(line)], structured={"value": rounded, "unit": to})


@plugin.tool(read_only=True)
def units() -> str:
    "List the units each quantity knows."
    lines = [f"{quantity}: {', '.join(names)}" for quantity, names in FACTORS.items()]
    lines.append(f"temperature: {', '.join(TO_KELVIN)}")
    return "\n".join(lines)


Tools, Resources, Prompts, Completions = plugin.export()
