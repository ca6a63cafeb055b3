"""Writes the bad-input corpus: small malformed files of every format burnish reads, and
cases.json, which says for each case which loader takes it and what its error must say.

    python3 tests/corpus/make_corpus.py      # rewrites tests/corpus/files/ and cases.json

The files are committed (they also seed the fuzz targets); `tests/corpus.rs` feeds every case
through its loader and checks the message, that nothing panics or hangs, and that no single
allocation is larger than the input justifies. Cases too big to commit (a huge single line, a
header that claims terabytes) are built by the test itself (`"generate"` entries).
"""
import gzip
import json
import os
import shutil
import struct
import zlib

ROOT = os.path.dirname(os.path.abspath(__file__))
FILES = os.path.join(ROOT, "files")
shutil.rmtree(FILES, ignore_errors=True)
cases = []


def write(path, data):
    full = os.path.join(FILES, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def case(name, loader, files, expect, **extra):
    """files: paths under files/ (a dict maps the name the loader sees to the path)."""
    if isinstance(files, str):
        files = [files]
    if isinstance(files, list):
        files = {f: f for f in files}
    cases.append({"name": name, "loader": loader, "files": files, "expect": expect, **extra})


def safetensors(tensors, metadata=None, header_edit=None):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, offset, data = {}, 0, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        data += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    if header_edit:
        header_edit(header)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(n, value=0.1):
    return struct.pack(f"<{n}f", *([value] * n))


# --- burnish classifier exports (safetensors) -------------------------------------------------
MLP = {"kind": "mlp", "d_input": 2, "n_classes": 2, "hidden": [], "dropout": 0.0}
META = {"format": "burnish.classifier.v1", "model": json.dumps(MLP), "classes": '["a","b"]',
        "normalizer": "null", "image_shape": "null", "features": '["x","y"]'}
GOOD = [("layers.0.weight", "F32", [2, 2], f32(4)), ("layers.0.bias", "F32", [2], f32(2))]

case("empty safetensors", "classifier", write("safetensors/empty.safetensors", b""),
     ["empty.safetensors", "not a valid safetensors file"])
case("truncated length prefix", "classifier", write("safetensors/short.safetensors", b"\x10\x00\x00"),
     ["short.safetensors", "not a valid safetensors file"])
case("header longer than the file", "classifier",
     write("safetensors/header-past-end.safetensors", struct.pack("<Q", 4096) + b'{"a":1}'),
     ["header-past-end.safetensors", "not a valid safetensors file"])
case("header length of 2^60", "classifier",
     write("safetensors/header-huge.safetensors", struct.pack("<Q", 1 << 60) + b"{}"),
     ["header-huge.safetensors", "not a valid safetensors file"])
case("header not JSON", "classifier",
     write("safetensors/header-garbage.safetensors", struct.pack("<Q", 8) + b"\xff\xfe{{]]x\x00"),
     ["header-garbage.safetensors", "not a valid safetensors file"])
case("header a JSON list", "classifier",
     write("safetensors/header-list.safetensors", struct.pack("<Q", 8) + b"[1,2,3] "),
     ["header-list.safetensors", "not a valid safetensors file"])
case("offsets past the data", "classifier",
     write("safetensors/offsets-out.safetensors", safetensors(GOOD, META, lambda h: h["layers.0.bias"].update(data_offsets=[16, 4000]))),
     ["offsets-out.safetensors", "not a valid safetensors file"])
case("overlapping offsets", "classifier",
     write("safetensors/offsets-overlap.safetensors", safetensors(GOOD, META, lambda h: h["layers.0.bias"].update(data_offsets=[8, 16]))),
     ["offsets-overlap.safetensors", "not a valid safetensors file"])
case("shape and bytes disagree", "classifier",
     write("safetensors/shape-bytes.safetensors", safetensors(GOOD, META, lambda h: h["layers.0.weight"].update(shape=[3, 2]))),
     ["shape-bytes.safetensors", "not a valid safetensors file"])
case("integer weights", "classifier",
     write("safetensors/dtype.safetensors", safetensors([("layers.0.weight", "I32", [2, 2], bytes(16)), GOOD[1]], META)),
     ["dtype.safetensors", "layers.0.weight", "I32"])
case("no burnish metadata", "classifier",
     write("safetensors/no-metadata.safetensors", safetensors(GOOD)),
     ["no-metadata.safetensors", "not a burnish classifier export"])
case("model metadata not JSON", "classifier",
     write("safetensors/model-garbage.safetensors", safetensors(GOOD, {**META, "model": "{mlp"})),
     ["model-garbage.safetensors", "metadata `model`"])
case("classes disagree with the head", "classifier",
     write("safetensors/classes.safetensors", safetensors(GOOD, {**META, "classes": '["a","b","c"]'})),
     ["classes.safetensors", "3 classes"])
case("weights of the wrong shape", "classifier",
     write("safetensors/wrong-shape.safetensors", safetensors([("layers.0.weight", "F32", [2, 3], f32(6)), GOOD[1]], META)),
     ["wrong-shape.safetensors", "layers.0.weight"])
case("a missing tensor", "classifier",
     write("safetensors/missing.safetensors", safetensors(GOOD[:1], META)),
     ["missing.safetensors", "layers.0.bias"])
case("non-finite weights", "classifier",
     write("safetensors/nan.safetensors", safetensors([("layers.0.weight", "F32", [2, 2], f32(4, float("nan"))), GOOD[1]], META)),
     ["nan.safetensors", "non-finite"])

# --- Hugging Face BERT folders ----------------------------------------------------------------
TOKENIZER = open(os.path.join(ROOT, "..", "fixtures", "tiny-tokenizer.json")).read()
VOCAB = len(json.loads(TOKENIZER)["model"]["vocab"])
BERT = {"model_type": "bert", "vocab_size": VOCAB, "hidden_size": 8, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
        "max_position_embeddings": 16, "type_vocab_size": 2, "layer_norm_eps": 1e-12}


def bert_tensors(edit=None):
    h, i, v = 8, 16, VOCAB
    t = [("embeddings.word_embeddings.weight", [v, h]), ("embeddings.position_embeddings.weight", [16, h]),
         ("embeddings.token_type_embeddings.weight", [2, h]), ("embeddings.LayerNorm.weight", [h]),
         ("embeddings.LayerNorm.bias", [h])]
    p = "encoder.layer.0."
    for name, shape in [("attention.self.query", [h, h]), ("attention.self.key", [h, h]),
                        ("attention.self.value", [h, h]), ("attention.output.dense", [h, h]),
                        ("intermediate.dense", [i, h]), ("output.dense", [h, i])]:
        t.append((p + name + ".weight", shape))
        t.append((p + name + ".bias", [shape[0]]))
    t += [(p + "attention.output.LayerNorm.weight", [h]), (p + "attention.output.LayerNorm.bias", [h]),
          (p + "output.LayerNorm.weight", [h]), (p + "output.LayerNorm.bias", [h])]
    if edit:
        t = edit(t)
    out = []
    for name, shape in t:
        n = 1
        for d in shape:
            n *= d
        out.append((name, "F32", shape, f32(n, 0.01)))
    return safetensors(out, {"format": "pt"})


def bert_folder(name, config=None, tokenizer=TOKENIZER, weights=None, skip=()):
    files = {}
    for file, data in [("config.json", json.dumps(config or BERT) if not isinstance(config, str) else config),
                       ("tokenizer.json", tokenizer), ("model.safetensors", weights if weights is not None else bert_tensors())]:
        if file not in skip:
            files[f"{name}/{file}"] = write(f"bert/{name}/{file}", data)
    return files


case("config.json not JSON", "text_model", bert_folder("config-garbage", config="{hidden_size: 8"), ["config.json"])
case("config.json without hidden_size", "text_model",
     bert_folder("config-no-hidden", config={k: v for k, v in BERT.items() if k != "hidden_size"}), ["config.json", "hidden_size"])
case("hidden size not a multiple of the heads", "text_model",
     bert_folder("config-heads", config={**BERT, "num_attention_heads": 3}), ["num_attention_heads"])
case("tokenizer.json not JSON", "text_model", bert_folder("tokenizer-garbage", tokenizer="{\"model\": [}"), ["tokenizer.json"])
case("tokenizer.json JSON but not a tokenizer", "text_model",
     bert_folder("tokenizer-wrong", tokenizer='{"hello": "world"}'), ["tokenizer.json"])
case("no tokenizer.json", "text_model", bert_folder("no-tokenizer", skip=("tokenizer.json",)), ["tokenizer.json"])
case("no model.safetensors", "text_model", bert_folder("no-weights", skip=("model.safetensors",)), ["model.safetensors"])
case("a weight missing", "text_model",
     bert_folder("missing-tensor", weights=bert_tensors(lambda t: [x for x in t if "query.weight" not in x[0]])),
     ["model.safetensors", "query.weight"])
case("a weight of the wrong shape", "text_model",
     bert_folder("tensor-shape", weights=bert_tensors(lambda t: [(n, [8, 9] if n.endswith("key.weight") else s) for n, s in t])),
     ["model.safetensors", "key.weight"])
case("weights not safetensors", "text_model",
     bert_folder("weights-garbage", weights=b"PK\x03\x04 this is a zip, not safetensors"),
     ["model.safetensors", "not a valid safetensors file"])
case("tokenizer larger than the embedding", "text_model",
     bert_folder("vocab-small", config={**BERT, "vocab_size": 3}), ["model.safetensors", "word_embeddings.weight"])

# --- tables (CSV, TSV, JSON Lines) ------------------------------------------------------------
case("empty CSV", "table", write("tables/empty.csv", ""), ["empty.csv"])
case("header only", "table", write("tables/header-only.csv", "x,y,label\n"), ["header-only.csv"])
case("JSON Lines: an empty first object (found by the fuzzer)", "table", write("tables/empty-first.jsonl", '{}\n{"label": "b"}\n\n'),
     ["empty-first.jsonl", "line 1: an empty object"])
case("ragged row", "table", write("tables/ragged.csv", "x,y,label\n1,2,a\n3,b\n5,6,b\n"), ["ragged.csv", "line 3"])
case("text in a feature column", "table",
     write("tables/not-a-number.csv", "x,y,label\n1,2,a\n3,four,b\n5,6,a\n7,8,b\n"), ["not-a-number.csv", "four"])
case("Latin-1 bytes", "table", write("tables/latin1.csv", b"x,y,label\n1,2,caf\xe9\n3,4,b\n"), ["latin1.csv", "UTF-8"])
case("unterminated quote", "table", write("tables/quote.csv", 'x,y,label\n1,2,"a\n3,4,b\n'), ["quote.csv"])
case("one class only", "table", write("tables/one-class.csv", "x,y,label\n1,2,a\n3,4,a\n5,6,a\n"), ["one-class.csv", "class"])
case("infinite value", "table", write("tables/inf.csv", "x,y,label\n1,2,a\n3,inf,b\n5,6,a\n7,8,b\n"), ["inf.csv"])
case("TSV ragged", "table", write("tables/ragged.tsv", "x\ty\tlabel\n1\t2\ta\n3\t4\n"), ["ragged.tsv", "line 3"])
case("JSON Lines garbage line", "table",
     write("tables/garbage.jsonl", '{"x": 1, "label": "a"}\n{"x": 2, "label": \n{"x": 3, "label": "b"}\n'), ["garbage.jsonl", "line 2"])
case("JSON Lines array line", "table",
     write("tables/array.jsonl", '{"x": 1, "label": "a"}\n[1, "b"]\n'), ["array.jsonl", "line 2"])
case("JSON Lines missing key", "table",
     write("tables/missing-key.jsonl", '{"x": 1, "label": "a"}\n{"label": "b"}\n{"x": 3, "label": "b"}\n'), ["missing-key.jsonl", "line 2"])
case("truncated gzip", "table", write("tables/truncated.csv.gz", gzip.compress(b"x,y,label\n" + b"1,2,a\n" * 200, mtime=0)[:40]),
     ["truncated.csv.gz"])
case("gzip magic, garbage body", "table", write("tables/fake.csv.gz", b"\x1f\x8b\x08\x00garbage that is not deflate"), ["fake.csv.gz", "gzip"])
case("unknown extension", "table", write("tables/data.xlsx", b"PK\x03\x04"), ["data.xlsx"])
case("a single huge line", "table", {"huge-line.csv": "generate:huge-line"}, ["huge-line.csv", "line 3", "\u2026"])
case("table: empty label", "table", write("tables/empty-label.csv", "x,label\n1,a\n2,\n3,b\n"), ["empty-label.csv", "line 3", "label is empty"])

# --- texts for classification -----------------------------------------------------------------
case("texts: no text column", "text", write("texts/no-text.csv", "label\npos\nneg\n"), ["no-text.csv", "expected a column of texts"])
case("texts: empty file", "text", write("texts/empty.csv", ""), ["empty.csv"])
case("texts: empty label", "text", write("texts/empty-label.csv", "text,label\ngood film,pos\nbad film,\n"), ["empty-label.csv", "line 3", "label is empty"])
case("texts: Latin-1", "text", write("texts/latin1.csv", b"text,label\nsoir\xe9e,pos\nbad,neg\n"), ["latin1.csv", "UTF-8"])
case("texts: JSON Lines garbage", "text", write("texts/garbage.jsonl", '{"text": "a", "label": "x"}\n{"text": \n'), ["garbage.jsonl", "line 2"])
case("texts: unknown label in validation", "text_validation",
     {"train.csv": write("texts/train.csv", "text,label\ngood,pos\nbad,neg\n"),
      "validation.csv": write("texts/validation-unknown.csv", "text,label\nfine,pos\nmeh,neutral\n")},
     ["validation.csv", "neutral"])

# --- CoNLL ------------------------------------------------------------------------------------
case("CoNLL: empty file", "conll", write("conll/empty.conll", ""), ["empty.conll"])
case("CoNLL: blank lines only", "conll", write("conll/blank.conll", "\n\n\n"), ["blank.conll"])
case("CoNLL: a word without a tag", "conll", write("conll/no-tag.conll", "the O\ncat\n\n"), ["no-tag.conll", "line 2"])
case("CoNLL: a tag that is not BIO", "conll", write("conll/bad-tag.conll", "the O\ncat X-ANIMAL\n\n"), ["bad-tag.conll", "line 2"])
case("CoNLL: Latin-1", "conll", write("conll/latin1.conll", b"caf\xe9 O\n\n"), ["latin1.conll", "UTF-8"])

# --- image folders ----------------------------------------------------------------------------
def png(w, h, gray=128, ihdr_size=None):
    raw = b"".join(b"\x00" + bytes([gray] * w) for _ in range(h))
    iw, ih = ihdr_size or (w, h)
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", iw, ih, 8, 0, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


GOOD_PNG = png(4, 4)
case("images: a .png that is text", "images",
     {"imgs/cats/a.png": write("images/text/cats/a.png", GOOD_PNG), "imgs/cats/b.png": write("images/text/cats/b.png", "not an image"),
      "imgs/dogs/c.png": write("images/text/dogs/c.png", GOOD_PNG)}, ["b.png"])
case("images: truncated PNG", "images",
     {"imgs/cats/a.png": write("images/trunc/cats/a.png", GOOD_PNG), "imgs/dogs/b.png": write("images/trunc/dogs/b.png", GOOD_PNG[:30])},
     ["b.png"])
case("images: JPEG garbage", "images",
     {"imgs/cats/a.png": write("images/jpeg/cats/a.png", GOOD_PNG), "imgs/dogs/b.jpg": write("images/jpeg/dogs/b.jpg", b"\xff\xd8\xff\xe0garbage")},
     ["b.jpg"])
case("images: empty file", "images",
     {"imgs/cats/a.png": write("images/zero/cats/a.png", GOOD_PNG), "imgs/dogs/b.png": write("images/zero/dogs/b.png", b"")},
     ["b.png"])
case("images: no class folders", "images",
     {"imgs/a.png": write("images/flat/a.png", GOOD_PNG), "imgs/b.png": write("images/flat/b.png", GOOD_PNG)}, ["imgs", "at least 2 class sub-folders"])
case("images: loose files", "images",
     {"a.png": write("images/loose/a.png", GOOD_PNG), "b.png": write("images/loose/b.png", GOOD_PNG)}, ["a.png", "one sub-folder per class"])
case("images: one class", "images",
     {"imgs/cats/a.png": write("images/one/cats/a.png", GOOD_PNG), "imgs/cats/b.png": write("images/one/cats/b.png", GOOD_PNG)}, ["class"])
case("images: a PNG claiming 100000 x 100000 pixels", "images",
     {"imgs/cats/a.png": write("images/huge/cats/a.png", GOOD_PNG),
      "imgs/dogs/b.png": write("images/huge/dogs/b.png", png(4, 4, ihdr_size=(100000, 100000)))},
     ["b.png"])

# --- IDX --------------------------------------------------------------------------------------
def idx_images(n, rows=2, cols=2, magic=0x00000803):
    return struct.pack(">IIII", magic, n, rows, cols) + bytes(n * rows * cols)


def idx_labels(labels, magic=0x00000801):
    return struct.pack(">II", magic, len(labels)) + bytes(labels)


IMAGES = write("idx/images.idx3", idx_images(4))
LABELS = write("idx/labels.idx1", idx_labels([0, 1, 0, 1]))
case("IDX: wrong magic", "idx", {"images.idx3": write("idx/bad-magic.idx3", idx_images(4, magic=0x12345678)), "labels.idx1": LABELS},
     ["images.idx3", "magic"])
case("IDX: fewer pixels than the header says", "idx", {"images.idx3": write("idx/short.idx3", idx_images(4)[:-5]), "labels.idx1": LABELS},
     ["images.idx3"])
case("IDX: a header claiming 2^31 images", "idx",
     {"images.idx3": write("idx/claims.idx3", struct.pack(">IIII", 0x803, 0x7FFFFFFF, 28, 28) + bytes(64)), "labels.idx1": LABELS},
     ["images.idx3"])
case("IDX: counts disagree", "idx", {"images.idx3": IMAGES, "labels.idx1": write("idx/three.idx1", idx_labels([0, 1, 0]))},
     ["4", "3"])
case("IDX: truncated header", "idx", {"images.idx3": write("idx/header.idx3", b"\x00\x00\x08"), "labels.idx1": LABELS}, ["images.idx3"])
case("IDX: one file only", "idx", {"images.idx3": IMAGES}, ["IDX"])
case("IDX: float labels", "idx", {"images.idx3": IMAGES, "labels.idx1": write("idx/float.idx1", struct.pack(">II", 0x00000D01, 4) + struct.pack(">4f", 0.5, 1, 0, 1))},
     ["labels.idx1", "0.5 is not a class index"])

# Found by fuzzing: a syntax error inside `decoder` made tokenizers 0.23 panic.
case("tokenizer.json broken inside decoder", "text_model",
     bert_folder("decoder-syntax", tokenizer=TOKENIZER.replace('"decoder": null', '"decoder": {"t false, ', 1)), ["tokenizer.json", "not JSON"])

# --- language-model texts and folders ---------------------------------------------------------
case("LM text: empty", "lm_text", write("lm/empty.txt", ""), ["empty.txt"])
case("LM text: not UTF-8", "lm_text", write("lm/latin1.txt", b"line one\nsoir\xe9e\n" * 10), ["latin1.txt", "line 2", "UTF-8"])
case("LM text: too short", "lm_text", write("lm/short.txt", "hello"), ["short.txt", "too short"])
case("LM text: tokenizer.json broken inside decoder", "lm_text",
     {"book.txt": write("lm/book2.txt", "abc " * 50),
      "tokenizer.json": write("lm/decoder-tokenizer.json", '{"version": "1.0", "added_tokens": [], "decoder": {"t false, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}')},
     ["tokenizer.json", "not JSON"])
case("LM text: tokenizer.json with a Latin-1 byte inside decoder", "lm_text",
     {"book.txt": write("lm/book3.txt", "abc " * 50),
      "tokenizer.json": write("lm/decoder-latin1-tokenizer.json", b'{"version": "1.0", "added_tokens": [], "decoder": {"type": "Fus\xe7"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}')},
     ["tokenizer.json", "not JSON"])
case("LM text: bad tokenizer.json", "lm_text",
     {"book.txt": write("lm/book.txt", "abc " * 50), "tokenizer.json": write("lm/bad-tokenizer.json", '{"model": 1}')}, ["tokenizer.json"])

GPT2 = {"model_type": "gpt2", "vocab_size": 5, "n_positions": 8, "n_embd": 4, "n_layer": 1, "n_head": 2, "n_inner": None}
CHAR_TOKENIZER = json.dumps({"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
                             "pre_tokenizer": None, "post_processor": None, "decoder": {"type": "Fuse"},
                             "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                                       "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                                       "ignore_merges": False, "vocab": {"a": 0, "b": 1, "c": 2, " ": 3, "\n": 4}, "merges": []}})


