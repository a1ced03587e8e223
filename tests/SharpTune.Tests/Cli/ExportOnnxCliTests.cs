using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using SharpTune.Heads;
using SharpTune.ModelFolders;
using SharpTune.Tests.ModelFolders;
using SharpTune.Tokenization;
using static SharpTune.Tests.Cli.CliHarness;
using static TorchSharp.torch;

namespace SharpTune.Tests.Cli;

/// <summary><c>sharptune export --format onnx</c>: what it writes and says, and what it refuses.</summary>
public class ExportOnnxCliTests
{
    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void A_lora_run_exports_merged_and_onnx_runtime_scores_as_the_run_does()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        string train = ToyCsv(temp, "train.csv", 24, 4);
        string run = temp.File("run");
        var (code, output, error) = Run("train", "--model", model, "--train", train, "--method", "lora", "--epochs", "1", "--batch-size", "8",
            "--max-length", "16", "--out", run);
        Assert.True(code == 0, error + output);

        (code, output, error) = Run("export", "--model", run, "--format", "onnx", "--out", temp.File("onnx"));
        Assert.True(code == 0, error + output);
        foreach (string file in new[] { "model.onnx", "vocab.txt", "tokenizer_config.json", "config.json" })
            Assert.Contains($"wrote {temp.File("onnx/" + file)}", output);
        Assert.Contains("output: logits (batch, 2): class scores", output);
        Assert.Contains("note: the lora adapter is merged into the exported weights", output);
        Assert.Contains("inputs: input_ids, attention_mask, token_type_ids (int64, batch x sequence; both axes dynamic)", output);

