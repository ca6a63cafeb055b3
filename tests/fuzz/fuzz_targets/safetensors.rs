//! Safetensors files: a classifier export through the page's import, and PEFT adapter weights
//! onto a tiny BERT and a tiny GPT, and autosaves of runs (the first byte picks which).
#![no_main]

use burnish_core::model::bert::BertConfig;
use burnish_core::model::gpt::GptConfig;
use burnish_core::model::peft::{read_adapter, read_gpt_adapter};
use burnish_core::session::workspace::Workspace;
use libfuzzer_sys::fuzz_target;

const BERT: &[u8] = include_bytes!("../../corpus/files/bert/tensor-shape/config.json");
const LORA: &[u8] = br#"{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["c_attn"], "task_type": "CAUSAL_LM", "bias": "none", "fan_in_fan_out": true}"#;
const BERT_LORA: &[u8] = br#"{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["query", "value"], "task_type": "SEQ_CLS", "bias": "none"}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    match pick % 4 {
        3 => {
            let _ = burnish_core::session::checkpoint::Checkpoint::from_bytes("autosave", bytes);
        }
        0 => {
            let _ = Workspace::new().import("model.safetensors", bytes);
        }
        1 => {
            let config = BertConfig::from_json("config.json", BERT).expect("a valid config");
            let _ = read_adapter(BERT_LORA, bytes, None, &config);
        }
        _ => {
            let config = GptConfig {
                vocab_size: 5,
                context: 8,
                layers: 1,
                heads: 2,
                hidden: 4,
                dropout: 0.0,
            };
            let _ = read_gpt_adapter(LORA, bytes, &config);
        }
    }
});
