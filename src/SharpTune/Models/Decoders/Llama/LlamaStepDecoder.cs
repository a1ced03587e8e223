using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using SharpTune.Models.Common;
using SharpTune.Models.Decoders.Common;
using SharpTune.Models.Quantized;
using SharpTune.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace SharpTune.Models.Decoders.Llama;

/// <summary>
/// The decode step of <see cref="LlamaForCausalLM"/> (Llama, Qwen2, Mistral, Gemma) on fp32 rows: the products on the
/// block kernels (<see cref="QuantizedKernels.MatMul(QuantizedMatrix, float*, int, float*)"/>) over the stored blocks, or
/// over float32 Linear weights read in place; norms, rotary positions, attention and the gated MLP's activation in
/// <see cref="StepMath"/>. It computes what the module computes in eval mode for one new position per row, or a short
/// prompt's positions a chunk at a time (the products round activations as the module's few-row path does), without a
/// libtorch call.
/// </summary>
sealed unsafe class LlamaStepDecoder : StepDecoder
{
    /// <summary>
    /// A Linear layer as the step reads it: the weight's blocks (or a float32 weight's memory) and its bias, and a LoRA
    /// update's pair, A (r, in) and B (out, r) as float32 matrices, with its scaling.
    /// </summary>
    sealed record Projection(QuantizedMatrix Weight, float[]? Bias, QuantizedMatrix? LoraA = null, QuantizedMatrix? LoraB = null, float Scaling = 0);

    sealed record Block(float[] InputNorm, float[] PostNorm, Projection Q, Projection K, Projection V, Projection O,
        Projection Gate, Projection Up, Projection Down);

    readonly Block[] blocks;
    readonly float[] finalNorm;
    readonly Projection head;
    readonly QuantizedMatrix embedding;
    readonly float? embeddingScale;
    readonly float[] frequencies;
    readonly float eps, attentionScale;
    readonly Action<Span<float>> activation;
    readonly int hidden, heads, keyValueHeads, headDim, intermediate, vocab;
    readonly List<QuantizedMatrix> views = [];
    readonly List<Tensor> pinned = [];                    // float32 tensors whose memory the views read
    readonly List<RowKeyValues> rows = [];
    int maxRows;                                          // rows the scratch below holds
    int loraWidth;                                        // the widest LoRA pair's r + out: its scratch per row
    float* scratch, lora;
    float* x, normed, query, key, value, context, gate, up, cos, sin;
    nint* keyPointers, valuePointers;
    int* lengths;
    bool disposed;

    LlamaStepDecoder(LlamaForCausalLM model, Action<Span<float>> activation)
    {
        var config = model.Config;
        hidden = config.HiddenSize;
        heads = config.NumAttentionHeads;
        keyValueHeads = config.Attention.KeyValueHeads;
        headDim = config.HeadDim;
        intermediate = config.IntermediateSize;
        vocab = config.VocabSize;
        eps = (float)config.RmsNormEps;
        attentionScale = 1f / MathF.Sqrt(headDim);
        this.activation = activation;

        blocks = model.Model.Layers.Select(layer =>
        {
            var (q, k, v, o) = layer.Attention.Projections;
            var (g, u, d) = layer.Mlp.Projections;
            return new Block(layer.Norms.Input.EffectiveWeight(), layer.Norms.PostAttention.EffectiveWeight(),
                Project(q), Project(k), Project(v), Project(o), Project(g), Project(u), Project(d));
        }).ToArray();
        finalNorm = model.Model.FinalNorm.EffectiveWeight();
        frequencies = model.Model.Rotary.Frequencies.ToArray();
        embeddingScale = model.Model.EmbeddingScale is { } scale ? (float)scale : null;
        embedding = model.Model.TokenEmbedding switch
        {
            StoredEmbedding stored => stored.Weight,
            Embedding dense => View(dense.weight!),
            var other => throw new InvalidOperationException($"no step over a {other.GetType().Name} token embedding"),
        };
        head = model.Head is { } untied ? Project(untied) : new Projection(embedding, null);
    }