        // The folder's own vocabulary tokenizes; ONNX Runtime's logits equal the run's (base + adapter, unmerged).
        var tokenizer = BertTextTokenizer.FromVocabStream(File.OpenRead(temp.File("onnx/vocab.txt")), lowerCase: true, "vocab.txt");
        string[] texts = ["the movie was great, fine", "the food is awful", "bad"];
        using var batch = TokenBatch.Collate(texts.Select(t => tokenizer.Encode(t, maxLength: 16)).ToArray(), tokenizer.PadId);
        using var loaded = TaskModelFolder.Load(run);
        using var _ = no_grad();
        using var expected = loaded.Model.forward(new ModelInputs(batch.InputIds, batch.AttentionMask, batch.TokenTypeIds));
        using var session = new InferenceSession(temp.File("onnx/model.onnx"));
        var outputs = OnnxRuntimeRun.Run(session, batch.InputIds, batch.AttentionMask, batch.TokenTypeIds);
        Tolerances.AssertClose(expected, outputs["logits"], Tolerances.DifferentKernelsThroughNetwork, "exported run");
    }

    /// <summary>The exported folder's own tokenizer and length limit: what a user of the folder alone has.</summary>
    static (BertTextTokenizer Tokenizer, int MaxLength) FolderTokenizer(string folder)
    {
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "tokenizer_config.json")));
        bool lower = config.RootElement.GetProperty("do_lower_case").GetBoolean();
        using var vocab = File.OpenRead(Path.Combine(folder, "vocab.txt"));
        return (BertTextTokenizer.FromVocabStream(vocab, lower, "vocab.txt"), config.RootElement.GetProperty("model_max_length").GetInt32());
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void A_mean_pooled_run_exported_scores_its_test_set_as_predict_does()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        string train = ToyCsv(temp, "train.csv", 24, 4), test = ToyCsv(temp, "test.csv", 19, 8);
        string run = temp.File("run");
        var (code, output, error) = Run("train", "--model", model, "--train", train, "--pooling", "mean", "--epochs", "2", "--batch-size", "8",
            "--lr", "1e-3", "--max-length", "12", "--out", run);
        Assert.True(code == 0, error + output);
        (code, output, error) = Run("export", "--model", run, "--format", "onnx", "--out", temp.File("onnx"));
        Assert.True(code == 0, error + output);
        Assert.Contains("note: the classifier reads the mean of the real tokens", output);

        // Every test row through ONNX Runtime in one padded batch, with the folder's vocabulary and length limit.
        using var predictor = new SharpTune.Inference.Predictor(run);
        var expected = predictor.PredictFile(test).Predictions;
        Assert.Equal(19, expected.Count);
        var (tokenizer, maxLength) = FolderTokenizer(temp.File("onnx"));
        Assert.Equal(12, maxLength);
        using var batch = TokenBatch.Collate(expected.Select(p => tokenizer.Encode(p.Input, maxLength: maxLength)).ToArray(), tokenizer.PadId);
        using var session = new InferenceSession(temp.File("onnx/model.onnx"));
        var labels = JsonSerializer.Deserialize<Dictionary<string, string>>(session.ModelMetadata.CustomMetadataMap["id2label"])!;
        Assert.Equal("mean", session.ModelMetadata.CustomMetadataMap["sharptune.pooling"]);
        using var probabilities = nn.functional.softmax(OnnxRuntimeRun.Run(session, batch.InputIds, batch.AttentionMask, batch.TokenTypeIds)["logits"], 1);
        using var predicted = tensor(expected.SelectMany(p => new[] { p.Probabilities![labels["0"]], p.Probabilities[labels["1"]] }).ToArray(), [19, 2]);
        Tolerances.AssertClose(predicted, probabilities, Tolerances.DifferentKernelsThroughNetwork, "test-set probabilities");
        var argmax = probabilities.argmax(1).data<long>().ToArray();
        Assert.Equal(expected.Select(p => p.Labels.Single()), argmax.Select(k => labels[k.ToString(System.Globalization.CultureInfo.InvariantCulture)]));
    }

    /// <summary>Viterbi over one sentence's emissions (L, K) with the CRF's parameters: the decoding a user of the file does.</summary>
    static int[] Viterbi(float[][] emissions, float[][] transitions, float[] start, float[] end)
    {
        int length = emissions.Length, tags = start.Length;
        var score = Enumerable.Range(0, tags).Select(k => start[k] + emissions[0][k]).ToArray();
        var back = new int[length, tags];
        for (int t = 1; t < length; t++)
        {
            var next = new float[tags];
            for (int j = 0; j < tags; j++)
            {
                int best = Enumerable.Range(0, tags).MaxBy(i => score[i] + transitions[i][j]);
                back[t, j] = best;
                next[j] = score[best] + transitions[best][j] + emissions[t][j];
            }
            score = next;
        }
        var path = new int[length];
        path[^1] = Enumerable.Range(0, tags).MaxBy(k => score[k] + end[k]);
        for (int t = length - 1; t > 0; t--) path[t - 1] = back[t, path[t]];
        return path;
    }

    [Fact]
    [Trait(Tolerances.Category, Tolerances.NumericParity)]
    public void A_crf_tagging_run_exported_tags_its_test_set_as_predict_does_with_viterbi_outside_the_graph()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        string Conll(string name, params string[][] sentences)
        {
            var tags = new Dictionary<string, string> { ["the"] = "det", ["movie"] = "noun", ["food"] = "noun", ["was"] = "verb", ["is"] = "verb" };
            string path = temp.File(name);
            File.WriteAllText(path, string.Concat(sentences.Select(words => string.Concat(words.Select(w => $"{w}\t{tags.GetValueOrDefault(w, "adj")}\n")) + "\n")));
            return path;
        }
        string[][] training = [["the", "movie", "was", "good"], ["the", "food", "is", "awful"], ["good", "food"], ["the", "movie", "is", "fine", "fine"]];
        string train = Conll("train.conll", [.. Enumerable.Repeat(training, 4).SelectMany(s => s)]);
        string test = Conll("test.conll", ["the", "food", "was", "great"], ["awful", "movie"], ["the", "movie"], ["is", "the", "food", "poor", "bad", "the"]);
        string run = temp.File("run");
        var (code, output, error) = Run("train", "--model", model, "--task", "tokens", "--crf", "--train", train, "--epochs", "3", "--batch-size", "4",
            "--lr", "5e-3", "--max-length", "16", "--out", run);
        Assert.True(code == 0, error + output);
        // Transitions as strong as the emissions, so decoding with them (and in the right direction) decides the tags.
        string tuned = temp.File("tuned");
        using (var loaded = TaskModelFolder.Load(run))
        {
            using (no_grad()) loaded.Model.Crf!.transitions.normal_(0, 2, generator: new TorchSharp.torch.Generator(7));
            TaskModelFolder.Save(tuned, loaded.Model, loaded.Vocab, loaded.LowerCase, loaded.Labels, loaded.Spec);
        }
        (code, output, error) = Run("export", "--model", tuned, "--format", "onnx", "--out", temp.File("onnx"));
        Assert.True(code == 0, error + output);
        Assert.Contains("note: CRF: Viterbi decoding is not part of the ONNX graph", output);

        using var predictor = new SharpTune.Inference.Predictor(tuned);
        var expected = predictor.PredictFile(test).Predictions;
        var (tokenizer, maxLength) = FolderTokenizer(temp.File("onnx"));
        var encoded = expected.Select(p => tokenizer.EncodeWords(p.Input.Split(' '), maxLength)).ToArray();
        using var batch = TokenBatch.Collate(encoded, tokenizer.PadId);
        using var session = new InferenceSession(temp.File("onnx/model.onnx"));
        var metadata = session.ModelMetadata.CustomMetadataMap;
        var transitions = JsonSerializer.Deserialize<float[][]>(metadata["sharptune.crf.transitions"])!;
        var start = JsonSerializer.Deserialize<float[]>(metadata["sharptune.crf.start_transitions"])!;
        var end = JsonSerializer.Deserialize<float[]>(metadata["sharptune.crf.end_transitions"])!;
        var labels = JsonSerializer.Deserialize<Dictionary<string, string>>(metadata["id2label"])!;
        using var logits = OnnxRuntimeRun.Run(session, batch.InputIds, batch.AttentionMask, batch.TokenTypeIds)["logits"]; // (B, T, K)
        for (int b = 0; b < encoded.Length; b++)
        {
            // Each word's first sub-word's row is its emission; the file's transitions decode them.
            var emissions = encoded[b].IsFirstSubword.Select((first, t) => (first, t)).Where(x => x.first)
                .Select(x => logits[b, x.t].data<float>().ToArray()).ToArray();
            var tags = Viterbi(emissions, transitions, start, end).Select(k => labels[k.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            Assert.Equal(expected[b].Labels, tags);
        }
        // The decoding is not trivial: the model tells the test words apart.
        Assert.True(expected.SelectMany(p => p.Labels).Distinct().Count() >= 2, string.Join(" | ", expected.Select(p => string.Join(" ", p.Labels))));
    }

    [Fact]
    public void An_encoder_exports_to_a_file_path_with_its_embedding_output()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        var (code, output, error) = Run("export", "--model", model, "--format", "onnx", "--out", temp.File("out/encoder.onnx"));
        Assert.True(code == 0, error + output);
        Assert.Contains($"wrote {temp.File("out/encoder.onnx")}", output);
        Assert.Contains("output: sentence_embedding (batch, 32): pooler pooling, not normalised", output);
        Assert.Equal(["encoder.onnx"], Directory.GetFiles(temp.File("out")).Select(Path.GetFileName));
    }

    [Fact]
    public void A_decoder_is_refused_with_the_formats_that_apply()
    {
        using var temp = new TestModels.TempFolder();
        string gguf = CausalLmCliTests.TinyGguf(temp);
        var (code, output, error) = Run("export", "--model", gguf, "--format", "onnx", "--out", temp.File("x.onnx"));
        Assert.NotEqual(0, code);
        Assert.Contains($"--format onnx exports encoders (fine-tuned task models and embedding models); {gguf} is a decoder language model: " +
            "export it with --format hf, gguf or gguf-lora", error);
        Assert.DoesNotContain("   at ", error);
        Assert.False(File.Exists(temp.File("x.onnx")));
    }

    [Fact]
    public void Bad_outputs_and_options_are_refused_before_anything_is_written()
    {
        using var temp = new TestModels.TempFolder();
        string model = TinyModelFolder(temp);
        string existing = temp.File("notes.txt");
        File.WriteAllText(existing, "keep");
        (string[] Args, string Message)[] cases =
        [
            (["--out", temp.File("model.gguf")], $"--out {temp.File("model.gguf")} ends in .gguf, which names a GGUF file; an ONNX export is a path ending in .onnx or a folder"),
            (["--out", existing], $"--out {existing} is an existing file; give a folder, or a path ending in .onnx for the file alone"),
            (["--out", temp.File("a.onnx"), "--dtype", "f16"], "--dtype applies to GGUF exports only (an ONNX export keeps fp32 weights)"),
        ];
        foreach (var (args, message) in cases)
        {
            var (code, output, error) = Run(["export", "--model", model, "--format", "onnx", .. args]);
            Assert.True(code != 0, output);
            Assert.Contains(message, error);
        }
        Assert.Equal("keep", File.ReadAllText(existing));
        Assert.False(File.Exists(temp.File("a.onnx")));

        var missing = Run("export", "--model", temp.File("nowhere"), "--format", "onnx", "--out", temp.File("b.onnx"));
        Assert.NotEqual(0, missing.Code);
        Assert.Contains("not found", missing.Error);
    }
}