def gpt_tensors(edit=None):
    v, t, h = 5, 8, 4
    names = [("transformer.wte.weight", [v, h]), ("transformer.wpe.weight", [t, h])]
    for name, shape in [("ln_1.weight", [h]), ("ln_1.bias", [h]), ("attn.c_attn.weight", [h, 3 * h]), ("attn.c_attn.bias", [3 * h]),
                        ("attn.c_proj.weight", [h, h]), ("attn.c_proj.bias", [h]), ("ln_2.weight", [h]), ("ln_2.bias", [h]),
                        ("mlp.c_fc.weight", [h, 4 * h]), ("mlp.c_fc.bias", [4 * h]), ("mlp.c_proj.weight", [4 * h, h]),
                        ("mlp.c_proj.bias", [h])]:
        names.append((f"transformer.h.0.{name}", shape))
    names += [("transformer.ln_f.weight", [h]), ("transformer.ln_f.bias", [h])]
    if edit:
        names = edit(names)
    out = []
    for name, shape in names:
        n = 1
        for d in shape:
            n *= d
        out.append((name, "F32", shape, f32(n, 0.01)))
    return safetensors(out, {"format": "pt"})


def gpt_folder(name, config=None, tokenizer=CHAR_TOKENIZER, weights=None):
    files = {}
    for file, data in [("config.json", json.dumps(config or GPT2) if not isinstance(config, str) else config),
                       ("tokenizer.json", tokenizer), ("model.safetensors", weights if weights is not None else gpt_tensors())]:
        files[f"{name}/{file}"] = write(f"gpt/{name}/{file}", data)
    return files


