"""The Qwen3-VL model, one module per part: `config` (config and presets), `weights` (load_model, build_model),
`rope` (rope_index, MRoPE and 2D rotary maths), `vision`, `text`, `moe`, `qwen3vl` (the Qwen3VL module) and
`kv_cache` (KVCache, allocate_caches). Nothing is imported here, so `qwen3vl_eval.model.config` stays light."""