    /// <summary>Makes the step's scratch hold <paramref name="n"/> rows (it only grows).</summary>
    void EnsureRows(int n)
    {
        if (n <= maxRows) return;
        FreeScratch();
        maxRows = Math.Max(n, 4);
        long floats = maxRows * (2L * hidden + 3L * heads * headDim + 2L * keyValueHeads * headDim + 2L * intermediate + headDim);
        scratch = (float*)NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        float* next = scratch;
        float* Take(long count) { var at = next; next += count; return at; }
        x = Take(maxRows * (long)hidden);
        normed = Take(maxRows * (long)Math.Max(hidden, heads * headDim));
        query = Take(maxRows * (long)heads * headDim);
        context = Take(maxRows * (long)heads * headDim);
        key = Take(maxRows * (long)keyValueHeads * headDim);
        value = Take(maxRows * (long)keyValueHeads * headDim);
        gate = Take(maxRows * (long)intermediate);
        up = Take(maxRows * (long)intermediate);
        cos = Take(maxRows * (long)headDim / 2);
        sin = Take(maxRows * (long)headDim / 2);
        keyPointers = (nint*)NativeMemory.Alloc((nuint)(maxRows * keyValueHeads), (nuint)sizeof(nint));
        valuePointers = (nint*)NativeMemory.Alloc((nuint)(maxRows * keyValueHeads), (nuint)sizeof(nint));
        lengths = (int*)NativeMemory.Alloc((nuint)maxRows, sizeof(int));
        lora = loraWidth == 0 ? null : (float*)NativeMemory.AlignedAlloc((nuint)((long)maxRows * loraWidth * sizeof(float)), 64);
    }

    void FreeScratch()
    {
        NativeMemory.AlignedFree(scratch);
        NativeMemory.AlignedFree(lora);
        NativeMemory.Free(keyPointers);
        NativeMemory.Free(valuePointers);
        NativeMemory.Free(lengths);
        scratch = lora = null;
        keyPointers = valuePointers = null;
        lengths = null;
    }

    /// <summary>
    /// An empty step decoder over <paramref name="model"/>, or null when the model has a layer the step does not compute
    /// (see <see cref="IStepDecoding.CreateStepDecoder"/>).
    /// </summary>
    public static LlamaStepDecoder? TryCreate(LlamaForCausalLM model)
    {
        if (model.training) return null;
        if (StepMath.Activation(model.Config.MlpActivation) is not { } activation) return null;
        if (!model.Model.parameters().All(p => p.dtype == ScalarType.Float32 && p.device_type == TorchSharp.DeviceType.CPU)) return null;
        if (model.Model.TokenEmbedding is not (StoredEmbedding or Embedding)) return null;
        var linears = model.Model.Layers.SelectMany(l =>
        {
            var (q, k, v, o) = l.Attention.Projections;
            var (g, u, d) = l.Mlp.Projections;
            return new[] { q, k, v, o, g, u, d };
        }).Append(model.Head).Where(m => m is not null);
        if (!linears.All(Steppable)) return null;   // another method's wrapper, DoRA: the module's forward computes it

        return new LlamaStepDecoder(model, activation);
    }

    static bool Steppable(nn.Module<Tensor, Tensor>? linear) => linear is StoredLinear or Linear or IStepLinear { CanStep: true };

    /// <summary>Whether a prompt cache is one the step takes: float32 keys and values, a mask of its batch and length.</summary>
    static bool Fits(KeyValueCache cache, Tensor attentionMask) =>
        cache.Layer(0).Keys is { } keys && keys.dtype == ScalarType.Float32
        && attentionMask.dim() == 2 && attentionMask.shape[0] == keys.shape[0] && attentionMask.shape[1] == keys.shape[2];

    public override int Rows => rows.Count;

    public override int VocabSize => vocab;

    public override int Length(int row) => rows[row].Length;