case("a Llama folder", "text_model", bert_folder("llama", config={**BERT, "model_type": "llama"}), ["config.json", "`model_type` is `llama`"])
case("GPT: not gpt2", "lm_model", gpt_folder("llama", config={**GPT2, "model_type": "llama"}), ["config.json", "model_type"])
case("GPT: width not a multiple of the heads", "lm_model", gpt_folder("heads", config={**GPT2, "n_head": 3}), ["config.json", "n_head 3"])
case("GPT: a weight missing", "lm_model",
     gpt_folder("missing", weights=gpt_tensors(lambda t: [x for x in t if "c_fc.weight" not in x[0]])), ["model.safetensors", "c_fc.weight"])
case("GPT: tokenizer larger than the vocabulary", "lm_model",
     gpt_folder("vocab", config={**GPT2, "vocab_size": 3}), ["tokenizer.json", "vocab_size"])
case("GPT: positions past n_positions", "lm_model",
     gpt_folder("positions", weights=gpt_tensors(lambda t: [(n, [16, 4] if n.endswith("wpe.weight") else s) for n, s in t])),
     ["model.safetensors", "wpe.weight"])

# --- PEFT adapters ----------------------------------------------------------------------------
def adapter(name, config, tensors):
    return {f"{name}/adapter_config.json": write(f"adapters/{name}/adapter_config.json", config if isinstance(config, str) else json.dumps(config)),
            f"{name}/adapter_model.safetensors": write(f"adapters/{name}/adapter_model.safetensors", tensors)}


