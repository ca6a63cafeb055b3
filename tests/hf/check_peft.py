"""PEFT and burnish apply each other's LoRA adapters alike (run by hand where torch, transformers
and peft are installed; `cargo xtask test` cannot install PyTorch):

    python3 tests/hf/check_peft.py BASE ADAPTER OUT BURNISH [GOLDEN]

BASE: a Hugging Face BERT folder (e.g. .assets/minilm). ADAPTER: an adapter that burnish wrote
(`burnish text ... --tuning lora --pooling cls --adapter-out ADAPTER`; [CLS] pooling, as
transformers pools). OUT: a folder for the adapter PEFT writes here. BURNISH: the `burnish`
binary.

1. burnish -> PEFT: `PeftModel.from_pretrained` loads ADAPTER onto BASE (no missing or unexpected
   keys) and its probabilities equal `burnish predict --adapter ADAPTER`.
2. PEFT -> burnish: `get_peft_model` with suffix targets, `rank_pattern` and `use_rslora`, random
   `lora_B`, `save_pretrained(OUT)`; `burnish predict --adapter OUT` equals PEFT's probabilities,
   which GOLDEN (if given) records: tests/minilm.rs checks the adapter PEFT 0.21.2 wrote this way
   (tests/fixtures/peft-0.21-adapter/, tests/fixtures/peft_0.21_golden.json) on every run.
"""
import json
import subprocess
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from tokenizers import Tokenizer
from transformers import AutoModelForSequenceClassification

base, adapter, out, burnish = sys.argv[1:5]
golden = sys.argv[5] if len(sys.argv) > 5 else None
texts = ["A gripping, beautifully acted film.", "Dull and far too long.", "It is a movie."]
tok = Tokenizer.from_file(f"{base}/tokenizer.json")
tok.no_padding()
tok.no_truncation()


def probabilities(model):
    rows = []
    for text in texts:
        e = tok.encode(text)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([e.ids]), token_type_ids=torch.tensor([e.type_ids]),
                           attention_mask=torch.ones(1, len(e.ids), dtype=torch.long)).logits
        rows.append(torch.softmax(logits, -1)[0].tolist())
    return rows


def ours(adapter_dir):
    lines = subprocess.run([burnish, "predict", "--model", base, "--adapter", adapter_dir, *texts],
                           check=True, capture_output=True, text=True).stdout.splitlines()
    return [json.loads(line)["classes"]["probabilities"] for line in lines]


def worst(a, b):
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


labels = json.load(open(f"{adapter}/burnish_adapter.json"))["labels"]
model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels))
peft = PeftModel.from_pretrained(model, adapter).eval()
theirs = probabilities(peft)
print("burnish -> PEFT:", theirs, "vs", ours(adapter))
print(f"burnish -> PEFT: max |p_peft - p_burnish| = {worst(theirs, ours(adapter)):.2e}")

torch.manual_seed(0)
model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=3)
config = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value", "output.dense"],
                    rank_pattern={"output.dense": 2}, use_rslora=True, layers_to_transform=[1, 4])
peft = get_peft_model(model, config)
with torch.no_grad():
    for name, p in peft.named_parameters():
        if "lora_B" in name or "classifier" in name:
            p.normal_(0, 0.2)
peft.eval()
peft.save_pretrained(out)
theirs = probabilities(peft)
print("PEFT -> burnish:", theirs, "vs", ours(out))
print(f"PEFT -> burnish: max |p_peft - p_burnish| = {worst(theirs, ours(out)):.2e}")
if golden:
    import peft as peft_package
    with open(golden, "w") as f:
        json.dump({"written_by": f"peft {peft_package.__version__}, torch {torch.__version__} (tests/hf/check_peft.py)",
                   "cases": [{"text": t, "probabilities": p} for t, p in zip(texts, theirs)]}, f, indent=1)
        f.write("\n")
