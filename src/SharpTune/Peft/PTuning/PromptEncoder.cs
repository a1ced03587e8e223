using SharpTune.Models;
using SharpTune.Models.Bert;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SharpTune.Peft.PTuning;

/// <summary>
/// P-tuning (Liu 2021): P trainable vectors re-parameterised by a small network, its output put in front of
/// the word embeddings. Follows PEFT's <c>PromptEncoder</c> and its keys: <c>embedding</c> (P, H),
/// <c>mlp_head.{0,2,4}</c> for the MLP, <c>lstm_head</c> plus <c>mlp_head.{0,2}</c> for the LSTM.
/// </summary>
public sealed class PromptEncoder : PromptModule
{
    readonly Embedding embedding;
    readonly LSTM? lstm_head;
    readonly Sequential mlp_head;

    public PromptEncoder(PTuningOptions options, IBackboneShape config)
        : base(nameof(PromptEncoder), options.VirtualTokens, config.HiddenSize)
    {
        int size = config.HiddenSize, hidden = options.EncoderHidden;
        EncoderType = options.EncoderType;
        embedding = nn.Embedding(options.VirtualTokens, size); // (P, H)
        if (options.EncoderType == PromptEncoderType.Lstm)
        {
            lstm_head = nn.LSTM(size, hidden, PTuningOptions.EncoderLayers, batchFirst: true,
                dropout: PTuningOptions.EncoderDropout, bidirectional: true);
            mlp_head = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, size));
        }
        else
        {
            mlp_head = nn.Sequential(nn.Linear(size, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, size));
        }
        RegisterComponents();
    }

    public PromptEncoderType EncoderType { get; }

    protected override Tensor Encode()
    {
        Tensor input = embedding.weight!; // (P, H): the embedding of indices 0..P-1
        if (lstm_head is not null)
        {
            // With autograd off (prediction, and SaveAdapter computing prompt_embeddings) libtorch 2.10 runs the
            // LSTM through oneDNN's inference kernel, whose AVX-512 version is wrong for hidden sizes under 32:
            // outputs off by 0.1 to 0.5 where they are below 1 (AMD EPYC; ONEDNN_MAX_CPU_ISA=AVX2 gives the right
            // ones). With autograd on it takes the kernel training uses, right to 1e-7 against float64 at every
            // size and ISA, so the LSTM always runs that way; with no parameter needing a gradient nothing is
            // recorded, and in no_grad code the MLP below records nothing either.
            Tensor output, lastHidden, lastCell;
            using (enable_grad())
                (output, lastHidden, lastCell) = lstm_head.forward(input.unsqueeze(0)); // (1, P, 2h)
            lastHidden.Dispose();
            lastCell.Dispose();
            input = is_grad_enabled() ? output.squeeze(0) : output.detach().squeeze(0); // (P, 2h)
        }
        return mlp_head.forward(input); // (P, H)
    }

    public override EncoderInputs Prepare(BertModel encoder, Tensor inputIds, Tensor attentionMask, Tensor tokenTypeIds) =>
        PrependToWordEmbeddings(encoder, inputIds, attentionMask, tokenTypeIds);
}
