"""The GPU kit's figures as Markdown (tests/gpu/README.md): `summary.py OUT_DIR`, reading the
runs' JSON events (`NAME.jsonl`, from tests/gpu/run.sh), products.md and generate.txt there."""

import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]


def events(name):
    path = os.path.join(out, f"{name}.jsonl")
    if not os.path.exists(path):
        return None
    lines = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return lines


def first(evs, kind):
    return next((e for e in evs if e.get("type") == kind), None)


def fmt(x, digits=1):
    return "–" if x is None else f"{x:,.{digits}f}"


def step_figures(evs):
    """ms a step (the CLI's mean of every step but the first), the first step, the median host
    time a step but the first, the steps, the wall time of the whole run (s), the last loss."""
    progress = [e for e in evs if e.get("type") == "progress"]
    wall = first(evs, "wall")
    host = [e["host_ms"] for e in progress[1:] if "host_ms" in e]
    return {
        "ms": progress[-1]["ms_per_step"] if progress else None,
        "first": progress[0]["ms_per_step"] if progress else None,
        "host": statistics.median(host) if host else None,
        "steps": len(progress),
        "wall": wall["ms"] / 1000 if wall else None,
        "rc": wall["rc"] if wall else None,
        "loss": progress[-1].get("loss") if progress else None,
        "memory": memory(evs),
    }


def memory(evs):
    """The run's peak memory (the CLI's `memory` event): "device MiB / process MiB"."""
    m = first(evs, "memory") or {}
    mib = lambda b: fmt(b / 2**20, 0) if b is not None else "–"
    return f"{mib(m.get('device_peak_bytes'))} / {mib(m.get('process_peak_rss_bytes'))}"


print("# burnish on a GPU (tests/gpu/run.sh)\n")
adapter = None
for path in sorted(glob.glob(os.path.join(out, "*.jsonl"))):
    started = first(events(os.path.basename(path)[:-6]), "started")
    if started and started.get("adapter"):
        adapter = started["adapter"]
        break
print(f"Adapter: {adapter or 'unknown (no run started)'}\n")
if adapter and "CPU renderer" in adapter:
    print("**wgpu ran on a CPU renderer, not a GPU: these are not GPU figures** (no Vulkan driver found?)\n")

cnn = events("cnn")
if cnn:
    f = step_figures(cnn)
    print(f"Digits CNN (batch 64, 2 epochs): {fmt(f['ms'], 2)} ms a step, host {fmt(f['host'], 2)} ms, "
          f"first step {fmt(f['first'])} ms, {f['steps']} steps, {fmt(f['wall'])} s in all (rc {f['rc']})\n")

if os.path.exists(os.path.join(out, "products.md")):
    print("## A dense layer alone (tests/benches/products.rs)\n")
    print(open(os.path.join(out, "products.md")).read().strip(), "\n")

minilm = sorted(glob.glob(os.path.join(out, "minilm-*.jsonl")))
if minilm:
    print("## MiniLM fine-tuning (made-up weights, the first movie snippets, one epoch)\n")
    print("| run | steps | ms/step | host ms/step (median) | first step ms | wall s | last loss | peak MiB device / process | rc |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in minilm:
        name = os.path.basename(path)[:-6]
        f = step_figures(events(name))
        print(f"| {name} | {f['steps']} | {fmt(f['ms'], 2)} | {fmt(f['host'], 2)} | {fmt(f['first'])} | "
              f"{fmt(f['wall'])} | {fmt(f['loss'], 4)} | {f['memory']} | {f['rc']} |")
    print()

gpt = events("gpt")
if gpt:
    report = first(gpt, "lm_report")
    f = step_figures(gpt)
    tps = report["report"].get("tokens_per_second") if report else None
    print(f"GPT (the lm default recipe, {f['steps']} progress events): {fmt(tps, 0)} training tokens/s, {fmt(f['ms'], 2)} ms a step (rc {f['rc']})")
gen = os.path.join(out, "generate.txt")
if os.path.exists(gen):
    m = re.search(r"(\d+) tokens in ([\d.]+) s \(([\d.]+) tokens/s\)", open(gen).read())
    print(f"Generation: {m.group(0) if m else 'no figure (see generate.txt)'}\n")

accuracy = sorted(glob.glob(os.path.join(out, "accuracy-*.jsonl")))
if accuracy:
    print("## MiniLM on ~10.5k movie snippets (length 64, batch 32; epochs and learning rate in the run's name): the 60 s / 85% target\n")
    print("| run | wall s (process start to end) | training steps | ms/step | validation accuracy by epoch | test accuracy | peak MiB device / process | rc |")
    print("|---|---|---|---|---|---|---|---|")
    for path in accuracy:
        name = os.path.basename(path)[:-6]
        evs = events(name)
        f = step_figures(evs)
        val = [e.get("validation_accuracy") for e in evs if e.get("type") == "epoch"]
        report = first(evs, "report")
        test = report["report"]["report"]["accuracy"] if report else None
        print(f"| {name} | {fmt(f['wall'])} | {f['steps']} | {fmt(f['ms'], 2)} | "
              f"{', '.join(fmt(v, 3) for v in val) or '–'} | {fmt(test, 4)} | {f['memory']} | {f['rc']} |")
