using System.Runtime.InteropServices;
using System.Text;

namespace SharpTune.Native;

/// <summary>The C allocator a process runs on, as <see cref="NativeAllocator.EnsureForEntryPoint"/> left it.</summary>
/// <param name="Library">The preloaded allocator's file name (libtcmalloc_minimal.so.4.5.10, say); null on the C library's malloc.</param>
/// <param name="Reason">Why, in words, for <c>sharptune info</c> and the bench's reports.</param>
public sealed record AllocatorStatus(string? Library, string Reason)
{
    public bool Preloaded => Library is not null;

    public override string ToString() => Reason;
}

/// <summary>
/// Runs the CLI and the bench on tcmalloc where it is installed, because glibc's malloc holds on to the memory of a
/// training step. libtorch allocates a step's activations with malloc; glibc serves blocks under its mmap threshold
/// (which rises to 32 MiB once such blocks are freed) from one heap that can only shrink from its top, so blocks of
/// many sizes freed in the middle stay resident and the next layer's tensors grow the heap again. A LoRA step over a
/// Qwen2.5-0.5B base at 4 x 512 tokens peaked at 3.4 GB on glibc and 1.9 GB on tcmalloc, and ran 13 % faster there
/// (fewer page faults: docs/native-setup.md has the measurements and commands). glibc's own settings do not close the gap:
/// a fixed mmap threshold gives the memory back at 1.45x the step's time.
/// </summary>
/// <remarks>
/// A malloc replacement must be loaded before anything allocates, so it cannot be loaded into a running process:
/// the entry point restarts itself in place, <c>execve</c> of its own executable with its own arguments and
/// environment plus <c>LD_PRELOAD</c>, before it has done anything else. The process keeps its id, its standard streams
/// and its parent (signals, mpirun and job control see one process). The restarted process sees the marker
/// <see cref="RestartMarker"/>, so it never restarts twice, and gives its children the <c>LD_PRELOAD</c> it was started
/// with. <see cref="EnvironmentVariable"/> chooses: <c>auto</c> (the default: tcmalloc where found, else the C
/// library's malloc), <c>tcmalloc</c> (required: an error where it is missing), <c>system</c> (no restart), or the
/// path of another malloc replacement to preload (jemalloc's, say). A malloc replacement the caller preloaded is kept
/// under <c>auto</c>; under a choice it contradicts the tool stops and says so. Before the restart the runtime's
/// diagnostics socket file goes (the restarted runtime binds the same name). Linux only; elsewhere nothing changes.
/// </remarks>
public static class NativeAllocator
{
    public const string EnvironmentVariable = "SHARPTUNE_ALLOCATOR";

    /// <summary>Set in the restarted process's environment to the <c>LD_PRELOAD</c> it was started with.</summary>
    public const string RestartMarker = "SHARPTUNE_ALLOCATOR_RESTARTED";

    /// <summary>gperftools' tcmalloc without its profilers, as distributions package it (Debian and Ubuntu: libtcmalloc-minimal4; Fedora: gperftools-libs).</summary>
    public const string TcmallocFile = "libtcmalloc_minimal.so.4";

    public const string InstallHint = "install it with `apt-get install libtcmalloc-minimal4` (Debian, Ubuntu) or `dnf install gperftools-libs` (Fedora)";

    const string MarkerPrefix = "preload=";

    /// <summary>How the process came to run on its allocator; the C library's malloc until <see cref="EnsureForEntryPoint"/> ran.</summary>
    public static AllocatorStatus Status { get; private set; } = new(null, "the C library's malloc (the entry point did not choose)");

    /// <summary>A line for a training run's start when tcmalloc would help and is missing (auto mode only); null otherwise.</summary>
    public static string? Advice { get; private set; }

    /// <summary>What <see cref="EnvironmentVariable"/> asks for.</summary>
    public enum Mode { Auto, Required, System }

    /// <summary>A resolved choice: the mode, what was named (tcmalloc or a path), and the library to preload (null: none found).</summary>
    public sealed record Choice(Mode Mode, string Named, string? Library);

