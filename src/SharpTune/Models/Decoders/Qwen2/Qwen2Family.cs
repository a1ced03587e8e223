using SharpTune.Models.Decoders.Gguf;
using SharpTune.Models.Decoders.Llama;

namespace SharpTune.Models.Decoders.Qwen2;

/// <summary>The Qwen2 family (also Qwen2.5): Llama's modules and GGUF layout with q/k/v biases and no q/k row permutation.</summary>
public static class Qwen2Family
{
    public static IDecoderFamily Descriptor { get; } = new DecoderFamily<Qwen2Config>("qwen2", ["qwen2"],
        new LlamaGguf("qwen2", LlamaFamily.Fields("qwen2", "Qwen2ForCausalLM", "silu"), GgufTensorTransform.None),
        (c, l, s) => new Qwen2ForCausalLM(c, l, s), LlamaCheckpointKeys.Map);
}
