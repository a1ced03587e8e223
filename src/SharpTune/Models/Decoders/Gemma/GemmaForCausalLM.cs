using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Decoders.Llama;
using SharpTune.Models.Quantized;

namespace SharpTune.Models.Decoders.Gemma;

/// <summary>
/// A Gemma language model, HF <c>GemmaForCausalLM</c>: the Llama modules built from a <see cref="GemmaConfig"/>, which
/// asks for GeGLU, norms computing x·(1 + w) and embeddings scaled by √hidden_size (as transformers' <c>modular_gemma.py</c>
/// writes Gemma as a delta of Llama). Keys are Llama's; the head is tied.
/// </summary>
public sealed class GemmaForCausalLM(GemmaConfig config, LinearFactory? linears = null, StoredEmbeddings? stored = null)
    : LlamaForCausalLM(config, linears, stored);
