// unit-convert: convert between units of length, mass, temperature and data size.
// Written in JavaScript (componentize-js); needs no capabilities.

import { InvalidParams, Plugin, result, text } from "./fedmcp.js";

// Factors to the base unit of each quantity (metre, kilogram, byte).
const FACTORS = {
  length: { mm: 0.001, cm: 0.01, m: 1, km: 1000, in: 0.0254, ft: 0.3048, yd: 0.9144, mi: 1609.344 },
  mass: { mg: 1e-6, g: 0.001, kg: 1, t: 1000, oz: 0.028349523125, lb: 0.45359237 },
  data: { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, KiB: 1024, MiB: 1048576, GiB: 1073741824 },
};

const TO_KELVIN = {
  C: (v) => v + 273.15,
  F: (v) => ((v - 32) * 5) / 9 + 273.15,
  K: (v) => v,
};
const FROM_KELVIN = {
  C: (v) => v - 273.15,
  F: (v) => ((v - 273.15) * 9) / 5 + 32,
  K: (v) => v,
};

function quantityOf(unit) {
  if (unit in TO_KELVIN) {
    return "temperature";
  }
  return Object.keys(FACTORS).find((quantity) => unit in FACTORS[quantity]);
}

function convert(value, from, to) {
  const quantity = quantityOf(from);
  if (!quantity) {
    throw new InvalidParams(`unknown unit: ${from}`);
  }
  if (quantityOf(to) !== quantity) {
    throw new InvalidParams(`cannot convert ${quantity} (${from}) to ${to}`);
  }
  if (quantity === "temperature") {
    return FROM_KELVIN[to](TO_KELVIN[from](value));
  }
  return (value * FACTORS[quantity][from]) / FACTORS[quantity][to];
}

const plugin = new Plugin();

plugin.tool("convert", {
  description: "Convert a value between units of the same quantity (length, mass, temperature, data size).",
  input: {
    value: { type: "number", description: "The amount to convert" },
    from: { type: "string", description: "Unit of the value, e.g. km, lb, F, MiB" },
    to: { type: "string", description: "Unit to convert to" },
  },
  readOnly: true,
  handler: ({ value, from, to }) => {
    const converted = convert(value, from, to);
    const rounded = Number(converted.toPrecision(12));
    return result({ content: [text(`${value} ${from} = ${rounded} ${to}`)], structured: { value: rounded, unit: to } });
  },
});

plugin.tool("units", {
  description: "List the units each quantity knows.",
  readOnly: true,
  handler: () => {
    const lines = Object.entries(FACTORS).map(([quantity, units]) => `${quantity}: ${Object.keys(units).join(", ")}`);
    lines.push(`temperature: ${Object.keys(TO_KELVIN).join(", ")}`);
    return lines.join("\n");
  },
});

export const { tools, resources, prompts, completions } = plugin.exports();
