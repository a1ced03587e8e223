using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Tensor = TorchSharp.torch.Tensor;
using static TorchSharp.torch;

namespace SharpTune.Tests.ModelFolders;

/// <summary>A padded test batch as SharpTune and ONNX Runtime take it, and ONNX Runtime's outputs as tensors.</summary>
static class OnnxRuntimeRun
{
    /// <summary>
    /// <paramref name="batch"/> rows of up to <paramref name="length"/> random tokens in [5, vocab): row b is
    /// <c>length - 2b</c> long (at least 2) and padded with 0, and its second half is segment 1, so padding, masks and
    /// token types all take part.
    /// </summary>
    public static (Tensor Ids, Tensor Mask, Tensor Types) Batch(int batch, int length, int seed, int vocab = 99)
    {
        var random = new Random(seed);
        var ids = new long[batch * length];
        var mask = new long[batch * length];
        var types = new long[batch * length];
        for (int b = 0; b < batch; b++)
        {
            int real = Math.Max(2, length - 2 * b);
            for (int t = 0; t < real; t++)
            {
                ids[b * length + t] = t == 0 ? 2 : random.Next(5, vocab);
                mask[b * length + t] = 1;
                types[b * length + t] = t >= real / 2 ? 1 : 0;
            }
        }
        return (tensor(ids, [batch, length]), tensor(mask, [batch, length]), tensor(types, [batch, length]));
    }

    /// <summary>Runs the session on the batch; every output as a tensor of its shape.</summary>
    public static Dictionary<string, Tensor> Run(InferenceSession session, Tensor ids, Tensor mask, Tensor types)
    {
        int[] dims = [(int)ids.shape[0], (int)ids.shape[1]];
        var feeds = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(ids.data<long>().ToArray(), dims)),
            NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(mask.data<long>().ToArray(), dims)),
            NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(types.data<long>().ToArray(), dims)),
        };
        using var results = session.Run(feeds);
        return results.ToDictionary(r => r.Name, r =>
        {
            var values = r.AsTensor<float>();
            return tensor(values.ToArray(), values.Dimensions.ToArray().Select(d => (long)d).ToArray());
        });
    }
}
