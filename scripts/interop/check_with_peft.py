"""Checks that models and adapters trained by SharpTune load in Python transformers and PEFT and give the same logits.

Not needed to use SharpTune: it is how its Hugging Face and PEFT formats are verified against the reference
implementations. Export first (dotnet run --project bench -c Release -- interop-export), then run
    python scripts/interop/check_with_peft.py bench/results/interop
where torch, transformers, peft and safetensors are installed. Prints one line per method and exits non-zero
when a method fails to load or its logits differ by more than 1e-4.
"""
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import BertForSequenceClassification
from peft import PeftModel

TOLERANCE = 1e-4


def same_convention_logits(peft_model, ids, mask, position):
    """Input-side prompts: run the base model on [prompts; tokens] and read the real [CLS] at `position`, as SharpTune does.

    PEFT's own forward pools the first virtual token instead (METHODS.md), so its logits differ by design.
    """
    base = peft_model.base_model
    batch = ids.shape[0]
    prompts = peft_model.get_prompt(batch_size=batch)  # (B, P, H)
    words = base.bert.embeddings.word_embeddings(ids)
    embeds = torch.cat([prompts.to(words.dtype), words], dim=1)
    full_mask = torch.cat([torch.ones(batch, prompts.shape[1], dtype=mask.dtype), mask], dim=1)
    hidden = base.bert(inputs_embeds=embeds, attention_mask=full_mask,
                       token_type_ids=torch.zeros(batch, embeds.shape[1], dtype=torch.long)).last_hidden_state
    pooled = base.bert.pooler.activation(base.bert.pooler.dense(hidden[:, position]))
    return base.classifier(pooled)


def main(root):
    manifest = json.load(open(f"{root}/manifest.json"))
    ids = torch.tensor(manifest["input_ids"])
    mask = torch.tensor(manifest["attention_mask"])
    base_dir = f"{root}/{manifest['base']}"
    failures = 0
    for name, info in manifest["methods"].items():
        folder = f"{root}/{info['folder']}"
        expected = torch.tensor(info["logits"])
        note = ""
        try:
            if name == "full":
                model = BertForSequenceClassification.from_pretrained(folder).eval()
                logits = model(input_ids=ids, attention_mask=mask).logits
            elif info["peft_type"] is None or info["peft_type"] == "BITFIT":
                model = BertForSequenceClassification.from_pretrained(base_dir, num_labels=3).eval()
                tensors = {k.replace("base_model.model.", "", 1): v for k, v in load_file(f"{folder}/adapter/adapter_model.safetensors").items()}
                missing, unexpected = model.load_state_dict(tensors, strict=False)
                assert not unexpected, f"unexpected keys {unexpected}"
                logits = model(input_ids=ids, attention_mask=mask).logits
            else:
                base = BertForSequenceClassification.from_pretrained(base_dir, num_labels=3)
                model = PeftModel.from_pretrained(base, f"{folder}/adapter").eval()
                if info["reads_cls_at"]:
                    peft_logits = model(input_ids=ids, attention_mask=mask).logits
                    note = f" (PEFT's own forward pools virtual token 0: differs by {(peft_logits - expected).abs().max().item():.2e}, as expected)"
                    logits = same_convention_logits(model, ids, mask, info["reads_cls_at"])
                else:
                    logits = model(input_ids=ids, attention_mask=mask).logits
            with torch.no_grad():
                diff = (logits.detach() - expected).abs().max().item()
            ok = diff <= TOLERANCE
            failures += not ok
            print(f"{name:12s} {'ok  ' if ok else 'FAIL'} max |logit difference| {diff:.2e}{note}")
        except Exception as error:  # report every method, then fail
            failures += 1
            print(f"{name:12s} FAIL could not load: {type(error).__name__}: {error}")
    print(f"{len(manifest['methods']) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "bench/results/interop"))
