using SharpTune.Models.Quantized;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Decoders.Llama;

namespace SharpTune.Models.Decoders.Qwen2;

/// <summary>
/// A Qwen2 language model, HF <c>Qwen2ForCausalLM</c>: the Llama modules built from a <see cref="Qwen2Config"/>, whose
/// q/k/v projections carry biases (keys <c>model.layers.{i}.self_attn.{q,k,v}_proj.bias</c>).
/// </summary>
public sealed class Qwen2ForCausalLM(Qwen2Config config, LinearFactory? linears = null, StoredEmbeddings? stored = null)
    : LlamaForCausalLM(config, linears, stored);
