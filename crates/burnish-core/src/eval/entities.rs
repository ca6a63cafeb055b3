//! Entity-level precision, recall and F1 per entity type, as seqeval computes them in its default
//! (conlleval) mode: sentences are joined with an `O` between them, chunks are read from the
//! tags (an `I-X` after `O` or after another type starts a chunk), and a predicted entity counts
//! only when its type, start and end all match a true one.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Precision, recall, F1 and support (true entities) of one entity type, or of an average.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityMetrics {
    /// The entity type (`PER`, ...), or the average's name.
    pub name: String,
    /// Of the predicted entities, the fraction that are right.
    pub precision: f64,
    /// Of the true entities, the fraction found.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// True entities.
    pub support: usize,
}

/// seqeval's classification report plus token accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityReport {
    /// Per entity type, sorted by name.
    pub types: Vec<EntityMetrics>,
    /// Over all entities (the figure usually quoted as "entity F1").
    pub micro: EntityMetrics,
    /// Unweighted mean over types.
    pub macro_avg: EntityMetrics,
    /// Mean over types weighted by support.
    pub weighted: EntityMetrics,
    /// Fraction of words whose tag is right.
    pub token_accuracy: f64,
    /// Words evaluated.
    pub words: usize,
}

/// One entity: type, first and last word (indices into the joined sequence).
pub type Entity = (String, usize, usize);

fn split_tag(tag: &str) -> (char, &str) {
    if tag == "O" {
        return ('O', "");
    }
    match tag.split_once('-') {
        Some((p, t)) => (p.chars().next().unwrap_or('O'), t),
        None => (tag.chars().next().unwrap_or('O'), "_"),
    }
}

fn end_of_chunk(prev: char, tag: char, prev_type: &str, ty: &str) -> bool {
    matches!((prev, tag), ('E' | 'S', _) | ('B' | 'I', 'B' | 'S' | 'O'))
        || (prev != 'O' && prev_type != ty)
}

fn start_of_chunk(prev: char, tag: char, prev_type: &str, ty: &str) -> bool {
    matches!((prev, tag), (_, 'B' | 'S') | ('E' | 'S' | 'O', 'E' | 'I'))
        || (tag != 'O' && prev_type != ty)
}

/// The entities of `tags` (one sequence), seqeval's `get_entities`.
pub fn entities<S: AsRef<str>>(tags: &[S]) -> Vec<Entity> {
    let mut out = Vec::new();
    let (mut prev, mut prev_type) = ('O', String::new());
    let mut begin = 0;
    for (i, tag) in tags.iter().map(AsRef::as_ref).chain(["O"]).enumerate() {
        let (t, ty) = split_tag(tag);
        if end_of_chunk(prev, t, &prev_type, ty) {
            out.push((prev_type.clone(), begin, i - 1));
        }
        if start_of_chunk(prev, t, &prev_type, ty) {
            begin = i;
        }
        prev = t;
        prev_type = ty.to_string();
    }
    out
}

impl EntityReport {
    /// The report for `truth` against `predicted`: one tag sequence per sentence, same lengths.
    /// `None` when the two do not line up.
    pub fn new<S: AsRef<str>>(truth: &[Vec<S>], predicted: &[Vec<S>]) -> Option<Self> {
        if truth.len() != predicted.len()
            || truth.iter().zip(predicted).any(|(t, p)| t.len() != p.len())
        {
            return None;
        }
        let join = |seqs: &[Vec<S>]| -> Vec<String> {
            seqs.iter()
                .flat_map(|s| {
                    s.iter()
                        .map(|t| t.as_ref().to_string())
                        .chain(["O".to_string()])
                })
                .collect()
        };
        let (t, p) = (join(truth), join(predicted));
        let words: usize = truth.iter().map(Vec::len).sum();
        let correct = truth
            .iter()
            .zip(predicted)
            .flat_map(|(t, p)| t.iter().zip(p))
            .filter(|(a, b)| a.as_ref() == b.as_ref())
            .count();
        let true_set: BTreeSet<Entity> = entities(&t).into_iter().collect();
        let pred_set: BTreeSet<Entity> = entities(&p).into_iter().collect();
        let mut per_type: BTreeMap<String, [usize; 3]> = BTreeMap::new();
        for e in &true_set {
            per_type.entry(e.0.clone()).or_default()[2] += 1;
            if pred_set.contains(e) {
                per_type.entry(e.0.clone()).or_default()[0] += 1;
            }
        }
        for e in &pred_set {
            per_type.entry(e.0.clone()).or_default()[1] += 1;
        }
        let metrics = |name: &str, [tp, pred, support]: [usize; 3]| {
            let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
            let (precision, recall) = (ratio(tp, pred), ratio(tp, support));
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            EntityMetrics {
                name: name.to_string(),
                precision,
                recall,
                f1,
                support,
            }
        };
        let types: Vec<EntityMetrics> = per_type.iter().map(|(n, c)| metrics(n, *c)).collect();
        let sum = per_type
            .values()
            .fold([0; 3], |a, c| [a[0] + c[0], a[1] + c[1], a[2] + c[2]]);
        let n = types.len().max(1) as f64;
        let total_support: usize = types.iter().map(|m| m.support).sum();
        let avg = |name: &str, weight: &dyn Fn(&EntityMetrics) -> f64, norm: f64| {
            let norm = if norm > 0.0 { norm } else { 1.0 };
            EntityMetrics {
                name: name.to_string(),
                precision: types.iter().map(|m| m.precision * weight(m)).sum::<f64>() / norm,
                recall: types.iter().map(|m| m.recall * weight(m)).sum::<f64>() / norm,
                f1: types.iter().map(|m| m.f1 * weight(m)).sum::<f64>() / norm,
                support: total_support,
            }
        };
        Some(Self {
            micro: metrics("micro avg", sum),
            macro_avg: avg("macro avg", &|_| 1.0, n),
            weighted: avg("weighted avg", &|m| m.support as f64, total_support as f64),
            types,
            token_accuracy: if words == 0 {
                0.0
            } else {
                correct as f64 / words as f64
            },
            words,
        })
    }

