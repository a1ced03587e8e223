using static TorchSharp.torch;

namespace SharpTune.Models.Decoders.Common;

/// <summary>
/// Activation checkpointing, as PyTorch's <c>torch.utils.checkpoint</c> (which TorchSharp lacks): a function's forward
/// runs without keeping its activations, only its inputs; in the backward pass it runs again, with grad enabled and
/// the random generator as it was, and the gradients reach both its inputs and the parameters it uses. Memory then
/// holds one tensor per checkpointed block instead of every intermediate of every block, for one more forward of
/// each block in the backward pass.
/// </summary>
/// <remarks>
/// Built on TorchSharp's custom autograd function (<c>torch.autograd.SingleTensorFunction</c>). Unlike PyTorch's
/// reentrant checkpoint, the trainable parameters are inputs of the autograd node: gradients reach them (LoRA's
/// <c>lora_A</c>/<c>lora_B</c>) even when no input requires grad, as with a frozen embedding in front (what
/// transformers works around with <c>enable_input_require_grads</c>).
/// Dropout: the generator's state is taken before the forward and set again for the recomputation (PyTorch's
/// <c>preserve_rng_state</c>), then the state the caller had is put back, so the recomputation draws the same masks
/// from libtorch's generator (FastDropout seeds from it too) and the rest of the run draws what it would have drawn.
/// The function must be pure apart from that: it must not change its inputs or any state outside (a key/value cache
/// would be appended twice), and it must compute the same thing twice.
/// </remarks>
public static class ActivationCheckpoint
{
    /// <summary>Whether a block of <paramref name="module"/> should be checkpointed now: training with grad enabled (never in generation or under no_grad).</summary>
    public static bool Applies(nn.Module module) => module.training && is_grad_enabled();

    /// <summary>
    /// <paramref name="function"/>(<paramref name="inputs"/>), keeping only the inputs for the backward pass.
    /// </summary>
    /// <param name="function">Computes the block from the inputs, as given (nulls stay null). It is called twice: once
    /// under no_grad now, once with grad in the backward pass on detached copies of the inputs; it must not keep
    /// references to the tensors it is handed, nor to tensors of the caller that may be disposed before the backward
    /// pass: pass every tensor it reads (masks, rotary tables) through <paramref name="inputs"/>.</param>
    /// <param name="inputs">The tensors the function reads; those that require grad get gradients.</param>
    /// <param name="parameters">The parameters the function uses (a module's <c>parameters()</c>); those that
    /// require grad get gradients, accumulated into <c>.grad</c> by the engine as usual.</param>
    /// <returns>The function's result, created in the caller's dispose scope.</returns>
    public static Tensor Run(Func<Tensor?[], Tensor> function, IReadOnlyList<Tensor?> inputs, IEnumerable<Tensor> parameters)
    {
        var trainable = parameters.Where(p => p.requires_grad).ToArray();
        var state = new CheckpointState(function, inputs.Select(t => t is not null && t.requires_grad).ToArray(), trainable);
        // The tensors among the arguments are the node's inputs in the graph: the engine routes the gradients returned
        // at their positions to them (non-tensor positions get null).
        return CheckpointFunction.apply([state, .. inputs, .. trainable]);
    }

    /// <summary>What the backward pass needs besides the saved inputs (kept with the autograd node, not as tensors).</summary>
    sealed class CheckpointState(Func<Tensor?[], Tensor> function, bool[] inputRequiresGrad, Tensor[] trainableParameters)
    {
        public Func<Tensor?[], Tensor> Function => function;
        public int Inputs => inputRequiresGrad.Length;
        public bool[] InputRequiresGrad => inputRequiresGrad;
        public Tensor[] TrainableParameters => trainableParameters;
        /// <summary>libtorch's CPU generator state when the forward ran.</summary>
        public byte[] RandomState { get; set; } = [];
    }

    /// <summary>
    /// The autograd node. Arguments: the <see cref="CheckpointState"/>, the inputs, then the trainable parameters.
    /// </summary>
    sealed class CheckpointFunction : autograd.SingleTensorFunction<CheckpointFunction>
    {
        public override string Name => nameof(ActivationCheckpoint);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var state = (CheckpointState)vars[0];
            var inputs = Enumerable.Range(0, state.Inputs).Select(i => vars[1 + i] as Tensor).ToArray();
            state.RandomState = GeneratorState();
            ctx.save_data(nameof(CheckpointState), state);
            ctx.save_for_backward(inputs.ToList()!);
            using var scope = NewDisposeScope();                                     // the block's intermediates end here
            return state.Function(inputs).MoveToOuterDisposeScope();
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            var state = (CheckpointState)ctx.get_data(nameof(CheckpointState));
            using var scope = NewDisposeScope();
            var saved = ctx.get_saved_variables();
            var inputs = new Tensor?[state.Inputs];
            for (int i = 0; i < state.Inputs; i++)
                inputs[i] = saved[i] is { } t ? t.detach().requires_grad_(state.InputRequiresGrad[i]) : null;

            Tensor output;
            var callerState = GeneratorState();
            SetGeneratorState(state.RandomState);
            try
            {
                using var grad = enable_grad();
                output = state.Function(inputs);
            }
            finally
            {
                SetGeneratorState(callerState);
            }

            var wanted = inputs.Where((t, i) => state.InputRequiresGrad[i]).Select(t => t!).Concat(state.TrainableParameters).ToList();
            var grads = wanted.Count == 0 || !output.requires_grad
                ? []
                : autograd.grad([output], wanted, [gradOutput], retain_graph: false, create_graph: false, allow_unused: true);

            var result = new List<Tensor>(1 + state.Inputs + state.TrainableParameters.Length) { null! };
            int next = 0;
            for (int i = 0; i < state.Inputs; i++)
                result.Add(state.InputRequiresGrad[i] && next < grads.Count ? Defined(grads[next++]) : null!);
            for (int i = 0; i < state.TrainableParameters.Length; i++)
                result.Add(next < grads.Count ? Defined(grads[next++]) : null!);
            foreach (var g in result) g?.MoveToOuterDisposeScope();
            return result;
        }

        /// <summary>An unused input's gradient comes back undefined: null, as the engine expects.</summary>
        static Tensor Defined(Tensor grad) => grad is null || grad.IsInvalid ? null! : grad;
    }

    static byte[] GeneratorState()
    {
        using var state = get_rng_state();
        return state.data<byte>().ToArray();
    }

    static void SetGeneratorState(byte[] bytes)
    {
        using var state = tensor(bytes, dtype: ScalarType.Byte);
        set_rng_state(state);
    }
}
