//! The UCI options a GUI sees, their limits, and their current values.

use banyan_nn::builtin::Weights;
use vampirc_uci::UciOptionConfig;

/// How a value is checked and shown.
#[derive(Clone, Debug)]
enum Kind {
    Spin {
        default: i64,
        min: i64,
        max: i64,
    },
    Check {
        default: bool,
    },
    Text {
        default: &'static str,
    },
    /// A decimal number shown as a string option (Lc0 does the same for floats). A `None`
    /// default is shown as `<auto>` and leaves the choice to the engine; `<auto>` sets it back.
    Float {
        default: Option<f64>,
        min: f64,
        max: f64,
    },
    Combo {
        default: &'static str,
        vars: &'static [&'static str],
    },
}

/// How a number option left to the engine is shown and set.
const AUTO: &str = "<auto>";

/// One declared option.
struct Decl {
    name: &'static str,
    kind: Kind,
}

const DECLS: &[Decl] = &[
    Decl {
        name: "Threads",
        kind: Kind::Spin {
            default: 2,
            min: 1,
            max: banyan_engine::MAX_THREADS as i64,
        },
    },
    Decl {
        name: "Hash",
        kind: Kind::Spin {
            default: 256,
            min: 1,
            max: banyan_engine::MAX_HASH_MB as i64,
        },
    },
    Decl {
        name: "WeightsFile",
        kind: Kind::Text {
            default: Weights::DEFAULT,
        },
    },
    // Before `Backend`: GUIs send options in the order they are declared, and `Backend
    // triton` connects at once.
    Decl {
        name: "TritonUrl",
        kind: Kind::Text { default: "<empty>" },
    },
    Decl {
        name: "TritonModel",
        kind: Kind::Text {
            default: banyan_nn::triton::export::DEFAULT_MODEL,
        },
    },
    Decl {
        name: "Backend",
        kind: Kind::Combo {
            default: "auto",
            vars: &["auto", "cpu", "cuda", "triton"],
        },
    },
    Decl {
        name: "Precision",
        kind: Kind::Combo {
            default: "auto",
            vars: &["auto", "fp32", "bf16"],
        },
    },
    Decl {
        name: "EvalThreads",
        kind: Kind::Spin {
            default: 0,
            min: 0,
            max: 128,
        },
    },
    Decl {
        name: "MinibatchSize",
        kind: Kind::Spin {
            default: 32,
            min: 1,
            max: 1024,
        },
    },
    Decl {
        name: "NNCacheSize",
        kind: Kind::Spin {
            default: 64,
            min: 0,
            max: 65536,
        },
    },
    Decl {
        name: "MultiPV",
        kind: Kind::Spin {
            default: 1,
            min: 1,
            max: 256,
        },
    },
    Decl {
        name: "Ponder",
        kind: Kind::Check { default: false },
    },
    Decl {
        name: "UCI_ShowWDL",
        kind: Kind::Check { default: false },
    },
    Decl {
        name: "UCI_Chess960",
        kind: Kind::Check { default: false },
    },
    Decl {
        name: "MoveOverhead",
        kind: Kind::Spin {
            default: 100,
            min: 0,
            max: 10000,
        },
    },
    Decl {
        name: "PolicyTemperature",
        kind: Kind::Float {
            default: None,
            min: 0.1,
            max: 10.0,
        },
    },
    Decl {
        name: "CPuct",
        kind: Kind::Float {
            default: None,
            min: 0.0,
            max: 100.0,
        },
    },
    Decl {
        name: "CPuctBase",
        kind: Kind::Float {
            default: Some(38739.0),
            min: 1.0,
            max: 1e9,
        },
    },
    Decl {
        name: "CPuctFactor",
        kind: Kind::Float {
            default: Some(3.894),
            min: 0.0,
            max: 1000.0,
        },
    },
    Decl {
        name: "FpuValue",
        kind: Kind::Float {
            default: Some(0.330),
            min: -100.0,
            max: 100.0,
        },
    },
    Decl {
        name: "VerboseMoveStats",
        kind: Kind::Check { default: false },
    },
    Decl {
        name: "ProcessMode",
        kind: Kind::Combo {
            default: "auto",
            vars: &["auto", "fork", "spawn"],
        },
    },
    Decl {
        name: "LogFile",
        kind: Kind::Text { default: "<empty>" },
    },
    Decl {
        name: "SyzygyPath",
        kind: Kind::Text { default: "<empty>" },
    },
];

