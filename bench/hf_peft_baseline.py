#!/usr/bin/env python3
"""Baseline for bench/cuda_decode's multi-LoRA rows: Hugging Face transformers +
PEFT generating one mixed batch of 64 rows with 64 distinct LoRA adapters on
the same GPU and model shape (tinyllama-1.1b, random bf16 weights, rank 16 on
all seven modules), using PEFT's mixed-adapter batch inference
(`generate(..., adapter_names=[...])`).

Prints decode tokens/s (and --json a {"rows": [...]} object like the C++
benches). Runs on a GPU machine (torch/transformers/peft present);
nothing is downloaded: the model is built from a config with random weights.

    python3 bench/hf_peft_baseline.py [--json] [--batch 64] [--adapters 64]
        [--ctx 512] [--new 32] [--base-only]
"""
import argparse
import json
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--adapters", type=int, default=64)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--new", type=int, default=32)
    args = ap.parse_args()

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from peft import LoraConfig, get_peft_model

    if not torch.cuda.is_available():
        print(json.dumps({"rows": [{"case": "skipped", "reason": "no CUDA device"}]}) if args.json else "no CUDA device")
        return
    torch.manual_seed(0)
    # tinyllama-1.1b's shape (runtime/model_factory.cpp model_shape).
    cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                      num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5,
                      rope_theta=10000.0, tie_word_embeddings=False)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.eval()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lcfg = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules=targets, lora_dropout=0.0,
                      init_lora_weights=False)  # random B so adapters change outputs
    model = get_peft_model(model, lcfg, adapter_name="a0")
    for i in range(1, args.adapters):
        model.add_adapter(f"a{i}", lcfg)
    model.to(device="cuda", dtype=torch.bfloat16)
    model.eval()  # add_adapter leaves the model in training mode, where PEFT refuses adapter_names
    names = [f"a{i % args.adapters}" for i in range(args.batch)]
    ids = torch.randint(1, cfg.vocab_size, (args.batch, args.ctx), device="cuda")
    mask = torch.ones_like(ids)

    def gen(new, adapter_names):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            kw = {"adapter_names": adapter_names} if adapter_names is not None else {}
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                           do_sample=False, pad_token_id=0, **kw)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    rows = []
    for label, an in (("mixed", names), ("base-only", ["__base__"] * args.batch)):
        gen(2, an)  # warm up
        t1 = gen(1, an)  # prefill + first token
        tn = gen(args.new + 1, an)
        step_ms = (tn - t1) / args.new * 1000.0
        rows.append({"case": f"hf-peft tinyllama b{args.batch} {label} {args.adapters} adapters",
                     "step_ms": round(step_ms, 3), "tok_per_s": round(args.batch * 1000.0 / step_ms, 1),
                     "torch": torch.__version__, "device": torch.cuda.get_device_name(0)})
    if args.json:
        print(json.dumps({"rows": rows}))
    else:
        for r in rows:
            print(r)


if __name__ == "__main__":
    main()
