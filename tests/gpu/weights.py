"""The GPU kit's file conversions (tests/gpu/README.md), Python's standard library only.

    weights.py f16 MODEL.safetensors OUT.safetensors    F32 tensors as F16 (others as they are):
                                                        MiniLM in 43 MB instead of 87 (the kit
                                                        travels in 64 MiB); burnish loads F16
    weights.py header MODEL.safetensors OUT.json        the names, dtypes and shapes alone
    weights.py random HEADER.json OUT.safetensors       a model of that layout with made-up F32
                                                        values (timing needs no trained weights)
    weights.py snippets REVIEWS.tsv OUT.csv             every movie-review snippet labelled by
                                                        the sign of its score, as `cargo xtask
                                                        setup` makes the demo's 2,000 (`text,label`)
"""

import array
import json
import math
import random
import struct
import sys


def read_header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), 8 + n


def write(path, header, chunks):
    """A safetensors file: `header` (name -> dtype, shape; offsets filled in) and the tensors'
    bytes from `chunks` (name -> bytes), in the header's order."""
    entries, offset = {}, 0
    for name, meta in header.items():
        if name == "__metadata__":
            entries[name] = meta
            continue
        size = len(chunks[name])
        entries[name] = {"dtype": meta["dtype"], "shape": meta["shape"], "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in entries:
            if name != "__metadata__":
                f.write(chunks[name])


def f16(src, out):
    header, start = read_header(src)
    chunks, meta_out = {}, {}
    with open(src, "rb") as f:
        for name, meta in header.items():
            if name == "__metadata__":
                meta_out[name] = meta
                continue
            a, b = meta["data_offsets"]
            f.seek(start + a)
            raw = f.read(b - a)
            if meta["dtype"] == "F32":
                values = array.array("f")
                values.frombytes(raw)
                if sys.byteorder != "little":
                    values.byteswap()
                chunks[name] = struct.pack(f"<{len(values)}e", *values)
                meta_out[name] = {"dtype": "F16", "shape": meta["shape"]}
            else:
                chunks[name] = raw
                meta_out[name] = {"dtype": meta["dtype"], "shape": meta["shape"]}
    write(out, meta_out, chunks)


def header(src, out):
    meta, _ = read_header(src)
    layout = {k: {"dtype": v["dtype"], "shape": v["shape"]} for k, v in meta.items() if k != "__metadata__"}
    with open(out, "w") as f:
        json.dump(layout, f, indent=1)


def made_up(src, out):
    with open(src) as f:
        layout = json.load(f)
    rng = random.Random(1)
    # One block of N(0, 0.02) values, repeated: as fast to make as to copy.
    block = array.array("f", (rng.gauss(0.0, 0.02) for _ in range(1 << 16))).tobytes()
    chunks = {}
    for name, meta in layout.items():
        n = math.prod(meta["shape"])
        if meta["dtype"] == "I64":
            chunks[name] = struct.pack(f"<{n}q", *range(n))
        elif meta["dtype"] != "F32":
            sys.exit(f"{src}: tensor {name} is {meta['dtype']}; expected F32 or I64")
        elif name.endswith("LayerNorm.weight") or name.endswith("LayerNorm.gamma"):
            chunks[name] = struct.pack(f"<{n}f", *([1.0] * n))
        elif name.endswith("bias") or name.endswith("LayerNorm.beta"):
            chunks[name] = bytes(4 * n)
        else:
            chunks[name] = (block * (4 * n // len(block) + 1))[: 4 * n]
    write(out, layout, chunks)


def snippets(src, out):
    rows = []
    with open(src, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.rstrip("\r\n").split("\t", 2)
            if len(fields) != 3:
                sys.exit(f"{src}: line {number}: expected 3 tab-separated fields (id, score, text)")
            score = float(fields[1])
            if score != 0:
                text = fields[2].strip().replace('"', '""')
                rows.append(f'"{text}",{"positive" if score > 0 else "negative"}')
    with open(out, "w", encoding="utf-8") as f:
        f.write("text,label\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    modes = {"f16": f16, "header": header, "random": made_up, "snippets": snippets}
    if len(sys.argv) != 4 or sys.argv[1] not in modes:
        sys.exit(__doc__)
    modes[sys.argv[1]](sys.argv[2], sys.argv[3])
