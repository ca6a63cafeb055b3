//! CoNLL-style files for named-entity recognition: one `token<TAB>tag` per line (more columns are
//! allowed: the first is the token, the last the tag, as in CoNLL-2003), sentences separated by
//! blank or whitespace-only lines, `-DOCSTART-` lines skipped. Tags are `O` or `B-TYPE` /
//! `I-TYPE` (BIO / IOB2; `E-` and `S-` of BIOES are accepted too).

use std::collections::{BTreeMap, BTreeSet};

use crate::{Error, Result};

/// Sentences of words with one tag per word.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenDataset {
    /// Where the sentences came from, for messages.
    pub source_name: String,
    /// Words of each sentence.
    pub sentences: Vec<Vec<String>>,
    /// Tag of each word, indexing `tag_names`.
    pub tags: Vec<Vec<u32>>,
    /// Tag names, `O` first, then the others sorted.
    pub tag_names: Vec<String>,
}

/// Whether `tag` is `O` or a prefixed entity tag, as seqeval reads them.
fn valid_tag(tag: &str) -> bool {
    tag == "O"
        || tag
            .split_once('-')
            .is_some_and(|(p, t)| matches!(p, "B" | "I" | "E" | "S") && !t.is_empty())
}

impl TokenDataset {
    /// Parse `bytes` (UTF-8, optionally with a BOM and CRLF line ends). With `tag_names` (a
    /// validation or test file read against the training file's tags), every tag must be one
    /// of them.
    ///
    /// # Errors
    /// [`Error::Data`] naming `source` and the line: not UTF-8, a line with one field, a tag that
    /// is not `O`/`B-X`/`I-X`, a tag missing from `tag_names`, no sentences at all.
    pub fn parse(source: &str, bytes: &[u8], tag_names: Option<&[String]>) -> Result<Self> {
        let fail = |reason: String| Error::data(source, reason);
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            fail(format!("line {line}: the file is not UTF-8 text"))
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut sentences: Vec<Vec<String>> = Vec::new();
        let mut raw_tags: Vec<Vec<(String, usize)>> = Vec::new();
        let mut words: Vec<String> = Vec::new();
        let mut tags: Vec<(String, usize)> = Vec::new();
        let mut flush = |words: &mut Vec<String>, tags: &mut Vec<(String, usize)>| {
            if !words.is_empty() {
                sentences.push(std::mem::take(words));
                raw_tags.push(std::mem::take(tags));
            }
        };
        for (i, line) in text.lines().enumerate() {
            let number = i + 1;
            if line.trim().is_empty() {
                flush(&mut words, &mut tags);
                continue;
            }
            let fields: Vec<&str> = if line.contains('\t') {
                line.split('\t').map(str::trim).collect()
            } else {
                line.split_whitespace().collect()
            };
            if fields.first().is_some_and(|f| *f == "-DOCSTART-") {
                flush(&mut words, &mut tags);
                continue;
            }
            let (token, tag) = match fields.as_slice() {
                [token, .., tag] if !token.is_empty() && !tag.is_empty() => (*token, *tag),
                _ => {
                    let shown: String = line.chars().take(40).collect();
                    return Err(fail(format!(
                        "line {number}: expected `token<TAB>tag`, found `{shown}`"
                    )));
                }
            };
            if !valid_tag(tag) {
                let shown: String = tag.chars().take(40).collect();
                return Err(fail(format!(
                    "line {number}: tag `{shown}` is not O, B-TYPE or I-TYPE (BIO tagging expected)"
                )));
            }
            words.push(token.to_string());
            tags.push((tag.to_string(), number));
        }
        flush(&mut words, &mut tags);
        if sentences.is_empty() {
            return Err(fail(
                "found no sentences; expected `token<TAB>tag` lines, sentences separated by blank lines"
                    .into(),
            ));
        }
        let tag_names: Vec<String> = match tag_names {
            Some(names) => names.to_vec(),
            None => {
                let seen: BTreeSet<&str> = raw_tags
                    .iter()
                    .flatten()
                    .map(|(t, _)| t.as_str())
                    .filter(|t| *t != "O")
                    .collect();
                std::iter::once("O".to_string())
                    .chain(seen.into_iter().map(str::to_string))
                    .collect()
            }
        };
        let index: BTreeMap<&str, u32> = tag_names
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let tags = raw_tags
            .iter()
            .map(|sentence| {
                sentence
                    .iter()
                    .map(|(tag, line)| {
                        index.get(tag.as_str()).copied().ok_or_else(|| {
                            fail(format!(
                                "line {line}: tag `{tag}` does not occur in the training file (its tags: {})",
                                tag_names.join(", ")
                            ))
                        })
                    })
                    .collect::<Result<Vec<u32>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            source_name: source.to_string(),
            sentences,
            tags,
            tag_names,
        })
    }