LORA = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "lora_dropout": 0.0, "target_modules": ["c_attn"], "task_type": "CAUSAL_LM",
        "bias": "none", "fan_in_fan_out": True}
P = "base_model.model.transformer.h.0.attn.c_attn."
GOOD_A = (P + "lora_A.weight", "F32", [2, 4], f32(8))
GOOD_B = (P + "lora_B.weight", "F32", [12, 2], f32(24))
case("adapter: config not JSON", "lm_adapter", adapter("garbage", "{peft_type: LORA", safetensors([GOOD_A, GOOD_B])),
     ["adapter_config.json", "not valid JSON"])
case("adapter: prefix tuning", "lm_adapter", adapter("prefix", {**LORA, "peft_type": "PREFIX_TUNING"}, safetensors([GOOD_A, GOOD_B])),
     ["adapter_config.json", "PREFIX_TUNING"])
case("adapter: DoRA", "lm_adapter", adapter("dora", {**LORA, "use_dora": True}, safetensors([GOOD_A, GOOD_B])),
     ["adapter_config.json", "DoRA"])
case("adapter: A of the wrong width", "lm_adapter",
     adapter("shape", LORA, safetensors([(P + "lora_A.weight", "F32", [2, 5], f32(10)), GOOD_B])), ["adapter_model.safetensors", "lora_A"])