    /// The report as text, in seqeval's layout, with token accuracy below.
    pub fn to_text(&self) -> String {
        let width = self
            .types
            .iter()
            .map(|m| m.name.len())
            .chain([12])
            .max()
            .unwrap_or(12);
        let mut out = format!(
            "{:>width$} {:>9} {:>9} {:>9} {:>9}\n\n",
            "", "precision", "recall", "f1-score", "support"
        );
        let row = |m: &EntityMetrics| {
            format!(
                "{:>width$} {:>9.2} {:>9.2} {:>9.2} {:>9}\n",
                m.name, m.precision, m.recall, m.f1, m.support
            )
        };
        for m in &self.types {
            out += &row(m);
        }
        out += "\n";
        for m in [&self.micro, &self.macro_avg, &self.weighted] {
            out += &row(m);
        }
        out += &format!(
            "\ntoken accuracy: {:.4} ({} words)\n",
            self.token_accuracy, self.words
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_as_seqeval_reads_them() {
        let tags = [
            "B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG", "O", "B-MISC",
        ];
        assert_eq!(
            entities(&tags),
            [
                ("PER".to_string(), 0, 1),
                ("LOC".to_string(), 3, 3),
                ("LOC".to_string(), 4, 4),
                ("ORG".to_string(), 5, 5),
                ("MISC".to_string(), 7, 7),
            ]
        );
    }

    /// seqeval's README example, whose report is known:
    /// MISC p 0.00 r 0.00 f 0.00 s 1; PER 1.00 1.00 1.00 1; micro 0.50 0.50 0.50 2;
    /// macro 0.50 0.50 0.50; weighted 0.50 0.50 0.50.
    #[test]
    fn the_seqeval_readme_example() {
        let truth = vec![
            vec!["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"],
            vec!["B-PER", "I-PER", "O"],
        ];
        let pred = vec![
            vec!["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"],
            vec!["B-PER", "I-PER", "O"],
        ];
        let r = EntityReport::new(&truth, &pred).expect("aligned");
        assert_eq!(r.types.len(), 2);
        assert_eq!(
            (r.types[0].name.as_str(), r.types[0].f1, r.types[0].support),
            ("MISC", 0.0, 1)
        );
        assert_eq!((r.types[1].name.as_str(), r.types[1].f1), ("PER", 1.0));
        assert_eq!(
            [r.micro.precision, r.micro.recall, r.micro.f1],
            [0.5, 0.5, 0.5]
        );
        assert_eq!(r.macro_avg.f1, 0.5);
        assert_eq!(r.weighted.f1, 0.5);
        assert_eq!(r.words, 10);
        assert!((r.token_accuracy - 0.8).abs() < 1e-12);
        let text = r.to_text();
        assert!(
            text.contains("        MISC      0.00      0.00      0.00         1"),
            "{text}"
        );
        assert!(
            text.contains("   micro avg      0.50      0.50      0.50         2"),
            "{text}"
        );
        assert!(EntityReport::new(&truth, &pred[..1]).is_none());
    }

    #[test]
    fn sentences_do_not_run_into_each_other() {
        // An entity at the end of one sentence and an I- at the start of the next are two.
        let truth = vec![vec!["O", "B-LOC"], vec!["I-LOC", "O"]];
        let r = EntityReport::new(&truth, &truth).expect("aligned");
        assert_eq!(r.micro.support, 2);
        assert_eq!(r.micro.f1, 1.0);
    }
}
