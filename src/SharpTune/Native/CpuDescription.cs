using System.Runtime.Intrinsics.X86;
using System.Text;

namespace SharpTune.Native;

/// <summary>The processor's vendor id and brand string, read with CPUID (x86) so speed reports can name the CPU.</summary>
public sealed record CpuDescription(string Vendor, string Model)
{
    public bool IsIntel => Vendor == "GenuineIntel";
    public bool IsAmd => Vendor == "AuthenticAMD";

    public override string ToString() => $"{Model} ({Vendor}, {Environment.ProcessorCount} logical cores)";

    public static CpuDescription Current { get; } = Read();

    static CpuDescription Read()
    {
        if (!X86Base.IsSupported)
            return new CpuDescription(System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture.ToString(), "unknown");
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        string vendor = Ascii(ebx, edx, ecx);
        string model = "unknown";
        var (maxExtended, _, _, _) = X86Base.CpuId(unchecked((int)0x80000000), 0);
        if ((uint)maxExtended >= 0x80000004)
        {
            var brand = new StringBuilder();
            for (uint leaf = 0x80000002; leaf <= 0x80000004; leaf++)
            {
                var (a, b, c, d) = X86Base.CpuId(unchecked((int)leaf), 0);
                brand.Append(Ascii(a, b, c, d));
            }
            model = string.Join(' ', brand.ToString().TrimEnd('\0').Split(' ', StringSplitOptions.RemoveEmptyEntries));
        }
        return new CpuDescription(vendor, model.Length == 0 ? "unknown" : model);
    }

    static string Ascii(params int[] registers)
    {
        var bytes = new byte[registers.Length * 4];
        for (int i = 0; i < registers.Length; i++) BitConverter.TryWriteBytes(bytes.AsSpan(4 * i), registers[i]);
        return Encoding.ASCII.GetString(bytes).TrimEnd('\0');
    }
}
