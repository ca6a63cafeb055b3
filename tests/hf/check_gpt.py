"""transformers and PEFT run burnish's language models and GPT adapters alike, and burnish runs
PEFT's (by hand where torch, transformers and peft are installed; `cargo xtask test` cannot
install PyTorch):

    python3 tests/hf/check_gpt.py GPT ADAPTER OUT BURNISH

GPT: a folder `burnish lm ... --out GPT` wrote. ADAPTER: a folder `burnish lm ... --model GPT
--tuning lora --adapter-out ADAPTER` wrote. OUT: a folder for the adapter PEFT writes here.
BURNISH: the `burnish` binary.

1. `GPT2LMHeadModel.from_pretrained(GPT)` loads with no missing or unexpected keys, and
   `PreTrainedTokenizerFast(tokenizer_file=...)` encodes as burnish does; greedy generation
   equals `burnish generate --temperature 0` token for token, and the logits along it agree.
2. burnish -> PEFT: `PeftModel.from_pretrained(GPT, ADAPTER)` generates what
   `burnish generate --adapter ADAPTER` does.
3. PEFT -> burnish: `get_peft_model` on GPT (c_attn and mlp.c_proj, random `lora_B`),
   `save_pretrained(OUT)`; `burnish generate --adapter OUT` generates what PEFT does.
"""
import json
import subprocess
import sys

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

gpt, adapter, out, burnish = sys.argv[1:5]
PROMPT = "ROMEO:\n"
tok = PreTrainedTokenizerFast(tokenizer_file=f"{gpt}/tokenizer.json")
# transformers' GPT-2 does not slide its window: stay within the context.
TOKENS = json.load(open(f"{gpt}/config.json"))["n_positions"] - len(tok.encode(PROMPT))


def load():
    model, info = GPT2LMHeadModel.from_pretrained(gpt, output_loading_info=True)
    missing = [k for k in info["missing_keys"] if k != "lm_head.weight"]
    assert not missing and not info["unexpected_keys"], info
    return model.eval()


def theirs(model):
    ids = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=TOKENS, do_sample=False, pad_token_id=0,
                             output_scores=True, return_dict_in_generate=True)
    new = out.sequences[0, ids.shape[1]:].tolist()
    return tok.decode(new), out.scores


def ours(*extra):
    result = subprocess.run([burnish, "generate", "--model", gpt, "--prompt", PROMPT,
                             "--max-tokens", str(TOKENS), "--temperature", "0", *extra],
                            check=True, capture_output=True, text=True)
    assert result.stdout.startswith(PROMPT)
    return result.stdout[len(PROMPT):].rstrip("\n")


def margin(scores):
    """The smallest gap between the best and second-best logit along the greedy path: a gap
    wider than float error means a tie could not have flipped a token."""
    gaps = []
    for s in scores:
        top = torch.topk(s[0], 2).values
        gaps.append(float(top[0] - top[1]))
    return min(gaps)


base = load()
text, scores = theirs(base)
mine = ours()
print(f"1. transformers greedy == burnish greedy: {text == mine} (smallest top-2 logit gap {margin(scores):.2e})")
assert text == mine, (text, mine)

peft = PeftModel.from_pretrained(load(), adapter).eval()
text, scores = theirs(peft)
mine = ours("--adapter", adapter)
print(f"2. burnish adapter under PEFT == burnish: {text == mine} (gap {margin(scores):.2e})")
assert text == mine, (text, mine)

torch.manual_seed(0)
config = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn", "mlp.c_proj"], lora_dropout=0.0,
                    fan_in_fan_out=True, task_type="CAUSAL_LM")
model = get_peft_model(load(), config)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.normal_(0, 0.05)
model.save_pretrained(out)
text, scores = theirs(model.eval())
mine = ours("--adapter", out)
print(f"3. PEFT adapter under burnish == PEFT: {text == mine} (gap {margin(scores):.2e})")
assert text == mine, (text, mine)
print("all agree")
