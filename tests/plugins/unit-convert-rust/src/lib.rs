//! unit-convert in Rust: the same tools as plugins/unit-convert/plugin.js (JavaScript) and
//! tests/plugins/unit-convert-python/app.py, answering alike (tests/all/languages.rs holds
//! the table all three must pass).

use fedmcp_sdk::{Content, Error, JsonSchema, Plugin, ToolResult, Tools, json};
use serde::Deserialize;

/// Factors to the base unit of each quantity (metre, kilogram, byte), in listing order.
const FACTORS: [(&str, &[(&str, f64)]); 3] = [
    (
        "length",
        &[
            ("mm", 0.001),
            ("cm", 0.01),
            ("m", 1.0),
            ("km", 1000.0),
            ("in", 0.0254),
            ("ft", 0.3048),
            ("yd", 0.9144),
            ("mi", 1609.344),
        ],
    ),
    (
        "mass",
        &[
            ("mg", 1e-6),
            ("g", 0.001),
            ("kg", 1.0),
            ("t", 1000.0),
            ("oz", 0.028349523125),
            ("lb", 0.45359237),
        ],
    ),
    (
        "data",
        &[
            ("B", 1.0),
            ("KB", 1e3),
            ("MB", 1e6),
            ("GB", 1e9),
            ("KiB", 1024.0),
            ("MiB", 1048576.0),
            ("GiB", 1073741824.0),
        ],
    ),
];

const TEMPERATURES: [&str; 3] = ["C", "F", "K"];

#[derive(Deserialize, JsonSchema)]
struct ConvertInput {
    /// The amount to convert
    value: f64,
    /// Unit of the value, e.g. km, lb, F, MiB
    from: String,
    /// Unit to convert to
    to: String,
}

#[derive(Deserialize, JsonSchema)]
struct NoInput {}

fn quantity_of(unit: &str) -> Option<&'static str> {
    if TEMPERATURES.contains(&unit) {
        return Some("temperature");
    }
    FACTORS
        .iter()
        .find(|(_, units)| units.iter().any(|(name, _)| *name == unit))
        .map(|(quantity, _)| *quantity)
}

fn factor(unit: &str) -> f64 {
    FACTORS
        .iter()
        .flat_map(|(_, units)| units.iter())
        .find(|(name, _)| *name == unit)
        .map_or(1.0, |(_, factor)| *factor)
}

fn to_kelvin(value: f64, unit: &str) -> f64 {
    match unit {
        "C" => value + 273.15,
        "F" => (value - 32.0) * 5.0 / 9.0 + 273.15,
        _ => value,
    }
}

fn from_kelvin(value: f64, unit: &str) -> f64 {
    match unit {
        "C" => value - 273.15,
        "F" => (value - 273.15) * 9.0 / 5.0 + 32.0,
        _ => value,
    }
}

fn convert(value: f64, from: &str, to: &str) -> Result<f64, Error> {
    let quantity =
        quantity_of(from).ok_or_else(|| Error::invalid_params(format!("unknown unit: {from}")))?;
    if quantity_of(to) != Some(quantity) {
        return Err(Error::invalid_params(format!(
            "cannot convert {quantity} ({from}) to {to}"
        )));
    }
    if quantity == "temperature" {
        return Ok(from_kelvin(to_kelvin(value, from), to));
    }
    Ok(value * factor(from) / factor(to))
}

/// Round to 12 significant digits, as JavaScript's `Number(x.toPrecision(12))`.
fn twelve_digits(value: f64) -> f64 {
    format!("{value:.11e}").parse().unwrap_or(value)
}

struct UnitConvert;

impl Plugin for UnitConvert {
    fn tools(tools: &mut Tools) {
        tools
            .add(
                "convert",
                "Convert a value between units of the same quantity (length, mass, temperature, data size).",
                |input: ConvertInput, _cx| {
                    let rounded = twelve_digits(convert(input.value, &input.from, &input.to)?);
                    let line = format!("{} {} = {rounded} {}", input.value, input.from, input.to);
                    let mut result = ToolResult::new(vec![Content::text(line)]);
                    result.structured = Some(json!({ "value": rounded, "unit": input.to }));
                    Ok(result)
                },
            )
            .read_only();
        tools
            .add(
                "units",
                "List the units each quantity knows.",
                |_: NoInput, _cx| {
                    let mut lines: Vec<String> = FACTORS
                        .iter()
                        .map(|(quantity, units)| {
                            let names: Vec<&str> = units.iter().map(|(name, _)| *name).collect();
                            format!("{quantity}: {}", names.join(", "))
                        })
                        .collect();
                    lines.push(format!("temperature: {}", TEMPERATURES.join(", ")));
                    Ok(lines.join("\n"))
                },
            )
            .read_only();
    }
}

fedmcp_sdk::export!(UnitConvert);

#[cfg(test)]
mod tests {
    #[test]
    fn rounds_like_to_precision_twelve() {
        assert_eq!(super::twelve_digits(6.213711922373339), 6.21371192237);
        assert_eq!(super::twelve_digits(211.99999999999997), 212.0);
    }
}
