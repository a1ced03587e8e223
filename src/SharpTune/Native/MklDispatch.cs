using System.Runtime.InteropServices;

namespace SharpTune.Native;

/// <summary>What <see cref="MklDispatch.Ensure"/> did, for <c>sharptune info</c> and the bench's reports.</summary>
/// <param name="Active">True when MKL's vendor check answers "Intel" on this CPU, so MKL picks its code by CPU features.</param>
/// <param name="Reason">Why it is or is not active, in words.</param>
public sealed record MklDispatchStatus(bool Active, string Reason, CpuDescription Cpu);

/// <summary>
/// Makes Intel MKL (linked into libtorch's CPU build) choose its kernels by the CPU's features on every CPU.
/// </summary>
/// <remarks>
/// MKL asks <c>mkl_serv_intel_cpu_true()</c> whether the CPU is Intel's and, when it is not, runs its generic
/// SSE2 path even on CPUs with AVX2 or AVX-512: on AMD EPYC that halves libtorch's fp32 matrix products
/// (docs/native-setup.md has the measurements). libtorch_cpu.so calls that function through its PLT, so a
/// definition loaded earlier into the global symbol scope takes precedence. Before libtorch is loaded,
/// <see cref="Ensure"/> writes a tiny shared object that defines it as <c>return 1;</c>
/// (<see cref="ElfSharedObject"/>, into an anonymous memory file, so nothing is written to disk) and
/// <c>dlopen</c>s it with <c>RTLD_GLOBAL</c>. The vendor binaries are not modified, and MKL still selects
/// instructions by CPUID, so a CPU without AVX-512 gets AVX2 code. On Intel CPUs the answer is the one MKL
/// would give itself: nothing changes. Set <c>SHARPTUNE_MKL_OVERRIDE=0</c> to leave MKL's own check in place.
/// </remarks>
public static class MklDispatch
{
    public const string EnvironmentVariable = "SHARPTUNE_MKL_OVERRIDE";
    public const string VendorCheck = "mkl_serv_intel_cpu_true";
    const string ShimName = "libsharptune_mkl_dispatch.so";

    static readonly Lock Gate = new();
    static MklDispatchStatus? status;
    static IntPtr shimFunction;

    /// <summary>Installs the override once per process (later calls return the first outcome). Never throws.</summary>
    public static MklDispatchStatus Ensure()
    {
        lock (Gate)
        {
            return status ??= Install();
        }
    }

    /// <summary>True when the override is set off by <see cref="EnvironmentVariable"/> (0, false, off or no).</summary>
    public static bool DisabledBy(string? value) =>
        value?.Trim().ToLowerInvariant() is "0" or "false" or "off" or "no";

    static MklDispatchStatus Install()
    {
        var cpu = CpuDescription.Current;
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return new(false, "not needed: only libtorch's Linux x64 build is used here", cpu);
        if (DisabledBy(Environment.GetEnvironmentVariable(EnvironmentVariable)))
            return new(false, $"off: {EnvironmentVariable}={Environment.GetEnvironmentVariable(EnvironmentVariable)} keeps MKL's vendor check", cpu);
        try
        {
            if (LibTorchLoaded())
                return new(false, "not installed: libtorch was loaded before SharpTune could install it (call MklDispatch.Ensure() before the first TorchSharp call)", cpu);
            byte[] image = ElfSharedObject.ReturningConstants(ShimName, [(VendorCheck, 1)]);
            IntPtr handle = LoadGlobal(image);
            shimFunction = Libdl.Symbol(handle, VendorCheck);
            IntPtr resolved = Libdl.Symbol(Libdl.Default, VendorCheck);
            if (shimFunction == IntPtr.Zero || resolved != shimFunction)
                return new(false, $"not installed: {VendorCheck} resolves to another definition already in the global scope", cpu);
            return new(true, cpu.IsIntel
                ? "active (on this Intel CPU MKL's own check gives the same answer)"
                : "active: MKL dispatches by CPU features instead of vendor", cpu);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or IOException or InvalidOperationException)
        {
            return new(false, $"not installed: {e.Message}", cpu);
        }
    }

    /// <summary>Whether the global scope's <c>mkl_serv_intel_cpu_true</c> is this class's override.</summary>
    public static bool OverrideResolves() =>
        shimFunction != IntPtr.Zero && Libdl.Symbol(Libdl.Default, VendorCheck) == shimFunction;

    /// <summary>
    /// MKL's code path as <c>mkl_serv_cpu_detect()</c> reports it once libtorch is loaded: 0 is the generic
    /// path; on this MKL (2024.2) 3 is SSE4.2, 5 AVX2 and 7 AVX-512. Null when libtorch is not loaded yet.
    /// </summary>
    public static int? CodePath()
    {
        if (!OperatingSystem.IsLinux()) return null;
        IntPtr torch = Libdl.OpenLoaded("libtorch_cpu.so");
        if (torch == IntPtr.Zero) return null;
        IntPtr detect = Libdl.Symbol(torch, "mkl_serv_cpu_detect");
        if (detect == IntPtr.Zero) return null;
        unsafe { return ((delegate* unmanaged<int>)detect)(); }
    }