    public override void Step(ReadOnlySpan<long> tokens, float* logits)
    {
        if (tokens.Length != rows.Count) throw new ArgumentException($"{tokens.Length} tokens for {rows.Count} rows", nameof(tokens));
        var rowOf = new int[rows.Count];
        for (int i = 0; i < rowOf.Length; i++) rowOf[i] = i;
        Run(tokens, rowOf, logits, lastOnly: false);
    }

    /// <summary>Prompts of up to this many tokens are computed here a chunk of <see cref="QuantizedOps.KernelRows"/> at a time (<see cref="Prefill"/>).</summary>
    public override int PrefillLimit => 4 * QuantizedOps.KernelRows;

    public override void Prefill(IReadOnlyList<int> prompt, int capacity, float* logits)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty: give at least one token", nameof(prompt));
        var row = new RowKeyValues(blocks.Length, keyValueHeads, headDim, Math.Max(capacity, prompt.Count + 1));
        rows.Add(row);
        int chunk = QuantizedOps.KernelRows;
        EnsureRows(Math.Max(rows.Count, chunk));
        var rowOf = Enumerable.Repeat(rows.Count - 1, chunk).ToArray();
        var tokens = new long[chunk];
        for (int start = 0; start < prompt.Count; start += chunk)
        {
            int count = Math.Min(chunk, prompt.Count - start);
            for (int j = 0; j < count; j++) tokens[j] = prompt[start + j];
            bool last = start + count == prompt.Count;
            Run(tokens.AsSpan(0, count), rowOf.AsSpan(0, count), last ? logits : null, lastOnly: true);
        }
    }

    /// <summary>
    /// One pass over the layers for <paramref name="tokens"/>, token i at the next free position of row
    /// <paramref name="rowOf"/>[i] (a row's tokens in order: a prompt's chunk attends to itself causally); the logits of
    /// every token, or with <paramref name="lastOnly"/> of the last one (none when <paramref name="logits"/> is null).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    void Run(ReadOnlySpan<long> tokens, ReadOnlySpan<int> rowOf, float* logits, bool lastOnly)
    {
        int n = tokens.Length;
        EnsureRows(n);
        int half = headDim / 2;
        var positions = new int[n];
        var added = new int[rows.Count];
        for (int i = 0; i < n; i++) positions[i] = rows[rowOf[i]].Length + added[rowOf[i]]++;
        for (int r = 0; r < rows.Count; r++) if (added[r] > 0) rows[r].Reserve(added[r]);
        for (int i = 0; i < n; i++)
        {
            long id = tokens[i];
            if (id < 0 || id >= embedding.Rows) throw new ArgumentOutOfRangeException(nameof(tokens), id, $"token id {id} is outside the embedding's {embedding.Rows} rows");
            QuantizedKernels.DequantizeRows(embedding, (int)id, 1, x + (long)i * hidden);
            if (embeddingScale is { } scale) TensorPrimitives.Multiply(Row(x, i, hidden), scale, Row(x, i, hidden));
            StepMath.RotaryAngles(positions[i], frequencies, Row(cos, i, half), Row(sin, i, half));
        }

        for (int layer = 0; layer < blocks.Length; layer++)
        {
            var block = blocks[layer];
            Norm(n, block.InputNorm);
            Product(block.Q, normed, n, query);
            Product(block.K, normed, n, key);
            Product(block.V, normed, n, value);
            for (int i = 0; i < n; i++)
            {
                var row = rows[rowOf[i]];
                StepMath.Rotate(Row(query, i, heads * headDim), headDim, Row(cos, i, half), Row(sin, i, half));
                StepMath.Rotate(Row(key, i, keyValueHeads * headDim), headDim, Row(cos, i, half), Row(sin, i, half));
                for (int h = 0; h < keyValueHeads; h++)
                {
                    long source = ((long)i * keyValueHeads + h) * headDim, target = (long)positions[i] * headDim;
                    Buffer.MemoryCopy(key + source, row.Keys(layer, h) + target, 4L * headDim, 4L * headDim);
                    Buffer.MemoryCopy(value + source, row.Values(layer, h) + target, 4L * headDim, 4L * headDim);
                    keyPointers[i * keyValueHeads + h] = (nint)row.Keys(layer, h);
                    valuePointers[i * keyValueHeads + h] = (nint)row.Values(layer, h);
                }
                lengths[i] = positions[i] + 1;
            }
            Attend(n);
            Product(block.O, context, n, normed);
            TensorPrimitives.Add(new ReadOnlySpan<float>(x, n * hidden), new ReadOnlySpan<float>(normed, n * hidden), new Span<float>(x, n * hidden));

            Norm(n, block.PostNorm);
            Product(block.Gate, normed, n, gate);
            Product(block.Up, normed, n, up);
            var gated = new Span<float>(gate, n * intermediate);
            activation(gated);
            TensorPrimitives.Multiply(gated, new ReadOnlySpan<float>(up, n * intermediate), gated);
            Product(block.Down, gate, n, normed);
            TensorPrimitives.Add(new ReadOnlySpan<float>(x, n * hidden), new ReadOnlySpan<float>(normed, n * hidden), new Span<float>(x, n * hidden));
        }
        for (int r = 0; r < rows.Count; r++) rows[r].Advance(added[r]);
        if (logits == null) return;

        if (!lastOnly)
        {
            Norm(n, finalNorm);
            Product(head, normed, n, logits);
            return;
        }
        StepMath.RmsNorm(Row(x, n - 1, hidden), finalNorm, eps, Row(normed, 0, hidden));
        Product(head, normed, 1, logits);
    }

    public override void Keep(IReadOnlyList<int> keep)
    {
        var kept = keep.Select(r => rows[r]).ToList();
        foreach (var row in rows.Except(kept)) row.Dispose();
        rows.Clear();
        rows.AddRange(kept);
    }

    static Span<float> Row(float* matrix, int row, int width) => new(matrix + (long)row * width, width);

    void Norm(int n, float[] weight)
    {
        for (int i = 0; i < n; i++) StepMath.RmsNorm(Row(x, i, hidden), weight, eps, Row(normed, i, hidden));
    }

    void Product(Projection p, float* input, int n, float* output)
    {
        QuantizedKernels.MatMul(p.Weight, input, n, output);
        if (p.Bias is { } bias)
            for (int i = 0; i < n; i++) TensorPrimitives.Add(Row(output, i, p.Weight.Rows), bias, Row(output, i, p.Weight.Rows));
        if (p.LoraA is not { } a || p.LoraB is not { } b) return;
        // As LoraLinear: the scaling multiplies the rank-r intermediate, then B's product is added to the base's.
        float* low = lora, update = lora + (long)n * a.Rows;
        QuantizedKernels.MatMul(a, input, n, low);
        var intermediate = new Span<float>(low, n * a.Rows);
        TensorPrimitives.Multiply(intermediate, p.Scaling, intermediate);
        QuantizedKernels.MatMul(b, low, n, update);
        var sum = new Span<float>(output, n * b.Rows);
        TensorPrimitives.Add(sum, new ReadOnlySpan<float>(update, n * b.Rows), sum);
    }

    struct AttentionJob
    {
        public float* Query, Context;
        public nint* Keys, Values;
        public int* Lengths;
        public int Heads, KeyValueHeads, HeadDim;
        public float Scale;
    }

    [ThreadStatic] static float[]? scores;

    void Attend(int n)
    {
        var job = new AttentionJob
        {
            Query = query, Context = context, Keys = keyPointers, Values = valuePointers, Lengths = lengths,
            Heads = heads, KeyValueHeads = keyValueHeads, HeadDim = headDim, Scale = attentionScale,
        };
        long work = 0;
        for (int i = 0; i < n; i++) work += (long)lengths[i] * heads * headDim;
        if (work < 1 << 15)
            for (int c = 0; c < n * heads; c++) AttendHead(&job, c);
        else
            KernelThreadPool.Shared.Run(n * heads, &AttendHead, &job);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    static void AttendHead(void* state, int chunk)
    {
        var job = (AttentionJob*)state;
        int row = chunk / job->Heads, h = chunk % job->Heads, dim = job->HeadDim;
        int kv = row * job->KeyValueHeads + h / (job->Heads / job->KeyValueHeads);   // HF repeat_kv: groups of query heads share one
        int length = job->Lengths[row];
        if (scores is null || scores.Length < length) scores = new float[Math.Max(length, 256) * 2];
        long at = ((long)row * job->Heads + h) * dim;
        StepMath.Attend(new ReadOnlySpan<float>(job->Query + at, dim), (float*)job->Keys[kv], (float*)job->Values[kv], length, job->Scale,
            scores, new Span<float>(job->Context + at, dim));
    }

    public override void Join(KeyValueCache cache, Tensor attentionMask, int capacity)
    {
        if (!Fits(cache, attentionMask))
            throw new ArgumentException($"a prompt cache of float32 keys and a (batch, positions) mask over them are needed; got a mask of shape [{string.Join(", ", attentionMask.shape)}]");
        using var scope = NewDisposeScope();
        int batch = (int)attentionMask.shape[0], prompt = (int)attentionMask.shape[1];
        var real = attentionMask.ne(0).cpu();
        var layerTensors = Enumerable.Range(0, blocks.Length).Select(l =>
        {
            var (k, v) = cache.Layer(l);
            return (Keys: k!.contiguous(), Values: v!.contiguous());
        }).ToArray();
        for (int b = 0; b < batch; b++)
        {
            var mask = real[b].data<bool>().ToArray();
            int count = mask.Count(m => m);
            var row = new RowKeyValues(blocks.Length, keyValueHeads, headDim, Math.Max(capacity, count + 1));
            var sources = new List<nint>();
            foreach (var (k, v) in layerTensors)
            {
                fixed (byte* pk = k.bytes) sources.Add((nint)((float*)pk + (long)b * keyValueHeads * prompt * headDim));
                fixed (byte* pv = v.bytes) sources.Add((nint)((float*)pv + (long)b * keyValueHeads * prompt * headDim));
            }
            row.Fill(sources, prompt, mask);
            rows.Add(row);
        }
        EnsureRows(rows.Count);
    }

    Projection Project(nn.Module<Tensor, Tensor> linear)
    {
        switch (linear)
        {
            case StoredLinear stored: return new Projection(stored.Weight, Floats(stored.Bias));
            case Linear dense: return new Projection(View(dense.weight!), Floats(dense.bias));
            case IStepLinear wrapped when wrapped.StepView() is { } view:
                var baseWeight = view.Stored ?? View(view.Weight!);
                if (view.A is not { } a || view.B is not { } b) return new Projection(baseWeight, Floats(view.Bias));
                loraWidth = Math.Max(loraWidth, (int)(a.shape[0] + b.shape[0]));
                var projection = new Projection(baseWeight, Floats(view.Bias), View(a), View(b), (float)view.Scaling);
                view.Dispose();                              // the views hold contiguous copies of A and B
                return projection;
            default: throw new InvalidOperationException($"no step over a {linear.GetType().Name}");
        }
    }

    static float[]? Floats(Tensor? t)
    {
        if (t is null) return null;
        using var values = t.detach().to(ScalarType.Float32).contiguous();
        return values.data<float>().ToArray();
    }

    QuantizedMatrix View(Tensor weight)
    {
        // Out of the caller's dispose scope: the decoder outlives it (the server's batcher makes one while admitting a request).
        var dense = weight.detach().contiguous().DetachFromDisposeScope();
        pinned.Add(dense);
        byte* data;
        fixed (byte* p = dense.bytes) data = p;
        var view = QuantizedMatrix.View(Checkpoints.Gguf.GgufTensorType.F32, (int)dense.shape[0], (int)dense.shape[1], data, owner: null);
        views.Add(view);
        return view;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposed) return;
        disposed = true;
        if (disposing)
        {
            foreach (var row in rows) row.Dispose();
            rows.Clear();
            foreach (var view in views) view.Dispose();
            foreach (var tensor in pinned) tensor.Dispose();
        }
        FreeScratch();
    }
}
