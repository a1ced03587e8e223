using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using SharpTune.Tests.Cli;

namespace SharpTune.Tests.Serving;

/// <summary><c>sharptune serve</c> in a process of its own: it listens, answers, and on SIGTERM finishes the requests in flight, then exits 0.</summary>
[Collection(nameof(ServingCollection))]
public class ServeCommandTests(ServingFixture serving)
{
    const int SIGTERM = 15;

    [DllImport("libc.so.6", SetLastError = true)]
    static extern int kill(int pid, int signal);

    [Fact]
    public async Task Serve_answers_and_SIGTERM_lets_the_requests_in_flight_finish()
    {
        var start = CliProcess.Start(["serve", "--model", serving.Model, "--adapter", $"a={serving.Runs["a"]}", "--port", "0", "--name", "tiny"]);
        using var process = Process.Start(start)!;
        var stderr = new List<string>();
        var listening = new TaskCompletionSource<Uri>();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (stderr) stderr.Add(e.Data);
            if (e.Data.StartsWith("listening on ", StringComparison.Ordinal)) listening.TrySetResult(new Uri(e.Data.Split(' ')[2]));
        };
        process.BeginErrorReadLine();
        _ = process.StandardOutput.ReadToEndAsync();
        try
        {
            var ready = await Task.WhenAny(listening.Task, Task.Delay(TimeSpan.FromMinutes(2)));
            Assert.True(ready == listening.Task, "no 'listening on' line: " + string.Join("\n", stderr));
            using var client = new HttpClient { BaseAddress = await listening.Task };
            var models = JsonNode.Parse(await client.GetStringAsync("/v1/models"))!["data"]!.AsArray().Select(m => m!["id"]!.GetValue<string>());
            Assert.Equal(["tiny", "a"], models);

            // Streams in flight when the signal comes: each still ends with its last chunk and [DONE].
            // The signal waits until every stream was admitted (200); a request arriving after it would rightly get 503.
            var started = Enumerable.Range(0, 6).Select(_ => new TaskCompletionSource()).ToList();
            var streams = Enumerable.Range(0, 6).Select(i => Http.Events(client, "/v1/completions", new JsonObject
                { ["model"] = i % 2 == 0 ? "tiny" : "a", ["prompt"] = "the river", ["max_tokens"] = 60, ["temperature"] = 0.8, ["seed"] = i, ["stream"] = true },
                started[i])).ToList();
            await Task.WhenAny(Task.WhenAll(started.Select(s => s.Task)), Task.WhenAll(streams));
            Assert.Equal(0, kill(process.Id, SIGTERM));
            var events = await Task.WhenAll(streams);
            Assert.All(events, e => Assert.Equal("[DONE]", e[^1]));
            Assert.True(process.WaitForExit(TimeSpan.FromMinutes(1)), "the server did not exit after SIGTERM");
            process.WaitForExit();                                           // the timed wait does not wait for the last stderr lines
            Assert.True(process.ExitCode == 0, string.Join("\n", stderr));
            lock (stderr) Assert.Contains("stopped", stderr);
        }
        finally
        {
            if (!process.HasExited) process.Kill();
        }
    }

    [Fact]
    public void Bad_serve_options_give_one_clear_line()
    {
        var cases = new (string[] Args, string Expected)[]
        {
            (["serve", "--model", serving.Temp.File("missing.gguf")], "missing.gguf"),
            (["serve", "--model", serving.Model, "--adapter", "nameless"], "--adapter 'nameless'"),
            (["serve", "--model", serving.Model, "--adapter", $"x={serving.Temp.File("nowhere")}"], "nowhere"),
            (["serve", "--model", serving.Model, "--port", "70000"], "--port"),
            (["serve", "--model", serving.Model, "--max-batch", "0"], "--max-batch"),
        };
        foreach (var (args, expected) in cases)
        {
            var (code, output, error) = CliHarness.Run(args);
            Assert.True(code == 1, $"{string.Join(' ', args)}: exit {code}\n{error}{output}");
            Assert.StartsWith("error: ", error);
            Assert.Contains(expected, error);
        }
    }
}
