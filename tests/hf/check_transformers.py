# Load burnish's exported folders with transformers' Auto classes and compare probabilities with
# `burnish predict` on the same sentences (one JSON line per sentence).
import json, sys
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

sent_dir, ner_dir, sent_pred, ner_pred, texts = sys.argv[1:6]
texts = [t for t in open(texts).read().split('\n') if t]

def tokenizer(d):
    t = Tokenizer.from_file(f'{d}/tokenizer.json')
    t.no_padding(); t.no_truncation()
    return t

def load(cls, d):
    model, info = cls.from_pretrained(d, output_loading_info=True)
    print(d, type(model).__name__, 'missing:', info['missing_keys'], 'unexpected:', info['unexpected_keys'], 'mismatched:', info['mismatched_keys'])
    return model.eval()

m = load(AutoModelForSequenceClassification, sent_dir)
tok = tokenizer(sent_dir)
worst = 0.0
for text, line in zip(texts, open(sent_pred)):
    ours = json.loads(line)['classes']['probabilities']
    e = tok.encode(text)
    with torch.no_grad():
        logits = m(input_ids=torch.tensor([e.ids]), token_type_ids=torch.tensor([e.type_ids]), attention_mask=torch.ones(1, len(e.ids), dtype=torch.long)).logits
    theirs = torch.softmax(logits, -1)[0].tolist()
    worst = max(worst, max(abs(a - b) for a, b in zip(ours, theirs)))
    print('sentiment', [round(x, 5) for x in theirs], [round(x, 5) for x in ours], m.config.id2label)
print(f'sequence classification: max |p_transformers - p_burnish| = {worst:.2e} over {len(texts)} texts')

m = load(AutoModelForTokenClassification, ner_dir)
tok = tokenizer(ner_dir)
worst, same = 0.0, 0
total = 0
for text, line in zip(texts, open(ner_pred)):
    ours = json.loads(line)['words']
    e = tok.encode(text)
    with torch.no_grad():
        logits = m(input_ids=torch.tensor([e.ids]), token_type_ids=torch.tensor([e.type_ids]), attention_mask=torch.ones(1, len(e.ids), dtype=torch.long)).logits
    p = torch.softmax(logits, -1)[0]
    seen = set()
    tags = []
    for j, w in enumerate(e.word_ids):
        if w is None or w in seen:
            continue
        seen.add(w)
        best = int(p[j].argmax())
        tags.append((m.config.id2label[best], float(p[j, best])))
    for (tag, prob), o in zip(tags, ours):
        total += 1
        same += tag == o['tag']
        worst = max(worst, abs(prob - o['probability']))
    print('ner', [t for t, _ in tags], [o['tag'] for o in ours])
print(f'token classification: {same}/{total} word tags equal, max |p| difference {worst:.2e}')