case("adapter: A without B", "lm_adapter", adapter("half", LORA, safetensors([GOOD_A])), ["adapter_model.safetensors", "only one of"])
case("adapter: ranks disagree", "lm_adapter",
     adapter("ranks", LORA, safetensors([GOOD_A, (P + "lora_B.weight", "F32", [12, 3], f32(36))])), ["adapter_model.safetensors", "rank 2"])
case("adapter: for a classifier", "lm_adapter", adapter("seqcls", {**LORA, "task_type": "SEQ_CLS"}, safetensors([GOOD_A, GOOD_B])),
     ["SEQ_CLS"])
case("adapter: weights not safetensors", "lm_adapter", adapter("notst", LORA, b"\x00" * 7), ["adapter_model.safetensors"])

# --- autosaves (checkpoints of classifier runs) ---------------------------------------------
CKPT = {**META, "format": "burnish.checkpoint.v1"}
MODEL = [("model." + n, d, sh, b) for n, d, sh, b in GOOD]
STATE = {"recipe": {}, "fingerprint": "0", "source": "a.csv", "steps": 4, "step": 2,
         "fit": {"epoch": 1, "step_in_epoch": 2, "loss_sum": 1.0, "epochs_run": 0, "since_best": 0, "best": None},
         "optimizer": [[2, True], [2, True]], "batches": {"rng": 1, "order": [1, 0], "cursor": 2},
         "augment_rng": None, "dropout_rng": 3}
