//! From the runs to what the report shows: every run's last stdout line (JSON) flattened to
//! numbers by dotted path (`cpu.relay`), grouped by scenario, side and parameters, and the
//! median of each figure over the group's runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One run of one scenario on one side, as written to `raw.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub scenario: String,
    pub side: String,
    /// The flags given besides `--side`, in order (`[["batch","10"],…]`).
    pub params: Vec<(String, String)>,
    /// Which repetition (0-based).
    pub rep: usize,
    pub ok: bool,
    pub secs: f64,
    /// Why it failed (with the end of its output).
    pub error: Option<String>,
    /// The run's JSON line.
    pub result: Option<Value>,
}

impl Record {
    /// The parameters as one label: `batch 10, concurrency 4`.
    pub fn label(&self) -> String {
        label(&self.params)
    }
}

pub fn label(params: &[(String, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The runs of one scenario, side and parameters, summarised.
#[derive(Debug, Clone, Default)]
pub struct Group {
    pub scenario: String,
    pub side: String,
    pub params: Vec<(String, String)>,
    /// Runs that reported.
    pub runs: usize,
    /// The errors of runs that did not.
    pub failures: Vec<String>,
    /// The median of each numeric figure over the runs that reported it.
    pub figures: BTreeMap<String, f64>,
    /// Arrays of `[x, y]` pairs (e.g. `rss_curve`), the median `y` at each `x` when every run
    /// has the same `x`s, otherwise the first run's.
    pub curves: BTreeMap<String, Vec<(f64, f64)>>,
}

impl Group {
    pub fn label(&self) -> String {
        label(&self.params)
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.figures.get(key).copied()
    }
}

/// What makes runs one group: scenario, side, parameters.
type Key = (String, String, Vec<(String, String)>);

/// Records grouped by (scenario, side, parameters), in the order they first appear.
pub fn groups(records: &[Record]) -> Vec<Group> {
    let mut order: Vec<Key> = Vec::new();
    let mut members: Vec<Vec<&Record>> = Vec::new();
    for record in records {
        let key = (
            record.scenario.clone(),
            record.side.clone(),
            record.params.clone(),
        );
        match order.iter().position(|k| *k == key) {
            Some(i) => members[i].push(record),
            None => {
                order.push(key);
                members.push(vec![record]);
            }
        }
    }
    order
        .into_iter()
        .zip(members)
        .map(|((scenario, side, params), runs)| summarise(scenario, side, params, &runs))
        .collect()
}

fn summarise(
    scenario: String,
    side: String,
    params: Vec<(String, String)>,
    runs: &[&Record],
) -> Group {
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut curves: BTreeMap<String, Vec<Vec<(f64, f64)>>> = BTreeMap::new();
    let mut group = Group {
        scenario,
        side,
        params,
        ..Group::default()
    };
    for run in runs {
        match (&run.result, run.ok) {
            (Some(result), true) => {
                group.runs += 1;
                flatten("", result, &mut values, &mut curves);
            }
            _ => group
                .failures
                .push(run.error.clone().unwrap_or_else(|| "no result".into())),
        }
    }
    group.figures = values
        .into_iter()
        .filter_map(|(k, v)| median(v).map(|m| (k, m)))
        .collect();
    group.curves = curves
        .into_iter()
        .filter_map(|(k, runs)| median_curve(&runs).map(|c| (k, c)))
        .collect();
    group
}

/// Numbers by dotted path; arrays of `[x, y]` number pairs as curves; the rest is left out.
fn flatten(
    prefix: &str,
    value: &Value,
    values: &mut BTreeMap<String, Vec<f64>>,
    curves: &mut BTreeMap<String, Vec<Vec<(f64, f64)>>>,
) {
    match value {
        Value::Number(n) => {
            if let Some(v) = n.as_f64() {
                values.entry(prefix.to_owned()).or_default().push(v);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, values, curves);
            }
        }
        Value::Array(items) => {
            let pairs: Option<Vec<(f64, f64)>> = items
                .iter()
                .map(|item| match item.as_array().map(Vec::as_slice) {
                    Some([x, y]) => Some((x.as_f64()?, y.as_f64()?)),
                    _ => None,
                })
                .collect();
            if let Some(pairs) = pairs.filter(|p| !p.is_empty()) {
                curves.entry(prefix.to_owned()).or_default().push(pairs);
            }
        }
        _ => {}
    }
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

fn median_curve(runs: &[Vec<(f64, f64)>]) -> Option<Vec<(f64, f64)>> {
    let first = runs.first()?;
    let same_xs = runs
        .iter()
        .all(|r| r.len() == first.len() && r.iter().zip(first).all(|(a, b)| a.0 == b.0));
    if !same_xs {
        return Some(first.clone());
    }
    Some(
        (0..first.len())
            .map(|i| {
                let ys = runs.iter().map(|r| r[i].1).collect();
                (first[i].0, median(ys).unwrap_or(f64::NAN))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(side: &str, rep: usize, result: Option<Value>) -> Record {
        Record {
            scenario: "persist".into(),
            side: side.into(),
            params: vec![("batch".into(), "10".into())],
            rep,
            ok: result.is_some(),
            secs: 1.0,
            error: result.is_none().then(|| "exit status 1".into()),
            result,
        }
    }

    #[test]
    fn figures_are_medians_by_dotted_path_per_side_and_parameters() {
        let records = [
            record(
                "parley",
                0,
                Some(json!({"msgs_per_s": 10, "cpu": {"api": 0.3}})),
            ),
            record("pgbench", 0, Some(json!({"msgs_per_s": 50}))),
            record(
                "parley",
                1,
                Some(json!({"msgs_per_s": 30, "cpu": {"api": 0.1}})),
            ),
            record(
                "parley",
                2,
                Some(json!({"msgs_per_s": 20, "cpu": {"api": 0.2}})),
            ),
            record("pgbench", 1, None),
        ];
        let groups = groups(&records);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].side, "parley");
        assert_eq!(groups[0].runs, 3);
        assert_eq!(groups[0].get("msgs_per_s"), Some(20.0));
        assert_eq!(groups[0].get("cpu.api"), Some(0.2));
        assert_eq!(groups[1].runs, 1);
        assert_eq!(groups[1].failures, vec!["exit status 1".to_owned()]);
        assert_eq!(groups[1].label(), "batch 10");
    }

    #[test]
    fn curves_take_the_median_y_at_each_x() {
        let curve = |ys: [f64; 2]| json!({"rss_curve": [[1000, ys[0]], [2000, ys[1]]]});
        let records = [
            record("parley", 0, Some(curve([10.0, 20.0]))),
            record("parley", 1, Some(curve([30.0, 60.0]))),
            record("parley", 2, Some(curve([20.0, 40.0]))),
        ];
        let groups = groups(&records);
        assert_eq!(
            groups[0].curves["rss_curve"],
            vec![(1000.0, 20.0), (2000.0, 40.0)]
        );
    }

    #[test]
    fn an_even_count_takes_the_mean_of_the_middle_two() {
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
