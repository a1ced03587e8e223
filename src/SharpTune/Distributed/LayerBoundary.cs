using static TorchSharp.torch;

namespace SharpTune.Distributed;

/// <summary>
/// Told, during a backward pass, that the gradients of a layer's parameters are complete: the gradient reached the
/// layer's input, and libtorch runs a parameter's gradient accumulation as soon as it is ready (before any other
/// node), so every use of the layer's parameters inside the layer has been accounted for.
/// </summary>
public interface ILayerGradientListener
{
    /// <summary>A forward pass entered <paramref name="layer"/> with gradients on (once per call).</summary>
    void Entered(nn.Module layer);

    /// <summary>The backward pass left <paramref name="layer"/> through the input of one of its calls.</summary>
    void Finished(nn.Module layer);
}

/// <summary>
/// The "gradient ready" signal of a layer stack, PyTorch DDP's autograd hook without tensor hooks (TorchSharp 0.107
/// has none): a model passes the hidden state entering each layer of its stack through <see cref="Enter"/>, an identity
/// whose backward tells this thread's listener that the layer is done, so data-parallel training can start that
/// layer's gradient reduction while backward computes the layers below. Without a listener (a single process,
/// inference, evaluation without gradients) it returns its input and adds nothing to the graph.
/// </summary>
public static class LayerBoundary
{
    [ThreadStatic] static ILayerGradientListener? listener;

    /// <summary>Sets this thread's listener (null to remove it); returns the previous one.</summary>
    public static ILayerGradientListener? Listen(ILayerGradientListener? value)
    {
        var previous = listener;
        listener = value;
        return previous;
    }

    /// <summary>The hidden state entering <paramref name="layer"/>, unchanged; with a listener, marked so backward signals the layer's end.</summary>
    public static Tensor Enter(Tensor hidden, nn.Module layer)
    {
        if (listener is not { } current || !hidden.requires_grad || !is_grad_enabled()) return hidden;
        current.Entered(layer);
        return Signal.apply(hidden, layer, current);
    }

    sealed class Signal : autograd.SingleTensorFunction<Signal>
    {
        public override string Name => "LayerBoundary";

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            ctx.save_data("layer", vars[1]);
            ctx.save_data("listener", vars[2]);
            return ((Tensor)vars[0]).alias();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            ((ILayerGradientListener)ctx.get_data("listener")).Finished((nn.Module)ctx.get_data("layer"));
            return [grad, null!, null!];   // one per argument of apply: the hidden state, the layer, the listener
        }
    }
}
