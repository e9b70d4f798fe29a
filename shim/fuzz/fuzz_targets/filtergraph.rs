//! Any bytes as a filter graph: parsing, path finding, argument splitting and splicing
//! never panic, and argument splitting round-trips.
#![no_main]

use downshiftarr_shim::filtergraph::{self, render_args, split_args, Graph};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Graph::parse(data) {
        let _ = filtergraph::labels_consistent(&g);
        for l in g.open_outputs() {
            let _ = g.path_to(l);
        }
        for at in g.positions() {
            if let Some(r) = &g.filter(at).args {
                let a = g.text(r);
                assert_eq!(render_args(&split_args(a)), a);
            }
        }
    }
});
