//! Index-based edits to an argument vector.
//!
//! A rewrite never re-renders the command line: it is a list of edits applied to a copy of
//! the original tokens, so every token it does not name stays byte-identical, and applying
//! no edits gives back exactly the input (tested over every fixture).

use std::ffi::OsString;

/// One change to the token list. Indices refer to the *original* tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// Token `at` becomes `with`.
    Replace { at: usize, with: OsString },
    /// `tokens` are inserted right after original token `after`.
    Insert { after: usize, tokens: Vec<OsString> },
    /// Token `at` is dropped (a decoder hint that does not fit a switched input).
    Remove { at: usize },
}

/// Applies `edits` to a copy of `tokens`.
pub fn apply(tokens: &[OsString], edits: &[Edit]) -> Vec<OsString> {
    let extra: usize = edits
        .iter()
        .map(|e| match e {
            Edit::Insert { tokens, .. } => tokens.len(),
            Edit::Replace { .. } | Edit::Remove { .. } => 0,
        })
        .sum();
    let mut out = Vec::with_capacity(tokens.len() + extra);
    for (i, t) in tokens.iter().enumerate() {
        let replaced = edits.iter().rev().find_map(|e| match e {
            Edit::Replace { at, with } if *at == i => Some(with),
            _ => None,
        });
        let removed = edits
            .iter()
            .any(|e| matches!(e, Edit::Remove { at } if *at == i));
        if !removed {
            out.push(replaced.unwrap_or(t).clone());
        }
        for e in edits {
            if let Edit::Insert { after, tokens } = e {
                if *after == i {
                    out.extend(tokens.iter().cloned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn no_edits_is_identity() {
        let a = t(&["-i", "x", "y"]);
        assert_eq!(apply(&a, &[]), a);
    }

    #[test]
    fn remove_keeps_inserts_after_the_removed_token() {
        let a = t(&["-codec:1", "eac3_eae", "-i", "x"]);
        let e = [
            Edit::Remove { at: 0 },
            Edit::Remove { at: 1 },
            Edit::Insert {
                after: 1,
                tokens: t(&["-codec:2", "aac"]),
            },
        ];
        assert_eq!(apply(&a, &e), t(&["-codec:2", "aac", "-i", "x"]));
    }

    #[test]
    fn replace_and_insert() {
        let a = t(&["-i", "x", "-codec:0", "libx264", "y"]);
        let e = [
            Edit::Replace {
                at: 1,
                with: "z".into(),
            },
            Edit::Insert {
                after: 3,
                tokens: t(&["-color_trc:0", "bt709"]),
            },
        ];
        assert_eq!(
            apply(&a, &e),
            t(&[
                "-i",
                "z",
                "-codec:0",
                "libx264",
                "-color_trc:0",
                "bt709",
                "y"
            ])
        );
    }
}
