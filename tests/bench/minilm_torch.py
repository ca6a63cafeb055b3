"""PyTorch reference for `cargo xtask bench`: fine-tune all-MiniLM-L6-v2 as burnish's bench does
(mean pooling, a linear head, AdamW, batch 16, texts cut at 64 tokens, padded per batch) on the
same rows, full and with LoRA (r=8 on query and value, as PEFT does it), on the CPU, and print
the steady-state milliseconds per step as JSON. Needs torch, transformers and (for LoRA) peft;
when they are missing it prints {"error": ...} and the bench says so.

    python3 tests/bench/minilm_torch.py MODEL_DIR DATA.csv THREADS
"""
import csv
import json
import sys
import time

try:
    import torch
    from transformers import AutoModel, AutoTokenizer
except Exception as e:  # noqa: BLE001 - any import failure means "not installed here"
    print(json.dumps({"error": f"PyTorch/transformers not importable: {e}"}))
    sys.exit(0)


def run(model_dir, rows, lora):
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    encoder = AutoModel.from_pretrained(model_dir)
    if lora:
        from peft import LoraConfig, get_peft_model
        encoder = get_peft_model(encoder, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["query", "value"]))
    head = torch.nn.Linear(encoder.config.hidden_size, 2)
    params = [p for p in list(encoder.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3 if lora else 5e-5, weight_decay=0.01)
    encoder.train()
    times = []
    for start in range(0, len(rows), 16):
        batch = rows[start:start + 16]
        t0 = time.perf_counter()
        enc = tok([t for t, _ in batch], truncation=True, max_length=64, padding=True, return_tensors="pt")
        out = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (out * mask).sum(1) / mask.sum(1)
        loss = torch.nn.functional.cross_entropy(head(pooled), torch.tensor([y for _, y in batch]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
        times.append((time.perf_counter() - t0) * 1e3)
    rest = sorted(times[1:])
    return {"ms_per_step": sum(rest) / len(rest), "steps": len(times), "trainable": sum(p.numel() for p in params)}


def main():
    model_dir, data, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(threads)
    with open(data, newline="") as f:
        reader = csv.DictReader(f)
        rows = [(r["text"], 1 if r["label"] == "positive" else 0) for r in reader]
    result = {"torch": torch.__version__, "threads": threads, "rows": len(rows), "full": run(model_dir, rows, False)}
    try:
        result["lora"] = run(model_dir, rows, True)
    except Exception as e:  # noqa: BLE001
        result["lora"] = {"error": str(e)}
    print(json.dumps(result))


main()
