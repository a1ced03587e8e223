using SharpTune.Models.Decoders.Gguf;
using SharpTune.Models.Decoders.Llama;

namespace SharpTune.Models.Decoders.Gemma;

/// <summary>
/// The Gemma family (Gemma 1; <c>model_type</c> and <c>general.architecture</c> gemma): Llama's modules and GGUF layout,
/// with llama.cpp's converter's conventions for it: no q/k row permutation (llama.cpp rotates halves for gemma), norm
/// weights written as 1 + w, head_dim always written as <c>attention.key_length</c>/<c>value_length</c>, no
/// <c>output.weight</c> (the head is the embedding matrix). PEFT's default targets are Llama's (q_proj, v_proj).
/// </summary>
public static class GemmaFamily
{
    public static IDecoderFamily Descriptor { get; } = new DecoderFamily<GemmaConfig>("gemma", ["gemma"],
        new LlamaGguf("gemma", LlamaFamily.Fields("gemma", "GemmaForCausalLM", "gelu_pytorch_tanh"), GgufTensorTransform.None,
            norms: GgufTensorTransform.PlusOne, alwaysHeadDim: true),
        (c, l, s) => new GemmaForCausalLM(c, l, s), LlamaCheckpointKeys.Map);
}
