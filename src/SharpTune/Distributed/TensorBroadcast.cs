using static TorchSharp.torch;

namespace SharpTune.Distributed;

/// <summary>Copies tensors from one rank to all, in the order given (the same on every rank).</summary>
public static class TensorBroadcast
{
    /// <summary>Every rank's <paramref name="tensors"/> get rank <paramref name="root"/>'s values, in place.</summary>
    public static void FromRoot(ICommunicator world, IEnumerable<Tensor> tensors, int root = 0)
    {
        if (world.Size == 1) return;
        using var noGrad = no_grad();
        foreach (var tensor in tensors)
        {
            if (tensor.is_contiguous())
            {
                world.Broadcast(tensor.bytes, root);
                continue;
            }
            using var copy = tensor.contiguous();
            world.Broadcast(copy.bytes, root);
            tensor.copy_(copy);
        }
    }

    /// <summary>Rank <paramref name="root"/>'s bytes on every rank, whatever length the others had.</summary>
    public static byte[] Bytes(ICommunicator world, byte[] local, int root = 0)
    {
        if (world.Size == 1) return local;
        var length = new double[] { world.Rank == root ? local.Length : 0 };
        world.AllReduceSum(length);
        var result = world.Rank == root ? local : new byte[(int)length[0]];
        world.Broadcast(result, root);
        return result;
    }
}
