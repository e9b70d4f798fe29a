//! A small metrics registry: labelled counters, gauges and histograms, rendered in the
//! Prometheus text exposition format (version 0.0.4: `# HELP`, `# TYPE`, escaped label values).
//!
//! So a job adds a metric in one line —
//! `let served = metrics.counter("downshiftarr_x_total", "Things served.", &["kind"]);` then
//! `served.inc_with(&["movie"])` — and `/metrics` shows it with no other change.
//!
//! Our own ~200 lines rather than `prometheus-client`: the daemon needs three metric kinds and a
//! text page, the crate would add a dependency tree to a binary that is otherwise small, and an
//! unlabelled counter here is one atomic add (the socket's lookup counter is on the shim's
//! 50 ms path). Families render in registration order, series sorted by label values.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A value that can be added to from any thread: an `f64` in an `AtomicU64`.
#[derive(Default)]
struct Cell(AtomicU64);

impl Cell {
    fn add(&self, v: f64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some((f64::from_bits(b) + v).to_bits())
            });
    }
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// One histogram series: a count per bucket (not cumulative), the sum and the count.
#[derive(Default)]
struct Observed {
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

struct Family {
    name: String,
    help: String,
    kind: Kind,
    labels: Vec<String>,
    /// Upper bounds, for histograms.
    bounds: Vec<f64>,
    /// The series without labels (families with no label names): no lock on its path.
    single: Arc<Cell>,
    series: Mutex<BTreeMap<Vec<String>, Arc<Cell>>>,
    observed: Mutex<BTreeMap<Vec<String>, Observed>>,
}

impl Family {
    /// The series for `values` (padded or cut to the family's label names).
    fn cell(&self, values: &[&str]) -> Arc<Cell> {
        if self.labels.is_empty() {
            return self.single.clone();
        }
        let key = self.key(values);
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.entry(key).or_default().clone()
    }

    fn key(&self, values: &[&str]) -> Vec<String> {
        (0..self.labels.len())
            .map(|i| values.get(i).copied().unwrap_or_default().to_string())
            .collect()
    }

    /// `{a="x",b="y"}` (empty without labels), with `extra` appended (a histogram's `le`).
    fn label_text(&self, values: &[String], extra: Option<(&str, &str)>) -> String {
        let mut pairs: Vec<String> = self
            .labels
            .iter()
            .zip(values)
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        if let Some((k, v)) = extra {
            pairs.push(format!("{k}=\"{v}\""));
        }
        if pairs.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", pairs.join(","))
        }
    }

    fn render(&self, out: &mut String) {
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let name = &self.name;
        let _ = writeln!(out, "# HELP {name} {}", self.help.replace('\n', " "));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        if self.kind == Kind::Histogram {
            let observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
            for (values, o) in observed.iter() {
                let mut cumulative = 0;
                for (bound, n) in self.bounds.iter().zip(&o.buckets) {
                    cumulative += n;
                    let le = self.label_text(values, Some(("le", &bound.to_string())));
                    let _ = writeln!(out, "{name}_bucket{le} {cumulative}");
                }
                let inf = self.label_text(values, Some(("le", "+Inf")));
                let _ = writeln!(out, "{name}_bucket{inf} {}", o.count);
                let labels = self.label_text(values, None);
                let _ = writeln!(out, "{name}_sum{labels} {}", o.sum);
                let _ = writeln!(out, "{name}_count{labels} {}", o.count);
            }
        } else if self.labels.is_empty() {
            let _ = writeln!(out, "{name} {}", self.single.get());
        } else {
            let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
            for (values, cell) in series.iter() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    self.label_text(values, None),
                    cell.get()
                );
            }
        }
    }
}

/// Escapes a label value: backslash, double quote and newline (the exposition format's rule).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every metric of the daemon.
#[derive(Default)]
pub struct Registry {
    families: Mutex<Vec<Arc<Family>>>,
}

impl Registry {
    fn register(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[&str],
        bounds: &[f64],
    ) -> Arc<Family> {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        // Registering a name again (a restarted job) gives the same series back.
        if let Some(f) = families.iter().find(|f| f.name == name) {
            return f.clone();
        }
        let f = Arc::new(Family {
            name: name.into(),
            help: help.into(),
            kind,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            bounds: bounds.to_vec(),
            single: Arc::default(),
            series: Mutex::default(),
            observed: Mutex::default(),
        });
        families.push(f.clone());
        f
    }

    /// A counter: only goes up.
    pub fn counter(&self, name: &str, help: &str, labels: &[&str]) -> Counter {
        Counter(self.register(name, help, Kind::Counter, labels, &[]))
    }

    /// A gauge: a value that is set.
    pub fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> Gauge {
        Gauge(self.register(name, help, Kind::Gauge, labels, &[]))
    }

    /// A histogram with these bucket upper bounds (sorted here; `+Inf` is implied).
    pub fn histogram(&self, name: &str, help: &str, labels: &[&str], bounds: &[f64]) -> Histogram {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        Histogram(self.register(name, help, Kind::Histogram, labels, &bounds))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let families: Vec<Arc<Family>> = self
            .families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::new();
        for f in families {
            f.render(&mut out);
        }
        out
    }
}

/// A counter family. Label values are given in the order of the names it was registered with.
#[derive(Clone)]
pub struct Counter(Arc<Family>);