    public static string DescribeCodePath(int? code) => code switch
    {
        null => "unknown (libtorch not loaded)",
        0 => "generic (SSE2), code 0",
        3 => "SSE4.2, code 3",
        5 => "AVX2, code 5",
        7 => "AVX-512, code 7",
        int other => $"code {other}",
    };

    static bool LibTorchLoaded()
    {
        try
        {
            return File.ReadLines("/proc/self/maps").Any(line => line.EndsWith("/libtorch_cpu.so", StringComparison.Ordinal));
        }
        catch (IOException)
        {
            return Libdl.OpenLoaded("libtorch_cpu.so") != IntPtr.Zero;
        }
    }

    /// <summary>dlopen(RTLD_NOW | RTLD_GLOBAL) of an in-memory image: an anonymous memory file where the kernel
    /// has one, else a file under the user's local data folder.</summary>
    static IntPtr LoadGlobal(byte[] image)
    {
        int fd = Libc.MemfdCreate("sharptune-mkl-dispatch", Libc.MfdCloexec);
        if (fd >= 0)
        {
            try
            {
                using (var stream = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: false), FileAccess.Write))
                    stream.Write(image);
                IntPtr handle = Libdl.Open($"/proc/self/fd/{fd}", Libdl.Now | Libdl.Global);
                if (handle != IntPtr.Zero) return handle;
            }
            finally
            {
                Libc.Close(fd);
            }
        }
        // No memfd (or memory files may not be mapped executable here): a file of our own instead.
        string folder = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create), "sharptune", "native");
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, ShimName);
        if (!File.Exists(path) || !File.ReadAllBytes(path).AsSpan().SequenceEqual(image))
        {
            string temp = $"{path}.{Environment.ProcessId}.tmp";
            File.WriteAllBytes(temp, image);
            File.Move(temp, path, overwrite: true);
        }
        IntPtr fileHandle = Libdl.Open(path, Libdl.Now | Libdl.Global);
        return fileHandle != IntPtr.Zero ? fileHandle : throw new InvalidOperationException($"dlopen {path}: {Libdl.LastError()}");
    }

    static class Libc
    {
        public const uint MfdCloexec = 1;

        [DllImport("libc.so.6", EntryPoint = "memfd_create", SetLastError = true)]
        public static extern int MemfdCreate([MarshalAs(UnmanagedType.LPUTF8Str)] string name, uint flags);

        [DllImport("libc.so.6", EntryPoint = "close")]
        public static extern int Close(int fd);
    }

    /// <summary>glibc's dynamic-loader API (in libc.so.6 since glibc 2.34, in libdl.so.2 before).</summary>
    static class Libdl
    {
        public const int Lazy = 0x1, Now = 0x2, NoLoad = 0x4, Global = 0x100;
        public static readonly IntPtr Default = IntPtr.Zero;         // RTLD_DEFAULT

        public static IntPtr Open(string path, int flags)
        {
            try { return Modern.dlopen(path, flags); }
            catch (EntryPointNotFoundException) { return Legacy.dlopen(path, flags); }
        }

        /// <summary>A handle to a library already loaded under that name, or zero; never loads it.</summary>
        public static IntPtr OpenLoaded(string name) => Open(name, Lazy | NoLoad);

        public static IntPtr Symbol(IntPtr handle, string name)
        {
            try { return Modern.dlsym(handle, name); }
            catch (EntryPointNotFoundException) { return Legacy.dlsym(handle, name); }
        }

        public static string LastError()
        {
            IntPtr message;
            try { message = Modern.dlerror(); }
            catch (EntryPointNotFoundException) { message = Legacy.dlerror(); }
            return Marshal.PtrToStringUTF8(message) ?? "unknown error";
        }

        static class Modern
        {
            [DllImport("libc.so.6")] public static extern IntPtr dlopen([MarshalAs(UnmanagedType.LPUTF8Str)] string? path, int flags);
            [DllImport("libc.so.6")] public static extern IntPtr dlsym(IntPtr handle, [MarshalAs(UnmanagedType.LPUTF8Str)] string name);
            [DllImport("libc.so.6")] public static extern IntPtr dlerror();
        }

        static class Legacy
        {
            [DllImport("libdl.so.2")] public static extern IntPtr dlopen([MarshalAs(UnmanagedType.LPUTF8Str)] string? path, int flags);
            [DllImport("libdl.so.2")] public static extern IntPtr dlsym(IntPtr handle, [MarshalAs(UnmanagedType.LPUTF8Str)] string name);
            [DllImport("libdl.so.2")] public static extern IntPtr dlerror();
        }
    }
}
