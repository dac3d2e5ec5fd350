//! What one `ckpt bench` run reports beside its sweep: same-run ratios, absolute figures for
//! context, and everything that could not be measured with the reason.

use std::io::{self, Write};

use ckpt_bench::fmt_ns;
use serde_json::{Map, Value as Json};

use crate::cmd::format::{Align, Table};

/// A context value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A number (ns when the key ends in `_ns`).
    Num(f64),
    /// A description.
    Text(String),
    /// A yes/no fact.
    Bool(bool),
}

/// One same-run ratio.
#[derive(Clone, Debug)]
pub struct Ratio {
    /// The key in the JSON `ratios` map.
    pub key: &'static str,
    /// The ratio (see the key for which side is divided by which).
    pub value: f64,
    /// The ckpt side, for the table.
    pub ckpt: String,
    /// The other side, for the table.
    pub baseline: String,
    /// How it was measured.
    pub note: String,
}

/// Everything a run reports besides the sweep. Keys keep their insertion order in the
/// table; the JSON maps are sorted by key.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The ratios measured.
    pub ratios: Vec<Ratio>,
    /// Absolute figures and facts of this run.
    pub context: Vec<(String, Value)>,
    /// Ratio or peer keys that could not be measured, with the reason.
    pub skipped: Vec<(String, String)>,
}

impl Report {
    /// Adds a number to the context.
    pub fn num(&mut self, key: &str, v: f64) {
        self.context.push((key.to_owned(), Value::Num(v)));
    }

    /// Adds a text to the context.
    pub fn text(&mut self, key: &str, v: impl Into<String>) {
        self.context.push((key.to_owned(), Value::Text(v.into())));
    }

    /// Adds a yes/no fact to the context.
    pub fn flag(&mut self, key: &str, v: bool) {
        self.context.push((key.to_owned(), Value::Bool(v)));
    }

    /// Records that `key` could not be measured, and why.
    pub fn skip(&mut self, key: &str, why: impl Into<String>) {
        self.skipped.push((key.to_owned(), why.into()));
    }

    /// Moves every ratio that is not a finite positive number to `skipped`: a division by
    /// a side that was not measured must not pass for a figure.
    pub fn drop_invalid_ratios(&mut self) {
        let (ok, bad): (Vec<Ratio>, Vec<Ratio>) = std::mem::take(&mut self.ratios)
            .into_iter()
            .partition(|r| r.value.is_finite() && r.value > 0.0);
        self.ratios = ok;
        for r in bad {
            self.skip(
                r.key,
                format!(
                    "not a finite positive ratio ({}: {} over {})",
                    r.value, r.ckpt, r.baseline
                ),
            );
        }
    }

    /// The ratio of `key`, if measured.
    pub fn ratio(&self, key: &str) -> Option<f64> {
        self.ratios.iter().find(|r| r.key == key).map(|r| r.value)
    }

    /// The three maps of the JSON report: `ratios`, `context`, `skipped`.
    pub fn json_maps(&self) -> [(&'static str, Json); 3] {
        let ratios: Map<String, Json> = self
            .ratios
            .iter()
            .map(|r| (r.key.to_owned(), number(r.value)))
            .collect();
        let context: Map<String, Json> = self
            .context
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::Num(x) => number(*x),
                    Value::Text(s) => Json::String(s.clone()),
                    Value::Bool(b) => Json::Bool(*b),
                };
                (k.clone(), v)
            })
            .collect();
        let skipped: Map<String, Json> = self
            .skipped
            .iter()
            .map(|(k, why)| (k.clone(), Json::String(why.clone())))
            .collect();
        [
            ("ratios", Json::Object(ratios)),
            ("context", Json::Object(context)),
            ("skipped", Json::Object(skipped)),
        ]
    }

    /// The ratios table, the skipped list and the context, for people.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut table = Table::new(&[
            ("ratio", Align::Left),
            ("value", Align::Right),
            ("ckpt", Align::Left),
            ("baseline", Align::Left),
            ("note", Align::Left),
        ]);
        for r in &self.ratios {
            table.push(vec![
                r.key.to_owned(),
                format!("{:.3}x", r.value),
                r.ckpt.clone(),
                r.baseline.clone(),
                r.note.clone(),
            ]);
        }
        table.write(out)?;
        if !self.skipped.is_empty() {
            writeln!(out)?;
            writeln!(out, "skipped:")?;
            for (key, why) in &self.skipped {
                writeln!(out, "  {key}: {why}")?;
            }
        }
        writeln!(out)?;
        writeln!(
            out,
            "context (absolute figures: this run, this machine, only beside the ratios):"
        )?;
        let mut table = Table::new(&[("key", Align::Left), ("value", Align::Left)]);
        for (key, value) in &self.context {
            let shown = match value {
                Value::Num(x) if key.ends_with("_ns") => fmt_ns(*x),
                Value::Num(x) if x.fract() == 0.0 => format!("{x:.0}"),
                Value::Num(x) => format!("{x:.2}"),
                Value::Text(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
            };
            table.push(vec![format!("  {key}"), shown]);
        }
        table.write_rows(out)
    }
}

/// A JSON number, `null` when not finite; integers print without a fraction, the rest
/// with 4 significant decimals at most.
pub fn number(x: f64) -> Json {
    if !x.is_finite() {
        Json::Null
    } else if x.fract() == 0.0 && x.abs() < 2f64.powi(53) {
        Json::from(x as i64)
    } else {
        let rounded = format!("{x:.4}").parse::<f64>().unwrap_or(x);
        serde_json::Number::from_f64(rounded).map_or(Json::Null, Json::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_rounded_and_non_finite_ones_are_null() {
        assert_eq!(number(3.0), Json::from(3));
        assert_eq!(number(1.234_567), serde_json::json!(1.2346));
        assert_eq!(number(f64::NAN), Json::Null);
    }

    #[test]
    fn json_maps_hold_every_entry() {
        let mut sut = Report::default();
        sut.ratios.push(Ratio {
            key: "a_vs_b",
            value: 1.5,
            ckpt: String::new(),
            baseline: String::new(),
            note: String::new(),
        });
        sut.num("x_ns", 12.0);
        sut.flag("ok", true);
        sut.skip("c_vs_d", "no peer");
        let [(_, ratios), (_, context), (_, skipped)] = sut.json_maps();
        assert_eq!(ratios, serde_json::json!({"a_vs_b": 1.5}));
        assert_eq!(context, serde_json::json!({"x_ns": 12, "ok": true}));
        assert_eq!(skipped, serde_json::json!({"c_vs_d": "no peer"}));
        assert_eq!(sut.ratio("a_vs_b"), Some(1.5));
    }

    #[test]
    fn a_ratio_that_is_not_finite_and_positive_becomes_a_skip() {
        let mut sut = Report::default();
        for (key, value) in [("good", 2.0), ("nan", f64::NAN), ("zero", 0.0)] {
            sut.ratios.push(Ratio {
                key,
                value,
                ckpt: String::new(),
                baseline: String::new(),
                note: String::new(),
            });
        }
        sut.drop_invalid_ratios();
        assert_eq!(sut.ratios.len(), 1);
        let skipped: Vec<&str> = sut.skipped.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(skipped, ["nan", "zero"]);
    }
}