    /// <summary>
    /// Reads <see cref="EnvironmentVariable"/>'s value: auto (or unset), tcmalloc, system, or the path of a shared library.
    /// Throws <see cref="InvalidOperationException"/> naming the variable for any other value.
    /// </summary>
    public static Choice Parse(string? value, Func<string?> findTcmalloc)
    {
        string text = value?.Trim() ?? "";
        switch (text.ToLowerInvariant())
        {
            case "" or "auto": return new(Mode.Auto, "tcmalloc", findTcmalloc());
            case "tcmalloc": return new(Mode.Required, "tcmalloc", findTcmalloc());
            case "system" or "glibc" or "default": return new(Mode.System, text, null);
        }
        if (text.Contains('/') || text.Contains(".so", StringComparison.Ordinal))
        {
            if (text.Contains(' ') || text.Contains(':'))
                throw new InvalidOperationException($"{EnvironmentVariable}='{value}': LD_PRELOAD cannot name a path with a space or a colon (it splits on them); use a path without them");
            return new(Mode.Required, text, File.Exists(text) ? Path.GetFullPath(text) : null);
        }
        throw new InvalidOperationException(
            $"{EnvironmentVariable}='{value}' is not an allocator: use auto (tcmalloc where installed, the default), tcmalloc, system, or the path of a malloc library to preload");
    }

    /// <summary>Where distributions install <see cref="TcmallocFile"/>, for this process's architecture; the first that exists, or null.</summary>
    public static string? FindTcmalloc()
    {
        string? multiarch = RuntimeInformation.ProcessArchitecture switch
        {
            Architecture.X64 => "x86_64-linux-gnu",
            Architecture.Arm64 => "aarch64-linux-gnu",
            _ => null,
        };
        var folders = new List<string>();
        if (multiarch is not null) folders.AddRange([$"/usr/lib/{multiarch}", $"/lib/{multiarch}"]);
        folders.AddRange(["/usr/lib64", "/usr/lib", "/usr/local/lib"]);
        return folders.Select(f => Path.Combine(f, TcmallocFile)).FirstOrDefault(File.Exists);
    }

    /// <summary>
    /// For a program's entry point, before it does anything else: makes the process run on the allocator
    /// <see cref="EnvironmentVariable"/> chooses, restarting it in place with the library preloaded where needed (a
    /// successful restart does not return). Returns null when the process goes on, on whichever allocator
    /// <see cref="Status"/> names, or a message for a choice that cannot be honoured (a bad value, a required library
    /// missing or not loaded); the caller stops with it. Never call it from a library or a test host: the restart
    /// replaces the whole process.
    /// </summary>
    public static string? EnsureForEntryPoint()
    {
        if (!OperatingSystem.IsLinux())
        {
            Status = new(null, "the platform's malloc (a preloaded allocator is for Linux)");
            return null;
        }
        string? marker = Environment.GetEnvironmentVariable(RestartMarker);
        if (marker is not null) ForgetRestart(marker);
        Choice choice;
        try
        {
            choice = Parse(Environment.GetEnvironmentVariable(EnvironmentVariable), FindTcmalloc);
        }
        catch (InvalidOperationException e)
        {
            return e.Message;
        }
        string? loaded = LoadedAllocator(choice.Library);
        if (loaded is not null)
        {
            string how = marker is not null ? "preloaded at start-up" : "preloaded by the caller's LD_PRELOAD";
            if (choice.Mode == Mode.System)
                return $"{EnvironmentVariable}={choice.Named}, but {loaded} is already {how}: unset LD_PRELOAD to run on the C library's malloc";
            if (choice.Mode == Mode.Required && !IsChosen(loaded, choice))
                return $"{EnvironmentVariable}={choice.Named}, but another allocator, {loaded}, is already {how}: unset LD_PRELOAD or {EnvironmentVariable}";
            Status = new(loaded, $"{loaded}, {how} ({EnvironmentVariable}=system keeps the C library's malloc)");
            return null;
        }
        if (choice.Mode == Mode.System)
        {
            Status = new(null, $"the C library's malloc ({EnvironmentVariable}={choice.Named})");
            return null;
        }
        if (choice.Library is null)
        {
            if (choice.Mode == Mode.Required)
                return choice.Named == "tcmalloc"
                    ? $"{EnvironmentVariable}=tcmalloc, but {TcmallocFile} was not found: {InstallHint}, or set {EnvironmentVariable}=system"
                    : $"{EnvironmentVariable}: the allocator library '{choice.Named}' does not exist (give the file's path)";
            Status = new(null, $"the C library's malloc: {TcmallocFile} was not found (a training step peaks up to twice as high on glibc's malloc; {InstallHint})");
            Advice = $"running on glibc's malloc, where a training step peaks up to twice as high as on tcmalloc: {InstallHint}";
            return null;
        }
        if (marker is not null)
        {
            // Restarted with the library in LD_PRELOAD, and still not loaded: the loader said why, above.
            string why = $"the loader did not preload {choice.Library} (its message, if any, is above)";
            if (choice.Mode == Mode.Required) return $"{EnvironmentVariable}: {why}";
            Status = new(null, $"the C library's malloc: {why}");
            return null;
        }
        if (System.Diagnostics.Debugger.IsAttached)
        {
            Status = new(null, "the C library's malloc (a debugger is attached: no restart)");
            return null;
        }
        string failure = Restart(choice.Library);                                  // returns only when execve failed
        if (choice.Mode == Mode.Required) return $"{EnvironmentVariable}: could not restart with {choice.Library} preloaded: {failure}";
        Status = new(null, $"the C library's malloc: could not restart with {choice.Library} preloaded ({failure})");
        return null;
    }