/// A parsed option value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    Text(String),
    Float(f64),
    /// A number left to the engine (`<auto>`).
    Auto,
}

/// The current value of every option, checked against its declaration.
#[derive(Clone, Debug)]
pub struct Options {
    values: Vec<Value>,
}

impl Default for Options {
    fn default() -> Self {
        let values = DECLS
            .iter()
            .map(|d| match &d.kind {
                Kind::Spin { default, .. } => Value::Int(*default),
                Kind::Check { default } => Value::Bool(*default),
                // `<empty>` is how UCI spells an empty string default.
                Kind::Text { default: "<empty>" } => Value::Text(String::new()),
                Kind::Text { default } | Kind::Combo { default, .. } => {
                    Value::Text(default.to_string())
                }
                Kind::Float { default, .. } => default.map_or(Value::Auto, Value::Float),
            })
            .collect();
        Options { values }
    }
}

impl Options {
    /// The `option name … type …` lines for the `uci` answer.
    pub fn declarations() -> impl Iterator<Item = UciOptionConfig> {
        DECLS.iter().map(|d| {
            let name = d.name.to_string();
            match &d.kind {
                Kind::Spin { default, min, max } => UciOptionConfig::Spin {
                    name,
                    default: Some(*default),
                    min: Some(*min),
                    max: Some(*max),
                },
                Kind::Check { default } => UciOptionConfig::Check {
                    name,
                    default: Some(*default),
                },
                Kind::Text { default } => UciOptionConfig::String {
                    name,
                    default: Some(default.to_string()),
                },
                Kind::Float { default, .. } => UciOptionConfig::String {
                    name,
                    default: Some(default.map_or(AUTO.to_string(), |v| v.to_string())),
                },
                Kind::Combo { default, vars } => UciOptionConfig::Combo {
                    name,
                    default: Some(default.to_string()),
                    var: vars.iter().map(|v| v.to_string()).collect(),
                },
            }
        })
    }