case("autosave: truncated", "checkpoint", write("autosaves/truncated.ckpt", safetensors(MODEL, {**CKPT, "state": json.dumps(STATE)})[:90]),
     ["truncated.ckpt", "not a valid safetensors file"])
case("autosave: an export, not an autosave", "checkpoint", write("autosaves/export.ckpt", safetensors(GOOD, META)),
     ["export.ckpt", "burnish autosave"])
case("autosave: no state", "checkpoint", write("autosaves/nostate.ckpt", safetensors(MODEL, CKPT)), ["nostate.ckpt", "no `state`"])
case("autosave: state not JSON", "checkpoint", write("autosaves/badstate.ckpt", safetensors(MODEL, {**CKPT, "state": "{step: 2"})),
     ["badstate.ckpt", "metadata `state`"])
case("autosave: optimizer moments missing", "checkpoint",
     write("autosaves/nomoments.ckpt", safetensors(MODEL, {**CKPT, "state": json.dumps(STATE)})), ["nomoments.ckpt", "optim.0.first"])
case("autosave: a moment of the wrong dtype", "checkpoint",
     write("autosaves/dtype.ckpt", safetensors(MODEL + [("optim.0.first", "F16", [4], b"\0" * 8), ("optim.0.second", "F32", [4], f32(4))],
                                                {**CKPT, "state": json.dumps(STATE)})), ["dtype.ckpt", "optim.0.first", "F16"])
case("autosave: epoch past the run", "checkpoint",
     write("autosaves/epoch.ckpt", safetensors(MODEL + [(f"optim.{i}.{m}", "F32", [n], f32(n)) for i, n in [(0, 4), (1, 2)] for m in ["first", "second"]],
                                                {**CKPT, "state": json.dumps({**STATE, "recipe": {"fit": {"epochs": 1}}, "fit": {**STATE["fit"], "epoch": 3}})})),
     ["epoch.ckpt", "epoch 3"])

# --- recipes ----------------------------------------------------------------------------------
case("recipe: not JSON", "recipe", write("recipes/garbage.json", "{\"train\": {\"learning_rate\": 0.1,}"), ["line 1"])
case("recipe: a misspelt field", "recipe", write("recipes/typo.json", '{"train": {"learnig_rate": 0.1}}'), ["learnig_rate"])
case("recipe: a string for a number", "recipe", write("recipes/type.json", '{"train": {"batch_size": "sixty-four"}}'), ["sixty-four"])

if __name__ == "__main__":
    with open(os.path.join(ROOT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    print(f"{len(cases)} cases")