impl Counter {
    /// +1 to the series without labels.
    pub fn inc(&self) {
        self.0.single.add(1.0);
    }

    /// +1 to the series with these label values.
    pub fn inc_with(&self, labels: &[&str]) {
        self.0.cell(labels).add(1.0);
    }

    /// +`n` (negative or NaN values are ignored: a counter never goes down).
    pub fn add_with(&self, labels: &[&str], n: f64) {
        if n >= 0.0 {
            self.0.cell(labels).add(n);
        }
    }

    pub fn get(&self, labels: &[&str]) -> f64 {
        self.0.cell(labels).get()
    }

    /// Every labelled series, sorted by label values.
    pub fn series(&self) -> Vec<(Vec<String>, f64)> {
        let series = self.0.series.lock().unwrap_or_else(|e| e.into_inner());
        series.iter().map(|(k, c)| (k.clone(), c.get())).collect()
    }
}

/// A gauge family.
#[derive(Clone)]
pub struct Gauge(Arc<Family>);

impl Gauge {
    pub fn set(&self, v: f64) {
        self.0.single.set(v);
    }

    pub fn set_with(&self, labels: &[&str], v: f64) {
        self.0.cell(labels).set(v);
    }

    pub fn get(&self, labels: &[&str]) -> f64 {
        self.0.cell(labels).get()
    }
}

/// A histogram family.
#[derive(Clone)]
pub struct Histogram(Arc<Family>);

impl Histogram {
    pub fn observe_with(&self, labels: &[&str], v: f64) {
        if v.is_nan() {
            return;
        }
        let f = &self.0;
        let key = f.key(labels);
        let mut observed = f.observed.lock().unwrap_or_else(|e| e.into_inner());
        let o = observed.entry(key).or_default();
        o.buckets.resize(f.bounds.len(), 0);
        if let Some(i) = f.bounds.iter().position(|b| v <= *b) {
            o.buckets[i] += 1;
        }
        o.sum += v;
        o.count += 1;
    }

    pub fn observe(&self, v: f64) {
        self.observe_with(&[], v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_render_with_help_type_and_escaped_labels() {
        let r = Registry::default();
        let up = r.gauge("x_uptime_seconds", "Seconds up.", &[]);
        let d = r.counter("x_decisions_total", "Decisions.", &["origin", "reason"]);
        up.set(12.5);
        d.inc_with(&["shim", "a \"quoted\" \\ reason\nnext"]);
        d.inc_with(&["guard", "b"]);
        d.add_with(&["guard", "b"], 2.0);
        d.add_with(&["guard", "b"], -5.0);
        assert_eq!(
            r.render(),
            "# HELP x_uptime_seconds Seconds up.\n# TYPE x_uptime_seconds gauge\nx_uptime_seconds 12.5\n\
             # HELP x_decisions_total Decisions.\n# TYPE x_decisions_total counter\n\
             x_decisions_total{origin=\"guard\",reason=\"b\"} 3\n\
             x_decisions_total{origin=\"shim\",reason=\"a \\\"quoted\\\" \\\\ reason\\nnext\"} 1\n"
        );
        assert_eq!(d.get(&["guard", "b"]), 3.0);
        assert_eq!(d.series().len(), 2);
    }

    #[test]
    fn an_unlabelled_counter_starts_at_zero_and_registering_again_shares_it() {
        let r = Registry::default();
        let a = r.counter("x_total", "X.", &[]);
        assert!(r.render().contains("\nx_total 0\n"));
        let b = r.counter("x_total", "X.", &[]);
        a.inc();
        b.inc();
        assert_eq!(a.get(&[]), 2.0);
        assert_eq!(r.render().matches("# TYPE x_total").count(), 1);
    }

    #[test]
    fn missing_or_extra_label_values_do_not_panic() {
        let r = Registry::default();
        let c = r.counter("x_total", "X.", &["a", "b"]);
        c.inc_with(&["only"]);
        c.inc_with(&["1", "2", "3"]);
        let text = r.render();
        assert!(text.contains("x_total{a=\"only\",b=\"\"} 1"), "{text}");
        assert!(text.contains("x_total{a=\"1\",b=\"2\"} 1"), "{text}");
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let r = Registry::default();
        let h = r.histogram(
            "x_seconds",
            "Durations.",
            &["job"],
            &[1.0, 0.1, f64::INFINITY],
        );
        for v in [0.0625, 0.5, 0.5, 7.0, f64::NAN] {
            h.observe_with(&["sync"], v);
        }
        assert_eq!(
            r.render(),
            "# HELP x_seconds Durations.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{job=\"sync\",le=\"0.1\"} 1\n\
             x_seconds_bucket{job=\"sync\",le=\"1\"} 3\n\
             x_seconds_bucket{job=\"sync\",le=\"+Inf\"} 4\n\
             x_seconds_sum{job=\"sync\"} 8.0625\n\
             x_seconds_count{job=\"sync\"} 4\n"
        );
    }

    #[test]
    fn counting_from_many_threads_loses_nothing() {
        let r = Arc::new(Registry::default());
        let c = r.counter("x_total", "X.", &[]);
        let l = r.counter("y_total", "Y.", &["k"]);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, l) = (c.clone(), l.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc();
                        l.inc_with(&["v"]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(&[]), 8000.0);
        assert_eq!(l.get(&["v"]), 8000.0);
    }
}