    /// Sentences.
    pub fn len(&self) -> usize {
        self.sentences.len()
    }

    /// Whether there are no sentences.
    pub fn is_empty(&self) -> bool {
        self.sentences.is_empty()
    }

    /// The sentences at `indices`, same tags.
    pub fn subset(&self, indices: &[usize]) -> Self {
        Self {
            source_name: self.source_name.clone(),
            sentences: indices.iter().map(|&i| self.sentences[i].clone()).collect(),
            tags: indices.iter().map(|&i| self.tags[i].clone()).collect(),
            tag_names: self.tag_names.clone(),
        }
    }

    /// Words carrying each tag, in tag order.
    pub fn tag_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.tag_names.len()];
        for &t in self.tags.iter().flatten() {
            counts[t as usize] += 1;
        }
        counts
    }

    /// For splitting: each sentence's "class" is the type of its first entity (0 for none), so
    /// a stratified split spreads sentences with and without entities evenly.
    pub fn strata(&self) -> (Vec<u32>, usize) {
        let strata = self
            .tags
            .iter()
            .map(|s| s.iter().copied().find(|&t| t != 0).unwrap_or(0))
            .collect();
        (strata, self.tag_names.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_tags_and_errors_with_lines() {
        let text = "\u{feff}-DOCSTART-\tO\n\nEU\tB-ORG\r\nrejects\tO\nGerman\tB-MISC\n\t\n\
                    Peter NNP B-NP B-PER\nBlackburn\tI-PER\n";
        let d = TokenDataset::parse("ner.txt", text.as_bytes(), None).expect("parse");
        assert_eq!(d.len(), 2);
        assert_eq!(d.sentences[0], ["EU", "rejects", "German"]);
        assert_eq!(d.sentences[1], ["Peter", "Blackburn"]);
        assert_eq!(d.tag_names, ["O", "B-MISC", "B-ORG", "B-PER", "I-PER"]);
        assert_eq!(d.tags[0], [2, 0, 1]);
        assert_eq!(d.tags[1], [3, 4]);
        assert_eq!(d.tag_counts(), [1, 1, 1, 1, 1]);
        assert_eq!(d.strata().0, [2, 3]);

        let bad = |text: &str| {
            TokenDataset::parse("bad.conll", text.as_bytes(), None)
                .expect_err(text)
                .to_string()
        };
        let e = bad("a\tO\nlonely\n");
        assert!(
            e.contains("bad.conll") && e.contains("line 2") && e.contains("token<TAB>tag"),
            "{e}"
        );
        let e = bad("a\tO\nb\tPERSON\n");
        assert!(e.contains("line 2: tag `PERSON`"), "{e}");
        let e = bad("\n \n\t\n");
        assert!(e.contains("no sentences"), "{e}");
        let e = TokenDataset::parse("x.conll", b"ok\tO\n\xff\tO\n", None)
            .expect_err("utf8")
            .to_string();
        assert!(e.contains("line 2: the file is not UTF-8"), "{e}");
        let names = d.tag_names.clone();
        let e = TokenDataset::parse("test.conll", b"Paris\tB-LOC\n", Some(&names))
            .expect_err("unknown")
            .to_string();
        assert!(
            e.contains("line 1: tag `B-LOC` does not occur in the training file"),
            "{e}"
        );
        let sub = d.subset(&[1]);
        assert_eq!(sub.sentences, [["Peter", "Blackburn"]]);
    }
}
