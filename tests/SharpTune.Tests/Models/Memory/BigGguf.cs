using SharpTune.Checkpoints.Gguf;
using SharpTune.Tests.Checkpoints.Gguf;

namespace SharpTune.Tests.Models.Memory;

/// <summary>
/// A GGUF file whose header describes a Llama-2-7B-shaped Q4_0 model (6.7 billion parameters, 3.8 GB of blocks) while
/// its data is a hole: nothing is written, so the file costs a header's worth of disk where the file system is sparse.
/// </summary>
static class BigGguf
{
    public const long Parameters = 6_738_415_616;

    public static string Write(TestModels.TempFolder temp)
    {
        const int vocab = 32000, hidden = 4096, layers = 32, heads = 32, intermediate = 11008;
        string path = temp.File("big-7b-q4_0.gguf");
        var w = new GgufWriter()
            .Set("general.architecture", "llama")
            .Set("llama.context_length", 4096u)
            .Set("llama.embedding_length", (uint)hidden)
            .Set("llama.block_count", (uint)layers)
            .Set("llama.feed_forward_length", (uint)intermediate)
            .Set("llama.attention.head_count", (uint)heads)
            .Set("llama.attention.head_count_kv", (uint)heads)
            .Set("llama.attention.layer_norm_rms_epsilon", 1e-5f)
            .Set("llama.rope.dimension_count", (uint)(hidden / heads));
        GgufTestModels.AddVocabulary(w, vocab);
        w.AddTensorHole("token_embd.weight", [vocab, hidden], GgufTensorType.Q4_0);
        for (int n = 0; n < layers; n++)
        {
            string g = $"blk.{n}.";
            w.AddTensorHole(g + "attn_norm.weight", [hidden], GgufTensorType.F32);
            foreach (string m in new[] { "attn_q", "attn_k", "attn_v", "attn_output" }) w.AddTensorHole(g + m + ".weight", [hidden, hidden], GgufTensorType.Q4_0);
            w.AddTensorHole(g + "ffn_norm.weight", [hidden], GgufTensorType.F32);
            w.AddTensorHole(g + "ffn_gate.weight", [intermediate, hidden], GgufTensorType.Q4_0);
            w.AddTensorHole(g + "ffn_up.weight", [intermediate, hidden], GgufTensorType.Q4_0);
            w.AddTensorHole(g + "ffn_down.weight", [hidden, intermediate], GgufTensorType.Q4_0);
        }
        w.AddTensorHole("output_norm.weight", [hidden], GgufTensorType.F32);
        w.AddTensorHole("output.weight", [vocab, hidden], GgufTensorType.Q4_0);
        w.Save(path);
        return path;
    }
}
