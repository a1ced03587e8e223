using System.IO.MemoryMappedFiles;
using SharpTune.Checkpoints;
using SharpTune.Checkpoints.Gguf;
using SharpTune.Models.Decoders.Gguf;
using SharpTune.Quantization;

namespace SharpTune.Models.Quantized;

/// <summary>
/// The weight matrices of a GGUF file kept as the file stores them (<c>--dtype stored</c>): every Linear layer's weight,
/// the token embedding and the output head, each a <see cref="QuantizedMatrix"/> over the memory-mapped file, so loading
/// reads nothing and the pages a product touches are the file's own (shared, evictable, never copied). Llama's query and
/// key rows, which llama.cpp's converter permutes, are the exception: their rows are put back in Hugging Face's order in
/// a copy (whole rows of blocks move, so the copy is exact). Norms, biases and position tables stay dense parameters.
/// </summary>
public sealed unsafe class StoredWeights : IDisposable
{
    readonly MemoryMappedFile? file;
    readonly MemoryMappedViewAccessor? view;
    readonly Dictionary<string, QuantizedMatrix> matrices;
    bool disposed;

    StoredWeights(MemoryMappedFile? file, MemoryMappedViewAccessor? view, Dictionary<string, QuantizedMatrix> matrices, string summary) =>
        (this.file, this.view, this.matrices, Summary) = (file, view, matrices, summary);

    /// <summary>What was kept and how (for the model's notes).</summary>
    public string Summary { get; }

    /// <summary>Hugging Face keys kept stored, with their matrices.</summary>
    public IReadOnlyDictionary<string, QuantizedMatrix> Matrices => matrices;

    /// <summary>Bytes of the stored matrices (what products stream).</summary>
    public long ByteSize => matrices.Values.Sum(m => m.ByteSize);

    /// <summary>The token embedding and head for the family's constructor.</summary>
    public StoredEmbeddings Embeddings(BackboneNames names, int vocabulary)
    {
        var tokens = matrices.FirstOrDefault(kv => names.IsEmbedding(kv.Key) && kv.Value.Rows == vocabulary).Value;
        return new StoredEmbeddings(tokens, matrices.GetValueOrDefault("lm_head.weight"));
    }

    /// <summary>Builds each Linear layer over its stored weight (when kept), through <paramref name="inner"/> (plain layers or a method's).</summary>
    public LinearFactory Wrap(LinearFactory inner) =>
        site => inner(matrices.TryGetValue($"{site.Path}.weight", out var stored) ? site with { Stored = stored } : site);

    /// <summary>The checkpoint's tensors that are not kept stored: they load into dense parameters as before.</summary>
    public IEnumerable<ICheckpointTensor> Remaining(IEnumerable<ICheckpointTensor> tensors) => tensors.Where(t => !matrices.ContainsKey(t.Name));

