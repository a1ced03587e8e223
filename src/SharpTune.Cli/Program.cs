using SharpTune.Models;
foreach (var m in BuiltInModels.All) { Console.WriteLine($"{m.Name} {m.ReadOnnx().Length} {m.ReadVocab().Length}"); }
