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
///
/// Linear in tokens + edits: the edits are sorted into per-token slots once (a switch of a
/// 100,000-token command line carries tens of thousands of edits; scanning every edit for
/// every token took minutes). The last `Replace` of a token wins; inserts after the same
/// token keep their order; an edit naming a token past the end changes nothing.
pub fn apply(tokens: &[OsString], edits: &[Edit]) -> Vec<OsString> {
    let slots = Slots::of(tokens.len(), edits);
    let mut out = Vec::with_capacity(tokens.len() + slots.inserted);
    for (i, t) in tokens.iter().enumerate() {
        if !slots.removed[i] {
            out.push(slots.replaced[i].unwrap_or(t).clone());
        }
        for e in slots.inserts_after(i) {
            out.extend(e.iter().cloned());
        }
    }
    out
}

/// Where every edit lands, by original token index.
pub(crate) struct Slots<'e> {
    pub(crate) replaced: Vec<Option<&'e OsString>>,
    pub(crate) removed: Vec<bool>,
    /// `(after, tokens)`, sorted by `after`, edit order kept among equals.
    inserts: Vec<(usize, &'e [OsString])>,
    /// How many tokens the inserts add in all.
    pub(crate) inserted: usize,
}

impl<'e> Slots<'e> {
    pub(crate) fn of(len: usize, edits: &'e [Edit]) -> Slots<'e> {
        let mut replaced = vec![None; len];
        let mut removed = vec![false; len];
        let mut inserts = Vec::new();
        for e in edits {
            crate::argv::visit();
            match e {
                Edit::Replace { at, with } => {
                    if let Some(r) = replaced.get_mut(*at) {
                        *r = Some(with);
                    }
                }
                Edit::Remove { at } => {
                    if let Some(r) = removed.get_mut(*at) {
                        *r = true;
                    }
                }
                Edit::Insert { after, tokens } if *after < len => {
                    inserts.push((*after, tokens.as_slice()));
                }
                Edit::Insert { .. } => {}
            }
        }
        inserts.sort_by_key(|&(after, _)| after); // stable: edit order among equals
        let inserted = inserts.iter().map(|(_, t)| t.len()).sum();
        Slots {
            replaced,
            removed,
            inserts,
            inserted,
        }
    }

    /// The token lists inserted after original token `i`, in edit order.
    pub(crate) fn inserts_after(&self, i: usize) -> impl Iterator<Item = &'e [OsString]> + '_ {
        let start = self.inserts.partition_point(|&(a, _)| a < i);
        self.inserts[start..]
            .iter()
            .take_while(move |&&(a, _)| a == i)
            .map(|&(_, t)| t)
    }
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
