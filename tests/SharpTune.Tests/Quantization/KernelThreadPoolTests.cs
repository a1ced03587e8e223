using SharpTune.Checkpoints.Gguf;
using SharpTune.Quantization;

namespace SharpTune.Tests.Quantization;

public unsafe class KernelThreadPoolTests
{
    static int[]? seen;

    static void Record(void* state, int chunk) => Interlocked.Increment(ref seen![chunk]);

    static void Throw(void* state, int chunk)
    {
        if (chunk == 5) throw new InvalidOperationException("chunk 5 failed");
    }

    [Fact]
    public void Every_chunk_runs_once_and_a_failure_reaches_the_caller()
    {
        var pool = new KernelThreadPool { Threads = 3 };
        for (int round = 0; round < 50; round++)
        {
            seen = new int[37];
            pool.Run(37, &Record, null);
            Assert.All(seen, count => Assert.Equal(1, count));
        }
        var e = Assert.Throws<InvalidOperationException>(() => pool.Run(9, &Throw, null));
        Assert.Equal("chunk 5 failed", e.Message);
        seen = new int[4];
        pool.Run(4, &Record, null); // still usable after a failure
        Assert.All(seen, count => Assert.Equal(1, count));
    }

    [Fact]
    public void Products_from_several_threads_at_once_equal_the_same_products_one_at_a_time()
    {
        var random = new Random(43);
        int rows = 301, columns = 512;
        using var w = QuantizedMatrix.Copy(GgufTensorType.Q4_K, rows, columns, KernelCases.RandomBlocks(GgufTensorType.Q4_K, rows, columns, random));
        var inputs = Enumerable.Range(0, 8).Select(_ => KernelCases.RandomActivations(2, columns, random)).ToArray();
        float[] Product(float[] x)
        {
            var y = new float[2 * rows];
            fixed (float* px = x, py = y) QuantizedKernels.MatMul(w, px, 2, py);
            return y;
        }
        var serial = inputs.Select(Product).ToArray();
        var concurrent = new float[inputs.Length][];
        Parallel.For(0, inputs.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => concurrent[i] = Product(inputs[i]));
        for (int i = 0; i < inputs.Length; i++) Assert.Equal(serial[i], concurrent[i]);
    }
}
