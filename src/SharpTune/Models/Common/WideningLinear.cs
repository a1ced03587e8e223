using static TorchSharp.torch;

namespace SharpTune.Models.Common;

/// <summary>
/// <c>x Wᵀ</c> with <c>x</c> widened to the weight's dtype first (a LoRA adapter's fp32 <c>lora_A</c> over bf16
/// activations, as PEFT computes it), keeping <c>x</c> as it came for the backward pass rather than its widened copy,
/// which the plain graph would keep for the weight's gradient: half the bytes, and nothing at all where <c>x</c> is
/// kept anyway. The backward pass widens <c>x</c> again and takes the plain graph's products in its order
/// (<c>gᵀ x</c> for the weight, <c>g W</c> narrowed back for the input), so the values are the same bits.
/// </summary>
public static class WideningLinear
{
    /// <summary><c>linear(x.to(weight.dtype), weight)</c>; the custom backward only where there is something to save.</summary>
    public static Tensor Apply(Tensor x, Tensor weight) =>
        x.dtype == weight.dtype || !is_grad_enabled() || !(x.requires_grad || weight.requires_grad)
            ? nn.functional.linear(x.to(weight.dtype), weight)
            : Function.apply(x, weight);

    sealed class Function : autograd.SingleTensorFunction<Function>
    {
        public override string Name => nameof(WideningLinear);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var (x, weight) = ((Tensor)vars[0], (Tensor)vars[1]);
            ctx.save_for_backward([x, weight]);
            ctx.save_data("grads", (x.requires_grad, weight.requires_grad));
            using var wide = x.to(weight.dtype);
            return nn.functional.linear(wide, weight);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad)
        {
            var saved = ctx.get_saved_variables();
            var (x, weight) = (saved[0], saved[1]);
            var (inputGrad, weightGrad) = ((bool, bool))ctx.get_data("grads");
            using var scope = NewDisposeScope();
            long rows = weight.shape[0], columns = weight.shape[1];
            var g = grad.reshape(-1, rows);                                          // (N, out)
            Tensor? dx = null, dw = null;
            if (inputGrad) dx = g.mm(weight).view(x.shape).to(x.dtype).MoveToOuterDisposeScope();
            if (weightGrad) dw = g.t().mm(x.reshape(-1, columns).to(weight.dtype)).MoveToOuterDisposeScope();
            return [dx!, dw!];
        }
    }
}
