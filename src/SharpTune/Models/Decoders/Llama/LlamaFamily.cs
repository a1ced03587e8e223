using System.Text.Json.Nodes;
using SharpTune.Models.Decoders.Gguf;

namespace SharpTune.Models.Decoders.Llama;

/// <summary>
/// The Llama family (also Mistral, whose layout llama.cpp and this model share): <see cref="LlamaConfig"/> (whose
/// <c>Names</c> give PEFT's default targets), <see cref="LlamaForCausalLM"/>, and the Llama-layout GGUF table with
/// llama.cpp's q/k row permutation.
/// </summary>
public static class LlamaFamily
{
    public static IDecoderFamily Descriptor { get; } = new DecoderFamily<LlamaConfig>("llama", ["llama", "mistral"],
        new LlamaGguf("llama", Fields("llama", "LlamaForCausalLM", "silu"), GgufTensorTransform.PermutedRows),
        (c, l, s) => new LlamaForCausalLM(c, l, s), LlamaCheckpointKeys.Map);

    /// <summary>The config fields a GGUF file of a Llama-layout architecture implies but does not carry.</summary>
    public static JsonObject Fields(string modelType, string hfClass, string hiddenAct) => new()
    {
        ["model_type"] = modelType,
        ["architectures"] = new JsonArray(hfClass),
        ["hidden_act"] = hiddenAct,
    };
}