    /// Parses `value` for the option `name` (case-insensitive, as GUIs vary) without storing it.
    /// Returns the canonical name and the value, or a message for `info string error`.
    pub fn parse(name: &str, value: Option<&str>) -> Result<(&'static str, Value), String> {
        let decl = DECLS
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| format!("unknown option '{name}'"))?;
        let raw = value.unwrap_or("").trim();
        let value = match &decl.kind {
            Kind::Spin { min, max, .. } => {
                let v: i64 = raw
                    .parse()
                    .map_err(|_| format!("{}: '{raw}' is not a whole number", decl.name))?;
                if v < *min || v > *max {
                    return Err(format!("{}: {v} is outside {min}..{max}", decl.name));
                }
                Value::Int(v)
            }
            Kind::Check { .. } => match raw.to_ascii_lowercase().as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(format!("{}: '{raw}' is not true or false", decl.name)),
            },
            Kind::Float { default: None, .. } if raw == AUTO => Value::Auto,
            Kind::Float { min, max, .. } => {
                let v: f64 = raw
                    .parse()
                    .map_err(|_| format!("{}: '{raw}' is not a number", decl.name))?;
                if !(v >= *min && v <= *max) {
                    return Err(format!("{}: {raw} is outside {min}..{max}", decl.name));
                }
                Value::Float(v)
            }
            Kind::Combo { vars, .. } => {
                let v = vars
                    .iter()
                    .find(|v| v.eq_ignore_ascii_case(raw))
                    .ok_or_else(|| {
                        format!("{}: '{raw}' is not one of {}", decl.name, vars.join(", "))
                    })?;
                Value::Text(v.to_string())
            }
            // `<empty>` is how UCI spells an empty string default; GUIs send it back as is.
            Kind::Text { .. } if raw == "<empty>" => Value::Text(String::new()),
            Kind::Text { .. } => Value::Text(raw.to_string()),
        };
        Ok((decl.name, value))
    }

    /// Stores a value produced by [`Options::parse`].
    pub fn set(&mut self, name: &str, value: Value) {
        if let Some(i) = DECLS.iter().position(|d| d.name == name) {
            self.values[i] = value;
        }
    }

    fn get(&self, name: &str) -> &Value {
        let i = DECLS
            .iter()
            .position(|d| d.name == name)
            .expect("declared option");
        &self.values[i]
    }

    pub fn int(&self, name: &str) -> i64 {
        match self.get(name) {
            Value::Int(v) => *v,
            other => panic!("option {name} is not a spin: {other:?}"),
        }
    }

    pub fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Value::Bool(true))
    }

    pub fn float(&self, name: &str) -> f64 {
        match self.get(name) {
            Value::Float(v) => *v,
            other => panic!("option {name} is not a number: {other:?}"),
        }
    }

    /// A number that may be left to the engine: `None` for `<auto>`.
    pub fn float_or_auto(&self, name: &str) -> Option<f64> {
        match self.get(name) {
            Value::Auto => None,
            _ => Some(self.float(name)),
        }
    }

    pub fn text(&self, name: &str) -> &str {
        match self.get(name) {
            Value::Text(v) => v,
            other => panic!("option {name} is not text: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_every_kind() {
        let cases: &[(&str, Option<&str>, Result<Value, ()>)] = &[
            ("threads", Some("4"), Ok(Value::Int(4))),
            ("Threads", Some("0"), Err(())),
            ("Threads", Some("64"), Ok(Value::Int(64))),
            ("Threads", Some("65"), Err(())),
            ("Hash", Some("16384"), Ok(Value::Int(16384))),
            ("Hash", Some("16385"), Err(())),
            ("Threads", Some("99999999999999999999999"), Err(())),
            ("Hash", Some("abc"), Err(())),
            ("Ponder", Some("TRUE"), Ok(Value::Bool(true))),
            ("Ponder", Some("yes"), Err(())),
            ("PolicyTemperature", Some("2.2"), Ok(Value::Float(2.2))),
            ("PolicyTemperature", Some("NaN"), Err(())),
            ("PolicyTemperature", Some("0"), Err(())),
            ("PolicyTemperature", Some("<auto>"), Ok(Value::Auto)),
            ("CPuct", Some("<auto>"), Ok(Value::Auto)),
            ("CPuct", Some("2.5"), Ok(Value::Float(2.5))),
            ("FpuValue", Some("-0.5"), Ok(Value::Float(-0.5))),
            ("CPuctBase", Some("0"), Err(())),
            ("Backend", Some("CPU"), Ok(Value::Text("cpu".into()))),
            ("Backend", Some("tpu"), Err(())),
            ("LogFile", None, Ok(Value::Text(String::new()))),
            ("LogFile", Some("<empty>"), Ok(Value::Text(String::new()))),
            (
                "SyzygyPath",
                Some("<empty>"),
                Ok(Value::Text(String::new())),
            ),
            ("syzygypath", Some("/a:/b"), Ok(Value::Text("/a:/b".into()))),
            ("NoSuchOption", Some("1"), Err(())),
        ];
        for (name, value, want) in cases {
            let got = Options::parse(name, *value).map(|(_, v)| v).map_err(|_| ());
            assert_eq!(&got, want, "setoption name {name} value {value:?}");
        }
    }

    #[test]
    fn defaults_read_back() {
        let o = Options::default();
        assert_eq!(o.int("Threads"), 2);
        assert_eq!(o.float_or_auto("PolicyTemperature"), None);
        assert_eq!(o.float_or_auto("CPuct"), None);
        assert_eq!(o.text("WeightsFile"), "<default>");
        assert_eq!(Options::declarations().count(), DECLS.len());
    }
}
