namespace SharpTune.Models.Decoders.Gpt2;

/// <summary>The GPT-2 family: <see cref="Gpt2Config"/>, <see cref="GPT2LMHeadModel"/> and <see cref="Gpt2Gguf"/>.</summary>
public static class Gpt2Family
{
    public static IDecoderFamily Descriptor { get; } = new DecoderFamily<Gpt2Config>("gpt2", ["gpt2"], new Gpt2Gguf(),
        (c, l, s) => new GPT2LMHeadModel(c, l, s), Gpt2CheckpointKeys.Map);
}
