// Fine-tune a decoder with LoRA, then use it as Microsoft.Extensions.AI's IChatClient, with no server.
//   dotnet run -- MODEL TRAIN.jsonl [RUN_FOLDER]
// MODEL: a GGUF file or a Hugging Face decoder folder (GPT-2, Llama, Qwen2); TRAIN.jsonl: chat "messages", "prompt" and
// "completion", or "text" rows, as `sharptune train --task causal-lm` reads them.
using Microsoft.Extensions.AI;
using SharpTune.Inference;
using SharpTune.Training;

if (args.Length < 2) { Console.Error.WriteLine("usage: FromCSharp MODEL TRAIN.jsonl [RUN_FOLDER]"); return 2; }
string model = args[0], train = args[1], runFolder = args.Length > 2 ? args[2] : "runs/from-csharp";

// 1. Fine-tune: the same job as `sharptune train`; options are typed and validated once.
var run = new FineTuneJob(new FineTuneOptions
{
    Model = model, Task = "causal-lm", Train = train, Method = "lora", Out = runFolder,
    Training = new TrainingOptions { Epochs = 1, BatchSize = 4, LearningRate = 2e-4 },
}, Console.WriteLine).Run();

// 2. Use it: any code written against IChatClient (Semantic Kernel, your app) now runs the fine-tuned model.
using IChatClient chat = SharpTuneChatClient.Load(run.RunFolder);
var reply = await chat.GetResponseAsync("hi 3", new ChatOptions { Temperature = 0, MaxOutputTokens = 16 });
Console.WriteLine($"reply: {reply.Text}");
return 0;