    /// <summary>
    /// Maps the weight matrices of <paramref name="map"/>: the weights of <paramref name="shape"/>'s Linear layers, its token
    /// embedding and its untied head, in whatever supported type the file gives them.
    /// </summary>
    public static StoredWeights Map(GgufModelMap map, IBackboneShape shape)
    {
        var linears = shape.LinearSites.Select(s => $"{s.Path}.weight").ToHashSet(StringComparer.Ordinal);
        bool Kept(GgufTensorMapping m) => m.Shape.Length == 2 && m.Transform != GgufTensorTransform.PlusOne &&
            (linears.Contains(m.HfKey) || m.HfKey == "lm_head.weight" || (shape.Names.IsEmbedding(m.HfKey) && m.Shape[0] == shape.Vocabulary));
        var kept = map.Tensors.Where(Kept).ToList();
        if (kept.Count == 0) return new StoredWeights(null, null, [], "no weight matrix kept as stored");

        var file = MemoryMappedFile.CreateFromFile(map.File.Path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        var matrices = new Dictionary<string, QuantizedMatrix>(StringComparer.Ordinal);
        try
        {
            view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            byte* start = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref start);
            start += view.PointerOffset;
            if (view.SafeMemoryMappedViewHandle.ByteLength < (ulong)map.File.FileLength)
                throw new InvalidDataException($"{map.File.Path}: the file is shorter than its header says");
            foreach (var m in kept)
            {
                var info = map.File.GetTensor(m.GgufName);
                long[] rowsColumns = info.Shape; // (out, in) as the file stores a Linear weight, whatever HF's layout
                int rows = checked((int)rowsColumns[0]), columns = checked((int)rowsColumns[1]);
                byte* data = start + map.File.DataStart + info.Offset;
                matrices[m.HfKey] = m.Transform == GgufTensorTransform.PermutedRows
                    ? Unpermuted(info.Type, rows, columns, data, m.Heads)
                    : QuantizedMatrix.View(info.Type, rows, columns, data, null);
            }
            // An untied token embedding is read a row per token; everything else is read whole at every token.
            bool untied = matrices.ContainsKey("lm_head.weight");
            Prefault(matrices.Where(kv => !(untied && shape.Names.IsEmbedding(kv.Key))).Select(kv => kv.Value).ToList());
            return new StoredWeights(file, view, matrices,
                $"weights kept as stored: {matrices.Count} matrices, {matrices.Values.Sum(m => m.ByteSize) / 1e6:F0} MB, memory-mapped");
        }
        catch
        {
            foreach (var matrix in matrices.Values) matrix.Dispose();
            if (view is not null) { view.SafeMemoryMappedViewHandle.ReleasePointer(); view.Dispose(); }
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads one byte of every page of <paramref name="read"/> now, over all cores, so that the first generated tokens do not
    /// each take the page faults of the whole mapping (a 7B file: over a million pages), as llama.cpp maps with
    /// MAP_POPULATE. The pages stay the file's: shared, clean and evictable.
    /// </summary>
    static void Prefault(IReadOnlyList<QuantizedMatrix> read)
    {
        long touched = 0;
        Parallel.ForEach(read, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, matrix =>
        {
            byte* data = matrix.Data;
            long sum = 0;
            for (long offset = 0; offset < matrix.ByteSize; offset += 4096) sum += data[offset];
            Interlocked.Add(ref touched, sum);          // the reads have an effect, so none is left out
        });
        GC.KeepAlive(touched);
    }

    /// <summary>
    /// A Hugging Face checkpoint's weight matrices quantized into blocks of <paramref name="type"/>, one tensor at a time
    /// (the float32 copy of one matrix is the most ever held beside the blocks): the Linear layers' weights (GPT-2's
    /// Conv1D ones transposed to (out, in)), the token embedding and an untied head, with llama.cpp's reference
    /// quantizers, so the bytes are those llama.cpp's quantize tool writes for the same tensor. A matrix whose rows are not
    /// whole blocks stays dense (said in <see cref="Summary"/>), as llama.cpp falls back for such tensors.
    /// </summary>
    public static StoredWeights Quantize(IEnumerable<ICheckpointTensor> tensors, IBackboneShape shape, GgufTensorType type, string source)
    {
        var sites = shape.LinearSites.ToDictionary(s => $"{s.Path}.weight", StringComparer.Ordinal);
        int block = GgufTensorTypes.BlockSize(type);
        var matrices = new Dictionary<string, QuantizedMatrix>(StringComparer.Ordinal);
        var dense = new List<string>();
        try
        {
            foreach (var tensor in tensors)
            {
                if (tensor.Shape.Length != 2 || !tensor.IsFloatingPoint) continue;
                bool transposed = sites.TryGetValue(tensor.Name, out var site) && site.Transposed;
                bool kept = site is not null || tensor.Name == "lm_head.weight" || (shape.Names.IsEmbedding(tensor.Name) && tensor.Shape[0] == shape.Vocabulary);
                if (!kept) continue;
                int rows = checked((int)tensor.Shape[transposed ? 1 : 0]), columns = checked((int)tensor.Shape[transposed ? 0 : 1]);
                if (columns % block != 0)
                {
                    dense.Add(tensor.Name);
                    continue;
                }
                using var scope = TorchSharp.torch.NewDisposeScope();
                var values = TorchSharp.torch.empty(tensor.Shape, TorchSharp.torch.ScalarType.Float32);
                tensor.ReadInto(values);
                if (transposed) values = values.t().contiguous();
                matrices[tensor.Name] = QuantizedMatrix.Quantize(type, values.data<float>().ToArray(), rows, columns);
            }
        }
        catch
        {
            foreach (var matrix in matrices.Values) matrix.Dispose();
            throw;
        }
        if (matrices.Count == 0)
            throw new InvalidDataException($"{source}: no weight matrix has rows of whole {type} blocks ({block} values); use --dtype fp32 or bf16");
        string summary = $"weights quantized on load to {type}: {matrices.Count} matrices, {matrices.Values.Sum(m => m.ByteSize) / 1e6:F0} MB" +
                         (dense.Count == 0 ? "" : $"; kept dense (rows not whole blocks of {block}): {string.Join(", ", dense)}");
        return new StoredWeights(null, null, matrices, summary);
    }

    /// <summary>
    /// llama.cpp's q/k rows back in Hugging Face's order, in a copy: within each head of d rows, file row 2i + j holds
    /// Hugging Face row j·d/2 + i (i &lt; d/2, j in {0, 1}); see <see cref="GgufPermutation"/>.
    /// </summary>
    static QuantizedMatrix Unpermuted(GgufTensorType type, int rows, int columns, byte* data, int heads)
    {
        long rowBytes = (long)columns / GgufTensorTypes.BlockSize(type) * GgufTensorTypes.BlockBytes(type);
        var bytes = new byte[rowBytes * rows];
        int d = rows / heads, half = d / 2;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++)
                {
                    long from = h * d + 2 * i + j, to = h * d + j * half + i;
                    new ReadOnlySpan<byte>(data + from * rowBytes, (int)rowBytes).CopyTo(bytes.AsSpan((int)(to * rowBytes), (int)rowBytes));
                }
        return QuantizedMatrix.Copy(type, rows, columns, bytes);
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        foreach (var matrix in matrices.Values) matrix.Dispose();
        if (view is not null)
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
        }
        file?.Dispose();
    }
}