    /// <summary>The file name of a malloc replacement mapped into this process (tcmalloc, jemalloc, mimalloc, or
    /// <paramref name="library"/>), or null.</summary>
    static string? LoadedAllocator(string? library)
    {
        string? named = library is null ? null : FinalFileName(library);
        try
        {
            foreach (string line in File.ReadLines("/proc/self/maps"))
            {
                int slash = line.IndexOf('/');
                if (slash < 0) continue;
                string file = Path.GetFileName(line[slash..]);
                if (file.StartsWith("libtcmalloc", StringComparison.Ordinal) || file.StartsWith("libjemalloc", StringComparison.Ordinal)
                    || file.StartsWith("libmimalloc", StringComparison.Ordinal) || file == named)
                    return file;
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>Whether the loaded allocator is the one a required choice names (tcmalloc, or the file at a path).</summary>
    static bool IsChosen(string loaded, Choice choice) => choice.Named == "tcmalloc"
        ? loaded.StartsWith("libtcmalloc", StringComparison.Ordinal)
        : choice.Library is not null && loaded == FinalFileName(choice.Library);

    /// <summary>The file name a path resolves to through its links (what /proc/self/maps shows).</summary>
    static string FinalFileName(string path) => Path.GetFileName(File.ResolveLinkTarget(path, returnFinalTarget: true)?.FullName ?? path);

    /// <summary>Gives the restarted process's children the environment it was started with: its LD_PRELOAD, no marker.</summary>
    static void ForgetRestart(string marker)
    {
        string original = marker.StartsWith(MarkerPrefix, StringComparison.Ordinal) ? marker[MarkerPrefix.Length..] : "";
        Environment.SetEnvironmentVariable("LD_PRELOAD", original.Length > 0 ? original : null);
        Environment.SetEnvironmentVariable(RestartMarker, null);
        // .NET keeps its own copy of the environment (Process.Start reads it); native code that starts processes (Open
        // MPI's daemons, system()) reads the C library's, so that changes too. tcmalloc's report threshold stays: only
        // tcmalloc reads it.
        try
        {
            if (original.Length > 0) Libc.SetEnvironment("LD_PRELOAD", original, 1);
            else Libc.UnsetEnvironment("LD_PRELOAD");
            Libc.UnsetEnvironment(RestartMarker);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }

    /// <summary>
    /// execve of this process's own executable with its own argument bytes (/proc/self/cmdline) and the environment it
    /// was started with (/proc/self/environ), plus LD_PRELOAD and the marker. Returns only on failure, with why.
    /// </summary>
    static string Restart(string library)
    {
        byte[][] arguments, environment;
        try
        {
            arguments = SplitNul(File.ReadAllBytes("/proc/self/cmdline"));
            environment = SplitNul(File.ReadAllBytes("/proc/self/environ"));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"/proc/self is not readable: {e.Message}";
        }
        if (arguments.Length == 0) return "/proc/self/cmdline is empty";
        var env = RestartEnvironment(environment, library);
        RemoveDiagnosticSocket();
        try
        {
            return Libc.Exec("/proc/self/exe", arguments, env);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return $"no execve in this C library ({e.Message})";                   // musl, say
        }
    }

    /// <summary>
    /// The runtime's diagnostics socket (dotnet-counters, dotnet-trace attach through it) is named by the process id and
    /// start time, which the restart keeps: the file the first runtime made would keep the restarted one from binding its
    /// own, so it goes first (its descriptor closes on exec).
    /// </summary>
    static void RemoveDiagnosticSocket()
    {
        try
        {
            foreach (string socket in Directory.EnumerateFiles(Path.GetTempPath(), $"dotnet-diagnostic-{Environment.ProcessId}-*-socket"))
                File.Delete(socket);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>
    /// The restarted process's environment: every variable as it was (bytes kept), LD_PRELOAD with the library first,
    /// the marker holding the old LD_PRELOAD, and tcmalloc's report of allocations over 1 GB (a line on standard error
    /// per large tensor) turned off unless the caller set it.
    /// </summary>
    internal static List<byte[]> RestartEnvironment(IReadOnlyList<byte[]> environment, string library)
    {
        // Names are ASCII in practice; values are kept as bytes (they need not be UTF-8).
        static string NameOf(byte[] entry) => Encoding.UTF8.GetString(entry, 0, Math.Max(0, Array.IndexOf(entry, (byte)'=')));
        var preload = environment.FirstOrDefault(e => NameOf(e) == "LD_PRELOAD");
        string? oldPreload = preload is null ? null : Encoding.UTF8.GetString(preload, "LD_PRELOAD=".Length, preload.Length - "LD_PRELOAD=".Length);
        var result = environment.Where(e => NameOf(e) is not ("LD_PRELOAD" or RestartMarker)).ToList();
        result.Add(Encoding.UTF8.GetBytes($"LD_PRELOAD={library}{(string.IsNullOrEmpty(oldPreload) ? "" : ":" + oldPreload)}"));
        result.Add(Encoding.UTF8.GetBytes($"{RestartMarker}={MarkerPrefix}{oldPreload}"));
        const string report = "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD";
        if (!environment.Any(e => NameOf(e) == report)) result.Add(Encoding.UTF8.GetBytes($"{report}={1L << 40}"));
        return result;
    }

    static byte[][] SplitNul(byte[] bytes)
    {
        var parts = new List<byte[]>();
        int start = 0;
        for (int i = 0; i < bytes.Length; i++)
            if (bytes[i] == 0)
            {
                parts.Add(bytes[start..i]);
                start = i + 1;
            }
        if (start < bytes.Length) parts.Add(bytes[start..]);
        return [.. parts];
    }

    static unsafe class Libc
    {
        [DllImport("libc.so.6", EntryPoint = "execve", SetLastError = true)]
        static extern int Execve(byte* path, byte** argv, byte** envp);

        [DllImport("libc.so.6", EntryPoint = "setenv")]
        public static extern int SetEnvironment([MarshalAs(UnmanagedType.LPUTF8Str)] string name, [MarshalAs(UnmanagedType.LPUTF8Str)] string value, int overwrite);

        [DllImport("libc.so.6", EntryPoint = "unsetenv")]
        public static extern int UnsetEnvironment([MarshalAs(UnmanagedType.LPUTF8Str)] string name);

        /// <summary>execve with NUL-terminated copies of the byte strings; returns the error when it comes back.</summary>
        public static string Exec(string path, IReadOnlyList<byte[]> arguments, IReadOnlyList<byte[]> environment)
        {
            var blocks = new List<IntPtr>();
            byte** Strings(IReadOnlyList<byte[]> items)
            {
                var array = (byte**)NativeMemory.Alloc((nuint)(items.Count + 1), (nuint)sizeof(byte*));
                blocks.Add((IntPtr)array);
                for (int i = 0; i < items.Count; i++)
                {
                    var s = (byte*)NativeMemory.Alloc((nuint)items[i].Length + 1);
                    blocks.Add((IntPtr)s);
                    items[i].CopyTo(new Span<byte>(s, items[i].Length));
                    s[items[i].Length] = 0;
                    array[i] = s;
                }
                array[items.Count] = null;
                return array;
            }
            try
            {
                byte** argv = Strings(arguments), envp = Strings(environment);
                byte[] file = Encoding.UTF8.GetBytes(path + "\0");
                fixed (byte* p = file) Execve(p, argv, envp);
                return Marshal.GetLastPInvokeErrorMessage();
            }
            finally
            {
                foreach (var block in blocks) NativeMemory.Free((void*)block);
            }
        }
    }
}
