namespace SharpTune.Tests.Oracle;

public class LlamaCppProbeTests
{
    [Fact]
    public void Llama_cpp_native_library_loads()
    {
        LLama.Native.NativeApi.llama_empty_call();
        Assert.True(LLama.Native.NativeApi.llama_max_devices() >= 1);
    }
}
